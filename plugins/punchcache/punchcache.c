/* nbdkit-punchcache-plugin: thin volumes from a punchcache pool.
 *
 * A thin adapter: each callback checks its flags and hands off to the store
 * API (include/punchcache/punchcache.h), turning -errno plus
 * pc_last_error() into nbdkit_error/nbdkit_set_error.  No storage logic
 * lives here.
 *
 * Life cycle: .config collects parameters, .get_ready creates/opens the
 * pool (before nbdkit forks, so errors reach the user's terminal),
 * .after_fork starts the background committer (threads do not survive
 * fork), .cleanup commits and closes.  Each connection opens its volume by
 * export name.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "punchcache/format.h"
#include "punchcache/cache.h"
#include "punchcache/io.h"
#include "punchcache/punchcache.h"
#include "punchcache/request.h"

/* Debug switches, set with nbdkit -D punchcache.NAME=VALUE.  Never for
 * production: they exist so the race tests can show they catch the bugs. */
NBDKIT_DLL_PUBLIC int punchcache_debug_unsafe_no_invalidate_lock = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_race_delay_us = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_fail_write_every = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_commit_interval_ms = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_fill_delay_us = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_stats_interval_ms = 0;

#define DEFAULT_VOLUME "default"
#define MAX_VOLUME_PARAMS 64

static const char *pool_path;
static int64_t create_size = -1;
static int64_t cache_size = 256 * 1024 * 1024;
static int64_t block_size = 0;
static char *stats_path;             /* absolute: nbdkit may chdir / */
static int direct_mode = PC_DIRECT_AUTO;
static int io_mode = PC_IO_AUTO;

/* Names of enum values, in enum order (NULL-terminated). */
static const char *const direct_names[] = { "auto", "on", "off", NULL };
static const char *const io_names[] = { "auto", "uring", "sync", NULL };

/* key=value where value must be one of names: *out = its index. */
static int
parse_choice (const char *key, const char *value, const char *const *names,
              int *out)
{
  for (int i = 0; names[i]; i++)
    if (strcmp (value, names[i]) == 0) {
      *out = i;
      return 0;
    }
  nbdkit_error ("%s=%s: expected %s, %s or %s", key, value, names[0],
                names[1], names[2]);
  return -1;
}
static struct { char *name; int64_t size; } volume_params[MAX_VOLUME_PARAMS];
static unsigned nvolume_params;

static struct pc_pool *pool;
/* The asynchronous core, used as a blocking call (pc_core_run): nbdkit's
 * threads may wait, so a request that must wait runs on the calling
 * thread and the core needs no workers of its own. */
static struct pc_core *core;

static int
fail (int r)
{
  nbdkit_error ("%s", pc_last_error ());
  nbdkit_set_error (-r);
  return -1;
}

static int
parse_volume_param (const char *value)
{
  const char *colon = strrchr (value, ':');
  char *name;
  int64_t size;

  if (colon == NULL || colon == value) {
    nbdkit_error ("volume=%s: expected volume=NAME:SIZE", value);
    return -1;
  }
  if (nvolume_params == MAX_VOLUME_PARAMS) {
    nbdkit_error ("too many volume= parameters (at most %d)", MAX_VOLUME_PARAMS);
    return -1;
  }
  size = nbdkit_parse_size (colon + 1);
  if (size == -1)
    return -1;
  name = strndup (value, (size_t) (colon - value));
  if (name == NULL) {
    nbdkit_error ("strndup: %m");
    return -1;
  }
  volume_params[nvolume_params].name = name;
  volume_params[nvolume_params++].size = size;
  return 0;
}

static int
punchcache_config (const char *key, const char *value)
{
  if (strcmp (key, "pool") == 0) {
    pool_path = value;
    return 0;
  }
  if (strcmp (key, "size") == 0)
    return (create_size = nbdkit_parse_size (value)) == -1 ? -1 : 0;
  if (strcmp (key, "cache") == 0)
    return (cache_size = nbdkit_parse_size (value)) == -1 ? -1 : 0;
  if (strcmp (key, "block-size") == 0)
    return (block_size = nbdkit_parse_size (value)) == -1 ? -1 : 0;
  if (strcmp (key, "volume") == 0)
    return parse_volume_param (value);
  if (strcmp (key, "stats") == 0) {
    free (stats_path);
    return (stats_path = nbdkit_absolute_path (value)) == NULL ? -1 : 0;
  }
  if (strcmp (key, "direct") == 0)
    return parse_choice (key, value, direct_names, &direct_mode);
  if (strcmp (key, "io") == 0)
    return parse_choice (key, value, io_names, &io_mode);
  nbdkit_error ("unknown parameter '%s' (see nbdkit punchcache --help)", key);
  return -1;
}

static int
punchcache_config_complete (void)
{
  if (pool_path == NULL) {
    nbdkit_error ("the pool=PATH parameter is required");
    return -1;
  }
  if (block_size && (block_size < PC_MIN_BLOCK_SIZE ||
                     block_size > PC_MAX_BLOCK_SIZE ||
                     (block_size & (block_size - 1)))) {
    nbdkit_error ("block-size=%" PRIi64 " must be a power of two from 4K "
                  "to 1M", block_size);
    return -1;
  }
  if (cache_size != 0 && cache_size < 2 * PC_CACHE_PAGE) {
    nbdkit_error ("cache=%" PRIi64 " is too small: use 0 to disable the "
                  "cache, or at least 8K", cache_size);
    return -1;
  }
  return 0;
}

#define punchcache_config_help \
  "pool=PATH             (required) Pool file or block device.\n" \
  "size=SIZE             Create the pool if PATH is missing or empty, with\n" \
  "                      SIZE bytes of data capacity and a volume 'default'\n" \
  "                      of SIZE bytes.  Ignored if the pool exists.\n" \
  "block-size=SIZE       Allocation unit when creating (4K..1M, power of 2,\n" \
  "                      default 64K).\n" \
  "volume=NAME:SIZE      Create volume NAME with virtual size SIZE if it is\n" \
  "                      missing (repeatable; sizes may overcommit the pool).\n" \
  "cache=SIZE            RAM budget of the block cache shared by every\n" \
  "                      connection and volume (default 256M; 0 disables).\n" \
  "direct=auto|on|off    Read and write data blocks with O_DIRECT so the\n" \
  "                      block cache is the only cache (default auto: use\n" \
  "                      it where the file system supports it).\n" \
  "io=auto|uring|sync    Issue the transfers of a multi-block request as\n" \
  "                      one io_uring batch (default auto: where the\n" \
  "                      kernel allows io_uring) or one after another.\n" \
  "stats=PATH            Write statistics (cache hits, lock waits, space)\n" \
  "                      as JSON to PATH every 2 seconds and at exit."

static bool
pool_needs_create (void)
{
  struct stat st;

  if (stat (pool_path, &st) == -1)
    return errno == ENOENT;
  return S_ISREG (st.st_mode) && st.st_size == 0;
}

static int
create_pool_if_needed (void)
{
  int r;

  if (!pool_needs_create ())
    return 0;
  if (create_size <= 0) {
    nbdkit_error ("pool %s does not exist (or is empty): pass size=SIZE to "
                  "create it", pool_path);
    return -1;
  }
  nbdkit_debug ("creating pool %s: %" PRIi64 " bytes", pool_path, create_size);
  r = pc_pool_create (pool_path, (uint64_t) create_size, (uint32_t) block_size);
  if (r == 0) r = pc_pool_open (pool_path, NULL, &pool);
  if (r == 0) r = pc_volume_add (pool, DEFAULT_VOLUME, (uint64_t) create_size);
  if (r < 0) return fail (r);
  return pc_pool_close (pool) < 0 ? fail (-EIO) : 0;
}

static int
add_missing_volumes (void)
{
  struct pc_volume *vol;
  unsigned i;
  int r;

  for (i = 0; i < nvolume_params; i++) {
    if (pc_volume_open (pool, volume_params[i].name, &vol) == 0) {
      pc_volume_close (vol);
      continue;
    }
    r = pc_volume_add (pool, volume_params[i].name,
                       (uint64_t) volume_params[i].size);
    if (r < 0) return fail (r);
  }
  return 0;
}

static int
punchcache_get_ready (void)
{
  struct pc_pool_options opts = {
    .unsafe_no_invalidate_lock = punchcache_debug_unsafe_no_invalidate_lock,
    .race_delay_us = (unsigned) punchcache_debug_race_delay_us,
    .fail_write_every = (unsigned) punchcache_debug_fail_write_every,
    .commit_interval_ms = (unsigned) punchcache_debug_commit_interval_ms,
    .fill_delay_us = (unsigned) punchcache_debug_fill_delay_us,
    .stats_interval_ms = (unsigned) punchcache_debug_stats_interval_ms,
    .cache_bytes = (uint64_t) cache_size,
    .direct_io = direct_mode,
    .io_backend = io_mode,
    .stats_path = stats_path,
  };
  const char *why;
  int r;

  if (create_pool_if_needed () == -1)
    return -1;
  if (opts.unsafe_no_invalidate_lock)
    nbdkit_debug ("UNSAFE: the invalidate lock is disabled (debug switch)");
  r = pc_pool_open (pool_path, &opts, &pool);
  if (r < 0) return fail (r);
  if (!pc_pool_direct_io (pool, &why))
    /* Not an error, but the user asked for a bounded cache: say why the
     * kernel's page cache is also in play. */
    fprintf (stderr, "nbdkit: punchcache: note: data I/O on %s is buffered: "
             "%s\n", pool_path, why);
  if (io_mode == PC_IO_AUTO && !pc_pool_io_uring (pool, &why))
    fprintf (stderr, "nbdkit: punchcache: note: io_uring unavailable, "
             "batches use system calls: %s\n", why);
  nbdkit_debug ("pool %s: cache %" PRIi64 " bytes, %s data I/O, %s batches",
                pool_path, cache_size,
                pc_pool_direct_io (pool, NULL) ? "O_DIRECT" : "buffered",
                pc_pool_io_uring (pool, NULL) ? "io_uring" : "sync");
  return add_missing_volumes ();
}

static int
punchcache_after_fork (void)
{
  int r = pc_pool_start (pool);

  if (r == 0)
    r = pc_core_create (pool, 0, &core);
  return r < 0 ? fail (r) : 0;
}

static void
punchcache_cleanup (void)
{
  pc_core_destroy (core);
  core = NULL;
  if (pool && pc_pool_close (pool) < 0)
    nbdkit_error ("closing pool: %s", pc_last_error ());
  pool = NULL;
}

static void
punchcache_unload (void)
{
  unsigned i;

  for (i = 0; i < nvolume_params; i++)
    free (volume_params[i].name);
  free (stats_path);
}

static void
punchcache_dump_plugin (void)
{
  printf ("punchcache_version=%s\n", PACKAGE_VERSION);
  printf ("punchcache_format_version=%u\n", PC_FORMAT_VERSION);
  printf ("punchcache_default_block_size=%u\n", PC_DEFAULT_BLOCK_SIZE);
}

struct add_export_ctx { struct nbdkit_exports *exports; };

static int
add_export (void *opaque, const struct pc_volume_info *vi)
{
  struct add_export_ctx *ctx = opaque;
  char desc[128];

  snprintf (desc, sizeof desc, "thin volume, %" PRIu64 " bytes, %" PRIu64
            " blocks allocated", vi->size, vi->allocated_blocks);
  return nbdkit_add_export (ctx->exports, vi->name, desc);
}

static int
punchcache_list_exports (int readonly, int is_tls,
                         struct nbdkit_exports *exports)
{
  struct add_export_ctx ctx = { exports };

  return pc_volume_foreach (pool, add_export, &ctx);
}

static const char *
punchcache_default_export (int readonly, int is_tls)
{
  return DEFAULT_VOLUME;
}

static void *
punchcache_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct pc_volume *vol;
  int r;

  if (name == NULL || *name == '\0')
    name = DEFAULT_VOLUME;
  r = pc_volume_open (pool, name, &vol);
  if (r < 0) {
    fail (r);
    return NULL;
  }
  return vol;
}

static void
punchcache_close (void *handle)
{
  pc_volume_close (handle);
}

static int64_t
punchcache_get_size (void *handle)
{
  return (int64_t) pc_volume_size (handle);
}

static int
punchcache_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                       uint32_t *maximum)
{
  *minimum = 1;
  *preferred = pc_volume_block_size (handle);
  *maximum = 0xffffffff;
  return 0;
}

static int punchcache_can_write (void *h) { return 1; }
static int punchcache_can_flush (void *h) { return 1; }
static int punchcache_can_trim (void *h) { return 1; }
static int punchcache_can_zero (void *h) { return 1; }
static int punchcache_can_fast_zero (void *h) { return 1; }
static int punchcache_can_extents (void *h) { return 1; }
static int punchcache_can_multi_conn (void *h) { return 1; }
static int punchcache_can_fua (void *h) { return NBDKIT_FUA_NATIVE; }
/* NBD_CMD_CACHE fills the block cache (or is a validated no-op with
 * cache=0, still native: there is nothing a generic emulation would add). */
static int punchcache_can_cache (void *h) { return NBDKIT_CACHE_NATIVE; }

/* Every data callback: one request through the core, run on this thread
 * (pc_core_run); the error sentence comes back in the request. */
static int
failed (const struct pc_req *req)
{
  nbdkit_error ("%s", req->error);
  nbdkit_set_error (-req->result);
  return -1;
}

static int
run (struct pc_req *req)
{
  return pc_core_run (core, req) == 0 ? 0 : failed (req);
}

static unsigned
fua_flag (uint32_t flags)
{
  return (flags & NBDKIT_FLAG_FUA) ? PC_FUA : 0;
}

static int
punchcache_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_READ, .vol = handle, .buf = buf,
                        .count = count, .offset = offset };
  return run (&req);
}

static int
punchcache_pwrite (void *handle, const void *buf, uint32_t count,
                   uint64_t offset, uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_WRITE, .vol = handle, .buf = (void *) buf,
                        .count = count, .offset = offset,
                        .flags = fua_flag (flags) };
  return run (&req);
}

static int
punchcache_flush (void *handle, uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_FLUSH, .vol = handle };
  return run (&req);
}

static int
punchcache_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_TRIM, .vol = handle, .count = count,
                        .offset = offset, .flags = fua_flag (flags) };
  return run (&req);
}

/* Without MAY_TRIM the client asked for NO_HOLE.  FAST_ZERO needs nothing:
 * every zero is a metadata operation or a fallocate. */
static int
punchcache_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_ZERO, .vol = handle, .count = count,
                        .offset = offset,
                        .flags = fua_flag (flags) |
                          ((flags & NBDKIT_FLAG_MAY_TRIM) ? 0 : PC_NO_HOLE) };
  return run (&req);
}

static int
punchcache_cache (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  struct pc_req req = { .op = PC_OP_CACHE, .vol = handle, .count = count,
                        .offset = offset };
  return run (&req);
}

struct extents_req {
  struct pc_req req;               /* first: the core hands it back */
  struct nbdkit_extents *extents;
  bool failed;                     /* nbdkit_add_extent set the error */
};

static int
add_extent (struct pc_req *req, uint64_t offset, uint64_t length,
            bool is_hole)
{
  struct extents_req *x = (struct extents_req *) req;
  uint32_t type = is_hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0;

  if (nbdkit_add_extent (x->extents, offset, length, type) == -1) {
    x->failed = true;
    return -EIO;
  }
  return (req->flags & PC_REQ_ONE) ? 1 : 0;  /* 1 stops after one extent */
}

static int
punchcache_extents (void *handle, uint32_t count, uint64_t offset,
                    uint32_t flags, struct nbdkit_extents *extents)
{
  struct extents_req x = {
    .req = { .op = PC_OP_EXTENTS, .vol = handle, .count = count,
             .offset = offset, .extent = add_extent,
             .flags = (flags & NBDKIT_FLAG_REQ_ONE) ? PC_REQ_ONE : 0 },
    .extents = extents,
  };

  if (pc_core_run (core, &x.req) == 0)
    return 0;
  return x.failed ? -1 : failed (&x.req);
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct nbdkit_plugin plugin = {
  .name              = "punchcache",
  .longname          = "punchcache thin volumes with punch-safe reads",
  .version           = PACKAGE_VERSION,
  .config            = punchcache_config,
  .config_complete   = punchcache_config_complete,
  .config_help       = punchcache_config_help,
  .magic_config_key  = "pool",
  .get_ready         = punchcache_get_ready,
  .after_fork        = punchcache_after_fork,
  .cleanup           = punchcache_cleanup,
  .unload            = punchcache_unload,
  .dump_plugin       = punchcache_dump_plugin,
  .list_exports      = punchcache_list_exports,
  .default_export    = punchcache_default_export,
  .open              = punchcache_open,
  .close             = punchcache_close,
  .get_size          = punchcache_get_size,
  .block_size        = punchcache_block_size,
  .can_write         = punchcache_can_write,
  .can_flush         = punchcache_can_flush,
  .can_trim          = punchcache_can_trim,
  .can_zero          = punchcache_can_zero,
  .can_fast_zero     = punchcache_can_fast_zero,
  .can_extents       = punchcache_can_extents,
  .can_multi_conn    = punchcache_can_multi_conn,
  .can_fua           = punchcache_can_fua,
  .can_cache         = punchcache_can_cache,
  .pread             = punchcache_pread,
  .pwrite            = punchcache_pwrite,
  .flush             = punchcache_flush,
  .trim              = punchcache_trim,
  .zero              = punchcache_zero,
  .cache             = punchcache_cache,
  .extents           = punchcache_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
