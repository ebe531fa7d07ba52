/* punchcache: JSON -- string output for the statistics writer
 * (lib/stats.c) and the admin tool, and a strict reader for the documents
 * they write, which `punchcache stats` reads back from files anyone could
 * have written (include/punchcache/json.h has the contract).
 *
 * Output: pc_json_string writes a C string as a JSON string literal.
 * Names come from pool files and clients (untrusted), so every byte is
 * accounted for: quotes, backslashes and control characters are escaped
 * and bytes that are not valid UTF-8 (overlong forms, surrogates,
 * > U+10FFFF) become U+FFFD, so the output is always valid JSON.
 *
 * Reader: pc_json_parse validates the whole text (recursive descent) and
 * builds a flat array of values in document order, jsmn-style, in which
 * each value knows its parent and the index one past its subtree:
 *
 *   {"a": [1, 2], "b": "x"}
 *   [0] object  count 2  end 5  parent -
 *   [1] array   key "a"  count 2  end 4  parent 0
 *   [2] number 1         end 3  parent 1
 *   [3] number 2         end 4  parent 1
 *   [4] string "x" key "b"  end 5  parent 0
 *   arena: "a\0b\0x\0"   (numbers are not copied; see 2.)
 *
 * Why: skipping a subtree is O(1) (jump to end), so iterating an object's
 * members or looking one up walks only its direct children; parents give
 * every message a path ("volumes[2].name"); and a document is three
 * allocations (struct, values, arena) freed by one call, with no pointer
 * ever handed out into memory that moves after the parse.  The decoded
 * keys and strings live in one arena, NUL-terminated (\u0000 is refused,
 * so C strings lose nothing).
 *
 * Invariants (asserted where cheap):
 *  1. Every byte of the text is read at an index checked against len
 *     (peek() returns -1 at the end): the text need not be NUL-terminated.
 *  2. Arena bytes used <= text bytes consumed: a string of n text bytes
 *     decodes to at most n - 1 bytes with its NUL (an escape of 2 bytes
 *     gives 1, \uXXXX (6) at most 3, a surrogate pair (12) 4).  So an
 *     arena of len + 1 bytes never overflows, and the free arena ahead of a
 *     number (which starts at or after arena_used) holds a NUL-terminated
 *     scratch copy of it for strtod.
 *  3. Recursion: parse_value recurses only into arrays and objects, with
 *     depth + 1, after checking depth < PC_JSON_MAX_DEPTH.
 *  4. For value i: i < end, its subtree is i+1 .. end-1, and the children
 *     of a container are reached from i+1 by following end; count is their
 *     number.
 * Work: O(len log len) (each object's keys are sorted once to refuse
 * duplicates); memory: at most one 32-byte value per 2 bytes of text plus
 * an arena as long as the text -- about 17 times the input, 70 MiB for the
 * largest document accepted.
 *
 * Numbers: integer literals are accumulated exactly with an overflow check;
 * others go through strtod, which is correct as long as LC_NUMERIC is "C"
 * (the front-ends never call setlocale; a locale that is not is caught,
 * not misread).  No state, no locks.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "punchcache/json.h"
#include "punchcache/punchcache.h"

/* ---------------------------------------------------------------------- */
/* UTF-8 and output. */

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

/* A JSON string: quotes, backslashes and control characters escaped;
 * bytes that are not valid UTF-8 become U+FFFD.  (utf8_len stops at the
 * NUL: it is no continuation byte.) */
void
pc_json_string (FILE *f, const char *str)
{
  const unsigned char *s = (const unsigned char *) str;
  int n;

  putc ('"', f);
  while (*s) {
    if (*s == '"' || *s == '\\') fprintf (f, "\\%c", *s);
    else if (*s == '\n') fputs ("\\n", f);
    else if (*s == '\t') fputs ("\\t", f);
    else if (*s < 0x20 || *s == 0x7f) fprintf (f, "\\u%04x", *s);
    else if ((n = utf8_len (s, 4)) == 0) fputs ("\\ufffd", f);
    else { fwrite (s, 1, (size_t) n, f); s += n; continue; }
    s++;
  }
  putc ('"', f);
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
    n = utf8_len (s, 4);
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
/* The document. */

#define NO_INDEX UINT32_MAX

struct pc_json_value {
  uint8_t type;                 /* enum pc_json_type */
  bool is_uint;                 /* number: an integer literal >= 0 (in u) */
  uint32_t parent;              /* container's index; NO_INDEX for the root */
  uint32_t end;                 /* one past the last value of the subtree */
  uint32_t key;                 /* object member: arena offset of its key */
  uint32_t count;               /* array, object: children; string: bytes */
  union {
    uint64_t u;                 /* number, is_uint */
    double d;                   /* number, !is_uint */
    uint32_t str;               /* string: arena offset */
    bool b;                     /* bool */
  } v;
};

struct pc_json_doc {
  char *name;                   /* first word of every message */
  struct pc_json_value *values; /* values[0] is the root */
  uint32_t nvalues, cap;
  char *arena;                  /* decoded keys and strings */
  size_t arena_used;
};

struct parser {
  const unsigned char *s;
  size_t len, pos;
  struct pc_json_doc *doc;
};

void
pc_json_free (struct pc_json_doc *doc)
{
  if (doc == NULL) return;
  free (doc->name);
  free (doc->values);
  free (doc->arena);
  free (doc);
}

/* ---------------------------------------------------------------------- */
/* Syntax errors: "NAME: line L, column C: MESSAGE". */

static int
peek (const struct parser *p)
{
  return p->pos < p->len ? p->s[p->pos] : -1;
}

static void
skip_ws (struct parser *p)
{
  int c;

  while ((c = peek (p)) == ' ' || c == '\t' || c == '\n' || c == '\r')
    p->pos++;
}

static int syntax_error (const struct parser *p, size_t at, const char *fmt,
                         ...) __attribute__ ((format (printf, 3, 4)));

static int
syntax_error (const struct parser *p, size_t at, const char *fmt, ...)
{
  size_t line = 1, bol = 0, i;
  char msg[256];
  va_list ap;

  for (i = 0; i < at && i < p->len; i++)
    if (p->s[i] == '\n') { line++; bol = i + 1; }
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  return pc_error (EINVAL, "%s: line %zu, column %zu: %s", p->doc->name,
                   line, at - bol + 1, msg);
}

/* "expected WHAT, found 'x'" at the current position. */
static int
expected (const struct parser *p, const char *what)
{
  int c = peek (p);
  char found[16];

  if (c < 0) snprintf (found, sizeof found, "end of file");
  else if (c > 0x20 && c < 0x7f) snprintf (found, sizeof found, "'%c'", c);
  else snprintf (found, sizeof found, "byte 0x%02x", (unsigned) c);
  return syntax_error (p, p->pos, "expected %s, found %s", what, found);
}

/* ---------------------------------------------------------------------- */
/* Scalars. */

static int
new_value (struct parser *p, enum pc_json_type type, uint32_t parent,
           uint32_t key, uint32_t *out)
{
  struct pc_json_doc *d = p->doc;

  if (d->nvalues == d->cap) {
    uint32_t cap = d->cap ? d->cap * 2 : 64;
    void *nv = realloc (d->values, (size_t) cap * sizeof *d->values);
    if (nv == NULL)
      return pc_error (ENOMEM, "%s: out of memory", d->name);
    d->values = nv;
    d->cap = cap;
  }
  d->values[d->nvalues] = (struct pc_json_value) {
    .type = type, .parent = parent, .key = key, .end = d->nvalues + 1 };
  *out = d->nvalues++;
  return 0;
}

static int
hex4 (struct parser *p, size_t at, uint32_t *out)
{
  *out = 0;
  for (int i = 0; i < 4; i++) {
    int c = peek (p), v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else return syntax_error (p, at, "\\u must be followed by four hex "
                              "digits");
    *out = *out << 4 | (uint32_t) v;
    p->pos++;
  }
  return 0;
}

static int
utf8_encode (uint32_t cp, char *o)
{
  if (cp < 0x80) { o[0] = (char) cp; return 1; }
  if (cp < 0x800) {
    o[0] = (char) (0xc0 | cp >> 6); o[1] = (char) (0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char) (0xe0 | cp >> 12); o[1] = (char) (0x80 | (cp >> 6 & 0x3f));
    o[2] = (char) (0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char) (0xf0 | cp >> 18); o[1] = (char) (0x80 | (cp >> 12 & 0x3f));
  o[2] = (char) (0x80 | (cp >> 6 & 0x3f)); o[3] = (char) (0x80 | (cp & 0x3f));
  return 4;
}

/* \uXXXX (p->pos after the 'u'), with surrogate pairs. */
static int
parse_u_escape (struct parser *p, size_t at, char *o)
{
  uint32_t cp, lo;
  int r;

  if ((r = hex4 (p, at, &cp)) < 0) return r;
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return syntax_error (p, at, "\\u%04x is a low surrogate without a high "
                         "one before it", cp);
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (peek (p) != '\\' || p->pos + 1 >= p->len || p->s[p->pos + 1] != 'u')
      return syntax_error (p, at, "\\u%04x (a high surrogate) is not "
                           "followed by a \\u low surrogate", cp);
    p->pos += 2;
    if ((r = hex4 (p, p->pos - 2, &lo)) < 0) return r;
    if (lo < 0xdc00 || lo > 0xdfff)
      return syntax_error (p, at, "\\u%04x (a high surrogate) is followed "
                           "by \\u%04x, not by a low surrogate", cp, lo);
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  if (cp == 0)
    return syntax_error (p, at, "\\u0000 is not allowed (strings are read "
                         "as C strings)");
  return utf8_encode (cp, o);
}

/* One escape (p->pos at the backslash): bytes written to o, or -errno. */
static int
parse_escape (struct parser *p, char *o)
{
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  size_t at = p->pos;
  const char *e;
  int c;

  p->pos++;
  c = peek (p);
  if (c == 'u') {
    p->pos++;
    return parse_u_escape (p, at, o);
  }
  if (c <= 0 || (e = strchr (from, c)) == NULL)
    return syntax_error (p, at, "invalid escape (valid: \\\" \\\\ \\/ \\b "
                         "\\f \\n \\r \\t \\uXXXX)");
  *o = to[e - from];
  p->pos++;
  return 1;
}

/* A string (p->pos at its opening quote) decoded into the arena: sets the
 * arena offset and length. */
static int
parse_string (struct parser *p, uint32_t *off, uint32_t *len)
{
  struct pc_json_doc *d = p->doc;
  char *o = d->arena + d->arena_used;
  size_t n = 0, start = p->pos;
  int c, r;

  for (p->pos++; (c = peek (p)) != '"'; ) {
    if (c < 0)
      return syntax_error (p, start, "string not terminated (no closing '\"' "
                           "before the end of file)");
    if (c < 0x20)
      return syntax_error (p, p->pos, "control character 0x%02x in a string "
                           "(write it as \\u%04x)", (unsigned) c, (unsigned) c);
    if (c == '\\') r = parse_escape (p, o + n);
    else if ((r = utf8_len (p->s + p->pos, p->len - p->pos)) == 0)
      return syntax_error (p, p->pos, "invalid UTF-8 (byte 0x%02x) in a "
                           "string", (unsigned) c);
    else { memcpy (o + n, p->s + p->pos, (size_t) r); p->pos += (size_t) r; }
    if (r < 0) return r;
    n += (size_t) r;
  }
  p->pos++;
  o[n] = '\0';
  *off = (uint32_t) d->arena_used;
  *len = (uint32_t) n;
  d->arena_used += n + 1;
  assert (d->arena_used <= p->pos);             /* invariant 2 */
  return 0;
}

static size_t
skip_digits (struct parser *p)
{
  size_t start = p->pos;
  int c;

  while ((c = peek (p)) >= '0' && c <= '9') p->pos++;
  return p->pos - start;
}

/* Accumulate the integer part exactly; false on overflow of uint64. */
static bool
integer_value (const unsigned char *s, size_t n, uint64_t *u)
{
  *u = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned d = s[i] - '0';
    if (*u > (UINT64_MAX - d) / 10) return false;
    *u = *u * 10 + d;
  }
  return true;
}

/* Non-integers: strtod on a scratch copy in the free arena (invariant 2). */
static int
real_value (struct parser *p, size_t start, double *d)
{
  size_t n = p->pos - start;
  char *tmp = p->doc->arena + p->doc->arena_used, *end;

  assert (p->doc->arena_used + n + 1 <= p->len + 1);
  memcpy (tmp, p->s + start, n);
  tmp[n] = '\0';
  *d = strtod (tmp, &end);
  if (end != tmp + n)
    return syntax_error (p, start, "number not understood by strtod (is "
                         "LC_NUMERIC not \"C\"?)");
  if (isinf (*d))
    return syntax_error (p, start, "number %.24s%s is too large", tmp,
                         n > 24 ? "..." : "");
  return 0;
}

static int
parse_number (struct parser *p, struct pc_json_value *v)
{
  size_t start = p->pos, ndig;
  bool neg = peek (p) == '-', integer = true;
  uint64_t u;

  p->pos += neg;
  if ((ndig = skip_digits (p)) == 0) return expected (p, "a digit");
  if (ndig > 1 && p->s[p->pos - ndig] == '0')
    return syntax_error (p, start, "a number must not start with 0");
  if (peek (p) == '.') {
    p->pos++;
    integer = false;
    if (skip_digits (p) == 0) return expected (p, "a digit after '.'");
  }
  if (peek (p) == 'e' || peek (p) == 'E') {
    p->pos++;
    integer = false;
    if (peek (p) == '+' || peek (p) == '-') p->pos++;
    if (skip_digits (p) == 0) return expected (p, "a digit in the exponent");
  }
  if (!integer)
    return real_value (p, start, &v->v.d);
  if (!integer_value (p->s + start + neg, ndig, &u) ||
      (neg && u > (uint64_t) INT64_MAX + 1))
    return syntax_error (p, start, "integer %.*s%s is out of range (-2^63 "
                         "to 2^64-1)", (int) (ndig > 24 ? 24 : ndig + neg),
                         (const char *) p->s + start, ndig > 24 ? "..." : "");
  if (neg) v->v.d = -(double) u;
  else { v->is_uint = true; v->v.u = u; }
  return 0;
}

static int
parse_literal (struct parser *p, struct pc_json_value *v)
{
  static const struct { const char *word; uint8_t type; bool b; } lit[] = {
    { "true", PC_JSON_BOOL, true }, { "false", PC_JSON_BOOL, false },
    { "null", PC_JSON_NULL, false },
  };

  for (size_t i = 0; i < sizeof lit / sizeof lit[0]; i++) {
    size_t n = strlen (lit[i].word);
    if (p->len - p->pos >= n && memcmp (p->s + p->pos, lit[i].word, n) == 0) {
      v->type = lit[i].type;
      v->v.b = lit[i].b;
      p->pos += n;
      return 0;
    }
  }
  return expected (p, "a value");
}

/* ---------------------------------------------------------------------- */
/* Containers. */

static int parse_value (struct parser *p, unsigned depth, uint32_t parent,
                        uint32_t key);

static int
compare_keys (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The members of object i (just parsed) must have distinct keys. */
static int
check_duplicate_keys (struct parser *p, uint32_t i, size_t start)
{
  struct pc_json_doc *d = p->doc;
  uint32_t n = d->values[i].count, k = 0, j;
  const char **keys;
  int r = 0;

  if (n < 2) return 0;
  if ((keys = malloc (n * sizeof *keys)) == NULL)
    return pc_error (ENOMEM, "%s: out of memory", d->name);
  for (j = i + 1; j < d->nvalues; j = d->values[j].end)
    keys[k++] = d->arena + d->values[j].key;
  assert (k == n);                              /* invariant 4 */
  qsort (keys, n, sizeof *keys, compare_keys);
  for (j = 1; j < n && r == 0; j++)
    if (strcmp (keys[j - 1], keys[j]) == 0) {
      char shown[64];
      r = syntax_error (p, start, "duplicate key \"%s\" in this object",
                        pc_json_printable (keys[j], shown, sizeof shown));
    }
  free (keys);
  return r;
}

static int
parse_array (struct parser *p, unsigned depth, uint32_t i)
{
  int r;

  p->pos++;
  skip_ws (p);
  if (peek (p) == ']') { p->pos++; return 0; }
  for (;;) {
    if ((r = parse_value (p, depth + 1, i, NO_INDEX)) < 0) return r;
    p->doc->values[i].count++;
    skip_ws (p);
    if (peek (p) == ']') { p->pos++; return 0; }
    if (peek (p) != ',') return expected (p, "',' or ']'");
    p->pos++;
  }
}

static int
parse_object (struct parser *p, unsigned depth, uint32_t i)
{
  size_t start = p->pos;
  uint32_t key, klen;
  int r;

  p->pos++;
  skip_ws (p);
  if (peek (p) == '}') { p->pos++; return 0; }
  for (;;) {
    skip_ws (p);
    if (peek (p) != '"') return expected (p, "'\"' (a key)");
    if ((r = parse_string (p, &key, &klen)) < 0) return r;
    skip_ws (p);
    if (peek (p) != ':') return expected (p, "':'");
    p->pos++;
    if ((r = parse_value (p, depth + 1, i, key)) < 0) return r;
    p->doc->values[i].count++;
    skip_ws (p);
    if (peek (p) == '}') { p->pos++; return check_duplicate_keys (p, i, start); }
    if (peek (p) != ',') return expected (p, "',' or '}'");
    p->pos++;
  }
}

static int
parse_value (struct parser *p, unsigned depth, uint32_t parent, uint32_t key)
{
  struct pc_json_value *v;
  uint32_t i = 0;                       /* set by new_value */
  int c, r;

  skip_ws (p);
  c = peek (p);
  if ((c == '[' || c == '{') && depth >= PC_JSON_MAX_DEPTH)
    return syntax_error (p, p->pos, "nested more than %d levels deep",
                         PC_JSON_MAX_DEPTH);           /* invariant 3 */
  r = new_value (p, c == '[' ? PC_JSON_ARRAY : c == '{' ? PC_JSON_OBJECT :
                 c == '"' ? PC_JSON_STRING : PC_JSON_NUMBER, parent, key, &i);
  if (r < 0) return r;
  v = &p->doc->values[i];               /* valid until the next new_value */
  if (c == '[') r = parse_array (p, depth, i);
  else if (c == '{') r = parse_object (p, depth, i);
  else if (c == '"') r = parse_string (p, &v->v.str, &v->count);
  else if (c == '-' || (c >= '0' && c <= '9')) r = parse_number (p, v);
  else r = parse_literal (p, v);
  p->doc->values[i].end = p->doc->nvalues;
  return r;
}

static int
too_large (const char *name)
{
  return pc_error (EFBIG, "%s: larger than %u bytes (%u MiB), the most a JSON "
                   "document may have here", name, PC_JSON_MAX_SIZE,
                   PC_JSON_MAX_SIZE >> 20);
}

int
pc_json_parse (const char *text, size_t len, const char *name,
               struct pc_json_doc **out)
{
  struct parser p = { (const unsigned char *) text, len, 0, NULL };
  struct pc_json_doc *doc;
  int r;

  if (len > PC_JSON_MAX_SIZE)
    return too_large (name);
  doc = p.doc = calloc (1, sizeof *doc);
  if (doc == NULL || (doc->name = strdup (name)) == NULL ||
      (doc->arena = malloc (len + 1)) == NULL) {
    pc_json_free (doc);
    return pc_error (ENOMEM, "%s: out of memory", name);
  }
  skip_ws (&p);
  if (p.pos == len)
    r = pc_error (EINVAL, "%s: empty (no JSON value)", name);
  else if ((r = parse_value (&p, 0, NO_INDEX, NO_INDEX)) == 0) {
    skip_ws (&p);
    if (p.pos < len) r = expected (&p, "the end of the document");
  }
  if (r < 0) {
    pc_json_free (doc);
    return r;
  }
  *out = doc;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Files. */

static int
read_all (int fd, const char *path, char **buf, size_t *len)
{
  size_t cap = 0, n = 0;
  char *b = NULL, *nb;
  ssize_t got;

  do {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > PC_JSON_MAX_SIZE + 1) cap = PC_JSON_MAX_SIZE + 1;
      if ((nb = realloc (b, cap)) == NULL) {
        free (b);
        return pc_error (ENOMEM, "%s: out of memory", path);
      }
      b = nb;
    }
    got = read (fd, b + n, cap - n);
    if (got > 0) n += (size_t) got;
  } while ((got > 0 && n <= PC_JSON_MAX_SIZE) || (got < 0 && errno == EINTR));
  if (got < 0) {
    free (b);
    return pc_error (errno, "%s: %m", path);
  }
  *buf = b;
  *len = n;
  return 0;
}

int
pc_json_read_file (const char *path, struct pc_json_doc **out)
{
  struct stat st;
  size_t len = 0;
  char *buf = NULL;
  int fd, r;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1)
    return pc_error (errno, "%s: %m", path);
  if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) &&
      st.st_size > (off_t) PC_JSON_MAX_SIZE)
    r = too_large (path);
  else
    r = read_all (fd, path, &buf, &len);
  close (fd);
  if (r == 0)
    r = pc_json_parse (buf, len, path, out);    /* refuses len > the limit */
  free (buf);
  return r;
}

/* ---------------------------------------------------------------------- */
/* Navigation. */

const char *
pc_json_name (const struct pc_json_doc *doc)
{
  return doc->name;
}

const struct pc_json_value *
pc_json_root (const struct pc_json_doc *doc)
{
  return &doc->values[0];
}

enum pc_json_type
pc_json_type (const struct pc_json_value *v)
{
  return (enum pc_json_type) v->type;
}

const char *
pc_json_type_name (enum pc_json_type type)
{
  static const char *const names[] = {
    "null", "a boolean", "a number", "a string", "an array", "an object" };

  return (unsigned) type < 6 ? names[type] : "?";
}

static bool
is_container (const struct pc_json_value *v)
{
  return v->type == PC_JSON_ARRAY || v->type == PC_JSON_OBJECT;
}

size_t
pc_json_count (const struct pc_json_value *v)
{
  return is_container (v) ? v->count : 0;
}

const struct pc_json_value *
pc_json_next (const struct pc_json_doc *doc,
              const struct pc_json_value *container,
              const struct pc_json_value *prev)
{
  uint32_t i;

  if (!is_container (container)) return NULL;
  i = prev ? prev->end : (uint32_t) (container - doc->values) + 1;
  return i < container->end ? &doc->values[i] : NULL;
}

const char *
pc_json_key (const struct pc_json_doc *doc, const struct pc_json_value *v)
{
  return v->key == NO_INDEX ? NULL : doc->arena + v->key;
}

const struct pc_json_value *
pc_json_lookup (const struct pc_json_doc *doc, const struct pc_json_value *obj,
                const char *key)
{
  const struct pc_json_value *m = NULL;

  if (obj->type != PC_JSON_OBJECT) return NULL;
  while ((m = pc_json_next (doc, obj, m)) != NULL)
    if (strcmp (pc_json_key (doc, m), key) == 0)
      return m;
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Typed access, with messages naming the path. */

const char *
pc_json_path (const struct pc_json_doc *doc, const struct pc_json_value *v,
         char *buf, size_t len)
{
  const struct pc_json_value *chain[PC_JSON_MAX_DEPTH + 1];
  size_t n = 0, o = 0;
  char shown[48];

  for (; v->parent != NO_INDEX && n < PC_JSON_MAX_DEPTH + 1;
       v = &doc->values[v->parent])
    chain[n++] = v;
  if (n == 0) return "the top level";
  buf[0] = '\0';
  while (n-- > 0 && o < len) {
    const struct pc_json_value *c = chain[n], *parent = &doc->values[c->parent];
    unsigned idx = 0;
    if (parent->type == PC_JSON_OBJECT)
      o += (size_t) snprintf (buf + o, len - o, "%s%s", o ? "." : "",
                              pc_json_printable (pc_json_key (doc, c), shown,
                                                 sizeof shown));
    else {
      for (const struct pc_json_value *e = NULL;
           (e = pc_json_next (doc, parent, e)) != c; )
        idx++;
      o += (size_t) snprintf (buf + o, len - o, "[%u]", idx);
    }
  }
  return buf;
}

static int
wrong_type (const struct pc_json_doc *doc, const struct pc_json_value *v,
            const char *want)
{
  char path[160];

  return pc_error (EINVAL, "%s: %s: expected %s, found %s", doc->name,
                   pc_json_path (doc, v, path, sizeof path), want,
                   pc_json_type_name ((enum pc_json_type) v->type));
}

int
pc_json_as_u64 (const struct pc_json_doc *doc, const struct pc_json_value *v,
                uint64_t *out)
{
  char path[160];

  if (v->type != PC_JSON_NUMBER)
    return wrong_type (doc, v, "a non-negative integer");
  if (!v->is_uint)
    return pc_error (EINVAL, "%s: %s: expected a non-negative integer, found "
                     "%g", doc->name, pc_json_path (doc, v, path, sizeof path),
                     v->v.d);
  *out = v->v.u;
  return 0;
}

int
pc_json_as_double (const struct pc_json_doc *doc,
                   const struct pc_json_value *v, double *out)
{
  if (v->type != PC_JSON_NUMBER)
    return wrong_type (doc, v, "a number");
  *out = v->is_uint ? (double) v->v.u : v->v.d;
  return 0;
}

int
pc_json_as_bool (const struct pc_json_doc *doc, const struct pc_json_value *v,
                 bool *out)
{
  if (v->type != PC_JSON_BOOL)
    return wrong_type (doc, v, "true or false");
  *out = v->v.b;
  return 0;
}

int
pc_json_as_string (const struct pc_json_doc *doc,
                   const struct pc_json_value *v, const char **out)
{
  if (v->type != PC_JSON_STRING)
    return wrong_type (doc, v, "a string");
  *out = doc->arena + v->v.str;
  return 0;
}

/* Member key of obj, any type. */
static int
find_member (const struct pc_json_doc *doc, const struct pc_json_value *obj,
             const char *key, const struct pc_json_value **out)
{
  char path[160];

  if (obj->type != PC_JSON_OBJECT)
    return wrong_type (doc, obj, "an object");
  if ((*out = pc_json_lookup (doc, obj, key)) == NULL)
    return pc_error (ENOENT, "%s: %s: no member \"%s\"", doc->name,
                     pc_json_path (doc, obj, path, sizeof path), key);
  return 0;
}

int
pc_json_expect (const struct pc_json_doc *doc, const struct pc_json_value *v,
                enum pc_json_type type)
{
  return v->type == type ? 0 : wrong_type (doc, v, pc_json_type_name (type));
}

int
pc_json_member (const struct pc_json_doc *doc, const struct pc_json_value *obj,
                const char *key, enum pc_json_type type,
                const struct pc_json_value **out)
{
  int r = find_member (doc, obj, key, out);

  return r < 0 ? r : pc_json_expect (doc, *out, type);
}

/* The getters leave the type check to pc_json_as_*, which says more. */
int
pc_json_get_u64 (const struct pc_json_doc *doc, const struct pc_json_value *obj,
                 const char *key, uint64_t *out)
{
  const struct pc_json_value *m;
  int r = find_member (doc, obj, key, &m);

  return r < 0 ? r : pc_json_as_u64 (doc, m, out);
}

int
pc_json_get_bool (const struct pc_json_doc *doc,
                  const struct pc_json_value *obj, const char *key, bool *out)
{
  const struct pc_json_value *m;
  int r = find_member (doc, obj, key, &m);

  return r < 0 ? r : pc_json_as_bool (doc, m, out);
}

int
pc_json_get_string (const struct pc_json_doc *doc,
                    const struct pc_json_value *obj, const char *key,
                    const char **out)
{
  const struct pc_json_value *m;
  int r = find_member (doc, obj, key, &m);

  return r < 0 ? r : pc_json_as_string (doc, m, out);
}
