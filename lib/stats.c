/* punchcache: statistics a user can read.
 *
 * What: one JSON object describing a live pool -- space, the block cache's
 * counters, invalidate-lock waits, I/O mode -- built from the counters the
 * modules already keep (cache shards, range locks, allocator), and the
 * atomic writer behind `stats=PATH` (temporary file in the same directory,
 * fsync-free rename: a reader never sees a half-written file).  The
 * committer thread calls pc_pool_write_stats every stats_interval_ms, and
 * pc_pool_close once more at the end.  docs/design.md lists the fields.
 *
 * Why JSON: jq, monitoring agents and `punchcache stats` read it; names
 * are escaped by pc_json_string (they come from clients and pool files).
 *
 * Locks: takes vol_mutex (volume table walk) and, through the getters,
 * each cache shard mutex and range-lock shard mutex in turn, one at a
 * time; never two at once and never under another lock (lib/LOCKING).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store-internal.h"

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

bool
pc_pool_io_uring (struct pc_pool *pool, const char **why)
{
  if (why) *why = pool->uring_why;
  return pool->io.uring;
}

static void
print_pool (FILE *f, struct pc_pool *pool)
{
  struct pc_pool_info in;

  pc_pool_get_info (pool, &in);
  fprintf (f, "  \"pool\": {\n    \"path\": ");
  pc_json_string (f, pool->path);
  fprintf (f, ",\n    \"block_size\": %" PRIu32 ",\n    \"capacity\": %" PRIu64
           ",\n    \"used\": %" PRIu64 ",\n    \"free\": %" PRIu64
           ",\n    \"used_blocks\": %" PRIu64 ",\n    \"free_blocks\": %" PRIu64
           ",\n    \"commits\": %" PRIu64 ",\n    \"metadata_ram\": %" PRIu64
           ",\n    \"volumes\": %u,\n    \"readonly\": %s"
           ",\n    \"direct_io\": %s,\n    \"direct_io_note\": ",
           in.block_size, in.capacity, in.used_blocks * in.block_size,
           in.free_blocks * in.block_size, in.used_blocks, in.free_blocks,
           in.commits, in.metadata_ram, in.nvolumes,
           pool->readonly ? "true" : "false",
           pool->io.direct ? "true" : "false");
  if (pool->direct_why) pc_json_string (f, pool->direct_why);
  else fputs ("null", f);
  pthread_mutex_lock (&pool->prep_mutex);
  fprintf (f, ",\n    \"prepared_blocks\": %" PRIu64 ",\n    \"prepared_runs\": %"
           PRIu64 ",\n    \"prepared_total\": %" PRIu64, in.prepared_blocks,
           pool->prep_runs, pool->prep_blocks);
  pthread_mutex_unlock (&pool->prep_mutex);
  fprintf (f, ",\n    \"io_uring\": %s,\n    \"io_uring_note\": ",
           pool->io.uring ? "true" : "false");
  if (pool->uring_why) pc_json_string (f, pool->uring_why);
  else fputs ("null", f);
  fputs ("\n  },\n", f);
}

static void
print_cache (FILE *f, struct pc_pool *pool)
{
  struct pc_cache_stats st;
  uint64_t lookups;

  pc_cache_get_stats (pool->cache, &st);
  lookups = st.hits + st.misses;
  fprintf (f, "  \"cache\": {\n    \"enabled\": %s,\n    \"budget\": %" PRIu64
           ",\n    \"memory\": %" PRIu64 ",\n    \"page_size\": %u"
           ",\n    \"capacity_pages\": %" PRIu64 ",\n    \"pages\": %" PRIu64
           ",\n    \"pending\": %" PRIu64 ",\n    \"shards\": %u"
           ",\n    \"policy\": \"%s\",\n    \"hits\": %" PRIu64
           ",\n    \"misses\": %" PRIu64 ",\n    \"hit_rate\": %.4f"
           ",\n    \"fills\": %" PRIu64 ",\n    \"fills_discarded\": %" PRIu64
           ",\n    \"fills_unreserved\": %" PRIu64
           ",\n    \"evictions\": %" PRIu64 ",\n    \"invalidations\": %" PRIu64
           ",\n    \"punched\": %" PRIu64
           ",\n    \"punch_fill_overlaps\": %" PRIu64
           ",\n    \"ghost_hits\": %" PRIu64 "\n  },\n",
           pool->cache ? "true" : "false", st.budget, st.memory,
           PC_CACHE_PAGE, st.capacity_pages, st.pages, st.pending,
           st.nshards, st.policy == PC_CACHE_LRU ? "lru" : "s3fifo",
           st.hits, st.misses,
           lookups ? (double) st.hits / (double) lookups : 0.0,
           st.fills, st.fills_discarded, st.fills_unreserved, st.evictions,
           st.invalidations, st.punched, st.punch_fill_overlaps,
           st.ghost_hits);
}

static void
print_lock_stats (FILE *f, const char *indent,
                  const struct pc_rangelock_stats *l)
{
  fprintf (f, "{\n%s  \"shared_acquired\": %" PRIu64
           ",\n%s  \"shared_waits\": %" PRIu64
           ",\n%s  \"shared_wait_ns\": %" PRIu64
           ",\n%s  \"exclusive_acquired\": %" PRIu64
           ",\n%s  \"exclusive_waits\": %" PRIu64
           ",\n%s  \"exclusive_wait_ns\": %" PRIu64 "\n%s}",
           indent, l->shared_acquired, indent, l->shared_waits,
           indent, l->shared_wait_ns, indent, l->exclusive_acquired,
           indent, l->exclusive_waits, indent, l->exclusive_wait_ns, indent);
}

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

/* Volumes (with their own lock counters) and the pool-wide sum. */
static void
print_volumes (FILE *f, struct pc_pool *pool)
{
  struct pc_rangelock_stats sum = { 0 }, l;
  bool first = true;

  fputs ("  \"volumes\": [", f);
  pthread_mutex_lock (&pool->vol_mutex);
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    if (!v->in_use) continue;
    pc_rangelock_get_stats (v->inval, &l);
    add_lock_stats (&sum, &l);
    fprintf (f, "%s\n    {\n      \"name\": ", first ? "" : ",");
    pc_json_string (f, v->name);
    fprintf (f, ",\n      \"size\": %" PRIu64 ",\n      \"allocated\": %" PRIu64
             ",\n      \"connections\": %u,\n      \"invalidate_lock\": ",
             v->size, pc_blockmap_count (v->map) << pool->block_shift,
             v->open_count);
    print_lock_stats (f, "      ", &l);
    fputs ("\n    }", f);
    first = false;
  }
  pthread_mutex_unlock (&pool->vol_mutex);
  fprintf (f, "%s],\n  \"invalidate_lock\": ", first ? "" : "\n  ");
  print_lock_stats (f, "  ", &sum);
  fputc ('\n', f);
}

int
pc_pool_stats_json (struct pc_pool *pool, char **json)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&buf, &len);

  if (f == NULL)
    return pc_error (errno, "open_memstream: %m");
  fprintf (f, "{\n  \"version\": 1,\n  \"time\": %lld,\n  \"uptime_ms\": %"
           PRIu64 ",\n", (long long) time (NULL),
           (now_ns () - pool->opened_at_ns) / 1000000);
  print_pool (f, pool);
  print_cache (f, pool);
  print_volumes (f, pool);
  fputs ("}\n", f);
  if (fclose (f) != 0 || buf == NULL) {
    free (buf);
    return pc_error (ENOMEM, "out of memory formatting statistics");
  }
  *json = buf;
  return 0;
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
