/* Fuzz target for the strict JSON reader (lib/json.c) and the statistics
 * file reader built on it (lib/statsfile.c): the two parsers of bytes a
 * user may point `punchcache stats` at.  Builds as a libFuzzer target
 * (clang -fsanitize=fuzzer,address) or with fuzz-driver.c and
 * seeds-jsonread.c under gcc's AddressSanitizer + UBSan
 * (tests/test-fuzz-jsonread.sh).
 *
 * Besides memory errors and undefined behaviour, it aborts when an answer
 * is wrong:
 *  1. An accepted document is walked whole: no container is nested more
 *     than PC_JSON_MAX_DEPTH deep, each has as many children as
 *     pc_json_count says, each member is what pc_json_lookup finds for its
 *     key (keys are unique), and every value's path and typed getters
 *     (error paths included) run.
 *  2. Printing an accepted document canonically (this file's print_value)
 *     and parsing that again gives the same canonical text: nothing the
 *     reader accepts is lost or changed between parse and navigation.
 *  3. A refused input leaves a message naming it ("fuzz: ...").
 *  4. A statistics file the reader accepts survives pc_stats_to_json ->
 *     pc_stats_parse -> pc_stats_to_json with the same text.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/json.h"
#include "punchcache/punchcache.h"
#include "punchcache/stats.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
print_value (FILE *f, const struct pc_json_doc *doc,
             const struct pc_json_value *v)
{
  const struct pc_json_value *c = NULL;
  enum pc_json_type t = pc_json_type (v);
  const char *s;
  uint64_t u;
  double d;
  bool b;

  if (t == PC_JSON_NULL) fputs ("null", f);
  else if (pc_json_as_bool (doc, v, &b) == 0) fputs (b ? "true" : "false", f);
  else if (pc_json_as_u64 (doc, v, &u) == 0) fprintf (f, "%" PRIu64, u);
  else if (pc_json_as_double (doc, v, &d) == 0) fprintf (f, "%.17g", d);
  else if (pc_json_as_string (doc, v, &s) == 0) pc_json_string (f, s);
  else {
    putc (t == PC_JSON_ARRAY ? '[' : '{', f);
    while ((c = pc_json_next (doc, v, c)) != NULL) {
      if (t == PC_JSON_OBJECT) {
        pc_json_string (f, pc_json_key (doc, c));
        putc (':', f);
      }
      print_value (f, doc, c);
      if (pc_json_next (doc, v, c)) putc (',', f);
    }
    putc (t == PC_JSON_ARRAY ? ']' : '}', f);
  }
}

/* Oracle 1 for v (nested in depth containers) and its subtree. */
static void
walk (const struct pc_json_doc *doc, const struct pc_json_value *v,
      unsigned depth)
{
  const struct pc_json_value *c = NULL, *m;
  char path[160];
  size_t n = 0;
  uint64_t u;

  if ((pc_json_type (v) == PC_JSON_ARRAY || pc_json_type (v) == PC_JSON_OBJECT)
      && depth >= PC_JSON_MAX_DEPTH)
    abort ();                   /* nested deeper than the limit */
  pc_json_path (doc, v, path, sizeof path);
  pc_json_as_u64 (doc, v, &u);                  /* error paths too */
  pc_json_member (doc, v, "version", PC_JSON_NUMBER, &m);
  while ((c = pc_json_next (doc, v, c)) != NULL) {
    const char *key = pc_json_key (doc, c);
    if ((pc_json_type (v) == PC_JSON_OBJECT) != (key != NULL))
      abort ();                 /* members have keys, elements none */
    if (key && pc_json_lookup (doc, v, key) != c)
      abort ();                 /* a duplicate key, or lookup is wrong */
    walk (doc, c, depth + 1);
    n++;
  }
  if (n != pc_json_count (v))
    abort ();
}

/* The canonical text of a document, malloc'd. */
static char *
canonical (const struct pc_json_doc *doc)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&buf, &len);

  if (f == NULL) abort ();
  print_value (f, doc, pc_json_root (doc));
  if (fclose (f) != 0) abort ();
  return buf;
}

static void
check_json (const uint8_t *data, size_t size)
{
  struct pc_json_doc *doc, *again;
  char *text, *text2;

  if (pc_json_parse ((const char *) data, size, "fuzz", &doc) < 0) {
    if (strncmp (pc_last_error (), "fuzz: ", 6) != 0)
      abort ();                 /* oracle 3 */
    return;
  }
  walk (doc, pc_json_root (doc), 0);
  text = canonical (doc);
  if (pc_json_parse (text, strlen (text), "canonical", &again) < 0)
    abort ();                   /* oracle 2 */
  text2 = canonical (again);
  if (strcmp (text, text2) != 0)
    abort ();
  free (text2);
  free (text);
  pc_json_free (again);
  pc_json_free (doc);
}

static void
check_stats (const uint8_t *data, size_t size)
{
  struct pc_stats st, st2;
  char *text, *text2;

  if (pc_stats_parse ((const char *) data, size, "fuzz", &st) < 0)
    return;
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
  check_stats (data, size);
  return 0;
}
