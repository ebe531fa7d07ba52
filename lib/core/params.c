/* punchcache: the key=value parameters shared by every front-end.
 *
 * What: the parser of `pool= size= block-size= volume= cache= direct= io=
 * stats=`, the -D debug switches by name, the --help text of the keys, and
 * the start-up step every server does with them (create the pool if it is
 * missing, open it, create missing volume= volumes, open the stats=
 * writer), and the matching start (after any fork) and close steps, so
 * the statistics writer lives exactly as long as the pool without the
 * pool calling it (docs/design.md "Layers").
 *
 * Why here: `nbdkit punchcache` and `punchcached` must accept exactly the
 * same parameters with the same messages (issue 12, item 4).  With the
 * parser in the core, each front-end only moves words in (nbdkit's .config,
 * punchcached's argv) and prints pc_last_error() on failure; neither can
 * drift from the other.
 *
 * Three stages, each validating what it can know:
 *   pc_params_set       one key alone: syntax, sizes, choices, volume names;
 *   pc_params_complete  across keys, still without touching files: pool=
 *                       given, block-size range, cache minimum;
 *   pc_params_open_pool the files: does the pool exist, can it be created,
 *                       which volumes are missing.
 *
 * Invariants:
 *   P1  A struct pc_params owns its strings (pool_path, stats_path, volume
 *       names); pc_params_free frees them and leaves an initialised struct.
 *   P2  A failed pc_params_set or pc_params_set_debug leaves the struct as
 *       it was (values are parsed into locals and stored last).
 *   P3  Paths are stored absolute, resolved against the working directory
 *       at parse time: a server may chdir("/") when it daemonises.
 *   P4  Every error message starts with "KEY=VALUE: " as the user wrote it
 *       (or names the key when there is no value to show).
 *   P5  pc_params_open_pool either returns an open pool with every volume=
 *       present, or fails with nothing open; a pool it created and could
 *       not finish (open it, add "default") is removed again, so a retry
 *       with corrected parameters creates it afresh instead of finding a
 *       pool without its default volume.
 *
 * No locks: parameters are parsed by one thread before any server thread
 * starts.  The library never prints; notes go through the caller's note().
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "punchcache/cache.h"
#include "punchcache/format.h"
#include "punchcache/io.h"
#include "punchcache/overlay.h"
#include "punchcache/params.h"
#include "punchcache/stats.h"

#define DEFAULT_CACHE_SIZE (256 * 1024 * 1024)

const char pc_params_help[] =
  "pool=PATH             (required) Pool file or block device.\n"
  "size=SIZE             Create the pool if PATH is missing or empty, with\n"
  "                      SIZE bytes of data capacity and a volume 'default'\n"
  "                      of SIZE bytes.  Ignored if the pool exists.\n"
  "block-size=SIZE       Allocation unit when creating (4K..1M, power of 2,\n"
  "                      default 64K).\n"
  "volume=NAME:SIZE      Create volume NAME with virtual size SIZE if it is\n"
  "                      missing (repeatable; sizes may overcommit the pool).\n"
  "cache=SIZE            RAM budget of the block cache shared by every\n"
  "                      connection and volume (default 256M; 0 disables).\n"
  "direct=auto|on|off    Read and write data blocks with O_DIRECT so the\n"
  "                      block cache is the only cache (default auto: use\n"
  "                      it where the file system supports it).\n"
  "io=auto|uring|sync    Issue the transfers of a multi-block request as\n"
  "                      one io_uring batch (default auto: where the\n"
  "                      kernel allows io_uring) or one after another.\n"
  "writeback=on|off      on (default): a write completes once its data is\n"
  "                      in the cache; FLUSH and FUA make data durable, and\n"
  "                      blocks are allocated when written back.  off:\n"
  "                      every write goes to the pool before it completes.\n"
  "                      With cache=0 writes are always written through.\n"
  "dirty=SIZE            Dirty (not yet written back) data at most; a\n"
  "                      writer past it waits for write-back (default half\n"
  "                      of cache=; at most 90% of it).\n"
  "dirty-expire=SECONDS  Write back data dirty for longer than this\n"
  "                      (default 30; 1 to 86400).\n"
  "stats=PATH            Write statistics (cache hits, lock waits, space)\n"
  "                      as JSON to PATH every 2 seconds and at exit.\n"
  "origin=URI            Volume 'default' reads through the NBD export at\n"
  "                      URI (nbd://, nbd+unix://, nbds://...), keeping\n"
  "                      what it reads in the pool; the pool remembers it.\n"
  "                      A new pool's 'default' gets the origin's size.\n"
  "origin-mode=overlay|writethrough\n"
  "                      overlay (default): writes, trims and zeroes stay\n"
  "                      in the pool, the origin is never written.\n"
  "                      writethrough: they reach the origin before they\n"
  "                      complete, and stay cached in the pool.\n"
  "origin-connections=N  Connections to each origin (1..16, default 4).";

void
pc_params_init (struct pc_params *p)
{
  memset (p, 0, sizeof *p);
  p->create_size = -1;
  p->cache_size = DEFAULT_CACHE_SIZE;
  p->direct_mode = PC_DIRECT_AUTO;
  p->io_mode = PC_IO_AUTO;
  p->writeback = 1;
}

void
pc_params_free (struct pc_params *p)
{
  unsigned i;

  free (p->pool_path);
  free (p->stats_path);
  free (p->origin);
  for (i = 0; i < p->nvolumes; i++)
    free (p->volumes[i].name);
  pc_params_init (p);
}

/* Prefix the current message with "KEY=VALUE: " (P4) and return r. */
static int
key_error (const char *key, const char *value, int r)
{
  char why[512];

  snprintf (why, sizeof why, "%s", pc_last_error ());
  return pc_error (r, "%s=%s: %s", key, value, why);
}

/* A size value (all of them must be >= 0: pc_parse_size refuses '-'). */
static int
parse_size (const char *key, const char *value, int64_t *out)
{
  int64_t v = pc_parse_size (value);

  if (v < 0)
    return key_error (key, value, (int) v);
  *out = v;
  return 0;
}

/* *field = value resolved against the working directory (P3), malloc'd;
 * the previous value is freed (the last pool= or stats= wins). */
static int
set_path (const char *key, const char *value, char **field)
{
  char *cwd, *path;
  int r;

  if (*value == '\0')
    return pc_error (EINVAL, "%s=: expected a path", key);
  if (value[0] == '/')
    r = (path = strdup (value)) == NULL ? -1 : 0;
  else {
    if ((cwd = getcwd (NULL, 0)) == NULL)
      return pc_error (errno, "%s=%s: cannot find the current directory: "
                       "%s", key, value, strerror (errno));
    r = asprintf (&path, "%s/%s", cwd, value);
    free (cwd);
  }
  if (r == -1)
    return pc_error (ENOMEM, "%s=%s: out of memory", key, value);
  free (*field);
  *field = path;
  return 0;
}

/* value must be one of names (3 of them, in enum order): *out = index. */
static int
parse_choice (const char *key, const char *value, const char *const names[3],
              int *out)
{
  for (int i = 0; i < 3 && names[i]; i++)
    if (strcmp (value, names[i]) == 0) {
      *out = i;
      return 0;
    }
  if (names[2] == NULL)
    return pc_error (EINVAL, "%s=%s: expected %s or %s", key, value,
                     names[0], names[1]);
  return pc_error (EINVAL, "%s=%s: expected %s, %s or %s", key, value,
                   names[0], names[1], names[2]);
}

/* volume=NAME:SIZE.  The last ':' splits (names have none, but be exact
 * about what was rejected). */
static int
parse_volume (struct pc_params *p, const char *value)
{
  const char *colon = strrchr (value, ':');
  char *name;
  int64_t size;

  if (colon == NULL || colon == value)
    return pc_error (EINVAL, "volume=%s: expected volume=NAME:SIZE", value);
  if (p->nvolumes == PC_MAX_VOLUME_PARAMS)
    return pc_error (E2BIG, "volume=%s: too many volume= parameters "
                     "(at most %d)", value, PC_MAX_VOLUME_PARAMS);
  if ((name = strndup (value, (size_t) (colon - value))) == NULL)
    return pc_error (ENOMEM, "volume=%s: out of memory", value);
  if (!pc_vol_name_valid (name)) {
    free (name);
    return pc_error (EINVAL, "volume=%s: invalid volume name: use 1 to %u "
                     "letters, digits and ._+@- not starting with . or -",
                     value, PC_VOL_NAME_MAX);
  }
  if ((size = pc_parse_size (colon + 1)) < 0) {
    free (name);
    return key_error ("volume", value, (int) size);
  }
  p->volumes[p->nvolumes].name = name;
  p->volumes[p->nvolumes++].size = size;
  return 0;
}

static const char *const direct_names[3] = { "auto", "on", "off" };
static const char *const io_names[3] = { "auto", "uring", "sync" };
static const char *const onoff_names[3] = { "off", "on", NULL };
static const char *const origin_mode_names[3] = { "overlay", "writethrough",
                                                  NULL };

static int
set_origin (struct pc_params *p, const char *value)
{
  if (!pc_origin_uri_valid (value))
    return pc_error (EINVAL, "origin=%.80s: expected an NBD URI of 1 to %u "
                     "printable characters", value, PC_ORIGIN_URI_MAX);
  free (p->origin);
  if ((p->origin = strdup (value)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  return 0;
}

/* dirty-expire=SECONDS: a whole number from 1 to 86400. */
static int
parse_seconds (const char *key, const char *value, int64_t *out)
{
  char *end;
  long v;

  errno = 0;
  v = value[0] >= '0' && value[0] <= '9' ? strtol (value, &end, 10) : -1;
  if (v < 1 || v > 86400 || errno || *end != '\0')
    return pc_error (EINVAL, "%s=%s: expected a whole number of seconds "
                     "from 1 to 86400", key, value);
  *out = v;
  return 0;
}

int
pc_params_set (struct pc_params *p, const char *key, const char *value)
{
  if (strcmp (key, "pool") == 0)
    return set_path (key, value, &p->pool_path);
  if (strcmp (key, "stats") == 0)
    return set_path (key, value, &p->stats_path);
  if (strcmp (key, "size") == 0)
    return parse_size (key, value, &p->create_size);
  if (strcmp (key, "block-size") == 0)
    return parse_size (key, value, &p->block_size);
  if (strcmp (key, "cache") == 0)
    return parse_size (key, value, &p->cache_size);
  if (strcmp (key, "volume") == 0)
    return parse_volume (p, value);
  if (strcmp (key, "direct") == 0)
    return parse_choice (key, value, direct_names, &p->direct_mode);
  if (strcmp (key, "io") == 0)
    return parse_choice (key, value, io_names, &p->io_mode);
  if (strcmp (key, "writeback") == 0)
    return parse_choice (key, value, onoff_names, &p->writeback);
  if (strcmp (key, "dirty") == 0)
    return parse_size (key, value, &p->dirty_size);
  if (strcmp (key, "dirty-expire") == 0)
    return parse_seconds (key, value, &p->dirty_expire_s);
  if (strcmp (key, "origin") == 0)
    return set_origin (p, value);
  if (strcmp (key, "origin-mode") == 0)
    return parse_choice (key, value, origin_mode_names, &p->origin_mode);
  if (strcmp (key, "origin-connections") == 0) {
    char *end;
    long n = strtol (value, &end, 10);
    if (value[0] < '0' || value[0] > '9' || *end || n < 1 || n > 16)
      return pc_error (EINVAL, "origin-connections=%s: expected a whole "
                       "number from 1 to 16", value);
    p->origin_connections = n;
    return 0;
  }
  return pc_error (EINVAL, "unknown parameter '%s' (see --help)", key);
}

/* A key as nbdkit recognises one: a letter, then letters, digits, _ - . */
static bool
is_key (const char *s, size_t len)
{
  size_t i;

  if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') ||
                    (s[0] >= 'A' && s[0] <= 'Z')))
    return false;
  for (i = 1; i < len; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || strchr ("_-.", s[i])))
      return false;
  return true;
}

int
pc_params_set_arg (struct pc_params *p, const char *arg)
{
  const char *eq = strchr (arg, '=');
  char key[64];
  size_t len;

  if (eq == NULL || !is_key (arg, (size_t) (eq - arg)))
    return pc_params_set (p, PC_PARAMS_MAGIC_KEY, arg);
  len = (size_t) (eq - arg);
  if (len >= sizeof key)
    return pc_error (EINVAL, "unknown parameter '%.*s' (see --help)",
                     (int) len, arg);
  memcpy (key, arg, len);
  key[len] = '\0';
  return pc_params_set (p, key, eq + 1);
}

int
pc_params_complete (const struct pc_params *p)
{
  int64_t bs = p->block_size;

  if (p->pool_path == NULL)
    return pc_error (EINVAL, "the pool=PATH parameter is required");
  if (bs && (bs < PC_MIN_BLOCK_SIZE || bs > PC_MAX_BLOCK_SIZE ||
             (bs & (bs - 1))))
    return pc_error (EINVAL, "block-size=%" PRIi64 " must be a power of "
                     "two from 4K to 1M", bs);
  if (p->cache_size != 0 && p->cache_size < 2 * PC_CACHE_PAGE)
    return pc_error (EINVAL, "cache=%" PRIi64 " is too small: use 0 to "
                     "disable the cache, or at least 8K", p->cache_size);
  return 0;
}

/* ---- debug switches ---- */

static const struct debug_switch {
  const char *name;
  size_t offset;                /* in struct pc_pool_options */
  bool is_bool;
} debug_switches[] = {
  { "unsafe_no_invalidate_lock",
    offsetof (struct pc_pool_options, unsafe_no_invalidate_lock), true },
  { "race_delay_us", offsetof (struct pc_pool_options, race_delay_us) },
  { "fill_delay_us", offsetof (struct pc_pool_options, fill_delay_us) },
  { "fail_write_every", offsetof (struct pc_pool_options, fail_write_every) },
  { "commit_interval_ms",
    offsetof (struct pc_pool_options, commit_interval_ms) },
  { "stats_interval_ms",
    offsetof (struct pc_pool_options, stats_interval_ms) },
  { "writeback_delay_us",
    offsetof (struct pc_pool_options, writeback_delay_us) },
  { "fail_writeback", offsetof (struct pc_pool_options, fail_writeback) },
  { "unsafe_wb_forget_failures",
    offsetof (struct pc_pool_options, unsafe_wb_forget_failures), true },
  { "unsafe_no_reservations",
    offsetof (struct pc_pool_options, unsafe_no_reservations), true },
  { "unsafe_evict_dirty",
    offsetof (struct pc_pool_options, unsafe_evict_dirty), true },
  { "unsafe_origin_fill",
    offsetof (struct pc_pool_options, unsafe_origin_fill), true },
};
#define NR_DEBUG_SWITCHES (sizeof debug_switches / sizeof debug_switches[0])

int
pc_params_set_debug (struct pc_params *p, const char *name, const char *value)
{
  const struct debug_switch *d = NULL;
  unsigned long v;
  char *end;
  size_t i;

  for (i = 0; i < NR_DEBUG_SWITCHES; i++)
    if (strcmp (name, debug_switches[i].name) == 0)
      d = &debug_switches[i];
  if (d == NULL)
    return pc_error (EINVAL, "-D punchcache.%s: unknown debug switch", name);
  /* Decimal digits only: strtoul alone would take " 1", "+1" and "-1". */
  errno = 0;
  v = value[0] >= '0' && value[0] <= '9' ? strtoul (value, &end, 10) : 0;
  if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno ||
      v > INT_MAX)
    return pc_error (EINVAL, "-D punchcache.%s=%s: expected a whole number "
                     "from 0 to %d", name, value, INT_MAX);
  if (d->is_bool)
    *(bool *) ((char *) &p->debug + d->offset) = v != 0;
  else
    *(unsigned *) ((char *) &p->debug + d->offset) = (unsigned) v;
  return 0;
}

/* ---- opening the pool ---- */

/* Close a pool we are giving up on, keeping the first error's message. */
static int
abandon (struct pc_pool *pool, int r)
{
  char why[512];

  snprintf (why, sizeof why, "%s", pc_last_error ());
  pc_pool_close (pool);
  return pc_error (r, "%s", why);
}

/* The pool file is missing (ENOENT) or an empty regular file. */
static bool
pool_needs_create (const char *path, bool *existed)
{
  struct stat st;

  *existed = false;
  if (stat (path, &st) == -1)
    return errno == ENOENT;
  *existed = true;
  return S_ISREG (st.st_mode) && st.st_size == 0;
}

/* Create the pool and its volume "default", all or nothing (P5). */
static int
create_pool (const struct pc_params *p, bool existed, uint64_t vol_size)
{
  struct pc_pool *pool;
  int r;

  r = pc_pool_create (p->pool_path, (uint64_t) p->create_size,
                      (uint32_t) p->block_size);
  if (r < 0)
    return r;
  r = pc_pool_open (p->pool_path, NULL, &pool);
  if (r == 0) {
    r = pc_volume_add (pool, PC_DEFAULT_VOLUME, vol_size);
    r = r < 0 ? abandon (pool, r) : pc_pool_close (pool);
  }
  if (r < 0) {
    /* Undo, so that the next start creates the pool again. */
    int undo = existed ? truncate (p->pool_path, 0) : unlink (p->pool_path);
    (void) undo;
  }
  return r;
}

static int
add_missing_volumes (const struct pc_params *p, struct pc_pool *pool)
{
  struct pc_volume *vol;
  unsigned i;
  int r;

  for (i = 0; i < p->nvolumes; i++) {
    char value[128];

    r = pc_volume_open (pool, p->volumes[i].name, &vol);
    if (r == 0) {
      pc_volume_close (vol);
      continue;
    }
    if (r == -ENOENT)
      r = pc_volume_add (pool, p->volumes[i].name,
                         (uint64_t) p->volumes[i].size);
    if (r < 0) {
      snprintf (value, sizeof value, "%s:%" PRIi64, p->volumes[i].name,
                p->volumes[i].size);
      return key_error ("volume", value, r);
    }
  }
  return 0;
}

/* origin=URI: volume "default" (created with the origin's size if it is
 * missing) reads through it from now on; the pool records it. */
static int
set_default_origin (const struct pc_params *p, struct pc_pool *pool,
                    uint64_t origin_size)
{
  struct pc_volume *vol;
  int r;

  if (p->origin == NULL)
    return 0;
  r = pc_volume_open (pool, PC_DEFAULT_VOLUME, &vol);
  if (r == 0)
    pc_volume_close (vol);
  else if (r == -ENOENT)
    r = pc_volume_add (pool, PC_DEFAULT_VOLUME, origin_size);
  if (r == 0)
    r = pc_volume_set_origin (pool, PC_DEFAULT_VOLUME, p->origin,
                              (unsigned) p->origin_mode, origin_size);
  return r < 0 ? key_error ("origin", p->origin, r) : 0;
}

/* stats=PATH: the statistics writer (lib/stats/writer.c) writes the file
 * once now, so a path that cannot be written is an error at start-up, not
 * a file that silently never appears. */
static int
open_stats_writer (const struct pc_params *p, struct pc_pool *pool)
{
  char why[400];
  int r;

  if (p->stats_path == NULL)
    return 0;
  r = pc_stats_writer_open (pool, p->stats_path, p->debug.stats_interval_ms);
  if (r < 0) {
    snprintf (why, sizeof why, "%s", pc_last_error ());
    return pc_error (r, "stats=%s cannot be written: %s", p->stats_path, why);
  }
  return 0;
}

int
pc_params_open_pool (const struct pc_params *p, bool readonly,
                     void (*note) (void *opaque, const char *msg),
                     void *opaque, struct pc_pool **out)
{
  struct pc_pool_options opts = p->debug;
  struct pc_pool *pool;
  const char *why;
  char msg[512];
  uint64_t origin_size = 0;
  bool existed;
  int r;

  *out = NULL;
  if ((r = pc_params_complete (p)) < 0)
    return r;
  pc_overlay_set_note (note, opaque);
  /* origin=: reachable, and its size, before anything is created. */
  if (p->origin &&
      (r = pc_overlay_probe (p->origin, (unsigned) p->origin_mode,
                             &origin_size)) < 0)
    return r;
  if (pool_needs_create (p->pool_path, &existed)) {
    if (p->create_size < 0)
      return pc_error (ENOENT, "pool %s does not exist (or is empty): pass "
                       "size=SIZE to create it", p->pool_path);
    if (readonly)
      return pc_error (EROFS, "pool %s does not exist (or is empty): "
                       "cannot create it read-only", p->pool_path);
    if ((r = create_pool (p, existed, p->origin ? origin_size
                                                 : (uint64_t) p->create_size)) < 0)
      return r;
  }

  opts.readonly = readonly;
  opts.cache_bytes = (uint64_t) p->cache_size;
  opts.direct_io = p->direct_mode;
  opts.io_backend = p->io_mode;
  opts.writeback = p->writeback && p->cache_size > 0;
  opts.dirty_bytes = (uint64_t) p->dirty_size;
  opts.dirty_expire_ms = (unsigned) p->dirty_expire_s * 1000u;
  opts.origin_connections = p->origin_connections
    ? (unsigned) p->origin_connections : PC_DEFAULT_ORIGIN_CONNECTIONS;
  if ((r = pc_pool_open (p->pool_path, &opts, &pool)) < 0)
    return r;

  if (note && !pc_pool_direct_io (pool, &why)) {
    /* Not an error, but the user asked for a bounded cache: say why the
     * kernel's page cache is also in play. */
    snprintf (msg, sizeof msg, "data I/O on %s is buffered: %s",
              p->pool_path, why);
    note (opaque, msg);
  }
  if (note && p->io_mode == PC_IO_AUTO && !pc_pool_io_uring (pool, &why)) {
    snprintf (msg, sizeof msg, "io_uring unavailable, batches use system "
              "calls: %s", why);
    note (opaque, msg);
  }

  if ((r = add_missing_volumes (p, pool)) < 0)
    return abandon (pool, r);
  if ((r = set_default_origin (p, pool, origin_size)) < 0 ||
      (r = pc_overlay_check_all (pool)) < 0)
    return abandon (pool, r);
  if ((r = open_stats_writer (p, pool)) < 0)
    return abandon (pool, r);
  *out = pool;
  return 0;
}

int
pc_params_start_pool (struct pc_pool *pool)
{
  int r = pc_pool_start (pool);

  if (r == 0)
    r = pc_overlay_connect_all (pool, 0);
  return r < 0 ? r : pc_stats_writer_start ();
}

int
pc_params_close_pool (struct pc_pool *pool)
{
  if (pool == NULL)
    return 0;
  /* The final statistics after the final commit: commit now (a failure is
   * sticky, so pc_pool_close reports it), write them, then close. */
  pc_pool_flush (pool);
  pc_overlay_disconnect_all (pool);
  pc_stats_writer_close ();
  return pc_pool_close (pool);
}
