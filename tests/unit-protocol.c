/* Description: unit tests of punchcached's NBD wire protocol
 * (server/protocol.c): every encoder against hand-written big-endian
 * bytes (and never a byte past what it says it wrote), every parser's
 * acceptance of a valid message and its rejections -- bad magic, payloads
 * one byte short and one byte long, strings at and past PCD_MAX_STRING,
 * NUL bytes in strings, too many info requests and meta context queries,
 * length fields pointing past the payload --, pcd_check_request for every
 * (command, flag) pair and for each negotiated capability, ranges at the
 * end of the export and across 2^64, count 0 and READ/WRITE past
 * PCD_MAX_REQUEST_SIZE, and the errno -> NBD error mapping.
 *
 * Parsers are given heap buffers of exactly the length they are told, so
 * a run under valgrind or ASan also catches any read past the end.
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../server/protocol.h"

#define CANARY 0xa5

/* ---- helpers ---- */

/* Run an encoder's output check: n bytes written equal want[0..n-1] and
 * the byte after them is still the canary. */
static void
check_bytes (const uint8_t *buf, size_t n, const uint8_t *want, size_t wantlen)
{
  assert_int_equal (n, wantlen);
  assert_memory_equal (buf, want, wantlen);
  assert_int_equal (buf[n], CANARY);
}

/* A message under construction, then copied to an exact-size heap buffer. */
struct msg {
  uint8_t b[8 * 4096 + 1024];
  size_t n;
};

static void
put32 (struct msg *m, uint32_t v)
{
  pcd_put32 (m->b + m->n, v);
  m->n += 4;
}

static void
put16 (struct msg *m, uint16_t v)
{
  pcd_put16 (m->b + m->n, v);
  m->n += 2;
}

static void
putstr (struct msg *m, const char *s, size_t len)
{
  memcpy (m->b + m->n, s, len);
  m->n += len;
}

/* A string of len 'x' bytes in a static buffer. */
static const char *
xs (size_t len)
{
  static char x[PCD_MAX_STRING + 2];

  assert_true (len <= sizeof x);
  memset (x, 'x', sizeof x);
  return x;
}

/* Parse m (or its first/extra byte variants) from an exact-size copy. */
static int
parse_info_go (const struct msg *m, size_t len, struct pcd_info_go *out)
{
  uint8_t *copy = malloc (len ? len : 1);
  int r;

  assert_non_null (copy);
  memcpy (copy, m->b, len);
  r = pcd_parse_info_go (copy, (uint32_t) len, out);
  free (copy);
  return r;
}

static int
parse_meta (const struct msg *m, size_t len, struct pcd_meta_query *out)
{
  uint8_t *copy = malloc (len ? len : 1);
  int r;

  assert_non_null (copy);
  memcpy (copy, m->b, len);
  r = pcd_parse_meta_context (copy, (uint32_t) len, out);
  free (copy);
  return r;
}

/* ---- encoders ---- */

static void
test_encode_handshake (void **state)
{
  uint8_t buf[256];
  static const uint8_t greeting[] = {
    'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C',
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0x00, 0x03,
  };
  static const uint8_t rep[] = {
    0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
    0x00, 0x00, 0x00, 0x07, 0x80, 0x00, 0x00, 0x09, 0x01, 0x02, 0x03, 0x04,
  };
  static const uint8_t server[] = {
    0x00, 0x00, 0x00, 0x02, 'a', 'b', 'x', 'y', 'z',
  };
  static const uint8_t server_nodesc[] = { 0x00, 0x00, 0x00, 0x00 };
  static const uint8_t info_export[] = {
    0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0d, 0x4f,
  };
  static const uint8_t block_size[] = {
    0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00,
    0x02, 0x00, 0x00, 0x00,
  };
  static const uint8_t info_name[] = { 0x00, 0x01, 'v', 'o', 'l' };
  static const uint8_t meta[] = {
    0xde, 0xad, 0xbe, 0xef, 'b', 'a', 's', 'e', ':', 'a',
  };

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_greeting (buf), greeting, sizeof greeting);
  assert_int_equal (sizeof greeting, PCD_GREETING_SIZE);

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_option_reply (buf, NBD_OPT_GO,
                                             NBD_REP_ERR_TOO_BIG, 0x01020304),
               rep, sizeof rep);
  assert_int_equal (sizeof rep, PCD_OPTION_REPLY_HEADER_SIZE);

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_rep_server (buf, "ab", 2, "xyz", 3),
               server, sizeof server);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_rep_server (buf, "", 0, NULL, 0),
               server_nodesc, sizeof server_nodesc);

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_info_export (buf, UINT64_C (0x0102030405060708),
                                            0x0d4f),
               info_export, sizeof info_export);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_info_block_size (buf, 1, 4096, 32 << 20),
               block_size, sizeof block_size);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_info_string (buf, NBD_INFO_NAME, "vol", 3),
               info_name, sizeof info_name);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_meta_context (buf, 0xdeadbeef, "base:a", 6),
               meta, sizeof meta);
}

static void
test_encode_export_name_reply (void **state)
{
  uint8_t buf[200], want[134] = {
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
  };                            /* 4 GiB, HAS_FLAGS|READ_ONLY, 124 zeros */

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_export_name_reply (buf, UINT64_C (1) << 32,
                                                  3, false),
               want, 134);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_export_name_reply (buf, UINT64_C (1) << 32,
                                                  3, true),
               want, 10);
}

static void
test_encode_transmission (void **state)
{
  uint8_t buf[256];
  static const uint8_t simple[] = {
    0x67, 0x44, 0x66, 0x98, 0x00, 0x00, 0x00, 0x1c,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
  };
  static const uint8_t chunk[] = {
    0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x00, 0x00, 0x01, 0x02,
  };
  static const uint8_t hole[] = {
    0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
  };
  static const uint8_t err[] = {
    0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 'b', 'a', 'd',
  };
  static const uint8_t err_nomsg[] = { 0x00, 0x00, 0x00, 0x16, 0x00, 0x00 };
  static const uint8_t extent[] = {
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
  };

  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_simple_reply (buf, UINT64_C (0x1122334455667788),
                                             NBD_ENOSPC),
               simple, sizeof simple);
  assert_int_equal (sizeof simple, PCD_SIMPLE_REPLY_SIZE);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_chunk_header (buf,
                                             UINT64_C (0x1122334455667788),
                                             NBD_REPLY_FLAG_DONE,
                                             NBD_REPLY_TYPE_ERROR, 0x102),
               chunk, sizeof chunk);
  assert_int_equal (sizeof chunk, PCD_CHUNK_HEADER_SIZE);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_offset_hole (buf, UINT64_C (1) << 31, 65536),
               hole, sizeof hole);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_error_chunk (buf, NBD_EIO, "bad", 3),
               err, sizeof err);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_error_chunk (buf, NBD_EINVAL, NULL, 0),
               err_nomsg, sizeof err_nomsg);
  memset (buf, CANARY, sizeof buf);
  check_bytes (buf, pcd_encode_extent (buf, 1 << 20,
                                       NBD_STATE_HOLE | NBD_STATE_ZERO),
               extent, sizeof extent);
}

/* ---- handshake parsers ---- */

static void
test_client_flags (void **state)
{
  static const struct { uint32_t in; int want; } cases[] = {
    { 1, 0 }, { 3, 0 },
    { 0, -EPROTO },             /* plain newstyle: not spoken */
    { 2, -EPROTO },             /* NO_ZEROES without FIXED_NEWSTYLE */
    { 5, -EPROTO }, { 1u << 31 | 1, -EPROTO }, { UINT32_MAX, -EPROTO },
  };
  uint8_t buf[4];
  uint32_t flags;
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    flags = 0xdead;
    pcd_put32 (buf, cases[i].in);
    assert_int_equal (pcd_parse_client_flags (buf, &flags), cases[i].want);
    if (cases[i].want == 0)
      assert_int_equal (flags, cases[i].in);
  }
}

static void
test_option_header (void **state)
{
  uint8_t buf[PCD_OPTION_HEADER_SIZE];
  struct pcd_option opt;
  unsigned i;

  pcd_put64 (buf, NBD_IHAVEOPT);
  pcd_put32 (buf + 8, NBD_OPT_GO);
  pcd_put32 (buf + 12, UINT32_MAX);     /* any length is returned */
  assert_int_equal (pcd_parse_option_header (buf, &opt), 0);
  assert_int_equal (opt.option, NBD_OPT_GO);
  assert_int_equal (opt.length, UINT32_MAX);

  for (i = 0; i < 8; i++) {             /* a bad magic, byte by byte */
    buf[i] ^= 0x20;
    assert_int_equal (pcd_parse_option_header (buf, &opt), -EPROTO);
    buf[i] ^= 0x20;
  }
  pcd_put64 (buf, NBD_MAGIC);
  assert_int_equal (pcd_parse_option_header (buf, &opt), -EPROTO);
}

/* ---- INFO/GO ---- */

static void
make_info_go (struct msg *m, const char *name, uint32_t namelen,
              uint16_t ninfos)
{
  uint16_t i;

  m->n = 0;
  put32 (m, namelen);
  putstr (m, name, namelen);
  put16 (m, ninfos);
  for (i = 0; i < ninfos; i++)
    put16 (m, (uint16_t) (i * 7 % 5 + 1));
}

static void
test_info_go_valid (void **state)
{
  struct msg m;
  struct pcd_info_go out;

  make_info_go (&m, "vol", 3, 2);
  assert_int_equal (m.n, 4 + 3 + 2 + 4);
  assert_int_equal (parse_info_go (&m, m.n, &out), 0);
  assert_int_equal (out.namelen, 3);
  assert_int_equal (out.ninfos, 2);
  assert_int_equal (out.infos[0], 1);
  assert_int_equal (out.infos[1], 3);

  /* The name points into the payload. */
  assert_int_equal (pcd_parse_info_go (m.b, (uint32_t) m.n, &out), 0);
  assert_ptr_equal (out.name, (const char *) m.b + 4);

  make_info_go (&m, "", 0, 0);                 /* default export, no infos */
  assert_int_equal (parse_info_go (&m, m.n, &out), 0);
  assert_int_equal (out.namelen, 0);
  assert_int_equal (out.ninfos, 0);

  make_info_go (&m, xs (PCD_MAX_STRING), PCD_MAX_STRING, 0);
  assert_int_equal (parse_info_go (&m, m.n, &out), 0);
  assert_int_equal (out.namelen, PCD_MAX_STRING);

  make_info_go (&m, "v", 1, PCD_MAX_INFO_REQUESTS);
  assert_int_equal (parse_info_go (&m, m.n, &out), 0);
  assert_int_equal (out.ninfos, PCD_MAX_INFO_REQUESTS);
  assert_int_equal (out.infos[PCD_MAX_INFO_REQUESTS - 1],
                    (PCD_MAX_INFO_REQUESTS - 1) * 7 % 5 + 1);
}

static void
test_info_go_rejects (void **state)
{
  struct msg m;
  struct pcd_info_go out;
  size_t n;

  /* Lengths that do not add up: one short, one long, every truncation. */
  make_info_go (&m, "vol", 3, 2);
  m.b[m.n] = 0;
  assert_int_equal (parse_info_go (&m, m.n - 1, &out), -EPROTO);
  assert_int_equal (parse_info_go (&m, m.n + 1, &out), -EPROTO);
  for (n = 0; n < m.n; n++)
    assert_int_equal (parse_info_go (&m, n, &out), -EPROTO);

  /* Name length one past the payload, and huge. */
  make_info_go (&m, "vol", 3, 0);
  pcd_put32 (m.b, 4);
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b, 2);                          /* one short: count misread */
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b, UINT32_MAX);
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);

  /* Info count one more / one fewer than present. */
  make_info_go (&m, "vol", 3, 2);
  pcd_put16 (m.b + 7, 3);
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);
  pcd_put16 (m.b + 7, 1);
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);

  /* Past our limits, in payloads that add up. */
  make_info_go (&m, xs (PCD_MAX_STRING + 1), PCD_MAX_STRING + 1, 0);
  assert_int_equal (parse_info_go (&m, m.n, &out), -E2BIG);
  make_info_go (&m, "v", 1, PCD_MAX_INFO_REQUESTS + 1);
  assert_int_equal (parse_info_go (&m, m.n, &out), -E2BIG);

  /* A NUL inside the name. */
  make_info_go (&m, "vo\0l", 4, 0);
  assert_int_equal (parse_info_go (&m, m.n, &out), -EPROTO);
}

/* ---- LIST/SET_META_CONTEXT ---- */

static void
make_meta (struct msg *m, const char *name, uint32_t namelen, uint32_t nq,
           const char *q, uint32_t qlen)
{
  uint32_t i;

  m->n = 0;
  put32 (m, namelen);
  putstr (m, name, namelen);
  put32 (m, nq);
  for (i = 0; i < nq; i++) {
    put32 (m, qlen);
    putstr (m, q, qlen);
  }
}

static void
test_meta_valid (void **state)
{
  struct msg m;
  struct pcd_meta_query out;

  m.n = 0;
  put32 (&m, 3);
  putstr (&m, "vol", 3);
  put32 (&m, 2);
  put32 (&m, 15);
  putstr (&m, "base:allocation", 15);
  put32 (&m, 0);                               /* an empty query */
  assert_int_equal (pcd_parse_meta_context (m.b, (uint32_t) m.n, &out), 0);
  assert_int_equal (out.namelen, 3);
  assert_memory_equal (out.name, "vol", 3);
  assert_int_equal (out.nqueries, 2);
  assert_int_equal (out.queries[0].len, 15);
  assert_ptr_equal (out.queries[0].str, (const char *) m.b + 15);
  assert_int_equal (out.queries[1].len, 0);
  assert_int_equal (parse_meta (&m, m.n, &out), 0);

  make_meta (&m, "", 0, 0, NULL, 0);           /* LIST of everything */
  assert_int_equal (m.n, 8);
  assert_int_equal (parse_meta (&m, m.n, &out), 0);
  assert_int_equal (out.nqueries, 0);

  make_meta (&m, "v", 1, PCD_MAX_META_QUERIES, "base:", 5);
  assert_int_equal (parse_meta (&m, m.n, &out), 0);
  assert_int_equal (out.nqueries, PCD_MAX_META_QUERIES);
  assert_int_equal (out.queries[PCD_MAX_META_QUERIES - 1].len, 5);

  make_meta (&m, xs (PCD_MAX_STRING), PCD_MAX_STRING, 1,
             xs (PCD_MAX_STRING), PCD_MAX_STRING);
  assert_int_equal (parse_meta (&m, m.n, &out), 0);
}

static void
test_meta_rejects (void **state)
{
  struct msg m;
  struct pcd_meta_query out;
  size_t n;

  make_meta (&m, "vol", 3, 2, "base:allocation", 15);
  m.b[m.n] = 0;
  assert_int_equal (parse_meta (&m, m.n - 1, &out), -EPROTO);
  assert_int_equal (parse_meta (&m, m.n + 1, &out), -EPROTO);
  for (n = 0; n < m.n; n++)
    assert_int_equal (parse_meta (&m, n, &out), -EPROTO);

  /* A query length one past the end, one short, and huge. */
  make_meta (&m, "vol", 3, 1, "base:allocation", 15);
  pcd_put32 (m.b + 11, 16);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b + 11, 14);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b + 11, UINT32_MAX);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);

  /* Query count one more / one fewer than present, and huge. */
  make_meta (&m, "vol", 3, 2, "base:", 5);
  pcd_put32 (m.b + 7, 3);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b + 7, 1);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  pcd_put32 (m.b + 7, UINT32_MAX);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  /* More queries than our limit, and more than the payload can hold: the
   * payload is malformed (EPROTO), not merely too big for us. */
  make_meta (&m, "v", 1, 20, "base:", 5);
  pcd_put32 (m.b + 5, PCD_MAX_META_QUERIES + 1);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);

  /* Export name length past the payload. */
  make_meta (&m, "vol", 3, 0, NULL, 0);
  pcd_put32 (m.b, 6);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);

  /* Past our limits, in payloads that add up. */
  make_meta (&m, "v", 1, PCD_MAX_META_QUERIES + 1, "base:", 5);
  assert_int_equal (parse_meta (&m, m.n, &out), -E2BIG);
  make_meta (&m, "v", 1, 1, xs (PCD_MAX_STRING + 1), PCD_MAX_STRING + 1);
  assert_int_equal (parse_meta (&m, m.n, &out), -E2BIG);
  make_meta (&m, xs (PCD_MAX_STRING + 1), PCD_MAX_STRING + 1, 0, NULL, 0);
  assert_int_equal (parse_meta (&m, m.n, &out), -E2BIG);

  /* NUL bytes. */
  make_meta (&m, "v", 1, 1, "base:allocation\0", 16);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
  make_meta (&m, "\0", 1, 0, NULL, 0);
  assert_int_equal (parse_meta (&m, m.n, &out), -EPROTO);
}

static void
test_meta_match (void **state)
{
  static const struct { const char *s; bool set, list; } cases[] = {
    { "base:allocation", true, true },
    { "base:", false, true },
    { "base:allocation2", false, false },
    { "base:allocatio", false, false },
    { "Base:allocation", false, false },
    { "base", false, false },
    { "", false, false },
    { "qemu:dirty-bitmap:x", false, false },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t len = (uint32_t) strlen (cases[i].s);
    assert_int_equal (pcd_meta_query_matches_base_allocation (cases[i].s, len,
                                                              false),
                      cases[i].set);
    assert_int_equal (pcd_meta_query_matches_base_allocation (cases[i].s, len,
                                                              true),
                      cases[i].list);
  }
  assert_int_equal (pcd_check_string (xs (PCD_MAX_STRING), PCD_MAX_STRING), 0);
  assert_int_equal (pcd_check_string (xs (PCD_MAX_STRING + 1),
                                      PCD_MAX_STRING + 1), -E2BIG);
  assert_int_equal (pcd_check_string ("a\0b", 3), -EPROTO);
  assert_int_equal (pcd_check_string ("", 0), 0);
}

/* ---- requests ---- */

static void
test_parse_request (void **state)
{
  static const uint8_t wire[PCD_REQUEST_SIZE] = {
    0x25, 0x60, 0x95, 0x13, 0x00, 0x05, 0x00, 0x01,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00,
  };
  uint8_t buf[PCD_REQUEST_SIZE];
  struct pcd_request req;

  assert_int_equal (pcd_parse_request (wire, &req), 0);
  assert_int_equal (req.flags, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF);
  assert_int_equal (req.type, NBD_CMD_WRITE);
  assert_true (req.cookie == UINT64_C (0x0102030405060708));
  assert_true (req.offset == UINT64_C (0x100000200));
  assert_int_equal (req.count, 65536);

  memcpy (buf, wire, sizeof buf);
  buf[3] ^= 1;
  assert_int_equal (pcd_parse_request (buf, &req), -EPROTO);
  pcd_put32 (buf, NBD_SIMPLE_REPLY_MAGIC);
  assert_int_equal (pcd_parse_request (buf, &req), -EPROTO);
}

#define MIB (UINT64_C (1) << 20)
static const struct pcd_export_caps all_caps = {
  .size = 16 * MIB, .structured = true, .meta_base_allocation = true,
};

static uint32_t
check (uint16_t type, uint16_t flags, uint64_t offset, uint32_t count,
       const struct pcd_export_caps *caps)
{
  struct pcd_request req = {
    .type = type, .flags = flags, .cookie = 1, .offset = offset,
    .count = count,
  };

  return pcd_check_request (&req, caps);
}

static void
test_check_types_and_flags (void **state)
{
  /* The flags each command accepts, written out from the NBD spec. */
  static const uint16_t valid[8] = {
    [NBD_CMD_READ] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
    [NBD_CMD_WRITE] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_DISC] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_FLUSH] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_TRIM] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_CACHE] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_WRITE_ZEROES] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                             NBD_CMD_FLAG_FAST_ZERO,
    [NBD_CMD_BLOCK_STATUS] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
  };
  uint16_t type, bit;

  for (type = 0; type < 8; type++) {
    assert_int_equal (check (type, 0, 0, 4096, &all_caps), 0);
    assert_int_equal (check (type, valid[type], 0, 4096, &all_caps), 0);
    for (bit = 0; bit < 16; bit++) {
      uint16_t f = (uint16_t) (1u << bit);
      assert_int_equal (check (type, f, 0, 4096, &all_caps),
                        (valid[type] & f) ? 0 : NBD_EINVAL);
    }
  }
  assert_int_equal (check (8, 0, 0, 4096, &all_caps), NBD_EINVAL);
  assert_int_equal (check (UINT16_MAX, 0, 0, 4096, &all_caps), NBD_EINVAL);
}

static void
test_check_negotiation (void **state)
{
  struct pcd_export_caps c = all_caps;
  uint16_t t;

  /* DF needs structured replies. */
  c.structured = false;
  c.meta_base_allocation = false;
  assert_int_equal (check (NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &c),
                    NBD_EINVAL);
  assert_int_equal (check (NBD_CMD_READ, 0, 0, 512, &c), 0);

  /* BLOCK_STATUS needs base:allocation (and structured replies). */
  assert_int_equal (check (NBD_CMD_BLOCK_STATUS, 0, 0, 512, &c), NBD_EINVAL);
  c.structured = true;
  assert_int_equal (check (NBD_CMD_BLOCK_STATUS, 0, 0, 512, &c), NBD_EINVAL);
  c.meta_base_allocation = true;
  assert_int_equal (check (NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 512,
                           &c), 0);
  c.structured = false;
  assert_int_equal (check (NBD_CMD_BLOCK_STATUS, 0, 0, 512, &c), NBD_EINVAL);

  /* Read-only: no WRITE, TRIM, WRITE_ZEROES (EPERM, even past the end);
   * the others are served. */
  c = all_caps;
  c.readonly = true;
  for (t = 0; t < 8; t++) {
    bool w = t == NBD_CMD_WRITE || t == NBD_CMD_TRIM ||
             t == NBD_CMD_WRITE_ZEROES;
    assert_int_equal (check (t, 0, 0, 512, &c), w ? NBD_EPERM : 0);
  }
  assert_int_equal (check (NBD_CMD_WRITE, 0, c.size, 512, &c), NBD_EPERM);
}

static void
test_check_ranges (void **state)
{
  static const uint16_t ranged[] = {
    NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_CACHE,
    NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS,
  };
  struct pcd_export_caps c = all_caps, huge = all_caps;
  uint64_t size = c.size;
  size_t i;

  huge.size = UINT64_MAX;
  for (i = 0; i < sizeof ranged / sizeof ranged[0]; i++) {
    uint16_t t = ranged[i];
    uint32_t past = t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES
                    ? NBD_ENOSPC : NBD_EINVAL;

    assert_int_equal (check (t, 0, 0, 0, &c), NBD_EINVAL);       /* count 0 */
    assert_int_equal (check (t, 0, size, 0, &c), NBD_EINVAL);
    assert_int_equal (check (t, 0, size - 1, 1, &c), 0);        /* last byte */
    assert_int_equal (check (t, 0, 0, (uint32_t) size, &c), 0); /* all */
    assert_int_equal (check (t, 0, size - 1, 2, &c), past);     /* one over */
    assert_int_equal (check (t, 0, 0, (uint32_t) size + 1, &c), past);
    assert_int_equal (check (t, 0, size, 1, &c), past);
    assert_int_equal (check (t, 0, UINT64_MAX, 1, &c), past);
    /* offset + count wraps past 2^64 to a small number (or to 0). */
    assert_int_equal (check (t, 0, UINT64_MAX - 4095, 8192, &c), past);
    assert_int_equal (check (t, 0, UINT64_MAX - 9, 11, &huge), past);
    assert_int_equal (check (t, 0, UINT64_MAX - 10, 11, &huge), past);
    assert_int_equal (check (t, 0, UINT64_MAX - 11, 11, &huge), 0);
    assert_int_equal (check (t, 0, UINT64_MAX, 1, &huge), past);
  }

  /* FLUSH and DISC ignore offset and count. */
  assert_int_equal (check (NBD_CMD_FLUSH, 0, 0, 0, &c), 0);
  assert_int_equal (check (NBD_CMD_FLUSH, 0, UINT64_MAX, UINT32_MAX, &c), 0);
  assert_int_equal (check (NBD_CMD_DISC, 0, UINT64_MAX, UINT32_MAX, &c), 0);

  /* READ/WRITE payloads at most PCD_MAX_REQUEST_SIZE; the others may
   * cover more. */
  c.size = UINT64_C (1) << 40;
  assert_int_equal (check (NBD_CMD_READ, 0, 0, PCD_MAX_REQUEST_SIZE, &c), 0);
  assert_int_equal (check (NBD_CMD_WRITE, 0, 0, PCD_MAX_REQUEST_SIZE, &c), 0);
  assert_int_equal (check (NBD_CMD_READ, 0, 0, PCD_MAX_REQUEST_SIZE + 1, &c),
                    NBD_EINVAL);
  assert_int_equal (check (NBD_CMD_WRITE, 0, 0, PCD_MAX_REQUEST_SIZE + 1, &c),
                    NBD_EINVAL);
  assert_int_equal (check (NBD_CMD_WRITE, 0, 0, UINT32_MAX, &c), NBD_EINVAL);
  assert_int_equal (check (NBD_CMD_TRIM, 0, 0, UINT32_MAX, &c), 0);
  assert_int_equal (check (NBD_CMD_WRITE_ZEROES, 0, 0, UINT32_MAX, &c), 0);
  assert_int_equal (check (NBD_CMD_BLOCK_STATUS, 0, 0, UINT32_MAX, &c), 0);
  assert_int_equal (check (NBD_CMD_CACHE, 0, 0, UINT32_MAX, &c), 0);
}

static void
test_nbd_error (void **state)
{
  static const struct { int err; uint32_t nbd; } cases[] = {
    { 0, 0 },
    { EPERM, NBD_EPERM }, { EROFS, NBD_EPERM },
    { ENOSPC, NBD_ENOSPC }, { EDQUOT, NBD_ENOSPC }, { EFBIG, NBD_ENOSPC },
    { ENOMEM, NBD_ENOMEM }, { EINVAL, NBD_EINVAL },
    { EOVERFLOW, NBD_EOVERFLOW }, { ESHUTDOWN, NBD_ESHUTDOWN },
    { ENOTSUP, NBD_ENOTSUP }, { EOPNOTSUPP, NBD_ENOTSUP },
    { EIO, NBD_EIO }, { EBADF, NBD_EIO }, { EAGAIN, NBD_EIO },
    { ENOENT, NBD_EIO }, { EPROTO, NBD_EIO }, { 9999, NBD_EIO },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal (pcd_nbd_error (cases[i].err), cases[i].nbd);
    assert_int_equal (pcd_nbd_error (-cases[i].err), cases[i].nbd);
  }
  assert_int_equal (pcd_nbd_error (INT_MIN), NBD_EIO);
  assert_int_equal (pcd_nbd_error (INT_MAX), NBD_EIO);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_encode_handshake),
    cmocka_unit_test (test_encode_export_name_reply),
    cmocka_unit_test (test_encode_transmission),
    cmocka_unit_test (test_client_flags),
    cmocka_unit_test (test_option_header),
    cmocka_unit_test (test_info_go_valid),
    cmocka_unit_test (test_info_go_rejects),
    cmocka_unit_test (test_meta_valid),
    cmocka_unit_test (test_meta_rejects),
    cmocka_unit_test (test_meta_match),
    cmocka_unit_test (test_parse_request),
    cmocka_unit_test (test_check_types_and_flags),
    cmocka_unit_test (test_check_negotiation),
    cmocka_unit_test (test_check_ranges),
    cmocka_unit_test (test_nbd_error),
  };

  return cmocka_run_group_tests_name ("unit-protocol", tests, NULL, NULL);
}
