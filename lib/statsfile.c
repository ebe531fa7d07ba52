/* punchcache: the statistics file format -- struct pc_stats as JSON, and
 * back (include/punchcache/stats.h).
 *
 * What: pc_stats_to_json writes the text a server puts in its stats=PATH
 * file (lib/stats.c takes the snapshot and writes the file); pc_stats_parse
 * and pc_stats_read_file turn such a text back into a struct pc_stats, for
 * `punchcache stats`.  docs/punchcache.1.md lists the fields.
 *
 * Why JSON: jq, monitoring agents and `punchcache stats` read it; names
 * are escaped by pc_json_string (they come from clients and pool files).
 * Why writer and reader in one file over one struct: a field renamed in
 * one is renamed in the other, and the round trip (struct -> JSON ->
 * struct -> JSON gives the same text) is checked by tests/unit-stats.c and
 * by the fuzz target fuzz/fuzz-jsonread.c.  No pool is needed, so both
 * build without the store.
 *
 * The reader trusts nothing: the text is parsed by the strict JSON reader
 * (lib/json.c: size, depth, strings, number ranges), then every field the
 * writer writes must be there with its type, and the figures must agree
 * with each other (used + free = capacity, bytes = blocks x block size, as
 * many volumes as the count says, valid volume names, a known cache policy
 * and page size).  Unknown keys are ignored: a later writer may add some.
 * The "hit_rate" is checked to be a number and otherwise ignored: it is
 * derived from hits and misses, and written again from them.
 *
 * No state, no locks.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/json.h"
#include "punchcache/stats.h"

void
pc_stats_free (struct pc_stats *st)
{
  free (st->pool_path);
  free (st->direct_io_note);
  free (st->io_uring_note);
  free (st->volumes);
  memset (st, 0, sizeof *st);
}

/* ---------------------------------------------------------------------- */
/* JSON output. */

static void
print_pool (FILE *f, const struct pc_stats *st)
{
  const struct pc_pool_info *in = &st->pool;

  fprintf (f, "  \"pool\": {\n    \"path\": ");
  pc_json_string (f, st->pool_path);
  fprintf (f, ",\n    \"block_size\": %" PRIu32 ",\n    \"capacity\": %" PRIu64
           ",\n    \"used\": %" PRIu64 ",\n    \"free\": %" PRIu64
           ",\n    \"used_blocks\": %" PRIu64 ",\n    \"free_blocks\": %" PRIu64
           ",\n    \"commits\": %" PRIu64 ",\n    \"metadata_ram\": %" PRIu64
           ",\n    \"volumes\": %u,\n    \"readonly\": %s"
           ",\n    \"direct_io\": %s,\n    \"direct_io_note\": ",
           in->block_size, in->capacity, in->used_blocks * in->block_size,
           in->free_blocks * in->block_size, in->used_blocks, in->free_blocks,
           in->commits, in->metadata_ram, in->nvolumes,
           st->readonly ? "true" : "false", st->direct_io ? "true" : "false");
  if (st->direct_io_note) pc_json_string (f, st->direct_io_note);
  else fputs ("null", f);
  fprintf (f, ",\n    \"prepared_blocks\": %" PRIu64 ",\n    \"prepared_runs\": %"
           PRIu64 ",\n    \"prepared_total\": %" PRIu64
           ",\n    \"io_uring\": %s,\n    \"io_uring_note\": ",
           in->prepared_blocks, st->prepared_runs, st->prepared_total,
           st->io_uring ? "true" : "false");
  if (st->io_uring_note) pc_json_string (f, st->io_uring_note);
  else fputs ("null", f);
  fputs ("\n  },\n", f);
}

static void
print_cache (FILE *f, const struct pc_stats *stats)
{
  const struct pc_cache_stats *st = &stats->cache;
  uint64_t lookups = st->hits + st->misses;

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
           stats->cache_enabled ? "true" : "false", st->budget, st->memory,
           PC_CACHE_PAGE, st->capacity_pages, st->pages, st->pending,
           st->nshards, st->policy == PC_CACHE_LRU ? "lru" : "s3fifo",
           st->hits, st->misses,
           lookups ? (double) st->hits / (double) lookups : 0.0,
           st->fills, st->fills_discarded, st->fills_unreserved, st->evictions,
           st->invalidations, st->punched, st->punch_fill_overlaps,
           st->ghost_hits);
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
print_volumes (FILE *f, const struct pc_stats *st)
{
  fputs ("  \"volumes\": [", f);
  for (unsigned i = 0; i < st->pool.nvolumes; i++) {
    const struct pc_stats_volume *v = &st->volumes[i];
    fprintf (f, "%s\n    {\n      \"name\": ", i ? "," : "");
    pc_json_string (f, v->name);
    fprintf (f, ",\n      \"size\": %" PRIu64 ",\n      \"allocated\": %" PRIu64
             ",\n      \"connections\": %u,\n      \"invalidate_lock\": ",
             v->size, v->allocated, v->connections);
    print_lock_stats (f, "      ", &v->lock);
    fputs ("\n    }", f);
  }
  fprintf (f, "%s],\n  \"invalidate_lock\": ", st->pool.nvolumes ? "\n  " : "");
  print_lock_stats (f, "  ", &st->lock);
  fputc ('\n', f);
}

int
pc_stats_to_json (const struct pc_stats *st, char **json)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&buf, &len);

  if (f == NULL)
    return pc_error (errno, "open_memstream: %m");
  fprintf (f, "{\n  \"version\": %d,\n  \"time\": %" PRIu64 ",\n  \"uptime_ms\": %"
           PRIu64 ",\n", PC_STATS_VERSION, st->time, st->uptime_ms);
  print_pool (f, st);
  print_cache (f, st);
  print_volumes (f, st);
  fputs ("}\n", f);
  if (fclose (f) != 0 || buf == NULL) {
    free (buf);
    return pc_error (ENOMEM, "out of memory formatting statistics");
  }
  *json = buf;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Reading a statistics file back. */

struct u64_field {
  const char *key;
  size_t offset;                /* of a uint64_t in the struct */
};
#define FIELD(type, member) { #member, offsetof (type, member) }

static const struct u64_field pool_fields[] = {
  FIELD (struct pc_pool_info, capacity),
  FIELD (struct pc_pool_info, used_blocks),
  FIELD (struct pc_pool_info, free_blocks),
  FIELD (struct pc_pool_info, commits),
  FIELD (struct pc_pool_info, metadata_ram),
};
static const struct u64_field cache_fields[] = {
  FIELD (struct pc_cache_stats, budget),
  FIELD (struct pc_cache_stats, memory),
  FIELD (struct pc_cache_stats, capacity_pages),
  FIELD (struct pc_cache_stats, pages),
  FIELD (struct pc_cache_stats, pending),
  FIELD (struct pc_cache_stats, hits),
  FIELD (struct pc_cache_stats, misses),
  FIELD (struct pc_cache_stats, fills),
  FIELD (struct pc_cache_stats, fills_discarded),
  FIELD (struct pc_cache_stats, fills_unreserved),
  FIELD (struct pc_cache_stats, evictions),
  FIELD (struct pc_cache_stats, invalidations),
  FIELD (struct pc_cache_stats, punched),
  FIELD (struct pc_cache_stats, punch_fill_overlaps),
  FIELD (struct pc_cache_stats, ghost_hits),
};
static const struct u64_field lock_fields[] = {
  FIELD (struct pc_rangelock_stats, shared_acquired),
  FIELD (struct pc_rangelock_stats, shared_waits),
  FIELD (struct pc_rangelock_stats, shared_wait_ns),
  FIELD (struct pc_rangelock_stats, exclusive_acquired),
  FIELD (struct pc_rangelock_stats, exclusive_waits),
  FIELD (struct pc_rangelock_stats, exclusive_wait_ns),
};
#define NFIELDS(a) (sizeof (a) / sizeof (a)[0])

static int
get_u64s (const struct pc_json_doc *doc, const struct pc_json_value *obj,
          void *base, const struct u64_field *f, size_t n)
{
  int r = 0;

  for (size_t i = 0; i < n && r == 0; i++)
    r = pc_json_get_u64 (doc, obj, f[i].key,
                         (uint64_t *) ((char *) base + f[i].offset));
  return r;
}

/* A member that is a count or a small size: at most max. */
static int
get_small (const struct pc_json_doc *doc, const struct pc_json_value *obj,
           const char *key, uint64_t max, unsigned *out)
{
  const struct pc_json_value *m = pc_json_lookup (doc, obj, key);
  char path[160];
  uint64_t v;
  int r = pc_json_get_u64 (doc, obj, key, &v);

  if (r == 0 && v > max)
    r = pc_error (EINVAL, "%s: %s: %" PRIu64 " is out of range (at most %"
                  PRIu64 ")", pc_json_name (doc),
                  pc_json_path (doc, m, path, sizeof path), v, max);
  if (r == 0) *out = (unsigned) v;
  return r;
}

static int
bad_file (const struct pc_json_doc *doc, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* "NAME: MESSAGE", -EINVAL. */
static int
bad_file (const struct pc_json_doc *doc, const char *fmt, ...)
{
  char msg[384];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  return pc_error (EINVAL, "%s: %s", pc_json_name (doc), msg);
}

static int
check_version (const struct pc_json_doc *doc)
{
  const struct pc_json_value *root = pc_json_root (doc);
  const struct pc_json_value *v = pc_json_lookup (doc, root, "version");
  uint64_t version = 0;

  if (v == NULL || pc_json_type (v) != PC_JSON_NUMBER)
    return bad_file (doc, "not a punchcache statistics file (no \"version\": "
                     "%d)", PC_STATS_VERSION);
  if (pc_json_as_u64 (doc, v, &version) < 0 || version != PC_STATS_VERSION)
    return bad_file (doc, "statistics format version is not %d, the only "
                     "one this punchcache reads", PC_STATS_VERSION);
  return 0;
}

/* used + free = capacity, bytes = blocks x block size. */
static int
check_space (const struct pc_json_doc *doc, struct pc_pool_info *in,
             uint64_t used, uint64_t free_bytes)
{
  uint32_t bs = in->block_size;

  if (bs < PC_MIN_BLOCK_SIZE || bs > PC_MAX_BLOCK_SIZE || (bs & (bs - 1)))
    return bad_file (doc, "pool.block_size: %" PRIu32 " is not a power of "
                     "two from %u to %u", bs, PC_MIN_BLOCK_SIZE,
                     PC_MAX_BLOCK_SIZE);
  in->nblocks = in->capacity / bs;
  if (in->capacity % bs || in->used_blocks > in->nblocks ||
      in->free_blocks != in->nblocks - in->used_blocks ||
      used != in->used_blocks * bs || free_bytes != in->free_blocks * bs)
    return bad_file (doc, "pool: the space figures do not add up (capacity %"
                     PRIu64 ", block_size %" PRIu32 ", used %" PRIu64 " = %"
                     PRIu64 " blocks, free %" PRIu64 " = %" PRIu64 " blocks)",
                     in->capacity, bs, used, in->used_blocks, free_bytes,
                     in->free_blocks);
  return 0;
}

/* Fields added after version 1 was first written: taken when present. */
static int
read_pool_optional (const struct pc_json_doc *doc,
                    const struct pc_json_value *obj, struct pc_stats *st)
{
  const struct pc_json_value *v;
  const char *why;
  int r;

  if (pc_json_lookup (doc, obj, "prepared_blocks") &&
      (r = pc_json_get_u64 (doc, obj, "prepared_blocks",
                            &st->pool.prepared_blocks)) < 0)
    return r;
  if (pc_json_lookup (doc, obj, "prepared_runs") &&
      (r = pc_json_get_u64 (doc, obj, "prepared_runs", &st->prepared_runs)) < 0)
    return r;
  if (pc_json_lookup (doc, obj, "prepared_total") &&
      (r = pc_json_get_u64 (doc, obj, "prepared_total",
                            &st->prepared_total)) < 0)
    return r;
  if (pc_json_lookup (doc, obj, "io_uring") &&
      (r = pc_json_get_bool (doc, obj, "io_uring", &st->io_uring)) < 0)
    return r;
  v = pc_json_lookup (doc, obj, "io_uring_note");
  if (v && pc_json_type (v) != PC_JSON_NULL) {
    if ((r = pc_json_get_string (doc, obj, "io_uring_note", &why)) < 0)
      return r;
    if ((st->io_uring_note = strdup (why)) == NULL)
      return pc_error (ENOMEM, "out of memory");
  }
  return 0;
}

static int
read_pool (const struct pc_json_doc *doc, const struct pc_json_value *obj,
           struct pc_stats *st)
{
  const struct pc_json_value *note;
  const char *path, *why = NULL;
  uint64_t used, free_bytes;
  unsigned bs;
  int r;

  if ((r = get_u64s (doc, obj, &st->pool, pool_fields,
                     NFIELDS (pool_fields))) < 0 ||
      (r = get_small (doc, obj, "block_size", UINT32_MAX, &bs)) < 0 ||
      (r = get_small (doc, obj, "volumes", PC_MAX_VOLUMES,
                      &st->pool.nvolumes)) < 0 ||
      (r = pc_json_get_u64 (doc, obj, "used", &used)) < 0 ||
      (r = pc_json_get_u64 (doc, obj, "free", &free_bytes)) < 0 ||
      (r = pc_json_get_string (doc, obj, "path", &path)) < 0 ||
      (r = pc_json_get_bool (doc, obj, "readonly", &st->readonly)) < 0 ||
      (r = pc_json_get_bool (doc, obj, "direct_io", &st->direct_io)) < 0)
    return r;
  note = pc_json_lookup (doc, obj, "direct_io_note");
  if (note == NULL || pc_json_type (note) != PC_JSON_NULL)
    if ((r = pc_json_get_string (doc, obj, "direct_io_note", &why)) < 0)
      return r;
  st->pool.block_size = bs;
  if ((r = check_space (doc, &st->pool, used, free_bytes)) < 0 ||
      (r = read_pool_optional (doc, obj, st)) < 0)
    return r;
  st->pool_path = strdup (path);
  st->direct_io_note = why ? strdup (why) : NULL;
  if (st->pool_path == NULL || (why && st->direct_io_note == NULL))
    return pc_error (ENOMEM, "out of memory");
  return 0;
}

static int
read_cache (const struct pc_json_doc *doc, const struct pc_json_value *obj,
            struct pc_stats *st)
{
  const struct pc_json_value *rate;
  const char *policy;
  unsigned page;
  int r;

  if ((r = get_u64s (doc, obj, &st->cache, cache_fields,
                     NFIELDS (cache_fields))) < 0 ||
      (r = pc_json_get_bool (doc, obj, "enabled", &st->cache_enabled)) < 0 ||
      (r = get_small (doc, obj, "shards", UINT32_MAX, &st->cache.nshards)) < 0 ||
      (r = get_small (doc, obj, "page_size", UINT32_MAX, &page)) < 0 ||
      (r = pc_json_get_string (doc, obj, "policy", &policy)) < 0 ||
      (r = pc_json_member (doc, obj, "hit_rate", PC_JSON_NUMBER, &rate)) < 0)
    return r;                   /* hit_rate: recomputed from hits, misses */
  if (page != PC_CACHE_PAGE)
    return bad_file (doc, "cache.page_size: %u, but cache pages are %u bytes",
                     page, PC_CACHE_PAGE);
  if (strcmp (policy, "s3fifo") != 0 && strcmp (policy, "lru") != 0)
    return bad_file (doc, "cache.policy: not \"s3fifo\" or \"lru\"");
  st->cache.policy = policy[0] == 'l' ? PC_CACHE_LRU : PC_CACHE_S3FIFO;
  return 0;
}

static int
read_volume (const struct pc_json_doc *doc, const struct pc_json_value *obj,
             struct pc_stats_volume *v)
{
  const struct pc_json_value *lock;
  const char *name;
  char path[160], shown[64];
  int r;

  if ((r = pc_json_get_string (doc, obj, "name", &name)) < 0 ||
      (r = pc_json_get_u64 (doc, obj, "size", &v->size)) < 0 ||
      (r = pc_json_get_u64 (doc, obj, "allocated", &v->allocated)) < 0 ||
      (r = get_small (doc, obj, "connections", UINT32_MAX,
                      &v->connections)) < 0 ||
      (r = pc_json_member (doc, obj, "invalidate_lock", PC_JSON_OBJECT,
                           &lock)) < 0 ||
      (r = get_u64s (doc, lock, &v->lock, lock_fields,
                     NFIELDS (lock_fields))) < 0)
    return r;
  if (strlen (name) >= sizeof v->name || !pc_vol_name_valid (name))
    return bad_file (doc, "%s.name: \"%s\" is not a valid volume name",
                     pc_json_path (doc, obj, path, sizeof path),
                     pc_json_printable (name, shown, sizeof shown));
  strcpy (v->name, name);
  return 0;
}

static int
read_volumes (const struct pc_json_doc *doc, const struct pc_json_value *arr,
              struct pc_stats *st)
{
  const struct pc_json_value *e = NULL;
  struct pc_stats_volume *v;
  int r = 0;

  if (pc_json_count (arr) != st->pool.nvolumes)
    return bad_file (doc, "pool.volumes is %u, but the volumes list has %zu",
                     st->pool.nvolumes, pc_json_count (arr));
  st->volumes = v = calloc (st->pool.nvolumes + 1, sizeof *v); /* + 1: not 0 */
  if (v == NULL)
    return pc_error (ENOMEM, "out of memory");
  while (r == 0 && (e = pc_json_next (doc, arr, e)) != NULL)
    if ((r = pc_json_expect (doc, e, PC_JSON_OBJECT)) == 0)
      r = read_volume (doc, e, v++);
  return r;
}

static int
read_doc (const struct pc_json_doc *doc, struct pc_stats *st)
{
  const struct pc_json_value *root = pc_json_root (doc), *pool, *cache,
    *vols, *lock;
  int r;

  if ((r = check_version (doc)) < 0 ||
      (r = pc_json_get_u64 (doc, root, "time", &st->time)) < 0 ||
      (r = pc_json_get_u64 (doc, root, "uptime_ms", &st->uptime_ms)) < 0 ||
      (r = pc_json_member (doc, root, "pool", PC_JSON_OBJECT, &pool)) < 0 ||
      (r = pc_json_member (doc, root, "cache", PC_JSON_OBJECT, &cache)) < 0 ||
      (r = pc_json_member (doc, root, "volumes", PC_JSON_ARRAY, &vols)) < 0 ||
      (r = pc_json_member (doc, root, "invalidate_lock", PC_JSON_OBJECT,
                           &lock)) < 0)
    return r;
  if ((r = read_pool (doc, pool, st)) < 0 ||
      (r = read_cache (doc, cache, st)) < 0 ||
      (r = read_volumes (doc, vols, st)) < 0)
    return r;
  return get_u64s (doc, lock, &st->lock, lock_fields, NFIELDS (lock_fields));
}

/* Takes over doc (a parse result r). */
static int
stats_from_doc (int r, struct pc_json_doc *doc, struct pc_stats *st)
{
  memset (st, 0, sizeof *st);
  if (r < 0)
    return r;
  r = read_doc (doc, st);
  pc_json_free (doc);
  if (r < 0)
    pc_stats_free (st);
  return r;
}

int
pc_stats_parse (const char *text, size_t len, const char *name,
                struct pc_stats *st)
{
  struct pc_json_doc *doc = NULL;
  int r = pc_json_parse (text, len, name, &doc);

  return stats_from_doc (r, doc, st);
}

int
pc_stats_read_file (const char *path, struct pc_stats *st)
{
  struct pc_json_doc *doc = NULL;
  int r = pc_json_read_file (path, &doc);

  return stats_from_doc (r, doc, st);
}
