/* punchcache: the physical block allocator.
 *
 * What: hands out free physical blocks, lowest first, and holds freed
 * blocks back until the commit that records their freeing is durable.
 *
 * Data structure: a bitmap (1 bit per block: 1 = in use or pending) with a
 * hint, the lowest index that may be free; and a FIFO array of deferred
 * frees (pblock, epoch).  Why: one bit per block keeps the allocator at
 * 2 MiB per TiB of 64 KiB blocks whatever is allocated; lowest-first keeps
 * live data, and the reverse-map pages describing it, dense at the start
 * of the pool, and reuses freed blocks soon (which the race tests rely on
 * to turn a missing invalidate lock into visible foreign reads).
 *
 * Invariants:
 *  A1 popcount(bitmap) == used + pending.
 *  A2 Every deferred entry's bit is set; a block is deferred at most once.
 *  A3 No bit below `hint` is clear.
 *  A4 (SPEC I3b) A deferred block's bit is cleared only by
 *     pc_alloc_release_through(e) with e >= its epoch.
 *
 * Locks: one mutex protects everything above; held for bitmap scans and
 * list updates only, never across I/O.  The store calls pc_alloc_defer
 * while holding its meta_mutex (order: meta_mutex -> alloc mutex).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "punchcache/alloc.h"

struct deferred { uint64_t pblock, epoch; };

struct pc_alloc {
  pthread_mutex_t lock;
  uint64_t nblocks;
  uint64_t *bits;
  uint64_t *pend_bits;          /* 1 = on the deferred list (A2) */
  uint64_t hint;                /* A3 */
  uint64_t used, pending;
  struct deferred *def;         /* deferred frees, ndef of them */
  size_t ndef, capdef;
};

#define WORD(b) ((b) >> 6)
#define MASK(b) (UINT64_C (1) << ((b) & 63))

int
pc_alloc_create (uint64_t nblocks, struct pc_alloc **out)
{
  struct pc_alloc *a = calloc (1, sizeof *a);

  if (a == NULL) return -ENOMEM;
  a->bits = calloc ((nblocks + 63) / 64 ?: 1, sizeof *a->bits);
  a->pend_bits = calloc ((nblocks + 63) / 64 ?: 1, sizeof *a->pend_bits);
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
test_bit (const struct pc_alloc *a, uint64_t b)
{
  return (a->bits[WORD (b)] & MASK (b)) != 0;
}

int
pc_alloc_mark_used (struct pc_alloc *a, uint64_t pblock)
{
  int r = 0;

  if (pblock >= a->nblocks) return -ERANGE;
  pthread_mutex_lock (&a->lock);
  if (test_bit (a, pblock)) r = -EEXIST;
  else { a->bits[WORD (pblock)] |= MASK (pblock); a->used++; }
  pthread_mutex_unlock (&a->lock);
  return r;
}

/* Lowest clear bit at or after the hint, or nblocks. */
static uint64_t
find_free_locked (struct pc_alloc *a)
{
  uint64_t w, nwords = (a->nblocks + 63) / 64;

  for (w = WORD (a->hint); w < nwords; w++) {
    uint64_t inv = ~a->bits[w];
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

  pthread_mutex_lock (&a->lock);
  b = find_free_locked (a);
  if (b < a->nblocks) {
    a->bits[WORD (b)] |= MASK (b);
    a->used++;
    a->hint = b + 1;
  }
  else
    a->hint = a->nblocks;
  pthread_mutex_unlock (&a->lock);
  if (b >= a->nblocks) return -ENOSPC;
  *pblock = b;
  return 0;
}

static void
clear_locked (struct pc_alloc *a, uint64_t b)
{
  a->bits[WORD (b)] &= ~MASK (b);
  if (b < a->hint) a->hint = b;                  /* A3 */
}

void
pc_alloc_put_now (struct pc_alloc *a, uint64_t pblock)
{
  if (pblock >= a->nblocks) return;
  pthread_mutex_lock (&a->lock);
  if (test_bit (a, pblock) && !(a->pend_bits[WORD (pblock)] & MASK (pblock))) {
    clear_locked (a, pblock);
    a->used--;
  }
  pthread_mutex_unlock (&a->lock);
}

int
pc_alloc_defer (struct pc_alloc *a, uint64_t pblock, uint64_t epoch)
{
  int r = 0;

  if (pblock >= a->nblocks) return -ERANGE;
  pthread_mutex_lock (&a->lock);
  if (!test_bit (a, pblock) || (a->pend_bits[WORD (pblock)] & MASK (pblock)))
    r = -EINVAL;                                 /* double free (A2) */
  else if (a->ndef == a->capdef) {
    size_t cap = a->capdef ? a->capdef * 2 : 1024;
    struct deferred *d = realloc (a->def, cap * sizeof *d);
    if (d == NULL) r = -ENOMEM;
    else { a->def = d; a->capdef = cap; }
  }
  if (r == 0) {
    a->def[a->ndef++] = (struct deferred) { pblock, epoch };
    a->pend_bits[WORD (pblock)] |= MASK (pblock);
    a->used--;
    a->pending++;
  }
  pthread_mutex_unlock (&a->lock);
  return r;
}

void
pc_alloc_release_through (struct pc_alloc *a, uint64_t epoch)
{
  size_t i, keep = 0;

  pthread_mutex_lock (&a->lock);
  for (i = 0; i < a->ndef; i++) {
    if (a->def[i].epoch <= epoch) {              /* A4 */
      uint64_t b = a->def[i].pblock;
      a->pend_bits[WORD (b)] &= ~MASK (b);
      clear_locked (a, b);
      a->pending--;
    }
    else
      a->def[keep++] = a->def[i];
  }
  a->ndef = keep;
  pthread_mutex_unlock (&a->lock);
}

void
pc_alloc_get_stats (struct pc_alloc *a, struct pc_alloc_stats *out)
{
  pthread_mutex_lock (&a->lock);
  out->nblocks = a->nblocks;
  out->used = a->used;
  out->pending = a->pending;
  out->free = a->nblocks - a->used - a->pending;
  pthread_mutex_unlock (&a->lock);
}

int
pc_alloc_is_used (struct pc_alloc *a, uint64_t pblock)
{
  int r;

  if (pblock >= a->nblocks) return -ERANGE;
  pthread_mutex_lock (&a->lock);
  r = test_bit (a, pblock);
  pthread_mutex_unlock (&a->lock);
  return r;
}

int
pc_alloc_verify (struct pc_alloc *a)
{
  uint64_t w, set = 0, nwords = (a->nblocks + 63) / 64;
  int r = 0;
  size_t i;

  pthread_mutex_lock (&a->lock);
  for (w = 0; w < nwords; w++)
    set += (uint64_t) __builtin_popcountll (a->bits[w]);
  if (set != a->used + a->pending || a->pending != a->ndef)   /* A1 */
    r = -EUCLEAN;
  for (i = 0; i < a->ndef; i++)                               /* A2 */
    if (!test_bit (a, a->def[i].pblock)) r = -EUCLEAN;
  for (w = 0; w < a->hint && w < a->nblocks; w++)             /* A3 */
    if (!test_bit (a, w)) { r = -EUCLEAN; break; }
  pthread_mutex_unlock (&a->lock);
  return r;
}
