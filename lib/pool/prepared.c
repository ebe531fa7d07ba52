/* punchcache: prepared blocks -- the pool's policy for handing out free
 * data blocks to writes that allocate (lib/core/volume.c) and taking back
 * the unused ones at close (lib/pool/store.c).
 *
 * On a file system, a write into a hole (a never-written or punched block)
 * takes the inode lock exclusive to allocate extents, and so does the punch
 * that clears a block for a partial write: every allocating write of the
 * pool serialises there (measured with fio here: 4K O_DIRECT writes, 16
 * threads, into holes 11.7k IOPS, into unwritten extents 74.7k).  So free
 * blocks are taken from the allocator in runs of up to PREP_BYTES and
 * zeroed with one FALLOC_FL_ZERO_RANGE per run, which leaves unwritten
 * extents that read as zeros and take aligned writes under the shared
 * lock.  The first block of a run is used at once; the rest wait in
 * pool->prep, in use for the allocator but published nowhere: after a
 * crash they are free again (nothing owns them), and pc_pool_close punches
 * them and hands them back.  Allocation stays lowest first: a prepared
 * block is used only while no lower block is free; a lower free block
 * (freed by a trim) starts a new run instead, and higher prepared blocks
 * wait.  A run holds at most PREP_BYTES of host space
 * that no volume uses yet.  Only where ZERO_RANGE works (can_zero_range)
 * and data I/O is O_DIRECT; elsewhere a block is cleared when taken.
 *
 * Why here, in the pool layer: this is allocation policy over the
 * allocator, the pool's I/O and its commit, and pc_pool_close must give the
 * prepared blocks back; keeping it beside them means the pool never calls
 * up into the data path (docs/design.md "Layers").
 *
 * Invariants:
 *  PB1 A prepared block is in use for the allocator and published nowhere
 *      (no map, no owner entry): after a crash it is free again.
 *  PB2 A prepared block reads as zeros (its run was zeroed with
 *      ZERO_RANGE before it was pushed).
 *  PB3 pool->prep holds at most PC_PREP_MAX blocks; a run is pushed
 *      highest block first, so pops hand it out lowest first.
 *  PB4 prep_busy counts the runs being taken and zeroed; a caller that
 *      finds the pool full waits while it is non-zero instead of failing
 *      with a spurious ENOSPC.
 *
 * Locks: prep_mutex, a leaf held for the stack operations only; the run's
 * ZERO_RANGE and the allocator calls happen with it released
 * (lib/LOCKING).  pc_pool_take_block may take commit_mutex (pc_store_commit)
 * when the pool is full but frees wait for their commit: it takes no range
 * lock, so calling it with the caller's range locks held cannot deadlock.
 */
#include <config.h>

#include <errno.h>
#include <sched.h>
#include <stdint.h>

#include "store-internal.h"

#define PREP_BYTES (1u << 20)

static unsigned
prep_run_max (struct pc_pool *pool)
{
  unsigned n = PREP_BYTES >> pool->block_shift;
  return n == 0 ? 1 : n > PC_PREP_MAX ? PC_PREP_MAX : n;
}

/* Pop a prepared block, if there is one below `below`. */
static bool
prep_pop (struct pc_pool *pool, uint64_t below, uint64_t *pb)
{
  bool ok;

  pthread_mutex_lock (&pool->prep_mutex);
  ok = pool->nprep > 0 && pool->prep[pool->nprep - 1] < below;
  if (ok) *pb = pool->prep[--pool->nprep];
  pthread_mutex_unlock (&pool->prep_mutex);
  return ok;
}

/* Take a run; if it is longer than one block, zero it and keep all but its
 * first block (returned in *pb, *clean); what does not fit in pool->prep
 * goes back to the allocator.  A lone free block (fragmented free space,
 * e.g. one a trim just freed) is returned as it is (not clean): zeroing it
 * would cost the same exclusive inode operation as clearing it on use. */
static int
prep_refill (struct pc_pool *pool, uint64_t *pb, bool *clean)
{
  uint64_t first;
  unsigned n, i;
  int r;

  __atomic_add_fetch (&pool->prep_busy, 1, __ATOMIC_SEQ_CST);
  r = pc_alloc_get_run (pool->alloc, prep_run_max (pool), &first, &n);
  if (r < 0 || n == 1)
    __atomic_sub_fetch (&pool->prep_busy, 1, __ATOMIC_SEQ_CST);
  if (r < 0)
    return r;
  if (n == 1) {
    *pb = first;
    *clean = false;
    return 0;
  }
  r = pc_io_zero_fast (&pool->io, (uint64_t) n << pool->block_shift,
                       pc_data_offset (pool, first));
  if (r < 0) {
    for (i = 0; i < n; i++) pc_alloc_put_now (pool->alloc, first + i);
    __atomic_sub_fetch (&pool->prep_busy, 1, __ATOMIC_SEQ_CST);
    return r;
  }
  pthread_mutex_lock (&pool->prep_mutex);
  /* Highest first, so pops hand out the run lowest first.  Afterwards
   * blocks first + 1 .. first + i (none if i == 0) were not kept. */
  for (i = n - 1; i >= 1 && pool->nprep < PC_PREP_MAX; i--)
    pool->prep[pool->nprep++] = first + i;
  pool->prep_runs++;
  pool->prep_blocks += n - i;
  pthread_mutex_unlock (&pool->prep_mutex);
  for (; i >= 1; i--)
    pc_alloc_put_now (pool->alloc, first + i);
  __atomic_sub_fetch (&pool->prep_busy, 1, __ATOMIC_SEQ_CST);
  *pb = first;
  *clean = true;
  return 0;
}

void
pc_pool_release_prepared (struct pc_pool *pool)
{
  uint64_t pb;

  while (prep_pop (pool, UINT64_MAX, &pb)) {
    pc_io_punch (&pool->io, pool->block_size, pc_data_offset (pool, pb));
    pc_alloc_put_now (pool->alloc, pb);
  }
}

/* A free block, and whether it is known to read as zeros (*clean).  If the
 * pool is full but trims have freed blocks that are waiting for their
 * commit (I3b), commit now so a trim frees space at once (SPEC §3), not at
 * the next FLUSH or background commit.  The commit takes no range lock,
 * so calling it with ours held cannot deadlock. */
int
pc_pool_take_block (struct pc_pool *pool, uint64_t *pb, bool *clean)
{
  struct pc_alloc_stats st;

  *clean = true;
  /* Lowest first still (lib/pool/alloc.c): a prepared block only if no lower
   * block is free, e.g. one a trim freed since the run was prepared. */
  if (prep_pop (pool, pc_alloc_lowest_free (pool->alloc), pb))
    return 0;
  if (pool->io.direct && __atomic_load_n (&pool->io.can_zero_range,
                                          __ATOMIC_RELAXED) &&
      prep_refill (pool, pb, clean) == 0)
    return 0;
  *clean = false;
  if (pc_alloc_get (pool->alloc, pb) == 0)
    return 0;
  pc_alloc_get_stats (pool->alloc, &st);
  if (st.pending > 0 && pc_store_commit (pool) == 0 &&
      pc_alloc_get (pool->alloc, pb) == 0)
    return 0;
  /* Nearly full: the last free blocks may be in another thread's run,
   * being zeroed; they are not gone, so wait for them (a run is one
   * fallocate long) rather than fail with a spurious ENOSPC.  busy is
   * read before the pop: a run that ended before it has been pushed. */
  for (;;) {
    bool busy = __atomic_load_n (&pool->prep_busy, __ATOMIC_SEQ_CST) > 0;
    if (prep_pop (pool, UINT64_MAX, pb)) {
      *clean = true;
      return 0;
    }
    if (pc_alloc_get (pool->alloc, pb) == 0)
      return 0;
    if (!busy && __atomic_load_n (&pool->prep_busy, __ATOMIC_SEQ_CST) == 0)
      return -ENOSPC;
    sched_yield ();
  }
}
