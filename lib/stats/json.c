/* punchcache: JSON through json-c -- what the statistics writer and
 * reader (lib/stats/statsfile.c) and the admin tool (tools/punchcache.c) need on
 * top of json-c (include/punchcache/json.h has the contract).
 *
 * Parsing and escaping are json-c's.  This file adds:
 *  - Valid output from untrusted strings.  Names and paths come from pool
 *    files and clients.  json-c escapes quotes, backslashes and control
 *    characters but copies bytes that are not UTF-8 as they are, which is
 *    not valid JSON; pc_json_new_string replaces each invalid byte with
 *    U+FFFD first (the string is copied only when it needs it).
 *  - Allocation failures that are not lost: json_object_object_add stores
 *    a NULL value as JSON null, so a failed json_object_new_* would become
 *    a null in the output; pc_json_set_* turn it into a sticky -ENOMEM.
 *  - One output format (pc_json_to_text), so the server's statistics file
 *    and `punchcache stats --json` are the same text.
 *  - Strict parsing of exactly len bytes with messages that say where:
 *    json-c's tokener in strict mode with its UTF-8 check, depth limited
 *    to PC_JSON_MAX_DEPTH, then nothing but white space after the value.
 *    A tokener that wants more input at the end of the text is given its
 *    terminating NUL, which ends a top-level number ("42") and otherwise
 *    gives "unexpected end of data".  Line and column are counted here
 *    from json-c's parse end.
 *
 * What json-c 0.16 lets through even in strict mode, so that callers
 * reading untrusted documents must check it where it matters (lib/
 * statsfile.c does, field by field):
 *  - integers beyond 64 bits are clamped to -2^63 or 2^64-1, silently;
 *  - NaN, Infinity, -Infinity and "1." are numbers (doubles);
 *  - "\u0000" gives a string with a NUL in it (json_object_get_string_len
 *    counts it, strlen stops there);
 *  - lone surrogate escapes become U+FFFD; the UTF-8 check refuses bytes
 *    that cannot start or continue a sequence but not overlong forms,
 *    encoded surrogates or code points above U+10FFFF (pc_utf8_valid does);
 *  - raw control characters in strings;
 *  - a duplicate key: the last one wins.
 * Memory: json-c needs about 250 bytes per value ("[{},{},...]" of 4 MiB
 * took 1 GiB), so callers bound the size of what they parse.
 *
 * No state, no locks; json-c objects are never shared between threads.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "punchcache/json.h"
#include "punchcache/punchcache.h"

/* ---------------------------------------------------------------------- */
/* UTF-8. */

/* Length of the valid UTF-8 sequence at s (1-4, at most avail bytes), or
 * 0 if invalid. */
static int
utf8_len (const unsigned char *s, size_t avail)
{
  int n, i;
  uint32_t cp;

  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) { n = 2; cp = s[0] & 0x1f; }
  else if ((s[0] & 0xf0) == 0xe0) { n = 3; cp = s[0] & 0x0f; }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) { n = 4; cp = s[0] & 0x07; }
  else return 0;
  if ((size_t) n > avail) return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

bool
pc_utf8_valid (const char *str, size_t len)
{
  const unsigned char *s = (const unsigned char *) str;
  size_t i = 0;
  int n;

  for (; i < len; i += (size_t) n)
    if ((n = utf8_len (s + i, len - i)) == 0)
      return false;
  return true;
}

const char *
pc_json_printable (const char *str, char *buf, size_t len)
{
  const unsigned char *s = (const unsigned char *) str;
  size_t o = 0;
  int n;

  if (len < 4) {                /* no room for "..." */
    if (len) buf[0] = '\0';
    return buf;
  }
  for (; *s; s += n) {
    n = utf8_len (s, 4);        /* stops at the NUL: no continuation byte */
    if (o + (n ? (size_t) n : 1) > len - 4) {
      memcpy (buf + o, "...", 3);
      o += 3;
      break;
    }
    if (n == 0 || *s < 0x20 || *s == 0x7f || (*s == 0xc2 && s[1] < 0xa0)) {
      buf[o++] = '?';
      n = n ? n : 1;
    }
    else { memcpy (buf + o, s, (size_t) n); o += (size_t) n; }
  }
  buf[o] = '\0';
  return buf;
}

/* ---------------------------------------------------------------------- */
/* Writing. */

struct json_object *
pc_json_new_string (const char *str)
{
  static const char fffd[3] = { '\xef', '\xbf', '\xbd' };
  size_t len = strlen (str), o = 0;
  struct json_object *v;
  char *copy;
  int n;

  if (len > INT_MAX / 3)
    return NULL;
  if (pc_utf8_valid (str, len))
    return json_object_new_string_len (str, (int) len);
  if ((copy = malloc (3 * len + 1)) == NULL)
    return NULL;
  for (const unsigned char *s = (const unsigned char *) str; *s; s += n) {
    if ((n = utf8_len (s, 4)) == 0) {
      memcpy (copy + o, fffd, 3);
      o += 3;
      n = 1;
    }
    else { memcpy (copy + o, s, (size_t) n); o += (size_t) n; }
  }
  v = json_object_new_string_len (copy, (int) o);
  free (copy);
  return v;
}

void
pc_json_set (struct json_object *obj, const char *key, struct json_object *v,
             int *err)
{
  if (*err < 0 || obj == NULL || v == NULL ||
      json_object_object_add (obj, key, v) < 0) {
    json_object_put (v);        /* NULL: no-op */
    if (*err == 0) *err = -ENOMEM;
  }
}

void
pc_json_set_u64 (struct json_object *obj, const char *key, uint64_t v,
                 int *err)
{
  if (*err == 0) pc_json_set (obj, key, json_object_new_uint64 (v), err);
}

void
pc_json_set_bool (struct json_object *obj, const char *key, bool v, int *err)
{
  if (*err == 0) pc_json_set (obj, key, json_object_new_boolean (v), err);
}

void
pc_json_set_string (struct json_object *obj, const char *key,
                    const char *str, int *err)
{
  if (*err < 0) return;
  if (str == NULL) {                    /* null: nothing to allocate */
    if (obj == NULL || json_object_object_add (obj, key, NULL) < 0)
      *err = -ENOMEM;
    return;
  }
  pc_json_set (obj, key, pc_json_new_string (str), err);
}

void
pc_json_set_fixed (struct json_object *obj, const char *key, double v,
                   int decimals, int *err)
{
  char text[64];

  if (*err < 0) return;
  snprintf (text, sizeof text, "%.*f", decimals, v);
  pc_json_set (obj, key, json_object_new_double_s (v, text), err);
}

void
pc_json_append (struct json_object *arr, struct json_object *v, int *err)
{
  if (*err < 0 || arr == NULL || v == NULL ||
      json_object_array_add (arr, v) < 0) {
    json_object_put (v);
    if (*err == 0) *err = -ENOMEM;
  }
}

int
pc_json_to_text (struct json_object *obj, int err, char **text)
{
  const char *s = NULL;

  if (err == 0 && obj != NULL)
    s = json_object_to_json_string_ext (obj, JSON_C_TO_STRING_PRETTY |
                                        JSON_C_TO_STRING_SPACED |
                                        JSON_C_TO_STRING_NOSLASHESCAPE);
  if (s == NULL || asprintf (text, "%s\n", s) == -1) {
    json_object_put (obj);
    return pc_error (err < 0 ? -err : ENOMEM, "out of memory formatting "
                     "JSON");
  }
  json_object_put (obj);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Reading. */

static bool
is_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "NAME: line L, column C: WHAT, found 'x'" for the byte at offset at. */
static int
syntax_error (const char *text, size_t len, const char *name, size_t at,
              const char *what)
{
  size_t line = 1, bol = 0;
  char found[16];

  for (size_t i = 0; i < at && i < len; i++)
    if (text[i] == '\n') { line++; bol = i + 1; }
  if (at >= len) snprintf (found, sizeof found, "end of file");
  else if (text[at] > 0x20 && text[at] < 0x7f)
    snprintf (found, sizeof found, "'%c'", text[at]);
  else snprintf (found, sizeof found, "byte 0x%02x",
                 (unsigned) (unsigned char) text[at]);
  return pc_error (EINVAL, "%s: line %zu, column %zu: %s, found %s", name,
                   line, at - bol + 1, what, found);
}

static int
too_large (const char *name, size_t max)
{
  return pc_error (EFBIG, "%s: larger than %zu bytes (%zu KiB), the most "
                   "this document may have", name, max, max >> 10);
}

int
pc_json_parse (const char *text, size_t len, size_t max, const char *name,
               struct json_object **out)
{
  struct json_tokener *tok;
  struct json_object *obj;
  enum json_tokener_error e;
  size_t end = 0;
  int r = 0;

  *out = NULL;
  if (len > max || len > INT_MAX)
    return too_large (name, max < INT_MAX ? max : INT_MAX);
  while (end < len && is_space (text[end])) end++;
  if (end == len)
    return pc_error (EINVAL, "%s: empty (no JSON value)", name);
  if ((tok = json_tokener_new_ex (PC_JSON_MAX_DEPTH)) == NULL)
    return pc_error (ENOMEM, "%s: out of memory", name);
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT |
                          JSON_TOKENER_VALIDATE_UTF8);
  obj = json_tokener_parse_ex (tok, text, (int) len);
  e = json_tokener_get_error (tok);
  end = json_tokener_get_parse_end (tok);
  if (e == json_tokener_continue && end == len) {
    obj = json_tokener_parse_ex (tok, "", 1);   /* the end of the text */
    e = json_tokener_get_error (tok);
  }
  if (e != json_tokener_success)
    r = syntax_error (text, len, name, end, json_tokener_error_desc (e));
  else {
    while (end < len && is_space (text[end])) end++;
    if (end < len)
      r = syntax_error (text, len, name, end, "expected the end of the "
                        "document");
  }
  json_tokener_free (tok);
  if (r < 0) {
    json_object_put (obj);
    return r;
  }
  *out = obj;
  return 0;
}

/* Up to max + 1 bytes of fd (one more than allowed shows it is too large). */
static int
read_all (int fd, const char *path, size_t max, char **buf, size_t *len)
{
  size_t cap = 0, n = 0;
  char *b = NULL, *nb;
  ssize_t got;

  do {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > max + 1) cap = max + 1;
      if ((nb = realloc (b, cap)) == NULL) {
        free (b);
        return pc_error (ENOMEM, "%s: out of memory", path);
      }
      b = nb;
    }
    got = read (fd, b + n, cap - n);
    if (got > 0) n += (size_t) got;
  } while ((got > 0 && n <= max) || (got < 0 && errno == EINTR));
  if (got < 0) {
    free (b);
    return pc_error (errno, "%s: %m", path);
  }
  *buf = b;
  *len = n;
  return 0;
}

int
pc_json_read_file (const char *path, size_t max, struct json_object **out)
{
  struct stat st;
  size_t len = 0;
  char *buf = NULL;
  int fd, r;

  *out = NULL;
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1)
    return pc_error (errno, "%s: %m", path);
  if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
      (uint64_t) st.st_size > max)
    r = too_large (path, max);
  else
    r = read_all (fd, path, max, &buf, &len);
  close (fd);
  if (r == 0)            /* refuses a file that grew, or a pipe, > max */
    r = pc_json_parse (buf, len, max, path, out);
  free (buf);
  return r;
}

const char *
pc_json_type_name (const struct json_object *v)
{
  switch (json_object_get_type (v)) {
  case json_type_null: return "null";
  case json_type_boolean: return "a boolean";
  case json_type_int: case json_type_double: return "a number";
  case json_type_string: return "a string";
  case json_type_array: return "an array";
  case json_type_object: return "an object";
  }
  return "?";
}
