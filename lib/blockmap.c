/* punchcache: the per-volume forward map, logical block -> physical block.
 *
 * What: a three-level radix tree of 64-bit entries.
 *
 *   top[]  (ceil(nblocks / 2^24) pointers, allocated at create)
 *     -> mid node: 4096 pointers          (each covers 2^24 blocks)
 *          -> leaf: 4096 uint64_t entries (each covers 2^12 blocks)
 *
 * Why: RAM must follow *touched* regions, not volume size (SPEC §5: a
 * mostly empty 64 TiB volume is cheap): untouched subtrees are NULL, a
 * 64 TiB volume of 64 KiB blocks has a 64-pointer top array, and a leaf
 * costs 32 KiB per 4096 touched-neighbourhood blocks (8 bytes per block,
 * 0.012% of data at 64 KiB).  A radix tree (rather than a hash or B-tree)
 * gives lock-free lookups with plain atomic loads, and lets next_mapped()
 * skip empty subtrees wholesale for block status on sparse volumes.
 *
 * Entries hold pblock + 1, so calloc'd leaves are empty (0 = unmapped).
 *
 * Invariants:
 *  BM1 A node pointer, once published, never changes until destroy/resize
 *      (nodes are published with compare-and-swap; losers free theirs).
 *  BM2 count == number of non-zero entries (atomic; pc_blockmap_verify).
 *  BM3 No entry at index >= nblocks is non-zero.
 *
 * Concurrency: lookups are lock-free (acquire loads).  Writers of the
 * *same* entry must be serialised by the caller (the store holds the
 * invalidate lock exclusive or the per-block allocation lock); writers of
 * different entries may run concurrently.  pc_blockmap_resize requires that
 * no other thread uses the map.  No locks inside.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "punchcache/blockmap.h"

#define LEAF_BITS 12
#define MID_BITS 12
#define LEAF_SIZE (1u << LEAF_BITS)
#define MID_SIZE (1u << MID_BITS)
#define TOP_SHIFT (LEAF_BITS + MID_BITS)
#define MAX_NBLOCKS (UINT64_C (1) << 48)

struct mid { uint64_t *leaf[MID_SIZE]; };

struct pc_blockmap {
  uint64_t nblocks;
  uint64_t ntop;
  struct mid **top;
  uint64_t count;               /* BM2, atomic */
  size_t memory;                /* bytes, atomic */
};

static uint64_t
top_entries (uint64_t nblocks)
{
  return (nblocks + (UINT64_C (1) << TOP_SHIFT) - 1) >> TOP_SHIFT;
}

int
pc_blockmap_create (uint64_t nblocks, struct pc_blockmap **out)
{
  struct pc_blockmap *m;

  if (nblocks == 0 || nblocks > MAX_NBLOCKS)
    return -EINVAL;
  m = calloc (1, sizeof *m);
  if (m == NULL) return -ENOMEM;
  m->nblocks = nblocks;
  m->ntop = top_entries (nblocks);
  m->top = calloc (m->ntop, sizeof *m->top);
  if (m->top == NULL) { free (m); return -ENOMEM; }
  m->memory = sizeof *m + m->ntop * sizeof *m->top;
  *out = m;
  return 0;
}

void
pc_blockmap_destroy (struct pc_blockmap *m)
{
  uint64_t t;
  unsigned i;

  if (m == NULL) return;
  for (t = 0; t < m->ntop; t++) {
    if (m->top[t] == NULL) continue;
    for (i = 0; i < MID_SIZE; i++)
      free (m->top[t]->leaf[i]);
    free (m->top[t]);
  }
  free (m->top);
  free (m);
}

uint64_t
pc_blockmap_nblocks (const struct pc_blockmap *m)
{
  return m->nblocks;
}

static uint64_t *
leaf_of (const struct pc_blockmap *m, uint64_t lb)
{
  struct mid *mid = __atomic_load_n (&m->top[lb >> TOP_SHIFT], __ATOMIC_ACQUIRE);

  if (mid == NULL) return NULL;
  return __atomic_load_n (&mid->leaf[(lb >> LEAF_BITS) & (MID_SIZE - 1)],
                          __ATOMIC_ACQUIRE);
}

uint64_t
pc_blockmap_get (const struct pc_blockmap *m, uint64_t lb)
{
  uint64_t *leaf, v;

  if (lb >= m->nblocks) return PC_NO_BLOCK;
  leaf = leaf_of (m, lb);
  if (leaf == NULL) return PC_NO_BLOCK;
  v = __atomic_load_n (&leaf[lb & (LEAF_SIZE - 1)], __ATOMIC_ACQUIRE);
  return v ? v - 1 : PC_NO_BLOCK;
}

/* Publish *slot = fresh unless someone else did first (BM1). */
static void *
publish (void **slot, void *fresh, size_t size, struct pc_blockmap *m)
{
  void *expected = NULL;

  if (fresh == NULL) return NULL;
  if (__atomic_compare_exchange_n (slot, &expected, fresh, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    __atomic_add_fetch (&m->memory, size, __ATOMIC_RELAXED);
    return fresh;
  }
  free (fresh);
  return expected;
}

static uint64_t *
leaf_create (struct pc_blockmap *m, uint64_t lb)
{
  struct mid **mslot = &m->top[lb >> TOP_SHIFT];
  struct mid *mid = __atomic_load_n (mslot, __ATOMIC_ACQUIRE);
  uint64_t **lslot, *leaf;

  if (mid == NULL)
    mid = publish ((void **) mslot, calloc (1, sizeof *mid), sizeof *mid, m);
  if (mid == NULL) return NULL;
  lslot = &mid->leaf[(lb >> LEAF_BITS) & (MID_SIZE - 1)];
  leaf = __atomic_load_n (lslot, __ATOMIC_ACQUIRE);
  if (leaf == NULL)
    leaf = publish ((void **) lslot, calloc (LEAF_SIZE, sizeof *leaf),
                    LEAF_SIZE * sizeof *leaf, m);
  return leaf;
}

int
pc_blockmap_set (struct pc_blockmap *m, uint64_t lb, uint64_t pb)
{
  uint64_t *leaf, old;

  if (lb >= m->nblocks || pb >= PC_NO_BLOCK - 1) return -ERANGE;
  leaf = leaf_create (m, lb);
  if (leaf == NULL) return -ENOMEM;
  old = __atomic_exchange_n (&leaf[lb & (LEAF_SIZE - 1)], pb + 1,
                             __ATOMIC_ACQ_REL);
  if (old == 0)
    __atomic_add_fetch (&m->count, 1, __ATOMIC_RELAXED);
  return 0;
}

uint64_t
pc_blockmap_clear (struct pc_blockmap *m, uint64_t lb)
{
  uint64_t *leaf, old;

  if (lb >= m->nblocks) return PC_NO_BLOCK;
  leaf = leaf_of (m, lb);
  if (leaf == NULL) return PC_NO_BLOCK;
  old = __atomic_exchange_n (&leaf[lb & (LEAF_SIZE - 1)], 0, __ATOMIC_ACQ_REL);
  if (old == 0) return PC_NO_BLOCK;
  __atomic_sub_fetch (&m->count, 1, __ATOMIC_RELAXED);
  return old - 1;
}

uint64_t
pc_blockmap_next_mapped (const struct pc_blockmap *m, uint64_t lb,
                         uint64_t end)
{
  if (end > m->nblocks) end = m->nblocks;
  while (lb < end) {
    struct mid *mid = __atomic_load_n (&m->top[lb >> TOP_SHIFT], __ATOMIC_ACQUIRE);
    uint64_t *leaf;
    if (mid == NULL) {                           /* skip 2^24 blocks */
      lb = ((lb >> TOP_SHIFT) + 1) << TOP_SHIFT;
      continue;
    }
    leaf = __atomic_load_n (&mid->leaf[(lb >> LEAF_BITS) & (MID_SIZE - 1)],
                            __ATOMIC_ACQUIRE);
    if (leaf == NULL) {                          /* skip 2^12 blocks */
      lb = ((lb >> LEAF_BITS) + 1) << LEAF_BITS;
      continue;
    }
    if (__atomic_load_n (&leaf[lb & (LEAF_SIZE - 1)], __ATOMIC_ACQUIRE))
      return lb;
    lb++;
  }
  return PC_NO_BLOCK;
}

int
pc_blockmap_resize (struct pc_blockmap *m, uint64_t new_nblocks)
{
  uint64_t ntop;
  struct mid **top;

  if (new_nblocks == 0 || new_nblocks > MAX_NBLOCKS)
    return -EINVAL;
  if (new_nblocks < m->nblocks &&
      pc_blockmap_next_mapped (m, new_nblocks, m->nblocks) != PC_NO_BLOCK)
    return -EBUSY;                               /* BM3 */
  ntop = top_entries (new_nblocks);
  if (ntop > m->ntop) {
    top = realloc (m->top, ntop * sizeof *top);
    if (top == NULL) return -ENOMEM;
    for (uint64_t t = m->ntop; t < ntop; t++) top[t] = NULL;
    m->memory += (ntop - m->ntop) * sizeof *top;
    m->top = top;
    m->ntop = ntop;
  }
  m->nblocks = new_nblocks;
  return 0;
}

uint64_t
pc_blockmap_count (const struct pc_blockmap *m)
{
  return __atomic_load_n (&m->count, __ATOMIC_RELAXED);
}

size_t
pc_blockmap_memory (const struct pc_blockmap *m)
{
  return __atomic_load_n (&m->memory, __ATOMIC_RELAXED);
}

int
pc_blockmap_verify (const struct pc_blockmap *m)
{
  uint64_t n = 0, lb = 0;

  while ((lb = pc_blockmap_next_mapped (m, lb, UINT64_MAX)) != PC_NO_BLOCK) {
    n++;
    lb++;
  }
  return n == pc_blockmap_count (m) ? 0 : -EUCLEAN;
}
