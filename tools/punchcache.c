/* punchcache: the admin tool -- create, info, check, volume management,
 * and the statistics of a running server.
 *
 * A thin front-end over include/punchcache/punchcache.h and stats.h: it
 * parses the command line (getopt_long), calls the library, and prints.
 * It holds no storage logic: validation of names, sizes, block sizes, the
 * pool format and the statistics file is the library's, and every failure
 * is shown as
 *   punchcache: COMMAND: <pc_last_error()>
 * on stderr.
 *
 * Exit status: 0 success; 1 failure (for `check`: damage found); 2 usage
 * error (for `check`: the pool could not be checked at all).
 *
 * The pool lock: info, volume list and check open the pool read-only
 * (a shared advisory lock); create and volume add/rm/resize take it
 * exclusively.  A running server holds it exclusively: the commands that
 * change the pool and check then fail with the store's "in use by another
 * process" message, while info and volume list open a live view (no lock:
 * the metadata as of the server's last commit, as lvs or thin_ls show a
 * live pool) and say so.  `stats` reads only the statistics file a server
 * writes (stats=FILE): its cache and connection figures, live.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "punchcache/format.h"
#include "punchcache/json.h"
#include "punchcache/punchcache.h"
#include "punchcache/stats.h"

#define EXIT_USAGE 2

/* ---------------------------------------------------------------------- */
/* Commands and their help. */

struct options {
  bool json;
  bool block_size_given;
  uint64_t block_size;
};

struct command {
  const char *name;        /* "create", "volume add", ... */
  const char *args;        /* synopsis after the name */
  int nargs;               /* positional arguments required */
  const char *opts;        /* long options accepted besides --help */
  const char *help;        /* paragraph for `COMMAND --help` */
  int (*run) (const struct command *cmd, char **args,
              const struct options *o);
};

static int run_create (const struct command *, char **, const struct options *);
static int run_info (const struct command *, char **, const struct options *);
static int run_stats (const struct command *, char **, const struct options *);
static int run_check (const struct command *, char **, const struct options *);
static int run_list (const struct command *, char **, const struct options *);
static int run_change (const struct command *, char **, const struct options *);

static const struct command commands[] = {
  { "create", "POOL SIZE [--block-size SIZE]", 2, "block-size",
    "Create a pool with SIZE bytes of data capacity (rounded down to whole\n"
    "blocks).  A regular file is created sparse; an existing non-empty file\n"
    "is refused.  On a block device the pool spans SIZE bytes of it (0 = the\n"
    "whole device).  No volume is created.\n"
    "  --block-size SIZE  allocation unit: a power of two from 4K to 1M\n"
    "                     (default 64K)\n", run_create },
  { "info", "POOL [--json]", 1, "json",
    "Show block size, capacity, used and free space (bytes, blocks, % used),\n"
    "metadata and journal pages, the metadata RAM a server needs, the uuid,\n"
    "and each volume's name, size and allocated bytes.  Opens the pool\n"
    "read-only; a pool a running server holds is shown as of the server's\n"
    "last commit (a live view, no lock taken).\n"
    "  --json             print one JSON object instead\n", run_info },
  { "stats", "FILE [--json]", 1, "json",
    "Show the statistics a running server writes to FILE when started with\n"
    "stats=FILE (every 2 s, and once as it exits): pool space, the block\n"
    "cache's hit rate and counters, invalidate-lock waits, each volume's\n"
    "size, allocation, connections and lock waits, and the file's age.\n"
    "Reads only FILE, so it works while the server runs.\n"
    "Exit status 1 if FILE is missing, unreadable or not a valid statistics\n"
    "file.\n"
    "  --json             check FILE and print it again in the server's\n"
    "                     format: known keys only, in the server's order\n",
    run_stats },
  { "check", "POOL", 1, "",
    "Offline consistency check: superblock slots, metadata pages, volume\n"
    "table, reverse map, allocator.  The journal is replayed in memory only;\n"
    "nothing is written.  Prints each problem.  Exit status 0 clean,\n"
    "1 damage found, 2 the pool could not be checked (missing, unreadable,\n"
    "in use).\n", run_check },
  { "volume list", "POOL", 1, "",
    "List the volumes: name, virtual size, allocated bytes.  Opens the pool\n"
    "read-only.  Also spelt `punchcache volumes POOL`.\n", run_list },
  { "volumes", "POOL", 1, "",
    "Same as `punchcache volume list POOL`.\n", run_list },
  { "volume add", "POOL NAME SIZE", 3, "",
    "Create a thin volume NAME of virtual size SIZE (a multiple of 512).\n"
    "Names: 1-47 of A-Z a-z 0-9 . _ + @ -, not starting with . or -.\n"
    "Volume sizes may add up to more than the pool (overcommit).\n",
    run_change },
  { "volume rm", "POOL NAME", 2, "",
    "Remove volume NAME and free all its blocks.\n", run_change },
  { "volume resize", "POOL NAME SIZE", 3, "",
    "Change the virtual size of volume NAME; shrinking frees the blocks past\n"
    "the new end.  A volume with an origin keeps the origin's size.\n",
    run_change },
  { "volume detach", "POOL NAME", 2, "",
    "Drop the origin of volume NAME, once no block of it is read from the\n"
    "origin any more (every block local or punched: read the whole volume\n"
    "through the server once to fill it).  Refused, with the count of\n"
    "blocks still remote, before that.  The volume then stands alone.\n",
    run_change },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char help_tail[] =
  "\n"
  "Options:\n"
  "  -h, --help       show this help (COMMAND --help: that command's help)\n"
  "  -V, --version    show the version\n"
  "\n"
  "Sizes take the suffixes K, M, G, T, P, E (powers of 1024).\n"
  "Exit status: 0 success, 1 failure (check: damage found), 2 usage error\n"
  "(check: the pool could not be checked).\n"
  "Stop the server first to change or check a pool: a pool in use by a\n"
  "server is locked (info and volume list still show it, as of the\n"
  "server's last commit; `stats` reads its stats= file).\n";

static void
print_help (void)
{
  size_t i;

  printf ("Usage: punchcache COMMAND [ARGS...]\n\n"
          "Manage punchcache pools (thin volumes served by nbdkit "
          "punchcache).\n\nCommands:\n");
  for (i = 0; i < NCOMMANDS; i++)
    printf ("  punchcache %s %s\n", commands[i].name, commands[i].args);
  fputs (help_tail, stdout);
}

static void
print_command_help (const struct command *cmd)
{
  printf ("Usage: punchcache %s %s\n\n%s", cmd->name, cmd->args, cmd->help);
}

/* ---------------------------------------------------------------------- */
/* Errors. */

static int usage_error (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static int
usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "punchcache: %s%s", cmd ? cmd : "", cmd ? ": " : "");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'punchcache %s%s--help' for more information.\n",
           cmd ? cmd : "", cmd ? " " : "");
  return EXIT_USAGE;
}

static int
failed (const struct command *cmd)
{
  fprintf (stderr, "punchcache: %s: %s\n", cmd->name, pc_last_error ());
  return EXIT_FAILURE;
}

static int
parse_size_arg (const struct command *cmd, const char *what, const char *s,
                uint64_t *out)
{
  int64_t v = pc_parse_size (s);

  if (v < 0) {
    fprintf (stderr, "punchcache: %s: %s: %s\n", cmd->name, what,
             pc_last_error ());
    return -1;
  }
  *out = (uint64_t) v;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Output helpers. */

/* "1.5 GiB": a human-readable companion to exact byte counts. */
static const char *
human (uint64_t bytes, char *buf, size_t len)
{
  static const char units[][4] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB",
                                   "EiB" };
  double v = (double) bytes;
  unsigned u = 0;

  while (v >= 1024 && u < 6) { v /= 1024; u++; }
  if (u == 0) snprintf (buf, len, "%" PRIu64 " B", bytes);
  else snprintf (buf, len, "%.1f %s", v, units[u]);
  return buf;
}

static double
percent (uint64_t part, uint64_t whole)
{
  return whole ? 100.0 * (double) part / (double) whole : 0.0;
}

static void
format_uuid (const uint8_t *u, char out[37])
{
  int i;

  for (i = 0; i < 16; i++)
    out += sprintf (out, "%02x%s", u[i],
                    (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

/* ---------------------------------------------------------------------- */
/* Opening pools. */

/* Read-only opens are views (info, volume list): a pool a server holds
 * opens as a live view of its committed metadata. */
static int
open_pool (const struct command *cmd, const char *path, bool readonly,
           struct pc_pool **pool)
{
  struct pc_pool_options opts = { .readonly = readonly,
                                  .live_view = readonly };
  int r = pc_pool_open (path, &opts, pool);

  if (r < 0)
    failed (cmd);
  return r < 0 ? EXIT_FAILURE : 0;
}

/* Close a pool; a failing close is a failure of the command. */
static int
close_pool (const struct command *cmd, struct pc_pool *pool, int status)
{
  if (pc_pool_close (pool) < 0 && status == 0)
    return failed (cmd);
  return status;
}

/* ---------------------------------------------------------------------- */
/* create */

static int
run_create (const struct command *cmd, char **args, const struct options *o)
{
  uint64_t size;

  if (parse_size_arg (cmd, "SIZE", args[1], &size) < 0)
    return EXIT_FAILURE;
  /* The store validates block sizes; these two cannot reach it (0 means
   * "default" to pc_pool_create, and it takes a uint32_t). */
  if (o->block_size_given &&
      (o->block_size == 0 || o->block_size > UINT32_MAX)) {
    fprintf (stderr, "punchcache: %s: block size %" PRIu64 " is not a power "
             "of two between 4K and 1M\n", cmd->name, o->block_size);
    return EXIT_FAILURE;
  }
  if (pc_pool_create (args[0], size, (uint32_t) o->block_size) < 0)
    return failed (cmd);
  printf ("created pool %s\n", args[0]);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* info and volume list */

struct list_ctx {
  bool json;
  uint32_t block_size;
  struct json_object *volumes;  /* json: the list being built */
  int err;                      /* json: sticky, of building it */
};

static int
print_volume (void *opaque, const struct pc_volume_info *vi)
{
  struct list_ctx *ctx = opaque;
  uint64_t alloc = vi->allocated_blocks * ctx->block_size;
  struct json_object *v;
  char h[32];

  if (ctx->json) {
    v = json_object_new_object ();
    pc_json_set_string (v, "name", vi->name, &ctx->err);
    pc_json_set_u64 (v, "size", vi->size, &ctx->err);
    pc_json_set_u64 (v, "allocated", alloc, &ctx->err);
    pc_json_set_u64 (v, "allocated_blocks", vi->allocated_blocks, &ctx->err);
    pc_json_set_u64 (v, "slot", vi->slot, &ctx->err);
    if (vi->has_origin) {
      struct json_object *o = json_object_new_object ();
      uint64_t local = vi->allocated_blocks;
      uint64_t n = local + vi->punched_blocks + vi->origin_blocks;
      pc_json_set_string (o, "uri", vi->origin_uri, &ctx->err);
      pc_json_set_string (o, "mode", vi->origin_mode ? "writethrough"
                          : "overlay", &ctx->err);
      pc_json_set_u64 (o, "local_blocks", local, &ctx->err);
      pc_json_set_u64 (o, "punched_blocks", vi->punched_blocks, &ctx->err);
      pc_json_set_u64 (o, "origin_blocks", vi->origin_blocks, &ctx->err);
      pc_json_set_fixed (o, "local_percent",
                         percent (local + vi->punched_blocks, n), 2,
                         &ctx->err);
      pc_json_set (v, "origin", o, &ctx->err);
    }
    pc_json_append (ctx->volumes, v, &ctx->err);
  }
  else {
    printf ("  %-24s %20" PRIu64 " %20" PRIu64 "  %5.1f%%  (%s)\n",
            vi->name, vi->size, alloc, percent (alloc, vi->size),
            human (vi->size, h, sizeof h));
    if (vi->has_origin) {
      uint64_t n = vi->allocated_blocks + vi->punched_blocks +
                   vi->origin_blocks;
      printf ("    origin: %s (%s)\n", vi->origin_uri,
              vi->origin_mode ? "writethrough" : "overlay");
      printf ("    local %.1f%%: %" PRIu64 " blocks with data, %" PRIu64
              " punched (zeros); %" PRIu64 " blocks still from the origin\n",
              percent (vi->allocated_blocks + vi->punched_blocks, n),
              vi->allocated_blocks, vi->punched_blocks, vi->origin_blocks);
    }
  }
  return 0;
}

static void
print_volume_header (void)
{
  printf ("  %-24s %20s %20s  %6s\n", "NAME", "SIZE", "ALLOCATED", "USED");
}

static void
print_info_human (const char *path, const struct pc_pool_info *in)
{
  uint64_t used = in->used_blocks * in->block_size;
  uint64_t free_bytes = in->free_blocks * in->block_size;
  char uuid[37], h[32];

  format_uuid (in->uuid, uuid);
  printf ("pool:          %s\n", path);
  printf ("uuid:          %s\n", uuid);
  printf ("block size:    %" PRIu32 " bytes (%s)\n", in->block_size,
          human (in->block_size, h, sizeof h));
  printf ("capacity:      %" PRIu64 " bytes (%s, %" PRIu64 " blocks)\n",
          in->capacity, human (in->capacity, h, sizeof h), in->nblocks);
  printf ("used:          %" PRIu64 " bytes (%s, %" PRIu64 " blocks, "
          "%.1f%% used)\n", used, human (used, h, sizeof h), in->used_blocks,
          percent (in->used_blocks, in->nblocks));
  printf ("free:          %" PRIu64 " bytes (%s, %" PRIu64 " blocks)\n",
          free_bytes, human (free_bytes, h, sizeof h), in->free_blocks);
  printf ("pool size:     %" PRIu64 " bytes (%s)\n", in->total_bytes,
          human (in->total_bytes, h, sizeof h));
  printf ("metadata:      %" PRIu64 " pages, journal %" PRIu64 " pages\n",
          in->meta_pages, in->journal_pages);
  printf ("metadata RAM:  %" PRIu64 " bytes (%s)\n", in->metadata_ram,
          human (in->metadata_ram, h, sizeof h));
  printf ("volumes:       %u\n", in->nvolumes);
  if (in->live)
    printf ("in use:        by a running server: figures as of its last "
            "commit\n");
}

/* The pool's figures as a JSON object, "volumes" to be added. */
static struct json_object *
info_json (const char *path, const struct pc_pool_info *in, int *err)
{
  struct json_object *o = json_object_new_object ();
  char uuid[37];

  format_uuid (in->uuid, uuid);
  pc_json_set_string (o, "pool", path, err);
  pc_json_set_string (o, "uuid", uuid, err);
  pc_json_set_u64 (o, "block_size", in->block_size, err);
  pc_json_set_u64 (o, "capacity", in->capacity, err);
  pc_json_set_u64 (o, "blocks", in->nblocks, err);
  pc_json_set_u64 (o, "used", in->used_blocks * in->block_size, err);
  pc_json_set_u64 (o, "used_blocks", in->used_blocks, err);
  pc_json_set_fixed (o, "used_percent", percent (in->used_blocks, in->nblocks),
                     2, err);
  pc_json_set_u64 (o, "free", in->free_blocks * in->block_size, err);
  pc_json_set_u64 (o, "free_blocks", in->free_blocks, err);
  pc_json_set_u64 (o, "total_bytes", in->total_bytes, err);
  pc_json_set_u64 (o, "meta_pages", in->meta_pages, err);
  pc_json_set_u64 (o, "journal_pages", in->journal_pages, err);
  pc_json_set_u64 (o, "metadata_ram", in->metadata_ram, err);
  pc_json_set_bool (o, "live", in->live, err);
  pc_json_set_u64 (o, "nvolumes", in->nvolumes, err);
  return o;
}

/* Print the pool (info) or only its volumes (list) of an open pool. */
static int
show_pool (const struct command *cmd, const char *path, struct pc_pool *pool,
           bool json, bool volumes_only)
{
  struct pc_pool_info in;
  struct list_ctx ctx = { .json = json };
  struct json_object *info = NULL;
  char *text;

  if (pc_pool_get_info (pool, &in) < 0)
    return failed (cmd);
  ctx.block_size = in.block_size;
  if (json) {
    info = info_json (path, &in, &ctx.err);
    ctx.volumes = json_object_new_array ();
  }
  else if (!volumes_only) print_info_human (path, &in);
  if (!json && in.nvolumes > 0) print_volume_header ();
  if (pc_volume_foreach (pool, print_volume, &ctx) < 0) {
    json_object_put (info);
    json_object_put (ctx.volumes);
    return failed (cmd);
  }
  if (json) {
    pc_json_set (info, "volumes", ctx.volumes, &ctx.err);
    if (pc_json_to_text (info, ctx.err, &text) < 0)
      return failed (cmd);
    fputs (text, stdout);
    free (text);
  }
  return 0;
}

static int
run_info (const struct command *cmd, char **args, const struct options *o)
{
  struct pc_pool *pool;
  int r;

  if (open_pool (cmd, args[0], true, &pool) != 0)
    return EXIT_FAILURE;
  r = show_pool (cmd, args[0], pool, o->json, false);
  return close_pool (cmd, pool, r);
}

static int
run_list (const struct command *cmd, char **args, const struct options *o)
{
  struct pc_pool *pool;
  int r;

  if (open_pool (cmd, args[0], true, &pool) != 0)
    return EXIT_FAILURE;
  r = show_pool (cmd, args[0], pool, false, true);
  return close_pool (cmd, pool, r);
}

/* ---------------------------------------------------------------------- */
/* stats */

/* A server rewrites its statistics file every 2 s while it runs: a file
 * older than this says the server has stopped (or hangs). */
#define STATS_STALE_S 10

static void field (const char *label, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* One "label:   value" line of the stats summary. */
static void
field (const char *label, const char *fmt, ...)
{
  va_list ap;

  printf ("%-23s", label);
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  putchar ('\n');
}

/* "850 ns", "12.3 us", "4.5 ms", "1.20 s". */
static const char *
human_ns (double ns, char *buf, size_t len)
{
  if (ns < 1e3) snprintf (buf, len, "%.0f ns", ns);
  else if (ns < 1e6) snprintf (buf, len, "%.1f us", ns / 1e3);
  else if (ns < 1e9) snprintf (buf, len, "%.1f ms", ns / 1e6);
  else snprintf (buf, len, "%.2f s", ns / 1e9);
  return buf;
}

/* "42 s", "12 min 5 s", "3 h 20 min", "2 d 4 h". */
static const char *
human_duration (uint64_t s, char *buf, size_t len)
{
  if (s < 60) snprintf (buf, len, "%" PRIu64 " s", s);
  else if (s < 3600)
    snprintf (buf, len, "%" PRIu64 " min %" PRIu64 " s", s / 60, s % 60);
  else if (s < 86400)
    snprintf (buf, len, "%" PRIu64 " h %" PRIu64 " min", s / 3600,
              s / 60 % 60);
  else
    snprintf (buf, len, "%" PRIu64 " d %" PRIu64 " h", s / 86400,
              s / 3600 % 24);
  return buf;
}

static void
print_stats_age (const char *file, const struct pc_stats *st)
{
  time_t t = (time_t) st->time;
  uint64_t now = (uint64_t) time (NULL);
  char when[64], age[32], shown[1024];
  struct tm tm;

  if (localtime_r (&t, &tm) == NULL ||
      strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
    snprintf (when, sizeof when, "%" PRIu64, st->time);
  field ("statistics:", "%s", pc_json_printable (file, shown, sizeof shown));
  if (now < st->time)
    field ("written:", "%s (in the future: do the clocks differ?)", when);
  else
    field ("written:", "%s (%s ago%s)", when,
           human_duration (now - st->time, age, sizeof age),
           now - st->time > STATS_STALE_S ? "; not rewritten since: has the "
           "server stopped?" : "");
  field ("server uptime:", "%s (when it wrote the file)",
         human_duration (st->uptime_ms / 1000, age, sizeof age));
}

static void
print_stats_pool (const struct pc_stats *st)
{
  const struct pc_pool_info *in = &st->pool;
  uint64_t used = in->used_blocks * in->block_size;
  uint64_t free_bytes = in->free_blocks * in->block_size;
  char h[32], shown[1024];

  field ("pool:", "%s (%s)", pc_json_printable (st->pool_path, shown,
                                                sizeof shown),
         st->readonly ? "read-only" : "read-write");
  field ("block size:", "%" PRIu32 " bytes (%s)", in->block_size,
         human (in->block_size, h, sizeof h));
  field ("capacity:", "%" PRIu64 " bytes (%s, %" PRIu64 " blocks)",
         in->capacity, human (in->capacity, h, sizeof h), in->nblocks);
  field ("used:", "%" PRIu64 " bytes (%s, %" PRIu64 " blocks, %.1f%% used)",
         used, human (used, h, sizeof h), in->used_blocks,
         percent (in->used_blocks, in->nblocks));
  field ("free:", "%" PRIu64 " bytes (%s, %" PRIu64 " blocks, %.1f%%)",
         free_bytes, human (free_bytes, h, sizeof h), in->free_blocks,
         percent (in->free_blocks, in->nblocks));
  field ("metadata RAM:", "%" PRIu64 " bytes (%s)", in->metadata_ram,
         human (in->metadata_ram, h, sizeof h));
  field ("commits:", "%" PRIu64 " (since the pool was opened)", in->commits);
  field ("direct I/O:", "%s%s%s", st->direct_io ? "yes (O_DIRECT)" : "no",
         st->direct_io_note ? ": " : "", st->direct_io_note ?
         pc_json_printable (st->direct_io_note, shown, sizeof shown) : "");
}

static void
print_stats_cache (const struct pc_cache_stats *c)
{
  uint64_t lookups = c->hits + c->misses;
  char h[32];

  field ("  budget:", "%" PRIu64 " bytes (%s)", c->budget,
         human (c->budget, h, sizeof h));
  field ("  memory:", "%" PRIu64 " bytes (%s)", c->memory,
         human (c->memory, h, sizeof h));
  field ("  pages:", "%" PRIu64 " of %" PRIu64 " (%.1f%% full), %" PRIu64
         " being filled", c->pages, c->capacity_pages,
         percent (c->pages, c->capacity_pages), c->pending);
  if (lookups) field ("  hit rate:", "%.1f%%", percent (c->hits, lookups));
  else field ("  hit rate:", "- (no lookups yet)");
  field ("  hits:", "%" PRIu64, c->hits);
  field ("  misses:", "%" PRIu64, c->misses);
  field ("  fills:", "%" PRIu64 " (pages a miss read and cached)", c->fills);
  field ("  discarded:", "%" PRIu64 " (fills a write made stale before they "
         "ended)", c->fills_discarded);
  field ("  not cached:", "%" PRIu64 " (misses not cached: no room, or a "
         "fill in flight)", c->fills_unreserved);
  field ("  evictions:", "%" PRIu64, c->evictions);
  field ("  invalidations:", "%" PRIu64 " (pages dropped by writes)",
         c->invalidations);
  field ("  punched:", "%" PRIu64 " (pages dropped by trims and zeroes)",
         c->punched);
  field ("  punch_fill_overlaps:", "%" PRIu64 " (%smust be 0 unless the "
         "debug switch unsafe_no_invalidate_lock is on)",
         c->punch_fill_overlaps, c->punch_fill_overlaps ? "WARNING: " : "");
  field ("  ghost hits:", "%" PRIu64 " (misses of recently evicted pages)",
         c->ghost_hits);
}

static void
print_stats_writeback (const struct pc_wb_stats *w, uint64_t uptime_ms)
{
  char h[32], h2[32], t[32];

  if (!w->enabled) {
    field ("write-back:", "off (writes go to the pool before they complete)");
    return;
  }
  field ("write-back:", "on");
  field ("  dirty:", "%s of at most %s", human (w->dirty_bytes, h, sizeof h),
         human (w->dirty_limit_bytes, h2, sizeof h2));
  field ("  reserved blocks:", "%" PRIu64 " (for dirty data not yet "
         "allocated)", w->reserved_blocks);
  field ("  written back:", "%s in %" PRIu64 " pages, %" PRIu64
         " blocks allocated; %s/s over the uptime",
         human (w->bytes_written, h, sizeof h), w->pages_written,
         w->blocks_allocated,
         human (uptime_ms ? w->bytes_written * 1000 / uptime_ms : 0,
                h2, sizeof h2));
  field ("  failures:", "%" PRIu64 "%s", w->failures,
         w->failures ? " (failed write-backs: the data was kept and retried)"
                     : "");
  field ("  flushes:", "%" PRIu64 ", mean %s, max %s", w->flushes,
         w->flushes ? human_ns ((double) w->flush_ns_total /
                                (double) w->flushes, t, sizeof t) : "-",
         human_ns ((double) w->flush_ns_max, h, sizeof h));
  field ("  throttled writes:", "%" PRIu64 " (waited at the dirty limit)",
         w->throttled);
}

/* A number of a pushed section (a file's bytes: anything may be there;
 * 0 if missing or not a non-negative integer). */
static uint64_t
section_u64 (struct json_object *o, const char *key)
{
  struct json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_int) || json_object_get_int64 (v) < 0)
    return 0;
  return (uint64_t) json_object_get_int64 (v);
}

static const char *
section_str (struct json_object *o, const char *key, char *buf, size_t len)
{
  struct json_object *v;

  if (!json_object_object_get_ex (o, key, &v) ||
      !json_object_is_type (v, json_type_string))
    return "?";
  return pc_json_printable (json_object_get_string (v), buf, len);
}

/* The "origin" section a server with origins pushes (lib/core/overlay.c). */
static void
print_stats_origin (const struct pc_stats *st)
{
  struct json_object *o;
  char uri[256], mode[32], name[64], h[32], t[32], t2[32];

  if (st->sections == NULL ||
      !json_object_object_get_ex (st->sections, "origin", &o) ||
      !json_object_is_type (o, json_type_object))
    return;
  json_object_object_foreach (o, vname, v) {
    uint64_t fills, ns;
    struct json_object *c;
    if (!json_object_is_type (v, json_type_object)) continue;
    fills = section_u64 (v, "fills");
    ns = section_u64 (v, "fill_ns_total");
    field ("origin:", "%s (%s) of volume %s%s",
           section_str (v, "uri", uri, sizeof uri),
           section_str (v, "mode", mode, sizeof mode),
           pc_json_printable (vname, name, sizeof name),
           json_object_object_get_ex (v, "connected", &c) &&
           !json_object_get_boolean (c) ? ": NOT CONNECTED (reconnecting)"
                                        : "");
    field ("  connections:", "%" PRIu64 " of %" PRIu64 " up, %" PRIu64
           " reconnects", section_u64 (v, "connections_up"),
           section_u64 (v, "connections"), section_u64 (v, "reconnects"));
    field ("  fetched:", "%s in %" PRIu64 " origin reads", human
           (section_u64 (v, "bytes_fetched"), h, sizeof h),
           section_u64 (v, "origin_reads"));
    field ("  fills:", "%" PRIu64 " (%" PRIu64 " blocks, %" PRIu64
           " all zeros and punched, %" PRIu64 " read ahead), mean %s, max %s",
           fills, section_u64 (v, "fill_blocks"),
           section_u64 (v, "zero_blocks"), section_u64 (v, "readahead_blocks"),
           fills ? human_ns ((double) ns / (double) fills, t, sizeof t) : "-",
           human_ns ((double) section_u64 (v, "fill_ns_max"), t2,
                     sizeof t2));
    field ("  local reads:", "%" PRIu64 " (served with no origin access)",
           section_u64 (v, "local_reads"));
    field ("  errors:", "%" PRIu64 " origin requests failed, %" PRIu64
           " fills failed (EIO to the reader)", section_u64 (v, "errors"),
           section_u64 (v, "fill_errors"));
  }
}

/* "3 acquired, 1 waited, mean wait 12.3 us" */
static void
print_lock_side (const char *label, uint64_t acquired, uint64_t waits,
                 uint64_t wait_ns)
{
  char t[32];

  field (label, "%" PRIu64 " acquired, %" PRIu64 " waited, mean wait %s",
         acquired, waits, waits ? human_ns ((double) wait_ns / (double) waits,
                                            t, sizeof t) : "-");
}

static void
print_stats_volumes (const struct pc_stats *st)
{
  char size[32], alloc[32], shown[64];

  field ("volumes:", "%u", st->pool.nvolumes);
  if (st->pool.nvolumes)
    printf ("  %-24s %10s %10s %6s %5s %8s %8s\n", "NAME", "SIZE",
            "ALLOCATED", "USED", "CONNS", "SH WAITS", "EX WAITS");
  for (unsigned i = 0; i < st->pool.nvolumes; i++) {
    const struct pc_stats_volume *v = &st->volumes[i];
    printf ("  %-24s %10s %10s %5.1f%% %5u %8" PRIu64 " %8" PRIu64 "\n",
            pc_json_printable (v->name, shown, sizeof shown),
            human (v->size, size, sizeof size),
            human (v->allocated, alloc, sizeof alloc),
            percent (v->allocated, v->size), v->connections,
            v->lock.shared_waits, v->lock.exclusive_waits);
  }
}

static void
print_stats (const char *file, const struct pc_stats *st)
{
  const struct pc_rangelock_stats *l = &st->lock;

  print_stats_age (file, st);
  print_stats_pool (st);
  if (st->cache_enabled) {
    field ("cache:", "enabled (%s, %u shards)",
           st->cache.policy == PC_CACHE_LRU ? "lru" : "s3fifo",
           st->cache.nshards);
    print_stats_cache (&st->cache);
  }
  else
    field ("cache:", "disabled (cache=0)");
  print_stats_writeback (&st->writeback, st->uptime_ms);
  field ("invalidate lock:", "(all volumes)");
  print_lock_side ("  shared:", l->shared_acquired, l->shared_waits,
                   l->shared_wait_ns);
  print_lock_side ("  exclusive:", l->exclusive_acquired, l->exclusive_waits,
                   l->exclusive_wait_ns);
  print_stats_volumes (st);
  print_stats_origin (st);
}

static int
run_stats (const struct command *cmd, char **args, const struct options *o)
{
  struct pc_stats st;
  char *json;
  int r = 0;

  if (pc_stats_read_file (args[0], &st) < 0)
    return failed (cmd);
  if (!o->json)
    print_stats (args[0], &st);
  else if (pc_stats_to_json (&st, &json) < 0)
    r = failed (cmd);
  else {
    fputs (json, stdout);
    free (json);
  }
  pc_stats_free (&st);
  return r;
}

/* ---------------------------------------------------------------------- */
/* check */

static void
report_problem (void *opaque, const char *msg)
{
  printf ("damage: %s\n", msg);
}

static int
run_check (const struct command *cmd, char **args, const struct options *o)
{
  int n = pc_pool_check (args[0], report_problem, NULL);

  if (n < 0) {
    fprintf (stderr, "punchcache: %s: cannot check %s: %s\n", cmd->name,
             args[0], pc_last_error ());
    return EXIT_USAGE;
  }
  if (n > 0) {
    printf ("%s: %d problem%s found\n", args[0], n, n == 1 ? "" : "s");
    return EXIT_FAILURE;
  }
  printf ("%s: clean\n", args[0]);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* volume add / rm / resize */

static int
change_volume (const struct command *cmd, struct pc_pool *pool, char **args,
               uint64_t size)
{
  if (strcmp (cmd->name, "volume add") == 0)
    return pc_volume_add (pool, args[1], size);
  if (strcmp (cmd->name, "volume rm") == 0)
    return pc_volume_remove (pool, args[1]);
  if (strcmp (cmd->name, "volume detach") == 0)
    return pc_volume_detach_origin (pool, args[1]);
  return pc_volume_resize (pool, args[1], size);
}

static int
run_change (const struct command *cmd, char **args, const struct options *o)
{
  struct pc_pool *pool;
  uint64_t size = 0;
  int r = 0;

  if (cmd->nargs == 3 && parse_size_arg (cmd, "SIZE", args[2], &size) < 0)
    return EXIT_FAILURE;
  if (open_pool (cmd, args[0], false, &pool) != 0)
    return EXIT_FAILURE;
  if (change_volume (cmd, pool, args, size) < 0)
    r = failed (cmd);
  return close_pool (cmd, pool, r);
}

/* ---------------------------------------------------------------------- */
/* Command-line parsing. */

static const struct command *
find_command (int argc, char **argv, int *used)
{
  char name[64];
  size_t i;

  for (i = 0; i < NCOMMANDS; i++) {
    const char *sp = strchr (commands[i].name, ' ');
    *used = sp ? 2 : 1;
    if (argc < *used) continue;
    if (sp) snprintf (name, sizeof name, "%s %s", argv[0], argv[1]);
    else snprintf (name, sizeof name, "%s", argv[0]);
    if (strcmp (name, commands[i].name) == 0)
      return &commands[i];
  }
  return NULL;
}

/* Parse the command's options and check its argument count.  Returns -1
 * to go on, or an exit status. */
static int
parse_command_line (const struct command *cmd, int argc, char **argv,
                    struct options *o)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "block-size", required_argument, NULL, 'b' },
    { NULL, 0, NULL, 0 },
  };
  int c, idx;

  optind = 0;                   /* reinitialise GNU getopt */
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":h", longopts, &idx)) != -1) {
    if (c == 'h') { print_command_help (cmd); return 0; }
    if (c == '?' || c == ':')
      return usage_error (cmd->name, c == ':' ? "option '%s' needs a value"
                          : "unknown option '%s'", argv[optind - 1]);
    if (strstr (cmd->opts, longopts[idx].name) == NULL)
      return usage_error (cmd->name, "option '--%s' does not apply to "
                          "this command", longopts[idx].name);
    if (c == 'j') o->json = true;
    else if (parse_size_arg (cmd, "--block-size", optarg, &o->block_size) < 0)
      return EXIT_FAILURE;
    else o->block_size_given = true;
  }
  if (argc - optind != cmd->nargs)
    return usage_error (cmd->name, "expected %s", cmd->args);
  return -1;
}

static int
run_command (int argc, char **argv)
{
  struct options o = { 0 };
  const struct command *cmd;
  int used, r;

  cmd = find_command (argc, argv, &used);
  if (cmd == NULL && strcmp (argv[0], "volume") == 0 && argc > 1 &&
      (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)) {
    print_help ();
    return 0;
  }
  if (cmd == NULL && strcmp (argv[0], "volume") == 0)
    return usage_error ("volume", argc > 1 ? "unknown subcommand '%s' (list, "
                        "add, rm, resize, detach)" : "missing subcommand%s "
                        "(list, add, rm, resize, detach)", argc > 1 ? argv[1] : "");
  if (cmd == NULL)
    return usage_error (NULL, "unknown command '%s' (create, info, stats, "
                        "check, volume)", argv[0]);
  /* getopt sees argv[used-1] as its "program name". */
  r = parse_command_line (cmd, argc - used + 1, argv + used - 1, &o);
  if (r >= 0)
    return r;
  return cmd->run (cmd, argv + used - 1 + optind, &o);
}

/* Global options, up to the command word. */
static int
parse_global (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  opterr = 0;
  while ((c = getopt_long (argc, argv, "+hV", longopts, NULL)) != -1) {
    if (c == 'h') { print_help (); return 0; }
    if (c == 'V') {
      printf ("punchcache %s (pool format %u)\n", PACKAGE_VERSION,
              PC_FORMAT_VERSION);
      return 0;
    }
    return usage_error (NULL, "unknown option '%s'", argv[optind - 1]);
  }
  if (optind >= argc)
    return usage_error (NULL, "missing command%s", "");
  return -1;
}

int
main (int argc, char **argv)
{
  int r = parse_global (argc, argv);

  if (r < 0)
    r = run_command (argc - optind, argv + optind);
  if (fflush (stdout) == EOF || ferror (stdout)) {
    fprintf (stderr, "punchcache: writing output: %s\n", strerror (errno));
    return EXIT_FAILURE;
  }
  return r;
}
