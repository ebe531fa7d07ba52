/* Description: unit tests of the statistics file (lib/stats/stats.c takes the
 * snapshot, lib/stats/statsfile.c writes and reads the JSON): on a real pool
 * with a cache and two volumes, after writes, cached reads and a trim, the
 * snapshot agrees with pc_pool_get_info and shows the cache and lock
 * activity; JSON -> struct gives the snapshot back field by field, and
 * struct -> JSON the same text (the round trip); pc_pool_stats_json is
 * that text.  Then the reader's refusals, each with its exact message: a
 * file that is not a statistics file, another version, a missing or
 * mistyped field, space figures that do not add up, a bad block size, a
 * volume count that differs from the list, an invalid volume name, an
 * unknown cache policy or page size, counts out of range, broken JSON;
 * and that unknown keys are accepted.  Then what json-c accepts and the
 * reader must refuse itself (test_on_json_c): an integer beyond 64 bits
 * (json-c clamps it), "1.", 1e2 and Infinity as counters, NaN as the hit
 * rate, \u0000 in a name or the policy, overlong UTF-8 and a surrogate in
 * the pool path; and the version rule: a version-1 field missing is
 * refused, a later one (prepared_runs) may be missing but is checked when
 * there.  Then the writer behind stats=PATH (test_writer): pushed
 * sections, their replacement and refusals, the final write.
 *
 * Shown to fail by deliberate mutations of lib/stats/statsfile.c, one at a
 * time: "hits" not read (test_round_trip: the counter reads back as 0);
 * "readonly" not read (test_refusals: 0 there, and no "readonly" at all,
 * accepted); the refusal of 2^64-1 removed (test_on_json_c:
 * 18446744073709551616 accepted); the UTF-8 check of strings removed
 * (test_on_json_c: the overlong path accepted).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/json.h"
#include "punchcache/stats.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

struct ctx {
  char dir[64];
  char path[96];
  struct pc_pool *pool;
  struct pc_volume *open_vol;   /* a second handle on a, kept open */
  char *json;                   /* pc_stats_to_json of the live snapshot */
  struct pc_stats snap;
};

/* A 4 MiB pool of 64K blocks with a 1 MiB cache and volumes a (1 MiB,
 * 192K written, read twice, 64K trimmed) and b (8 MiB, untouched). */
static void
make_activity (struct ctx *c)
{
  struct pc_pool_options opts = { .cache_bytes = MIB };
  static char buf[192 * KIB];
  struct pc_volume *a, *a2;

  assert_int_equal (pc_pool_create (c->path, 4 * MIB, 64 * KIB), 0);
  assert_int_equal (pc_pool_open (c->path, &opts, &c->pool), 0);
  assert_int_equal (pc_volume_add (c->pool, "a", MIB), 0);
  assert_int_equal (pc_volume_add (c->pool, "b", 8 * MIB), 0);
  assert_int_equal (pc_volume_open (c->pool, "a", &a), 0);
  assert_int_equal (pc_volume_open (c->pool, "a", &a2), 0);
  memset (buf, 'x', sizeof buf);
  assert_int_equal (pc_write (a, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (pc_read (a, buf, sizeof buf, 0), 0);     /* misses */
  assert_int_equal (pc_read (a2, buf, sizeof buf, 0), 0);    /* hits */
  assert_int_equal (pc_trim (a, 64 * KIB, 0, 0), 0);
  pc_volume_close (a);        /* a2 stays open: a has one connection */
  c->open_vol = a2;
}

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  assert_non_null (c);
  strcpy (c->dir, "/tmp/unit-stats.XXXXXX");
  assert_non_null (mkdtemp (c->dir));
  snprintf (c->path, sizeof c->path, "%s/pool", c->dir);
  make_activity (c);
  assert_int_equal (pc_pool_get_stats (c->pool, &c->snap), 0);
  assert_int_equal (pc_stats_to_json (&c->snap, &c->json), 0);
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  char cmd[128];

  pc_stats_free (&c->snap);
  free (c->json);
  pc_stats_writer_close ();    /* after a failed test_writer: no-op else */
  pc_volume_close (c->open_vol);
  pc_pool_close (c->pool);
  snprintf (cmd, sizeof cmd, "rm -rf %s", c->dir);
  if (system (cmd) != 0) return -1;
  free (c);
  return 0;
}

/* ---- the snapshot ---- */

static void
test_snapshot (void **state)
{
  struct ctx *c = *state;
  const struct pc_stats *st = &c->snap;
  struct pc_pool_info in;

  assert_int_equal (pc_pool_get_info (c->pool, &in), 0);
  assert_string_equal (st->pool_path, c->path);
  assert_int_equal (st->pool.capacity, in.capacity);
  assert_int_equal (st->pool.block_size, 64 * KIB);
  assert_int_equal (st->pool.used_blocks, in.used_blocks);
  assert_true (st->pool.used_blocks >= 2);            /* 3 written, 1 trimmed */
  assert_int_equal (st->pool.used_blocks + st->pool.free_blocks,
                    st->pool.nblocks);
  assert_int_equal (st->pool.nvolumes, 2);
  assert_string_equal (st->volumes[0].name, "a");
  assert_int_equal (st->volumes[0].size, MIB);
  assert_int_equal (st->volumes[0].allocated, 128 * KIB);
  assert_int_equal (st->volumes[0].connections, 1);
  assert_string_equal (st->volumes[1].name, "b");
  assert_int_equal (st->volumes[1].allocated, 0);
  assert_true (st->cache_enabled);
  assert_int_equal (st->cache.budget, MIB);
  assert_true (st->cache.misses > 0 && st->cache.hits > 0);
  assert_true (st->cache.fills > 0 && st->cache.punched > 0);
  assert_int_equal (st->cache.punch_fill_overlaps, 0);
  assert_true (st->lock.shared_acquired >= 2);
  assert_true (st->lock.exclusive_acquired >= 1);
  assert_int_equal (st->lock.shared_acquired,
                    st->volumes[0].lock.shared_acquired
                    + st->volumes[1].lock.shared_acquired);
}

/* ---- the round trip ---- */

static void
assert_same_stats (const struct pc_stats *a, const struct pc_stats *b)
{
  assert_int_equal (a->time, b->time);
  assert_int_equal (a->uptime_ms, b->uptime_ms);
  assert_string_equal (a->pool_path, b->pool_path);
  assert_int_equal (a->pool.block_size, b->pool.block_size);
  assert_int_equal (a->pool.nblocks, b->pool.nblocks);
  assert_int_equal (a->pool.capacity, b->pool.capacity);
  assert_int_equal (a->pool.used_blocks, b->pool.used_blocks);
  assert_int_equal (a->pool.free_blocks, b->pool.free_blocks);
  assert_int_equal (a->pool.commits, b->pool.commits);
  assert_int_equal (a->pool.metadata_ram, b->pool.metadata_ram);
  assert_int_equal (a->pool.nvolumes, b->pool.nvolumes);
  assert_int_equal (a->readonly, b->readonly);
  assert_int_equal (a->direct_io, b->direct_io);
  assert_true ((a->direct_io_note == NULL) == (b->direct_io_note == NULL));
  if (a->direct_io_note)
    assert_string_equal (a->direct_io_note, b->direct_io_note);
  assert_int_equal (a->cache_enabled, b->cache_enabled);
  assert_memory_equal (&a->cache, &b->cache, sizeof a->cache);
  assert_memory_equal (&a->lock, &b->lock, sizeof a->lock);
  assert_memory_equal (a->volumes, b->volumes,
                       a->pool.nvolumes * sizeof *a->volumes);
}

static void
test_round_trip (void **state)
{
  struct ctx *c = *state;
  struct pc_stats back;
  char *again, *live;

  assert_int_equal (pc_stats_parse (c->json, strlen (c->json), "s.json",
                                    &back), 0);
  assert_same_stats (&c->snap, &back);
  assert_int_equal (pc_stats_to_json (&back, &again), 0);
  assert_string_equal (again, c->json);
  free (again);
  pc_stats_free (&back);

  /* pc_pool_stats_json is the same text, bar time and uptime. */
  assert_int_equal (pc_pool_stats_json (c->pool, &live), 0);
  assert_int_equal (pc_stats_parse (live, strlen (live), "live", &back), 0);
  back.time = c->snap.time;
  back.uptime_ms = c->snap.uptime_ms;
  assert_int_equal (pc_stats_to_json (&back, &again), 0);
  assert_string_equal (again, c->json);
  free (again);
  free (live);
  pc_stats_free (&back);

  /* A disabled cache and a note round-trip too. */
  c->snap.cache_enabled = false;
  memset (&c->snap.cache, 0, sizeof c->snap.cache);
  c->snap.direct_io = false;
  c->snap.direct_io_note = strdup ("O_DIRECT \"refused\"\n by tmpfs");
  assert_int_equal (pc_stats_to_json (&c->snap, &live), 0);
  assert_int_equal (pc_stats_parse (live, strlen (live), "s", &back), 0);
  assert_same_stats (&c->snap, &back);
  free (live);
  pc_stats_free (&back);
}

/* ---- refusals ---- */

/* c->json with the one occurrence of from replaced by to; must fail with
 * exactly msg (or succeed, for msg NULL). */
static void
edited (const struct ctx *c, const char *from, const char *to,
        const char *msg)
{
  const char *at = strstr (c->json, from);
  size_t lf = strlen (from), lt = strlen (to), n = strlen (c->json);
  struct pc_stats st;
  char *text;
  int r;

  if (at == NULL || strstr (at + 1, from) != NULL)
    fail_msg ("'%s' is not in the JSON exactly once", from);
  text = malloc (n - lf + lt);
  assert_non_null (text);
  memcpy (text, c->json, (size_t) (at - c->json));
  memcpy (text + (at - c->json), to, lt);
  memcpy (text + (at - c->json) + lt, at + lf, n - (size_t) (at - c->json) - lf);
  r = pc_stats_parse (text, n - lf + lt, "s.json", &st);
  free (text);
  if (msg == NULL) {
    if (r != 0) fail_msg ("'%s' -> '%s' refused: %s", from, to,
                          pc_last_error ());
    pc_stats_free (&st);
    return;
  }
  if (r >= 0) fail_msg ("'%s' -> '%s' accepted", from, to);
  assert_string_equal (pc_last_error (), msg);
  assert_null (st.volumes);                    /* left empty */
  assert_null (st.pool_path);
}

static void
test_refusals (void **state)
{
  struct ctx *c = *state;
  char used[64], bad_used[64], msg[256];
  struct pc_stats st;

  edited (c, "\"version\": 1,", "", "s.json: not a punchcache statistics "
          "file (no \"version\": 1)");
  edited (c, "\"version\": 1,", "\"version\": \"1\",", "s.json: not a "
          "punchcache statistics file (no \"version\": 1)");
  edited (c, "\"version\": 1,", "\"version\": 2,", "s.json: statistics "
          "format version is not 1, the only one this punchcache reads");
  assert_int_equal (pc_stats_parse ("[1]", 3, "a.json", &st), -EINVAL);
  assert_string_equal (pc_last_error (), "a.json: not a punchcache "
                       "statistics file (no \"version\": 1)");
  edited (c, "\"version\": 1,", "\"version\": 1, \"future\": [1, {\"x\": "
          "null}],", NULL);                           /* unknown: ignored */
  edited (c, "\"misses\"", "\"mises\"", "s.json: cache: no member "
          "\"misses\"");
  edited (c, "\"evictions\": 0", "\"evictions\": \"0\"", "s.json: "
          "cache.evictions: expected a non-negative integer, found a string");
  edited (c, "\"evictions\": 0", "\"evictions\": -1", "s.json: "
          "cache.evictions: expected a non-negative integer, found -1");
  edited (c, "\"cache\": {", "\"cache\": [], \"x\": {", "s.json: cache: "
          "expected an object, found an array");
  edited (c, "\"readonly\": false", "\"readonly\": 0", "s.json: "
          "pool.readonly: expected true or false, found a number");
  edited (c, "\"direct_io_note\": null", "\"direct_io_note\": 5", "s.json: "
          "pool.direct_io_note: expected a string, found a number");
  snprintf (used, sizeof used, "\"used\": %" PRIu64 ",",
            c->snap.pool.used_blocks * 64 * KIB);
  snprintf (bad_used, sizeof bad_used, "\"used\": %" PRIu64 ",",
            c->snap.pool.used_blocks * 64 * KIB + 1);
  snprintf (msg, sizeof msg, "s.json: pool: the space figures do not add "
            "up (capacity %" PRIu64 ", block_size 65536, used %" PRIu64
            " = %" PRIu64 " blocks, free %" PRIu64 " = %" PRIu64 " blocks)",
            c->snap.pool.capacity, c->snap.pool.used_blocks * 64 * KIB + 1,
            c->snap.pool.used_blocks, c->snap.pool.free_blocks * 64 * KIB,
            c->snap.pool.free_blocks);
  edited (c, used, bad_used, msg);
  edited (c, "\"block_size\": 65536", "\"block_size\": 65537", "s.json: "
          "pool.block_size: 65537 is not a power of two from 4096 to 1048576");
  edited (c, "\"block_size\": 65536", "\"block_size\": 5000000000", "s.json: "
          "pool.block_size: 5000000000 is out of range (at most 4294967295)");
  edited (c, "\"volumes\": 2,", "\"volumes\": 3,", "s.json: pool.volumes is "
          "3, but the volumes list has 2");
  edited (c, "\"volumes\": 2,", "\"volumes\": 300,", "s.json: pool.volumes: "
          "300 is out of range (at most 252)");
  edited (c, "\"name\": \"a\"", "\"name\": \"a/b\"", "s.json: "
          "volumes[0].name: \"a/b\" is not a valid volume name");
  edited (c, "\"name\": \"b\"", "\"name\": \"\\u001b[2J\"", "s.json: "
          "volumes[1].name: \"?[2J\" is not a valid volume name");
  edited (c, "\"connections\": 1", "\"connections\": 4294967296", "s.json: "
          "volumes[0].connections: 4294967296 is out of range (at most "
          "4294967295)");
  edited (c, "\"policy\": \"s3fifo\"", "\"policy\": \"fifo\"", "s.json: "
          "cache.policy: not \"s3fifo\" or \"lru\"");
  edited (c, "\"page_size\": 4096", "\"page_size\": 8192", "s.json: "
          "cache.page_size: 8192, but cache pages are 4096 bytes");
  edited (c, "\"hit_rate\": ", "\"hit_rate\": \"x\", \"rate\": ", "s.json: "
          "cache.hit_rate: expected a number, found a string");
  edited (c, "\"volumes\": [", "\"volumes\": [7, ", "s.json: pool.volumes is "
          "2, but the volumes list has 3");
  edited (c, "\"shared_waits\": 0,\n    \"shared_wait_ns\": 0,\n    "
          "\"exclusive_acquired\"", "\"exclusive_acquired\"", "s.json: "
          "invalidate_lock: no member \"shared_waits\"");
  edited (c, "\"pool\": {", "\"pool\": {,", "s.json: line 5, column 12: "
          "quoted object property name expected, found ','");
}

/* What json-c accepts but a statistics file must not have (lib/stats/json.c
 * lists it), and the rule for fields added after version 1: optional when
 * absent, checked when present. */
static void
test_on_json_c (void **state)
{
  struct ctx *c = *state;
  char from[160], to[160], prep[64];

  edited (c, "\"evictions\": 0", "\"evictions\": 18446744073709551616",
          "s.json: cache.evictions: integer out of range (at most "
          "18446744073709551614)");               /* json-c: 2^64-1 */
  edited (c, "\"evictions\": 0", "\"evictions\": 1.", "s.json: "
          "cache.evictions: expected a non-negative integer, found 1.");
  edited (c, "\"evictions\": 0", "\"evictions\": 1e2", "s.json: "
          "cache.evictions: expected a non-negative integer, found 1e2");
  edited (c, "\"evictions\": 0", "\"evictions\": Infinity", "s.json: "
          "cache.evictions: expected a non-negative integer, found "
          "Infinity");
  edited (c, "\"hit_rate\": ", "\"hit_rate\": NaN, \"rate\": ", "s.json: "
          "cache.hit_rate: expected a finite number, found NaN");
  edited (c, "\"name\": \"a\"", "\"name\": \"a\\u0000b\"", "s.json: "
          "volumes[0].name: not a string of valid UTF-8 without \\u0000");
  snprintf (from, sizeof from, "\"path\": \"%s\"", c->path);
  snprintf (to, sizeof to, "\"path\": \"%s\xc0\xaf\"", c->path);
  edited (c, from, to, "s.json: pool.path: not a string of valid UTF-8 "
          "without \\u0000");                    /* overlong '/' */
  snprintf (to, sizeof to, "\"path\": \"%s\xed\xa0\x80\"", c->path);
  edited (c, from, to, "s.json: pool.path: not a string of valid UTF-8 "
          "without \\u0000");                    /* a surrogate */
  edited (c, "\"policy\": \"s3fifo\"", "\"policy\": \"s3fifo\\u0000x\"",
          "s.json: cache.policy: not a string of valid UTF-8 without "
          "\\u0000");

  /* Version-1 fields are required, later ones optional. */
  edited (c, "\"direct_io_note\": null,", "", "s.json: pool: no member "
          "\"direct_io_note\"");
  edited (c, "\"readonly\": false,", "", "s.json: pool: no member "
          "\"readonly\"");
  snprintf (prep, sizeof prep, "\"prepared_runs\": %" PRIu64 ",",
            c->snap.prepared_runs);
  edited (c, prep, "", NULL);
  edited (c, prep, "\"prepared_runs\": \"1\",", "s.json: "
          "pool.prepared_runs: expected a non-negative integer, found a "
          "string");
  edited (c, "\"io_uring\": ", "\"io_uring\": 1, \"x\": ", "s.json: "
          "pool.io_uring: expected true or false, found a number");
  edited (c, "\"io_uring_note\": ", "\"io_uring_note\": 1, \"x\": ",
          "s.json: pool.io_uring_note: expected a string, found a number");
}

static void
test_files (void **state)
{
  struct ctx *c = *state;
  char file[128];
  struct pc_stats st;
  FILE *f;

  snprintf (file, sizeof file, "%s/stats.json", c->dir);
  assert_int_equal (pc_stats_read_file (file, &st), -ENOENT);
  assert_non_null (strstr (pc_last_error (), "stats.json: No such file"));
  assert_int_equal (pc_pool_write_stats (c->pool, file), 0);
  assert_int_equal (pc_stats_read_file (file, &st), 0);
  assert_int_equal (st.pool.nvolumes, 2);
  pc_stats_free (&st);
  f = fopen (file, "w");
  assert_non_null (f);
  fputs ("{\"version\": 1,\n \"time\": 1,\n \"uptime_ms\": 5 x", f);
  assert_int_equal (fclose (f), 0);
  assert_int_equal (pc_stats_read_file (file, &st), -EINVAL);
  assert_string_equal (strstr (pc_last_error (), "stats.json: "),
                       "stats.json: line 3, column 17: object value "
                       "separator ',' expected, found 'x'");
}

/* ---- the writer behind stats=PATH (lib/stats/writer.c) ---- */

/* The integer at section.key in the JSON file, or -1 (no file yet, no such
 * section or key). */
static int64_t
section_figure (const char *file, const char *section, const char *key)
{
  struct json_object *root, *sec, *v;
  int64_t n = -1;

  if (pc_json_read_file (file, PC_STATS_MAX_SIZE, &root) < 0)
    return -1;
  if (json_object_object_get_ex (root, section, &sec) &&
      json_object_object_get_ex (sec, key, &v))
    n = json_object_get_int64 (v);
  json_object_put (root);
  return n;
}

/* Wait up to 5 s for section.key to read want in file. */
static bool
wait_figure (const char *file, const char *section, const char *key,
             int64_t want)
{
  for (int i = 0; i < 500; i++) {
    if (section_figure (file, section, key) == want)
      return true;
    usleep (10000);
  }
  return false;
}

static struct json_object *
object_with (const char *key, int64_t v)
{
  struct json_object *o = json_object_new_object ();

  json_object_object_add (o, key, json_object_new_int64 (v));
  return o;
}

/* Pushed sections appear as top-level keys of the periodic file, a push
 * replaces the last one, the reader ignores them, bad names and too many
 * names are refused, nothing is kept without a writer, and close writes
 * the final file.  Shown to fail with attach_sections emptied (the
 * "server" section never appears) and with the thread's periodic
 * write_once removed (the replaced figure never appears). */
static void
test_writer (void **state)
{
  struct ctx *c = *state;
  char file[128], name[16];
  struct pc_stats st;

  snprintf (file, sizeof file, "%s/w.json", c->dir);
  assert_false (pc_stats_writer_active ());
  assert_int_equal (pc_stats_writer_set_section ("server",
                                                 object_with ("loops", 9)), 0);
  assert_int_equal (pc_stats_writer_open (c->pool, "/nonexistent/s.json", 20),
                    -ENOENT);
  assert_false (pc_stats_writer_active ());
  assert_int_equal (pc_stats_writer_open (c->pool, file, 20), 0);
  assert_int_equal (section_figure (file, "server", "loops"), -1);
  assert_int_equal (pc_stats_writer_open (c->pool, file, 20), -EBUSY);
  assert_int_equal (pc_stats_writer_set_section ("pool", object_with ("x", 1)),
                    -EINVAL);
  assert_int_equal (pc_stats_writer_set_section ("Server",
                                                 object_with ("x", 1)),
                    -EINVAL);
  assert_int_equal (pc_stats_writer_set_section ("", object_with ("x", 1)),
                    -EINVAL);
  assert_int_equal (pc_stats_writer_set_section ("server",
                                                 json_object_new_int (1)),
                    -EINVAL);
  assert_int_equal (pc_stats_writer_set_section ("server",
                                                 object_with ("loops", 1)), 0);
  assert_int_equal (pc_stats_writer_start (), 0);
  assert_true (wait_figure (file, "server", "loops", 1));
  assert_int_equal (pc_stats_writer_set_section ("server",
                                                 object_with ("loops", 2)), 0);
  assert_true (wait_figure (file, "server", "loops", 2));
  assert_int_equal (pc_stats_read_file (file, &st), 0);     /* ignored */
  assert_int_equal (st.pool.nvolumes, 2);
  pc_stats_free (&st);
  for (unsigned i = 1; i < PC_STATS_MAX_SECTIONS; i++) {
    snprintf (name, sizeof name, "s%u", i);
    assert_int_equal (pc_stats_writer_set_section (name,
                                                   object_with ("i", i)), 0);
  }
  assert_int_equal (pc_stats_writer_set_section ("one_more",
                                                 object_with ("i", 0)),
                    -ENOSPC);
  assert_int_equal (pc_stats_writer_set_section ("server",
                                                 object_with ("loops", 3)), 0);
  assert_int_equal (pc_stats_writer_close (), 0);           /* final write */
  assert_false (pc_stats_writer_active ());
  assert_int_equal (section_figure (file, "server", "loops"), 3);
  assert_int_equal (section_figure (file, "s7", "i"), 7);
  assert_int_equal (pc_stats_writer_close (), 0);           /* nothing open */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_snapshot, setup, teardown),
    cmocka_unit_test_setup_teardown (test_round_trip, setup, teardown),
    cmocka_unit_test_setup_teardown (test_refusals, setup, teardown),
    cmocka_unit_test_setup_teardown (test_on_json_c, setup, teardown),
    cmocka_unit_test_setup_teardown (test_files, setup, teardown),
    cmocka_unit_test_setup_teardown (test_writer, setup, teardown),
  };

  return cmocka_run_group_tests_name ("stats", tests, NULL, NULL);
}
