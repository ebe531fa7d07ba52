/* punchcache: JSON -- string output, and a strict reader for untrusted
 * documents (lib/json.c has the design).
 *
 * Reader contract:
 *  - pc_json_parse accepts exactly one RFC 8259 value, at most
 *    PC_JSON_MAX_SIZE bytes and PC_JSON_MAX_DEPTH levels of nesting, and
 *    refuses everything else with a message naming the document, the line
 *    and column, and the problem ("stats.json: line 3, column 5: expected
 *    ',' or '}', found '\"'").  Beyond RFC 8259 it refuses duplicate keys,
 *    \u0000, and integer literals (no fraction or exponent) outside
 *    [-2^63, 2^64-1], which would otherwise be rounded.
 *  - A parsed document is immutable; every pointer into it (values, keys,
 *    strings) stays valid until pc_json_free.  Any number of threads may
 *    read one document at once; there are no locks and no global state.
 *  - Functions returning int return 0 or -errno (-EINVAL: not valid JSON,
 *    or a value of the wrong type; -ENOENT: no such member; -EFBIG: too
 *    large; -ENOMEM; open/read errors), the sentence being available from
 *    pc_last_error().  Values are named in messages by their path from the
 *    top ("cache.hits", "volumes[2].name").
 */
#ifndef PUNCHCACHE_JSON_H
#define PUNCHCACHE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- output ---- */
/* Write str as a JSON string literal (escaped; invalid UTF-8 -> U+FFFD). */
void pc_json_string (FILE *f, const char *str);

/* ---- reader ---- */
#define PC_JSON_MAX_SIZE (4u << 20)  /* bytes of one document */
#define PC_JSON_MAX_DEPTH 64         /* arrays and objects nested */

enum pc_json_type {
  PC_JSON_NULL,
  PC_JSON_BOOL,
  PC_JSON_NUMBER,
  PC_JSON_STRING,
  PC_JSON_ARRAY,
  PC_JSON_OBJECT,
};

struct pc_json_doc;
struct pc_json_value;

/* Parse len bytes of text (need not be NUL-terminated; never read past
 * len).  name (e.g. the file name) starts every message. */
int pc_json_parse (const char *text, size_t len, const char *name,
                   struct pc_json_doc **out);
/* Read and parse a file; refuses files over PC_JSON_MAX_SIZE before
 * reading them whole.  Messages start with path. */
int pc_json_read_file (const char *path, struct pc_json_doc **out);
void pc_json_free (struct pc_json_doc *doc);

const char *pc_json_name (const struct pc_json_doc *doc);
const struct pc_json_value *pc_json_root (const struct pc_json_doc *doc);
enum pc_json_type pc_json_type (const struct pc_json_value *v);
/* "a number", "an object", ... for messages. */
const char *pc_json_type_name (enum pc_json_type type);

/* Array or object: the number of elements or members (else 0). */
size_t pc_json_count (const struct pc_json_value *v);
/* Iterate over an array's elements or an object's members in document
 * order: prev NULL gives the first, then pass the last one returned (a
 * child of container).  NULL at the end, or if container is not one. */
const struct pc_json_value *pc_json_next (const struct pc_json_doc *doc,
                                          const struct pc_json_value *container,
                                          const struct pc_json_value *prev);
/* The key of an object member, or NULL for any other value. */
const char *pc_json_key (const struct pc_json_doc *doc,
                         const struct pc_json_value *v);
/* The member of obj called key, or NULL (also when obj is no object). */
const struct pc_json_value *pc_json_lookup (const struct pc_json_doc *doc,
                                            const struct pc_json_value *obj,
                                            const char *key);

/* v's path for messages: "cache.hits", "volumes[2].name", or "the top
 * level" (a static string) for the root.  Returns buf or that string. */
const char *pc_json_path (const struct pc_json_doc *doc,
                          const struct pc_json_value *v, char *buf,
                          size_t len);

/* Typed access: -EINVAL with a message naming v's path when v is of
 * another type.  as_u64 takes only integer literals >= 0 (exact); as_double
 * any number; as_string gives a NUL-terminated UTF-8 string owned by doc. */
int pc_json_as_u64 (const struct pc_json_doc *doc,
                    const struct pc_json_value *v, uint64_t *out);
int pc_json_as_double (const struct pc_json_doc *doc,
                       const struct pc_json_value *v, double *out);
int pc_json_as_bool (const struct pc_json_doc *doc,
                     const struct pc_json_value *v, bool *out);
int pc_json_as_string (const struct pc_json_doc *doc,
                       const struct pc_json_value *v, const char **out);

/* 0 if v is of that type, else -EINVAL ("volumes[1]: expected an object,
 * found a number"). */
int pc_json_expect (const struct pc_json_doc *doc,
                    const struct pc_json_value *v, enum pc_json_type type);
/* Member key of obj, of the given type: -ENOENT if obj has none ("cache:
 * no member \"hits\""), -EINVAL if obj is not an object or the member is
 * of another type. */
int pc_json_member (const struct pc_json_doc *doc,
                    const struct pc_json_value *obj, const char *key,
                    enum pc_json_type type, const struct pc_json_value **out);
/* pc_json_member followed by the pc_json_as_* of the same name. */
int pc_json_get_u64 (const struct pc_json_doc *doc,
                     const struct pc_json_value *obj, const char *key,
                     uint64_t *out);
int pc_json_get_bool (const struct pc_json_doc *doc,
                      const struct pc_json_value *obj, const char *key,
                      bool *out);
int pc_json_get_string (const struct pc_json_doc *doc,
                        const struct pc_json_value *obj, const char *key,
                        const char **out);

/* A copy of the UTF-8 string s safe to print on a terminal: control
 * characters (C0, DEL, C1) and invalid bytes become '?', and it is cut at
 * a character boundary with "..." to fit len bytes (len >= 4).  Returns buf. */
const char *pc_json_printable (const char *s, char *buf, size_t len);

#endif
