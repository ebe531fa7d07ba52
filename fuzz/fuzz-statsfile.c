/* Fuzz target for the statistics file reader (lib/stats/statsfile.c) and what
 * lib/stats/json.c adds to json-c (strict parsing of exactly len bytes, valid
 * output from any string): the code that reads the bytes a user may point
 * `punchcache stats` at.  json-c parses; the checks on top of it are ours,
 * and so are their bugs.  Builds as a libFuzzer target (clang
 * -fsanitize=fuzzer,address, linking json-c) or with fuzz-driver.c and
 * seeds-statsfile.c under gcc's AddressSanitizer + UBSan
 * (tests/test-fuzz-statsfile.sh).
 *
 * Besides memory errors and undefined behaviour, it aborts when an answer
 * is wrong:
 *  1. A refused input leaves a message naming it ("fuzz: ...").
 *  2. An accepted document nests no deeper than PC_JSON_MAX_DEPTH, and its
 *     text as pc_json_to_text writes it is accepted again (not checked for
 *     UTF-8: json-c copies the overlong forms it accepted).
 *  3. The input as a C string, written by pc_json_new_string, is valid
 *     UTF-8 and valid JSON, and reads back as a string.
 *  4. A statistics file the reader accepts has what the reader promises
 *     (strings of valid UTF-8, valid volume names, space figures that add
 *     up), and survives pc_stats_to_json -> pc_stats_parse ->
 *     pc_stats_to_json with the same text.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/json.h"
#include "punchcache/punchcache.h"
#include "punchcache/stats.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAX_SIZE PC_STATS_MAX_SIZE

/* Containers nested in v, v included. */
static unsigned
depth (struct json_object *v)
{
  unsigned d = 0, c;

  if (json_object_is_type (v, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length (v); i++)
      if ((c = depth (json_object_array_get_idx (v, i))) > d) d = c;
    return d + 1;
  }
  if (json_object_is_type (v, json_type_object)) {
    json_object_object_foreach (v, key, val) {
      (void) key;
      if ((c = depth (val)) > d) d = c;
    }
    return d + 1;
  }
  return 0;
}

/* Oracles 2 and 3: text must parse again. */
static struct json_object *
reparse (const char *text)
{
  struct json_object *obj;

  if (pc_json_parse (text, strlen (text), SIZE_MAX, "again", &obj) < 0)
    abort ();
  return obj;
}

static void
check_json (const uint8_t *data, size_t size)
{
  struct json_object *obj;
  char *text;

  if (pc_json_parse ((const char *) data, size, MAX_SIZE, "fuzz", &obj) < 0) {
    if (strncmp (pc_last_error (), "fuzz: ", 6) != 0)
      abort ();                 /* oracle 1 */
    return;
  }
  if (depth (obj) > PC_JSON_MAX_DEPTH)
    abort ();                   /* oracle 2 */
  if (pc_json_to_text (json_object_get (obj), 0, &text) < 0)
    abort ();
  json_object_put (reparse (text));
  free (text);
  json_object_put (obj);
}

static void
check_string (const uint8_t *data, size_t size)
{
  struct json_object *arr = json_object_new_array (), *back;
  char *s = strndup ((const char *) data, size), *text;
  int err = 0;

  if (s == NULL) abort ();
  pc_json_append (arr, pc_json_new_string (s), &err);
  if (pc_json_to_text (arr, err, &text) < 0 ||
      !pc_utf8_valid (text, strlen (text)))
    abort ();
  back = reparse (text);                        /* oracle 3 */
  if (!json_object_is_type (json_object_array_get_idx (back, 0),
                            json_type_string))
    abort ();
  json_object_put (back);
  free (text);
  free (s);
}

/* Oracle 4, first half: what an accepted file promises. */
static void
check_promises (const struct pc_stats *st)
{
  const char *notes[] = { st->pool_path, st->direct_io_note,
                          st->io_uring_note };

  for (unsigned i = 0; i < 3; i++)
    if (notes[i] && !pc_utf8_valid (notes[i], strlen (notes[i])))
      abort ();
  for (unsigned i = 0; i < st->pool.nvolumes; i++)
    if (!pc_vol_name_valid (st->volumes[i].name))
      abort ();
  if (st->pool.used_blocks + st->pool.free_blocks != st->pool.nblocks ||
      st->pool.nblocks * st->pool.block_size != st->pool.capacity)
    abort ();
}

static void
check_stats (const uint8_t *data, size_t size)
{
  struct pc_stats st, st2;
  char *text, *text2;

  if (pc_stats_parse ((const char *) data, size, "fuzz", &st) < 0)
    return;
  check_promises (&st);
  if (pc_stats_to_json (&st, &text) < 0 ||
      pc_stats_parse (text, strlen (text), "again", &st2) < 0 ||
      pc_stats_to_json (&st2, &text2) < 0 || strcmp (text, text2) != 0)
    abort ();                   /* oracle 4 */
  free (text2);
  free (text);
  pc_stats_free (&st2);
  pc_stats_free (&st);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  check_json (data, size);
  check_string (data, size);
  check_stats (data, size);
  return 0;
}
