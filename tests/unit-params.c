/* Description: unit tests of the parameters shared by the front-ends
 * (lib/core/params.c) and of the size parser they use (lib/util/size.c).
 *
 * Defaults; every key stored as given (paths made absolute, choices as
 * enum values, volume=NAME:SIZE split at the last ':'); a command-line
 * word split the way nbdkit splits it (magic key pool=); each bad value
 * refused with -EINVAL and a message naming key and value, leaving the
 * parameters unchanged; the cross-key checks of pc_params_complete; the
 * debug switches by name; --help naming every key; every size suffix
 * nbdkit_parse_size accepts (b, s, K..E) and its refusals; and
 * pc_params_open_pool on real files: refusing a missing pool without
 * size=, creating one with its volume "default", adding volume=, notes,
 * and leaving nothing behind when it fails.
 *
 * Shown to fail by deliberate mutations, one at a time: 's' removed from
 * pc_parse_size (test_set_keys, test_parse_size); parse_volume splitting
 * at the first ':' instead of the last (test_bad_values: "a:b:1M" blamed
 * on its size); a size stored before it is checked (test_bad_values: the
 * struct changed); "stats=" dropped from the help text (test_help); the
 * undo of a half-created pool removed (test_open_pool: the file is left
 * behind); the pool not closed when a volume= fails (test_open_pool: the
 * second open gets -EBUSY).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/io.h"
#include "punchcache/params.h"

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)

struct ctx {
  char dir[64];
  char path[96];
  struct pc_params p;
};

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  if (c == NULL) return -1;
  snprintf (c->dir, sizeof c->dir, "%s/pcparams.XXXXXX",
            getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
  if (mkdtemp (c->dir) == NULL) return -1;
  snprintf (c->path, sizeof c->path, "%s/pool", c->dir);
  pc_params_init (&c->p);
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  char cmd[128];

  pc_params_free (&c->p);
  snprintf (cmd, sizeof cmd, "rm -rf %s", c->dir);
  if (system (cmd) != 0) return -1;
  free (c);
  return 0;
}

/* r must be -EINVAL (or want) and the message must start with prefix. */
static void
assert_refused (int r, int want, const char *prefix)
{
  if (r != want || strncmp (pc_last_error (), prefix, strlen (prefix)) != 0)
    fail_msg ("got %d \"%s\", wanted %d \"%s...\"", r, pc_last_error (),
              want, prefix);
}

static void
test_defaults (void **state)
{
  struct ctx *c = *state;

  assert_null (c->p.pool_path);
  assert_null (c->p.stats_path);
  assert_int_equal (c->p.create_size, -1);
  assert_int_equal (c->p.block_size, 0);
  assert_int_equal (c->p.cache_size, 256 * MIB);
  assert_int_equal (c->p.direct_mode, PC_DIRECT_AUTO);
  assert_int_equal (c->p.io_mode, PC_IO_AUTO);
  assert_int_equal (c->p.nvolumes, 0);
  assert_false (c->p.debug.unsafe_no_invalidate_lock);
  assert_int_equal (c->p.debug.race_delay_us, 0);
}

static void
test_set_keys (void **state)
{
  struct ctx *c = *state;
  struct pc_params *p = &c->p;
  char cwd[PATH_MAX], want[PATH_MAX + 16];

  assert_non_null (getcwd (cwd, sizeof cwd));
  assert_int_equal (pc_params_set (p, "pool", "rel/pool"), 0);
  snprintf (want, sizeof want, "%s/rel/pool", cwd);
  assert_string_equal (p->pool_path, want);
  assert_int_equal (pc_params_set (p, "pool", "/abs/pool"), 0);   /* last wins */
  assert_string_equal (p->pool_path, "/abs/pool");
  assert_int_equal (pc_params_set (p, "stats", "/run/s.json"), 0);
  assert_string_equal (p->stats_path, "/run/s.json");
  assert_int_equal (pc_params_set (p, "size", "1G"), 0);
  assert_int_equal (p->create_size, 1024 * MIB);
  assert_int_equal (pc_params_set (p, "block-size", "64K"), 0);
  assert_int_equal (p->block_size, 64 * KIB);
  assert_int_equal (pc_params_set (p, "cache", "0"), 0);
  assert_int_equal (p->cache_size, 0);
  assert_int_equal (pc_params_set (p, "direct", "off"), 0);
  assert_int_equal (pc_params_set (p, "io", "sync"), 0);
  assert_int_equal (p->direct_mode, PC_DIRECT_OFF);
  assert_int_equal (pc_params_set (p, "direct", "on"), 0);
  assert_int_equal (p->direct_mode, PC_DIRECT_ON);
  assert_int_equal (pc_params_set (p, "io", "sync"), 0);
  assert_int_equal (p->io_mode, PC_IO_SYNC);
  assert_int_equal (pc_params_set (p, "io", "uring"), 0);
  assert_int_equal (p->io_mode, PC_IO_URING);
  assert_int_equal (pc_params_set (p, "volume", "vm-1:2T"), 0);
  assert_int_equal (pc_params_set (p, "volume", "b:2048s"), 0);
  assert_int_equal (p->nvolumes, 2);
  assert_string_equal (p->volumes[0].name, "vm-1");
  assert_int_equal (p->volumes[0].size, 2048 * 1024 * MIB);
  assert_string_equal (p->volumes[1].name, "b");
  assert_int_equal (p->volumes[1].size, MIB);
  assert_int_equal (pc_params_complete (p), 0);

  /* One word of a command line, as nbdkit splits it. */
  assert_int_equal (pc_params_set_arg (p, "size=2T"), 0);
  assert_int_equal (p->create_size, 2048 * 1024 * MIB);
  assert_int_equal (pc_params_set_arg (p, "/pools/a=b"), 0);
  assert_string_equal (p->pool_path, "/pools/a=b");
  assert_int_equal (pc_params_set_arg (p, "pool=/x=y"), 0);
  assert_string_equal (p->pool_path, "/x=y");
  assert_int_equal (pc_params_set_arg (p, "plain"), 0);
  snprintf (want, sizeof want, "%s/plain", cwd);
  assert_string_equal (p->pool_path, want);
  assert_refused (pc_params_set_arg (p, "nosuch=1"), -EINVAL,
                  "unknown parameter 'nosuch'");
}

static void
test_bad_values (void **state)
{
  static const struct { const char *key, *value, *msg; int err; } bad[] = {
    { "size", "abc", "size=abc: could not parse size 'abc'", -EINVAL },
    { "size", "-1", "size=-1: could not parse size", -EINVAL },
    { "size", "8E", "size=8E: size '8E' is too large", -ERANGE },
    { "cache", "1.5K", "cache=1.5K: could not parse size '1.5K': unknown "
      "suffix '.5K'", -EINVAL },
    { "block-size", "", "block-size=: could not parse size", -EINVAL },
    { "direct", "maybe", "direct=maybe: expected auto, on or off", -EINVAL },
    { "io", "fast", "io=fast: expected auto, uring or sync", -EINVAL },
    { "nosuch", "1", "unknown parameter 'nosuch'", -EINVAL },
    { "volume", "novolumesize", "volume=novolumesize: expected "
      "volume=NAME:SIZE", -EINVAL },
    { "volume", ":1M", "volume=:1M: expected volume=NAME:SIZE", -EINVAL },
    { "volume", "bad/name:1M", "volume=bad/name:1M: invalid volume name",
      -EINVAL },
    /* Split at the last ':': the name is what is wrong. */
    { "volume", "a:b:1M", "volume=a:b:1M: invalid volume name", -EINVAL },
    { "volume", "a:xyz", "volume=a:xyz: could not parse size 'xyz'", -EINVAL },
    { "pool", "", "pool=: expected a path", -EINVAL },
    { "stats", "", "stats=: expected a path", -EINVAL },
  };
  struct ctx *c = *state;
  struct pc_params before;
  char name[16];
  size_t i;

  assert_int_equal (pc_params_set (&c->p, "pool", "/p"), 0);
  assert_int_equal (pc_params_set (&c->p, "size", "64M"), 0);
  memcpy (&before, &c->p, sizeof before);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_refused (pc_params_set (&c->p, bad[i].key, bad[i].value),
                    bad[i].err, bad[i].msg);
    /* Unchanged (P2): same pointers, same values. */
    assert_memory_equal (&before, &c->p, sizeof before);
  }

  /* At most PC_MAX_VOLUME_PARAMS volume= parameters. */
  for (i = 0; i < PC_MAX_VOLUME_PARAMS; i++) {
    snprintf (name, sizeof name, "v%zu:1M", i);
    assert_int_equal (pc_params_set (&c->p, "volume", name), 0);
  }
  assert_refused (pc_params_set (&c->p, "volume", "one-more:1M"), -E2BIG,
                  "volume=one-more:1M: too many volume= parameters");
  assert_int_equal (c->p.nvolumes, PC_MAX_VOLUME_PARAMS);
}

static void
test_complete (void **state)
{
  /* Each set in turn; msg NULL: pc_params_complete accepts the result. */
  static const struct { const char *key, *value, *msg; } steps[] = {
    { "block-size", "3K",
      "block-size=3072 must be a power of two from 4K to 1M" },
    { "block-size", "2M", "block-size=2097152 must" },
    { "block-size", "2K", "block-size=2048 must" },
    { "block-size", "4K", NULL },
    { "block-size", "1M", NULL },
    { "cache", "1", "cache=1 is too small" },
    { "cache", "8191", "cache=8191 is too small" },
    { "cache", "8K", NULL },
    { "cache", "0", NULL },
  };
  struct ctx *c = *state;
  struct pc_params *p = &c->p;
  size_t i;

  assert_refused (pc_params_complete (p), -EINVAL,
                  "the pool=PATH parameter is required");
  assert_int_equal (pc_params_set (p, "pool", "/p"), 0);
  assert_int_equal (pc_params_complete (p), 0);
  for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    assert_int_equal (pc_params_set (p, steps[i].key, steps[i].value), 0);
    if (steps[i].msg)
      assert_refused (pc_params_complete (p), -EINVAL, steps[i].msg);
    else if (pc_params_complete (p) != 0)
      fail_msg ("%s=%s refused: %s", steps[i].key, steps[i].value,
                pc_last_error ());
  }
}

static void
test_set_debug (void **state)
{
  static const char *const bad[] = { "-1", "abc", " 1", "+1", "1x", "",
                                     "2147483648", "99999999999999999999" };
  struct ctx *c = *state;
  struct pc_pool_options *d = &c->p.debug;
  size_t i;

  assert_int_equal (pc_params_set_debug (&c->p, "unsafe_no_invalidate_lock",
                                         "1"), 0);
  assert_true (d->unsafe_no_invalidate_lock);
  assert_int_equal (pc_params_set_debug (&c->p, "unsafe_no_invalidate_lock",
                                         "0"), 0);
  assert_false (d->unsafe_no_invalidate_lock);
  assert_int_equal (pc_params_set_debug (&c->p, "race_delay_us", "10"), 0);
  assert_int_equal (pc_params_set_debug (&c->p, "fill_delay_us", "20"), 0);
  assert_int_equal (pc_params_set_debug (&c->p, "fail_write_every", "30"), 0);
  assert_int_equal (pc_params_set_debug (&c->p, "commit_interval_ms", "40"),
                    0);
  assert_int_equal (pc_params_set_debug (&c->p, "stats_interval_ms",
                                         "2147483647"), 0);
  assert_int_equal (d->race_delay_us, 10);
  assert_int_equal (d->fill_delay_us, 20);
  assert_int_equal (d->fail_write_every, 30);
  assert_int_equal (d->commit_interval_ms, 40);
  assert_int_equal (d->stats_interval_ms, 2147483647);
  /* The non-debug fields are not the switches' business. */
  assert_false (d->readonly);
  assert_int_equal (d->cache_bytes, 0);

  assert_refused (pc_params_set_debug (&c->p, "nosuch", "1"), -EINVAL,
                  "-D punchcache.nosuch: unknown debug switch");
  assert_refused (pc_params_set_debug (&c->p, "punchcache.race_delay_us",
                                       "1"), -EINVAL,
                  "-D punchcache.punchcache.race_delay_us: unknown");
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[64];

    snprintf (want, sizeof want, "-D punchcache.race_delay_us=%s: expected "
              "a whole number", bad[i]);
    assert_refused (pc_params_set_debug (&c->p, "race_delay_us", bad[i]),
                    -EINVAL, want);
    assert_int_equal (d->race_delay_us, 10);
  }
}

static void
test_help (void **state)
{
  static const char *const keys[] = { "pool", "size", "block-size", "volume",
                                      "cache", "direct", "io", "stats" };
  size_t i, len = strlen (pc_params_help);
  char want[32];

  (void) state;
  assert_true (len > 0);
  assert_true (pc_params_help[len - 1] != '\n');
  for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    /* At the start of a line, as "KEY=". */
    snprintf (want, sizeof want, "%s%s=", i ? "\n" : "", keys[i]);
    if (i == 0 ? strncmp (pc_params_help, want, strlen (want)) != 0
               : strstr (pc_params_help, want) == NULL)
      fail_msg ("help text does not document %s=", keys[i]);
  }
}

static void
test_parse_size (void **state)
{
  /* Every form nbdkit_parse_size (nbdkit 1.32) accepts that a user would
   * write, checked against nbdkit itself when this test was written. */
  static const struct { const char *s; int64_t v; } good[] = {
    { "0", 0 }, { "512", 512 }, { "010", 10 }, { "1b", 1 }, { "1B", 1 },
    { "1s", 512 }, { "8S", 4096 }, { "64K", 64 * KIB }, { "64k", 64 * KIB },
    { "1M", MIB }, { "1m", MIB }, { "1G", 1024 * MIB }, { "2T", 2 * MIB * MIB },
    { "1P", 1024 * MIB * MIB }, { "1E", INT64_C(1) << 60 },
    { "7E", INT64_C(7) << 60 },
    /* Extras nbdkit 1.32 refuses, kept for the admin tool. */
    { "1KiB", KIB }, { "1MB", MIB },
  };
  static const struct { const char *s; int err; } bad[] = {
    { "", -EINVAL }, { "K", -EINVAL }, { "-1", -EINVAL }, { "1.5K", -EINVAL },
    { "0x10", -EINVAL }, { "1sB", -EINVAL }, { "1siB", -EINVAL },
    { "1bB", -EINVAL }, { "1Ki", -EINVAL }, { "1 K", -EINVAL },
    { "1K ", -EINVAL }, { "1X", -EINVAL }, { "8E", -ERANGE },
    { "9223372036854775808", -ERANGE }, { "99999999999999999999", -ERANGE },
    { "36028797018963968s", -ERANGE },
  };
  size_t i;

  (void) state;
  for (i = 0; i < sizeof good / sizeof good[0]; i++)
    if (pc_parse_size (good[i].s) != good[i].v)
      fail_msg ("pc_parse_size (\"%s\") = %" PRIi64 ", wanted %" PRIi64
                " (%s)", good[i].s, pc_parse_size (good[i].s), good[i].v,
                pc_last_error ());
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (pc_parse_size (bad[i].s) != bad[i].err)
      fail_msg ("pc_parse_size (\"%s\") = %" PRIi64 ", wanted %d",
                bad[i].s, pc_parse_size (bad[i].s), bad[i].err);
}

struct notes { unsigned n; char last[512]; };

static void
note (void *opaque, const char *msg)
{
  struct notes *nt = opaque;

  nt->n++;
  snprintf (nt->last, sizeof nt->last, "%s", msg);
}

static int
count_volume (void *opaque, const struct pc_volume_info *vi)
{
  (*(unsigned *) opaque)++;
  return 0;
}

static void
test_open_pool (void **state)
{
  struct ctx *c = *state;
  struct pc_params *p = &c->p;
  struct pc_pool *pool = (struct pc_pool *) &pool;   /* must become NULL */
  struct pc_volume *vol;
  struct notes nt = { 0 };
  struct stat st;
  unsigned n = 0;
  char want[256];

  assert_int_equal (pc_params_set (p, "pool", c->path), 0);
  assert_int_equal (pc_params_set (p, "cache", "1M"), 0);
  assert_int_equal (pc_params_set (p, "direct", "off"), 0);
  assert_int_equal (pc_params_set (p, "io", "sync"), 0);

  /* Missing, no size=. */
  snprintf (want, sizeof want, "pool %s does not exist (or is empty): pass "
            "size=SIZE to create it", c->path);
  assert_refused (pc_params_open_pool (p, false, note, &nt, &pool), -ENOENT,
                  want);
  assert_null (pool);
  /* Missing, read-only: not created. */
  assert_int_equal (pc_params_set (p, "size", "4M"), 0);
  assert_int_equal (pc_params_open_pool (p, true, note, &nt, &pool), -EROFS);
  assert_int_equal (stat (c->path, &st), -1);

  /* A size the pool takes but the volume "default" does not: nothing is
   * left behind (P5), so the next start creates it again. */
  assert_int_equal (pc_params_set (p, "size", "4194000"), 0);
  assert_refused (pc_params_open_pool (p, false, note, &nt, &pool), -EINVAL,
                  "volume 'default': size 4194000 must be");
  assert_null (pool);
  assert_int_equal (stat (c->path, &st), -1);

  /* Created, with "default", plus a volume=. */
  assert_int_equal (pc_params_set (p, "size", "4M"), 0);
  assert_int_equal (pc_params_set (p, "volume", "extra:2048s"), 0);
  assert_int_equal (pc_params_open_pool (p, false, note, &nt, &pool), 0);
  assert_non_null (pool);
  assert_int_equal (nt.n, 1);          /* direct=off is a note, io=sync not */
  snprintf (want, sizeof want, "data I/O on %s is buffered: ", c->path);
  assert_non_null (strstr (nt.last, want));
  assert_int_equal (pc_volume_foreach (pool, count_volume, &n), 0);
  assert_int_equal (n, 2);
  assert_int_equal (pc_volume_open (pool, PC_DEFAULT_VOLUME, &vol), 0);
  assert_int_equal (pc_volume_size (vol), 4 * MIB);
  pc_volume_close (vol);
  assert_int_equal (pc_volume_open (pool, "extra", &vol), 0);
  assert_int_equal (pc_volume_size (vol), MIB);
  pc_volume_close (vol);
  assert_int_equal (pc_pool_close (pool), 0);

  /* Again: the pool and the volume exist; size= is ignored. */
  assert_int_equal (pc_params_set (p, "size", "1G"), 0);
  assert_int_equal (pc_params_open_pool (p, false, NULL, NULL, &pool), 0);
  assert_int_equal (pc_pool_close (pool), 0);

  /* A volume= the pool refuses: the error names the parameter and the
   * pool is closed (a second open succeeds: its lock was released). */
  assert_int_equal (pc_params_set (p, "volume", "odd:1000"), 0);
  assert_refused (pc_params_open_pool (p, false, NULL, NULL, &pool), -EINVAL,
                  "volume=odd:1000: volume 'odd': size 1000 must be");
  assert_null (pool);
  assert_int_equal (pc_pool_open (c->path, NULL, &pool), 0);
  assert_int_equal (pc_pool_close (pool), 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_defaults, setup, teardown),
    cmocka_unit_test_setup_teardown (test_set_keys, setup, teardown),
    cmocka_unit_test_setup_teardown (test_bad_values, setup, teardown),
    cmocka_unit_test_setup_teardown (test_complete, setup, teardown),
    cmocka_unit_test_setup_teardown (test_set_debug, setup, teardown),
    cmocka_unit_test (test_help),
    cmocka_unit_test (test_parse_size),
    cmocka_unit_test_setup_teardown (test_open_pool, setup, teardown),
  };

  return cmocka_run_group_tests_name ("params", tests, NULL, NULL);
}
