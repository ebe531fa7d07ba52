/* punchcache: the per-volume forward map, logical block -> physical block.
 *
 * What: a three-level radix tree of 64-bit entries.
 *
 *   top[]  ntop = ceil(nblocks / 2^24) pointers, allocated at create
 *     |
 *     +--> mid node: 4096 pointers         (each mid covers 2^24 blocks)
 *            |
 *            +--> leaf: 4096 uint64_t      (each leaf covers 2^12 blocks)
 *
 *   lblock = [ top index : 24.. | mid index : 12..23 | leaf index : 0..11 ]
 *
 * Why: RAM must follow *touched* regions, not the volume size (a mostly
 * empty 64 TiB volume is cheap): untouched subtrees are NULL, a 64 TiB volume
 * of 64 KiB blocks has a 64-pointer top array, and a leaf costs 32 KiB per
 * 4096 neighbouring blocks (8 bytes per mapped block: 0.012% of the data at
 * 64 KiB blocks once a region is dense).  A radix tree (rather than a hash
 * or a B-tree) gives lock-free lookups with plain atomic loads, never moves
 * an entry once its node exists, and lets next_mapped() skip empty subtrees
 * wholesale (block status on huge sparse volumes).  Cost at the extreme: the
 * top array is 8 bytes per 2^24 blocks, i.e. 128 MiB for the largest volume
 * (2^48 blocks); calloc gives it untouched zero pages.
 *
 * Entries hold pblock + 1, so calloc'd leaves are empty (0 = unmapped).
 *
 * Invariants (pc_blockmap_verify checks BM2-BM4):
 *  BM1 A node pointer, once published, never changes and the node is never
 *      freed until destroy or a shrinking resize (nodes are published with
 *      compare-and-swap; a thread that loses the race frees its own node
 *      and uses the winner's).  Hence a reader holding a node pointer may
 *      keep using it.
 *  BM2 count == number of non-zero entries in the tree.
 *  BM3 No entry at index >= nblocks is non-zero.
 *  BM4 memory == sizeof (struct pc_blockmap) + the top array + every
 *      published mid and leaf.
 *
 * Concurrency (no locks inside):
 *  - get / next_mapped / count / memory are lock-free (acquire loads) and
 *    may run concurrently with set and clear.
 *  - set / clear of the SAME entry must be serialised by the caller (the
 *    store holds the invalidate lock exclusive or the per-block allocation
 *    lock).  Entries are swapped with an atomic exchange, so even a caller
 *    breaking that rule cannot corrupt count (BM2); it only loses one of the
 *    two mappings.
 *  - set / clear of DIFFERENT entries may run concurrently from any number
 *    of threads: node creation is a CAS (BM1), count and memory are atomic.
 *  - pc_blockmap_resize requires that NO other thread uses the map (it may
 *    realloc the top array under lock-free readers, and frees nodes on
 *    shrink).  The store only resizes volumes that nobody has open.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "punchcache/blockmap.h"

#define LEAF_BITS 12
#define MID_BITS 12
#define LEAF_SIZE (UINT64_C (1) << LEAF_BITS)
#define MID_SIZE (UINT64_C (1) << MID_BITS)
#define TOP_SHIFT (LEAF_BITS + MID_BITS)
#define MAX_NBLOCKS (UINT64_C (1) << 48)

struct mid { uint64_t *leaf[MID_SIZE]; };

#define LEAF_BYTES (LEAF_SIZE * sizeof (uint64_t))

struct pc_blockmap {
  uint64_t nblocks;             /* BM3; changed only by resize */
  uint64_t ntop;                /* entries in top[]; changed only by resize */
  struct mid **top;             /* BM1: slots written by CAS only */
  uint64_t count;               /* BM2; atomic */
  size_t memory;                /* BM4; atomic */
};

static uint64_t
top_entries (uint64_t nblocks)
{
  return (nblocks + (UINT64_C (1) << TOP_SHIFT) - 1) >> TOP_SHIFT;
}

static uint64_t
mid_index (uint64_t lb)
{
  return (lb >> LEAF_BITS) & (MID_SIZE - 1);
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

/* Free one mid and its leaves; returns the bytes freed. */
static size_t
free_mid (struct mid *mid)
{
  size_t bytes = sizeof *mid;

  for (uint64_t i = 0; i < MID_SIZE; i++) {
    if (mid->leaf[i] == NULL) continue;
    free (mid->leaf[i]);
    bytes += LEAF_BYTES;
  }
  free (mid);
  return bytes;
}

void
pc_blockmap_destroy (struct pc_blockmap *m)
{
  if (m == NULL) return;
  for (uint64_t t = 0; t < m->ntop; t++)
    if (m->top[t]) free_mid (m->top[t]);
  free (m->top);
  free (m);
}

uint64_t
pc_blockmap_nblocks (const struct pc_blockmap *m)
{
  return m->nblocks;
}

/* The leaf holding lb, or NULL if not yet created.  lb < ntop << TOP_SHIFT. */
static uint64_t *
leaf_of (const struct pc_blockmap *m, uint64_t lb)
{
  struct mid *mid = __atomic_load_n (&m->top[lb >> TOP_SHIFT], __ATOMIC_ACQUIRE);

  if (mid == NULL) return NULL;
  return __atomic_load_n (&mid->leaf[mid_index (lb)], __ATOMIC_ACQUIRE);
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

/* Publish *slot = fresh unless another thread did first (BM1).  Returns the
 * node now in the slot, or NULL if fresh is NULL (out of memory). */
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
  free (fresh);                                  /* lost the race */
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
  lslot = &mid->leaf[mid_index (lb)];
  leaf = __atomic_load_n (lslot, __ATOMIC_ACQUIRE);
  if (leaf == NULL)
    leaf = publish ((void **) lslot, calloc (LEAF_SIZE, sizeof *leaf),
                    LEAF_BYTES, m);
  return leaf;
}

int
pc_blockmap_set (struct pc_blockmap *m, uint64_t lb, uint64_t pb)
{
  uint64_t *leaf, old;

  if (lb >= m->nblocks || pb >= PC_NO_BLOCK) return -ERANGE;
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

/* Round lb up to the next multiple of 2^shift. */
static uint64_t
next_boundary (uint64_t lb, unsigned shift)
{
  return ((lb >> shift) + 1) << shift;
}

/* First mapped entry of leaf in [lb, min(end, leaf end)), or PC_NO_BLOCK. */
static uint64_t
scan_leaf (const uint64_t *leaf, uint64_t lb, uint64_t end)
{
  uint64_t stop = next_boundary (lb, LEAF_BITS);

  if (stop > end) stop = end;
  for (; lb < stop; lb++)
    if (__atomic_load_n (&leaf[lb & (LEAF_SIZE - 1)], __ATOMIC_ACQUIRE))
      return lb;
  return PC_NO_BLOCK;
}

uint64_t
pc_blockmap_next_mapped (const struct pc_blockmap *m, uint64_t lb,
                         uint64_t end)
{
  if (end > m->nblocks) end = m->nblocks;
  while (lb < end) {
    struct mid *mid = __atomic_load_n (&m->top[lb >> TOP_SHIFT], __ATOMIC_ACQUIRE);
    uint64_t *leaf, found;

    if (mid == NULL) {                           /* skip 2^24 blocks */
      lb = next_boundary (lb, TOP_SHIFT);
      continue;
    }
    leaf = __atomic_load_n (&mid->leaf[mid_index (lb)], __ATOMIC_ACQUIRE);
    if (leaf && (found = scan_leaf (leaf, lb, end)) != PC_NO_BLOCK)
      return found;
    lb = next_boundary (lb, LEAF_BITS);          /* skip (rest of) a leaf */
  }
  return PC_NO_BLOCK;
}

/* Grow the top array to ntop slots (new slots NULL). */
static int
grow_top (struct pc_blockmap *m, uint64_t ntop)
{
  struct mid **top;

  if (ntop > SIZE_MAX / sizeof *top) return -ENOMEM;
  top = realloc (m->top, ntop * sizeof *top);
  if (top == NULL) return -ENOMEM;
  for (uint64_t t = m->ntop; t < ntop; t++) top[t] = NULL;
  m->memory += (ntop - m->ntop) * sizeof *top;
  m->top = top;
  m->ntop = ntop;
  return 0;
}

/* Free the mids wholly past a shrunk end (all empty: BM3 was checked) and
 * shrink the top array to ntop slots. */
static void
shrink_top (struct pc_blockmap *m, uint64_t ntop)
{
  struct mid **top;

  for (uint64_t t = ntop; t < m->ntop; t++)
    if (m->top[t]) m->memory -= free_mid (m->top[t]);
  m->memory -= (m->ntop - ntop) * sizeof *m->top;
  m->ntop = ntop;
  top = realloc (m->top, ntop * sizeof *top);
  if (top) m->top = top;                  /* else keep the larger array */
}

/* Context: no other thread uses the map (see the top of this file). */
int
pc_blockmap_resize (struct pc_blockmap *m, uint64_t new_nblocks)
{
  uint64_t ntop = top_entries (new_nblocks);
  int r = 0;

  if (new_nblocks == 0 || new_nblocks > MAX_NBLOCKS)
    return -EINVAL;
  if (new_nblocks < m->nblocks &&
      pc_blockmap_next_mapped (m, new_nblocks, m->nblocks) != PC_NO_BLOCK)
    return -EBUSY;                               /* BM3 */
  if (ntop > m->ntop) r = grow_top (m, ntop);
  else if (ntop < m->ntop) shrink_top (m, ntop);
  if (r == 0) m->nblocks = new_nblocks;
  return r;
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

/* Recount one leaf: *mapped += its non-zero entries; *beyond += those at
 * index >= nblocks (BM3).  base is the leaf's first lblock. */
static void
verify_leaf (const struct pc_blockmap *m, const uint64_t *leaf, uint64_t base,
             uint64_t *mapped, uint64_t *beyond)
{
  for (uint64_t i = 0; i < LEAF_SIZE; i++) {
    if (__atomic_load_n (&leaf[i], __ATOMIC_ACQUIRE) == 0) continue;
    (*mapped)++;
    if (base + i >= m->nblocks) (*beyond)++;
  }
}

/* Debug.  Exact only when no set/clear runs concurrently. */
int
pc_blockmap_verify (const struct pc_blockmap *m)
{
  uint64_t mapped = 0, beyond = 0;
  size_t bytes = sizeof *m + m->ntop * sizeof *m->top;

  for (uint64_t t = 0; t < m->ntop; t++) {
    struct mid *mid = __atomic_load_n (&m->top[t], __ATOMIC_ACQUIRE);
    if (mid == NULL) continue;
    bytes += sizeof *mid;
    for (uint64_t i = 0; i < MID_SIZE; i++) {
      uint64_t *leaf = __atomic_load_n (&mid->leaf[i], __ATOMIC_ACQUIRE);
      if (leaf == NULL) continue;
      bytes += LEAF_BYTES;
      verify_leaf (m, leaf, (t << TOP_SHIFT) | (i << LEAF_BITS),
                   &mapped, &beyond);
    }
  }
  if (mapped != pc_blockmap_count (m) || beyond != 0 ||      /* BM2, BM3 */
      bytes != pc_blockmap_memory (m))                       /* BM4 */
    return -EUCLEAN;
  return 0;
}
