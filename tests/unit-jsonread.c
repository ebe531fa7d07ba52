/* Description: unit tests of the strict JSON reader (lib/json.c): valid
 * documents of every type with navigation (lookup, iteration, keys, counts,
 * paths) and typed access; every kind of malformed input, each with the
 * exact message and line/column it must give; escapes (\uXXXX, surrogate
 * pairs) and raw UTF-8 checks; number ranges (2^64-1 and -2^63 are the
 * integer limits, one more is refused, doubles that overflow are refused);
 * nesting (64 levels accepted; 65 and 100000 refused, never recursing
 * deeper than 64);
 * size (PC_JSON_MAX_SIZE accepted, one byte more refused, also for a file
 * before it is read); files (missing, a directory); the writer's strings
 * read back intact; pc_json_printable.  Every input is parsed from a heap
 * copy of exactly its length, so under valgrind or ASan a read past the end
 * is caught, and none is NUL-terminated.
 *
 * Shown to fail by deliberate mutations of lib/json.c, one at a time,
 * each making `make check TESTS=tests/unit-jsonread` fail: the depth check
 * disabled (test_depth: 65 levels accepted); the uint64 overflow check
 * removed (test_numbers: 2^64 accepted); \u0000 accepted (test_malformed);
 * the duplicate-key check skipped (test_malformed); utf8_len's bound on
 * the bytes left removed (test_malformed: a sequence cut by the end of
 * the text is read past it, and the parse goes wrong).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
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

#include "punchcache/json.h"
#include "punchcache/punchcache.h"

/* Parse len bytes from an exact-size heap copy (no NUL after them). */
static int
parse_n (const char *text, size_t len, struct pc_json_doc **doc)
{
  char *copy = malloc (len ? len : 1);
  int r;

  assert_non_null (copy);
  memcpy (copy, text, len);
  *doc = NULL;
  r = pc_json_parse (copy, len, "t.json", doc);
  free (copy);                  /* the document must not point into it */
  return r;
}

static struct pc_json_doc *
parse_ok (const char *text)
{
  struct pc_json_doc *doc;
  int r = parse_n (text, strlen (text), &doc);

  if (r != 0)
    fail_msg ("%s: %s", text, pc_last_error ());
  return doc;
}

/* text must be refused with -EINVAL and exactly this message. */
static void
refused (const char *text, size_t len, const char *msg)
{
  struct pc_json_doc *doc;
  int r = parse_n (text, len, &doc);

  if (r != -EINVAL)
    fail_msg ("'%.*s' gave %d, not -EINVAL", (int) len, text, r);
  assert_null (doc);
  assert_string_equal (pc_last_error (), msg);
}
#define REFUSED(text, msg) refused ((text), sizeof (text) - 1, (msg))

/* A call must have failed with err and exactly this message. */
static void
failed_with (int r, int err, const char *msg)
{
  assert_int_equal (r, err);
  assert_string_equal (pc_last_error (), msg);
}

/* ---- valid documents ---- */

static void
test_types (void **state)
{
  struct pc_json_doc *doc = parse_ok (
    " {\"n\": null, \"t\": true, \"f\": false, \"u\": 42, \"neg\": -7,\r\n"
    "\t\"d\": 0.5, \"e\": 1E2, \"s\": \"x\\ty\", \"a\": [], \"o\": {}} ");
  const struct pc_json_value *root = pc_json_root (doc), *v;
  const char *s;
  uint64_t u;
  double d;
  bool b;

  assert_int_equal (pc_json_type (root), PC_JSON_OBJECT);
  assert_int_equal (pc_json_count (root), 10);
  assert_int_equal (pc_json_type (pc_json_lookup (doc, root, "n")),
                    PC_JSON_NULL);
  assert_int_equal (pc_json_get_bool (doc, root, "t", &b), 0);
  assert_true (b);
  assert_int_equal (pc_json_get_bool (doc, root, "f", &b), 0);
  assert_false (b);
  assert_int_equal (pc_json_get_u64 (doc, root, "u", &u), 0);
  assert_int_equal (u, 42);
  assert_int_equal (pc_json_as_double (doc, pc_json_lookup (doc, root, "neg"),
                                       &d), 0);
  assert_true (d == -7.0);
  assert_int_equal (pc_json_as_double (doc, pc_json_lookup (doc, root, "d"),
                                       &d), 0);
  assert_true (d == 0.5);
  assert_int_equal (pc_json_as_double (doc, pc_json_lookup (doc, root, "e"),
                                       &d), 0);
  assert_true (d == 100.0);
  assert_int_equal (pc_json_get_string (doc, root, "s", &s), 0);
  assert_string_equal (s, "x\ty");
  assert_int_equal (pc_json_member (doc, root, "a", PC_JSON_ARRAY, &v), 0);
  assert_int_equal (pc_json_count (v), 0);
  assert_null (pc_json_next (doc, v, NULL));
  assert_int_equal (pc_json_member (doc, root, "o", PC_JSON_OBJECT, &v), 0);
  assert_int_equal (pc_json_count (v), 0);
  assert_null (pc_json_lookup (doc, root, "missing"));
  assert_null (pc_json_lookup (doc, v, "n"));       /* not in a sub-object */
  pc_json_free (doc);

  /* Scalars at the top level. */
  doc = parse_ok ("7");
  assert_int_equal (pc_json_as_u64 (doc, pc_json_root (doc), &u), 0);
  assert_int_equal (u, 7);
  assert_null (pc_json_lookup (doc, pc_json_root (doc), "x"));
  assert_int_equal (pc_json_count (pc_json_root (doc)), 0);
  pc_json_free (doc);
  doc = parse_ok ("\"only\"");
  assert_int_equal (pc_json_as_string (doc, pc_json_root (doc), &s), 0);
  assert_string_equal (s, "only");
  pc_json_free (doc);
}

static void
test_navigation (void **state)
{
  struct pc_json_doc *doc = parse_ok (
    "{\"volumes\": [{\"name\": \"a\", \"deep\": [[1], [2, [3]]]},\n"
    "              {\"name\": \"b\"}, 5], \"after\": 1}");
  const struct pc_json_value *root = pc_json_root (doc), *vols, *e, *m;
  const char *names[3] = { 0 };
  char path[128];
  unsigned n = 0;
  uint64_t u;

  assert_int_equal (pc_json_member (doc, root, "volumes", PC_JSON_ARRAY,
                                    &vols), 0);
  assert_int_equal (pc_json_count (vols), 3);
  assert_string_equal (pc_json_key (doc, vols), "volumes");
  assert_null (pc_json_key (doc, root));
  for (e = pc_json_next (doc, vols, NULL); e; e = pc_json_next (doc, vols, e)) {
    assert_null (pc_json_key (doc, e));       /* array elements have none */
    if (pc_json_type (e) == PC_JSON_OBJECT)
      assert_int_equal (pc_json_get_string (doc, e, "name", &names[n]), 0);
    n++;
  }
  assert_int_equal (n, 3);                    /* subtrees were skipped */
  assert_string_equal (names[0], "a");
  assert_string_equal (names[1], "b");
  /* The member after a deep subtree is found. */
  assert_int_equal (pc_json_get_u64 (doc, root, "after", &u), 0);
  assert_int_equal (u, 1);
  /* Members in document order, with their keys. */
  m = pc_json_next (doc, root, NULL);
  assert_string_equal (pc_json_key (doc, m), "volumes");
  m = pc_json_next (doc, root, m);
  assert_string_equal (pc_json_key (doc, m), "after");
  assert_null (pc_json_next (doc, root, m));
  assert_null (pc_json_next (doc, m, NULL));  /* a number has no children */

  /* Paths. */
  assert_string_equal (pc_json_path (doc, root, path, sizeof path),
                       "the top level");
  e = pc_json_next (doc, vols, pc_json_next (doc, vols, NULL));
  assert_string_equal (pc_json_path (doc, pc_json_lookup (doc, e, "name"),
                                     path, sizeof path), "volumes[1].name");
  e = pc_json_lookup (doc, pc_json_next (doc, vols, NULL), "deep");
  e = pc_json_next (doc, e, pc_json_next (doc, e, NULL));     /* [2, [3]] */
  e = pc_json_next (doc, e, pc_json_next (doc, e, NULL));     /* [3] */
  assert_string_equal (pc_json_path (doc, pc_json_next (doc, e, NULL), path,
                                     sizeof path), "volumes[0].deep[1][1][0]");
  pc_json_path (doc, e, path, 12);                  /* cut, NUL-terminated */
  assert_string_equal (path, "volumes[0].");
  pc_json_free (doc);
}

static void
test_typed_errors (void **state)
{
  struct pc_json_doc *doc = parse_ok (
    "{\"cache\": {\"hits\": \"many\", \"rate\": 0.5, \"neg\": -1, \"e\": 1e2,"
    " \"ok\": true}, \"list\": [1, \"x\"]}");
  const struct pc_json_value *root = pc_json_root (doc), *cache, *list, *v;
  const char *s;
  uint64_t u = 99;
  bool b;

  assert_int_equal (pc_json_member (doc, root, "cache", PC_JSON_OBJECT,
                                    &cache), 0);
  failed_with (pc_json_get_u64 (doc, cache, "hits", &u), -EINVAL, "t.json: "
               "cache.hits: expected a non-negative integer, found a string");
  failed_with (pc_json_get_u64 (doc, cache, "rate", &u), -EINVAL, "t.json: "
               "cache.rate: expected a non-negative integer, found 0.5");
  failed_with (pc_json_get_u64 (doc, cache, "neg", &u), -EINVAL, "t.json: "
               "cache.neg: expected a non-negative integer, found -1");
  assert_int_equal (pc_json_get_u64 (doc, cache, "e", &u), -EINVAL);
  assert_int_equal (u, 99);                   /* untouched on failure */
  failed_with (pc_json_get_u64 (doc, cache, "misses", &u), -ENOENT,
               "t.json: cache: no member \"misses\"");
  failed_with (pc_json_get_u64 (doc, root, "nope", &u), -ENOENT,
               "t.json: the top level: no member \"nope\"");
  failed_with (pc_json_get_string (doc, cache, "ok", &s), -EINVAL,
               "t.json: cache.ok: expected a string, found a boolean");
  failed_with (pc_json_get_bool (doc, cache, "rate", &b), -EINVAL,
               "t.json: cache.rate: expected true or false, found a number");
  failed_with (pc_json_member (doc, root, "cache", PC_JSON_ARRAY, &v),
               -EINVAL, "t.json: cache: expected an array, found an object");
  assert_int_equal (pc_json_member (doc, root, "list", PC_JSON_ARRAY, &list),
                    0);
  failed_with (pc_json_get_u64 (doc, list, "x", &u), -EINVAL,
               "t.json: list: expected an object, found an array");
  v = pc_json_next (doc, list, pc_json_next (doc, list, NULL));
  failed_with (pc_json_expect (doc, v, PC_JSON_NUMBER), -EINVAL,
               "t.json: list[1]: expected a number, found a string");
  assert_int_equal (pc_json_as_double (doc, v, &(double) { 0 }), -EINVAL);
  pc_json_free (doc);
}

/* ---- strings ---- */

static void
test_strings (void **state)
{
  struct pc_json_doc *doc = parse_ok (
    "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\","
    " \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\", \"\\u001b[31m\", \"\"]");
  const struct pc_json_value *e = NULL;
  const char *want[] = { "\"\\/\b\f\n\r\t", "\xc3\xa9\xe2\x82\xac",
                         "\xf0\x9f\x98\x80",
                         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                         "\x1b[31m", "" };
  unsigned i = 0;
  const char *s;

  while ((e = pc_json_next (doc, pc_json_root (doc), e)) != NULL) {
    assert_int_equal (pc_json_as_string (doc, e, &s), 0);
    assert_string_equal (s, want[i++]);
  }
  assert_int_equal (i, 6);
  pc_json_free (doc);
}

/* What pc_json_string writes, the reader reads back as it was (valid
 * UTF-8), or with U+FFFD for invalid bytes. */
static void
test_writer_round_trip (void **state)
{
  static const char *const in[] = {
    "plain", "quote\" back\\slash /", "tab\tnl\ncr\rbell\a del\x7f",
    "\x01\x1f", "caf\xc3\xa9 \xf0\x9f\x98\x80", "bad \xff byte",
  };
  static const char *const out[] = {
    "plain", "quote\" back\\slash /", "tab\tnl\ncr\rbell\a del\x7f",
    "\x01\x1f", "caf\xc3\xa9 \xf0\x9f\x98\x80", "bad \xef\xbf\xbd byte",
  };

  for (unsigned i = 0; i < sizeof in / sizeof in[0]; i++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&buf, &len);
    struct pc_json_doc *doc;
    const char *s;

    assert_non_null (f);
    pc_json_string (f, in[i]);
    assert_int_equal (fclose (f), 0);
    assert_int_equal (parse_n (buf, len, &doc), 0);
    assert_int_equal (pc_json_as_string (doc, pc_json_root (doc), &s), 0);
    assert_string_equal (s, out[i]);
    pc_json_free (doc);
    free (buf);
  }
}

/* ---- malformed input ---- */

static void
test_malformed (void **state)
{
  REFUSED ("", "t.json: empty (no JSON value)");
  REFUSED (" \n\t\r ", "t.json: empty (no JSON value)");
  REFUSED ("{", "t.json: line 1, column 2: expected '\"' (a key), found end "
           "of file");
  REFUSED ("[", "t.json: line 1, column 2: expected a value, found end of "
           "file");
  REFUSED ("[1", "t.json: line 1, column 3: expected ',' or ']', found end "
           "of file");
  REFUSED ("{\"a\" 1}", "t.json: line 1, column 6: expected ':', found '1'");
  REFUSED ("{\"a\":1 \"b\":2}", "t.json: line 1, column 8: expected ',' or "
           "'}', found '\"'");
  REFUSED ("{\n  \"a\": 1\n  \"b\": 2\n}", "t.json: line 3, column 3: "
           "expected ',' or '}', found '\"'");
  REFUSED ("[1,]", "t.json: line 1, column 4: expected a value, found ']'");
  REFUSED ("{\"a\":1,}", "t.json: line 1, column 8: expected '\"' (a key), "
           "found '}'");
  REFUSED ("{,}", "t.json: line 1, column 2: expected '\"' (a key), found "
           "','");
  REFUSED ("{1:2}", "t.json: line 1, column 2: expected '\"' (a key), found "
           "'1'");
  REFUSED ("[1 2]", "t.json: line 1, column 4: expected ',' or ']', found "
           "'2'");
  REFUSED ("1 2", "t.json: line 1, column 3: expected the end of the "
           "document, found '2'");
  REFUSED ("{}x", "t.json: line 1, column 3: expected the end of the "
           "document, found 'x'");
  REFUSED ("[1]\0", "t.json: line 1, column 4: expected the end of the "
           "document, found byte 0x00");
  REFUSED ("\xef\xbb\xbf{}", "t.json: line 1, column 1: expected a value, "
           "found byte 0xef");                             /* no BOM */
  REFUSED ("/* c */ {}", "t.json: line 1, column 1: expected a value, found "
           "'/'");
  REFUSED ("'a'", "t.json: line 1, column 1: expected a value, found '''");
  /* Literals. */
  REFUSED ("tru", "t.json: line 1, column 1: expected a value, found 't'");
  REFUSED ("True", "t.json: line 1, column 1: expected a value, found 'T'");
  REFUSED ("nulll", "t.json: line 1, column 5: expected the end of the "
           "document, found 'l'");
  REFUSED ("NaN", "t.json: line 1, column 1: expected a value, found 'N'");
  REFUSED ("[Infinity]", "t.json: line 1, column 2: expected a value, found "
           "'I'");
  /* Numbers. */
  REFUSED ("01", "t.json: line 1, column 1: a number must not start with 0");
  REFUSED ("-012", "t.json: line 1, column 1: a number must not start with "
           "0");
  REFUSED ("-", "t.json: line 1, column 2: expected a digit, found end of "
           "file");
  REFUSED ("-a", "t.json: line 1, column 2: expected a digit, found 'a'");
  REFUSED ("+1", "t.json: line 1, column 1: expected a value, found '+'");
  REFUSED (".5", "t.json: line 1, column 1: expected a value, found '.'");
  REFUSED ("1.", "t.json: line 1, column 3: expected a digit after '.', found "
           "end of file");
  REFUSED ("1.e5", "t.json: line 1, column 3: expected a digit after '.', "
           "found 'e'");
  REFUSED ("1e", "t.json: line 1, column 3: expected a digit in the exponent, "
           "found end of file");
  REFUSED ("1e+", "t.json: line 1, column 4: expected a digit in the "
           "exponent, found end of file");
  REFUSED ("0x10", "t.json: line 1, column 2: expected the end of the "
           "document, found 'x'");
  /* Strings. */
  REFUSED ("\"abc", "t.json: line 1, column 1: string not terminated (no "
           "closing '\"' before the end of file)");
  REFUSED ("[\"a\tb\"]", "t.json: line 1, column 4: control character 0x09 "
           "in a string (write it as \\u0009)");
  REFUSED ("\"a\nb\"", "t.json: line 1, column 3: control character 0x0a in "
           "a string (write it as \\u000a)");
  REFUSED ("\"\\x\"", "t.json: line 1, column 2: invalid escape (valid: \\\" "
           "\\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
  REFUSED ("\"\\", "t.json: line 1, column 2: invalid escape (valid: \\\" "
           "\\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
  REFUSED ("\"\\u12\"", "t.json: line 1, column 2: \\u must be followed by "
           "four hex digits");
  REFUSED ("\"\\u12", "t.json: line 1, column 2: \\u must be followed by four "
           "hex digits");
  REFUSED ("\"\\u12g4\"", "t.json: line 1, column 2: \\u must be followed by "
           "four hex digits");
  REFUSED ("\"\\u0000\"", "t.json: line 1, column 2: \\u0000 is not allowed "
           "(strings are read as C strings)");
  REFUSED ("\"\\ud800\"", "t.json: line 1, column 2: \\ud800 (a high "
           "surrogate) is not followed by a \\u low surrogate");
  REFUSED ("\"\\ud800\\", "t.json: line 1, column 2: \\ud800 (a high "
           "surrogate) is not followed by a \\u low surrogate");
  REFUSED ("\"\\ud800\\u0041\"", "t.json: line 1, column 2: \\ud800 (a high "
           "surrogate) is followed by \\u0041, not by a low surrogate");
  REFUSED ("\"\\ud800\\ud800\"", "t.json: line 1, column 2: \\ud800 (a high "
           "surrogate) is followed by \\ud800, not by a low surrogate");
  REFUSED ("\"\\udc00\"", "t.json: line 1, column 2: \\udc00 is a low "
           "surrogate without a high one before it");
  REFUSED ("\"\xff\"", "t.json: line 1, column 2: invalid UTF-8 (byte 0xff) "
           "in a string");
  REFUSED ("\"\xc0\xaf\"", "t.json: line 1, column 2: invalid UTF-8 (byte "
           "0xc0) in a string");                          /* overlong '/' */
  REFUSED ("\"\xe0\x80\xaf\"", "t.json: line 1, column 2: invalid UTF-8 "
           "(byte 0xe0) in a string");                    /* overlong */
  REFUSED ("\"\xed\xa0\x80\"", "t.json: line 1, column 2: invalid UTF-8 "
           "(byte 0xed) in a string");                    /* surrogate */
  REFUSED ("\"\xf4\x90\x80\x80\"", "t.json: line 1, column 2: invalid UTF-8 "
           "(byte 0xf4) in a string");                    /* > U+10FFFF */
  REFUSED ("\"\xe2\x82\"", "t.json: line 1, column 2: invalid UTF-8 (byte "
           "0xe2) in a string");                          /* cut short */
  REFUSED ("\"\xe2\x82", "t.json: line 1, column 2: invalid UTF-8 (byte "
           "0xe2) in a string");               /* cut by the end of text */
  REFUSED ("{\"\xe2\x82\xac\": 1, \"b\": 2, \"\xe2\x82\xac\": 3}",
           "t.json: line 1, column 1: duplicate key \"\xe2\x82\xac\" in this "
           "object");
  REFUSED ("[{}, {\"a\": {\"a\": 1}, \"b\": 1, \"a\": 2}]", "t.json: line 1, "
           "column 6: duplicate key \"a\" in this object");
  REFUSED ("{\"\\u001b\": 1, \"\\u001b\": 2}", "t.json: line 1, column 1: "
           "duplicate key \"?\" in this object");         /* shown safely */
}

/* ---- numbers ---- */

static void
test_numbers (void **state)
{
  struct pc_json_doc *doc = parse_ok (
    "[18446744073709551615, 0, -0, -9223372036854775808, 1e-400, 2.5e+3,"
    " 123456789012345678901234567890.5, 1.7976931348623157e308]");
  const struct pc_json_value *root = pc_json_root (doc), *e;
  uint64_t u;
  double d;

  e = pc_json_next (doc, root, NULL);
  assert_int_equal (pc_json_as_u64 (doc, e, &u), 0);
  assert_true (u == UINT64_MAX);
  e = pc_json_next (doc, root, e);
  assert_int_equal (pc_json_as_u64 (doc, e, &u), 0);
  assert_int_equal (u, 0);
  e = pc_json_next (doc, root, e);                    /* -0: not a uint */
  assert_int_equal (pc_json_as_u64 (doc, e, &u), -EINVAL);
  e = pc_json_next (doc, root, e);
  assert_int_equal (pc_json_as_double (doc, e, &d), 0);
  assert_true (d == -9223372036854775808.0);
  e = pc_json_next (doc, root, e);
  assert_int_equal (pc_json_as_double (doc, e, &d), 0);
  assert_true (d == 0.0);                             /* underflow: 0 */
  e = pc_json_next (doc, root, e);
  assert_int_equal (pc_json_as_double (doc, e, &d), 0);
  assert_true (d == 2500.0);
  assert_int_equal (pc_json_as_u64 (doc, e, &u), -EINVAL);
  e = pc_json_next (doc, root, e);
  assert_int_equal (pc_json_as_double (doc, e, &d), 0);
  assert_true (d > 1.2e29 && d < 1.3e29);
  pc_json_free (doc);

  REFUSED ("18446744073709551616", "t.json: line 1, column 1: integer "
           "18446744073709551616 is out of range (-2^63 to 2^64-1)");
  REFUSED ("[99999999999999999999]", "t.json: line 1, column 2: integer "
           "99999999999999999999 is out of range (-2^63 to 2^64-1)");
  REFUSED ("-9223372036854775809", "t.json: line 1, column 1: integer "
           "-9223372036854775809 is out of range (-2^63 to 2^64-1)");
  REFUSED ("123456789012345678901234567890", "t.json: line 1, column 1: "
           "integer 123456789012345678901234... is out of range (-2^63 to "
           "2^64-1)");
  REFUSED ("1e309", "t.json: line 1, column 1: number 1e309 is too large");
  REFUSED ("[-1.5e99999]", "t.json: line 1, column 2: number -1.5e99999 is "
           "too large");
}

/* ---- limits ---- */

static char *
nested (unsigned depth, const char *open, const char *close)
{
  size_t lo = strlen (open), lc = strlen (close);
  char *s = malloc (depth * (lo + lc) + 1), *p = s;

  assert_non_null (s);
  for (unsigned i = 0; i < depth; i++, p += lo) memcpy (p, open, lo);
  for (unsigned i = 0; i < depth; i++, p += lc) memcpy (p, close, lc);
  *p = '\0';
  return s;
}

static void
test_depth (void **state)
{
  struct pc_json_doc *doc;
  char *s;

  s = nested (PC_JSON_MAX_DEPTH, "[", "]");
  pc_json_free (parse_ok (s));
  free (s);
  s = nested (PC_JSON_MAX_DEPTH / 2, "{\"k\":[", "]}");
  doc = parse_ok (s);
  free (s);
  pc_json_free (doc);
  s = nested (PC_JSON_MAX_DEPTH + 1, "[", "]");
  refused (s, strlen (s), "t.json: line 1, column 65: nested more than 64 "
           "levels deep");
  free (s);
  s = nested (PC_JSON_MAX_DEPTH / 2 + 1, "{\"k\":[", "]}");
  refused (s, strlen (s), "t.json: line 1, column 193: nested more than 64 "
           "levels deep");
  free (s);
  /* Far too deep, and unterminated: refused at level 65, no recursion. */
  s = nested (100000, "[", "");
  refused (s, strlen (s), "t.json: line 1, column 65: nested more than 64 "
           "levels deep");
  free (s);
}

static void
test_size (void **state)
{
  size_t max = PC_JSON_MAX_SIZE;
  char *s = malloc (max + 1);
  struct pc_json_doc *doc;

  assert_non_null (s);
  memset (s, ' ', max + 1);
  s[0] = '[';
  s[max - 1] = ']';
  assert_int_equal (pc_json_parse (s, max, "big", &doc), 0);
  assert_int_equal (pc_json_count (pc_json_root (doc)), 0);
  pc_json_free (doc);
  failed_with (pc_json_parse (s, max + 1, "big", &doc), -EFBIG, "big: "
               "larger than 4194304 bytes (4 MiB), the most a JSON document "
               "may have here");
  /* The densest document: one value per two bytes. */
  for (size_t i = 1; i + 2 < max; i += 2) { s[i] = '0'; s[i + 1] = ','; }
  s[max - 2] = ' ';                                   /* "...,0,0 ]" */
  s[max - 1] = ']';
  assert_int_equal (pc_json_parse (s, max, "dense", &doc), 0);
  assert_int_equal (pc_json_count (pc_json_root (doc)), max / 2 - 1);
  pc_json_free (doc);
  free (s);
}

static void
test_files (void **state)
{
  char dir[] = "/tmp/unit-jsonread.XXXXXX", path[64], cmd[96];
  struct pc_json_doc *doc;
  uint64_t u;
  FILE *f;

  assert_non_null (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/doc.json", dir);
  f = fopen (path, "w");
  assert_non_null (f);
  fputs ("{\"version\": 1}\n", f);
  assert_int_equal (fclose (f), 0);
  assert_int_equal (pc_json_read_file (path, &doc), 0);
  assert_int_equal (pc_json_get_u64 (doc, pc_json_root (doc), "version", &u),
                    0);
  assert_int_equal (u, 1);
  assert_string_equal (pc_json_name (doc), path);
  pc_json_free (doc);

  /* A sparse file one byte over the limit: refused without reading it. */
  f = fopen (path, "w");
  assert_non_null (f);
  assert_int_equal (ftruncate (fileno (f), PC_JSON_MAX_SIZE + 1), 0);
  assert_int_equal (fclose (f), 0);
  assert_int_equal (pc_json_read_file (path, &doc), -EFBIG);
  assert_non_null (strstr (pc_last_error (), "larger than 4194304 bytes"));
  assert_int_equal (strncmp (pc_last_error (), path, strlen (path)), 0);

  assert_int_equal (pc_json_read_file (dir, &doc), -EISDIR);
  assert_non_null (strstr (pc_last_error (), "Is a directory"));
  snprintf (path, sizeof path, "%s/missing.json", dir);
  assert_int_equal (pc_json_read_file (path, &doc), -ENOENT);
  assert_non_null (strstr (pc_last_error (), "missing.json: No such file"));
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal (system (cmd), 0);
}

static void
test_printable (void **state)
{
  char buf[16];

  assert_string_equal (pc_json_printable ("plain", buf, sizeof buf), "plain");
  assert_string_equal (pc_json_printable ("a\x1b[2J\x7f" "b", buf, sizeof buf),
                       "a?[2J?b");
  assert_string_equal (pc_json_printable ("c1 \xc2\x9b x", buf, sizeof buf),
                       "c1 ? x");                         /* U+009B (CSI) */
  assert_string_equal (pc_json_printable ("\xc3\xa9\xff", buf, sizeof buf),
                       "\xc3\xa9?");
  assert_string_equal (pc_json_printable ("0123456789abcdefgh", buf,
                                          sizeof buf), "0123456789ab...");
  /* Cut at a character boundary: no half of a 4-byte sequence. */
  assert_string_equal (pc_json_printable ("0123456789\xf0\x9f\x98\x80", buf,
                                          sizeof buf), "0123456789...");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_types),
    cmocka_unit_test (test_navigation),
    cmocka_unit_test (test_typed_errors),
    cmocka_unit_test (test_strings),
    cmocka_unit_test (test_writer_round_trip),
    cmocka_unit_test (test_malformed),
    cmocka_unit_test (test_numbers),
    cmocka_unit_test (test_depth),
    cmocka_unit_test (test_size),
    cmocka_unit_test (test_files),
    cmocka_unit_test (test_printable),
  };

  return cmocka_run_group_tests_name ("jsonread", tests, NULL, NULL);
}
