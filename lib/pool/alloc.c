/* punchcache: the physical block allocator.
 *
 * What: hands out free physical blocks, lowest first, and holds freed
 * blocks back until the commit that records their freeing is durable
 * (SPEC I3(b)).
 *
 * Data structure:
 *
 *   bits[]       1 bit per block: 1 = in use or pending free
 *   pend_bits[]  1 bit per block: 1 = on the deferred list
 *   hint         lowest index that may be free
 *   def[head .. ndef)   deferred frees (pblock, epoch), sorted by epoch
 *
 * Why: one bit per block keeps the allocator at 2 bits per block (4 MiB per
 * TiB of 64 KiB blocks) whatever is allocated.  Lowest-first keeps live
 * data, and the reverse-map pages describing it, dense at the start of the
 * pool, and reuses freed blocks soon: the race tests rely on that to turn a
 * missing invalidate lock into a visible foreign read.  The hint makes the
 * common case O(1): it only moves down on a free, up on an allocation.
 * pend_bits tells "pending" from "in use", so a second free of a pending
 * block is caught (-EINVAL) instead of corrupting the counters.  Sorting the
 * deferred list by epoch makes pc_alloc_release_through() remove a prefix
 * and touch only the entries it frees; the store defers with non-decreasing
 * epochs, so insertion is an append; an out-of-order epoch is still placed
 * correctly (binary search + memmove).
 *
 * Invariants (mutex held; pc_alloc_verify checks all):
 *  A1 popcount(bits) == used + pending; free == nblocks - used - pending.
 *  A2 Every deferred entry's bit and pend bit are set; popcount(pend_bits)
 *     == pending == ndef - head (so a block is deferred at most once).
 *  A3 No bit below `hint` is clear.
 *  A4 (SPEC I3b) A deferred block's bit is cleared only by
 *     pc_alloc_release_through(e) with e >= its epoch.
 *  A5 def[head .. ndef) is sorted by epoch (non-decreasing).
 *  A6 bad_puts == 0: nobody returned a block that was not in use.
 *
 * Locks: one mutex (alloc_lock / alloc_unlock) protects everything above;
 * it is held for bitmap scans and list updates only, never across I/O, and
 * no other lock is taken under it (it is a leaf of lib/LOCKING).  Callers
 * may hold the store's meta_mutex when calling pc_alloc_defer, and the
 * commit_mutex when calling pc_alloc_release_through (order: meta_mutex ->
 * alloc mutex, commit_mutex -> alloc mutex).  nblocks never changes.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/alloc.h"

struct deferred { uint64_t pblock, epoch; };

struct pc_alloc {
  pthread_mutex_t lock;         /* protects every field below but nblocks */
  uint64_t nblocks;             /* constant */
  uint64_t *bits;               /* A1, A3 */
  uint64_t *pend_bits;          /* A2 */
  uint64_t hint;                /* A3 */
  uint64_t used, pending;       /* A1 */
  uint64_t bad_puts;            /* A6 */
  struct deferred *def;         /* A5: live entries def[head .. ndef) */
  size_t head, ndef, capdef;
};

#define WORD(b) ((b) >> 6)
#define MASK(b) (UINT64_C (1) << ((b) & 63))

static void
alloc_lock (struct pc_alloc *a)
{
  pthread_mutex_lock (&a->lock);
}

static void
alloc_unlock (struct pc_alloc *a)
{
  pthread_mutex_unlock (&a->lock);
}

static uint64_t
nwords (const struct pc_alloc *a)
{
  return (a->nblocks + 63) / 64;
}

int
pc_alloc_create (uint64_t nblocks, struct pc_alloc **out)
{
  struct pc_alloc *a;
  size_t n = (size_t) ((nblocks + 63) / 64) ?: 1;

  if ((nblocks + 63) / 64 > SIZE_MAX / sizeof (uint64_t)) return -ENOMEM;
  a = calloc (1, sizeof *a);
  if (a == NULL) return -ENOMEM;
  a->bits = calloc (n, sizeof *a->bits);
  a->pend_bits = calloc (n, sizeof *a->pend_bits);
  if (a->bits == NULL || a->pend_bits == NULL) {
    free (a->bits); free (a->pend_bits); free (a);
    return -ENOMEM;
  }
  a->nblocks = nblocks;
  pthread_mutex_init (&a->lock, NULL);
  *out = a;
  return 0;
}

void
pc_alloc_destroy (struct pc_alloc *a)
{
  if (a == NULL) return;
  pthread_mutex_destroy (&a->lock);
  free (a->bits);
  free (a->pend_bits);
  free (a->def);
  free (a);
}

static bool
test_bit (const uint64_t *map, uint64_t b)
{
  return (map[WORD (b)] & MASK (b)) != 0;
}

int
pc_alloc_mark_used (struct pc_alloc *a, uint64_t pblock)
{
  int r = 0;

  if (pblock >= a->nblocks) return -ERANGE;
  alloc_lock (a);
  if (test_bit (a->bits, pblock)) r = -EEXIST;
  else { a->bits[WORD (pblock)] |= MASK (pblock); a->used++; }
  alloc_unlock (a);
  return r;
}

/* Lowest clear bit at or after the hint, or nblocks. */
static uint64_t
find_free_locked (const struct pc_alloc *a)
{
  for (uint64_t w = WORD (a->hint); w < nwords (a); w++) {
    uint64_t inv = ~a->bits[w];
    if (w == WORD (a->hint))
      inv &= ~(MASK (a->hint) - 1);              /* bits below the hint */
    if (inv) {
      uint64_t b = w * 64 + (uint64_t) __builtin_ctzll (inv);
      return b < a->nblocks ? b : a->nblocks;
    }
  }
  return a->nblocks;
}

int
pc_alloc_get (struct pc_alloc *a, uint64_t *pblock)
{
  uint64_t b;

  alloc_lock (a);
  b = find_free_locked (a);
  if (b < a->nblocks) {
    a->bits[WORD (b)] |= MASK (b);
    a->used++;
    a->hint = b + 1;                             /* A3 */
  }
  else
    a->hint = a->nblocks;                        /* full from hint on */
  alloc_unlock (a);
  if (b >= a->nblocks) return -ENOSPC;
  *pblock = b;
  return 0;
}

uint64_t
pc_alloc_lowest_free (struct pc_alloc *a)
{
  uint64_t b;

  alloc_lock (a);
  b = find_free_locked (a);
  alloc_unlock (a);
  return b;
}

int
pc_alloc_get_run (struct pc_alloc *a, unsigned max, uint64_t *first,
                  unsigned *n)
{
  uint64_t b;
  unsigned k = 0;

  alloc_lock (a);
  b = find_free_locked (a);
  while (b < a->nblocks && k < max && b + k < a->nblocks &&
         !test_bit (a->bits, b + k)) {
    a->bits[WORD (b + k)] |= MASK (b + k);
    k++;
  }
  a->used += k;
  a->hint = b + k;                               /* A3: b was the lowest */
  alloc_unlock (a);
  if (k == 0) return -ENOSPC;
  *first = b;
  *n = k;
  return 0;
}

static void
clear_locked (struct pc_alloc *a, uint64_t b)
{
  a->bits[WORD (b)] &= ~MASK (b);
  if (b < a->hint) a->hint = b;                  /* A3, lowest-first */
}

/* A block that is free, pending or out of range is ignored and counted
 * (A6): the store never does this, so pc_alloc_verify reports it. */
void
pc_alloc_put_now (struct pc_alloc *a, uint64_t pblock)
{
  alloc_lock (a);
  if (pblock < a->nblocks && test_bit (a->bits, pblock) &&
      !test_bit (a->pend_bits, pblock)) {
    clear_locked (a, pblock);
    a->used--;
  }
  else
    a->bad_puts++;
  alloc_unlock (a);
}

/* Make room for one more deferred entry (compacting out released ones
 * first).  0 or -ENOMEM. */
static int
def_reserve_locked (struct pc_alloc *a)
{
  size_t cap;
  struct deferred *d;

  if (a->head > 0) {
    memmove (a->def, a->def + a->head, (a->ndef - a->head) * sizeof *a->def);
    a->ndef -= a->head;
    a->head = 0;
  }
  if (a->ndef < a->capdef) return 0;
  cap = a->capdef ? a->capdef * 2 : 1024;
  d = realloc (a->def, cap * sizeof *d);
  if (d == NULL) return -ENOMEM;
  a->def = d;
  a->capdef = cap;
  return 0;
}

/* Insert keeping A5: after every entry with epoch <= this one. */
static void
def_insert_locked (struct pc_alloc *a, uint64_t pblock, uint64_t epoch)
{
  size_t lo = a->head, hi = a->ndef;

  while (lo < hi) {                              /* first entry > epoch */
    size_t mid = lo + (hi - lo) / 2;
    if (a->def[mid].epoch <= epoch) lo = mid + 1;
    else hi = mid;
  }
  memmove (a->def + lo + 1, a->def + lo, (a->ndef - lo) * sizeof *a->def);
  a->def[lo] = (struct deferred) { pblock, epoch };
  a->ndef++;
}

int
pc_alloc_defer (struct pc_alloc *a, uint64_t pblock, uint64_t epoch)
{
  int r = 0;

  if (pblock >= a->nblocks) return -ERANGE;
  alloc_lock (a);
  if (!test_bit (a->bits, pblock) || test_bit (a->pend_bits, pblock))
    r = -EINVAL;                                 /* double free (A2) */
  else if (a->ndef == a->capdef)
    r = def_reserve_locked (a);
  if (r == 0) {
    def_insert_locked (a, pblock, epoch);
    a->pend_bits[WORD (pblock)] |= MASK (pblock);
    a->used--;
    a->pending++;
  }
  alloc_unlock (a);
  return r;
}

void
pc_alloc_release_through (struct pc_alloc *a, uint64_t epoch)
{
  alloc_lock (a);
  while (a->head < a->ndef && a->def[a->head].epoch <= epoch) {  /* A4, A5 */
    uint64_t b = a->def[a->head++].pblock;
    a->pend_bits[WORD (b)] &= ~MASK (b);
    clear_locked (a, b);
    a->pending--;
  }
  if (a->head == a->ndef) a->head = a->ndef = 0;
  alloc_unlock (a);
}

static int
cmp_u64 (const void *x, const void *y)
{
  uint64_t a = *(const uint64_t *) x, b = *(const uint64_t *) y;
  return a < b ? -1 : a > b;
}

int64_t
pc_alloc_releasable (struct pc_alloc *a, uint64_t epoch, uint64_t **out)
{
  size_t i, n = 0;
  uint64_t *v;

  *out = NULL;
  alloc_lock (a);
  while (a->head + n < a->ndef && a->def[a->head + n].epoch <= epoch)
    n++;                                         /* A5: a prefix */
  v = n ? malloc (n * sizeof *v) : NULL;
  for (i = 0; v && i < n; i++)
    v[i] = a->def[a->head + i].pblock;
  alloc_unlock (a);
  if (n && v == NULL) return -ENOMEM;
  if (n) qsort (v, n, sizeof *v, cmp_u64);
  *out = v;
  return (int64_t) n;
}

void
pc_alloc_get_stats (struct pc_alloc *a, struct pc_alloc_stats *out)
{
  alloc_lock (a);
  out->nblocks = a->nblocks;
  out->used = a->used;
  out->pending = a->pending;
  out->free = a->nblocks - a->used - a->pending;
  alloc_unlock (a);
}

int
pc_alloc_is_used (struct pc_alloc *a, uint64_t pblock)
{
  int r;

  if (pblock >= a->nblocks) return -ERANGE;
  alloc_lock (a);
  r = test_bit (a->bits, pblock);
  alloc_unlock (a);
  return r;
}

/* A1, A2 (counts), A3.  Bits past nblocks in the last word must be clear. */
static bool
bits_ok_locked (const struct pc_alloc *a)
{
  uint64_t set = 0, pend = 0, w;

  for (w = 0; w < nwords (a); w++) {
    set += (uint64_t) __builtin_popcountll (a->bits[w]);
    pend += (uint64_t) __builtin_popcountll (a->pend_bits[w]);
    if ((a->pend_bits[w] & ~a->bits[w]) != 0) return false;
  }
  if (a->nblocks % 64 && (a->bits[nwords (a) - 1] >> (a->nblocks % 64)) != 0)
    return false;
  for (w = 0; w < WORD (a->hint); w++)
    if (~a->bits[w] != 0) return false;
  if (a->hint < a->nblocks && (~a->bits[WORD (a->hint)] & (MASK (a->hint) - 1)))
    return false;
  return a->hint <= a->nblocks && set == a->used + a->pending &&
    pend == a->pending && a->ndef - a->head == a->pending;
}

/* A2 (entries), A5. */
static bool
list_ok_locked (const struct pc_alloc *a)
{
  for (size_t i = a->head; i < a->ndef; i++) {
    const struct deferred *d = &a->def[i];
    if (d->pblock >= a->nblocks || !test_bit (a->pend_bits, d->pblock))
      return false;
    if (i > a->head && d[-1].epoch > d->epoch) return false;
  }
  return true;
}

int
pc_alloc_verify (struct pc_alloc *a)
{
  bool ok;

  alloc_lock (a);
  ok = a->used + a->pending <= a->nblocks && a->bad_puts == 0 &&
    bits_ok_locked (a) && list_ok_locked (a);
  alloc_unlock (a);
  return ok ? 0 : -EUCLEAN;
}
