/* Seeds for fuzz-nbdproto.c under fuzz-driver.c -- three client sessions
 * in the target's input format, every message of which is valid:
 *   0. qemu-like: structured replies, SET/LIST_META_CONTEXT, INFO and GO,
 *      then one request of every command with its flags (DF, FUA,
 *      REQ_ONE, NO_HOLE|FAST_ZERO), a WRITE with its payload;
 *   1. old-style: LIST, EXPORT_NAME, simple READ/WRITE/FLUSH/DISC;
 *   2. at the limits, read-only: a PCD_MAX_STRING name with
 *      PCD_MAX_INFO_REQUESTS infos, PCD_MAX_META_QUERIES queries, a READ
 *      of PCD_MAX_REQUEST_SIZE and a BLOCK_STATUS of the export's last
 *      byte.
 * The protocol-aware mutations keep lengths near the edges the parsers
 * check: delete or insert one byte (every later length is then one off),
 * write a big-endian length reaching exactly to the end of the input (or
 * one short or long), write a boundary count (limits and one past them),
 * change the capabilities byte, grow an INFO/GO or META_CONTEXT payload by
 * one name byte, info request or query with every length kept consistent
 * (from seed 2, one past a limit), or move a request's offset or count by
 * one or onto the end of the export.
 */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../server/protocol.h"
#include "fuzz-driver.h"

#define MAX_LEN 8192

void fuzz_nbdproto_walk (const uint8_t *data, size_t size,
                         unsigned *accepted, unsigned *rejected);

struct seed {
  uint8_t b[MAX_LEN];
  size_t n;
};
static struct seed seeds[3];

static void
put (struct seed *s, const void *p, size_t n)
{
  memcpy (s->b + s->n, p, n);
  s->n += n;
}

static void
put32 (struct seed *s, uint32_t v)
{
  pcd_put32 (s->b + s->n, v);
  s->n += 4;
}

static void
start (struct seed *s, uint8_t caps, uint64_t size, uint32_t client_flags)
{
  s->n = 0;
  s->b[s->n++] = caps;
  pcd_put64 (s->b + s->n, size);
  s->n += 8;
  put32 (s, client_flags);
}

static void
option (struct seed *s, uint32_t opt, uint32_t len)
{
  pcd_put64 (s->b + s->n, NBD_IHAVEOPT);
  s->n += 8;
  put32 (s, opt);
  put32 (s, len);
}

static void
info_go (struct seed *s, uint32_t opt, const char *name, uint32_t namelen,
         uint16_t ninfos, const uint16_t *infos)
{
  uint16_t i;

  option (s, opt, 4 + namelen + 2 + 2u * ninfos);
  put32 (s, namelen);
  put (s, name, namelen);
  pcd_put16 (s->b + s->n, ninfos);
  s->n += 2;
  for (i = 0; i < ninfos; i++, s->n += 2)
    pcd_put16 (s->b + s->n, infos[i]);
}

static void
meta (struct seed *s, uint32_t opt, const char *name, uint32_t nq,
      const char *const *q)
{
  uint32_t len = 8 + (uint32_t) strlen (name), i;

  for (i = 0; i < nq; i++)
    len += 4 + (uint32_t) strlen (q[i]);
  option (s, opt, len);
  put32 (s, (uint32_t) strlen (name));
  put (s, name, strlen (name));
  put32 (s, nq);
  for (i = 0; i < nq; i++) {
    put32 (s, (uint32_t) strlen (q[i]));
    put (s, q[i], strlen (q[i]));
  }
}

static void
request (struct seed *s, uint16_t type, uint16_t flags, uint64_t offset,
         uint32_t count)
{
  uint8_t *p = s->b + s->n;

  pcd_put32 (p, NBD_REQUEST_MAGIC);
  pcd_put16 (p + 4, flags);
  pcd_put16 (p + 6, type);
  pcd_put64 (p + 8, 0x1000 + s->n);             /* a cookie */
  pcd_put64 (p + 16, offset);
  pcd_put32 (p + 24, count);
  s->n += PCD_REQUEST_SIZE;
  if (type == NBD_CMD_WRITE) {
    memset (s->b + s->n, 0xab, count);
    s->n += count;
  }
}

static void
make_seeds (void)
{
  static const char *const alloc[] = { "base:allocation" };
  static const char *const list[] = { "base:", "base:allocation" };
  static const char *const many[PCD_MAX_META_QUERIES] = {
    [0 ... PCD_MAX_META_QUERIES - 1] = "base:allocation"
  };
  static const uint16_t infos[PCD_MAX_INFO_REQUESTS] = {
    NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_EXPORT,
  };
  static char longname[PCD_MAX_STRING];
  struct seed *s;

  memset (longname, 'v', sizeof longname);

  s = &seeds[0];
  start (s, 6, 1 << 20, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  option (s, NBD_OPT_STRUCTURED_REPLY, 0);
  meta (s, NBD_OPT_SET_META_CONTEXT, "vol", 1, alloc);
  meta (s, NBD_OPT_LIST_META_CONTEXT, "", 2, list);
  info_go (s, NBD_OPT_INFO, "vol", 3, 2, infos);
  info_go (s, NBD_OPT_GO, "vol", 3, 1, infos);
  request (s, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096);
  request (s, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 512);
  request (s, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 1 << 20);
  request (s, NBD_CMD_WRITE_ZEROES,
           NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO, 65536, 65536);
  request (s, NBD_CMD_TRIM, 0, 0, 65536);
  request (s, NBD_CMD_CACHE, 0, 0, 1 << 20);
  request (s, NBD_CMD_FLUSH, 0, 0, 0);
  request (s, NBD_CMD_DISC, 0, 0, 0);

  s = &seeds[1];
  start (s, 0, 64 << 20, NBD_FLAG_C_FIXED_NEWSTYLE);
  option (s, NBD_OPT_LIST, 0);
  option (s, NBD_OPT_EXPORT_NAME, 3);
  put (s, "vol", 3);
  request (s, NBD_CMD_READ, 0, (64 << 20) - 512, 512);
  request (s, NBD_CMD_WRITE, 0, 0, 1024);
  request (s, NBD_CMD_FLUSH, 0, 0, 0);
  request (s, NBD_CMD_DISC, 0, 0, 0);

  s = &seeds[2];
  start (s, 7, UINT64_C (1) << 40, NBD_FLAG_C_FIXED_NEWSTYLE);
  info_go (s, NBD_OPT_GO, longname, PCD_MAX_STRING, PCD_MAX_INFO_REQUESTS,
           infos);
  meta (s, NBD_OPT_SET_META_CONTEXT, "", PCD_MAX_META_QUERIES, many);
  request (s, NBD_CMD_READ, 0, 4096, PCD_MAX_REQUEST_SIZE);
  request (s, NBD_CMD_BLOCK_STATUS, 0, (UINT64_C (1) << 40) - 1, 1);
}

/* The seeds must be valid, or the run would only fuzz the first checks:
 * every message accepted, none rejected. */
static void
check_seeds (void)
{
  static const unsigned want[3] = { 1 + 5 + 8, 1 + 2 + 4, 1 + 2 + 2 };
  unsigned i, acc, rej;

  for (i = 0; i < 3; i++) {
    fuzz_nbdproto_walk (seeds[i].b, seeds[i].n, &acc, &rej);
    if (acc != want[i] || rej != 0) {
      fprintf (stderr, "fuzz-nbdproto: seed %u is not valid "
               "(%u messages accepted, %u rejected; want %u, 0)\n",
               i, acc, rej, want[i]);
      exit (1);
    }
  }
}

/* Where the messages of an input start: option headers whose payload is
 * wholly inside, then request headers (as fuzz_nbdproto_walk reads). */
struct layout {
  unsigned nopts, nreqs;
  size_t opt[64], req[64];
};

static void
locate (const uint8_t *buf, size_t len, struct layout *l)
{
  size_t pos = 13, n;

  l->nopts = l->nreqs = 0;
  while (len >= pos + PCD_OPTION_HEADER_SIZE &&
         pcd_get64 (buf + pos) == NBD_IHAVEOPT) {
    n = pcd_get32 (buf + pos + 12);
    if (n > len - pos - PCD_OPTION_HEADER_SIZE)
      return;
    if (l->nopts < 64)
      l->opt[l->nopts++] = pos;
    pos += PCD_OPTION_HEADER_SIZE + n;
  }
  while (len >= pos + PCD_REQUEST_SIZE &&
         pcd_get32 (buf + pos) == NBD_REQUEST_MAGIC && l->nreqs < 64) {
    l->req[l->nreqs++] = pos;
    n = pcd_get16 (buf + pos + 6) == NBD_CMD_WRITE
        ? pcd_get32 (buf + pos + 24) : 0;
    pos += PCD_REQUEST_SIZE;
    pos += len - pos < n ? len - pos : n;
  }
}

static void
add32 (uint8_t *p, uint32_t d)
{
  pcd_put32 (p, pcd_get32 (p) + d);
}

/* Insert n bytes of src at buf[at] (len bytes, room for max), or return
 * false. */
static bool
insert (uint8_t *buf, size_t *len, size_t max, size_t at, const void *src,
        size_t n)
{
  if (*len + n > max || at > *len)
    return false;
  memmove (buf + at + n, buf + at, *len - at);
  memcpy (buf + at, src, n);
  *len += n;
  return true;
}

/* Grow an INFO/GO or META_CONTEXT payload by one name byte, one info
 * request or one query, keeping every length consistent: from the seed at
 * the limits, one step past them. */
static size_t
grow_option (const struct fuzz_seeds *s, uint8_t *buf, size_t len,
             size_t hdr)
{
  uint32_t opt = pcd_get32 (buf + hdr + 8), plen = pcd_get32 (buf + hdr + 12);
  uint8_t *p = buf + hdr + PCD_OPTION_HEADER_SIZE;
  size_t end = hdr + PCD_OPTION_HEADER_SIZE + plen;
  uint32_t namelen = plen >= 4 ? pcd_get32 (p) : UINT32_MAX;
  size_t cnt = hdr + PCD_OPTION_HEADER_SIZE + 4 + (size_t) namelen;
  bool info = opt == NBD_OPT_INFO || opt == NBD_OPT_GO;
  static const uint8_t query[9] = { 0, 0, 0, 5, 'b', 'a', 's', 'e', ':' };
  static const uint8_t two[2] = { 0, NBD_INFO_NAME };

  if (!info && opt != NBD_OPT_LIST_META_CONTEXT &&
      opt != NBD_OPT_SET_META_CONTEXT)
    return len;
  if (namelen > plen - 4 || plen - 4 - namelen < (info ? 2u : 4u))
    return len;
  if (fuzz_rand () % 2) {                       /* one more name byte */
    if (insert (buf, &len, s->max_len, cnt, "x", 1)) {
      add32 (p, 1);
      add32 (buf + hdr + 12, 1);
    }
  }
  else if (info) {                              /* one more info request */
    if (insert (buf, &len, s->max_len, end, two, 2)) {
      pcd_put16 (buf + cnt, (uint16_t) (pcd_get16 (buf + cnt) + 1));
      add32 (buf + hdr + 12, 2);
    }
  }
  else if (insert (buf, &len, s->max_len, end, query, 9)) {
    add32 (buf + cnt, 1);                       /* one more query */
    add32 (buf + hdr + 12, 9);
  }
  return len;
}

/* Move a request's range by one byte, or onto the end of the export. */
static void
tweak_request (uint8_t *buf, size_t req)
{
  uint64_t size = pcd_get64 (buf + 1), off = pcd_get64 (buf + req + 16);
  uint32_t count = pcd_get32 (buf + req + 24);

  switch (fuzz_rand () % 5) {
  case 0: pcd_put32 (buf + req + 24, count + 1); break;
  case 1: pcd_put32 (buf + req + 24, count - 1); break;
  case 2: pcd_put64 (buf + req + 16, off + 1); break;
  case 3: pcd_put64 (buf + req + 16, size - count + fuzz_rand () % 3 - 1);
    break;
  case 4: pcd_put64 (buf + req + 16, UINT64_MAX - fuzz_rand () % 4096);
    break;
  }
}

static size_t
mutate_nbd (const struct fuzz_seeds *s, uint8_t *buf, size_t len)
{
  struct layout l;

  static const uint32_t counts[] = {
    0, 1, 2, 15, 16, PCD_MAX_INFO_REQUESTS, PCD_MAX_INFO_REQUESTS + 1,
    PCD_MAX_META_QUERIES, PCD_MAX_META_QUERIES + 1, PCD_MAX_STRING,
    PCD_MAX_STRING + 1, PCD_MAX_OPTION_LENGTH, PCD_MAX_OPTION_LENGTH + 1,
    PCD_MAX_REQUEST_SIZE, PCD_MAX_REQUEST_SIZE + 1, 0x80000000u, UINT32_MAX,
  };
  size_t at = fuzz_rand () % len;

  switch (fuzz_rand () % 7) {
  case 5:                                       /* a name, info or query */
    locate (buf, len, &l);
    if (l.nopts)
      len = grow_option (s, buf, len, l.opt[fuzz_rand () % l.nopts]);
    break;
  case 6:                                       /* a request's range */
    locate (buf, len, &l);
    if (l.nreqs)
      tweak_request (buf, l.req[fuzz_rand () % l.nreqs]);
    break;
  case 0:                                       /* delete a byte */
    if (len > 1) {
      memmove (buf + at, buf + at + 1, len - at - 1);
      len--;
    }
    break;
  case 1:                                       /* insert a byte */
    if (len < s->max_len) {
      memmove (buf + at + 1, buf + at, len - at);
      buf[at] = (uint8_t) fuzz_rand ();
      len++;
    }
    break;
  case 2:                                       /* a length to the end, +-1 */
    if (at + 4 <= len)
      pcd_put32 (buf + at, (uint32_t) (len - at - 4 + fuzz_rand () % 3 - 1));
    break;
  case 3:                                       /* a boundary count */
    if (at + 4 <= len)
      pcd_put32 (buf + at, counts[fuzz_rand () % (sizeof counts /
                                                  sizeof counts[0])]);
    break;
  case 4:                                       /* other capabilities */
    buf[0] = (uint8_t) fuzz_rand ();
    break;
  }
  return len;
}

void
fuzz_get_seeds (struct fuzz_seeds *s)
{
  make_seeds ();
  check_seeds ();
  *s = (struct fuzz_seeds) {
    .name = "fuzz-nbdproto", .max_len = MAX_LEN, .n = 3,
    .data = { seeds[0].b, seeds[1].b, seeds[2].b },
    .len = { seeds[0].n, seeds[1].n, seeds[2].n },
    .grow = true, .max_changes = 4, .mutate = mutate_nbd,
  };
}
