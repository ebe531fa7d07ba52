/* nbdkit-punchcache-plugin: thin volumes from a punchcache pool.
 *
 * A thin adapter: each callback checks its flags and hands off to the store
 * API (include/punchcache/punchcache.h), turning -errno plus
 * pc_last_error() into nbdkit_error/nbdkit_set_error.  No storage logic
 * lives here.
 *
 * Life cycle: .config and .config_complete hand the key=value parameters
 * to the core's parser (include/punchcache/params.h, shared with
 * punchcached), .get_ready creates/opens the pool through it (before
 * nbdkit forks, so errors reach the user's terminal),
 * .after_fork starts the background committer (threads do not survive
 * fork), .cleanup commits and closes.  Each connection opens its volume by
 * export name.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "punchcache/format.h"
#include "punchcache/params.h"
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
NBDKIT_DLL_PUBLIC int punchcache_debug_writeback_delay_us = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_fail_writeback = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_unsafe_wb_forget_failures = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_unsafe_no_reservations = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_unsafe_evict_dirty = 0;
NBDKIT_DLL_PUBLIC int punchcache_debug_unsafe_origin_fill = 0;

/* Every key=value, parsed and checked by the core (lib/core/params.c),
 * the same parser punchcached uses. */
static struct pc_params params;

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

static void
punchcache_load (void)
{
  pc_params_init (&params);
}

static int
punchcache_config (const char *key, const char *value)
{
  int r = pc_params_set (&params, key, value);
  return r < 0 ? fail (r) : 0;
}

static int
punchcache_config_complete (void)
{
  int r = pc_params_complete (&params);
  return r < 0 ? fail (r) : 0;
}

/* nbdkit -D punchcache.NAME=VALUE sets the variables above; the core
 * checks them by name like any front-end's. */
static int
set_debug_switches (void)
{
  static const struct { const char *name; const int *value; } sw[] = {
    { "unsafe_no_invalidate_lock", &punchcache_debug_unsafe_no_invalidate_lock },
    { "race_delay_us", &punchcache_debug_race_delay_us },
    { "fail_write_every", &punchcache_debug_fail_write_every },
    { "commit_interval_ms", &punchcache_debug_commit_interval_ms },
    { "fill_delay_us", &punchcache_debug_fill_delay_us },
    { "stats_interval_ms", &punchcache_debug_stats_interval_ms },
    { "writeback_delay_us", &punchcache_debug_writeback_delay_us },
    { "fail_writeback", &punchcache_debug_fail_writeback },
    { "unsafe_wb_forget_failures",
      &punchcache_debug_unsafe_wb_forget_failures },
    { "unsafe_no_reservations", &punchcache_debug_unsafe_no_reservations },
    { "unsafe_evict_dirty", &punchcache_debug_unsafe_evict_dirty },
    { "unsafe_origin_fill", &punchcache_debug_unsafe_origin_fill },
  };
  char value[16];
  size_t i;

  for (i = 0; i < sizeof sw / sizeof sw[0]; i++) {
    snprintf (value, sizeof value, "%d", *sw[i].value);
    if (pc_params_set_debug (&params, sw[i].name, value) < 0)
      return -1;
  }
  return 0;
}

static void
print_note (void *opaque, const char *msg)
{
  fprintf (stderr, "nbdkit: punchcache: note: %s\n", msg);
}

/* Before nbdkit forks, so that errors reach the user's terminal.  nbdkit
 * -r is enforced by nbdkit per connection, so the pool opens read-write. */
static int
punchcache_get_ready (void)
{
  int r;

  if (set_debug_switches () < 0 ||
      (r = pc_params_open_pool (&params, false, print_note, NULL, &pool)) < 0) {
    nbdkit_error ("%s", pc_last_error ());
    return -1;
  }
  if (params.debug.unsafe_no_invalidate_lock)
    nbdkit_debug ("UNSAFE: the invalidate lock is disabled (debug switch)");
  nbdkit_debug ("pool %s: cache %" PRIi64 " bytes, %s data I/O, %s batches",
                params.pool_path, params.cache_size,
                pc_pool_direct_io (pool, NULL) ? "O_DIRECT" : "buffered",
                pc_pool_io_uring (pool, NULL) ? "io_uring" : "sync");
  return 0;
}

static int
punchcache_after_fork (void)
{
  int r = pc_params_start_pool (pool);

  if (r == 0)
    r = pc_core_create (pool, 0, &core);
  return r < 0 ? fail (r) : 0;
}

static void
punchcache_cleanup (void)
{
  pc_core_destroy (core);
  core = NULL;
  if (pool && pc_params_close_pool (pool) < 0)
    nbdkit_error ("closing pool: %s", pc_last_error ());
  pool = NULL;
}

static void
punchcache_unload (void)
{
  pc_params_free (&params);
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
  return PC_DEFAULT_VOLUME;
}

static void *
punchcache_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  struct pc_volume *vol;
  int r;

  if (name == NULL || *name == '\0')
    name = PC_DEFAULT_VOLUME;
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
  .load              = punchcache_load,
  .config            = punchcache_config,
  .config_complete   = punchcache_config_complete,
  .config_help       = pc_params_help,
  .magic_config_key  = PC_PARAMS_MAGIC_KEY,
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
