/* punchcache: JSON through json-c -- the little json-c leaves to its
 * callers (lib/stats/json.c has the design).
 *
 *  - Writing: build json-c objects with the pc_json_set_* functions, which
 *    record an allocation failure in *err (sticky: once it is < 0, later
 *    calls only release what they are given) instead of letting json-c
 *    store a failed allocation as null; strings go through
 *    pc_json_new_string, so bytes that are not valid UTF-8 come out as
 *    U+FFFD and the text is always valid JSON.  Fill a child object before
 *    attaching it: attaching hands it over, also on failure.
 *    pc_json_to_text turns the whole into the house format.
 *  - Reading: pc_json_parse / pc_json_read_file accept exactly one JSON
 *    value, strictly (json-c's strict mode, UTF-8 checked), at most
 *    PC_JSON_MAX_DEPTH deep, and say where a document is broken ("stats.json:
 *    line 3, column 5: object value separator ',' expected, found '\"'").
 *    What json-c lets through anyway -- and callers must check where it
 *    matters -- is listed in lib/stats/json.c.
 *
 * Functions returning int return 0 or -errno, the message in
 * pc_last_error().  No state, no locks.
 */
#ifndef PUNCHCACHE_JSON_H
#define PUNCHCACHE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define PC_JSON_MAX_DEPTH 64    /* arrays and objects nested */

/* ---- writing ---- */
/* str as a JSON string, invalid UTF-8 replaced by U+FFFD; NULL on ENOMEM. */
struct json_object *pc_json_new_string (const char *str);
/* Attach v (which may be NULL: an allocation that failed) to obj as key;
 * sets *err to -ENOMEM if v or obj is NULL or json-c fails. */
void pc_json_set (struct json_object *obj, const char *key,
                  struct json_object *v, int *err);
void pc_json_set_u64 (struct json_object *obj, const char *key, uint64_t v,
                      int *err);
void pc_json_set_bool (struct json_object *obj, const char *key, bool v,
                       int *err);
/* str NULL: JSON null. */
void pc_json_set_string (struct json_object *obj, const char *key,
                         const char *str, int *err);
/* v written with exactly decimals digits after the point ("0.5000"). */
void pc_json_set_fixed (struct json_object *obj, const char *key, double v,
                        int decimals, int *err);
/* Append v (NULL: failed) to the array arr. */
void pc_json_append (struct json_object *arr, struct json_object *v,
                     int *err);
/* The text of obj (pretty-printed, two spaces, "key": value, '/' not
 * escaped, a newline at the end; malloc'd), unless err (from building it)
 * is < 0, which is returned.  Releases obj in every case. */
int pc_json_to_text (struct json_object *obj, int err, char **text);

/* ---- reading ---- */
/* Parse len bytes (need not be NUL-terminated; -EFBIG if more than max)
 * as one JSON value; name starts every message.  The caller releases *out
 * with json_object_put.  json-c takes about 250 bytes of memory per value:
 * max bounds that. */
int pc_json_parse (const char *text, size_t len, size_t max,
                   const char *name, struct json_object **out);
/* The same for a file (refused before it is read whole when it is larger
 * than max); messages start with path. */
int pc_json_read_file (const char *path, size_t max,
                       struct json_object **out);
/* "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *pc_json_type_name (const struct json_object *v);

/* ---- UTF-8 ---- */
/* Whether the len bytes at s are valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF; NUL counts as a character). */
bool pc_utf8_valid (const char *s, size_t len);
/* A copy of the UTF-8 string s safe to print on a terminal: control
 * characters (C0, DEL, C1) and invalid bytes become '?', and it is cut at
 * a character boundary with "..." to fit len bytes (len >= 4).  Returns buf. */
const char *pc_json_printable (const char *s, char *buf, size_t len);

#endif
