/* punchcache: statistics a user can read -- the server side.
 *
 * What: one snapshot of a live pool (struct pc_stats, include/punchcache/
 * stats.h) -- space, the block cache's counters, invalidate-lock waits,
 * I/O mode -- built from the counters the modules already keep (cache
 * shards, range locks, allocator), and the atomic writer behind
 * `stats=PATH` (temporary file in the same directory, fsync-free rename: a
 * reader never sees a half-written file).  The committer thread calls
 * pc_pool_write_stats every stats_interval_ms, and pc_pool_close once more
 * at the end.  The file's format, and its reader, are lib/stats/statsfile.c's.
 *
 * Locks: the snapshot takes vol_mutex (volume table walk) and, through the
 * getters, each cache shard mutex and range-lock shard mutex in turn, one
 * at a time; never two at once and never under another lock (lib/LOCKING).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/stats.h"
#include "../pool/store-internal.h"

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

bool
pc_pool_direct_io (struct pc_pool *pool, const char **why)
{
  if (why) *why = pool->direct_why;
  return pool->io.direct;
}

/* ---------------------------------------------------------------------- */
/* Snapshot. */

static void
add_lock_stats (struct pc_rangelock_stats *sum,
                const struct pc_rangelock_stats *l)
{
  sum->shared_acquired += l->shared_acquired;
  sum->shared_waits += l->shared_waits;
  sum->shared_wait_ns += l->shared_wait_ns;
  sum->exclusive_acquired += l->exclusive_acquired;
  sum->exclusive_waits += l->exclusive_waits;
  sum->exclusive_wait_ns += l->exclusive_wait_ns;
}

/* Volumes (with their own lock counters) and the pool-wide sum; the count
 * is the one walked, so it always matches the array. */
static void
snapshot_volumes (struct pc_pool *pool, struct pc_stats *st)
{
  unsigned n = 0;

  pthread_mutex_lock (&pool->vol_mutex);
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct pc_stats_volume *sv = &st->volumes[n];
    if (!v->in_use) continue;
    snprintf (sv->name, sizeof sv->name, "%s", v->name);
    sv->size = v->size;
    sv->allocated = pc_blockmap_count (v->map) << pool->block_shift;
    sv->connections = v->open_count;
    pc_rangelock_get_stats (v->inval, &sv->lock);
    add_lock_stats (&st->lock, &sv->lock);
    n++;
  }
  pthread_mutex_unlock (&pool->vol_mutex);
  st->pool.nvolumes = n;
}

bool
pc_pool_io_uring (struct pc_pool *pool, const char **why)
{
  if (why) *why = pool->uring_why;
  return pool->io.uring;
}

int
pc_pool_get_stats (struct pc_pool *pool, struct pc_stats *st)
{
  memset (st, 0, sizeof *st);
  st->time = (uint64_t) time (NULL);
  st->uptime_ms = (now_ns () - pool->opened_at_ns) / 1000000;
  pc_pool_get_info (pool, &st->pool);
  st->readonly = pool->readonly;
  st->direct_io = pool->io.direct;
  st->io_uring = pool->io.uring;
  pthread_mutex_lock (&pool->prep_mutex);
  st->prepared_runs = pool->prep_runs;
  st->prepared_total = pool->prep_blocks;
  pthread_mutex_unlock (&pool->prep_mutex);
  st->cache_enabled = pool->cache != NULL;
  pc_cache_get_stats (pool->cache, &st->cache);
  st->pool_path = strdup (pool->path);
  if (pool->direct_why) st->direct_io_note = strdup (pool->direct_why);
  if (pool->uring_why) st->io_uring_note = strdup (pool->uring_why);
  st->volumes = calloc (PC_MAX_VOLUMES, sizeof *st->volumes);
  if (st->pool_path == NULL || st->volumes == NULL ||
      (pool->direct_why && st->direct_io_note == NULL) ||
      (pool->uring_why && st->io_uring_note == NULL)) {
    pc_stats_free (st);
    return pc_error (ENOMEM, "out of memory taking statistics");
  }
  snapshot_volumes (pool, st);
  return 0;
}

int
pc_pool_stats_json (struct pc_pool *pool, char **json)
{
  struct pc_stats st;
  int r = pc_pool_get_stats (pool, &st);

  if (r < 0)
    return r;
  r = pc_stats_to_json (&st, json);
  pc_stats_free (&st);
  return r;
}

int
pc_pool_write_stats (struct pc_pool *pool, const char *path)
{
  char *json, *tmp;
  FILE *f;
  int r;

  if ((r = pc_pool_stats_json (pool, &json)) < 0)
    return r;
  if (asprintf (&tmp, "%s.tmp", path) == -1) {
    free (json);
    return pc_error (ENOMEM, "out of memory");
  }
  f = fopen (tmp, "w");
  if (f == NULL)
    r = pc_error (errno, "statistics file %s: %m", tmp);
  else {
    bool ok = fputs (json, f) >= 0;
    if (fclose (f) != 0) ok = false;
    if (!ok)
      r = pc_error (EIO, "writing statistics file %s failed", tmp);
    else if (rename (tmp, path) == -1)
      r = pc_error (errno, "rename %s to %s: %m", tmp, path);
    if (r < 0) unlink (tmp);
  }
  free (tmp);
  free (json);
  return r;
}

/* Called by the committer thread on every tick. */
void
pc_stats_tick (struct pc_pool *pool)
{
  unsigned ms = pool->opts.stats_interval_ms ?: PC_DEFAULT_STATS_INTERVAL_MS;
  uint64_t t = now_ns ();

  if (pool->stats_path == NULL ||
      t - pool->stats_written_ns < (uint64_t) ms * 1000000)
    return;
  pool->stats_written_ns = t;
  pc_pool_write_stats (pool, pool->stats_path);  /* retried next tick */
}

uint64_t
pc_now_ns (void)
{
  return now_ns ();
}
