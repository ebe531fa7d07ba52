/* Seeds for fuzz-statsfile.c under fuzz-driver.c -- a statistics file as
 * a server of version 1 wrote it (without the fields added since), a
 * document with every kind of value, escape and number edge, and one
 * nested close to the depth limit, all valid -- and
 * JSON-aware mutations: insert a token from a dictionary (structure,
 * escapes, surrogates, number edges, bad UTF-8, deep nesting), delete a
 * span, copy a span elsewhere, change a digit (which keeps most inputs
 * valid JSON, so the statistics checks behind the syntax are reached), or
 * wrap the input in 1-16 arrays (valid and ever deeper: the depth limit).
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/json.h"
#include "punchcache/stats.h"
#include "fuzz-driver.h"

#define MAX_LEN 16384

static const char stats_seed[] =
  "{\n  \"version\": 1,\n  \"time\": 1700000000,\n  \"uptime_ms\": 5123,\n"
  "  \"pool\": {\n    \"path\": \"/var/lib/p\\u00e9 \\\"x\\\".pool\",\n"
  "    \"block_size\": 65536,\n    \"capacity\": 67108864,\n"
  "    \"used\": 196608,\n    \"free\": 66912256,\n    \"used_blocks\": 3,\n"
  "    \"free_blocks\": 1021,\n    \"commits\": 2,\n"
  "    \"metadata_ram\": 73952,\n    \"volumes\": 2,\n"
  "    \"readonly\": false,\n    \"direct_io\": false,\n"
  "    \"direct_io_note\": \"O_DIRECT refused by tmpfs\\n\"\n  },\n"
  "  \"cache\": {\n    \"enabled\": true,\n    \"budget\": 268435456,\n"
  "    \"memory\": 268433600,\n    \"page_size\": 4096,\n"
  "    \"capacity_pages\": 64710,\n    \"pages\": 10,\n    \"pending\": 0,\n"
  "    \"shards\": 64,\n    \"policy\": \"s3fifo\",\n    \"hits\": 16,\n"
  "    \"misses\": 16,\n    \"hit_rate\": 0.5000,\n    \"fills\": 16,\n"
  "    \"fills_discarded\": 1,\n    \"fills_unreserved\": 2,\n"
  "    \"evictions\": 3,\n    \"invalidations\": 4,\n    \"punched\": 16,\n"
  "    \"punch_fill_overlaps\": 0,\n    \"ghost_hits\": 5\n  },\n"
  "  \"volumes\": [\n    {\n      \"name\": \"default\",\n"
  "      \"size\": 67108864,\n      \"allocated\": 196608,\n"
  "      \"connections\": 1,\n      \"invalidate_lock\": {\n"
  "        \"shared_acquired\": 3,\n        \"shared_waits\": 1,\n"
  "        \"shared_wait_ns\": 1200,\n        \"exclusive_acquired\": 1,\n"
  "        \"exclusive_waits\": 0,\n        \"exclusive_wait_ns\": 0\n"
  "      }\n    },\n    {\n      \"name\": \"b\",\n      \"size\": 8388608,\n"
  "      \"allocated\": 0,\n      \"connections\": 0,\n"
  "      \"invalidate_lock\": {\n        \"shared_acquired\": 0,\n"
  "        \"shared_waits\": 0,\n        \"shared_wait_ns\": 0,\n"
  "        \"exclusive_acquired\": 0,\n        \"exclusive_waits\": 0,\n"
  "        \"exclusive_wait_ns\": 0\n      }\n    }\n  ],\n"
  "  \"invalidate_lock\": {\n    \"shared_acquired\": 3,\n"
  "    \"shared_waits\": 1,\n    \"shared_wait_ns\": 1200,\n"
  "    \"exclusive_acquired\": 1,\n    \"exclusive_waits\": 0,\n"
  "    \"exclusive_wait_ns\": 0\n  }\n}\n";

static const char kinds_seed[] =
  " {\"n\": null, \"t\": true, \"f\": false, \"e\": [], \"o\": {},\r\n"
  "\t\"s\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t \\u00e9\\u20ac \\ud83d\\ude00 "
  "caf\xc3\xa9 \xf0\x9f\x98\x80 \\u001f\",\n"
  " \"num\": [0, -0, 7, -7, 18446744073709551615, -9223372036854775808,"
  " 0.5, -1.25e-3, 1E+2, 1.5e308, 4.9e-324, 123456789012345678901234.5],\n"
  " \"nest\": [[1, [2, {\"k\": [3]}]], {\"a\": {\"b\": {\"c\": null}}}]} ";

static char deep_seed[2 * 60 + 1];

static const struct { const char *s; size_t n; } dict[] = {
#define T(str) { str, sizeof str - 1 }
  T ("{"), T ("}"), T ("["), T ("]"), T (","), T (":"), T ("\""), T ("\\"),
  T ("\\u"), T ("\\ud83d\\ude00"), T ("\\ud800"), T ("\\udc00"),
  T ("\\u0000"), T ("\\u00"), T ("0"), T ("-0"), T ("01"), T ("-"),
  T ("1e400"), T ("1."), T (".5"), T ("18446744073709551616"),
  T ("18446744073709551615"), T ("-9223372036854775809"), T ("true"),
  T ("false"), T ("null"), T ("nul"), T ("\xf0\x9f\x98\x80"),
  T ("\xed\xa0\x80"), T ("\xe2\x82"), T ("\xc0\xaf"), T ("\x00"), T ("\x1f"),
  T ("[[[[[[[[[[[[[[[["), T ("{\"k\":"), T (" "), T ("\n"),
  T ("\"version\": 1,"), T ("\"version\": 2"), T ("\"volumes\": ["),
  T ("\"name\": \"a/b\""), T ("4294967296"), T ("\"lru\""),
  T ("NaN"), T ("Infinity"), T ("1."), T ("\"prepared_runs\": 1,"),
  T ("\"io_uring\": true,"), T ("\"io_uring_note\": \"x\","),
#undef T
};

static size_t
insert (uint8_t *buf, size_t len, size_t at, const void *p, size_t n)
{
  if (len + n > MAX_LEN) return len;
  memmove (buf + at + n, buf + at, len - at);
  memcpy (buf + at, p, n);
  return len + n;
}

static size_t
mutate_json (const struct fuzz_seeds *s, uint8_t *buf, size_t len)
{
  size_t at = fuzz_rand () % (len + 1), from = fuzz_rand () % len, n;
  uint8_t span[32];

  switch (fuzz_rand () % 5) {
  case 0: {
    size_t k = fuzz_rand () % (sizeof dict / sizeof dict[0]);
    return insert (buf, len, at, dict[k].s, dict[k].n);
  }
  case 1:                                       /* delete a span */
    n = 1 + fuzz_rand () % 16;
    if (from + n >= len) return len;
    memmove (buf + from, buf + from + n, len - from - n);
    return len - n;
  case 2:                                       /* another digit */
    for (n = 0; n < len && (buf[from] < '0' || buf[from] > '9'); n++)
      from = (from + 1) % len;
    if (n < len) buf[from] = (uint8_t) ('0' + fuzz_rand () % 10);
    return len;
  case 3:                                       /* wrap in n arrays */
    n = 1 + fuzz_rand () % 16;
    if (len + 2 * n > MAX_LEN) return len;
    memmove (buf + n, buf, len);
    memset (buf, '[', n);
    memset (buf + n + len, ']', n);
    return len + 2 * n;
  default:                                      /* copy a span elsewhere */
    n = 1 + fuzz_rand () % sizeof span;
    if (from + n > len) n = len - from;
    memcpy (span, buf + from, n);
    return insert (buf, len, at, span, n);
  }
}

/* The seeds must be valid, or the run would only fuzz the first checks. */
static void
check_seeds (const struct fuzz_seeds *s)
{
  struct json_object *obj;
  struct pc_stats st;

  for (unsigned i = 0; i < s->n; i++) {
    if (pc_json_parse ((const char *) s->data[i], s->len[i], MAX_LEN, "seed",
                       &obj) < 0) {
      fprintf (stderr, "fuzz-statsfile: seed %u: %s\n", i, pc_last_error ());
      exit (1);
    }
    json_object_put (obj);
  }
  if (pc_stats_parse (stats_seed, sizeof stats_seed - 1, "seed", &st) < 0) {
    fprintf (stderr, "fuzz-statsfile: stats seed: %s\n", pc_last_error ());
    exit (1);
  }
  pc_stats_free (&st);
}

void
fuzz_get_seeds (struct fuzz_seeds *s)
{
  memset (deep_seed, '[', 60);
  memset (deep_seed + 60, ']', 60);
  *s = (struct fuzz_seeds) {
    .name = "fuzz-statsfile", .max_len = MAX_LEN, .n = 3,
    .data = { (const uint8_t *) stats_seed, (const uint8_t *) kinds_seed,
              (const uint8_t *) deep_seed },
    .len = { sizeof stats_seed - 1, sizeof kinds_seed - 1, 120 },
    .mutate = mutate_json, .max_changes = 3,
  };
  check_seeds (s);
}
