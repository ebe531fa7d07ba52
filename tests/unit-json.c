/* Description: unit tests of what lib/stats/json.c adds to json-c.
 *  - Parsing exactly len bytes: every input is parsed from a heap copy of
 *    exactly its length, never NUL-terminated, so under valgrind or ASan a
 *    read past the end is caught.  Accepted: every kind of value, a number
 *    alone at the top level (json-c needs the end of the text to finish
 *    it), white space around.  Refused with "NAME: line L, column C: WHAT,
 *    found X": syntax errors (also on line 3), a truncated document, bytes
 *    after the value (a NUL too), a byte-order mark, invalid UTF-8; empty
 *    input; 64 levels of nesting accepted, 65 and 100000 refused; one byte
 *    over the size limit refused.
 *  - Files: over the limit refused before reading, a directory, missing.
 *  - Writing: strings with quotes, control characters and bytes that are
 *    not UTF-8 (also the overlong forms, surrogates and > U+10FFFF that
 *    json-c's own check lets through) come out as valid JSON and read back
 *    as they were, or with U+FFFD; the house format, exactly; an
 *    allocation failure (a NULL value) is not stored as null but makes
 *    pc_json_to_text fail, and later calls do nothing.
 *  - pc_utf8_valid and pc_json_printable.
 *
 * Shown to fail by deliberate mutations of lib/stats/json.c, one at a time,
 * each making `make check TESTS=tests/unit-json` fail: the check for bytes
 * after the value removed (test_malformed: "1 2" and "[1]\0" accepted);
 * pc_json_new_string passing invalid UTF-8 through to json-c
 * (test_strings: the output is not valid JSON); the NUL terminator not
 * given to json-c at the end of the text (test_parse: "42" refused);
 * pc_json_set storing a NULL value (test_build: null instead of -ENOMEM).
 */
#include <config.h>

#include <errno.h>
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
#include "punchcache/punchcache.h"

#define MAX (64u << 10)         /* the size limit the tests parse with */

/* Parse len bytes from an exact-size heap copy (no NUL after them). */
static int
parse_n (const char *text, size_t len, struct json_object **obj)
{
  char *copy = malloc (len ? len : 1);
  int r;

  assert_non_null (copy);
  memcpy (copy, text, len);
  r = pc_json_parse (copy, len, MAX, "t.json", obj);
  free (copy);                  /* the objects must not point into it */
  return r;
}

static struct json_object *
parse_ok (const char *text)
{
  struct json_object *obj;
  int r = parse_n (text, strlen (text), &obj);

  if (r != 0)
    fail_msg ("%s: %s", text, pc_last_error ());
  return obj;
}

/* text must be refused with -EINVAL and exactly this message. */
static void
refused (const char *text, size_t len, const char *msg)
{
  struct json_object *obj = (struct json_object *) 1;
  int r = parse_n (text, len, &obj);

  if (r != -EINVAL)
    fail_msg ("'%.*s' gave %d, not -EINVAL", (int) len, text, r);
  assert_null (obj);
  assert_string_equal (pc_last_error (), msg);
}
#define REFUSED(text, msg) refused ((text), sizeof (text) - 1, (msg))

/* ---- parsing ---- */

static void
test_parse (void **state)
{
  struct json_object *obj = parse_ok (
    " {\"n\": null, \"t\": true, \"u\": 18446744073709551615, \"neg\": -7,"
    "\r\n\t\"d\": 0.5, \"s\": \"x\\ty\\u00e9\\ud83d\\ude00\", \"a\": [1],"
    " \"o\": {}} \n");
  struct json_object *v;

  assert_true (json_object_is_type (obj, json_type_object));
  assert_int_equal (json_object_object_length (obj), 8);
  assert_true (json_object_object_get_ex (obj, "u", &v));
  assert_true (json_object_get_uint64 (v) == UINT64_MAX);
  assert_true (json_object_object_get_ex (obj, "s", &v));
  assert_string_equal (json_object_get_string (v),
                       "x\ty\xc3\xa9\xf0\x9f\x98\x80");
  assert_true (json_object_object_get_ex (obj, "a", &v));
  assert_string_equal (pc_json_type_name (v), "an array");
  json_object_put (obj);

  /* A number alone: json-c finishes it only at the end of the text. */
  obj = parse_ok ("42");
  assert_int_equal (json_object_get_int64 (obj), 42);
  json_object_put (obj);
  obj = parse_ok ("  -1.5\n");
  assert_true (json_object_get_double (obj) == -1.5);
  json_object_put (obj);
  obj = parse_ok ("\"only\"");
  assert_string_equal (json_object_get_string (obj), "only");
  json_object_put (obj);
}

static void
test_malformed (void **state)
{
  REFUSED ("", "t.json: empty (no JSON value)");
  REFUSED (" \n\t\r ", "t.json: empty (no JSON value)");
  REFUSED ("{", "t.json: line 1, column 2: unexpected end of data, found end "
           "of file");
  REFUSED ("[1", "t.json: line 1, column 3: unexpected end of data, found "
           "end of file");
  REFUSED ("{\"a\" 1}", "t.json: line 1, column 6: object property name "
           "separator ':' expected, found '1'");
  REFUSED ("{\n  \"a\": 1\n  \"b\": 2\n}", "t.json: line 3, column 3: "
           "object value separator ',' expected, found '\"'");
  REFUSED ("[1,]", "t.json: line 1, column 4: unexpected character, found "
           "']'");
  REFUSED ("{1:2}", "t.json: line 1, column 2: quoted object property name "
           "expected, found '1'");
  REFUSED ("1 2", "t.json: line 1, column 3: unexpected character, found "
           "'2'");
  REFUSED ("{}x", "t.json: line 1, column 3: unexpected character, found "
           "'x'");
  REFUSED ("[1]\0", "t.json: line 1, column 4: expected the end of the "
           "document, found byte 0x00");
  REFUSED ("[1,\0 2]", "t.json: line 1, column 4: unexpected end of data, "
           "found byte 0x00");
  REFUSED ("\xef\xbb\xbf{}", "t.json: line 1, column 1: invalid utf-8 "
           "string, found byte 0xef");                     /* no BOM */
  REFUSED ("[\"\xff\"]", "t.json: line 1, column 3: invalid utf-8 string, "
           "found byte 0xff");
  REFUSED ("'a'", "t.json: line 1, column 1: unexpected character, found "
           "'''");
  REFUSED ("[01]", "t.json: line 1, column 4: number expected, found ']'");
  REFUSED ("\"\\x\"", "t.json: line 1, column 3: invalid string sequence, "
           "found 'x'");
}

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
test_limits (void **state)
{
  struct json_object *obj;
  char *s;

  s = nested (PC_JSON_MAX_DEPTH, "[", "]");
  json_object_put (parse_ok (s));
  free (s);
  s = nested (PC_JSON_MAX_DEPTH + 1, "[", "]");
  refused (s, strlen (s), "t.json: line 1, column 65: nesting too deep, "
           "found '['");
  free (s);
  s = nested (100000, "[", "");             /* unterminated as well */
  refused (s, 65536, "t.json: line 1, column 65: nesting too deep, found "
           "'['");
  free (s);

  s = malloc (MAX + 1);
  assert_non_null (s);
  memset (s, ' ', MAX + 1);
  s[0] = '[';
  s[MAX - 1] = ']';
  assert_int_equal (pc_json_parse (s, MAX, MAX, "big", &obj), 0);
  json_object_put (obj);
  assert_int_equal (pc_json_parse (s, MAX + 1, MAX, "big", &obj), -EFBIG);
  assert_null (obj);
  assert_string_equal (pc_last_error (), "big: larger than 65536 bytes "
                       "(64 KiB), the most this document may have");
  free (s);
}

static void
test_files (void **state)
{
  char dir[] = "/tmp/unit-json.XXXXXX", path[64], cmd[96];
  struct json_object *obj;
  FILE *f;

  assert_non_null (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/a.json", dir);
  f = fopen (path, "w");
  assert_non_null (f);
  fputs ("{\"x\": [1,\n 2 x]}", f);
  assert_int_equal (fclose (f), 0);
  assert_int_equal (pc_json_read_file (path, MAX, &obj), -EINVAL);
  assert_non_null (strstr (pc_last_error (), "a.json: line 2, column 4: "
                           "array value separator ',' expected, found 'x'"));
  f = fopen (path, "w");
  assert_non_null (f);
  assert_int_equal (fputs ("[1]", f) >= 0, 1);
  assert_int_equal (fclose (f), 0);
  assert_int_equal (pc_json_read_file (path, 3, &obj), 0);
  assert_int_equal (json_object_array_length (obj), 1);
  json_object_put (obj);
  assert_int_equal (pc_json_read_file (path, 2, &obj), -EFBIG);
  assert_null (obj);
  assert_non_null (strstr (pc_last_error (), "a.json: larger than 2 bytes"));

  assert_int_equal (pc_json_read_file (dir, MAX, &obj), -EISDIR);
  assert_non_null (strstr (pc_last_error (), "Is a directory"));
  snprintf (path, sizeof path, "%s/missing.json", dir);
  assert_int_equal (pc_json_read_file (path, MAX, &obj), -ENOENT);
  assert_non_null (strstr (pc_last_error (), "missing.json: No such file"));
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal (system (cmd), 0);
}

/* ---- writing ---- */

/* What pc_json_new_string writes is valid JSON and reads back as it was
 * (valid UTF-8), or with U+FFFD for each invalid byte. */
static void
test_strings (void **state)
{
  static const char *const in[] = {
    "plain", "quote\" back\\slash /", "tab\tnl\ncr\rbell\a del\x7f",
    "\x01\x1f", "caf\xc3\xa9 \xf0\x9f\x98\x80", "bad \xff byte",
    "overlong \xc0\xaf", "surrogate \xed\xa0\x80", "big \xf4\x90\x80\x80",
    "cut \xe2\x82",
  };
#define FFFD "\xef\xbf\xbd"
  static const char *const out[] = {
    "plain", "quote\" back\\slash /", "tab\tnl\ncr\rbell\a del\x7f",
    "\x01\x1f", "caf\xc3\xa9 \xf0\x9f\x98\x80", "bad " FFFD " byte",
    "overlong " FFFD FFFD, "surrogate " FFFD FFFD FFFD,
    "big " FFFD FFFD FFFD FFFD, "cut " FFFD FFFD,
  };

  for (unsigned i = 0; i < sizeof in / sizeof in[0]; i++) {
    struct json_object *arr = json_object_new_array (), *back;
    char *text;
    int err = 0;

    pc_json_append (arr, pc_json_new_string (in[i]), &err);
    assert_int_equal (pc_json_to_text (arr, err, &text), 0);
    if (!pc_utf8_valid (text, strlen (text)))
      fail_msg ("string %u: the output is not UTF-8: %s", i, text);
    if (parse_n (text, strlen (text), &back) != 0)
      fail_msg ("string %u: the output is not JSON: %s", i,
                pc_last_error ());
    assert_string_equal (json_object_get_string (json_object_array_get_idx
                                                 (back, 0)), out[i]);
    json_object_put (back);
    free (text);
  }
}

static void
test_build (void **state)
{
  struct json_object *obj = json_object_new_object ();
  struct json_object *arr = json_object_new_array ();
  char *text = NULL;
  int err = 0;

  pc_json_set_u64 (obj, "u", UINT64_MAX, &err);
  pc_json_set_bool (obj, "b", true, &err);
  pc_json_set_string (obj, "s", "a/b", &err);
  pc_json_set_string (obj, "n", NULL, &err);
  pc_json_set_fixed (obj, "f", 2.0 / 3.0, 4, &err);
  pc_json_set (obj, "e", arr, &err);
  assert_int_equal (err, 0);
  assert_int_equal (pc_json_to_text (obj, err, &text), 0);
  assert_string_equal (text, "{\n  \"u\": 18446744073709551615,\n"
                       "  \"b\": true,\n  \"s\": \"a/b\",\n  \"n\": null,\n"
                       "  \"f\": 0.6667,\n  \"e\": [\n  ]\n}\n");
  free (text);

  /* A failed allocation is an error, not a null, and it sticks. */
  obj = json_object_new_object ();
  pc_json_set (obj, "lost", NULL, &err);
  assert_int_equal (err, -ENOMEM);
  pc_json_set_u64 (obj, "after", 1, &err);
  assert_int_equal (json_object_object_length (obj), 0);
  pc_json_append (NULL, json_object_new_int (1), &err);   /* released */
  text = NULL;
  assert_int_equal (pc_json_to_text (obj, err, &text), -ENOMEM);
  assert_null (text);
  err = 0;
  pc_json_set_string (NULL, "k", NULL, &err);     /* no object to add to */
  assert_int_equal (err, -ENOMEM);
}

/* ---- UTF-8 ---- */

static void
test_utf8 (void **state)
{
  assert_true (pc_utf8_valid ("", 0));
  assert_true (pc_utf8_valid ("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                              14));
  assert_true (pc_utf8_valid ("a\0b", 3));            /* NUL is U+0000 */
  assert_true (pc_utf8_valid ("\xf4\x8f\xbf\xbf", 4));       /* U+10FFFF */
  assert_false (pc_utf8_valid ("\xff", 1));
  assert_false (pc_utf8_valid ("\xc0\xaf", 2));              /* overlong */
  assert_false (pc_utf8_valid ("\xe0\x80\xaf", 3));          /* overlong */
  assert_false (pc_utf8_valid ("\xed\xa0\x80", 3));          /* surrogate */
  assert_false (pc_utf8_valid ("\xf4\x90\x80\x80", 4));      /* > U+10FFFF */
  assert_false (pc_utf8_valid ("\xe2\x82\xac", 2));   /* cut by the length */
  assert_false (pc_utf8_valid ("\x80", 1));           /* lone continuation */
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
    cmocka_unit_test (test_parse),
    cmocka_unit_test (test_malformed),
    cmocka_unit_test (test_limits),
    cmocka_unit_test (test_files),
    cmocka_unit_test (test_strings),
    cmocka_unit_test (test_build),
    cmocka_unit_test (test_utf8),
    cmocka_unit_test (test_printable),
  };

  return cmocka_run_group_tests_name ("json", tests, NULL, NULL);
}
