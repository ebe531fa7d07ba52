/* punchcache: the store API used by every front-end (nbdkit plugin,
 * standalone server, admin tool, tests).
 *
 * A pool is one file or block device holding many thin volumes.  All
 * functions return 0 (or a non-negative count) on success and -errno on
 * failure; on failure a sentence naming the problem is available from
 * pc_last_error() in the calling thread.  Front-ends turn that into
 * nbdkit_error() or an NBD error reply; the library never prints.
 *
 * Thread safety: every function on an open pool or volume may be called
 * from any number of threads at once, except pc_pool_close(), which must
 * be the last call.
 */
#ifndef PUNCHCACHE_PUNCHCACHE_H
#define PUNCHCACHE_PUNCHCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct pc_pool;
struct pc_volume;

/* ---- errors ---- */
/* The message of the last failure in this thread ("" if none). */
const char *pc_last_error (void);
/* For library code: record a message (printf-style) and return -err. */
int pc_error (int err, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* ---- sizes ---- */
/* Parse "512", "64K", "1M", "10G", "1T", "2P", "1E" (also "KiB", "k", etc.,
 * powers of 1024), "100b" (bytes), "8s" (512-byte sectors): every suffix
 * nbdkit_parse_size accepts.  Returns the size or -EINVAL/-ERANGE. */
int64_t pc_parse_size (const char *str);

/* ---- pools ---- */
struct pc_pool_options {
  bool readonly;
  bool live_view;                 /* with readonly: if another process (a
                                   * running server) holds the pool's lock,
                                   * open anyway, without the lock, as a view
                                   * of its committed metadata */
  uint64_t cache_bytes;           /* block cache budget; 0 = no cache */
  int direct_io;                  /* enum pc_io_direct: 0 auto, 1 on, 2 off */
  int io_backend;                 /* enum pc_io_backend: 0 auto, 1 uring,
                                   * 2 sync */
  unsigned stats_interval_ms;     /* period of the stats=PATH writer
                                   * (lib/stats/writer.c, started by
                                   * pc_params_open_pool; the pool itself
                                   * ignores it); 0 = default (2000) */
  unsigned origin_connections;    /* connections per origin (lib/core/
                                   * overlay.c; the pool ignores it) */
  /* Debug switches (never for production): */
  bool unsafe_no_invalidate_lock; /* punches skip the invalidate lock */
  unsigned race_delay_us;         /* sleep between map lookup and pool I/O */
  unsigned fail_write_every;      /* every Nth allocating data write fails
                                   * with EIO (fault injection, I5 tests) */
  unsigned commit_interval_ms;    /* 0 = default (1000) */
  unsigned fill_delay_us;         /* sleep between a cache fill's pool read
                                   * and its insert (race tests) */
  /* Write-back (SPEC §1): writes complete in the cache, FLUSH/FUA make
   * them durable.  Needs a cache; off = write-through. */
  bool writeback;
  uint64_t dirty_bytes;           /* dirty limit; 0 = half the cache */
  unsigned dirty_expire_ms;       /* 0 = default (30000) */
  unsigned writeback_delay_us;    /* debug: between a write-back's collect
                                   * and its locks (I9 test) */
  unsigned fail_writeback;        /* debug: the next N write-back data
                                   * writes fail with EIO (I10 test) */
  /* Debug: remove one write-back protection, so its test can show it
   * catches the bug (never for production). */
  bool unsafe_wb_forget_failures; /* a failed write-back marks its pages
                                   * clean ("fsyncgate"): I10 */
  bool unsafe_no_reservations;    /* writes do not reserve blocks: I11 */
  bool unsafe_evict_dirty;        /* the cache may evict dirty pages: I12 */
  bool unsafe_origin_fill;        /* fills from an origin take no allocation
                                   * lock and do not look again before they
                                   * publish (issue 15's V6) */
};

/* Create a new pool at path: a regular file of `capacity` data bytes
 * (rounded down to whole blocks; the file is sparse), or, if path is an
 * existing block device, the whole device (capacity 0 = all of it).
 * Refuses to overwrite a non-empty existing file (-EEXIST).  Creates no
 * volumes.  block_size 0 = default (64 KiB). */
int pc_pool_create (const char *path, uint64_t capacity, uint32_t block_size);

/* Open an existing pool: takes an exclusive advisory lock (-EBUSY with a
 * clear message if another process holds it), validates the superblock,
 * replays the journal, loads the metadata, and reclaims blocks left
 * unreachable by an interrupted volume removal or shrink.
 *
 * readonly takes a shared lock instead.  readonly + live_view opens a pool
 * another process holds without any lock (as lvs or thin_ls read a live
 * pool): the server may commit while the metadata is read, so the load is
 * repeated until two consecutive loads read identical metadata pages (a
 * torn read fails its checksums and is retried too).  The view is the pool
 * as of the server's last commit; pc_pool_info.live says it is one.  A
 * server that commits all the time may never give two identical loads: the
 * view is then the last load that passed every check (each page as of one
 * of the commits made meanwhile); -EAGAIN only if no load did. */
int pc_pool_open (const char *path, const struct pc_pool_options *opts,
                  struct pc_pool **out);

/* Start the background committer (commits every commit_interval_ms).  Call
 * after fork() if the process daemonises.  0 or -errno. */
int pc_pool_start (struct pc_pool *pool);

/* Commit everything and close.  Returns the result of the final commit. */
int pc_pool_close (struct pc_pool *pool);

/* Make every write completed before this call durable (data and metadata),
 * on every volume.  Concurrent callers share commits. */
int pc_pool_flush (struct pc_pool *pool);

struct pc_pool_info {
  uint32_t block_size;
  uint64_t nblocks;          /* data blocks in the pool */
  uint64_t capacity;         /* nblocks * block_size */
  uint64_t used_blocks;      /* mapped + waiting to be freed */
  uint64_t free_blocks;
  uint64_t total_bytes;      /* bytes of file/device the pool spans */
  uint64_t journal_pages;
  uint64_t meta_pages;
  uint64_t commits;          /* commits since open */
  uint64_t metadata_ram;     /* bytes of RAM used by maps */
  uint64_t prepared_blocks;  /* free blocks zeroed ahead (counted free) */
  unsigned nvolumes;
  uint8_t uuid[16];
  bool live;                 /* a live view: another process holds the pool */
};
int pc_pool_get_info (struct pc_pool *pool, struct pc_pool_info *info);

/* Statistics (the JSON of stats=PATH, its writer and its reader) are the
 * statistics module's, above the pool: include/punchcache/stats.h, from
 * the counters of include/punchcache/counters.h. */
/* Write-back figures (all 0 / false with writeback off). */
struct pc_wb_stats {
  bool enabled;
  uint64_t dirty_bytes, dirty_limit_bytes;
  uint64_t reserved_blocks;      /* for dirty data not yet allocated */
  uint64_t pages_written, bytes_written, blocks_allocated, failures;
  uint64_t flushes, flush_ns_total, flush_ns_max, throttled;
};
void pc_wb_get_stats (struct pc_pool *pool, struct pc_wb_stats *st);
/* Whether data I/O is O_DIRECT, and if not, why (static string). */
bool pc_pool_direct_io (struct pc_pool *pool, const char **why);
/* Do multi-block requests go through io_uring?  If not, *why (if why is
 * not NULL) says why. */
bool pc_pool_io_uring (struct pc_pool *pool, const char **why);

/* ---- volumes ---- */
struct pc_volume_info {
  char name[48];
  uint64_t size;             /* virtual size in bytes */
  uint64_t allocated_blocks; /* blocks mapped */
  unsigned slot;
  /* Its origin (issue 15), if has_origin: */
  bool has_origin;
  unsigned origin_mode;      /* 0 overlay, 1 writethrough */
  char origin_uri[2049];
  uint64_t punched_blocks;   /* unmapped, read zeros */
  uint64_t origin_blocks;    /* still read from the origin */
};

/* Calls fn for every volume, in slot order; stops at fn's first non-zero
 * return and returns it. */
int pc_volume_foreach (struct pc_pool *pool,
                       int (*fn) (void *opaque,
                                  const struct pc_volume_info *info),
                       void *opaque);

/* Create a volume (committed before return).  -EEXIST, -EINVAL (bad name
 * or size), -ENOSPC (volume table full), -EROFS. */
int pc_volume_add (struct pc_pool *pool, const char *name, uint64_t size);
/* Remove a volume and free its blocks (committed before return).  -ENOENT,
 * -EBUSY if it is open. */
int pc_volume_remove (struct pc_pool *pool, const char *name);
/* Change a volume's size; shrinking frees blocks past the end.  -EBUSY if
 * it is open. */
int pc_volume_resize (struct pc_pool *pool, const char *name, uint64_t size);

/* Open a volume for I/O by name.  -ENOENT with a message listing nothing
 * secret.  A volume may be opened many times (one per connection). */
int pc_volume_open (struct pc_pool *pool, const char *name,
                    struct pc_volume **out);
void pc_volume_close (struct pc_volume *vol);
uint64_t pc_volume_size (const struct pc_volume *vol);
uint32_t pc_volume_block_size (const struct pc_volume *vol);
struct pc_pool *pc_volume_pool (const struct pc_volume *vol);
/* For a thread that will do the pool's I/O for the pool's whole life
 * (the core's workers): set up its per-thread I/O resources now. */
void pc_pool_thread_prepare (struct pc_pool *pool);
int pc_volume_get_info (struct pc_volume *vol, struct pc_volume_info *info);

/* ---- origins (issue 15; lib/pool/omap.c) ---- */
/* A volume can read through a remote NBD export, its origin.  The pool
 * records the origin's URI and mode with the volume and which blocks are
 * punched (read zeros, never the origin's data again); blocks neither
 * local nor punched are read from the origin (lib/core connects it). */
/* What the data path did with a volume's origin (lib/core/volume.c). */
struct pc_origin_fill_stats {
  uint64_t fills;                 /* origin reads made to fill blocks */
  uint64_t fill_blocks;           /* blocks filled (local or punched) */
  uint64_t fill_bytes;            /* bytes fetched from the origin */
  uint64_t zero_blocks;           /* filled blocks the origin had as zeros */
  uint64_t fill_ns_total, fill_ns_max;  /* origin read latency of fills */
  uint64_t local_reads;           /* reads served with no origin access */
  uint64_t readahead_blocks;      /* blocks filled ahead of sequential reads */
  uint64_t dirty_fills;           /* filled blocks kept as dirty pages for
                                   * write-back to write (not yet written) */
  uint64_t errors;                /* fills that failed (EIO to a reader) */
};
/* Record uri as the origin of volume name (its size must equal
 * origin_size; a volume holding data of its own cannot get an origin;
 * the volume must not be open unless uri and mode are as recorded).
 * Committed before return.  Upgrades a version 1 pool to version 2. */
int pc_volume_set_origin (struct pc_pool *pool, const char *name,
                          const char *uri, unsigned mode,
                          uint64_t origin_size);
/* Drop the volume's origin: only once no block is read from it (-EBUSY
 * with the count otherwise).  The volume must not be open. */
int pc_volume_detach_origin (struct pc_pool *pool, const char *name);

/* ---- I/O (offsets and counts in bytes, any alignment) ---- */
#define PC_FUA       1u   /* durable before returning */
#define PC_NO_HOLE   2u   /* zero: keep the range allocated */

/* -EINVAL for out-of-range requests (with a message). */
int pc_read (struct pc_volume *vol, void *buf, uint64_t count, uint64_t offset);
/* pc_read if it can complete without waiting: every wanted byte is a hole
 * or in the block cache, and the invalidate lock is free to take shared at
 * once.  -EAGAIN otherwise (nothing done: call pc_read), or -EREMOTE if
 * it needs a block from the volume's origin (call pc_read too).  Never sleeps on a
 * lock held across I/O and never does pool I/O (SPEC I13). */
int pc_read_nowait (struct pc_volume *vol, void *buf, uint64_t count,
                    uint64_t offset);
/* pc_write if it can complete without waiting (write-back on, no FUA, below
 * the dirty limit, locks free at once, whole or cached pages): -EAGAIN
 * otherwise (call pc_write; pages it wrote are written again, same bytes).
 * Never sleeps on a lock held across I/O and never does pool I/O (I13). */
int pc_write_nowait (struct pc_volume *vol, const void *buf, uint64_t count,
                     uint64_t offset, unsigned flags);
int pc_write (struct pc_volume *vol, const void *buf, uint64_t count,
              uint64_t offset, unsigned flags);
/* Punch: reads return zeros afterwards; whole blocks are freed, partial
 * blocks at the edges zeroed in place. */
int pc_trim (struct pc_volume *vol, uint64_t count, uint64_t offset,
             unsigned flags);
/* Without PC_NO_HOLE the same as pc_trim; with it, the range stays (or
 * becomes) allocated and reads zeros. */
int pc_zero (struct pc_volume *vol, uint64_t count, uint64_t offset,
             unsigned flags);
/* FLUSH: every write completed before it durable: the pool's
 * (pc_pool_flush), and a writethrough origin's. */
int pc_volume_flush (struct pc_volume *vol);
/* Read-ahead hint (NBD_CMD_CACHE).  Validates the range. */
int pc_prefetch (struct pc_volume *vol, uint64_t count, uint64_t offset);

/* Extents: calls fn(opaque, offset, length, is_hole) for consecutive runs
 * covering [offset, offset+count) (the last may extend to the block end).
 * is_hole runs read as zeros.  Holds the invalidate lock shared. */
int pc_extents (struct pc_volume *vol, uint64_t count, uint64_t offset,
                int (*fn) (void *opaque, uint64_t offset, uint64_t length,
                           bool is_hole),
                void *opaque);

/* ---- offline check ---- */
/* Open pool read-only without replaying into it (replay is applied in
 * memory only), check every structure, call report(opaque, message) for
 * each problem found.  Returns the number of problems (0 = clean), or
 * -errno if the pool cannot be read at all. */
int pc_pool_check (const char *path,
                   void (*report) (void *opaque, const char *msg),
                   void *opaque);

#endif
