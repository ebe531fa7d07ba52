/* punchcache: statistics a user can read -- the snapshot.
 *
 * What: one snapshot of a live pool (struct pc_stats, include/punchcache/
 * stats.h) -- space, the block cache's counters, invalidate-lock waits,
 * I/O mode -- built from the counters the pool layer exposes
 * (include/punchcache/counters.h: cache shards, range locks, allocator),
 * and the atomic file write behind `stats=PATH` (temporary file in the
 * same directory, fsync-free rename: a reader never sees a half-written
 * file).  The periodic writer is lib/stats/writer.c; the file's format,
 * and its reader, are lib/stats/statsfile.c's.
 *
 * Why through getters: the statistics module sits above the pool and is
 * never called by it (docs/design.md "Layers"); it reads the pool only
 * through its public API.
 *
 * Locks: none of its own; the getters take the pool's locks one at a time
 * (include/punchcache/counters.h, lib/LOCKING).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/counters.h"
#include "punchcache/format.h"
#include "punchcache/stats.h"
#include "stats-internal.h"

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
  unsigned n = pc_pool_get_volume_counters (pool, st->volumes,
                                            PC_MAX_VOLUMES);

  for (unsigned i = 0; i < n; i++)
    add_lock_stats (&st->lock, &st->volumes[i].lock);
  st->pool.nvolumes = n;
}

/* The strings of a snapshot: copies, so it outlives the pool. */
static int
snapshot_strings (struct pc_pool *pool, struct pc_stats *st)
{
  const char *direct_why, *uring_why;

  pc_pool_direct_io (pool, &direct_why);
  pc_pool_io_uring (pool, &uring_why);
  st->pool_path = strdup (pc_pool_path (pool));
  if (direct_why) st->direct_io_note = strdup (direct_why);
  if (uring_why) st->io_uring_note = strdup (uring_why);
  if (st->pool_path == NULL || (direct_why && st->direct_io_note == NULL) ||
      (uring_why && st->io_uring_note == NULL))
    return -ENOMEM;
  return 0;
}

int
pc_pool_get_stats (struct pc_pool *pool, struct pc_stats *st)
{
  struct pc_pool_counters c;

  memset (st, 0, sizeof *st);
  pc_pool_get_counters (pool, &c);
  st->time = (uint64_t) time (NULL);
  st->uptime_ms = c.uptime_ms;
  pc_pool_get_info (pool, &st->pool);
  st->readonly = c.readonly;
  st->direct_io = pc_pool_direct_io (pool, NULL);
  st->io_uring = pc_pool_io_uring (pool, NULL);
  st->prepared_runs = c.prepared_runs;
  st->prepared_total = c.prepared_total;
  pc_wb_get_stats (pool, &st->writeback);
  st->cache_enabled = c.cache_enabled;
  st->cache = c.cache;
  st->volumes = calloc (PC_MAX_VOLUMES, sizeof *st->volumes);
  if (st->volumes == NULL || snapshot_strings (pool, st) < 0) {
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
pc_stats_write_text (const char *path, const char *text)
{
  char *tmp;
  FILE *f;
  int r = 0;

  if (asprintf (&tmp, "%s.tmp", path) == -1)
    return pc_error (ENOMEM, "out of memory");
  f = fopen (tmp, "w");
  if (f == NULL)
    r = pc_error (errno, "statistics file %s: %m", tmp);
  else {
    bool ok = fputs (text, f) >= 0;
    if (fclose (f) != 0) ok = false;
    if (!ok)
      r = pc_error (EIO, "writing statistics file %s failed", tmp);
    else if (rename (tmp, path) == -1)
      r = pc_error (errno, "rename %s to %s: %m", tmp, path);
    if (r < 0) unlink (tmp);
  }
  free (tmp);
  return r;
}

int
pc_pool_write_stats (struct pc_pool *pool, const char *path)
{
  char *json;
  int r;

  if ((r = pc_pool_stats_json (pool, &json)) < 0)
    return r;
  r = pc_stats_write_text (path, json);
  free (json);
  return r;
}
