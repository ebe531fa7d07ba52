/* punchcache: the data path -- read, write, trim, zero, extents.
 *
 * What: turns byte-range requests on a volume into block operations on the
 * pool, under the invalidate lock (SPEC §2).  Requests are split into
 * labelled phases per block: an unaligned head, whole blocks, an unaligned
 * tail -- each handled by the same per-block function with an in-block
 * offset and length.
 *
 * Why: the invalidate lock (struct pc_vol_state.inval) is what closes the
 * race of SPEC §2.  A read holds it shared from the map lookup until its
 * data copy is done; a punch holds it exclusive from unmapping until the
 * freed block is handed to the allocator's deferred list; so no read can
 * be holding a physical block number that a punch has freed (I2, I3a), and
 * a freed block only returns to the allocator after its freeing is durable
 * (I3b, store.c ST2).  Writes hold it shared too, and take a second,
 * per-block *allocation* lock exclusive only when a block must be
 * allocated: two writes to one unallocated block allocate once, and a
 * failed write only returns the block it allocated itself and never
 * published (I5).
 *
 * Invariants:
 *  V1 (I1, I6) Once pc_trim returns, the range's blocks are unmapped (or
 *     zeroed in place for partial blocks); a later read sees zeros.
 *  V2 (I2) A physical block number obtained from the map is only used while
 *     the invalidate lock is held shared or exclusive over its block.
 *  V3 (I4) A mapping is published (map + reverse map) only after its data
 *     write returned.
 *  V4 (I5) A block is unpublished only by a punch holding the invalidate
 *     lock exclusive, or returned unpublished by the write that allocated it.
 *  V5 (I7) Extents report a hole only for an unmapped block, under the
 *     invalidate lock shared.
 *
 * Locks (lib/LOCKING): invalidate lock -> allocation lock -> (store's
 * commit_mutex -> meta_mutex -> allocator).  Range locks are held across
 * pool I/O by design (they are what orders I/O); no mutex is.
 *
 * Debug switches (struct pc_pool_options, set by `-D punchcache.*`):
 * unsafe_no_invalidate_lock makes punches skip the invalidate lock, and
 * race_delay_us sleeps between the map lookup and the pool I/O of reads and
 * in-place writes, so tests can show they catch the races; fail_write_every
 * makes every Nth allocating data write fail with EIO (fault injection for
 * the I5 test).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store-internal.h"

/* One block's share of a request. */
struct piece {
  uint64_t lblock;
  uint32_t off;                 /* offset within the block */
  uint32_t len;                 /* bytes within the block */
  uint64_t pos;                 /* offset of this piece within the request */
};

typedef int (*piece_fn) (struct pc_volume *vol, const struct piece *pc,
                         void *arg);

static inline struct pc_vol_state *
vstate (struct pc_volume *vol)
{
  return &vol->pool->vols[vol->slot];
}

static int
check_range (struct pc_volume *vol, uint64_t count, uint64_t offset)
{
  struct pc_vol_state *v = vstate (vol);

  if (count == 0 || offset > v->size || count > v->size - offset)
    return pc_error (EINVAL, "request of %" PRIu64 " bytes at offset %" PRIu64
                     " is outside volume '%s' (%" PRIu64 " bytes)",
                     count, offset, v->name, v->size);
  return 0;
}

static int
check_writable (struct pc_volume *vol)
{
  struct pc_pool *pool = vol->pool;

  if (pool->readonly)
    return pc_error (EROFS, "pool %s is open read-only", pool->path);
  if (pool->broken)
    return pc_error (EIO, "pool %s is unusable after a failed commit",
                     pool->path);
  return 0;
}

/* Call fn for each block piece: unaligned head, whole blocks, unaligned
 * tail, in ascending order; stop at the first error. */
static int
for_each_piece (struct pc_volume *vol, uint64_t count, uint64_t offset,
                piece_fn fn, void *arg)
{
  uint32_t bs = vol->pool->block_size;
  unsigned shift = vol->pool->block_shift;
  struct piece pc = { .pos = 0 };
  int r = 0;

  while (r == 0 && count > 0) {
    pc.lblock = offset >> shift;
    pc.off = (uint32_t) (offset & (bs - 1));
    pc.len = (uint32_t) (bs - pc.off < count ? bs - pc.off : count);
    r = fn (vol, &pc, arg);
    offset += pc.len; count -= pc.len; pc.pos += pc.len;
  }
  return r;
}

static void
block_span (struct pc_volume *vol, uint64_t count, uint64_t offset,
            uint64_t *first, uint64_t *n)
{
  unsigned shift = vol->pool->block_shift;

  *first = offset >> shift;
  *n = ((offset + count - 1) >> shift) - *first + 1;
}

static int
lock_range (struct pc_volume *vol, struct pc_range_token *tok, bool exclusive,
            uint64_t count, uint64_t offset)
{
  uint64_t first, n;
  int r;

  block_span (vol, count, offset, &first, &n);
  r = exclusive
    ? pc_rangelock_lock_exclusive (vstate (vol)->inval, tok, first, n)
    : pc_rangelock_lock_shared (vstate (vol)->inval, tok, first, n);
  return r < 0 ? pc_error (r, "invalidate lock: %s", strerror (-r)) : 0;
}

static void
race_delay (struct pc_pool *pool)
{
  if (pool->opts.race_delay_us)
    usleep (pool->opts.race_delay_us);
}

/* ---- read ---- */

static int
read_piece (struct pc_volume *vol, const struct piece *pc, void *buf)
{
  uint64_t pb = pc_blockmap_get (vstate (vol)->map, pc->lblock);
  char *dst = (char *) buf + pc->pos;

  if (pb == PC_NO_BLOCK) {
    memset (dst, 0, pc->len);
    return 0;
  }
  race_delay (vol->pool);
  return pc_io_pread (&vol->pool->io, dst, pc->len,
                      pc_data_offset (vol->pool, pb) + pc->off);
}

int
pc_read (struct pc_volume *vol, void *buf, uint64_t count, uint64_t offset)
{
  struct pc_range_token tok;
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0) return r;
  r = for_each_piece (vol, count, offset, read_piece, buf);
  pc_rangelock_unlock (&tok);
  return r;
}

/* ---- write ---- */

/* Fault injection (debug): should this allocating write fail? */
static bool
inject_write_failure (struct pc_pool *pool)
{
  static uint64_t count;
  unsigned n = pool->opts.fail_write_every;

  return n && __atomic_add_fetch (&count, 1, __ATOMIC_RELAXED) % n == 0;
}

/* A free block; if the pool is full but trims have freed blocks that are
 * waiting for their commit (I3b), commit now so a trim frees space at once
 * (SPEC §3), not at the next FLUSH or background commit.  The commit takes
 * no range lock, so calling it with ours held cannot deadlock. */
static int
get_block (struct pc_pool *pool, uint64_t *pb)
{
  struct pc_alloc_stats st;

  if (pc_alloc_get (pool->alloc, pb) == 0)
    return 0;
  pc_alloc_get_stats (pool->alloc, &st);
  if (st.pending == 0 || pc_store_commit (pool) < 0)
    return -ENOSPC;
  return pc_alloc_get (pool->alloc, pb);
}

/* Allocate, fill and publish lblock (allocation lock held). */
static int
allocate_block (struct pc_volume *vol, const struct piece *pc,
                const char *src)
{
  struct pc_pool *pool = vol->pool;
  uint64_t pb, off;
  int r;

  if (get_block (pool, &pb) < 0)
    return pc_error (ENOSPC, "pool %s is full (%" PRIu64 " blocks in use)",
                     pool->path, pool->sb.nblocks);
  off = pc_data_offset (pool, pb);
  r = 0;
  if (pc->len < pool->block_size || src == NULL)   /* rest must read 0 */
    r = pc_io_punch (&pool->io, pool->block_size, off);
  if (r == 0 && src)
    r = inject_write_failure (pool)
      ? pc_error (EIO, "injected write failure (debug switch)")
      : pc_io_pwrite (&pool->io, src, pc->len, off + pc->off);
  if (r == 0)
    r = pc_store_set_owner (pool, pb, pc_rmap_make (vol->slot, pc->lblock));
  if (r < 0) {
    pc_alloc_put_now (pool->alloc, pb);          /* V4: never published */
    return r;
  }
  return pc_blockmap_set (vstate (vol)->map, pc->lblock, pb);  /* V3 */
}

/* src == NULL: zero the piece (keeping it allocated). */
static int
write_piece_in_place (struct pc_volume *vol, const struct piece *pc,
                      const char *src, uint64_t pb)
{
  uint64_t off = pc_data_offset (vol->pool, pb) + pc->off;

  race_delay (vol->pool);
  return src ? pc_io_pwrite (&vol->pool->io, src, pc->len, off)
             : pc_io_zero (&vol->pool->io, pc->len, off);
}

static int
write_or_allocate (struct pc_volume *vol, const struct piece *pc,
                   const char *src)
{
  struct pc_vol_state *v = vstate (vol);
  struct pc_range_token tok;
  uint64_t pb = pc_blockmap_get (v->map, pc->lblock);
  int r;

  if (pb != PC_NO_BLOCK)
    return write_piece_in_place (vol, pc, src, pb);
  r = pc_rangelock_lock_exclusive (v->alloc_lock, &tok, pc->lblock, 1);
  if (r < 0) return pc_error (r, "allocation lock: %s", strerror (-r));
  pb = pc_blockmap_get (v->map, pc->lblock);     /* another writer won? */
  r = pb != PC_NO_BLOCK ? write_piece_in_place (vol, pc, src, pb)
                        : allocate_block (vol, pc, src);
  pc_rangelock_unlock (&tok);
  return r;
}

static int
write_piece (struct pc_volume *vol, const struct piece *pc, void *buf)
{
  return write_or_allocate (vol, pc, (const char *) buf + pc->pos);
}

/* After a request: commit if too many pages are dirty, or for FUA. */
static int
finish_update (struct pc_volume *vol, unsigned flags)
{
  struct pc_pool *pool = vol->pool;

  __atomic_store_n (&pool->data_dirty, true, __ATOMIC_SEQ_CST);
  if ((flags & PC_FUA) || pc_store_ndirty (pool) >= pool->txn_max / 2)
    return pc_store_commit (pool);
  return 0;
}

int
pc_write (struct pc_volume *vol, const void *buf, uint64_t count,
          uint64_t offset, unsigned flags)
{
  struct pc_range_token tok;
  int r;

  if ((r = check_writable (vol)) < 0) return r;
  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0) return r;
  r = for_each_piece (vol, count, offset, write_piece, (void *) buf);
  pc_rangelock_unlock (&tok);
  return r < 0 ? r : finish_update (vol, flags);
}

/* ---- trim and zero ---- */

static int
punch_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct pc_pool *pool = vol->pool;
  struct pc_vol_state *v = vstate (vol);
  uint64_t pb;
  int r;

  /* Partial block: zero in place.  The volume's last block, when the
   * size is not a multiple of the block size, counts as whole. */
  if (pc->len < pool->block_size &&
      !(pc->off == 0 &&
        (pc->lblock << pool->block_shift) + pc->len == v->size)) {
    pb = pc_blockmap_get (v->map, pc->lblock);
    return pb == PC_NO_BLOCK ? 0 :
      pc_io_punch (&pool->io, pc->len, pc_data_offset (pool, pb) + pc->off);
  }
  pb = pc_blockmap_clear (v->map, pc->lblock);  /* new readers see a hole */
  if (pb == PC_NO_BLOCK)
    return 0;
  r = pc_io_punch (&pool->io, pool->block_size, pc_data_offset (pool, pb));
  if (r == 0)
    r = pc_store_free_block (pool, pb);         /* reusable after commit */
  return r;
}

static int
zero_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  return write_or_allocate (vol, pc, NULL);
}

static int
punch_range (struct pc_volume *vol, uint64_t count, uint64_t offset,
             unsigned flags, piece_fn fn)
{
  struct pc_range_token tok;
  bool locked = !vol->pool->opts.unsafe_no_invalidate_lock;
  int r;

  if ((r = check_writable (vol)) < 0) return r;
  if ((r = check_range (vol, count, offset)) < 0) return r;
  if (locked && (r = lock_range (vol, &tok, true, count, offset)) < 0)
    return r;
  r = for_each_piece (vol, count, offset, fn, NULL);
  if (locked)
    pc_rangelock_unlock (&tok);
  return r < 0 ? r : finish_update (vol, flags);
}

int
pc_trim (struct pc_volume *vol, uint64_t count, uint64_t offset,
         unsigned flags)
{
  return punch_range (vol, count, offset, flags, punch_piece);
}

int
pc_zero (struct pc_volume *vol, uint64_t count, uint64_t offset,
         unsigned flags)
{
  return punch_range (vol, count, offset, flags,
                      (flags & PC_NO_HOLE) ? zero_piece : punch_piece);
}

int
pc_prefetch (struct pc_volume *vol, uint64_t count, uint64_t offset)
{
  return check_range (vol, count, offset);
}

/* ---- extents ---- */

struct extent_walk {
  int (*fn) (void *, uint64_t, uint64_t, bool);
  void *opaque;
  uint64_t start, end;          /* byte range requested */
};

static int
emit (struct pc_volume *vol, struct extent_walk *w, uint64_t lb_from,
      uint64_t lb_to, bool hole)
{
  unsigned shift = vol->pool->block_shift;
  uint64_t a = lb_from << shift, b = lb_to << shift;

  if (a < w->start) a = w->start;
  if (b > w->end) b = w->end;
  return a < b ? w->fn (w->opaque, a, b - a, hole) : 0;
}

int
pc_extents (struct pc_volume *vol, uint64_t count, uint64_t offset,
            int (*fn) (void *, uint64_t, uint64_t, bool), void *opaque)
{
  struct extent_walk w = { fn, opaque, offset, offset + count };
  struct pc_blockmap *map = vstate (vol)->map;
  struct pc_range_token tok;
  uint64_t lb, end, next;
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0) return r;
  block_span (vol, count, offset, &lb, &end);
  end += lb;
  while (r == 0 && lb < end) {
    next = pc_blockmap_next_mapped (map, lb, end);
    if (next == PC_NO_BLOCK) next = end;
    if (next > lb) {                            /* hole run */
      r = emit (vol, &w, lb, next, true);
      lb = next;
      continue;
    }
    while (next < end && pc_blockmap_get (map, next) != PC_NO_BLOCK)
      next++;                                   /* data run */
    r = emit (vol, &w, lb, next, false);
    lb = next;
  }
  pc_rangelock_unlock (&tok);
  return r;
}
