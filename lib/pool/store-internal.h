/* punchcache: the store's private structures, shared by lib/pool/store.c (pool
 * life cycle, metadata, commits), lib/core/volume.c (the data path) and
 * lib/pool/check.c (offline check).  Front-ends never include this.
 *
 * Lock order (lib/LOCKING has the full tree):
 *   vol_mutex -> invalidate rangelock -> allocation rangelock
 *             -> commit_mutex -> meta_mutex -> allocator mutex
 * No mutex is held across pool I/O except commit_mutex, which exists to
 * serialise the commit I/O itself.
 */
#ifndef PUNCHCACHE_STORE_INTERNAL_H
#define PUNCHCACHE_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "punchcache/alloc.h"
#include "punchcache/clock.h"
#include "punchcache/blockmap.h"
#include "punchcache/cache.h"
#include "punchcache/format.h"
#include "punchcache/io.h"
#include "punchcache/punchcache.h"
#include "punchcache/rangelock.h"

struct pc_origin;
struct pc_prefetcher;

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the in-RAM reverse map is stored in on-disk (little-endian) order"
#endif

#define PC_PREP_MAX 256u         /* prepared blocks kept at most */

/* One volume slot.  name/size/in_use/open_count are protected by
 * pool->vol_mutex; while open_count > 0 they do not change, so the data
 * path reads them without the mutex.  map, inval and alloc_lock exist iff
 * in_use. */
struct pc_vol_state {
  bool in_use;
  char name[PC_VOL_NAME_MAX + 1];
  uint64_t size;                /* bytes */
  uint64_t nblocks;             /* ceil (size / block_size) */
  unsigned open_count;
  struct pc_blockmap *map;      /* lblock -> pblock; lock-free lookups */
  struct pc_rangelock *inval;   /* the invalidate lock (SPEC §2) */
  struct pc_rangelock *alloc_lock; /* per-block allocation exclusion (I5) */
  /* Blocks reserved for dirty pages not yet written back (delayed
   * allocation, writeback.c W4): lblock -> 1.  Changed under the block's
   * allocation lock, or the invalidate lock exclusive (punches). */
  struct pc_blockmap *resv;
  /* The origin (issue 15): its record and punched map (lib/pool/omap.c;
   * NULL = no origin), and the core's live client of it (lib/core; the
   * pool never calls it).  Change only while the volume is not open. */
  struct pc_omap *omap;
  struct pc_origin *origin;
  struct pc_prefetcher *prefetcher; /* core (overlay.c): read-ahead jobs */
  struct pc_rangelock *wt_lock;   /* core: orders writethrough updates */
  struct pc_origin_fill_stats ostats;   /* core: atomic counters */
  uint64_t ra_next, ra_blocks;  /* core: sequential read-ahead (racy
                                 * hints, atomic) */
};

struct pc_volume {
  struct pc_pool *pool;
  unsigned slot;
};

struct pc_pool {
  char *path;
  struct pc_io io;
  struct pc_superblock sb;      /* layout; tail/seq/generation under commit_mutex */
  struct pc_pool_options opts;
  uint32_t block_size;
  unsigned block_shift;
  bool readonly;
  bool live;                    /* opened without the lock: a live view */

  pthread_mutex_t vol_mutex;    /* volume table changes, open counts */
  struct pc_vol_state vols[PC_MAX_VOLUMES];

  struct pc_alloc *alloc;
  /* Prepared blocks (prepared.c): free blocks taken from the allocator in
   * runs and zeroed with one FALLOC_FL_ZERO_RANGE per run, so allocating
   * writes into them skip the punch and write only their data.  Protected
   * by prep_mutex, a leaf held for the stack operations only. */
  pthread_mutex_t prep_mutex;
  uint64_t prep[PC_PREP_MAX];
  unsigned nprep;
  uint64_t prep_runs, prep_blocks;  /* statistics */
  unsigned prep_busy;              /* atomic: runs being taken and zeroed */
  struct pc_cache *cache;       /* NULL = no cache; own locks (leaf) */
  /* Write-back (lib/pool/writeback.c); wb NULL = write-through. */
  struct pc_writeback *wb;
  pthread_mutex_t resv_mutex;   /* a leaf: the reservation count */
  uint64_t reserved;            /* blocks reserved, not yet allocated (W4) */
  unsigned converting;          /* atomic: reservations being turned into
                                 * blocks right now */
  uint64_t write_seq;           /* atomic: write sequence numbers */
  uint64_t dirty_limit;         /* pages: writers wait above this */
  uint64_t dirty_background;    /* pages: write-back starts above this */
  unsigned dirty_expire_ms;     /* write back pages older than this */
  unsigned wb_fail_left;        /* atomic: debug, failures to inject */
  const char *direct_why;       /* why data I/O is buffered, or NULL */
  const char *uring_why;        /* why batches use system calls, or NULL */
  uint64_t opened_at_ns;        /* CLOCK_MONOTONIC at open */

  /* meta_mutex protects: pages[] (pointers and contents), the dirty set,
   * epoch.  Held for short memory operations only. */
  pthread_mutex_t meta_mutex;
  uint8_t **pages;              /* meta_pages entries, NULL = all-zero page */
  uint32_t *dirty;              /* dirty page numbers, ndirty of them */
  uint64_t ndirty;
  uint8_t *dirty_bits;          /* one bit per metadata page */
  uint64_t epoch;               /* the commit that will carry current frees */

  /* commit_mutex serialises commits and protects the journal head, the
   * superblock's tail/seq/generation and the committer thread state. */
  pthread_mutex_t commit_mutex;
  uint64_t journal_head;        /* next free journal page */
  uint64_t next_seq;            /* sequence number of the next transaction */
  uint64_t commits_started;     /* atomic reads allowed */
  uint64_t commits_done;        /* generation of the last completed commit */
  uint64_t ncommits;            /* commits that wrote a transaction */
  uint64_t punched_runs;        /* freed-block runs punched by commits */
  uint64_t punch_errors;        /* ... whose punch failed (space kept) */
  int broken;                   /* sticky -errno after a failed commit */
  bool data_dirty;              /* atomic: data written since last sync */
  uint32_t txn_max;             /* pages per transaction */

  pthread_t committer;
  bool committer_running;
  bool committer_stop;          /* under commit_cond_mutex */
  pthread_mutex_t commit_cond_mutex;
  pthread_cond_t commit_cond;
};

/* omap.c (origin records and punched map) */
struct pc_omap_chunk;
struct pc_omap {
  struct pc_origin_desc desc;   /* URI, mode, size (vol_mutex) */
  uint64_t desc_pb;             /* its block, or PC_NO_BLOCK */
  uint64_t bits;                /* logical blocks per chunk */
  uint64_t nchunks;
  struct pc_omap_chunk **chunk; /* NULL = nothing punched in its range */
};
struct pc_omap_write { void *buf; uint64_t pb; };
struct pc_omap_out { struct pc_omap_write *w; unsigned n, cap; };
int pc_omap_create (struct pc_pool *pool, struct pc_vol_state *v,
                    struct pc_omap **out);
void pc_omap_destroy (struct pc_pool *pool, struct pc_omap *m);
/* Is lblock punched?  Lock-free. */
bool pc_omap_test (const struct pc_omap *m, uint64_t lblock);
/* Mark lblock punched (may take a block for the chunk's next copy: M1).
 * 0, -ENOSPC, -ENOMEM. */
int pc_omap_mark (struct pc_pool *pool, struct pc_vol_state *v,
                  uint64_t lblock);
int pc_omap_snapshot_locked (struct pc_pool *pool, struct pc_omap_out *out);
int pc_omap_write_out (struct pc_pool *pool, struct pc_omap_out *out,
                       bool do_io);
int pc_omap_load_entry (struct pc_pool *pool, unsigned slot, uint64_t k,
                        uint64_t pb, char *why, size_t whylen);
int pc_omap_load_blocks (struct pc_pool *pool, unsigned slot, char *why,
                         size_t whylen);
int pc_omap_free_blocks (struct pc_pool *pool, struct pc_omap *m);
void pc_omap_count (const struct pc_vol_state *v, uint64_t *punched,
                    uint64_t *from_origin);
uint64_t pc_omap_blocks (const struct pc_omap *m);

/* prepared.c */
/* A free data block for an allocating write, and whether it is known to
 * read as zeros (*clean).  0 or -ENOSPC (no message: the caller says which
 * pool is full).  May commit (commit_mutex) to free blocks a trim freed. */
int pc_pool_take_block (struct pc_pool *pool, uint64_t *pb, bool *clean);
/* Give the prepared blocks back to the allocator, punched (pool close). */
void pc_pool_release_prepared (struct pc_pool *pool);

/* writeback.c */
struct pc_writeback;
int pc_wb_create (struct pc_pool *pool);
int pc_wb_start (struct pc_pool *pool);       /* after fork */
void pc_wb_destroy (struct pc_pool *pool);    /* stops; writes nothing */
int pc_wb_flush (struct pc_pool *pool);       /* W5 */
int pc_wb_throttle (struct pc_pool *pool, uint64_t new_pages);
int pc_wb_make_room (struct pc_pool *pool);
int pc_wb_reserve (struct pc_pool *pool);     /* 0 or -ENOSPC */
int pc_wb_try_reserve (struct pc_pool *pool); /* never waits */
bool pc_wb_over_limit (struct pc_pool *pool, uint64_t new_pages);
void pc_wb_unreserve (struct pc_pool *pool);
int pc_wb_take_reserved (struct pc_pool *pool, uint64_t *pb, bool *clean);
void pc_wb_return_block (struct pc_pool *pool, uint64_t pb);
uint64_t pc_wb_reserved (struct pc_pool *pool);
uint64_t pc_wb_next_seq (struct pc_pool *pool);


/* store.c */
int pc_store_commit (struct pc_pool *pool);
void pc_store_set_owner_locked (struct pc_pool *pool, uint64_t pblock,
                                uint64_t entry);   /* meta_mutex held */
void pc_store_free_block_locked (struct pc_pool *pool, uint64_t pblock);
int pc_store_write_superblock (struct pc_pool *pool); /* commit_mutex held */
int pc_store_find_volume_locked (struct pc_pool *pool, const char *name);
int pc_store_lookup_unused_locked (struct pc_pool *pool, const char *name,
                                   int *slot);        /* vol_mutex held */
int pc_store_set_owner (struct pc_pool *pool, uint64_t pblock, uint64_t entry);
int pc_store_free_block (struct pc_pool *pool, uint64_t pblock);
uint64_t pc_store_ndirty (struct pc_pool *pool);
/* Load a pool (shared by open and check).  report != NULL: check mode,
 * keep going and report every problem; returns the problem count. */
int pc_store_load (struct pc_pool *pool, const char *path, bool readonly,
                   void (*report) (void *opaque, const char *msg),
                   void *opaque);
void pc_store_free (struct pc_pool *pool);

static inline uint64_t
pc_data_offset (const struct pc_pool *pool, uint64_t pblock)
{
  return pool->sb.data_offset + (pblock << pool->block_shift);
}

#endif
