/* punchcache: write-back of dirty cache pages, with delayed allocation.
 *
 * What: with writeback=on a write completes once its data is in the shared
 * cache as dirty pages (lib/core/volume.c); this module writes them to the
 * pool later -- sorted, batched through io_uring, data before the metadata
 * that points to it -- when the dirty limit is near (a background thread),
 * when pages are older than dirty-expire, on FLUSH and FUA, and when a
 * writer is throttled at the dirty limit.  Physical blocks are allocated
 * here, at write-back (delayed allocation), from reservations the writes
 * took when they were accepted, so an acknowledged write never meets
 * ENOSPC (I11) -- the kernel's page cache and ext4's delalloc, in user
 * space, under the invalidate lock that protects them.
 *
 * Why this shape: the cache already owns page memory and its budget, so
 * dirty pages are cache pages in another state (lib/cache.c draws their
 * life); write-back works in passes of up to PASS_PAGES pages collected
 * oldest first and sorted by key, so one pass writes runs of adjacent
 * pages of a volume in ascending order.  A window of a pass covers the
 * blocks of one volume that fit WINDOW_BLOCKS; it takes the volume's
 * invalidate lock shared over the window's span in one call (as a write
 * does), then each block's allocation lock, in ascending order (the order
 * of lib/LOCKING: no cycle with writes, which do the same, or with punches,
 * which take the invalidate lock exclusive in one call).
 *
 * Invariants:
 *  W1 (I9, no resurrection) A page is written only if, with the volume's
 *     invalidate lock held shared, the cache still holds it under this
 *     write-back (pc_cache_wb_copy): a punch drops the range's dirty pages
 *     under the lock exclusive, so data written before a punch completed
 *     never reaches the pool or a mapping after it.
 *  W2 (I4) A block allocated here is published (reverse map, block map)
 *     only after its data write succeeded; the commit that makes the
 *     mapping durable syncs the data first (store.c ST1).
 *  W3 (I5, I10) A failed write-back frees or unmaps nothing but the block
 *     it allocated itself and never published; its pages stay dirty (with
 *     their sequence numbers) and are retried; the reservation stays.
 *  W4 (I11) Every unmapped block with dirty pages holds one reservation
 *     (v->resv); reservations + blocks in use <= blocks in the pool
 *     (pc_wb_reserve is the one gate, under resv_mutex).  A reservation
 *     becomes an allocation here, or is released by the punch that drops
 *     the block's last dirty page.
 *  W5 (I10) A FLUSH started at write sequence S returns 0 only once no
 *     page dirtied at or before S is dirty: a page whose write-back failed
 *     keeps its sequence number, so every later FLUSH reports the error
 *     until a write-back of it succeeds.
 *
 * Locks (lib/LOCKING): vol->inval (shared) -> vol->alloc_lock (exclusive,
 * ascending) -> cache shard mutexes, store's mutexes (publish, commit on
 * a full pool).  wb->mutex protects the thread's state and the waiters'
 * condition; it is a leaf, never held across I/O.  resv_mutex (in the
 * pool) is a leaf held for the reservation arithmetic only.
 *
 * Debug switches: writeback_delay_us sleeps between a page's collection
 * and the taking of its locks (the I9 window the race test widens);
 * fail_writeback makes the next N data writes of write-back fail with EIO
 * (I10); unsafe_no_invalidate_lock also makes write-back skip the
 * invalidate lock and the W1 check, so the I9 test can show they matter;
 * unsafe_wb_forget_failures marks the pages of a failed write-back clean
 * (Linux's behaviour that PostgreSQL's "fsyncgate" met: I10);
 * unsafe_no_reservations accepts writes with no block for them (I11).
 */
#include <config.h>

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/clock.h"
#include "store-internal.h"

#define PASS_PAGES 16384u         /* pages collected per pass (64 MiB) */
#define WINDOW_BLOCKS 64u         /* blocks locked and written per batch */
/* Writes of one window: a block's dirty pages make at most one run per
 * two pages (runs are separated by clean pages). */
#define WINDOW_OPS (WINDOW_BLOCKS * (PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE / 2 + 1))
#define TICK_MS 100u              /* background thread period */
#define EXPIRE_SAMPLES 256u       /* (time, sequence) ring for dirty-expire */

struct pc_writeback {
  struct pc_pool *pool;
  pthread_t thread;
  bool running;
  pthread_mutex_t mutex;
  pthread_cond_t work;          /* the thread: work to do, or stop */
  pthread_cond_t progress;      /* throttled writers: a pass ended */
  bool stop, kick;
  int last_error;               /* of the last pass (0: it succeeded) */
  uint64_t passes;
  /* dirty-expire: sequence numbers sampled every tick */
  struct { uint64_t ns, seq; } samples[EXPIRE_SAMPLES];
  unsigned nsample;
  /* statistics (atomics) */
  uint64_t pages_written, bytes_written, blocks_allocated, failures;
  uint64_t flushes, flush_ns_total, flush_ns_max, throttled;
};


/* ---- reservations (W4) ---- */

/* Blocks that could be handed out now or after the next commit: free,
 * waiting for their commit, or prepared. */
static uint64_t
available_blocks (struct pc_pool *pool)
{
  struct pc_alloc_stats st;

  pc_alloc_get_stats (pool->alloc, &st);
  return st.free + st.pending + __atomic_load_n (&pool->nprep,
                                                 __ATOMIC_RELAXED);
}

/* A run of prepared blocks being zeroed (volume.c prep_refill) has left
 * the allocator and not yet reached the prepared stack, and a reservation
 * being converted (pc_wb_take_reserved) may have its block counted both
 * ways for an instant: while either is in flight, a full-looking pool may
 * not be full, so look again rather than refuse. */
static bool
in_flight (struct pc_pool *pool)
{
  return __atomic_load_n (&pool->prep_busy, __ATOMIC_SEQ_CST) > 0 ||
    __atomic_load_n (&pool->converting, __ATOMIC_SEQ_CST) > 0;
}

int
pc_wb_reserve (struct pc_pool *pool)
{
  for (;;) {
    bool busy = in_flight (pool);
    bool ok;

    pthread_mutex_lock (&pool->resv_mutex);
    ok = pool->reserved < available_blocks (pool) ||
      pool->opts.unsafe_no_reservations;       /* debug: I11 test */
    if (ok) pool->reserved++;
    pthread_mutex_unlock (&pool->resv_mutex);
    if (ok) return 0;
    if (!busy && !in_flight (pool))
      return -ENOSPC;
    sched_yield ();
  }
}

/* pc_wb_reserve for callers that must not wait: one look, -EAGAIN where
 * pc_wb_reserve would look again, -ENOSPC where it would refuse. */
int
pc_wb_try_reserve (struct pc_pool *pool)
{
  bool ok;

  pthread_mutex_lock (&pool->resv_mutex);
  ok = pool->reserved < available_blocks (pool) ||
    pool->opts.unsafe_no_reservations;
  if (ok) pool->reserved++;
  pthread_mutex_unlock (&pool->resv_mutex);
  return ok ? 0 : in_flight (pool) ? -EAGAIN : -ENOSPC;
}

bool
pc_wb_over_limit (struct pc_pool *pool, uint64_t new_pages)
{
  return pool->wb == NULL ||
    pc_cache_dirty_pages (pool->cache) + new_pages > pool->dirty_limit;
}

/* Turn one reservation of the caller's into a block (W4). */
int
pc_wb_take_reserved (struct pc_pool *pool, uint64_t *pb, bool *clean)
{
  int r;

  __atomic_add_fetch (&pool->converting, 1, __ATOMIC_SEQ_CST);
  r = pc_pool_take_block (pool, pb, clean);
  if (r == 0) {
    pthread_mutex_lock (&pool->resv_mutex);
    pool->reserved--;
    pthread_mutex_unlock (&pool->resv_mutex);
  }
  __atomic_sub_fetch (&pool->converting, 1, __ATOMIC_SEQ_CST);
  return r < 0 ? -ENOSPC : 0;
}

/* Give a block taken with pc_wb_take_reserved back, unpublished, and get
 * its reservation back (reserved first: never over-promise). */
void
pc_wb_return_block (struct pc_pool *pool, uint64_t pb)
{
  __atomic_add_fetch (&pool->converting, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock (&pool->resv_mutex);
  pool->reserved++;
  pthread_mutex_unlock (&pool->resv_mutex);
  pc_alloc_put_now (pool->alloc, pb);
  __atomic_sub_fetch (&pool->converting, 1, __ATOMIC_SEQ_CST);
}

void
pc_wb_unreserve (struct pc_pool *pool)
{
  pthread_mutex_lock (&pool->resv_mutex);
  pool->reserved--;
  pthread_mutex_unlock (&pool->resv_mutex);
}

uint64_t
pc_wb_reserved (struct pc_pool *pool)
{
  uint64_t n;

  pthread_mutex_lock (&pool->resv_mutex);
  n = pool->reserved;
  pthread_mutex_unlock (&pool->resv_mutex);
  return n;
}

uint64_t
pc_wb_next_seq (struct pc_pool *pool)
{
  return __atomic_add_fetch (&pool->write_seq, 1, __ATOMIC_SEQ_CST);
}

/* ---- one window: blocks of one volume ---- */

struct wb_block {
  uint64_t lblock;
  uint64_t pb;                  /* target block (new if alloc) */
  bool alloc;                   /* allocated here, to publish */
  bool clean;                   /* the new block reads zeros already */
  struct pc_range_token tok;    /* allocation lock */
  bool locked, copied;
  unsigned first, n;            /* its keys in the pass: keys[first..+n) */
  uint32_t pagemask[PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE / 32];
  char *page[PC_MAX_BLOCK_SIZE / PC_CACHE_PAGE];  /* pinned cache pages */
  char *copy;                   /* debug only (no lock): copied pages */
  int result;
};

/* What a new block holds where no page is dirty. */
static char zero_page[PC_CACHE_PAGE] __attribute__ ((aligned (PC_CACHE_PAGE)));

static bool
inject_failure (struct pc_pool *pool)
{
  unsigned n = __atomic_load_n (&pool->wb_fail_left, __ATOMIC_RELAXED);

  while (n > 0)
    if (__atomic_compare_exchange_n (&pool->wb_fail_left, &n, n - 1, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return true;
  return false;
}

static unsigned
pages_per_block (struct pc_pool *pool)
{
  return pool->block_size / PC_CACHE_PAGE;
}

/* Find the block's collected pages (W1): pinned in the cache, or (debug,
 * without the lock) copied at once.  False if none is left. */
static bool
take_pages (struct pc_pool *pool, struct wb_block *b, const uint64_t *keys,
            bool copy)
{
  unsigned i, ppb = pages_per_block (pool);
  bool any = false;

  memset (b->pagemask, 0, sizeof b->pagemask);
  if (copy && b->copy == NULL &&
      posix_memalign ((void **) &b->copy, PC_IO_ALIGN, pool->block_size))
    return false;
  for (i = 0; i < b->n; i++) {
    uint64_t key = keys[b->first + i];
    uint32_t p = (uint32_t) (key & (ppb - 1));
    char *buf = copy ? b->copy + (size_t) p * PC_CACHE_PAGE : NULL;
    if (copy ? pc_cache_wb_copy (pool->cache, key, buf)
             : (buf = pc_cache_wb_pin (pool->cache, key)) != NULL) {
      b->page[p] = buf;
      b->pagemask[p / 32] |= 1u << (p % 32);
      any = true;
    }
  }
  return any;
}

static bool
page_set (const struct wb_block *b, unsigned p)
{
  return b->pagemask[p / 32] & (1u << (p % 32));
}

/* Allocation lock taken: find or allocate the block's target. */
static int
prepare_block (struct pc_pool *pool, struct pc_vol_state *v,
               struct wb_block *b)
{
  b->pb = pc_blockmap_get (v->map, b->lblock);
  b->alloc = false;
  if (b->pb != PC_NO_BLOCK)
    return 0;
  if (pc_blockmap_get (v->resv, b->lblock) == PC_NO_BLOCK &&
      pc_wb_reserve (pool) == 0)              /* should not happen (W4) */
    pc_blockmap_set (v->resv, b->lblock, 1);
  if (pc_wb_take_reserved (pool, &b->pb, &b->clean) < 0)
    return -ENOSPC;
  b->alloc = true;
  return 0;
}

/* After the batch: publish new blocks (W2), end the pages' write-back. */
static int
finish_block (struct pc_pool *pool, struct pc_vol_state *v, unsigned slot,
              struct wb_block *b, const uint64_t *keys)
{
  int r = b->result;
  unsigned i, ppb = pages_per_block (pool);

  if (b->alloc && b->copied) {
    if (r == 0)
      r = pc_store_set_owner (pool, b->pb, pc_rmap_make (slot, b->lblock));
    if (r == 0)
      r = pc_blockmap_set (v->map, b->lblock, b->pb);
    if (r < 0)
      pc_wb_return_block (pool, b->pb);        /* W3: never published */
    else {
      pc_blockmap_clear (v->resv, b->lblock);  /* W4: now allocated */
      __atomic_add_fetch (&pool->wb->blocks_allocated, 1, __ATOMIC_RELAXED);
    }
  }
  bool ok = r == 0 || pool->opts.unsafe_wb_forget_failures; /* debug: I10 */

  for (i = 0; i < b->n; i++) {
    uint32_t p = (uint32_t) (keys[b->first + i] & (ppb - 1));
    if (page_set (b, p)) {
      pc_cache_wb_end (pool->cache, keys[b->first + i], ok);
      if (r == 0)
        __atomic_add_fetch (&pool->wb->pages_written, 1, __ATOMIC_RELAXED);
    }
    else
      pc_cache_wb_end (pool->cache, keys[b->first + i], false);
  }
  if (r < 0)
    __atomic_add_fetch (&pool->wb->failures, 1, __ATOMIC_RELAXED);
  return r;
}

/* Per pass, reused by its windows (heap: a pass may run on any thread). */
struct wb_arrays {
  struct iovec *iov;            /* WINDOW_BLOCKS * pages per block */
  struct pc_io_op *op, *real;   /* as many (one op per run at most) */
  unsigned *owner, *owner_last, *map;  /* op k: blocks owner..owner_last */
};

/* Queue pages [p, q) of block bi (the zero page where a new block has no
 * dirty page), iovecs pointing at the cache's pages, no copy.  A run that
 * continues the previous op on the device is appended to it: blocks
 * allocated one after another are usually adjacent (lowest free first),
 * so the kernel gets a few large writes instead of one per block (perf:
 * the O_DIRECT submission path was 80% of a FLUSH's CPU with 64 KiB
 * writes). */
static void
queue_run (struct pc_pool *pool, struct wb_block *b, unsigned bi, unsigned p,
           unsigned q, struct wb_arrays *a, unsigned *nops, unsigned *niov)
{
  uint64_t off = pc_data_offset (pool, b->pb) + (uint64_t) p * PC_CACHE_PAGE;
  struct pc_io_op *last = *nops ? &a->op[*nops - 1] : NULL;

  if (last == NULL ||
      last->off + (uint64_t) last->iovcnt * PC_CACHE_PAGE != off ||
      last->iovcnt + (q - p) > PC_IO_MAX_IOV) {
    last = &a->op[(*nops)++];
    *last = (struct pc_io_op) { .iov = &a->iov[*niov], .iovcnt = 0,
                                .write = true, .off = off };
    a->owner[*nops - 1] = bi;
  }
  a->owner_last[*nops - 1] = bi;
  for (; p < q; p++) {
    a->iov[(*niov)++] = (struct iovec) {
      page_set (b, p) ? b->page[p] : zero_page, PC_CACHE_PAGE };
    last->iovcnt++;
  }
}

/* The block's writes: all of it if it is new, else each run of dirty
 * pages in place. */
static void
queue_block (struct pc_pool *pool, struct wb_block *b, unsigned bi,
             struct wb_arrays *a, unsigned *nops, unsigned *niov)
{
  unsigned ppb = pages_per_block (pool), p, q;

  for (p = 0; p < ppb; p = q) {
    if (!b->alloc && !page_set (b, p)) { q = p + 1; continue; }
    for (q = p; q < ppb && (b->alloc || page_set (b, q)); q++) ;
    queue_run (pool, b, bi, p, q, a, nops, niov);
  }
}

/* Issue the window's writes as one batch (minus injected failures). */
static void
issue (struct pc_pool *pool, struct wb_arrays *a, unsigned nops)
{
  unsigned nr = 0, k;

  for (k = 0; k < nops; k++) {
    if (inject_failure (pool))
      a->op[k].result = pc_error (EIO, "injected write-back failure (debug "
                                  "switch fail_writeback)");
    else {
      a->real[nr] = a->op[k];
      a->map[nr++] = k;
    }
  }
  if (nr)
    pc_io_data_batch (&pool->io, a->real, nr);
  for (k = 0; k < nr; k++)
    a->op[a->map[k]].result = a->real[k].result;
  if (nops)
    __atomic_store_n (&pool->data_dirty, true, __ATOMIC_SEQ_CST);
}

/* Write back blocks[0..nb) of volume slot (ascending lblocks). */
static int
write_window (struct pc_pool *pool, unsigned slot, struct wb_block *blocks,
              unsigned nb, const uint64_t *keys, struct wb_arrays *a)
{
  struct pc_vol_state *v = &pool->vols[slot];
  bool locked = !pool->opts.unsafe_no_invalidate_lock;
  unsigned i, k, nops = 0, niov = 0;
  struct pc_range_token inval;
  int r, first_err = 0;

  /* Debug, the I9 race test: without the lock, copy at once and write
   * later, whatever a punch did meanwhile (the bug W1 prevents). */
  for (i = 0; !locked && i < nb; i++)
    blocks[i].copied = take_pages (pool, &blocks[i], keys, true);
  if (pool->opts.writeback_delay_us)
    usleep (pool->opts.writeback_delay_us);
  if (locked &&
      (r = pc_rangelock_lock_shared (v->inval, &inval, blocks[0].lblock,
                                     blocks[nb - 1].lblock -
                                     blocks[0].lblock + 1)) < 0)
    return pc_error (-r, "write-back: invalidate lock: %s", strerror (-r));
  for (i = 0; i < nb; i++) {
    struct wb_block *b = &blocks[i];
    b->result = pc_rangelock_lock_exclusive (v->alloc_lock, &b->tok,
                                             b->lblock, 1);
    if (b->result < 0) continue;
    b->locked = true;
    if (locked)
      b->copied = take_pages (pool, b, keys, false);   /* W1 */
    if (!b->copied) continue;                   /* all punched */
    if ((b->result = prepare_block (pool, v, b)) < 0) continue;
    queue_block (pool, b, i, a, &nops, &niov);
  }
  issue (pool, a, nops);
  for (k = 0; k < nops; k++) {
    if (a->op[k].result >= 0)
      __atomic_add_fetch (&pool->wb->bytes_written,
                          (uint64_t) a->op[k].iovcnt * PC_CACHE_PAGE,
                          __ATOMIC_RELAXED);
    for (i = a->owner[k]; i <= a->owner_last[k]; i++)
      if (a->op[k].result < 0 && blocks[i].result == 0)
        blocks[i].result = a->op[k].result;
  }
  for (i = 0; i < nb; i++) {
    struct wb_block *b = &blocks[i];
    if (b->copied || b->result < 0) {
      r = finish_block (pool, v, slot, b, keys);
      if (r < 0 && first_err == 0) first_err = r;
    }
    if (b->locked) pc_rangelock_unlock (&b->tok);
    free (b->copy);
    b->copy = NULL;
  }
  if (locked)
    pc_rangelock_unlock (&inval);
  return first_err;
}

/* ---- one pass ---- */

static uint64_t
key_lblock (struct pc_pool *pool, uint64_t key)
{
  return (key & UINT64_C (0xffffffffffff)) >> (pool->block_shift -
                                                PC_CACHE_PAGE_SHIFT);
}

/* Write back up to PASS_PAGES pages dirtied at or before upto.  Returns
 * the number of pages collected (>= 0) or the first error. */
static int
pass (struct pc_pool *pool, uint64_t upto, unsigned *collected)
{
  size_t nio = (size_t) WINDOW_BLOCKS * pages_per_block (pool);
  uint64_t *keys = malloc (PASS_PAGES * sizeof *keys);
  struct wb_block *blocks = calloc (WINDOW_BLOCKS, sizeof *blocks);
  struct wb_arrays a = {
    .iov = malloc (nio * sizeof *a.iov), .op = malloc (nio * sizeof *a.op),
    .real = malloc (nio * sizeof *a.real),
    .owner = malloc (nio * sizeof *a.owner),
    .owner_last = malloc (nio * sizeof *a.owner_last),
    .map = malloc (nio * sizeof *a.map),
  };
  unsigned n = 0, i = 0, nb, j;
  int r = 0, r2;

  *collected = 0;
  if (keys == NULL || blocks == NULL || !a.iov || !a.op || !a.real ||
      !a.owner || !a.owner_last || !a.map) {
    r = pc_error (ENOMEM, "write-back: out of memory");
    goto out;
  }
  n = pc_cache_wb_collect (pool->cache, upto, keys, PASS_PAGES);
  *collected = n;
  while (i < n) {
    unsigned slot = (unsigned) (keys[i] >> 48);
    for (nb = 0; i < n && nb < WINDOW_BLOCKS &&
           (unsigned) (keys[i] >> 48) == slot; nb++) {
      struct wb_block *b = &blocks[nb];
      memset (b, 0, offsetof (struct wb_block, pagemask));
      b->lblock = key_lblock (pool, keys[i]);
      b->first = i;
      for (j = i; j < n && (keys[j] >> 48) == slot &&
             key_lblock (pool, keys[j]) == b->lblock; j++) ;
      b->n = j - i;
      i = j;
    }
    r2 = write_window (pool, slot, blocks, nb, keys, &a);
    if (r2 < 0 && r == 0) r = r2;
  }
 out:
  free (a.iov); free (a.op); free (a.real); free (a.owner);
  free (a.owner_last); free (a.map);
  free (blocks);
  free (keys);
  return r;
}

/* ---- the background thread ---- */

static uint64_t
expired_seq (struct pc_writeback *wb, uint64_t now)
{
  uint64_t age = (uint64_t) wb->pool->dirty_expire_ms * 1000000u;
  uint64_t best = 0;

  for (unsigned i = 0; i < EXPIRE_SAMPLES && i < wb->nsample; i++)
    if (now - wb->samples[i].ns >= age && wb->samples[i].seq > best)
      best = wb->samples[i].seq;
  return best;
}

static void *
wb_thread (void *arg)
{
  struct pc_writeback *wb = arg;
  struct pc_pool *pool = wb->pool;

  pc_io_thread_prepare (&pool->io);
  pthread_mutex_lock (&wb->mutex);
  while (!wb->stop) {
    struct timespec ts;
    uint64_t now = pc_now_ns (), upto = 0;
    unsigned collected = 0;
    int r;

    wb->samples[wb->nsample++ % EXPIRE_SAMPLES] = (typeof (wb->samples[0]))
      { now, __atomic_load_n (&pool->write_seq, __ATOMIC_SEQ_CST) };
    if (wb->kick || pc_cache_dirty_pages (pool->cache) >= pool->dirty_background)
      upto = UINT64_MAX;
    else
      upto = expired_seq (wb, now);
    bool kicked = wb->kick;
    wb->kick = false;
    if (upto && pc_cache_dirty_pages (pool->cache) > 0) {
      pthread_mutex_unlock (&wb->mutex);
      r = pass (pool, upto, &collected);
      pthread_mutex_lock (&wb->mutex);
      wb->last_error = r;
      wb->passes++;
      pthread_cond_broadcast (&wb->progress);
      if (collected > 0 && r == 0)
        continue;                               /* more, at once */
    }
    else if (kicked) {                          /* nothing to write: say so */
      wb->last_error = 0;
      wb->passes++;
      pthread_cond_broadcast (&wb->progress);
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += TICK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    if (!wb->stop && !wb->kick)
      pthread_cond_timedwait (&wb->work, &wb->mutex, &ts);
  }
  pthread_mutex_unlock (&wb->mutex);
  return NULL;
}

int
pc_wb_create (struct pc_pool *pool)
{
  struct pc_writeback *wb = calloc (1, sizeof *wb);

  if (wb == NULL) return pc_error (ENOMEM, "write-back: out of memory");
  wb->pool = pool;
  pthread_mutex_init (&wb->mutex, NULL);
  pthread_cond_init (&wb->work, NULL);
  pthread_cond_init (&wb->progress, NULL);
  pool->wb = wb;
  return 0;
}

int
pc_wb_start (struct pc_pool *pool)
{
  struct pc_writeback *wb = pool->wb;
  int r;

  if (wb == NULL || wb->running) return 0;
  if ((r = pthread_create (&wb->thread, NULL, wb_thread, wb)) != 0)
    return pc_error (r, "starting the write-back thread: %s", strerror (r));
  wb->running = true;
  return 0;
}

void
pc_wb_destroy (struct pc_pool *pool)
{
  struct pc_writeback *wb = pool->wb;

  if (wb == NULL) return;
  if (wb->running) {
    pthread_mutex_lock (&wb->mutex);
    wb->stop = true;
    pthread_cond_signal (&wb->work);
    pthread_mutex_unlock (&wb->mutex);
    pthread_join (wb->thread, NULL);
  }
  pthread_cond_destroy (&wb->progress);
  pthread_cond_destroy (&wb->work);
  pthread_mutex_destroy (&wb->mutex);
  free (wb);
  pool->wb = NULL;
}

/* ---- FLUSH (W5) and throttling ---- */

int
pc_wb_flush (struct pc_pool *pool)
{
  struct pc_writeback *wb = pool->wb;
  uint64_t upto, t0 = pc_now_ns (), dt;
  unsigned collected, rounds = 0;
  int r = 0, r2;

  if (wb == NULL || pool->cache == NULL) return 0;
  upto = __atomic_load_n (&pool->write_seq, __ATOMIC_SEQ_CST);
  /* Write back what is ours to write; wait for what another write-back
   * holds; stop after a pass that failed (the error is the answer) or
   * once nothing dirtied at or before upto is left. */
  while (pc_cache_oldest_dirty (pool->cache) <= upto) {
    r2 = pass (pool, upto, &collected);
    if (r2 < 0) { r = r2; break; }
    if (collected == 0) {                      /* others hold them */
      if (++rounds > 100000)
        return pc_error (EIO, "flush: write-back made no progress");
      usleep (200);
    }
  }
  if (r == 0 && pc_cache_oldest_dirty (pool->cache) <= upto)
    r = -EIO;
  dt = pc_now_ns () - t0;
  __atomic_add_fetch (&wb->flushes, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch (&wb->flush_ns_total, dt, __ATOMIC_RELAXED);
  if (dt > __atomic_load_n (&wb->flush_ns_max, __ATOMIC_RELAXED))
    __atomic_store_n (&wb->flush_ns_max, dt, __ATOMIC_RELAXED);
  if (r < 0)
    return pc_error (-r, "flush: write-back of dirty data to pool %s "
                     "failed: %s (the data is kept and retried)",
                     pool->path, strerror (-r));
  return 0;
}

int
pc_wb_throttle (struct pc_pool *pool, uint64_t new_pages)
{
  struct pc_writeback *wb = pool->wb;
  uint64_t passes0;
  int r = 0;

  if (wb == NULL ||
      pc_cache_dirty_pages (pool->cache) + new_pages <= pool->dirty_limit)
    return 0;
  __atomic_add_fetch (&wb->throttled, 1, __ATOMIC_RELAXED);
  pthread_mutex_lock (&wb->mutex);
  passes0 = wb->passes;
  while (pc_cache_dirty_pages (pool->cache) + new_pages > pool->dirty_limit &&
         !wb->stop) {
    wb->kick = true;
    pthread_cond_signal (&wb->work);
    pthread_cond_wait (&wb->progress, &wb->mutex);
    if (wb->last_error < 0 && wb->passes > passes0) {
      r = wb->last_error;                      /* the device is failing */
      break;
    }
  }
  pthread_mutex_unlock (&wb->mutex);
  if (r < 0)
    return pc_error (-r, "write refused: the dirty limit is reached and "
                     "write-back to pool %s fails: %s", pool->path,
                     strerror (-r));
  return 0;
}

/* A writer met a shard with no clean page to evict: have a pass run (by
 * the background thread, so many writers do not each run one) and wait
 * for it; without the thread (not started: tests), run it here. */
int
pc_wb_make_room (struct pc_pool *pool)
{
  struct pc_writeback *wb = pool->wb;
  unsigned collected;
  uint64_t passes0;
  int r;

  if (wb == NULL) return -ENOSPC;
  if (!wb->running)
    return pass (pool, UINT64_MAX, &collected);
  pthread_mutex_lock (&wb->mutex);
  passes0 = wb->passes;
  wb->kick = true;
  pthread_cond_signal (&wb->work);
  while (wb->passes == passes0 && !wb->stop)
    pthread_cond_wait (&wb->progress, &wb->mutex);
  r = wb->last_error;
  pthread_mutex_unlock (&wb->mutex);
  return r;
}

void
pc_wb_get_stats (struct pc_pool *pool, struct pc_wb_stats *st)
{
  struct pc_writeback *wb = pool->wb;

  memset (st, 0, sizeof *st);
  st->enabled = wb != NULL;
  st->dirty_limit_bytes = pool->dirty_limit * PC_CACHE_PAGE;
  st->reserved_blocks = pc_wb_reserved (pool);
  if (wb == NULL) return;
  st->dirty_bytes = pc_cache_dirty_pages (pool->cache) * PC_CACHE_PAGE;
  st->pages_written = __atomic_load_n (&wb->pages_written, __ATOMIC_RELAXED);
  st->bytes_written = __atomic_load_n (&wb->bytes_written, __ATOMIC_RELAXED);
  st->blocks_allocated = __atomic_load_n (&wb->blocks_allocated,
                                          __ATOMIC_RELAXED);
  st->failures = __atomic_load_n (&wb->failures, __ATOMIC_RELAXED);
  st->flushes = __atomic_load_n (&wb->flushes, __ATOMIC_RELAXED);
  st->flush_ns_total = __atomic_load_n (&wb->flush_ns_total, __ATOMIC_RELAXED);
  st->flush_ns_max = __atomic_load_n (&wb->flush_ns_max, __ATOMIC_RELAXED);
  st->throttled = __atomic_load_n (&wb->throttled, __ATOMIC_RELAXED);
}
