/* punchcache: the data path -- read, write, trim, zero, extents.
 *
 * What: turns byte-range requests on a volume into block operations on the
 * pool, under the invalidate lock (SPEC §2).  Requests are split into
 * labelled phases per block: an unaligned head, whole blocks, an unaligned
 * tail -- each handled by the same per-block function with an in-block
 * offset and length.
 *
 * Multi-block requests are batched: a read gathers up to 1 MiB of cache
 * pages (the read window) and a write up to 64 pieces (the write window)
 * whose pool transfers go out together (lib/io/iobatch.c, io_uring where
 * available) -- see read_range and write_piece.
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
 * published (I5).  Free blocks come from the pool layer
 * (pc_pool_take_block, lib/pool/prepared.c: runs zeroed ahead).
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
 * in-place writes, so tests can show they catch the races; fill_delay_us
 * sleeps between a read window's pool reads and its cache inserts (the
 * cache race test); fail_write_every makes every Nth allocating data write
 * fail with EIO (fault injection for the I5 test).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "punchcache/origin.h"
#include "punchcache/overlay.h"
#include "../pool/store-internal.h"

_Static_assert (PC_MAX_VOLUMES <= 0xffff, "slot must fit a cache key");
_Static_assert (PC_MIN_BLOCK_SIZE >= PC_CACHE_PAGE &&
                PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE <= PC_IO_MAX_IOV,
                "a block holds 1..PC_IO_MAX_IOV cache pages");
#define MAX_PAGES (PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE)

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

/* Cache pages touched by [offset, offset+count). */
static uint64_t
page_count (uint64_t count, uint64_t offset)
{
  return ((offset + count - 1) >> PC_CACHE_PAGE_SHIFT) -
    (offset >> PC_CACHE_PAGE_SHIFT) + 1;
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

/* ---- pool data I/O (O_DIRECT alignment) ---- */

#define ALIGN_DOWN(x) ((x) & ~(uint64_t) (PC_IO_ALIGN - 1))
#define ALIGN_UP(x) ALIGN_DOWN ((x) + PC_IO_ALIGN - 1)

static bool
is_aligned (const void *p, uint64_t count, uint64_t off)
{
  return (((uintptr_t) p | count | off) & (PC_IO_ALIGN - 1)) == 0;
}

/* Aligned bounce buffers.  Large ones are mapped and unmapped directly:
 * from malloc, each worker thread's arena would keep the largest it ever
 * used (glibc raises its mmap threshold after each large free), which
 * measured +45 MiB of RSS across nbdkit's workers after a 256K-write
 * load.  Page faults on a fresh mapping cost far less than the I/O. */
#define BOUNCE_MMAP_MIN (128u * 1024)

static void *
bounce_alloc (uint64_t bytes)
{
  void *p;

  if (bytes >= BOUNCE_MMAP_MIN) {
    p = mmap (NULL, bytes, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  return posix_memalign (&p, PC_IO_ALIGN, bytes) == 0 ? p : NULL;
}

static void
bounce_free (void *p, uint64_t bytes)
{
  if (p == NULL) return;
  if (bytes >= BOUNCE_MMAP_MIN) munmap (p, bytes);
  else free (p);
}

/* Write count bytes from src at pool offset off.  Under O_DIRECT a
 * misaligned request is widened to whole 4 KiB pages: the edge pages are
 * read first (read-modify-write; the caller holds the block's allocation
 * lock exclusive so two such writes cannot lose each other's bytes), or,
 * when fresh (a just-punched block), are known to be zeros. */
static int
pool_write (struct pc_pool *pool, const void *src, uint64_t count,
            uint64_t off, bool fresh)
{
  uint64_t lo = ALIGN_DOWN (off), hi = ALIGN_UP (off + count);
  bool head = off != lo, tail = off + count != hi;
  char *b;
  int r = 0;

  if (!pool->io.direct || is_aligned (src, count, off))
    return pc_io_pwrite_data (&pool->io, src, count, off);
  if ((b = bounce_alloc (hi - lo)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  if (fresh)
    memset (b, 0, hi - lo);
  else {
    if (head)
      r = pc_io_pread_data (&pool->io, b, PC_IO_ALIGN, lo);
    if (r == 0 && tail && !(head && hi - lo == PC_IO_ALIGN))
      r = pc_io_pread_data (&pool->io, b + (hi - lo - PC_IO_ALIGN),
                            PC_IO_ALIGN, hi - PC_IO_ALIGN);
  }
  if (r == 0) {
    memcpy (b + (off - lo), src, count);
    r = pc_io_pwrite_data (&pool->io, b, hi - lo, lo);
  }
  bounce_free (b, hi - lo);
  return r;
}

/* Does writing this piece need a read-modify-write of the pool? */
static bool
needs_rmw (struct pc_pool *pool, const struct piece *pc, const void *src)
{
  return pool->io.direct && src != NULL &&
    ((pc->off | pc->len) & (PC_IO_ALIGN - 1)) != 0;
}

/* ---- the origin (issue 15): from-origin blocks and fills ----
 *
 * A volume with an origin (v->omap) has three kinds of block
 * (lib/pool/omap.c): local (mapped, or reserved for dirty pages), punched
 * (reads zeros), from-origin (everything else).  A fill copies from-origin
 * blocks in from the origin: under the invalidate lock shared over them
 * (SPEC §2: a punch waits for it, then wins) and each block's allocation
 * lock exclusive, taken in ascending order and looked at again once held
 * (a write, a reservation or another fill that got there first wins; two
 * readers missing the same block make one origin request).  An origin
 * block of all zeros becomes punched, not allocated.  A write that covers
 * a from-origin block only partly fills it first (its other bytes are the
 * origin's); one that covers it whole just replaces it.
 *
 *  V6 (I1, I2, I6) No block is published from the origin unless it was
 *     from-origin with its allocation lock held, under the invalidate lock
 *     shared: a write, trim or zero that completed meanwhile is never
 *     overwritten by a late fill.
 *  V7 (I7) A from-origin block never reads as zeros unless the origin said
 *     so: a failed origin read is EIO, never a hole.
 */
#define FILL_MAX_BYTES (4u << 20)     /* one origin request at most */

static bool
from_origin (const struct pc_vol_state *v, uint64_t lb)
{
  return v->omap && lb < v->nblocks &&
    pc_blockmap_get (v->map, lb) == PC_NO_BLOCK &&
    pc_blockmap_get (v->resv, lb) == PC_NO_BLOCK &&
    !pc_omap_test (v->omap, lb);
}

static int
no_origin_error (struct pc_vol_state *v)
{
  return pc_error (EIO, "volume '%s' reads through origin %s, which is not "
                   "connected", v->name, v->omap->desc.uri);
}

static void
ostat_add (uint64_t *c, uint64_t n)
{
  __atomic_add_fetch (c, n, __ATOMIC_RELAXED);
}

static void
ostat_max (uint64_t *c, uint64_t n)
{
  uint64_t old = __atomic_load_n (c, __ATOMIC_RELAXED);
  while (n > old &&
         !__atomic_compare_exchange_n (c, &old, n, true, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED))
    ;
}

static bool
all_zero (const char *p, uint64_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

static uint64_t page_key (struct pc_volume *vol, uint64_t lblock,
                          uint32_t page);

/* Fill buffers (FILL_MAX_BYTES each) are kept for reuse, a few: a fresh
 * mapping per fill cost its page faults and zeroing -- clear_page and
 * the fault path were 12% of the server's CPU in a cold sequential read
 * (perf) -- and FILL_SPARE of them bound what stays mapped. */
#define FILL_SPARE 4u
static pthread_mutex_t fill_buf_mutex = PTHREAD_MUTEX_INITIALIZER;
static char *fill_bufs[FILL_SPARE];
static unsigned nfill_bufs;

static char *
fill_buf_get (void)
{
  char *b = NULL;

  pthread_mutex_lock (&fill_buf_mutex);
  if (nfill_bufs) b = fill_bufs[--nfill_bufs];
  pthread_mutex_unlock (&fill_buf_mutex);
  return b ? b : bounce_alloc (FILL_MAX_BYTES);
}

static void
fill_buf_put (char *b)
{
  pthread_mutex_lock (&fill_buf_mutex);
  if (nfill_bufs < FILL_SPARE) {
    fill_bufs[nfill_bufs++] = b;
    b = NULL;
  }
  pthread_mutex_unlock (&fill_buf_mutex);
  bounce_free (b, FILL_MAX_BYTES);
}

/* Put a fetched, published block's pages in the cache (the fill protocol:
 * the caller holds the invalidate lock shared; a write meanwhile voids the
 * ticket), so the read that fetched it, and the next ones, hit. */
static void
cache_block (struct pc_volume *vol, uint64_t lblock, const char *data)
{
  struct pc_cache *cache = vol->pool->cache;
  uint32_t pages = vol->pool->block_size >> PC_CACHE_PAGE_SHIFT;
  struct pc_cache_ticket t;

  for (uint32_t p = 0; cache && p < pages; p++)
    if (pc_cache_fill_begin (cache, page_key (vol, lblock, p), &t, NULL, 0,
                             0) == 0) {
      memcpy (t.buf, data + ((size_t) p << PC_CACHE_PAGE_SHIFT),
              PC_CACHE_PAGE);
      pc_cache_fill_end (cache, &t, true);
    }
}

/* One fill's origin read, in pieces of FILL_PIECE issued at once with
 * the origin client's asynchronous read, so they travel over its
 * connections in parallel: a 4 MiB read-ahead fill as one request was
 * one connection's transfer, and the fills of a sequential reader then
 * ran one after another (perf and the fill counters: 94 fills of 2.7 MiB
 * at 12 ms each took the whole 1.1 s of a 256 MiB cold read). */
#define FILL_PIECE (512u * 1024)

struct fill_wait {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  unsigned left;
  int result;
  char why[256];
};

static void
fill_piece_done (void *opaque, int result)
{
  struct fill_wait *fw = opaque;

  pthread_mutex_lock (&fw->mutex);
  if (result < 0 && fw->result == 0) {
    fw->result = result;
    snprintf (fw->why, sizeof fw->why, "%s", pc_last_error ());
  }
  if (--fw->left == 0)
    pthread_cond_signal (&fw->cond);
  pthread_mutex_unlock (&fw->mutex);
}

static int
origin_read (struct pc_origin *o, char *buf, uint64_t count, uint64_t off)
{
  struct fill_wait fw = { .result = 0 };
  uint64_t done;
  int r = 0;

  if (count <= FILL_PIECE)
    return pc_origin_pread (o, buf, count, off);
  pthread_mutex_init (&fw.mutex, NULL);
  pthread_cond_init (&fw.cond, NULL);
  pthread_mutex_lock (&fw.mutex);
  for (done = 0; done < count; done += FILL_PIECE) {
    uint64_t n = count - done < FILL_PIECE ? count - done : FILL_PIECE;
    fw.left++;
    pthread_mutex_unlock (&fw.mutex);
    r = pc_origin_pread_async (o, buf + done, n, off + done,
                               fill_piece_done, &fw);
    pthread_mutex_lock (&fw.mutex);
    if (r < 0) {              /* not queued: its callback never comes */
      fw.left--;
      if (fw.result == 0) {
        fw.result = r;
        snprintf (fw.why, sizeof fw.why, "%s", pc_last_error ());
      }
      break;
    }
  }
  while (fw.left > 0)
    pthread_cond_wait (&fw.cond, &fw.mutex);
  pthread_mutex_unlock (&fw.mutex);
  pthread_cond_destroy (&fw.cond);
  pthread_mutex_destroy (&fw.mutex);
  return fw.result < 0 ? pc_error (-fw.result, "%s", fw.why) : 0;
}

/* With write-back, a read's fill keeps a fetched block as dirty pages of
 * a reserved block (delayed allocation, like a write) instead of writing
 * it to the pool before the reader gets it: the reader waits for the
 * origin only, and write-back writes the block later, in its batches.  A
 * crash before that loses nothing: the block was, and is again,
 * from-origin.  Only below write-back's background threshold, so fills
 * never make writers wait at the dirty limit.  Returns true if the block
 * is now reserved with every page dirty; false: nothing changed (the
 * caller writes the block to the pool). */
static bool
fill_dirty (struct pc_volume *vol, uint64_t lblock, const char *data)
{
  struct pc_pool *pool = vol->pool;
  struct pc_vol_state *v = vstate (vol);
  uint32_t pages = pool->block_size >> PC_CACHE_PAGE_SHIFT, p;
  uint64_t seq;

  if (pool->wb == NULL ||
      pc_cache_dirty_pages (pool->cache) + pages > pool->dirty_background ||
      pc_wb_try_reserve (pool) < 0)
    return false;
  if (pc_blockmap_set (v->resv, lblock, 1) < 0) {
    pc_wb_unreserve (pool);
    return false;
  }
  seq = pc_wb_next_seq (pool);
  for (p = 0; p < pages; p++)
    if (pc_cache_write (pool->cache, page_key (vol, lblock, p),
                        data + ((size_t) p << PC_CACHE_PAGE_SHIFT), 0,
                        PC_CACHE_PAGE, NULL, seq) < 0)
      break;
  if (p == pages)
    return true;
  /* Not every page: undo (a reserved block's missing pages read zeros). */
  pc_cache_punch (pool->cache, page_key (vol, lblock, 0), pages);
  pc_blockmap_clear (v->resv, lblock);
  pc_wb_unreserve (pool);
  return false;
}

static int alloc_begin (struct pc_volume *vol, uint64_t lblock, bool clear,
                        uint64_t *pb, bool *clean);
static int alloc_publish (struct pc_volume *vol, const struct piece *pc,
                          uint64_t pb, int r);

/* Fill the k from-origin blocks at lb, whose allocation locks the caller
 * holds: one origin read, then each block is punched (zeros) or written
 * to a new block and published (V3, V6).  cache: put the pages in the
 * block cache too -- only for reads: a punch has dropped its range from
 * the cache before it fills the block it cuts into, and must not find the
 * pre-punch bytes there afterwards. */
static int
fill_run_locked (struct pc_volume *vol, uint64_t lb, unsigned k, bool cache)
{
  struct pc_pool *pool = vol->pool;
  struct pc_vol_state *v = vstate (vol);
  uint64_t bs = pool->block_size, start = lb << pool->block_shift;
  uint64_t bytes = (uint64_t) k * bs, t0 = pc_now_ns (), ns;
  uint64_t count = v->size - start < bytes ? v->size - start : bytes;
  struct pc_io_op op[FILL_MAX_BYTES / PC_MIN_BLOCK_SIZE];
  struct iovec iov[FILL_MAX_BYTES / PC_MIN_BLOCK_SIZE];
  uint64_t pbs[FILL_MAX_BYTES / PC_MIN_BLOCK_SIZE];
  unsigned i, nops = 0;
  char *buf;
  int r, first = 0;

  if (v->origin == NULL)
    return no_origin_error (v);
  if ((buf = fill_buf_get ()) == NULL)
    return pc_error (ENOMEM, "out of memory");
  r = origin_read (v->origin, buf, count, start);
  if (r < 0) {
    char why[400];
    snprintf (why, sizeof why, "%s", pc_last_error ());
    ostat_add (&v->ostats.errors, 1);
    fill_buf_put (buf);
    return pc_error (EIO, "volume '%s': reading blocks from its origin: %s",
                     v->name, why);                          /* V7 */
  }
  if (count < bytes) memset (buf + count, 0, bytes - count);
  ns = pc_now_ns () - t0;
  ostat_add (&v->ostats.fills, 1);
  ostat_add (&v->ostats.fill_blocks, k);
  ostat_add (&v->ostats.fill_bytes, count);
  ostat_add (&v->ostats.fill_ns_total, ns);
  ostat_max (&v->ostats.fill_ns_max, ns);
  for (i = 0; i < k; i++) {
    char *b = buf + i * bs;
    pbs[i] = PC_NO_BLOCK;
    if (all_zero (b, bs)) {
      ostat_add (&v->ostats.zero_blocks, 1);
      if ((r = pc_omap_mark (pool, v, lb + i)) < 0 && first == 0) first = r;
      continue;
    }
    if (cache && fill_dirty (vol, lb + i, b)) {
      ostat_add (&v->ostats.dirty_fills, 1);
      continue;
    }
    if ((r = alloc_begin (vol, lb + i, false, &pbs[i], NULL)) < 0) {
      if (first == 0) first = r;
      continue;
    }
    iov[nops] = (struct iovec) { b, bs };
    op[nops] = (struct pc_io_op) {
      .iov = &iov[nops], .iovcnt = 1, .write = true,
      .off = pc_data_offset (pool, pbs[i]),
    };
    nops++;
  }
  if (nops)
    pc_io_data_batch (&pool->io, op, nops);
  for (i = 0, nops = 0; i < k; i++) {
    struct piece pc = { .lblock = lb + i };
    if (pbs[i] == PC_NO_BLOCK) continue;
    r = alloc_publish (vol, &pc, pbs[i], op[nops++].result);
    if (r < 0 && first == 0) first = r;
    if (r == 0 && cache) cache_block (vol, lb + i, buf + i * bs);
  }
  fill_buf_put (buf);
  if (first == 0)
    __atomic_store_n (&pool->data_dirty, true, __ATOMIC_SEQ_CST);
  return first;
}

/* Fill every from-origin block of [lb, lb + n) (the caller holds the
 * invalidate lock over them), in runs of at most FILL_MAX_BYTES: V6.
 * A run that starts at or past `need` (read-ahead) may fail: its blocks
 * stay from-origin and the caller is not told. */
static int
origin_fill (struct pc_volume *vol, uint64_t lb, uint64_t n, uint64_t need)
{
  struct pc_vol_state *v = vstate (vol);
  unsigned max = FILL_MAX_BYTES >> vol->pool->block_shift;
  struct pc_range_token tok[FILL_MAX_BYTES / PC_MIN_BLOCK_SIZE];
  bool locked = !vol->pool->opts.unsafe_origin_fill;  /* debug: V6 off */
  uint64_t end = lb + n;
  bool filled = false;
  int r = 0;

  if (max == 0) max = 1;
  while (r == 0 && lb < end) {
    unsigned k = 0;
    if (!from_origin (v, lb)) { lb++; continue; }
    /* A run of from-origin blocks, each locked and looked at again. */
    while (k < max && lb + k < end && from_origin (v, lb + k)) {
      if (locked) {
        r = pc_rangelock_lock_exclusive (v->alloc_lock, &tok[k], lb + k, 1);
        if (r < 0) { r = pc_error (-r, "allocation lock: %s", strerror (-r)); break; }
        if (!from_origin (v, lb + k)) {       /* someone got there first */
          pc_rangelock_unlock (&tok[k]);
          break;
        }
      }
      k++;
    }
    if (r == 0 && k > 0) {
      race_delay (vol->pool);
      r = fill_run_locked (vol, lb, k, true);
      if (lb >= need) r = 0;                    /* read-ahead only */
      filled = true;
    }
    for (unsigned i = 0; locked && i < k; i++)
      pc_rangelock_unlock (&tok[i]);
    lb += k ? k : 1;
  }
  if (!filled) ostat_add (&v->ostats.local_reads, 1);
  return r;
}

/* Sequential read-ahead: a read that starts where the last one ended
 * also fills the blocks after it, in a window that doubles per sequential
 * read up to FILL_MAX_BYTES, in the same origin request as its own
 * blocks: a sequential reader pays one origin round trip per window, not
 * per request.  The window is only what the invalidate lock can be had
 * for at once, shared (*tok: never waits, since the reader holds a range
 * already), and only if its first block is still from-origin.  Returns
 * the number of blocks after first + n to fill (0: none, tok unused). */
static uint64_t
read_ahead (struct pc_volume *vol, uint64_t first, uint64_t n,
            struct pc_range_token *tok)
{
  struct pc_vol_state *v = vstate (vol);
  uint64_t start = first + n, want, ra;
  uint64_t max = FILL_MAX_BYTES >> vol->pool->block_shift;

  if (__atomic_exchange_n (&v->ra_next, start, __ATOMIC_RELAXED) != first) {
    __atomic_store_n (&v->ra_blocks, 0, __ATOMIC_RELAXED);
    return 0;
  }
  ra = __atomic_load_n (&v->ra_blocks, __ATOMIC_RELAXED);
  ra = ra ? ra * 2 : n;
  if (ra > max) ra = max;
  if (ra == 0) ra = 1;
  __atomic_store_n (&v->ra_blocks, ra, __ATOMIC_RELAXED);
  if (start >= v->nblocks || !from_origin (v, start))
    return 0;
  want = v->nblocks - start < ra ? v->nblocks - start : ra;
  /* The window after this one, in the background (overlay.c), so the
   * next fill is under way while this one is read. */
  if (ra == max && start + want < v->nblocks && from_origin (v, start + want)) {
    uint64_t n2 = v->nblocks - (start + want) < ra ? v->nblocks - (start + want)
                                                   : ra;
    uint64_t off = (start + want) << vol->pool->block_shift;
    uint64_t len = n2 << vol->pool->block_shift;
    if (off + len > v->size) len = v->size - off;
    pc_overlay_prefetch (v->prefetcher, off, len);
    ostat_add (&v->ostats.readahead_blocks, n2);
  }
  if (pc_rangelock_trylock_shared (v->inval, tok, start, want) < 0)
    return 0;
  ostat_add (&v->ostats.readahead_blocks, want);
  return want;
}

/* Does this piece cover its whole block (the volume's last block counts
 * whole up to the volume's end)? */
static bool
whole_piece (struct pc_volume *vol, const struct piece *pc)
{
  uint64_t start = pc->lblock << vol->pool->block_shift;
  uint64_t left = vstate (vol)->size - start;

  return pc->off == 0 &&
    pc->len == (left < vol->pool->block_size ? left : vol->pool->block_size);
}

/* For a write of pc into an unmapped block whose allocation lock the caller
 * holds: a from-origin block the write covers only partly is filled first. */
static int
fill_for_partial (struct pc_volume *vol, const struct piece *pc)
{
  if (!from_origin (vstate (vol), pc->lblock) || whole_piece (vol, pc))
    return 0;
  return fill_run_locked (vol, pc->lblock, 1, false);
}

/* Reads from a pool opened read-only, or full, cannot keep what they
 * fetch: the from-origin blocks of [offset, offset+count) are read
 * straight into buf (after the pool's part was read). */
static int
read_through (struct pc_volume *vol, char *buf, uint64_t count,
              uint64_t offset)
{
  struct pc_vol_state *v = vstate (vol);
  unsigned shift = vol->pool->block_shift;
  uint64_t end = offset + count, lb = offset >> shift;
  int r = 0;

  for (; r == 0 && (lb << shift) < end; lb++) {
    uint64_t a = lb << shift, b = (lb + 1) << shift;
    if (!from_origin (v, lb)) continue;
    if (a < offset) a = offset;
    if (b > end) b = end;
    r = v->origin ? pc_origin_pread (v->origin, buf + (a - offset), b - a, a)
                  : no_origin_error (v);
  }
  return r;
}

/* ---- read ---- */

static uint64_t
page_key (struct pc_volume *vol, uint64_t lblock, uint32_t page)
{
  return PC_CACHE_KEY (vol->slot,
                       (lblock << (vol->pool->block_shift - PC_CACHE_PAGE_SHIFT))
                       + page);
}

/* Reads go through a window of up to WINDOW_PAGES cache pages (1 MiB),
 * gathered over as many blocks of the request as fit (SPEC §2 for every
 * page of it):
 *  1. add: per block piece, copy out the pages the cache has and reserve
 *     the others (pc_cache_fill_begin); each run of consecutive missing
 *     pages of one block becomes one scatter read (an op) straight into
 *     the reserved cache pages -- into the caller's buffer where no
 *     reservation was possible and the page is wholly wanted and aligned,
 *     else into a bounce page;
 *  2. flush: issue every op of the window as one batch (io_uring:
 *     concurrently), then copy the pages out and publish the fills.
 * The caller holds the invalidate lock shared over the whole request from
 * its map lookups to the last flush, so no punch can unmap a block or drop
 * the cache between our pool read and our insert.  dst NULL = prefetch. */
#define WINDOW_PAGES (PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE)

enum page_state { PAGE_DONE, PAGE_FILL, PAGE_BOUNCE, PAGE_DIRECT };

struct window_page {
  char *dst;                    /* the wanted bytes' destination, or NULL */
  uint16_t lo, hi;              /* wanted bytes [lo, hi) of the page */
  uint8_t state;
};

struct read_window {
  struct pc_volume *vol;
  char *buf;                    /* the request's buffer (NULL: prefetch) */
  unsigned npages, nops, nbounce;
  struct window_page pg[WINDOW_PAGES];
  struct pc_cache_ticket t[WINDOW_PAGES];
  struct iovec iov[WINDOW_PAGES];        /* iov[i] is page i's buffer */
  struct pc_io_op op[WINDOW_PAGES];
};

/* Where the pool read of page i goes when no cache page is reserved. */
static uint8_t
uncached_target (struct read_window *w, unsigned i)
{
  struct window_page *g = &w->pg[i];
  bool whole = g->lo == 0 && g->hi == PC_CACHE_PAGE;

  if (whole && g->dst &&
      (!w->vol->pool->io.direct || ((uintptr_t) g->dst & (PC_IO_ALIGN - 1)) == 0)) {
    w->iov[i].iov_base = g->dst;
    return PAGE_DIRECT;
  }
  w->iov[i].iov_base = NULL;             /* a bounce page, given at flush */
  w->nbounce++;
  return PAGE_BOUNCE;
}

/* Phase 1 for page p of a mapped block (physical pb).  Returns true if the
 * page needs a pool read. */
static bool
window_page_add (struct read_window *w, const struct piece *pc, uint32_t p)
{
  struct pc_cache *cache = w->vol->pool->cache;
  unsigned i = w->npages++;
  struct window_page *g = &w->pg[i];
  uint32_t pstart = p << PC_CACHE_PAGE_SHIFT;
  uint32_t lo = pc->off > pstart ? pc->off - pstart : 0;
  uint32_t hi = pc->off + pc->len - pstart;
  uint64_t key = page_key (w->vol, pc->lblock, p);
  int rr;

  if (hi > PC_CACHE_PAGE) hi = PC_CACHE_PAGE;
  g->lo = (uint16_t) lo;
  g->hi = (uint16_t) hi;
  g->dst = w->buf ? w->buf + pc->pos + pstart + lo - pc->off : NULL;
  if (g->dst && pc_cache_get (cache, key, g->dst, lo, hi - lo)) {
    g->state = PAGE_DONE;
    return false;
  }
  rr = pc_cache_fill_begin (cache, key, &w->t[i], g->dst, lo, hi - lo);
  if (rr == 1 || (rr < 0 && g->dst == NULL)) {
    g->state = PAGE_DONE;                /* hit after all, or prefetch */
    return false;
  }
  if (rr == 0) {
    g->state = PAGE_FILL;
    w->iov[i].iov_base = w->t[i].buf;
  }
  else
    g->state = uncached_target (w, i);
  w->iov[i].iov_len = PC_CACHE_PAGE;
  return true;
}

/* Phase 1 for a mapped piece. */
static void
window_add (struct read_window *w, const struct piece *pc, uint64_t pb)
{
  uint32_t p0 = pc->off >> PC_CACHE_PAGE_SHIFT;
  uint32_t p1 = (pc->off + pc->len - 1) >> PC_CACHE_PAGE_SHIFT;
  struct pc_io_op *run = NULL;

  for (uint32_t p = p0; p <= p1; p++) {
    unsigned i = w->npages;
    if (!window_page_add (w, pc, p)) { run = NULL; continue; }
    if (run) { run->iovcnt++; continue; }
    run = &w->op[w->nops++];
    *run = (struct pc_io_op) {
      .iov = &w->iov[i], .iovcnt = 1, .write = false,
      .off = pc_data_offset (w->vol->pool, pb) +
             ((uint64_t) p << PC_CACHE_PAGE_SHIFT),
    };
  }
}

/* Phase 2: read everything (do_io), copy out, publish or release every
 * reservation; the window is empty afterwards. */
static int
window_flush (struct read_window *w, bool do_io)
{
  struct pc_pool *pool = w->vol->pool;
  char *bounce = NULL;
  unsigned i, b = 0;
  int r = do_io ? 0 : -EIO;

  if (do_io && w->nbounce &&
      (bounce = bounce_alloc ((uint64_t) w->nbounce * PC_CACHE_PAGE)) == NULL)
    r = pc_error (ENOMEM, "out of memory");
  for (i = 0; bounce && i < w->npages; i++)
    if (w->pg[i].state == PAGE_BOUNCE)
      w->iov[i].iov_base = bounce + (size_t) b++ * PC_CACHE_PAGE;
  if (r == 0)
    r = pc_io_data_batch (&pool->io, w->op, w->nops);
  if (r == 0 && w->nops && pool->opts.fill_delay_us)
    usleep (pool->opts.fill_delay_us);          /* debug: widen the window */
  for (i = 0; i < w->npages; i++) {
    struct window_page *g = &w->pg[i];
    if (g->state == PAGE_DONE || g->state == PAGE_DIRECT) continue;
    if (r == 0 && g->dst)
      memcpy (g->dst, (char *) w->iov[i].iov_base + g->lo, g->hi - g->lo);
    if (g->state == PAGE_FILL)
      pc_cache_fill_end (pool->cache, &w->t[i], r == 0);
  }
  bounce_free (bounce, (uint64_t) w->nbounce * PC_CACHE_PAGE);
  w->npages = w->nops = w->nbounce = 0;
  return r;
}

/* An unmapped block piece: zeros, except pages that are dirty in the
 * cache (write-back, delayed allocation: the block is reserved, not yet
 * allocated).  dst NULL: only look.  Returns PC_NO_BLOCK when served, or
 * the block's physical number if it got mapped meanwhile (a write-back
 * published it): then the caller reads it as a mapped block.  The map is
 * read again after any miss, because a write-back publishes the mapping
 * before its pages turn clean (and evictable): a page missing from the
 * cache with the block still unmapped afterwards was never written. */
static uint64_t
hole_piece (struct pc_volume *vol, const struct piece *pc, char *dst)
{
  struct pc_cache *cache = vol->pool->cache;
  uint32_t lo = pc->off, end = pc->off + pc->len;
  uint32_t p = pc->off >> PC_CACHE_PAGE_SHIFT;
  bool missed = false;

  if (pc_cache_dirty_pages (cache) == 0) {
    missed = true;
    if (dst) memset (dst, 0, pc->len);
  }
  else
    for (; lo < end; p++) {
      uint32_t hi = (p + 1) << PC_CACHE_PAGE_SHIFT;
      char *d = dst ? dst + (lo - pc->off) : NULL;
      if (hi > end) hi = end;
      if (!d || !pc_cache_probe (cache, page_key (vol, pc->lblock, p), d,
                                 lo & (PC_CACHE_PAGE - 1), hi - lo)) {
        missed = true;
        if (d) memset (d, 0, hi - lo);
      }
      lo = hi;
    }
  return missed ? pc_blockmap_get (vstate (vol)->map, pc->lblock)
                : PC_NO_BLOCK;
}

static int
read_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct read_window *w = arg;
  uint64_t pb = pc_blockmap_get (vstate (vol)->map, pc->lblock);
  uint32_t pages = ((pc->off + pc->len - 1) >> PC_CACHE_PAGE_SHIFT) -
                   (pc->off >> PC_CACHE_PAGE_SHIFT) + 1;
  int r;

  if (pb == PC_NO_BLOCK &&
      (pb = hole_piece (vol, pc, w->buf ? w->buf + pc->pos : NULL)) ==
      PC_NO_BLOCK)
    return 0;                                   /* holes are not cached */
  if (w->npages + pages > WINDOW_PAGES && (r = window_flush (w, true)) < 0)
    return r;
  race_delay (vol->pool);
  window_add (w, pc, pb);
  return 0;
}

/* Read (buf) or prefetch (buf NULL) under the invalidate lock shared. */
static int
read_range (struct pc_volume *vol, void *buf, uint64_t count, uint64_t offset)
{
  struct read_window w;          /* ~22 KiB: fine on a worker's stack */
  struct pc_range_token tok, ra_tok;
  int r, r2;

  w.vol = vol;
  w.buf = buf;
  w.npages = w.nops = w.nbounce = 0;
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0)
    return r;
  bool through = vstate (vol)->omap && vol->pool->readonly;
  if (vstate (vol)->omap && !vol->pool->readonly) {
    uint64_t first, n;
    block_span (vol, count, offset, &first, &n);
    uint64_t ra = buf ? read_ahead (vol, first, n, &ra_tok) : 0;
    r = origin_fill (vol, first, n + ra, first + n);  /* V6 */
    if (ra) pc_rangelock_unlock (&ra_tok);
    if (r == -ENOSPC && buf) {
      /* A full pool cannot keep what the origin sends: read it through
       * (what did get filled is read from the pool). */
      through = true;
      r = 0;
    }
  }
  if (r == 0)
    r = for_each_piece (vol, count, offset, read_piece, &w);
  r2 = window_flush (&w, r == 0);
  if (r == 0 && r2 == 0 && buf && through)
    r2 = read_through (vol, buf, count, offset);
  pc_rangelock_unlock (&tok);
  return r < 0 ? r : r2;
}

int
pc_read (struct pc_volume *vol, void *buf, uint64_t count, uint64_t offset)
{
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  return read_range (vol, buf, count, offset);
}

/* ---- read without waiting (the asynchronous core's fast path) ---- */

/* One block piece served from the cache alone: holes are zeros, mapped
 * blocks must have every wanted page cached.  -EAGAIN on the first miss. */
static int
cached_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  char *buf = arg;
  uint32_t p = pc->off >> PC_CACHE_PAGE_SHIFT;
  uint32_t lo = pc->off, end = pc->off + pc->len;

  if (from_origin (vstate (vol), pc->lblock))
    return -EREMOTE;                            /* needs the origin */
  if (pc_blockmap_get (vstate (vol)->map, pc->lblock) == PC_NO_BLOCK)
    return hole_piece (vol, pc, buf + pc->pos) == PC_NO_BLOCK ? 0 : -EAGAIN;
  for (; lo < end; p++) {
    uint32_t hi = (p + 1) << PC_CACHE_PAGE_SHIFT;
    if (hi > end) hi = end;
    if (!pc_cache_probe (vol->pool->cache, page_key (vol, pc->lblock, p),
                         buf + pc->pos + (lo - pc->off),
                         lo & (PC_CACHE_PAGE - 1), hi - lo))
      return -EAGAIN;
    lo = hi;
  }
  return 0;
}

int
pc_read_nowait (struct pc_volume *vol, void *buf, uint64_t count,
                uint64_t offset)
{
  struct pc_range_token tok;
  uint64_t first, n;
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  block_span (vol, count, offset, &first, &n);
  if (pc_rangelock_trylock_shared (vstate (vol)->inval, &tok, first, n) < 0)
    return -EAGAIN;
  r = for_each_piece (vol, count, offset, cached_piece, buf);
  pc_rangelock_unlock (&tok);
  if (r == -EREMOTE && vstate (vol)->origin == NULL)
    r = -EAGAIN;
  if (r == 0 && vstate (vol)->omap)
    ostat_add (&vstate (vol)->ostats.local_reads, 1);
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

/* Allocation in three steps (allocation lock on lblock held throughout):
 * take a free block (and, if clear and it is not known to read as zeros,
 * punch it, so what the write does not cover reads 0), write the data,
 * then publish -- or, if anything failed, give the block back unpublished
 * (V3, V4).  *clean (may be NULL): the block reads as zeros now. */
/* Every allocation goes through a reservation (lib/pool/writeback.c W4):
 * a block that write-back reserved for lblock (delayed allocation) uses
 * that one; any other takes one now, so a reservation held for an
 * acknowledged write is never taken by someone else (I11). */
static int
take_block (struct pc_volume *vol, uint64_t lblock, uint64_t *pb,
            bool *clean)
{
  struct pc_pool *pool = vol->pool;
  struct pc_vol_state *v = vstate (vol);
  bool resv = pc_blockmap_get (v->resv, lblock) != PC_NO_BLOCK;

  if (!resv && pc_wb_reserve (pool) < 0)
    return -ENOSPC;
  if (pc_wb_take_reserved (pool, pb, clean) < 0) {
    if (!resv) pc_wb_unreserve (pool);
    return -ENOSPC;
  }
  if (resv) pc_blockmap_clear (v->resv, lblock);
  return 0;
}

static int
alloc_begin (struct pc_volume *vol, uint64_t lblock, bool clear,
             uint64_t *pb, bool *clean)
{
  struct pc_pool *pool = vol->pool;
  bool zeros;
  int r;

  if (take_block (vol, lblock, pb, &zeros) < 0)
    return pc_error (ENOSPC, "pool %s is full (%" PRIu64 " blocks in use)",
                     pool->path, pool->sb.nblocks);
  if (clean) *clean = zeros;
  if (clear && !zeros) {
    r = pc_io_punch (&pool->io, pool->block_size, pc_data_offset (pool, *pb));
    if (r < 0) {
      pc_alloc_put_now (pool->alloc, *pb);
      return r;
    }
  }
  return 0;
}

/* r: the data write's result. */
static int
alloc_publish (struct pc_volume *vol, const struct piece *pc, uint64_t pb,
               int r)
{
  struct pc_pool *pool = vol->pool;

  if (r == 0)
    r = pc_store_set_owner (pool, pb, pc_rmap_make (vol->slot, pc->lblock));
  if (r < 0) {
    pc_alloc_put_now (pool->alloc, pb);          /* V4: never published */
    return r;
  }
  return pc_blockmap_set (vstate (vol)->map, pc->lblock, pb);  /* V3 */
}

static int
injected_failure (void)
{
  return pc_error (EIO, "injected write failure (debug switch)");
}

/* Allocate, fill and publish lblock, synchronously. */
static int
allocate_block (struct pc_volume *vol, const struct piece *pc,
                const char *src)
{
  struct pc_pool *pool = vol->pool;
  uint64_t pb;
  int r;

  if ((r = alloc_begin (vol, pc->lblock,
                        src == NULL || pc->len < pool->block_size,
                        &pb, NULL)) < 0)
    return r;
  if (src)
    r = inject_write_failure (pool) ? injected_failure ()
      : pool_write (pool, src, pc->len,
                    pc_data_offset (pool, pb) + pc->off,
                    pc->len < pool->block_size);
  return alloc_publish (vol, pc, pb, r);
}

/* src == NULL: zero the piece (keeping it allocated). */
static int
write_piece_in_place (struct pc_volume *vol, const struct piece *pc,
                      const char *src, uint64_t pb)
{
  uint64_t off = pc_data_offset (vol->pool, pb) + pc->off;

  race_delay (vol->pool);
  return src ? pool_write (vol->pool, src, pc->len, off, false)
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

  if (pb != PC_NO_BLOCK && !needs_rmw (vol->pool, pc, src))
    return write_piece_in_place (vol, pc, src, pb);
  r = pc_rangelock_lock_exclusive (v->alloc_lock, &tok, pc->lblock, 1);
  if (r < 0) return pc_error (r, "allocation lock: %s", strerror (-r));
  pb = pc_blockmap_get (v->map, pc->lblock);     /* another writer won? */
  if (pb == PC_NO_BLOCK && (r = fill_for_partial (vol, pc)) < 0) {
    pc_rangelock_unlock (&tok);
    return r;
  }
  pb = pc_blockmap_get (v->map, pc->lblock);
  r = pb != PC_NO_BLOCK ? write_piece_in_place (vol, pc, src, pb)
                        : allocate_block (vol, pc, src);
  pc_rangelock_unlock (&tok);
  return r;
}

/* Multi-block writes go through a window of up to WRITE_WINDOW pieces
 * whose data transfers are issued as one batch (io_uring: concurrently):
 *  - a piece of a mapped block that needs no read-modify-write is written
 *    in place;
 *  - a piece of an unmapped block takes the block's allocation lock, a free
 *    block (alloc_begin), and keeps the lock until the batch returned and
 *    the block was published or given back (alloc_publish): V3, V4, I5.
 *    Allocation locks of one request are taken in ascending block order,
 *    so two requests cannot deadlock on them (lib/LOCKING);
 *  - anything else (O_DIRECT read-modify-write of a partial page) is done
 *    synchronously by write_or_allocate, as zeroing is.
 * Under O_DIRECT a misaligned source is copied to an aligned bounce buffer
 * first.  On failure the window is still flushed: every lock released,
 * every allocated block published or returned. */
#define WRITE_WINDOW 64u

/* Does a new block for this partial piece, unless it is a prepared block
 * (which reads zeros already), get written whole (zeros around the data,
 * no punch first)?  Under O_DIRECT, yes: on a file system a punch and a
 * write into the hole it left each take the inode lock exclusive, which
 * serialises every allocating write of the pool; one whole-block write
 * takes it once.  Buffered, the page cache makes punch + partial write
 * cheap, and writing zeros would only fill the page cache. */
static bool
whole_block_write (struct pc_pool *pool, const struct piece *pc)
{
  return pool->io.direct && pc->len < pool->block_size;
}

struct write_piece {
  struct piece pc;
  const char *src;
  uint64_t pb;                  /* allocating: the block taken */
  bool alloc;                   /* holds tok (allocation lock) */
  bool clean;                   /* allocating: the new block reads zeros */
  struct pc_range_token tok;
};

struct write_window {
  const char *buf;
  unsigned n;
  struct write_piece wp[WRITE_WINDOW];
  struct iovec iov[WRITE_WINDOW];
  struct pc_io_op op[WRITE_WINDOW];
};

/* What piece p sends to the pool: itself, or its whole new block. */
static struct piece
write_span (struct pc_pool *pool, const struct write_piece *p)
{
  struct piece span = p->pc;

  if (p->alloc && !p->clean && whole_block_write (pool, &p->pc)) {
    span.off = 0;
    span.len = pool->block_size;
  }
  return span;
}

/* Issue the window's writes as one batch, publish or return the blocks it
 * allocated, release their allocation locks.  r < 0: the request failed
 * already; write nothing, but still publish-or-return and unlock.  Pieces
 * needing a bounce buffer (misaligned source under O_DIRECT, or a whole
 * new block) share one allocation, carved in 4 KiB multiples. */
static int
write_window_flush (struct pc_volume *vol, struct write_window *w, int r)
{
  struct pc_pool *pool = vol->pool;
  unsigned i, k, nops = 0, idx[WRITE_WINDOW];
  int res[WRITE_WINDOW], first = r;
  struct piece span[WRITE_WINDOW];
  bool bounced[WRITE_WINDOW];
  uint64_t need = 0, used = 0;
  char *bounce = NULL;

  for (i = 0; i < w->n; i++) {
    span[i] = write_span (pool, &w->wp[i]);
    bounced[i] = span[i].len != w->wp[i].pc.len ||
      (pool->io.direct &&
       !is_aligned (w->wp[i].src, w->wp[i].pc.len, w->wp[i].pc.off));
    if (bounced[i]) need += span[i].len;
  }
  if (r == 0 && need && (bounce = bounce_alloc (need)) == NULL)
    first = r = pc_error (ENOMEM, "out of memory");
  for (i = 0; i < w->n; i++) {
    struct write_piece *p = &w->wp[i];
    const char *src = p->src;
    res[i] = r;
    if (r < 0) continue;                 /* the request failed already */
    if (p->alloc && inject_write_failure (pool)) {
      res[i] = injected_failure ();
      continue;
    }
    if (bounced[i]) {
      char *b = bounce + used;
      used += span[i].len;
      if (span[i].len != p->pc.len) memset (b, 0, span[i].len);
      memcpy (b + (p->pc.off - span[i].off), src, p->pc.len);
      src = b;
    }
    w->iov[nops] = (struct iovec) { (void *) src, span[i].len };
    w->op[nops] = (struct pc_io_op) {
      .iov = &w->iov[nops], .iovcnt = 1, .write = true,
      .off = pc_data_offset (pool, p->pb) + span[i].off,
    };
    idx[nops++] = i;
  }
  if (nops)
    pc_io_data_batch (&pool->io, w->op, nops);
  for (k = 0; k < nops; k++)
    res[idx[k]] = w->op[k].result;
  for (i = 0; i < w->n; i++) {
    struct write_piece *p = &w->wp[i];
    if (p->alloc) {
      res[i] = alloc_publish (vol, &p->pc, p->pb, res[i]);
      pc_rangelock_unlock (&p->tok);
    }
    if (res[i] < 0 && first == 0) first = res[i];
  }
  bounce_free (bounce, need);
  w->n = 0;
  return first;
}

/* Queue one piece (or write it now, see above). */
static int
write_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct write_window *w = arg;
  struct pc_vol_state *v = vstate (vol);
  const char *src = w->buf + pc->pos;
  struct write_piece *p;
  int r;

  if (needs_rmw (vol->pool, pc, src))
    return write_or_allocate (vol, pc, src);
  if (w->n == WRITE_WINDOW && (r = write_window_flush (vol, w, 0)) < 0)
    return r;
  p = &w->wp[w->n];
  *p = (struct write_piece) { .pc = *pc, .src = src };
  p->pb = pc_blockmap_get (v->map, pc->lblock);
  if (p->pb == PC_NO_BLOCK) {
    r = pc_rangelock_lock_exclusive (v->alloc_lock, &p->tok, pc->lblock, 1);
    if (r < 0) return pc_error (r, "allocation lock: %s", strerror (-r));
    p->pb = pc_blockmap_get (v->map, pc->lblock);   /* another writer won? */
    if (p->pb == PC_NO_BLOCK && (r = fill_for_partial (vol, pc)) < 0) {
      pc_rangelock_unlock (&p->tok);
      return r;
    }
    p->pb = pc_blockmap_get (v->map, pc->lblock);
    if (p->pb != PC_NO_BLOCK)
      pc_rangelock_unlock (&p->tok);
    else if ((r = alloc_begin (vol, pc->lblock,
                               !whole_block_write (vol->pool, pc),
                               &p->pb, &p->clean)) < 0) {
      pc_rangelock_unlock (&p->tok);
      return r;
    }
    else
      p->alloc = true;
  }
  if (!p->alloc)
    race_delay (vol->pool);
  w->n++;
  return 0;
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

/* ---- write-back writes (writeback=on): into the cache, dirty ---- */

struct wb_write {
  const char *buf;
  uint64_t seq;                 /* this write's sequence number */
  char *base;                   /* a 4 KiB aligned page, for partial pages */
  bool need_room;               /* a cache shard had no clean page */
};

/* The current bytes of page p of lblock, for a partial write of a page
 * the cache does not hold: zeros if the block is not mapped, else from the
 * pool (invalidate lock held shared: the block cannot be unmapped). */
static int
page_base (struct pc_volume *vol, uint64_t lblock, uint32_t p, char *base)
{
  uint64_t pb = pc_blockmap_get (vstate (vol)->map, lblock);

  if (pb == PC_NO_BLOCK) {
    memset (base, 0, PC_CACHE_PAGE);
    return 0;
  }
  return pc_io_pread_data (&vol->pool->io, base, PC_CACHE_PAGE,
                           pc_data_offset (vol->pool, pb) +
                           ((uint64_t) p << PC_CACHE_PAGE_SHIFT));
}

/* The block must be mapped or reserved before its pages turn dirty (W4):
 * reserve it under its allocation lock, so two writes reserve once.
 * nowait (the fast path): only with the lock free at once and one look at
 * the count; -EAGAIN where the blocking form would wait. */
static int
reserve_block (struct pc_volume *vol, const struct piece *pc, bool nowait)
{
  uint64_t lblock = pc->lblock;
  struct pc_vol_state *v = vstate (vol);
  struct pc_range_token tok;
  int r;

  if (pc_blockmap_get (v->map, lblock) != PC_NO_BLOCK ||
      pc_blockmap_get (v->resv, lblock) != PC_NO_BLOCK)
    return 0;
  r = nowait ? pc_rangelock_trylock_exclusive (v->alloc_lock, &tok, lblock, 1)
             : pc_rangelock_lock_exclusive (v->alloc_lock, &tok, lblock, 1);
  if (r == -EAGAIN)
    return r;
  if (r < 0)
    return pc_error (-r, "allocation lock: %s", strerror (-r));
  if (from_origin (v, lblock) && !whole_piece (vol, pc))
    r = nowait ? -EAGAIN : fill_run_locked (vol, lblock, 1, false);
  if (r == 0 && pc_blockmap_get (v->map, lblock) == PC_NO_BLOCK &&
      pc_blockmap_get (v->resv, lblock) == PC_NO_BLOCK) {
    r = nowait ? pc_wb_try_reserve (vol->pool) : pc_wb_reserve (vol->pool);
    if (r == -ENOSPC)
      r = pc_error (ENOSPC, "pool %s is full (%" PRIu64 " blocks in use or "
                    "reserved for data not yet written back)",
                    vol->pool->path, vol->pool->sb.nblocks);
    else if (r == 0 && (r = pc_blockmap_set (v->resv, lblock, 1)) < 0)
      pc_wb_unreserve (vol->pool);
  }
  pc_rangelock_unlock (&tok);
  return r;
}

static int
wb_write_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct wb_write *ww = arg;
  uint32_t lo = pc->off, end = pc->off + pc->len;
  uint32_t p = pc->off >> PC_CACHE_PAGE_SHIFT;
  int r;

  if ((r = reserve_block (vol, pc, false)) < 0)
    return r;
  for (; lo < end; p++) {
    uint32_t hi = (p + 1) << PC_CACHE_PAGE_SHIFT;
    uint64_t key = page_key (vol, pc->lblock, p);
    const char *src = ww->buf + pc->pos + (lo - pc->off);
    const char *base = NULL;
    unsigned spins = 0;
    if (hi > end) hi = end;
    for (;;) {
      r = pc_cache_write (vol->pool->cache, key, src,
                          lo & (PC_CACHE_PAGE - 1), hi - lo, base, ww->seq);
      if (r == 0) break;
      if (r == -ENOSPC) {               /* let go of our locks first */
        ww->need_room = true;
        return r;
      }
      if (r == -EAGAIN) {               /* a fill of the page: one I/O */
        if (++spins > 100) usleep (50); else sched_yield ();
        continue;
      }
      if ((r = page_base (vol, pc->lblock, p, ww->base)) < 0)
        return r;
      base = ww->base;
    }
    lo = hi;
  }
  return 0;
}

/* Once the request's pages are all dirty, it is complete (SPEC §3
 * write-back); FUA makes it durable at once.  A shard of the cache with no
 * clean page left makes the request let go of its lock, write back, and
 * start again (rewriting a page with the same bytes is harmless). */
static int
wb_write (struct pc_volume *vol, const void *buf, uint64_t count,
          uint64_t offset, unsigned flags)
{
  struct pc_pool *pool = vol->pool;
  struct wb_write ww = { .buf = buf };
  struct pc_range_token tok;
  unsigned attempt;
  int r;

  if ((r = pc_wb_throttle (pool, page_count (count, offset))) < 0)
    return r;
  if ((ww.base = bounce_alloc (PC_CACHE_PAGE)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  ww.seq = pc_wb_next_seq (pool);
  for (attempt = 0; ; attempt++) {
    ww.need_room = false;
    if ((r = lock_range (vol, &tok, false, count, offset)) < 0) break;
    r = for_each_piece (vol, count, offset, wb_write_piece, &ww);
    pc_rangelock_unlock (&tok);
    if (!ww.need_room) break;
    if (attempt == 1000 || (r = pc_wb_make_room (pool)) < 0) {
      r = pc_error (ENOSPC, "no room in the cache for dirty data: "
                    "write-back cannot keep up");
      break;
    }
  }
  bounce_free (ww.base, PC_CACHE_PAGE);
  if (r == 0 && (flags & PC_FUA))
    r = pc_pool_flush (pool);
  return r;
}

/* ---- writethrough origins: the origin first, then the pool ----
 * An update goes to the origin before it completes, then into the pool
 * (which keeps it cached).  Overlapping updates hold the volume's
 * writethrough lock exclusive over their blocks across both, so the
 * origin and the pool see them in the same order. */

static bool
writethrough (struct pc_volume *vol)
{
  struct pc_vol_state *v = vstate (vol);

  return v->omap && v->omap->desc.mode == PC_ORIGIN_WRITETHROUGH;
}

static int
wt_lock (struct pc_volume *vol, struct pc_range_token *tok, uint64_t count,
         uint64_t offset)
{
  uint64_t first, n;
  int r;

  if (vstate (vol)->origin == NULL)
    return no_origin_error (vstate (vol));
  block_span (vol, count, offset, &first, &n);
  r = pc_rangelock_lock_exclusive (vstate (vol)->wt_lock, tok, first, n);
  return r < 0 ? pc_error (-r, "writethrough lock: %s", strerror (-r)) : 0;
}

static int
wt_failed (struct pc_volume *vol, const char *what)
{
  char why[400];

  snprintf (why, sizeof why, "%s", pc_last_error ());
  return pc_error (EIO, "volume '%s': %s on its origin failed: %s",
                   vstate (vol)->name, what, why);
}

/* ---- writes without waiting (the asynchronous core's fast path) ---- */

static int
wb_piece_nowait (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct wb_write *ww = arg;
  uint32_t lo = pc->off, end = pc->off + pc->len;
  uint32_t p = pc->off >> PC_CACHE_PAGE_SHIFT;
  int r;

  if ((r = reserve_block (vol, pc, true)) < 0)
    return r;
  for (; lo < end; p++) {
    uint32_t hi = (p + 1) << PC_CACHE_PAGE_SHIFT;
    if (hi > end) hi = end;
    /* -ENOENT (a partial page not cached: its bytes are in the pool),
     * -EAGAIN (a fill), -ENOSPC (no clean page): all wait, elsewhere. */
    if (pc_cache_write (vol->pool->cache, page_key (vol, pc->lblock, p),
                        ww->buf + pc->pos + (lo - pc->off),
                        lo & (PC_CACHE_PAGE - 1), hi - lo, NULL,
                        ww->seq) < 0)
      return -EAGAIN;
    lo = hi;
  }
  return 0;
}

/* A write-back write that needs nothing but the cache completes on the
 * caller's thread: no FUA, under the dirty limit, the invalidate lock and
 * (to reserve a block) the allocation lock free at once, every page whole
 * or cached.  -EAGAIN otherwise; pages already written by then are written
 * again, with the same bytes, by pc_write. */
int
pc_write_nowait (struct pc_volume *vol, const void *buf, uint64_t count,
                 uint64_t offset, unsigned flags)
{
  struct pc_pool *pool = vol->pool;
  struct wb_write ww = { .buf = buf };
  struct pc_range_token tok;
  uint64_t first, n;
  int r;

  if ((r = check_writable (vol)) < 0) return r;
  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((flags & PC_FUA) || writethrough (vol) ||
      pc_wb_over_limit (pool, page_count (count, offset)))
    return -EAGAIN;
  block_span (vol, count, offset, &first, &n);
  if (pc_rangelock_trylock_shared (vstate (vol)->inval, &tok, first, n) < 0)
    return -EAGAIN;
  ww.seq = pc_wb_next_seq (pool);
  r = for_each_piece (vol, count, offset, wb_piece_nowait, &ww);
  pc_rangelock_unlock (&tok);
  return r;
}

static int
local_write (struct pc_volume *vol, const void *buf, uint64_t count,
             uint64_t offset, unsigned flags)
{
  struct write_window w;
  struct pc_range_token tok;
  int r;

  if (vol->pool->wb)
    return wb_write (vol, buf, count, offset, flags);
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0) return r;
  w.buf = buf;
  w.n = 0;
  r = for_each_piece (vol, count, offset, write_piece, &w);
  r = write_window_flush (vol, &w, r);
  /* After the pool writes (even a failed request may have written some
   * pieces): drop the pages and void fills that overlapped us (C3). */
  pc_cache_invalidate (vol->pool->cache, page_key (vol, 0, 0) +
                       (offset >> PC_CACHE_PAGE_SHIFT), page_count (count, offset));
  pc_rangelock_unlock (&tok);
  return r < 0 ? r : finish_update (vol, flags);
}

int
pc_write (struct pc_volume *vol, const void *buf, uint64_t count,
          uint64_t offset, unsigned flags)
{
  struct pc_range_token tok;
  int r;

  if ((r = check_writable (vol)) < 0) return r;
  if ((r = check_range (vol, count, offset)) < 0) return r;
  if (!writethrough (vol))
    return local_write (vol, buf, count, offset, flags);
  if ((r = wt_lock (vol, &tok, count, offset)) < 0) return r;
  r = pc_origin_pwrite (vstate (vol)->origin, buf, count, offset,
                        flags & PC_FUA);
  r = r < 0 ? wt_failed (vol, "a write")
            : local_write (vol, buf, count, offset, flags);
  pc_rangelock_unlock (&tok);
  return r;
}

/* ---- trim and zero ---- */

/* Under the block's allocation lock, like every change of v->resv: the
 * invalidate lock exclusive already keeps writes and write-back out, but
 * not with the debug switch that removes it, and the count must stay
 * right even then (only the race being tested may go wrong). */
static int
release_reservation (struct pc_volume *vol, uint64_t lblock)
{
  struct pc_vol_state *v = vstate (vol);
  struct pc_range_token tok;
  int r;

  if (pc_rangelock_lock_exclusive (v->alloc_lock, &tok, lblock, 1) < 0)
    return -EDEADLK;
  /* With an origin, the block is punched first: never from-origin again
   * (and never between the two: omap.c M2). */
  if (v->omap && pc_blockmap_get (v->map, lblock) == PC_NO_BLOCK &&
      (r = pc_omap_mark (vol->pool, v, lblock)) < 0) {
    pc_rangelock_unlock (&tok);
    return r;
  }
  if (pc_blockmap_get (v->map, lblock) == PC_NO_BLOCK &&
      pc_blockmap_clear (v->resv, lblock) != PC_NO_BLOCK)
    pc_wb_unreserve (vol->pool);
  pc_rangelock_unlock (&tok);
  return 0;
}

static int
punch_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  struct pc_pool *pool = vol->pool;
  struct pc_vol_state *v = vstate (vol);
  uint64_t pb;

  /* Partial block: zero in place.  The volume's last block, when the
   * size is not a multiple of the block size, counts as whole. */
  if (pc->len < pool->block_size &&
      !(pc->off == 0 &&
        (pc->lblock << pool->block_shift) + pc->len == v->size)) {
    pb = pc_blockmap_get (v->map, pc->lblock);
    if (pb == PC_NO_BLOCK && from_origin (v, pc->lblock)) {
      /* Part of a from-origin block: its other bytes are the origin's. */
      struct pc_range_token tok;
      int r = pc_rangelock_lock_exclusive (v->alloc_lock, &tok, pc->lblock, 1);
      if (r < 0) return pc_error (-r, "allocation lock: %s", strerror (-r));
      r = from_origin (v, pc->lblock) ? fill_run_locked (vol, pc->lblock, 1, false) : 0;
      pc_rangelock_unlock (&tok);
      if (r < 0) return r;
      pb = pc_blockmap_get (v->map, pc->lblock);
    }
    if (pb == PC_NO_BLOCK) {
      /* A reserved block whose last dirty page this punch dropped needs
       * its reservation no more (W4). */
      if (pc_blockmap_get (v->resv, pc->lblock) != PC_NO_BLOCK &&
          !pc_cache_has_dirty (pool->cache, page_key (vol, pc->lblock, 0),
                               pool->block_size >> PC_CACHE_PAGE_SHIFT))
        return release_reservation (vol, pc->lblock);
      return 0;
    }
    return pc_io_punch (&pool->io, pc->len,
                        pc_data_offset (pool, pb) + pc->off);
  }
  /* With an origin: punched before unmapped (omap.c M2), so no commit
   * can hold the block unmapped but not punched (origin data back). */
  if (v->omap && !pc_omap_test (v->omap, pc->lblock)) {
    int r = pc_omap_mark (pool, v, pc->lblock);
    if (r < 0) return r;
  }
  pb = pc_blockmap_clear (v->map, pc->lblock);  /* new readers see a hole */
  if (pb == PC_NO_BLOCK) {
    if (pc_blockmap_get (v->resv, pc->lblock) != PC_NO_BLOCK)
      return release_reservation (vol, pc->lblock);  /* pages dropped */
    return 0;
  }
  /* Reusable, and punched (host space back), by the next commit. */
  return pc_store_free_block (pool, pb);
}

static int
zero_piece (struct pc_volume *vol, const struct piece *pc, void *arg)
{
  return write_or_allocate (vol, pc, NULL);
}

/* Drop the range's cache pages, dirty ones too (I9); a page the range
 * covers only partly is zeroed there instead, so the rest of its bytes
 * (perhaps dirty) stay. */
static void
punch_cache (struct pc_volume *vol, uint64_t count, uint64_t offset)
{
  struct pc_cache *cache = vol->pool->cache;
  uint64_t base = page_key (vol, 0, 0), end = offset + count;
  uint64_t first = offset >> PC_CACHE_PAGE_SHIFT;
  uint64_t last = (end - 1) >> PC_CACHE_PAGE_SHIFT;
  uint32_t head = (uint32_t) (offset & (PC_CACHE_PAGE - 1));
  uint32_t tail = (uint32_t) (end & (PC_CACHE_PAGE - 1));

  if (end == vstate (vol)->size)
    tail = 0;                   /* bytes past the end are never seen */
  if (first == last && (head || tail)) {
    pc_cache_zero_part (cache, base + first, head, (uint32_t) count);
    return;
  }
  if (head)
    pc_cache_zero_part (cache, base + first++, head, PC_CACHE_PAGE - head);
  if (tail)
    pc_cache_zero_part (cache, base + last--, 0, tail);
  if (first <= last)
    pc_cache_punch (cache, base + first, last - first + 1);
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
  /* SPEC §2: drop the cache, then unmap, all under the exclusive lock, so
   * no fill can be between its pool read and its insert (V1, cache.c C4). */
  punch_cache (vol, count, offset);
  r = for_each_piece (vol, count, offset, fn, NULL);
  if (locked)
    pc_rangelock_unlock (&tok);
  return r < 0 ? r : finish_update (vol, flags);
}

/* A punch of a writethrough volume makes the origin read zeros first (a
 * trim too: the pool will read zeros there, and the origin must agree). */
static int
punch_through (struct pc_volume *vol, uint64_t count, uint64_t offset,
               unsigned flags, piece_fn fn)
{
  struct pc_range_token tok;
  int r;

  if (!writethrough (vol))
    return punch_range (vol, count, offset, flags, fn);
  if ((r = check_writable (vol)) < 0) return r;
  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((r = wt_lock (vol, &tok, count, offset)) < 0) return r;
  r = pc_origin_zero (vstate (vol)->origin, count, offset, flags & PC_FUA);
  r = r < 0 ? wt_failed (vol, "zeroing")
            : punch_range (vol, count, offset, flags, fn);
  pc_rangelock_unlock (&tok);
  return r;
}

int
pc_trim (struct pc_volume *vol, uint64_t count, uint64_t offset,
         unsigned flags)
{
  return punch_through (vol, count, offset, flags, punch_piece);
}

int
pc_zero (struct pc_volume *vol, uint64_t count, uint64_t offset,
         unsigned flags)
{
  return punch_through (vol, count, offset, flags,
                        (flags & PC_NO_HOLE) ? zero_piece : punch_piece);
}

int
pc_volume_flush (struct pc_volume *vol)
{
  struct pc_vol_state *v = vstate (vol);

  if (writethrough (vol)) {
    if (v->origin == NULL)
      return no_origin_error (v);
    if (pc_origin_flush (v->origin) < 0)
      return wt_failed (vol, "a flush");
  }
  return pc_pool_flush (vol->pool);
}

int
pc_prefetch (struct pc_volume *vol, uint64_t count, uint64_t offset)
{
  struct pc_cache_stats st;
  uint64_t cap;
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  if (vol->pool->cache == NULL) return 0;
  /* Never more than the cache holds: the tail would evict the head. */
  pc_cache_get_stats (vol->pool->cache, &st);
  cap = st.capacity_pages << PC_CACHE_PAGE_SHIFT;
  if (count > cap) count = cap;
  return read_range (vol, NULL, count, offset);
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

struct origin_walk {
  struct pc_volume *vol;
  struct extent_walk *w;
};

static int
origin_extent (void *opaque, uint64_t off, uint64_t len, bool zero)
{
  struct origin_walk *ow = opaque;

  return len ? ow->w->fn (ow->w->opaque, off, len, zero) : 0;
}

/* Unmapped, unreserved blocks [lb, end) of a volume with an origin:
 * punched runs are holes; from-origin runs are what the origin says (V7:
 * zeros only where it says so; data if it cannot be asked). */
static int
origin_holes (struct pc_volume *vol, struct extent_walk *w, uint64_t lb,
              uint64_t end)
{
  struct pc_vol_state *v = vstate (vol);
  unsigned shift = vol->pool->block_shift;
  int r = 0;

  while (r == 0 && lb < end) {
    bool punched = pc_omap_test (v->omap, lb);
    uint64_t next = lb + 1;
    while (next < end && pc_omap_test (v->omap, next) == punched)
      next++;
    if (punched || v->origin == NULL)
      r = emit (vol, w, lb, next, punched);
    else {
      uint64_t a = lb << shift, b = next << shift;
      struct origin_walk ow = { vol, w };
      if (a < w->start) a = w->start;
      if (b > w->end) b = w->end;
      if (a < b &&
          pc_origin_extents (v->origin, b - a, a, origin_extent, &ow) < 0)
        r = -EIO;
    }
    lb = next;
  }
  return r;
}

int
pc_extents (struct pc_volume *vol, uint64_t count, uint64_t offset,
            int (*fn) (void *, uint64_t, uint64_t, bool), void *opaque)
{
  struct extent_walk w = { fn, opaque, offset, offset + count };
  struct pc_blockmap *map = vstate (vol)->map, *resv = vstate (vol)->resv;
  struct pc_range_token tok;
  uint64_t lb, end, next;
  int r;

  if ((r = check_range (vol, count, offset)) < 0) return r;
  if ((r = lock_range (vol, &tok, false, count, offset)) < 0) return r;
  block_span (vol, count, offset, &lb, &end);
  end += lb;
  /* A block with dirty pages not yet written back is reserved, not
   * mapped: it reads as data, so it is reported as data (I7). */
  while (r == 0 && lb < end) {
    next = pc_blockmap_next_mapped (map, lb, end);
    if (next == PC_NO_BLOCK) next = end;
    uint64_t rnext = pc_blockmap_next_mapped (resv, lb, next);
    if (rnext != PC_NO_BLOCK && rnext < next) next = rnext;
    if (next > lb) {                            /* hole run */
      r = vstate (vol)->omap ? origin_holes (vol, &w, lb, next)
                             : emit (vol, &w, lb, next, true);
      lb = next;
      continue;
    }
    while (next < end && (pc_blockmap_get (map, next) != PC_NO_BLOCK ||
                          pc_blockmap_get (resv, next) != PC_NO_BLOCK))
      next++;                                   /* data run */
    r = emit (vol, &w, lb, next, false);
    lb = next;
  }
  pc_rangelock_unlock (&tok);
  return r;
}
