/* punchcache: the pool -- life cycle, metadata pages and the commit protocol.
 *
 * What: opens/creates a pool (layout in format.h), keeps every metadata
 * page (volume table, reverse map) in RAM, tracks which pages a change
 * dirtied, and commits them crash-safely.  The data path is lib/core/volume.c.
 *
 * Why this structure: the persistent truth is a *reverse* map, one 8-byte
 * owner entry per physical block (pblock -> volume slot, logical block).
 * A physical block can then never be mapped twice by construction, the
 * allocator's bitmap and each volume's forward map (blockmap.c) are derived
 * from it at open, and lowest-first allocation keeps the pages that
 * describe live data few and dense.  Pages of all-zero entries are never
 * stored (NULL), so RAM follows allocated data, not pool size.  Every
 * change is one entry of one page, and pages are journaled whole (jbd2
 * style: journal.h), so a torn in-place page write is always repaired.
 *
 * Commit protocol (pc_store_commit; all under commit_mutex):
 *   1. snapshot: under meta_mutex take the dirty set, copy those pages,
 *      close the current free epoch E (later frees go to E+1);
 *   2. fdatasync: every data write whose mapping is in the snapshot
 *      completed before step 1, so its data is now durable;
 *   3. write the pages as journal transactions, fdatasync;
 *   4. write the pages in place (made durable by the next commit's step 2,
 *      before the journal can be reset over them);
 *   5. release the blocks freed in epoch E to the allocator.
 *
 * Invariants:
 *  ST1 (SPEC I4) A mapping reaches the journal only after the data it
 *      points to is durable: it is published after its data write returns
 *      and steps 1-2 order snapshot before sync.
 *  ST2 (SPEC I3b) A freed block is handed out again only after the commit
 *      carrying its freeing is durable (step 5 after step 3).
 *  ST3 The journal is only reset to page 0 (superblock tail update) after
 *      an fdatasync that follows the in-place write of every page the
 *      journal holds.
 *  ST4 A dirty page is in the dirty list exactly once (dirty_bits).
 *  ST5 At open, owner entries unreachable from the volume table (a volume
 *      removed or shrunk by an interrupted operation) are cleared and
 *      committed before any volume can be added or written.
 *
 * Locks (order in lib/LOCKING): vol_mutex -> commit_mutex -> meta_mutex ->
 * allocator mutex.  commit_mutex is the only one held across I/O, and it
 * is only taken by commits (never by the data path except to flush).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/crc32c.h"
#include "punchcache/journal.h"
#include "store-internal.h"

#define DEFAULT_COMMIT_INTERVAL_MS 1000

/* ---------------------------------------------------------------------- */
/* Metadata pages (meta_mutex held). */

static uint8_t *
page_get_or_create_locked (struct pc_pool *pool, uint32_t page_no)
{
  if (pool->pages[page_no] == NULL) {
    uint8_t *p = malloc (PC_PAGE_SIZE);  /* no alignment needed: copied */
    if (p == NULL)
      return NULL;
    memset (p, 0, PC_PAGE_SIZE);
    pool->pages[page_no] = p;
  }
  return pool->pages[page_no];
}

static void
mark_dirty_locked (struct pc_pool *pool, uint32_t page_no)
{
  uint8_t bit = (uint8_t) (1u << (page_no & 7));

  if (pool->dirty_bits[page_no >> 3] & bit)
    return;
  pool->dirty_bits[page_no >> 3] |= bit;
  pool->dirty[pool->ndirty++] = page_no;
}

void
pc_store_set_owner_locked (struct pc_pool *pool, uint64_t pblock,
                           uint64_t entry)
{
  uint32_t page_no = pc_rmap_page_of (pblock);
  uint8_t *page = page_get_or_create_locked (pool, page_no);

  if (page) {                   /* NULL: only when it was all zero before */
    pc_rmap_put (page, pc_rmap_index_of (pblock), entry);
    mark_dirty_locked (pool, page_no);
  }
}

void
pc_store_free_block_locked (struct pc_pool *pool, uint64_t pblock)
{
  uint32_t page_no = pc_rmap_page_of (pblock);

  if (pool->pages[page_no]) {
    pc_rmap_put (pool->pages[page_no], pc_rmap_index_of (pblock), 0);
    mark_dirty_locked (pool, page_no);
  }
  pc_alloc_defer (pool->alloc, pblock, pool->epoch);
}

int
pc_store_set_owner (struct pc_pool *pool, uint64_t pblock, uint64_t entry)
{
  uint32_t page_no = pc_rmap_page_of (pblock);
  uint8_t *page;

  pthread_mutex_lock (&pool->meta_mutex);
  page = page_get_or_create_locked (pool, page_no);
  if (page) {
    pc_rmap_put (page, pc_rmap_index_of (pblock), entry);
    mark_dirty_locked (pool, page_no);
  }
  pthread_mutex_unlock (&pool->meta_mutex);
  return page ? 0 : pc_error (ENOMEM, "out of memory for metadata page");
}

int
pc_store_free_block (struct pc_pool *pool, uint64_t pblock)
{
  uint32_t page_no = pc_rmap_page_of (pblock);
  int r = 0;

  pthread_mutex_lock (&pool->meta_mutex);
  if (pool->pages[page_no]) {
    pc_rmap_put (pool->pages[page_no], pc_rmap_index_of (pblock), 0);
    mark_dirty_locked (pool, page_no);
  }
  r = pc_alloc_defer (pool->alloc, pblock, pool->epoch);
  pthread_mutex_unlock (&pool->meta_mutex);
  if (r < 0)
    return pc_error (r, "internal error: freeing physical block %" PRIu64
                     " which is not in use", pblock);
  return 0;
}

uint64_t
pc_store_ndirty (struct pc_pool *pool)
{
  return __atomic_load_n (&pool->ndirty, __ATOMIC_RELAXED);
}

static int
set_vol_entry (struct pc_pool *pool, unsigned slot,
               const struct pc_volume_entry *e)
{
  uint32_t page_no = slot / PC_VOLS_PER_PAGE;
  uint8_t *page;

  pthread_mutex_lock (&pool->meta_mutex);
  page = page_get_or_create_locked (pool, page_no);
  if (page) {
    pc_vol_entry_encode (e, page, slot % PC_VOLS_PER_PAGE);
    mark_dirty_locked (pool, page_no);
  }
  pthread_mutex_unlock (&pool->meta_mutex);
  return page ? 0 : pc_error (ENOMEM, "out of memory for metadata page");
}

/* ---------------------------------------------------------------------- */
/* Superblock and commits. */

int
pc_store_write_superblock (struct pc_pool *pool)
{
  uint8_t page[PC_PAGE_SIZE];
  int r;

  pool->sb.generation++;
  pc_sb_encode (&pool->sb, page);
  r = pc_io_pwrite (&pool->io, page, PC_PAGE_SIZE,
                    (pool->sb.generation & 1) * PC_PAGE_SIZE);
  return r < 0 ? r : pc_io_sync (&pool->io);
}

/* ST3: called after an fdatasync that covers every in-place write. */
static int
journal_reset (struct pc_pool *pool, uint64_t next_seq)
{
  pool->sb.journal_tail = 0;
  pool->sb.journal_seq = next_seq;
  pool->journal_head = 0;
  return pc_store_write_superblock (pool);
}

struct snapshot {
  struct pc_omap_out omap;      /* punched-map chunks to write first */
  uint64_t n;
  uint32_t *page_nos;
  uint8_t *images;
  uint64_t epoch;
};

static int
cmp_u32 (const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return x < y ? -1 : x > y;
}

static int
take_snapshot (struct pc_pool *pool, struct snapshot *s)
{
  uint64_t i;

  pthread_mutex_lock (&pool->meta_mutex);
  if (pc_omap_snapshot_locked (pool, &s->omap) < 0) {   /* omap.c M2 */
    pthread_mutex_unlock (&pool->meta_mutex);
    return -ENOMEM;
  }
  s->n = pool->ndirty;
  s->page_nos = malloc ((s->n ?: 1) * sizeof *s->page_nos);
  s->images = aligned_alloc (PC_PAGE_SIZE, (s->n ?: 1) * PC_PAGE_SIZE);
  if (s->page_nos == NULL || s->images == NULL) {
    pthread_mutex_unlock (&pool->meta_mutex);
    free (s->page_nos); free (s->images);
    return pc_error (ENOMEM, "out of memory for a metadata commit");
  }
  memcpy (s->page_nos, pool->dirty, s->n * sizeof *s->page_nos);
  qsort (s->page_nos, s->n, sizeof *s->page_nos, cmp_u32);
  for (i = 0; i < s->n; i++) {
    uint32_t p = s->page_nos[i];
    uint8_t *img = s->images + i * PC_PAGE_SIZE;
    if (pool->pages[p]) memcpy (img, pool->pages[p], PC_PAGE_SIZE);
    else memset (img, 0, PC_PAGE_SIZE);
    pool->dirty_bits[p >> 3] &= (uint8_t) ~(1u << (p & 7));
  }
  pool->ndirty = 0;
  s->epoch = pool->epoch++;
  pthread_mutex_unlock (&pool->meta_mutex);
  for (i = 0; i < s->n; i++)
    pc_meta_page_seal (s->images + i * PC_PAGE_SIZE, s->page_nos[i]);
  return 0;
}

/* Write one transaction of n pages to the journal and then in place. */
static int
commit_txn (struct pc_pool *pool, uint32_t n, const uint32_t *page_nos,
            const uint8_t *images)
{
  size_t bytes = pc_journal_txn_bytes (n);
  uint8_t *buf;
  uint32_t i;
  int r;

  if (pool->journal_head + n + 2 > pool->sb.journal_pages) {
    r = pc_io_sync (&pool->io);          /* ST3 */
    if (r == 0) r = journal_reset (pool, pool->next_seq);
    if (r < 0) return r;
  }
  buf = aligned_alloc (PC_PAGE_SIZE, bytes);
  if (buf == NULL)
    return pc_error (ENOMEM, "out of memory for a journal transaction");
  r = pc_journal_encode (pool->next_seq,
                         n, page_nos, images, buf);
  if (r == 0)
    r = pc_io_pwrite (&pool->io, buf, bytes, pool->sb.journal_offset +
                      pool->journal_head * PC_PAGE_SIZE);
  free (buf);
  if (r == 0) r = pc_io_sync (&pool->io);
  if (r < 0) return r;
  pool->journal_head += n + 2;
  pool->next_seq++;
  for (i = 0; i < n && r == 0; i++)
    r = pc_io_pwrite (&pool->io, images + (size_t) i * PC_PAGE_SIZE,
                      PC_PAGE_SIZE,
                      pool->sb.meta_offset + (uint64_t) page_nos[i] * PC_PAGE_SIZE);
  return r;
}

/* Give the host back the space of the blocks this commit frees, one
 * punch per run of adjacent blocks.  Trims unmap at once but punch here,
 * in a batch: on a file system every punch takes the inode lock exclusive
 * and waits for all O_DIRECT I/O in flight on the file, stalling reads of
 * unrelated ranges (SPEC I8), so one punch per commit and run, not one
 * per trimmed block.  A failed punch only leaves space allocated on the
 * host (the block is still freed: its contents never matter, allocation
 * clears or prepares what it takes), so it does not fail the commit.
 * (commit_mutex held: no one else releases or punches.) */
static void
punch_released (struct pc_pool *pool, uint64_t epoch)
{
  uint64_t *v;
  int64_t n = pc_alloc_releasable (pool->alloc, epoch, &v);

  for (int64_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && v[j] == v[j - 1] + 1; j++)
      ;
    if (pc_io_punch (&pool->io, (uint64_t) (j - i) << pool->block_shift,
                     pc_data_offset (pool, v[i])) < 0)
      pool->punch_errors++;
    pool->punched_runs++;
  }
  free (v);
}

static int
commit_locked (struct pc_pool *pool)
{
  struct snapshot s = { 0 };
  uint64_t done;
  int r;

  __atomic_store_n (&pool->data_dirty, false, __ATOMIC_SEQ_CST);
  r = take_snapshot (pool, &s);
  if (r < 0) {
    pc_omap_write_out (pool, &s.omap, false);
    return r;
  }
  r = pc_omap_write_out (pool, &s.omap, true);   /* before ST1's sync */
  if (r == 0)
    r = pc_io_sync (&pool->io);                      /* ST1 */
  for (done = 0; r == 0 && done < s.n; ) {
    uint32_t n = (uint32_t) (s.n - done < pool->txn_max ? s.n - done
                                                        : pool->txn_max);
    r = commit_txn (pool, n, s.page_nos + done,
                    s.images + done * PC_PAGE_SIZE);
    done += n;
  }
  if (r == 0) {
    punch_released (pool, s.epoch);
    pc_alloc_release_through (pool->alloc, s.epoch); /* ST2 */
    if (s.n) pool->ncommits++;
  }
  free (s.page_nos);
  free (s.images);
  return r;
}

static bool
nothing_to_commit (struct pc_pool *pool)
{
  return pc_store_ndirty (pool) == 0 &&
    !__atomic_load_n (&pool->data_dirty, __ATOMIC_SEQ_CST);
}

int
pc_store_commit (struct pc_pool *pool)
{
  uint64_t want = __atomic_load_n (&pool->commits_started, __ATOMIC_SEQ_CST);
  uint64_t gen;
  int r = 0;

  if (pool->readonly)
    return 0;
  pthread_mutex_lock (&pool->commit_mutex);
  if (pool->broken) {
    r = pc_error (pool->broken, "the pool is unusable after a failed commit "
                  "(%s); restart the server", strerror (-pool->broken));
  }
  else if (__atomic_load_n (&pool->commits_done, __ATOMIC_SEQ_CST) > want ||
           nothing_to_commit (pool))
    r = 0;   /* a commit that began after our caller's writes is done */
  else {
    gen = __atomic_add_fetch (&pool->commits_started, 1, __ATOMIC_SEQ_CST);
    r = commit_locked (pool);
    if (r < 0) pool->broken = r;
    else __atomic_store_n (&pool->commits_done, gen, __ATOMIC_SEQ_CST);
  }
  pthread_mutex_unlock (&pool->commit_mutex);
  return r;
}

/* Write-back first (every page dirtied before this call, W5), then the
 * commit that makes data and mappings durable.  A failed write-back is
 * this flush's error even if the commit succeeds (I10). */
int
pc_pool_flush (struct pc_pool *pool)
{
  int r = pc_wb_flush (pool), r2;
  char why[256];

  if (r < 0) snprintf (why, sizeof why, "%s", pc_last_error ());
  r2 = pc_store_commit (pool);
  if (r < 0)
    return pc_error (r, "%s", why);
  return r2;
}

/* ---------------------------------------------------------------------- */
/* Background committer: commits at least every commit_interval_ms. */

static void *
committer_thread (void *arg)
{
  struct pc_pool *pool = arg;
  unsigned ms = pool->opts.commit_interval_ms ?: DEFAULT_COMMIT_INTERVAL_MS;
  unsigned tick = ms;
  uint64_t last_commit = pc_now_ns ();

  pthread_mutex_lock (&pool->commit_cond_mutex);
  while (!pool->committer_stop) {
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    ts.tv_sec += tick / 1000;
    ts.tv_nsec += (long) (tick % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait (&pool->commit_cond, &pool->commit_cond_mutex, &ts);
    if (pool->committer_stop)
      break;
    pthread_mutex_unlock (&pool->commit_cond_mutex);
    if (pc_now_ns () - last_commit >= (uint64_t) ms * 1000000 - 1000000) {
      pc_store_commit (pool);   /* a failure is sticky and seen by the next I/O */
      last_commit = pc_now_ns ();
    }
    pthread_mutex_lock (&pool->commit_cond_mutex);
  }
  pthread_mutex_unlock (&pool->commit_cond_mutex);
  return NULL;
}

int
pc_pool_start (struct pc_pool *pool)
{
  pthread_condattr_t attr;
  int r;

  if ((r = pc_wb_start (pool)) < 0)
    return r;
  if (pool->readonly || pool->committer_running)
    return 0;
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&pool->commit_cond, &attr);
  pthread_condattr_destroy (&attr);
  pool->committer_stop = false;
  r = pthread_create (&pool->committer, NULL, committer_thread, pool);
  if (r != 0)
    return pc_error (r, "cannot start the commit thread: %s", strerror (r));
  pool->committer_running = true;
  return 0;
}

static void
stop_committer (struct pc_pool *pool)
{
  if (!pool->committer_running)
    return;
  pthread_mutex_lock (&pool->commit_cond_mutex);
  pool->committer_stop = true;
  pthread_cond_signal (&pool->commit_cond);
  pthread_mutex_unlock (&pool->commit_cond_mutex);
  pthread_join (pool->committer, NULL);
  pthread_cond_destroy (&pool->commit_cond);
  pool->committer_running = false;
}

/* ---------------------------------------------------------------------- */
/* Create. */

static int
validate_block_size (uint32_t bs)
{
  if (bs < PC_MIN_BLOCK_SIZE || bs > PC_MAX_BLOCK_SIZE || (bs & (bs - 1)))
    return pc_error (EINVAL, "block size %" PRIu32 " is not a power of two "
                     "between 4K and 1M", bs);
  return 0;
}

static int
init_new_pool (struct pc_io *io, const char *path, struct pc_superblock *sb)
{
  uint8_t page[PC_PAGE_SIZE];
  int r;

  if (getrandom (sb->uuid, sizeof sb->uuid, 0) != (ssize_t) sizeof sb->uuid)
    return pc_error (errno, "getrandom: %m");
  sb->created = (uint64_t) time (NULL);
  sb->journal_tail = 0;
  sb->journal_seq = 1;
  /* Metadata and journal must read as zeros (a reused device may hold an
   * old pool whose journal would otherwise replay). */
  r = pc_io_punch (io, sb->data_offset - sb->meta_offset, sb->meta_offset);
  for (sb->generation = 0; r == 0 && sb->generation < 2; sb->generation++) {
    pc_sb_encode (sb, page);
    r = pc_io_pwrite (io, page, PC_PAGE_SIZE, sb->generation * PC_PAGE_SIZE);
  }
  if (r == 0) r = pc_io_sync (io);
  if (r < 0)
    return pc_error (r, "initialising pool %s: %s", path, pc_last_error ());
  return 0;
}

int
pc_pool_create (const char *path, uint64_t capacity, uint32_t block_size)
{
  struct pc_superblock sb = { 0 };
  struct pc_io io = { .fd = -1 };
  int fd, r;

  block_size = block_size ?: PC_DEFAULT_BLOCK_SIZE;
  if ((r = validate_block_size (block_size)) < 0)
    return r;
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd == -1)
    return pc_error (errno, "create %s: %m", path);
  close (fd);
  if ((r = pc_io_open (&io, path, false)) < 0)
    return r;
  if (flock (io.fd, LOCK_EX | LOCK_NB) == -1) {
    r = pc_error (EBUSY, "pool %s is in use by another process", path);
    goto out;
  }
  if (io.is_block_device) {
    r = pc_layout_for_device (capacity && capacity < io.size ? capacity
                              : io.size, block_size, &sb);
    if (r < 0) {
      r = pc_error (r, "block device %s (%" PRIu64 " bytes) is too small "
                    "for a pool", path, io.size);
      goto out;
    }
  }
  else {
    if (io.size > 0) {
      r = pc_error (EEXIST, "refusing to create a pool over %s: the file "
                    "exists and is not empty", path);
      goto out;
    }
    if (capacity / block_size == 0 ||
        pc_layout_for_nblocks (capacity / block_size, block_size, &sb) < 0) {
      r = pc_error (EINVAL, "pool capacity %" PRIu64 " is out of range "
                    "(at least one block of %" PRIu32 " bytes)",
                    capacity, block_size);
      goto out;
    }
    if (ftruncate (io.fd, (off_t) sb.total_bytes) == -1) {
      r = pc_error (errno, "ftruncate %s: %m", path);
      goto out;
    }
  }
  r = init_new_pool (&io, path, &sb);
 out:
  pc_io_close (&io);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Load (open and check share this). */

struct loader {
  struct pc_pool *pool;
  void (*report) (void *opaque, const char *msg);
  void *opaque;
  int nproblems;
  uint8_t *replayed;            /* bit per page: image came from the journal */
  uint64_t replayed_count;
};

static void problem (struct loader *ld, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
problem (struct loader *ld, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (ld->nproblems++ == 0)
    pc_error (EUCLEAN, "%s", msg);
  if (ld->report)
    ld->report (ld->opaque, msg);
}

/* In open mode the first problem is fatal; in check mode we keep going. */
static bool
must_stop (const struct loader *ld)
{
  return ld->report == NULL && ld->nproblems > 0;
}

static int
lock_pool (struct pc_pool *pool, bool readonly)
{
  if (flock (pool->io.fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
    return 0;
  if (errno == EWOULDBLOCK && readonly && pool->opts.live_view) {
    pool->live = true;                /* pc_pool_open repeats the load */
    return 0;
  }
  if (errno == EWOULDBLOCK)
    return pc_error (EBUSY, "pool %s is in use by another process (it holds "
                     "the pool's lock); stop that process first", pool->path);
  return pc_error (errno, "flock %s: %m", pool->path);
}

static int
read_superblock (struct loader *ld)
{
  struct pc_pool *pool = ld->pool;
  uint8_t pages[2][PC_PAGE_SIZE];
  struct pc_superblock sb[2];
  char why[2][256];
  int ok[2], r, i;

  if (pool->io.size < 2 * PC_PAGE_SIZE)
    return pc_error (EUCLEAN, "%s is not a punchcache pool: it is only %"
                     PRIu64 " bytes long", pool->path, pool->io.size);
  r = pc_io_pread (&pool->io, pages, sizeof pages, 0);
  if (r < 0) return r;
  for (i = 0; i < 2; i++)
    ok[i] = pc_sb_decode (pages[i], &sb[i], why[i], sizeof why[i]) == 0;
  if (!ok[0] && !ok[1])
    return pc_error (EUCLEAN, "%s has no valid superblock (slot A: %s; slot B: "
                     "%s)", pool->path, why[0], why[1]);
  /* One damaged slot is survivable: open uses the other (and the next
   * superblock write goes to the older slot); check reports it. */
  for (i = 0; i < 2; i++)
    if (!ok[i] && ld->report)
      problem (ld, "superblock slot %c is damaged (%s); slot %c is valid",
               'A' + i, why[i], 'B' - i);
  i = !ok[0] || (ok[1] && sb[1].generation > sb[0].generation);
  pool->sb = sb[i];
  if (pool->io.size < pool->sb.total_bytes)
    return pc_error (EUCLEAN, "pool %s is truncated: its superblock describes "
                     "%" PRIu64 " bytes but it has only %" PRIu64, pool->path,
                     pool->sb.total_bytes, pool->io.size);
  pool->block_size = pool->sb.block_size;
  pool->block_shift = (unsigned) __builtin_ctz (pool->block_size);
  return 0;
}

static int
alloc_meta_arrays (struct pc_pool *pool)
{
  uint64_t n = pool->sb.meta_pages;

  pool->pages = calloc (n, sizeof *pool->pages);
  pool->dirty = calloc (n, sizeof *pool->dirty);
  pool->dirty_bits = calloc ((n + 7) / 8, 1);
  if (!pool->pages || !pool->dirty || !pool->dirty_bits)
    return pc_error (ENOMEM, "out of memory for %" PRIu64 " metadata pages", n);
  pool->txn_max = PC_TXN_MAX_PAGES;
  if (pool->txn_max > pool->sb.journal_pages - 2)
    pool->txn_max = (uint32_t) pool->sb.journal_pages - 2;
  return 0;
}

static bool
page_is_zero (const uint8_t *p)
{
  static const uint8_t zero[PC_PAGE_SIZE];
  return memcmp (p, zero, PC_PAGE_SIZE) == 0;
}

/* Keep a copy of a valid page (NULL for an all-zero one). */
static int
keep_page (struct pc_pool *pool, uint32_t page_no, const uint8_t *img)
{
  free (pool->pages[page_no]);
  pool->pages[page_no] = NULL;
  if (page_is_zero (img))
    return 0;
  pool->pages[page_no] = malloc (PC_PAGE_SIZE);   /* 4 KiB + 16, where
                                                   * aligned_alloc took 8 KiB */
  if (pool->pages[page_no] == NULL)
    return pc_error (ENOMEM, "out of memory for metadata");
  memcpy (pool->pages[page_no], img, PC_PAGE_SIZE);
  return 0;
}

static int
apply_image (void *opaque, uint32_t page_no, const void *image)
{
  struct loader *ld = opaque;

  if (!(ld->replayed[page_no >> 3] & (1u << (page_no & 7)))) {
    ld->replayed[page_no >> 3] |= (uint8_t) (1u << (page_no & 7));
    ld->replayed_count++;
  }
  return keep_page (ld->pool, page_no, image);
}

static int
replay_journal (struct loader *ld, uint64_t *next_seq)
{
  struct pc_pool *pool = ld->pool;
  struct pc_journal_scan_result res;
  size_t bytes = pool->sb.journal_pages * PC_PAGE_SIZE;
  uint8_t *j = malloc (bytes);
  int r;

  ld->replayed = calloc ((pool->sb.meta_pages + 7) / 8, 1);
  if (j == NULL || ld->replayed == NULL) {
    free (j);
    return pc_error (ENOMEM, "out of memory for the journal");
  }
  r = pc_io_pread (&pool->io, j, bytes, pool->sb.journal_offset);
  if (r == 0)
    r = pc_journal_scan (j, pool->sb.journal_pages, pool->sb.journal_tail,
                         pool->sb.journal_seq, pool->sb.meta_pages,
                         apply_image, ld, &res);
  free (j);
  if (r < 0) return r;
  *next_seq = res.next_seq;
  return 0;
}

#define READ_BATCH 256u

static int
load_meta_pages (struct loader *ld)
{
  struct pc_pool *pool = ld->pool;
  uint8_t *buf = malloc (READ_BATCH * PC_PAGE_SIZE);
  uint64_t first, i;
  char why[256];
  int r = 0;

  if (buf == NULL)
    return pc_error (ENOMEM, "out of memory");
  for (first = 0; r == 0 && first < pool->sb.meta_pages; first += READ_BATCH) {
    uint64_t n = pool->sb.meta_pages - first;
    if (n > READ_BATCH) n = READ_BATCH;
    r = pc_io_pread (&pool->io, buf, n * PC_PAGE_SIZE,
                     pool->sb.meta_offset + first * PC_PAGE_SIZE);
    for (i = 0; r == 0 && i < n; i++) {
      uint32_t p = (uint32_t) (first + i);
      const uint8_t *img = buf + i * PC_PAGE_SIZE;
      if (ld->replayed[p >> 3] & (1u << (p & 7)))
        continue;                        /* the journal's copy is newer */
      if (pc_meta_page_check (img, p, why, sizeof why) < 0)
        problem (ld, "metadata page %" PRIu32 " (%s) is damaged: %s", p,
                 p < PC_VOLTABLE_PAGES ? "volume table" : "reverse map", why);
      else
        r = keep_page (pool, p, img);
    }
  }
  free (buf);
  return r;
}

static int
create_vol_state (struct pc_pool *pool, unsigned slot,
                  const struct pc_volume_entry *e)
{
  struct pc_vol_state *v = &pool->vols[slot];
  uint64_t nblocks = (e->size + pool->block_size - 1) >> pool->block_shift;
  int r;

  memset (v, 0, sizeof *v);
  strcpy (v->name, e->name);
  v->size = e->size;
  v->nblocks = nblocks;
  r = pc_blockmap_create (nblocks ?: 1, &v->map);
  if (r == 0) r = pc_blockmap_create (nblocks ?: 1, &v->resv);
  if (r == 0) r = pc_rangelock_create (&v->inval);
  if (r == 0) r = pc_rangelock_create (&v->alloc_lock);
  if (r == 0) r = pc_rangelock_create (&v->wt_lock);
  if (r < 0) {
    if (v->map) pc_blockmap_destroy (v->map);
    if (v->resv) pc_blockmap_destroy (v->resv);
    if (v->inval) pc_rangelock_destroy (v->inval);
    if (v->alloc_lock) pc_rangelock_destroy (v->alloc_lock);
    memset (v, 0, sizeof *v);
    return pc_error (r, "out of memory for volume %s", e->name);
  }
  v->in_use = true;
  return 0;
}

static void
destroy_vol_state (struct pc_pool *pool, struct pc_vol_state *v)
{
  if (!v->in_use) return;
  pc_omap_destroy (pool, v->omap);
  if (v->wt_lock) pc_rangelock_destroy (v->wt_lock);
  pc_blockmap_destroy (v->map);
  pc_blockmap_destroy (v->resv);
  pc_rangelock_destroy (v->inval);
  pc_rangelock_destroy (v->alloc_lock);
  memset (v, 0, sizeof *v);
}

int
pc_store_find_volume_locked (struct pc_pool *pool, const char *name)
{
  unsigned s;

  for (s = 0; s < PC_MAX_VOLUMES; s++)
    if (pool->vols[s].in_use && strcmp (pool->vols[s].name, name) == 0)
      return (int) s;
  return -1;
}

static int
load_volumes (struct loader *ld)
{
  struct pc_pool *pool = ld->pool;
  struct pc_volume_entry e;
  static const uint8_t zero[PC_PAGE_SIZE];
  char why[256];
  unsigned s;
  int r;

  for (s = 0; s < PC_MAX_VOLUMES; s++) {
    const uint8_t *page = pool->pages[s / PC_VOLS_PER_PAGE] ?: zero;
    if (pc_vol_entry_decode (page, s % PC_VOLS_PER_PAGE, &e, why,
                             sizeof why) < 0) {
      problem (ld, "volume table entry %u is damaged: %s", s, why);
      continue;
    }
    if (!(e.flags & PC_VOL_IN_USE))
      continue;
    if (pc_store_find_volume_locked (pool, e.name) >= 0) {
      problem (ld, "volume name '%s' appears twice in the volume table "
               "(slot %u)", e.name, s);
      continue;
    }
    if ((r = create_vol_state (pool, s, &e)) < 0)
      return r;
  }
  return 0;
}

/* ST5: an owner entry no volume can reach. */
static bool
entry_unreachable (struct pc_pool *pool, uint64_t e)
{
  uint32_t slot = pc_rmap_slot (e);

  return slot >= PC_MAX_VOLUMES || !pool->vols[slot].in_use ||
    pc_rmap_lblock (e) >= pool->vols[slot].nblocks;
}

static int
load_entry (struct loader *ld, uint64_t pb, uint64_t e, uint64_t *reclaimed)
{
  struct pc_pool *pool = ld->pool;
  struct pc_vol_state *v;
  uint64_t other;

  if (pb >= pool->sb.nblocks) {
    problem (ld, "reverse map entry for physical block %" PRIu64 " lies past "
             "the end of the pool (%" PRIu64 " blocks)", pb, pool->sb.nblocks);
    return 0;
  }
  if (pc_rmap_lblock (e) >= PC_OMAP_LBLOCK_BASE &&
      pc_rmap_slot (e) < PC_MAX_VOLUMES && pool->vols[pc_rmap_slot (e)].in_use) {
    char why[256];
    int r = pc_omap_load_entry (pool, pc_rmap_slot (e),
                                pc_rmap_lblock (e) - PC_OMAP_LBLOCK_BASE, pb,
                                why, sizeof why);
    if (r == -ENOMEM) return pc_error (ENOMEM, "out of memory");
    if (r < 0) {
      problem (ld, "volume '%s': %s", pool->vols[pc_rmap_slot (e)].name, why);
      return 0;
    }
    if (pc_alloc_mark_used (pool->alloc, pb) < 0)
      return pc_error (EUCLEAN, "internal error loading block %" PRIu64, pb);
    return 0;
  }
  if (entry_unreachable (pool, e)) {
    (*reclaimed)++;                 /* interrupted remove/shrink */
    if (!pool->readonly) {
      pc_rmap_put (pool->pages[pc_rmap_page_of (pb)], pc_rmap_index_of (pb), 0);
      mark_dirty_locked (pool, pc_rmap_page_of (pb));
    }
    return 0;
  }
  v = &pool->vols[pc_rmap_slot (e)];
  other = pc_blockmap_get (v->map, pc_rmap_lblock (e));
  if (other != PC_NO_BLOCK) {
    problem (ld, "block %" PRIu64 " of volume '%s' is mapped to two physical "
             "blocks (%" PRIu64 " and %" PRIu64 ")", pc_rmap_lblock (e),
             v->name, other, pb);
    return 0;
  }
  if (pc_alloc_mark_used (pool->alloc, pb) < 0)
    return pc_error (EUCLEAN, "internal error loading block %" PRIu64, pb);
  return pc_blockmap_set (v->map, pc_rmap_lblock (e), pb);
}

static int
load_rmap (struct loader *ld, uint64_t *reclaimed)
{
  struct pc_pool *pool = ld->pool;
  uint64_t p, i;
  int r = 0;

  r = pc_alloc_create (pool->sb.nblocks, &pool->alloc);
  if (r < 0) return pc_error (r, "out of memory for the allocator");
  for (p = PC_VOLTABLE_PAGES; r == 0 && p < pool->sb.meta_pages; p++) {
    if (pool->pages[p] == NULL) continue;
    for (i = 0; r == 0 && i < PC_RMAP_PER_PAGE; i++) {
      uint64_t e = pc_rmap_get (pool->pages[p], (unsigned) i);
      if (e != 0)
        r = load_entry (ld, (p - PC_VOLTABLE_PAGES) * PC_RMAP_PER_PAGE + i,
                        e, reclaimed);
    }
  }
  return r;
}

/* Origin records (omap.c): read and check each volume's. */
static int
load_origins (struct loader *ld)
{
  struct pc_pool *pool = ld->pool;
  char why[320];
  int r;

  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    if (!pool->vols[s].in_use) continue;
    r = pc_omap_load_blocks (pool, s, why, sizeof why);
    if (r == -ENOMEM) return pc_error (ENOMEM, "out of memory");
    if (r < 0) {
      problem (ld, "volume '%s': %s", pool->vols[s].name, why);
      if (must_stop (ld)) return 0;
    }
  }
  return 0;
}

/* After replay (read-write opens): put replayed pages in place, then
 * restart the journal at page 0 (ST3). */
static int
settle_journal (struct loader *ld, uint64_t next_seq)
{
  struct pc_pool *pool = ld->pool;
  uint8_t img[PC_PAGE_SIZE];
  uint64_t p;
  int r = 0;

  if (pool->readonly)
    return 0;
  for (p = 0; r == 0 && p < pool->sb.meta_pages; p++) {
    if (!(ld->replayed[p >> 3] & (1u << (p & 7)))) continue;
    if (pool->pages[p]) memcpy (img, pool->pages[p], PC_PAGE_SIZE);
    else memset (img, 0, PC_PAGE_SIZE);
    pc_meta_page_seal (img, (uint32_t) p);
    r = pc_io_pwrite (&pool->io, img, PC_PAGE_SIZE,
                      pool->sb.meta_offset + p * PC_PAGE_SIZE);
  }
  if (r == 0) r = pc_io_sync (&pool->io);
  if (r == 0 && (pool->sb.journal_tail != 0 || pool->sb.journal_seq != next_seq))
    r = journal_reset (pool, next_seq);
  pool->journal_head = 0;
  return r;
}

static void
init_mutexes (struct pc_pool *pool)
{
  pthread_mutex_init (&pool->vol_mutex, NULL);
  pthread_mutex_init (&pool->meta_mutex, NULL);
  pthread_mutex_init (&pool->prep_mutex, NULL);
  pthread_mutex_init (&pool->commit_mutex, NULL);
  pthread_mutex_init (&pool->commit_cond_mutex, NULL);
  pthread_mutex_init (&pool->resv_mutex, NULL);
}

int
pc_store_load (struct pc_pool *pool, const char *path, bool readonly,
               void (*report) (void *opaque, const char *msg), void *opaque)
{
  struct loader ld = { .pool = pool, .report = report, .opaque = opaque };
  uint64_t next_seq = 0, reclaimed = 0;
  int r;

  init_mutexes (pool);
  pool->readonly = readonly;
  pool->io.fd = -1;
  pool->path = strdup (path);
  if (pool->path == NULL) return pc_error (ENOMEM, "out of memory");
  if ((r = pc_io_open (&pool->io, path, readonly)) < 0) return r;
  if ((r = lock_pool (pool, readonly)) < 0) return r;
  if ((r = read_superblock (&ld)) < 0 || must_stop (&ld)) goto out;
  if ((r = alloc_meta_arrays (pool)) < 0) goto out;
  if ((r = replay_journal (&ld, &next_seq)) < 0) goto out;
  if ((r = load_meta_pages (&ld)) < 0 || must_stop (&ld)) goto out;
  if ((r = load_volumes (&ld)) < 0 || must_stop (&ld)) goto out;
  if ((r = load_rmap (&ld, &reclaimed)) < 0 || must_stop (&ld)) goto out;
  if ((r = load_origins (&ld)) < 0 || must_stop (&ld)) goto out;
  if ((r = settle_journal (&ld, next_seq)) < 0) goto out;
  pool->next_seq = next_seq;
  if (reclaimed && !readonly)
    r = pc_store_commit (pool);              /* ST5 */
 out:
  free (ld.replayed);
  if (r == 0 && ld.nproblems && report == NULL)
    r = -EUCLEAN;                            /* message already set */
  if (r == 0 && report)
    r = ld.nproblems;
  return r;
}

void
pc_store_free (struct pc_pool *pool)
{
  uint64_t p;
  unsigned s;

  pc_wb_destroy (pool);               /* dirty pages die with the cache */
  for (s = 0; s < PC_MAX_VOLUMES; s++)
    destroy_vol_state (pool, &pool->vols[s]);
  if (pool->pages)
    for (p = 0; p < pool->sb.meta_pages; p++)
      free (pool->pages[p]);
  free (pool->pages);
  free (pool->dirty);
  free (pool->dirty_bits);
  if (pool->alloc) pc_alloc_destroy (pool->alloc);
  pc_cache_destroy (pool->cache);
  pc_io_close (&pool->io);
  free (pool->path);
  pthread_mutex_destroy (&pool->vol_mutex);
  pthread_mutex_destroy (&pool->meta_mutex);
  pthread_mutex_destroy (&pool->prep_mutex);
  pthread_mutex_destroy (&pool->commit_mutex);
  pthread_mutex_destroy (&pool->commit_cond_mutex);
  pthread_mutex_destroy (&pool->resv_mutex);
  free (pool);
}

#define DEFAULT_DIRTY_EXPIRE_MS 30000u

/* Dirty limit: dirty= or half the cache (so clean pages keep at least
 * half of it); write-back starts in the background at half the limit. */
static int
setup_writeback (struct pc_pool *pool)
{
  struct pc_cache_stats st;
  uint64_t limit, want = pool->opts.dirty_bytes / PC_CACHE_PAGE;

  pc_cache_get_stats (pool->cache, &st);
  if (pool->opts.dirty_bytes &&
      (want == 0 || want > st.capacity_pages * 9 / 10))
    return pc_error (EINVAL, "dirty=%" PRIu64 " must be at least 4K and at "
                     "most 90%% of the cache's pages (%" PRIu64 " bytes)",
                     pool->opts.dirty_bytes,
                     st.capacity_pages * 9 / 10 * PC_CACHE_PAGE);
  if (st.capacity_pages < 8)
    return 0;                   /* too small to hold dirty data: write-through */
  limit = want ? want : st.capacity_pages / 2;
  pool->dirty_limit = limit;
  pool->dirty_background = limit / 2 ? limit / 2 : 1;
  pool->dirty_expire_ms = pool->opts.dirty_expire_ms ?: DEFAULT_DIRTY_EXPIRE_MS;
  pool->wb_fail_left = pool->opts.fail_writeback;
  pc_cache_set_unsafe_evict_dirty (pool->cache, pool->opts.unsafe_evict_dirty);
  return pc_wb_create (pool);
}

/* One load of the pool; *live says the pool was found in use by a server
 * (a live view, see pc_pool_open). */
static int
open_once (const char *path, const struct pc_pool_options *opts,
           struct pc_pool **out, bool *live)
{
  struct pc_pool *pool = calloc (1, sizeof *pool);
  int r;

  if (pool == NULL)
    return pc_error (ENOMEM, "out of memory");
  if (opts) pool->opts = *opts;
  pool->opened_at_ns = pc_now_ns ();
  r = pc_store_load (pool, path, pool->opts.readonly, NULL, NULL);
  if (r == 0)
    r = pc_io_open_data (&pool->io, path, pool->opts.direct_io,
                         &pool->direct_why);
  if (r == 0)
    r = pc_io_set_backend (&pool->io, pool->opts.io_backend,
                           &pool->uring_why);
  if (r == 0 && (r = pc_cache_create (pool->opts.cache_bytes, PC_CACHE_S3FIFO,
                                      0, &pool->cache)) < 0)
    r = pc_error (-r, r == -EINVAL
                  ? "cache budget of %" PRIu64 " bytes is too small (minimum "
                    "%u)" : "cannot allocate a cache of %" PRIu64 " bytes "
                  "(minimum %u)", pool->opts.cache_bytes, 2 * PC_CACHE_PAGE);
  if (r == 0 && pool->opts.writeback && pool->cache && !pool->readonly)
    r = setup_writeback (pool);
  *live = pool->live;
  if (r < 0) {
    char msg[512];
    snprintf (msg, sizeof msg, "%s", pc_last_error ());
    pc_store_free (pool);
    return pc_error (r, "%s", msg);
  }
  *out = pool;
  return 0;
}

/* Live views: how many loads, and the pause between two. */
#define LIVE_VIEW_TRIES 20
#define LIVE_VIEW_PAUSE_NS (10 * 1000 * 1000)

/* A digest of every metadata page as loaded (journal replayed). */
static uint32_t
meta_digest (const struct pc_pool *pool)
{
  uint32_t crc = 0;
  uint64_t p;

  for (p = 0; p < pool->sb.meta_pages; p++)
    if (pool->pages[p]) {
      crc = pc_crc32c (crc, &p, sizeof p);
      crc = pc_crc32c (crc, pool->pages[p], PC_PAGE_SIZE);
    }
  return crc;
}

int
pc_pool_open (const char *path, const struct pc_pool_options *opts,
              struct pc_pool **out)
{
  struct timespec pause = { 0, LIVE_VIEW_PAUSE_NS };
  struct pc_pool *prev = NULL, *cur;
  uint32_t prev_digest = 0, digest;
  bool live = false;
  int r = 0, tries;

  if (opts == NULL || !opts->readonly || !opts->live_view)
    return open_once (path, opts, out, &live);
  for (tries = 0; tries < LIVE_VIEW_TRIES; tries++) {
    if (tries > 0) nanosleep (&pause, NULL);
    r = open_once (path, opts, &cur, &live);
    if (r == -EUCLEAN && live)
      continue;                        /* read while a commit wrote: again */
    if (r < 0)
      break;
    digest = meta_digest (cur);
    if (!cur->live || (prev && digest == prev_digest)) {
      pc_pool_close (prev);
      *out = cur;
      return 0;
    }
    pc_pool_close (prev);
    prev = cur;
    prev_digest = digest;
  }
  /* Commits all the time: the last load that passed every check (each
   * page as of one of the commits made while it was read) is the view. */
  if (prev) {
    *out = prev;
    return 0;
  }
  if (r < 0 && !(r == -EUCLEAN && live))
    return r;
  return pc_error (EAGAIN, "pool %s is in use by another process and every "
                   "one of %d reads of its metadata met a commit half-way; "
                   "try again", path, LIVE_VIEW_TRIES);
}

int
pc_pool_close (struct pc_pool *pool)
{
  int r;

  if (pool == NULL) return 0;
  stop_committer (pool);
  r = pc_wb_flush (pool);               /* every dirty page, then commit */
  pc_wb_destroy (pool);
  pc_pool_release_prepared (pool);
  if (r == 0) r = pc_store_commit (pool);
  else pc_store_commit (pool);          /* what is on disk: keep it */
  if (r == 0 && !pool->readonly && pool->journal_head > 0) {
    /* Clean close: every journaled page is in place once synced, so the
     * next open has nothing to replay (ST3). */
    pthread_mutex_lock (&pool->commit_mutex);
    r = pc_io_sync (&pool->io);
    if (r == 0) r = journal_reset (pool, pool->next_seq);
    pthread_mutex_unlock (&pool->commit_mutex);
  }
  pc_store_free (pool);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Information. */

int
pc_pool_get_info (struct pc_pool *pool, struct pc_pool_info *info)
{
  struct pc_alloc_stats st;
  unsigned s;

  memset (info, 0, sizeof *info);
  pc_alloc_get_stats (pool->alloc, &st);
  info->block_size = pool->block_size;
  info->live = pool->live;
  info->nblocks = pool->sb.nblocks;
  info->capacity = pool->sb.nblocks << pool->block_shift;
  /* Prepared blocks are taken from the allocator but hold no data: they
   * count as free. */
  pthread_mutex_lock (&pool->prep_mutex);
  info->used_blocks = st.used + st.pending - pool->nprep;
  info->free_blocks = st.free + pool->nprep;
  info->prepared_blocks = pool->nprep;
  pthread_mutex_unlock (&pool->prep_mutex);
  info->total_bytes = pool->sb.total_bytes;
  info->journal_pages = pool->sb.journal_pages;
  info->meta_pages = pool->sb.meta_pages;
  info->commits = pool->ncommits;
  memcpy (info->uuid, pool->sb.uuid, sizeof info->uuid);
  pthread_mutex_lock (&pool->vol_mutex);
  for (s = 0; s < PC_MAX_VOLUMES; s++)
    if (pool->vols[s].in_use) {
      info->nvolumes++;
      info->metadata_ram += pc_blockmap_memory (pool->vols[s].map);
    }
  pthread_mutex_unlock (&pool->vol_mutex);
  pthread_mutex_lock (&pool->meta_mutex);
  for (uint64_t p = 0; p < pool->sb.meta_pages; p++)
    if (pool->pages[p]) info->metadata_ram += PC_PAGE_SIZE;
  pthread_mutex_unlock (&pool->meta_mutex);
  info->metadata_ram += (pool->sb.nblocks + 7) / 8;   /* allocator bitmap */
  return 0;
}

static void
fill_vol_info (struct pc_pool *pool, unsigned slot, struct pc_volume_info *vi)
{
  const struct pc_vol_state *v = &pool->vols[slot];

  memset (vi, 0, sizeof *vi);
  snprintf (vi->name, sizeof vi->name, "%s", v->name);
  vi->size = v->size;
  vi->allocated_blocks = pc_blockmap_count (v->map);
  vi->slot = slot;
  if (v->omap) {
    vi->has_origin = true;
    vi->origin_mode = v->omap->desc.mode;
    snprintf (vi->origin_uri, sizeof vi->origin_uri, "%s", v->omap->desc.uri);
    pc_omap_count (v, &vi->punched_blocks, &vi->origin_blocks);
  }
}

int
pc_volume_foreach (struct pc_pool *pool,
                   int (*fn) (void *, const struct pc_volume_info *),
                   void *opaque)
{
  struct pc_volume_info vi;
  unsigned s;
  int r = 0;

  pthread_mutex_lock (&pool->vol_mutex);
  for (s = 0; r == 0 && s < PC_MAX_VOLUMES; s++)
    if (pool->vols[s].in_use) {
      fill_vol_info (pool, s, &vi);
      r = fn (opaque, &vi);
    }
  pthread_mutex_unlock (&pool->vol_mutex);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Volume table changes (vol_mutex held; committed before return). */

static int
check_volume_size (const struct pc_pool *pool, const char *name, uint64_t size)
{
  if (size == 0 || size % 512 != 0 || size > PC_MAX_VOLUME_BYTES ||
      ((size - 1) >> pool->block_shift) > PC_MAX_LBLOCK)
    return pc_error (EINVAL, "volume '%s': size %" PRIu64 " must be a "
                     "non-zero multiple of 512 no larger than 1 EiB",
                     name, size);
  return 0;
}

static int
write_vol_entry (struct pc_pool *pool, unsigned slot)
{
  struct pc_volume_entry e = { .flags = 0 };
  const struct pc_vol_state *v = &pool->vols[slot];

  if (v->in_use) {
    snprintf (e.name, sizeof e.name, "%s", v->name);
    e.size = v->size;
    e.flags = PC_VOL_IN_USE;
  }
  return set_vol_entry (pool, slot, &e);
}

static int
add_locked (struct pc_pool *pool, const char *name, uint64_t size)
{
  struct pc_volume_entry e = { .size = size, .flags = PC_VOL_IN_USE };
  unsigned s;
  int r;

  if (pool->readonly)
    return pc_error (EROFS, "pool %s is open read-only", pool->path);
  if (!pc_vol_name_valid (name))
    return pc_error (EINVAL, "invalid volume name '%s': use 1 to %u of "
                     "A-Z a-z 0-9 . _ + @ -, not starting with . or -",
                     name, PC_VOL_NAME_MAX);
  if ((r = check_volume_size (pool, name, size)) < 0)
    return r;
  if (pc_store_find_volume_locked (pool, name) >= 0)
    return pc_error (EEXIST, "volume '%s' already exists", name);
  for (s = 0; s < PC_MAX_VOLUMES && pool->vols[s].in_use; s++)
    ;
  if (s == PC_MAX_VOLUMES)
    return pc_error (ENOSPC, "the volume table is full (%u volumes)",
                     PC_MAX_VOLUMES);
  snprintf (e.name, sizeof e.name, "%s", name);
  if ((r = create_vol_state (pool, s, &e)) < 0)
    return r;
  if ((r = write_vol_entry (pool, s)) < 0)
    return r;
  return pc_store_commit (pool);
}

int
pc_volume_add (struct pc_pool *pool, const char *name, uint64_t size)
{
  int r;

  pthread_mutex_lock (&pool->vol_mutex);
  r = add_locked (pool, name, size);
  pthread_mutex_unlock (&pool->vol_mutex);
  return r;
}

/* Free every block of volume v at or after lblock `from`. */
static int
free_blocks_from (struct pc_pool *pool, struct pc_vol_state *v, uint64_t from)
{
  uint64_t lb = from, pb;
  int r = 0;

  while (r == 0 &&
         (lb = pc_blockmap_next_mapped (v->map, lb, v->nblocks)) != PC_NO_BLOCK) {
    pb = pc_blockmap_clear (v->map, lb);
    r = pc_store_free_block (pool, pb);   /* punched by its commit */
    if (r == 0 && pc_store_ndirty (pool) >= pool->txn_max / 2)
      r = pc_store_commit (pool);
    lb++;
  }
  return r;
}

int
pc_store_lookup_unused_locked (struct pc_pool *pool, const char *name, int *slot)
{
  if (pool->readonly)
    return pc_error (EROFS, "pool %s is open read-only", pool->path);
  *slot = pc_store_find_volume_locked (pool, name);
  if (*slot < 0)
    return pc_error (ENOENT, "no volume named '%s' in pool %s", name,
                     pool->path);
  if (pool->vols[*slot].open_count > 0)
    return pc_error (EBUSY, "volume '%s' is open (%u handles)", name,
                     pool->vols[*slot].open_count);
  return 0;
}

static int
remove_locked (struct pc_pool *pool, const char *name)
{
  struct pc_vol_state *v;
  int slot, r;

  if ((r = pc_store_lookup_unused_locked (pool, name, &slot)) < 0)
    return r;
  v = &pool->vols[slot];
  /* Slot first: if we crash midway, the remaining blocks are unreachable
   * and reclaimed at the next open (ST5). */
  pc_cache_drop_slot (pool->cache, (unsigned) slot);  /* no I/O in flight */
  v->in_use = false;
  r = write_vol_entry (pool, (unsigned) slot);
  v->in_use = true;
  if (r == 0) r = free_blocks_from (pool, v, 0);
  if (r == 0 && v->omap) r = pc_omap_free_blocks (pool, v->omap);
  destroy_vol_state (pool, v);
  return r < 0 ? r : pc_store_commit (pool);
}

int
pc_volume_remove (struct pc_pool *pool, const char *name)
{
  int r;

  if ((r = pc_wb_flush (pool)) < 0)    /* no dirty page of it left */
    return r;
  pthread_mutex_lock (&pool->vol_mutex);
  r = remove_locked (pool, name);
  pthread_mutex_unlock (&pool->vol_mutex);
  return r;
}

static int
resize_locked (struct pc_pool *pool, const char *name, uint64_t size)
{
  struct pc_vol_state *v;
  uint64_t nblocks;
  int slot, r;

  if ((r = pc_store_lookup_unused_locked (pool, name, &slot)) < 0)
    return r;
  if ((r = check_volume_size (pool, name, size)) < 0)
    return r;
  v = &pool->vols[slot];
  if (v->omap)
    return pc_error (EINVAL, "volume '%s' reads through origin %s: its size "
                     "is the origin's (detach it first)", name,
                     v->omap->desc.uri);
  nblocks = (size + pool->block_size - 1) >> pool->block_shift;
  /* Size first: blocks past a shrunk end are unreachable (ST5). */
  v->size = size;
  if ((r = write_vol_entry (pool, (unsigned) slot)) < 0)
    return r;
  pc_cache_drop_slot (pool->cache, (unsigned) slot);  /* not open */
  if (nblocks < v->nblocks && (r = free_blocks_from (pool, v, nblocks)) < 0)
    return r;
  if ((r = pc_blockmap_resize (v->map, nblocks)) < 0 ||
      (r = pc_blockmap_resize (v->resv, nblocks)) < 0)
    return pc_error (r, "resizing the map of volume '%s'", name);
  v->nblocks = nblocks;
  return pc_store_commit (pool);
}

int
pc_volume_resize (struct pc_pool *pool, const char *name, uint64_t size)
{
  int r;

  if ((r = pc_wb_flush (pool)) < 0)
    return r;
  pthread_mutex_lock (&pool->vol_mutex);
  r = resize_locked (pool, name, size);
  pthread_mutex_unlock (&pool->vol_mutex);
  return r;
}

int
pc_volume_open (struct pc_pool *pool, const char *name, struct pc_volume **out)
{
  struct pc_volume *vol;
  int slot;

  vol = malloc (sizeof *vol);
  if (vol == NULL)
    return pc_error (ENOMEM, "out of memory");
  pthread_mutex_lock (&pool->vol_mutex);
  slot = pc_store_find_volume_locked (pool, name);
  if (slot >= 0)
    pool->vols[slot].open_count++;
  pthread_mutex_unlock (&pool->vol_mutex);
  if (slot < 0) {
    free (vol);
    return pc_error (ENOENT, "no volume named '%s' in this pool", name);
  }
  vol->pool = pool;
  vol->slot = (unsigned) slot;
  *out = vol;
  return 0;
}

void
pc_volume_close (struct pc_volume *vol)
{
  if (vol == NULL) return;
  pthread_mutex_lock (&vol->pool->vol_mutex);
  vol->pool->vols[vol->slot].open_count--;
  pthread_mutex_unlock (&vol->pool->vol_mutex);
  free (vol);
}

uint64_t
pc_volume_size (const struct pc_volume *vol)
{
  return vol->pool->vols[vol->slot].size;
}

uint32_t
pc_volume_block_size (const struct pc_volume *vol)
{
  return vol->pool->block_size;
}

void
pc_pool_thread_prepare (struct pc_pool *pool)
{
  pc_io_thread_prepare (&pool->io);
}

struct pc_pool *
pc_volume_pool (const struct pc_volume *vol)
{
  return vol->pool;
}

int
pc_volume_get_info (struct pc_volume *vol, struct pc_volume_info *info)
{
  fill_vol_info (vol->pool, vol->slot, info);
  return 0;
}
