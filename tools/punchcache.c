/* punchcache: the admin tool -- create, info, check, volume management.
 *
 * A thin front-end over include/punchcache/punchcache.h: parses the
 * command line, calls the store, prints.  Exit status: 0 success, 1
 * failure (or damage found by check), 2 usage error.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/punchcache.h"

#define EXIT_USAGE 2

static const char usage_text[] =
  "Usage: punchcache COMMAND [ARGS...]\n"
  "\n"
  "Manage punchcache pools (thin volumes served by nbdkit punchcache).\n"
  "Stop the server before using a pool: each command takes the pool's lock.\n"
  "\n"
  "Commands:\n"
  "  create POOL SIZE [--block-size SIZE]  create a pool with SIZE bytes of\n"
  "                                        data capacity (sparse file; or a\n"
  "                                        block device, SIZE 0 = all of it)\n"
  "  info POOL [--json]                    capacity, used, free, volumes\n"
  "  check POOL                            offline consistency check: exit 0\n"
  "                                        clean, 1 damaged, 2 cannot check\n"
  "  volume list POOL                      list volumes (also: volumes POOL)\n"
  "  volume add POOL NAME SIZE             create a thin volume\n"
  "  volume rm POOL NAME                   remove a volume and free its blocks\n"
  "  volume resize POOL NAME SIZE          grow, or shrink (frees blocks past\n"
  "                                        the new end)\n"
  "\n"
  "Options:\n"
  "  -h, --help       show this help\n"
  "  -V, --version    show the version\n"
  "\n"
  "Sizes take suffixes K, M, G, T, P, E (powers of 1024).\n";

static const char *command = "punchcache";

static int
usage_error (const char *msg)
{
  fprintf (stderr, "punchcache: %s%s%s\nTry 'punchcache --help'.\n",
           command, *command ? ": " : "", msg);
  return EXIT_USAGE;
}

static int
failed (void)
{
  fprintf (stderr, "punchcache: %s: %s\n", command, pc_last_error ());
  return EXIT_FAILURE;
}

static int
parse_size_arg (const char *s, uint64_t *out)
{
  int64_t v = pc_parse_size (s);

  if (v < 0) return failed ();
  *out = (uint64_t) v;
  return 0;
}

static int
open_pool (const char *path, bool readonly, struct pc_pool **pool)
{
  struct pc_pool_options opts = { .readonly = readonly };

  return pc_pool_open (path, &opts, pool) < 0 ? -1 : 0;
}

/* ---- create ---- */

static int
cmd_create (int argc, char **argv)
{
  static const struct option opts[] = {
    { "block-size", required_argument, NULL, 'b' },
    { NULL, 0, NULL, 0 },
  };
  uint64_t size, bs = 0;
  int c;

  optind = 1;
  while ((c = getopt_long (argc, argv, "b:", opts, NULL)) != -1) {
    if (c != 'b') return usage_error ("unknown option");
    if (parse_size_arg (optarg, &bs)) return EXIT_FAILURE;
  }
  if (argc - optind != 2)
    return usage_error ("usage: punchcache create POOL SIZE [--block-size SIZE]");
  if (parse_size_arg (argv[optind + 1], &size)) return EXIT_FAILURE;
  if (bs > UINT32_MAX) bs = 3;              /* rejected by the store */
  if (pc_pool_create (argv[optind], size, (uint32_t) bs) < 0)
    return failed ();
  printf ("created pool %s\n", argv[optind]);
  return 0;
}

/* ---- info ---- */

static void
json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char) *s;
    if (c == '"' || c == '\\') printf ("\\%c", c);
    else if (c < 0x20) printf ("\\u%04x", c);
    else putchar (c);
  }
  putchar ('"');
}

struct list_ctx { bool json; bool first; uint32_t bs; };

static int
print_volume (void *opaque, const struct pc_volume_info *vi)
{
  struct list_ctx *ctx = opaque;
  uint64_t alloc = vi->allocated_blocks * ctx->bs;

  if (ctx->json) {
    printf ("%s\n    {\"name\": ", ctx->first ? "" : ",");
    json_string (vi->name);
    printf (", \"size\": %" PRIu64 ", \"allocated\": %" PRIu64
            ", \"allocated_blocks\": %" PRIu64 "}",
            vi->size, alloc, vi->allocated_blocks);
  }
  else
    printf ("  %-24s %16" PRIu64 " bytes  %16" PRIu64 " allocated (%.1f%%)\n",
            vi->name, vi->size, alloc, vi->size ? 100.0 * alloc / vi->size : 0);
  ctx->first = false;
  return 0;
}

static void
format_uuid (const uint8_t *u, char *out)
{
  int i;

  for (i = 0; i < 16; i++)
    out += sprintf (out, "%02x%s", u[i], (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

static void
print_info_human (const char *path, struct pc_pool *pool,
                  const struct pc_pool_info *in)
{
  struct list_ctx ctx = { false, true, in->block_size };
  uint64_t used = in->used_blocks * in->block_size;
  char uuid[40];

  format_uuid (in->uuid, uuid);
  printf ("pool:          %s\n", path);
  printf ("uuid:          %s\n", uuid);
  printf ("block size:    %" PRIu32 "\n", in->block_size);
  printf ("capacity:      %" PRIu64 " bytes (%" PRIu64 " blocks)\n",
          in->capacity, in->nblocks);
  printf ("used:          %" PRIu64 " bytes (%" PRIu64 " blocks, %.1f%%)\n",
          used, in->used_blocks,
          in->nblocks ? 100.0 * in->used_blocks / in->nblocks : 0);
  printf ("free:          %" PRIu64 " bytes (%" PRIu64 " blocks)\n",
          in->free_blocks * in->block_size, in->free_blocks);
  printf ("pool size:     %" PRIu64 " bytes (metadata %" PRIu64
          " pages, journal %" PRIu64 " pages)\n",
          in->total_bytes, in->meta_pages, in->journal_pages);
  printf ("metadata RAM:  %" PRIu64 " bytes\n", in->metadata_ram);
  printf ("volumes:       %u\n", in->nvolumes);
  pc_volume_foreach (pool, print_volume, &ctx);
}

static void
print_info_json (const char *path, struct pc_pool *pool,
                 const struct pc_pool_info *in)
{
  struct list_ctx ctx = { true, true, in->block_size };
  char uuid[40];

  format_uuid (in->uuid, uuid);
  printf ("{\n  \"pool\": ");
  json_string (path);
  printf (",\n  \"uuid\": \"%s\",\n  \"block_size\": %" PRIu32
          ",\n  \"capacity\": %" PRIu64 ",\n  \"blocks\": %" PRIu64
          ",\n  \"used\": %" PRIu64 ",\n  \"used_blocks\": %" PRIu64
          ",\n  \"free\": %" PRIu64 ",\n  \"free_blocks\": %" PRIu64
          ",\n  \"total_bytes\": %" PRIu64 ",\n  \"meta_pages\": %" PRIu64
          ",\n  \"journal_pages\": %" PRIu64 ",\n  \"metadata_ram\": %" PRIu64
          ",\n  \"volumes\": [",
          uuid, in->block_size, in->capacity, in->nblocks,
          in->used_blocks * in->block_size, in->used_blocks,
          in->free_blocks * in->block_size, in->free_blocks,
          in->total_bytes, in->meta_pages, in->journal_pages,
          in->metadata_ram);
  pc_volume_foreach (pool, print_volume, &ctx);
  printf ("\n  ]\n}\n");
}

static int
cmd_info (int argc, char **argv)
{
  static const struct option opts[] = {
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 },
  };
  struct pc_pool_info in;
  struct pc_pool *pool;
  bool json = false;
  int c;

  optind = 1;
  while ((c = getopt_long (argc, argv, "j", opts, NULL)) != -1) {
    if (c != 'j') return usage_error ("unknown option");
    json = true;
  }
  if (argc - optind != 1)
    return usage_error ("usage: punchcache info POOL [--json]");
  if (open_pool (argv[optind], true, &pool) < 0) return failed ();
  pc_pool_get_info (pool, &in);
  if (json) print_info_json (argv[optind], pool, &in);
  else print_info_human (argv[optind], pool, &in);
  pc_pool_close (pool);
  return 0;
}

/* ---- check ---- */

static void
report_problem (void *opaque, const char *msg)
{
  printf ("damage: %s\n", msg);
}

static int
cmd_check (int argc, char **argv)
{
  int n;

  if (argc != 2)
    return usage_error ("usage: punchcache check POOL");
  n = pc_pool_check (argv[1], report_problem, NULL);
  if (n < 0) {
    fprintf (stderr, "punchcache: check: %s\n", pc_last_error ());
    return EXIT_USAGE;
  }
  if (n > 0) {
    printf ("%s: %d problem%s found\n", argv[1], n, n == 1 ? "" : "s");
    return EXIT_FAILURE;
  }
  printf ("%s: clean\n", argv[1]);
  return 0;
}

/* ---- volumes ---- */

static int
volume_list (const char *path)
{
  struct list_ctx ctx = { false, true, 0 };
  struct pc_pool_info in;
  struct pc_pool *pool;

  if (open_pool (path, true, &pool) < 0) return failed ();
  pc_pool_get_info (pool, &in);
  ctx.bs = in.block_size;
  pc_volume_foreach (pool, print_volume, &ctx);
  pc_pool_close (pool);
  return 0;
}

static int
volume_change (const char *sub, int argc, char **argv)
{
  struct pc_pool *pool;
  uint64_t size = 0;
  int r;

  if (strcmp (sub, "rm") == 0 ? argc != 2 : argc != 3)
    return usage_error (strcmp (sub, "rm") == 0
                        ? "usage: punchcache volume rm POOL NAME"
                        : "usage: punchcache volume add|resize POOL NAME SIZE");
  if (argc == 3 && parse_size_arg (argv[2], &size)) return EXIT_FAILURE;
  if (open_pool (argv[0], false, &pool) < 0) return failed ();
  if (strcmp (sub, "add") == 0) r = pc_volume_add (pool, argv[1], size);
  else if (strcmp (sub, "rm") == 0) r = pc_volume_remove (pool, argv[1]);
  else r = pc_volume_resize (pool, argv[1], size);
  if (r < 0) {
    failed ();
    pc_pool_close (pool);
    return EXIT_FAILURE;
  }
  if (pc_pool_close (pool) < 0) return failed ();
  return 0;
}

static int
cmd_volume (int argc, char **argv)
{
  const char *sub = argc > 1 ? argv[1] : "";

  if (strcmp (sub, "list") == 0) {
    if (argc != 3) return usage_error ("usage: punchcache volume list POOL");
    return volume_list (argv[2]);
  }
  if (strcmp (sub, "add") == 0 || strcmp (sub, "rm") == 0 ||
      strcmp (sub, "resize") == 0)
    return volume_change (sub, argc - 2, argv + 2);
  return usage_error ("expected list, add, rm or resize");
}

int
main (int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : "";

  if (argc < 2)
    return usage_error ("missing command");
  if (strcmp (cmd, "-h") == 0 || strcmp (cmd, "--help") == 0 ||
      strcmp (cmd, "help") == 0) {
    fputs (usage_text, stdout);
    return 0;
  }
  if (strcmp (cmd, "-V") == 0 || strcmp (cmd, "--version") == 0) {
    printf ("punchcache %s (pool format %u)\n", PACKAGE_VERSION,
            PC_FORMAT_VERSION);
    return 0;
  }
  if (argc > 2 && (strcmp (argv[2], "--help") == 0 ||
                   strcmp (argv[2], "-h") == 0)) {
    fputs (usage_text, stdout);
    return 0;
  }
  command = cmd;
  if (strcmp (cmd, "create") == 0) return cmd_create (argc - 1, argv + 1);
  if (strcmp (cmd, "info") == 0) return cmd_info (argc - 1, argv + 1);
  if (strcmp (cmd, "check") == 0) return cmd_check (argc - 1, argv + 1);
  if (strcmp (cmd, "volume") == 0) return cmd_volume (argc - 1, argv + 1);
  if (strcmp (cmd, "volumes") == 0 && argc == 3) return volume_list (argv[2]);
  command = "";
  return usage_error ("unknown command (create, info, check, volume)");
}
