/* punchcache: the statistics file format -- struct pc_stats as JSON, and
 * back (include/punchcache/stats.h).
 *
 * What: pc_stats_to_json writes the text a server puts in its stats=PATH
 * file (lib/stats/stats.c takes the snapshot and writes the file); pc_stats_parse
 * and pc_stats_read_file turn such a text back into a struct pc_stats, for
 * `punchcache stats`.  docs/punchcache.1.md lists the fields.
 *
 * Why JSON: jq, monitoring agents and `punchcache stats` read it.  json-c
 * parses and prints it (lib/stats/json.c: names, which come from clients and
 * pool files, always come out as valid JSON).  Why writer and reader in
 * one file over one struct: a field renamed in one is renamed in the
 * other (the counters are read and written from the same tables), and the
 * round trip (struct -> JSON -> struct -> JSON gives the same text) is
 * checked by tests/unit-stats.c and by the fuzz target
 * fuzz/fuzz-statsfile.c.  No pool is needed, so both build without the
 * store.
 *
 * The reader trusts nothing.  json-c checks the syntax (strictly, at most
 * PC_STATS_MAX_SIZE bytes: json-c takes ~250 bytes of memory per value),
 * then every field the writer writes must be there with its type, and the
 * figures must agree with each other (used + free = capacity, bytes =
 * blocks x block size, as many volumes as the count says, valid volume
 * names, a known cache policy and page size).  Checked here because json-c
 * lets it through (lib/stats/json.c lists what): integers are exact (json-c
 * clamps larger ones to 2^64-1, so that value is refused), counters are
 * integers (not "1.", NaN or Infinity), strings are valid UTF-8 without
 * NUL.  Fields of version 1 as first written are required; those added
 * since (prepared_*, io_uring*) are optional, for files of older servers.
 * Unknown keys are ignored: a later writer may add some.  A duplicate key
 * is not refused (json-c keeps the last).  The "hit_rate" is checked to be
 * a finite number and otherwise ignored: it is derived from hits and
 * misses, and written again from them.
 *
 * No state, no locks.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/json.h"
#include "punchcache/stats.h"
#include "stats-internal.h"

void
pc_stats_free (struct pc_stats *st)
{
  free (st->pool_path);
  free (st->direct_io_note);
  free (st->io_uring_note);
  free (st->volumes);
  if (st->sections) json_object_put (st->sections);
  memset (st, 0, sizeof *st);
}

/* Counters that are plain uint64_t members, read and written by name. */
struct u64_field {
  const char *key;
  size_t offset;                /* of a uint64_t in the struct */
};
#define FIELD(type, member) { #member, offsetof (type, member) }
#define NFIELDS(a) (sizeof (a) / sizeof (a)[0])

static const struct u64_field pool_fields[] = {       /* after used, free */
  FIELD (struct pc_pool_info, used_blocks),
  FIELD (struct pc_pool_info, free_blocks),
  FIELD (struct pc_pool_info, commits),
  FIELD (struct pc_pool_info, metadata_ram),
};
static const struct u64_field cache_sizes[] = {      /* after page_size */
  FIELD (struct pc_cache_stats, capacity_pages),
  FIELD (struct pc_cache_stats, pages),
  FIELD (struct pc_cache_stats, pending),
};
static const struct u64_field cache_counters[] = {   /* after hit_rate */
  FIELD (struct pc_cache_stats, fills),
  FIELD (struct pc_cache_stats, fills_discarded),
  FIELD (struct pc_cache_stats, fills_unreserved),
  FIELD (struct pc_cache_stats, evictions),
  FIELD (struct pc_cache_stats, invalidations),
  FIELD (struct pc_cache_stats, punched),
  FIELD (struct pc_cache_stats, punch_fill_overlaps),
  FIELD (struct pc_cache_stats, ghost_hits),
};
static const struct u64_field wb_fields[] = {       /* after enabled */
  FIELD (struct pc_wb_stats, dirty_bytes),
  FIELD (struct pc_wb_stats, dirty_limit_bytes),
  FIELD (struct pc_wb_stats, reserved_blocks),
  FIELD (struct pc_wb_stats, pages_written),
  FIELD (struct pc_wb_stats, bytes_written),
  FIELD (struct pc_wb_stats, blocks_allocated),
  FIELD (struct pc_wb_stats, failures),
  FIELD (struct pc_wb_stats, flushes),
  FIELD (struct pc_wb_stats, flush_ns_total),
  FIELD (struct pc_wb_stats, flush_ns_max),
  FIELD (struct pc_wb_stats, throttled),
};
static const struct u64_field lock_fields[] = {
  FIELD (struct pc_rangelock_stats, shared_acquired),
  FIELD (struct pc_rangelock_stats, shared_waits),
  FIELD (struct pc_rangelock_stats, shared_wait_ns),
  FIELD (struct pc_rangelock_stats, exclusive_acquired),
  FIELD (struct pc_rangelock_stats, exclusive_waits),
  FIELD (struct pc_rangelock_stats, exclusive_wait_ns),
};

static uint64_t *
field_at (const void *base, const struct u64_field *f)
{
  return (uint64_t *) ((char *) base + f->offset);
}

/* ---------------------------------------------------------------------- */
/* JSON output. */

static void
set_u64s (struct json_object *obj, const void *base,
          const struct u64_field *f, size_t n, int *err)
{
  for (size_t i = 0; i < n; i++)
    pc_json_set_u64 (obj, f[i].key, *field_at (base, &f[i]), err);
}

static struct json_object *
pool_json (const struct pc_stats *st, int *err)
{
  const struct pc_pool_info *in = &st->pool;
  struct json_object *o = json_object_new_object ();

  pc_json_set_string (o, "path", st->pool_path, err);
  pc_json_set_u64 (o, "block_size", in->block_size, err);
  pc_json_set_u64 (o, "capacity", in->capacity, err);
  pc_json_set_u64 (o, "used", in->used_blocks * in->block_size, err);
  pc_json_set_u64 (o, "free", in->free_blocks * in->block_size, err);
  set_u64s (o, in, pool_fields, NFIELDS (pool_fields), err);
  pc_json_set_u64 (o, "volumes", in->nvolumes, err);
  pc_json_set_bool (o, "readonly", st->readonly, err);
  pc_json_set_bool (o, "direct_io", st->direct_io, err);
  pc_json_set_string (o, "direct_io_note", st->direct_io_note, err);
  pc_json_set_u64 (o, "prepared_blocks", in->prepared_blocks, err);
  pc_json_set_u64 (o, "prepared_runs", st->prepared_runs, err);
  pc_json_set_u64 (o, "prepared_total", st->prepared_total, err);
  pc_json_set_bool (o, "io_uring", st->io_uring, err);
  pc_json_set_string (o, "io_uring_note", st->io_uring_note, err);
  return o;
}

static struct json_object *
cache_json (const struct pc_stats *stats, int *err)
{
  const struct pc_cache_stats *st = &stats->cache;
  uint64_t lookups = st->hits + st->misses;
  struct json_object *o = json_object_new_object ();

  pc_json_set_bool (o, "enabled", stats->cache_enabled, err);
  pc_json_set_u64 (o, "budget", st->budget, err);
  pc_json_set_u64 (o, "memory", st->memory, err);
  pc_json_set_u64 (o, "page_size", PC_CACHE_PAGE, err);
  set_u64s (o, st, cache_sizes, NFIELDS (cache_sizes), err);
  pc_json_set_u64 (o, "shards", st->nshards, err);
  pc_json_set_string (o, "policy", st->policy == PC_CACHE_LRU ? "lru"
                      : "s3fifo", err);
  pc_json_set_u64 (o, "hits", st->hits, err);
  pc_json_set_u64 (o, "misses", st->misses, err);
  pc_json_set_fixed (o, "hit_rate", lookups ? (double) st->hits
                     / (double) lookups : 0.0, 4, err);
  set_u64s (o, st, cache_counters, NFIELDS (cache_counters), err);
  return o;
}

static struct json_object *
wb_json (const struct pc_wb_stats *wb, int *err)
{
  struct json_object *o = json_object_new_object ();

  pc_json_set_bool (o, "enabled", wb->enabled, err);
  set_u64s (o, wb, wb_fields, NFIELDS (wb_fields), err);
  return o;
}

static struct json_object *
lock_json (const struct pc_rangelock_stats *l, int *err)
{
  struct json_object *o = json_object_new_object ();

  set_u64s (o, l, lock_fields, NFIELDS (lock_fields), err);
  return o;
}

static struct json_object *
volumes_json (const struct pc_stats *st, int *err)
{
  struct json_object *arr = json_object_new_array ();

  for (unsigned i = 0; i < st->pool.nvolumes && *err == 0; i++) {
    const struct pc_stats_volume *v = &st->volumes[i];
    struct json_object *o = json_object_new_object ();
    pc_json_set_string (o, "name", v->name, err);
    pc_json_set_u64 (o, "size", v->size, err);
    pc_json_set_u64 (o, "allocated", v->allocated, err);
    pc_json_set_u64 (o, "connections", v->connections, err);
    pc_json_set (o, "invalidate_lock", lock_json (&v->lock, err), err);
    pc_json_append (arr, o, err);
  }
  return arr;
}

struct json_object *
pc_stats_to_object (const struct pc_stats *st, int *err)
{
  struct json_object *root = json_object_new_object ();

  pc_json_set_u64 (root, "version", PC_STATS_VERSION, err);
  pc_json_set_u64 (root, "time", st->time, err);
  pc_json_set_u64 (root, "uptime_ms", st->uptime_ms, err);
  pc_json_set (root, "pool", pool_json (st, err), err);
  pc_json_set (root, "cache", cache_json (st, err), err);
  pc_json_set (root, "volumes", volumes_json (st, err), err);
  pc_json_set (root, "invalidate_lock", lock_json (&st->lock, err), err);
  pc_json_set (root, "writeback", wb_json (&st->writeback, err), err);
  if (st->sections) {
    json_object_object_foreach (st->sections, key, val)
      pc_json_set (root, key, json_object_get (val), err);
  }
  return root;
}

int
pc_stats_to_json (const struct pc_stats *st, char **json)
{
  int err = 0;
  struct json_object *root = pc_stats_to_object (st, &err);

  return pc_json_to_text (root, err, json);
}

/* ---------------------------------------------------------------------- */
/* Reading a statistics file back. */

/* An object being read: its document's name and its path for messages
 * ("" at the top, "cache", "volumes[2]"). */
struct node {
  const char *file;
  struct json_object *obj;
  char path[64];
};

static int
bad_file (const char *file, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* "FILE: MESSAGE", -EINVAL. */
static int
bad_file (const char *file, const char *fmt, ...)
{
  char msg[384];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  return pc_error (EINVAL, "%s: %s", file, msg);
}

/* "PATH.KEY: expected WANT, found TYPE" */
static int
wrong_type (const struct node *n, const char *key, const char *want,
            struct json_object *v)
{
  return bad_file (n->file, "%s%s%s: expected %s, found %s", n->path,
                   *n->path ? "." : "", key, want, pc_json_type_name (v));
}

/* Member key of n, of any type. */
static int
member (const struct node *n, const char *key, struct json_object **v)
{
  if (!json_object_object_get_ex (n->obj, key, v))
    return pc_error (ENOENT, "%s: %s: no member \"%s\"", n->file,
                     *n->path ? n->path : "the top level", key);
  return 0;
}

/* A non-negative integer, exact: json-c reads any larger literal as
 * 2^64-1, so that is refused too. */
static int
get_u64 (const struct node *n, const char *key, uint64_t *out)
{
  struct json_object *v;
  int r = member (n, key, &v);

  if (r < 0) return r;
  if (json_object_is_type (v, json_type_double) ||
      (json_object_is_type (v, json_type_int) &&
       json_object_get_int64 (v) < 0))          /* as written: json-c keeps */
    return bad_file (n->file, "%s%s%s: expected a non-negative integer, "
                     "found %.40s", n->path, *n->path ? "." : "", key,
                     json_object_to_json_string (v));
  if (!json_object_is_type (v, json_type_int))
    return wrong_type (n, key, "a non-negative integer", v);
  if (json_object_get_uint64 (v) == UINT64_MAX)
    return bad_file (n->file, "%s%s%s: integer out of range (at most %"
                     PRIu64 ")", n->path, *n->path ? "." : "", key,
                     UINT64_MAX - 1);
  *out = json_object_get_uint64 (v);
  return 0;
}

static int
get_u64s (const struct node *n, void *base, const struct u64_field *f,
          size_t count)
{
  int r = 0;

  for (size_t i = 0; i < count && r == 0; i++)
    r = get_u64 (n, f[i].key, field_at (base, &f[i]));
  return r;
}

/* A member that is a count or a small size: at most max. */
static int
get_small (const struct node *n, const char *key, uint64_t max,
           unsigned *out)
{
  uint64_t v;
  int r = get_u64 (n, key, &v);

  if (r == 0 && v > max)
    r = bad_file (n->file, "%s%s%s: %" PRIu64 " is out of range (at most %"
                  PRIu64 ")", n->path, *n->path ? "." : "", key, v, max);
  if (r == 0) *out = (unsigned) v;
  return r;
}

static int
get_bool (const struct node *n, const char *key, bool *out)
{
  struct json_object *v;
  int r = member (n, key, &v);

  if (r < 0) return r;
  if (!json_object_is_type (v, json_type_boolean))
    return wrong_type (n, key, "true or false", v);
  *out = json_object_get_boolean (v);
  return 0;
}

/* A string of valid UTF-8 without NUL (owned by n's document); null gives
 * NULL if may_be_null. */
static int
get_string (const struct node *n, const char *key, bool may_be_null,
            const char **out)
{
  struct json_object *v;
  const char *s;
  int r = member (n, key, &v);

  if (r < 0) return r;
  *out = NULL;
  if (may_be_null && json_object_is_type (v, json_type_null))
    return 0;
  if (!json_object_is_type (v, json_type_string))
    return wrong_type (n, key, "a string", v);
  s = json_object_get_string (v);
  if (strlen (s) != (size_t) json_object_get_string_len (v) ||
      !pc_utf8_valid (s, strlen (s)))
    return bad_file (n->file, "%s%s%s: not a string of valid UTF-8 without "
                     "\\u0000", n->path, *n->path ? "." : "", key);
  *out = s;
  return 0;
}

/* Member key of n of the given type (json_type_object or _array); an
 * object comes as a node named after it. */
static int
get_container (const struct node *n, const char *key, enum json_type type,
               struct node *child)
{
  struct json_object *v;
  int r = member (n, key, &v);

  if (r < 0) return r;
  if (!json_object_is_type (v, type))
    return wrong_type (n, key, type == json_type_array ? "an array"
                       : "an object", v);
  child->file = n->file;
  child->obj = v;
  snprintf (child->path, sizeof child->path, "%.30s%s%.30s", n->path,
            *n->path ? "." : "", key);          /* short: our names */
  return 0;
}

/* Taken when present (fields added after version 1 was first written). */
static bool
has (const struct node *n, const char *key)
{
  return json_object_object_get_ex (n->obj, key, NULL);
}

static int
check_version (const struct node *root)
{
  struct json_object *v = NULL;
  uint64_t version;

  if (!json_object_is_type (root->obj, json_type_object) ||
      !json_object_object_get_ex (root->obj, "version", &v) ||
      !(json_object_is_type (v, json_type_int) ||
        json_object_is_type (v, json_type_double)))
    return bad_file (root->file, "not a punchcache statistics file (no "
                     "\"version\": %d)", PC_STATS_VERSION);
  if (get_u64 (root, "version", &version) < 0 ||
      version != PC_STATS_VERSION)
    return bad_file (root->file, "statistics format version is not %d, the "
                     "only one this punchcache reads", PC_STATS_VERSION);
  return 0;
}

/* used + free = capacity, bytes = blocks x block size. */
static int
check_space (const char *file, struct pc_pool_info *in, uint64_t used,
             uint64_t free_bytes)
{
  uint32_t bs = in->block_size;

  if (bs < PC_MIN_BLOCK_SIZE || bs > PC_MAX_BLOCK_SIZE || (bs & (bs - 1)))
    return bad_file (file, "pool.block_size: %" PRIu32 " is not a power of "
                     "two from %u to %u", bs, PC_MIN_BLOCK_SIZE,
                     PC_MAX_BLOCK_SIZE);
  in->nblocks = in->capacity / bs;
  if (in->capacity % bs || in->used_blocks > in->nblocks ||
      in->free_blocks != in->nblocks - in->used_blocks ||
      used != in->used_blocks * bs || free_bytes != in->free_blocks * bs)
    return bad_file (file, "pool: the space figures do not add up (capacity %"
                     PRIu64 ", block_size %" PRIu32 ", used %" PRIu64 " = %"
                     PRIu64 " blocks, free %" PRIu64 " = %" PRIu64 " blocks)",
                     in->capacity, bs, used, in->used_blocks, free_bytes,
                     in->free_blocks);
  return 0;
}

/* Fields added after version 1 was first written: taken when present. */
static int
read_pool_optional (const struct node *pool, struct pc_stats *st)
{
  const char *why = NULL;
  int r;

  if ((has (pool, "prepared_blocks") &&
       (r = get_u64 (pool, "prepared_blocks",
                     &st->pool.prepared_blocks)) < 0) ||
      (has (pool, "prepared_runs") &&
       (r = get_u64 (pool, "prepared_runs", &st->prepared_runs)) < 0) ||
      (has (pool, "prepared_total") &&
       (r = get_u64 (pool, "prepared_total", &st->prepared_total)) < 0) ||
      (has (pool, "io_uring") &&
       (r = get_bool (pool, "io_uring", &st->io_uring)) < 0) ||
      (has (pool, "io_uring_note") &&
       (r = get_string (pool, "io_uring_note", true, &why)) < 0))
    return r;
  if (why && (st->io_uring_note = strdup (why)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  return 0;
}

static int
read_pool (const struct node *pool, struct pc_stats *st)
{
  const char *path, *why;
  uint64_t used, free_bytes;
  unsigned bs;
  int r;

  if ((r = get_u64 (pool, "capacity", &st->pool.capacity)) < 0 ||
      (r = get_u64s (pool, &st->pool, pool_fields,
                     NFIELDS (pool_fields))) < 0 ||
      (r = get_small (pool, "block_size", UINT32_MAX, &bs)) < 0 ||
      (r = get_small (pool, "volumes", PC_MAX_VOLUMES,
                      &st->pool.nvolumes)) < 0 ||
      (r = get_u64 (pool, "used", &used)) < 0 ||
      (r = get_u64 (pool, "free", &free_bytes)) < 0 ||
      (r = get_string (pool, "path", false, &path)) < 0 ||
      (r = get_bool (pool, "readonly", &st->readonly)) < 0 ||
      (r = get_bool (pool, "direct_io", &st->direct_io)) < 0 ||
      (r = get_string (pool, "direct_io_note", true, &why)) < 0)
    return r;
  st->pool.block_size = bs;
  if ((r = check_space (pool->file, &st->pool, used, free_bytes)) < 0 ||
      (r = read_pool_optional (pool, st)) < 0)
    return r;
  st->pool_path = strdup (path);
  st->direct_io_note = why ? strdup (why) : NULL;
  if (st->pool_path == NULL || (why && st->direct_io_note == NULL))
    return pc_error (ENOMEM, "out of memory");
  return 0;
}

static int
read_cache (const struct node *cache, struct pc_stats *st)
{
  struct json_object *rate;
  const char *policy;
  unsigned page;
  int r;

  if ((r = get_bool (cache, "enabled", &st->cache_enabled)) < 0 ||
      (r = get_u64 (cache, "budget", &st->cache.budget)) < 0 ||
      (r = get_u64 (cache, "memory", &st->cache.memory)) < 0 ||
      (r = get_small (cache, "page_size", UINT32_MAX, &page)) < 0 ||
      (r = get_u64s (cache, &st->cache, cache_sizes,
                     NFIELDS (cache_sizes))) < 0 ||
      (r = get_small (cache, "shards", UINT32_MAX, &st->cache.nshards)) < 0 ||
      (r = get_string (cache, "policy", false, &policy)) < 0 ||
      (r = get_u64 (cache, "hits", &st->cache.hits)) < 0 ||
      (r = get_u64 (cache, "misses", &st->cache.misses)) < 0 ||
      (r = member (cache, "hit_rate", &rate)) < 0 ||
      (r = get_u64s (cache, &st->cache, cache_counters,
                     NFIELDS (cache_counters))) < 0)
    return r;
  /* hit_rate: recomputed from hits and misses; a finite number. */
  if (!json_object_is_type (rate, json_type_int) &&
      !json_object_is_type (rate, json_type_double))
    return wrong_type (cache, "hit_rate", "a number", rate);
  if (!isfinite (json_object_get_double (rate)))
    return bad_file (cache->file, "cache.hit_rate: expected a finite number, "
                     "found %.40s", json_object_to_json_string (rate));
  if (page != PC_CACHE_PAGE)
    return bad_file (cache->file, "cache.page_size: %u, but cache pages are "
                     "%u bytes", page, PC_CACHE_PAGE);
  if (strcmp (policy, "s3fifo") != 0 && strcmp (policy, "lru") != 0)
    return bad_file (cache->file, "cache.policy: not \"s3fifo\" or \"lru\"");
  st->cache.policy = policy[0] == 'l' ? PC_CACHE_LRU : PC_CACHE_S3FIFO;
  return 0;
}

static int
read_volume (const struct node *vol, struct pc_stats_volume *v)
{
  struct node lock;
  const char *name;
  char shown[64];
  int r;

  if ((r = get_string (vol, "name", false, &name)) < 0 ||
      (r = get_u64 (vol, "size", &v->size)) < 0 ||
      (r = get_u64 (vol, "allocated", &v->allocated)) < 0 ||
      (r = get_small (vol, "connections", UINT32_MAX,
                      &v->connections)) < 0 ||
      (r = get_container (vol, "invalidate_lock", json_type_object,
                          &lock)) < 0 ||
      (r = get_u64s (&lock, &v->lock, lock_fields,
                     NFIELDS (lock_fields))) < 0)
    return r;
  if (strlen (name) >= sizeof v->name || !pc_vol_name_valid (name))
    return bad_file (vol->file, "%s.name: \"%s\" is not a valid volume name",
                     vol->path, pc_json_printable (name, shown,
                                                   sizeof shown));
  strcpy (v->name, name);
  return 0;
}

static int
read_volumes (const struct node *vols, struct pc_stats *st)
{
  size_t n = json_object_array_length (vols->obj);
  struct node vol = { .file = vols->file };
  int r = 0;

  if (n != st->pool.nvolumes)
    return bad_file (vols->file, "pool.volumes is %u, but the volumes list "
                     "has %zu", st->pool.nvolumes, n);
  st->volumes = calloc (n + 1, sizeof *st->volumes);       /* + 1: not 0 */
  if (st->volumes == NULL)
    return pc_error (ENOMEM, "out of memory");
  for (size_t i = 0; i < n && r == 0; i++) {
    vol.obj = json_object_array_get_idx (vols->obj, i);
    snprintf (vol.path, sizeof vol.path, "volumes[%zu]", i);
    if (!json_object_is_type (vol.obj, json_type_object))
      r = bad_file (vol.file, "%s: expected an object, found %s", vol.path,
                    pc_json_type_name (vol.obj));
    else
      r = read_volume (&vol, &st->volumes[i]);
  }
  return r;
}

/* Top-level keys this reader knows; any other key holding an object is a
 * front-end's section, carried through as it is (it was parsed, depth-
 * and size-bounded, by json-c; nothing here interprets it).  Other
 * unknown keys are ignored, as before (fields of later versions). */
static const char *const known_keys[] = {
  "version", "time", "uptime_ms", "pool", "cache", "volumes",
  "invalidate_lock", "writeback", NULL,
};

static int
keep_sections (const struct node *root, struct pc_stats *st)
{
  json_object_object_foreach (root->obj, key, val) {
    unsigned i;
    for (i = 0; known_keys[i] && strcmp (key, known_keys[i]) != 0; i++) ;
    if (known_keys[i]) continue;
    if (!json_object_is_type (val, json_type_object))
      continue;
    if (st->sections == NULL &&
        (st->sections = json_object_new_object ()) == NULL)
      return pc_error (ENOMEM, "out of memory");
    if (json_object_object_add (st->sections, key, json_object_get (val)) < 0)
      return pc_error (ENOMEM, "out of memory");
  }
  return 0;
}

static int
read_doc (const struct node *root, struct pc_stats *st)
{
  struct node pool, cache, vols, lock;
  int r;

  if ((r = check_version (root)) < 0 ||
      (r = get_u64 (root, "time", &st->time)) < 0 ||
      (r = get_u64 (root, "uptime_ms", &st->uptime_ms)) < 0 ||
      (r = get_container (root, "pool", json_type_object, &pool)) < 0 ||
      (r = get_container (root, "cache", json_type_object, &cache)) < 0 ||
      (r = get_container (root, "volumes", json_type_array, &vols)) < 0 ||
      (r = get_container (root, "invalidate_lock", json_type_object,
                          &lock)) < 0)
    return r;
  if ((r = read_pool (&pool, st)) < 0 ||
      (r = read_cache (&cache, st)) < 0 ||
      (r = read_volumes (&vols, st)) < 0 ||
      (r = get_u64s (&lock, &st->lock, lock_fields,
                     NFIELDS (lock_fields))) < 0)
    return r;
  /* Added with write-back: optional (files of older servers), complete
   * when present. */
  if (has (root, "writeback")) {
    struct node wb;
    if ((r = get_container (root, "writeback", json_type_object, &wb)) < 0 ||
        (r = get_bool (&wb, "enabled", &st->writeback.enabled)) < 0 ||
        (r = get_u64s (&wb, &st->writeback, wb_fields,
                       NFIELDS (wb_fields))) < 0)
      return r;
  }
  return keep_sections (root, st);
}

/* Takes over obj (a parse result r). */
static int
stats_from_json (int r, struct json_object *obj, const char *name,
                 struct pc_stats *st)
{
  struct node root = { .file = name, .obj = obj };

  memset (st, 0, sizeof *st);
  if (r < 0)
    return r;
  r = read_doc (&root, st);
  json_object_put (obj);
  if (r < 0)
    pc_stats_free (st);
  return r;
}

int
pc_stats_parse (const char *text, size_t len, const char *name,
                struct pc_stats *st)
{
  struct json_object *obj = NULL;
  int r = pc_json_parse (text, len, PC_STATS_MAX_SIZE, name, &obj);

  return stats_from_json (r, obj, name, st);
}

int
pc_stats_read_file (const char *path, struct pc_stats *st)
{
  struct json_object *obj = NULL;
  int r = pc_json_read_file (path, PC_STATS_MAX_SIZE, &obj);

  return stats_from_json (r, obj, path, st);
}
