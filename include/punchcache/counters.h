/* punchcache: the counters the pool layer exposes to the statistics
 * module above it (lib/stats/stats.c takes its snapshot from these).
 *
 * The pool never calls the statistics module: it only keeps counters and
 * lets them be read (docs/design.md "Layers").  These getters take the
 * pool's locks one at a time for a moment each (vol_mutex, prep_mutex, and
 * through the cache and range-lock getters their shard mutexes), never two
 * at once (lib/LOCKING); they may be called from any thread while the pool
 * is open.
 */
#ifndef PUNCHCACHE_COUNTERS_H
#define PUNCHCACHE_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>

#include "punchcache/cache.h"
#include "punchcache/punchcache.h"
#include "punchcache/rangelock.h"

/* Pool-wide figures beyond struct pc_pool_info. */
struct pc_pool_counters {
  uint64_t uptime_ms;               /* since pc_pool_open */
  bool readonly;
  uint64_t prepared_runs;           /* runs zeroed ahead since open */
  uint64_t prepared_total;          /* blocks those runs held */
  bool cache_enabled;
  struct pc_cache_stats cache;      /* all zero when the cache is off */
};
void pc_pool_get_counters (struct pc_pool *pool, struct pc_pool_counters *c);

/* The pool's file or device, as opened (valid while the pool is open). */
const char *pc_pool_path (const struct pc_pool *pool);

/* One volume's figures (an entry of the statistics file's "volumes"). */
struct pc_stats_volume {
  char name[48];
  uint64_t size;                    /* virtual size, bytes */
  uint64_t allocated;               /* bytes mapped */
  unsigned connections;             /* open handles */
  struct pc_rangelock_stats lock;   /* its invalidate lock */
};
/* Fill out[0..n-1] for the volumes in use, in slot order, taken under one
 * hold of the volume table; out has room for max entries.  Returns n. */
unsigned pc_pool_get_volume_counters (struct pc_pool *pool,
                                      struct pc_stats_volume *out,
                                      unsigned max);

#endif
