/* punchcache: the pool's counters, read by the statistics module above.
 *
 * What: getters over the figures the pool layer keeps anyway (I/O mode,
 * prepared-block runs, the block cache's counters, each volume's size,
 * mapping count, open handles and invalidate-lock waits), declared in
 * include/punchcache/counters.h and punchcache.h.
 *
 * Why a separate file: the statistics file used to be taken by code that
 * read these structures directly and was called back by the committer;
 * now lib/stats/ sees the pool only through these getters and the public
 * API, and nothing in lib/pool/ calls lib/stats/ (docs/design.md
 * "Layers").
 *
 * Invariants:
 *  CN1 pc_pool_get_volume_counters returns exactly the entries it filled,
 *      all taken under one hold of vol_mutex, so the count always matches
 *      the array.
 *
 * Locks: vol_mutex for the volume walk, prep_mutex for the prepared-run
 * figures, and through the getters each cache shard mutex and range-lock
 * shard mutex in turn, one at a time; never two at once and never under
 * another lock (lib/LOCKING).
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "punchcache/counters.h"
#include "store-internal.h"

bool
pc_pool_direct_io (struct pc_pool *pool, const char **why)
{
  if (why) *why = pool->direct_why;
  return pool->io.direct;
}

bool
pc_pool_io_uring (struct pc_pool *pool, const char **why)
{
  if (why) *why = pool->uring_why;
  return pool->io.uring;
}

const char *
pc_pool_path (const struct pc_pool *pool)
{
  return pool->path;
}

void
pc_pool_get_counters (struct pc_pool *pool, struct pc_pool_counters *c)
{
  memset (c, 0, sizeof *c);
  c->uptime_ms = (pc_now_ns () - pool->opened_at_ns) / 1000000;
  c->readonly = pool->readonly;
  pthread_mutex_lock (&pool->prep_mutex);
  c->prepared_runs = pool->prep_runs;
  c->prepared_total = pool->prep_blocks;
  pthread_mutex_unlock (&pool->prep_mutex);
  c->cache_enabled = pool->cache != NULL;
  pc_cache_get_stats (pool->cache, &c->cache);
}

unsigned
pc_pool_get_volume_counters (struct pc_pool *pool,
                             struct pc_stats_volume *out, unsigned max)
{
  unsigned n = 0;

  pthread_mutex_lock (&pool->vol_mutex);
  for (unsigned s = 0; s < PC_MAX_VOLUMES && n < max; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct pc_stats_volume *vc = &out[n];
    if (!v->in_use) continue;
    memset (vc, 0, sizeof *vc);
    snprintf (vc->name, sizeof vc->name, "%s", v->name);
    vc->size = v->size;
    vc->allocated = pc_blockmap_count (v->map) << pool->block_shift;
    vc->connections = v->open_count;
    pc_rangelock_get_stats (v->inval, &vc->lock);
    n++;
  }
  pthread_mutex_unlock (&pool->vol_mutex);
  return n;
}
