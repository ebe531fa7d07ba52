/* Fuzz target for punchcached's NBD protocol parsers (server/protocol.c):
 * the client flags, option headers, INFO/GO and LIST/SET_META_CONTEXT
 * payloads, EXPORT_NAME strings, request headers and pcd_check_request.
 * Builds as a libFuzzer target (clang -fsanitize=fuzzer,address) or with
 * fuzz-driver.c under gcc's AddressSanitizer (tests/test-fuzz-nbdproto.sh).
 *
 * Interpretation of the input -- a client's side of a connection, read the
 * way server/conn.c reads it:
 *   byte 0      the negotiated capabilities: bit 0 read-only, bit 1
 *               structured replies, bit 2 base:allocation;
 *   bytes 1..8  the export size (big-endian);
 *   bytes 9..12 the client flags;
 *   then option headers, each followed by its payload (the rest of the
 *   input if it claims more), until a header's magic is wrong; then
 *   28-byte requests, a WRITE followed by its payload, until one's magic
 *   is wrong or the input ends.
 * Every payload is parsed by every payload parser, from a heap copy of
 * exactly its length, so ASan reports any read past the end; every reply
 * a real server would send back is encoded into a buffer of exactly the
 * size protocol.h documents, so ASan reports any write past it.  Each
 * request is checked against all eight capability sets as well as the
 * input's.
 *
 * Oracles (abort () on a wrong answer, not only on a memory error):
 *   1. an accepted INFO/GO or META_CONTEXT payload re-adds to exactly its
 *      length, stays within PCD_MAX_STRING / PCD_MAX_INFO_REQUESTS /
 *      PCD_MAX_META_QUERIES, holds no NUL in its strings, and its pointers
 *      lie inside it; parsers return only 0, -EPROTO or -E2BIG;
 *   2. an option header or request re-encodes to the bytes it came from;
 *   3. a request pcd_check_request accepts obeys the rules restated here
 *      independently (flags per command, DF/BLOCK_STATUS negotiation,
 *      read-only, count >= 1, offset + count within the size computed
 *      without overflow, READ/WRITE payload limit), and a rejection is
 *      one of NBD_EINVAL, NBD_EPERM, NBD_ENOSPC;
 *   4. base:allocation is matched only by "base:allocation" (or "base:"
 *      when listing), and pcd_nbd_error answers only NBD error numbers.
 *
 * fuzz_nbdproto_walk is the whole interpretation; seeds-nbdproto.c calls
 * it to prove its seeds valid (every message accepted).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../server/protocol.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
void fuzz_nbdproto_walk (const uint8_t *data, size_t size,
                         unsigned *accepted, unsigned *rejected);

#define PREFIX 13                       /* caps, size, client flags */

static void
must (bool cond)
{
  if (!cond)
    abort ();
}

/* A heap buffer of exactly n bytes (n may be 0) holding src, or
 * uninitialised if src is NULL. */
static uint8_t *
exact_copy (const void *src, size_t n)
{
  uint8_t *p = malloc (n ? n : 1);

  if (p == NULL)
    abort ();
  if (src && n)
    memcpy (p, src, n);
  return p;
}

static bool
str_ok (const char *s, uint32_t len, const uint8_t *payload, uint32_t plen)
{
  const uint8_t *u = (const uint8_t *) s;

  return len <= PCD_MAX_STRING && u >= payload && len <= plen &&
         u - payload <= (ptrdiff_t) (plen - len) &&
         (len == 0 || memchr (s, '\0', len) == NULL);
}

/* Oracle 4 for one query, and the replies a server sends for it. */
static void
meta_reply (const char *q, uint32_t len)
{
  bool set = pcd_meta_query_matches_base_allocation (q, len, false);
  bool list = pcd_meta_query_matches_base_allocation (q, len, true);
  uint8_t *buf;

  must (!set || (len == 15 && memcmp (q, "base:allocation", 15) == 0));
  must (set == list || (len == 5 && memcmp (q, "base:", 5) == 0));
  buf = malloc (4 + (size_t) len);
  if (buf == NULL)
    abort ();
  must (pcd_encode_meta_context (buf, 1, q, len) == 4 + (size_t) len);
  free (buf);
}

static void
name_replies (const char *name, uint32_t len)
{
  uint8_t *buf = exact_copy (NULL, 4 + 2 * (size_t) len);

  must (pcd_encode_rep_server (buf, name, len, name, len) ==
        4 + 2 * (size_t) len);
  free (buf);
  buf = exact_copy (NULL, 2 + (size_t) len);
  must (pcd_encode_info_string (buf, NBD_INFO_NAME, name, len) ==
        2 + (size_t) len);
  free (buf);
  buf = exact_copy (NULL, 6 + (size_t) len);
  must (pcd_encode_error_chunk (buf, NBD_EINVAL, name, (uint16_t) len) ==
        6 + (size_t) len);
  free (buf);
}

/* Parse one option payload every way; return the result that counts for
 * this option. */
static int
option_payload (uint32_t option, const uint8_t *src, uint32_t len)
{
  uint8_t *p = exact_copy (src, len);
  struct pcd_info_go ig;
  struct pcd_meta_query mq;
  int rig, rmq, rname, r;
  uint32_t i;
  uint64_t sum;

  rig = pcd_parse_info_go (p, len, &ig);
  must (rig == 0 || rig == -EPROTO || rig == -E2BIG);
  if (rig == 0) {                               /* oracle 1 */
    must (ig.ninfos <= PCD_MAX_INFO_REQUESTS);
    must (str_ok (ig.name, ig.namelen, p, len));
    must ((uint64_t) 6 + ig.namelen + 2u * ig.ninfos == len);
    for (i = 0; i < ig.ninfos; i++)
      must (ig.infos[i] == pcd_get16 (p + 6 + ig.namelen + 2 * i));
    name_replies (ig.name, ig.namelen);
  }

  rmq = pcd_parse_meta_context (p, len, &mq);
  must (rmq == 0 || rmq == -EPROTO || rmq == -E2BIG);
  if (rmq == 0) {                               /* oracle 1 */
    must (mq.nqueries <= PCD_MAX_META_QUERIES);
    must (str_ok (mq.name, mq.namelen, p, len));
    sum = 8 + (uint64_t) mq.namelen;
    for (i = 0; i < mq.nqueries; i++) {
      must (str_ok (mq.queries[i].str, mq.queries[i].len, p, len));
      must ((const uint8_t *) mq.queries[i].str == p + sum + 4);
      sum += 4 + (uint64_t) mq.queries[i].len;
      meta_reply (mq.queries[i].str, mq.queries[i].len);
    }
    must (sum == len);
  }

  rname = pcd_check_string ((const char *) p, len);
  must (rname == 0 || rname == -EPROTO || rname == -E2BIG);
  must (rname != 0 || str_ok ((const char *) p, len, p, len));

  switch (option) {
  case NBD_OPT_INFO: case NBD_OPT_GO:
    r = rig; break;
  case NBD_OPT_LIST_META_CONTEXT: case NBD_OPT_SET_META_CONTEXT:
    r = rmq; break;
  case NBD_OPT_EXPORT_NAME:
    r = rname; break;
  default:                      /* ABORT, LIST, STARTTLS, STRUCTURED_REPLY */
    r = len == 0 ? 0 : -EINVAL;
  }
  free (p);
  return r;
}

/* Oracle 3: the rules of pcd_check_request, restated. */
static void
check_verdict (const struct pcd_request *rq, const struct pcd_export_caps *c,
               uint32_t e)
{
  static const uint16_t valid[8] = {
    [NBD_CMD_READ] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
    [NBD_CMD_WRITE] = NBD_CMD_FLAG_FUA, [NBD_CMD_DISC] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_FLUSH] = NBD_CMD_FLAG_FUA, [NBD_CMD_TRIM] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_CACHE] = NBD_CMD_FLAG_FUA,
    [NBD_CMD_WRITE_ZEROES] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                             NBD_CMD_FLAG_FAST_ZERO,
    [NBD_CMD_BLOCK_STATUS] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
  };
  uint16_t t = rq->type;
  bool write = t == NBD_CMD_WRITE || t == NBD_CMD_TRIM ||
               t == NBD_CMD_WRITE_ZEROES;

  must (e == 0 || e == NBD_EINVAL || e == NBD_EPERM || e == NBD_ENOSPC);
  if (e != 0) {
    must (e != NBD_ENOSPC || t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES);
    must (e != NBD_EPERM || (write && c->readonly));
    return;
  }
  must (t < 8 && (rq->flags & ~valid[t]) == 0);
  must (!(rq->flags & NBD_CMD_FLAG_DF) || c->structured);
  must (!write || !c->readonly);
  must (t != NBD_CMD_BLOCK_STATUS || (c->structured && c->meta_base_allocation));
  if (t == NBD_CMD_FLUSH || t == NBD_CMD_DISC)
    return;
  must (rq->count >= 1);
  must (rq->offset <= c->size && rq->count <= c->size - rq->offset);
  must ((t != NBD_CMD_READ && t != NBD_CMD_WRITE) ||
        rq->count <= PCD_MAX_REQUEST_SIZE);
}

/* The replies to a request, each into a buffer of exactly its size. */
static void
request_replies (const struct pcd_request *rq, uint32_t e)
{
  uint8_t *b = exact_copy (NULL, PCD_SIMPLE_REPLY_SIZE);
  must (pcd_encode_simple_reply (b, rq->cookie, e) == PCD_SIMPLE_REPLY_SIZE);
  free (b);
  b = exact_copy (NULL, PCD_CHUNK_HEADER_SIZE);
  must (pcd_encode_chunk_header (b, rq->cookie, NBD_REPLY_FLAG_DONE,
                                 NBD_REPLY_TYPE_OFFSET_HOLE, 12) ==
        PCD_CHUNK_HEADER_SIZE);
  free (b);
  b = exact_copy (NULL, 12);
  must (pcd_encode_offset_hole (b, rq->offset, rq->count) == 12);
  free (b);
  b = exact_copy (NULL, 8);
  must (pcd_encode_extent (b, rq->count, rq->flags & 3) == 8);
  free (b);
}

/* Oracle 4: only NBD error numbers, whatever the errno. */
static void
nbd_error_oracle (int err)
{
  static const uint32_t nbd_errors[] = {
    0, NBD_EPERM, NBD_EIO, NBD_ENOMEM, NBD_EINVAL, NBD_ENOSPC,
    NBD_EOVERFLOW, NBD_ENOTSUP, NBD_ESHUTDOWN,
  };
  uint32_t e = pcd_nbd_error (err);
  size_t i;

  for (i = 0; i < sizeof nbd_errors / sizeof nbd_errors[0]; i++)
    if (e == nbd_errors[i])
      return;
  abort ();
}

void
fuzz_nbdproto_walk (const uint8_t *data, size_t size,
                    unsigned *accepted, unsigned *rejected)
{
  struct pcd_export_caps caps, c;
  struct pcd_option opt;
  struct pcd_request rq;
  uint8_t again[PCD_REQUEST_SIZE];
  uint32_t flags, e;
  size_t pos = PREFIX, len;
  unsigned k;
  int r;

  *accepted = *rejected = 0;
  if (size < PREFIX)
    return;
  caps = (struct pcd_export_caps) {
    .readonly = data[0] & 1, .structured = data[0] & 2,
    .meta_base_allocation = data[0] & 4, .size = pcd_get64 (data + 1),
  };
  r = pcd_parse_client_flags (data + 9, &flags);
  must (r == 0 || r == -EPROTO);
  must (r != 0 || ((flags & 1) && flags <= 3));
  r == 0 ? ++*accepted : ++*rejected;

  /* Options, until a header's magic is wrong.  Each takes >= 16 bytes. */
  while (size - pos >= PCD_OPTION_HEADER_SIZE) {
    if (pcd_parse_option_header (data + pos, &opt) < 0) {
      must (pcd_get64 (data + pos) != NBD_IHAVEOPT);
      break;
    }
    pcd_put64 (again, NBD_IHAVEOPT);            /* oracle 2 */
    pcd_put32 (again + 8, opt.option);
    pcd_put32 (again + 12, opt.length);
    must (memcmp (again, data + pos, PCD_OPTION_HEADER_SIZE) == 0);
    pos += PCD_OPTION_HEADER_SIZE;
    len = size - pos < opt.length ? size - pos : opt.length;
    if (opt.length > PCD_MAX_OPTION_LENGTH)
      r = -E2BIG;               /* dropped unread by the server */
    else
      r = option_payload (opt.option, data + pos, (uint32_t) len);
    r == 0 ? ++*accepted : ++*rejected;
    pos += len;
  }

  /* Requests, until a magic is wrong.  Each takes >= 28 bytes. */
  while (size - pos >= PCD_REQUEST_SIZE) {
    if (pcd_parse_request (data + pos, &rq) < 0) {
      must (pcd_get32 (data + pos) != NBD_REQUEST_MAGIC);
      ++*rejected;
      break;
    }
    pcd_put32 (again, NBD_REQUEST_MAGIC);       /* oracle 2 */
    pcd_put16 (again + 4, rq.flags);
    pcd_put16 (again + 6, rq.type);
    pcd_put64 (again + 8, rq.cookie);
    pcd_put64 (again + 16, rq.offset);
    pcd_put32 (again + 24, rq.count);
    must (memcmp (again, data + pos, PCD_REQUEST_SIZE) == 0);
    pos += PCD_REQUEST_SIZE;

    nbd_error_oracle ((int) rq.count);
    nbd_error_oracle ((int) (uint32_t) rq.offset);
    e = pcd_check_request (&rq, &caps);
    check_verdict (&rq, &caps, e);
    e == 0 ? ++*accepted : ++*rejected;
    request_replies (&rq, e);
    for (k = 0; k < 8; k++) {
      c = caps;
      c.readonly = k & 1;
      c.structured = k & 2;
      c.meta_base_allocation = k & 4;
      check_verdict (&rq, &c, pcd_check_request (&rq, &c));
    }
    if (rq.type == NBD_CMD_WRITE)               /* its payload follows */
      pos += size - pos < rq.count ? size - pos : rq.count;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned accepted, rejected;
  uint8_t *b;

  fuzz_nbdproto_walk (data, size, &accepted, &rejected);

  if (size >= PREFIX) {
    nbd_error_oracle ((int) pcd_get32 (data + 9));
    b = exact_copy (NULL, 134);
    must (pcd_encode_export_name_reply (b, pcd_get64 (data + 1),
                                        (uint16_t) data[0], data[0] & 8) ==
          (data[0] & 8 ? 10u : 134u));
    free (b);
  }
  return 0;
}
