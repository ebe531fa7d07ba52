/* punchcached: the NBD wire protocol -- parsers and encoders.
 *
 * What: the implementation of server/protocol.h.  Every function is pure:
 * it reads only the bytes it is given (never past the length it is told),
 * writes only into the caller's buffer, and keeps no state, so the same
 * code serves server/conn.c and the fuzz target fuzz/fuzz-nbdproto.c.
 *
 * Structure: one parser per client message (client flags, option header,
 * INFO/GO payload, LIST/SET_META_CONTEXT payload, request header), one
 * validator for a parsed request against what the connection negotiated
 * (pcd_check_request), and one encoder per server message.  Parsers walk
 * a payload with a cursor (struct cursor below) whose every take checks
 * the bytes left first, so a length field can never move a read past the
 * end: a field claiming more than is there is -EPROTO, never an overread.
 *
 * Invariants:
 *   P1  A parser reads payload[0 .. len-1] only, and only after checking
 *       that the bytes it is about to read are inside len (cursor_take).
 *   P2  A parser succeeds only if the fields add up to exactly len: a
 *       payload one byte short or one byte long is -EPROTO, so the option
 *       stream can never get out of step with what the client meant.
 *   P3  Lengths are compared against what is left (subtractions of
 *       checked values), never added to an offset first, so no arithmetic
 *       on client values overflows (offset + count at 2^64 included).
 *   P4  Strings (export names, meta context queries) are at most
 *       PCD_MAX_STRING bytes and contain no NUL byte (the NBD spec forbids
 *       them; a NUL would let "vol\0x" select "vol" once the caller
 *       copies the name into a C string).
 *   P5  On failure the output struct may be partly filled; callers use it
 *       only after a 0 return.
 *
 * Order of the checks in pcd_check_request (the first failing one gives
 * the error): unknown type, flags not valid for the type (DF also needs
 * structured replies), write on a read-only export (EPERM), BLOCK_STATUS
 * without structured replies and base:allocation, count 0, READ/WRITE
 * count past PCD_MAX_REQUEST_SIZE, range outside the export (ENOSPC for
 * WRITE and WRITE_ZEROES, EINVAL for the others, as the NBD spec says).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "protocol.h"

/* ---- reading a payload ---- */

/* A read position in a client payload: p[0 .. left-1] is still unread. */
struct cursor {
  const uint8_t *p;
  uint32_t left;
};

/* Take n bytes: their start, or NULL (nothing consumed) if fewer are
 * left (P1). */
static const uint8_t *
cursor_take (struct cursor *c, uint32_t n)
{
  const uint8_t *at = c->p;

  if (n > c->left)
    return NULL;
  c->p += n;
  c->left -= n;
  return at;
}

static int
cursor_u32 (struct cursor *c, uint32_t *v)
{
  const uint8_t *at = cursor_take (c, 4);

  if (at == NULL)
    return -EPROTO;
  *v = pcd_get32 (at);
  return 0;
}

/* A string of len bytes at the cursor (its length already read): -EPROTO
 * if the payload ends first or it holds a NUL, -E2BIG if it is longer than
 * PCD_MAX_STRING (P4). */
static int
cursor_string (struct cursor *c, uint32_t len, const char **str)
{
  const uint8_t *at = cursor_take (c, len);

  if (at == NULL)
    return -EPROTO;
  *str = (const char *) at;
  return pcd_check_string (*str, len);
}

int
pcd_check_string (const char *str, uint32_t len)
{
  if (len > PCD_MAX_STRING)
    return -E2BIG;
  if (len > 0 && memchr (str, '\0', len) != NULL)
    return -EPROTO;
  return 0;
}

/* ---- handshake ---- */

size_t
pcd_encode_greeting (uint8_t *buf)
{
  pcd_put64 (buf, NBD_MAGIC);
  pcd_put64 (buf + 8, NBD_IHAVEOPT);
  pcd_put16 (buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  return PCD_GREETING_SIZE;
}

int
pcd_parse_client_flags (const uint8_t buf[4], uint32_t *flags)
{
  uint32_t f = pcd_get32 (buf);

  if (f & ~(uint32_t) (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
    return -EPROTO;
  if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE))
    return -EPROTO;
  *flags = f;
  return 0;
}

/* ---- options ---- */

int
pcd_parse_option_header (const uint8_t buf[PCD_OPTION_HEADER_SIZE],
                         struct pcd_option *opt)
{
  if (pcd_get64 (buf) != NBD_IHAVEOPT)
    return -EPROTO;
  opt->option = pcd_get32 (buf + 8);
  opt->length = pcd_get32 (buf + 12);
  return 0;
}

size_t
pcd_encode_option_reply (uint8_t *buf, uint32_t option, uint32_t reply,
                         uint32_t length)
{
  pcd_put64 (buf, NBD_REP_MAGIC);
  pcd_put32 (buf + 8, option);
  pcd_put32 (buf + 12, reply);
  pcd_put32 (buf + 16, length);
  return PCD_OPTION_REPLY_HEADER_SIZE;
}

int
pcd_parse_info_go (const uint8_t *payload, uint32_t len,
                   struct pcd_info_go *out)
{
  struct cursor c = { payload, len };
  const uint8_t *at;
  uint32_t i;
  int r;

  if ((r = cursor_u32 (&c, &out->namelen)) < 0 ||
      (r = cursor_string (&c, out->namelen, &out->name)) < 0)
    return r;
  if ((at = cursor_take (&c, 2)) == NULL)
    return -EPROTO;
  out->ninfos = pcd_get16 (at);
  /* P2: exactly the requests announced, before any limit. */
  if (c.left != 2u * out->ninfos)
    return -EPROTO;
  if (out->ninfos > PCD_MAX_INFO_REQUESTS)
    return -E2BIG;
  for (i = 0; i < out->ninfos; i++)
    out->infos[i] = pcd_get16 (c.p + 2 * i);
  return 0;
}

int
pcd_parse_meta_context (const uint8_t *payload, uint32_t len,
                        struct pcd_meta_query *out)
{
  struct cursor c = { payload, len };
  uint32_t i;
  int r;

  if ((r = cursor_u32 (&c, &out->namelen)) < 0 ||
      (r = cursor_string (&c, out->namelen, &out->name)) < 0 ||
      (r = cursor_u32 (&c, &out->nqueries)) < 0)
    return r;
  /* Each query takes at least its 4-byte length: a count the payload
   * cannot hold is malformed, a count it can but we don't take is ours. */
  if (out->nqueries > c.left / 4)
    return -EPROTO;
  if (out->nqueries > PCD_MAX_META_QUERIES)
    return -E2BIG;
  for (i = 0; i < out->nqueries; i++) {
    if ((r = cursor_u32 (&c, &out->queries[i].len)) < 0 ||
        (r = cursor_string (&c, out->queries[i].len,
                            &out->queries[i].str)) < 0)
      return r;
  }
  return c.left == 0 ? 0 : -EPROTO;            /* P2 */
}

bool
pcd_meta_query_matches_base_allocation (const char *str, uint32_t len,
                                        bool listing)
{
  static const char ctx[] = "base:allocation";
  static const char ns[] = "base:";

  if (len == sizeof ctx - 1 && memcmp (str, ctx, len) == 0)
    return true;
  return listing && len == sizeof ns - 1 && memcmp (str, ns, len) == 0;
}

size_t
pcd_encode_rep_server (uint8_t *buf, const char *name, uint32_t namelen,
                       const char *desc, uint32_t desclen)
{
  pcd_put32 (buf, namelen);
  if (namelen)
    memcpy (buf + 4, name, namelen);
  if (desclen)
    memcpy (buf + 4 + namelen, desc, desclen);
  return 4 + (size_t) namelen + desclen;
}

size_t
pcd_encode_info_export (uint8_t *buf, uint64_t size, uint16_t flags)
{
  pcd_put16 (buf, NBD_INFO_EXPORT);
  pcd_put64 (buf + 2, size);
  pcd_put16 (buf + 10, flags);
  return 12;
}

size_t
pcd_encode_info_block_size (uint8_t *buf, uint32_t minimum,
                            uint32_t preferred, uint32_t maximum)
{
  pcd_put16 (buf, NBD_INFO_BLOCK_SIZE);
  pcd_put32 (buf + 2, minimum);
  pcd_put32 (buf + 6, preferred);
  pcd_put32 (buf + 10, maximum);
  return 14;
}

size_t
pcd_encode_info_string (uint8_t *buf, uint16_t info, const char *str,
                        uint32_t len)
{
  pcd_put16 (buf, info);
  if (len)
    memcpy (buf + 2, str, len);
  return 2 + (size_t) len;
}

size_t
pcd_encode_meta_context (uint8_t *buf, uint32_t id, const char *str,
                         uint32_t len)
{
  pcd_put32 (buf, id);
  if (len)
    memcpy (buf + 4, str, len);
  return 4 + (size_t) len;
}

size_t
pcd_encode_export_name_reply (uint8_t *buf, uint64_t size, uint16_t flags,
                              bool no_zeroes)
{
  pcd_put64 (buf, size);
  pcd_put16 (buf + 8, flags);
  if (no_zeroes)
    return 10;
  memset (buf + 10, 0, 124);
  return 134;
}

/* ---- transmission ---- */

int
pcd_parse_request (const uint8_t buf[PCD_REQUEST_SIZE],
                   struct pcd_request *req)
{
  if (pcd_get32 (buf) != NBD_REQUEST_MAGIC)
    return -EPROTO;
  req->flags = pcd_get16 (buf + 4);
  req->type = pcd_get16 (buf + 6);
  req->cookie = pcd_get64 (buf + 8);
  req->offset = pcd_get64 (buf + 16);
  req->count = pcd_get32 (buf + 24);
  return 0;
}

/* The command flags valid for each type (FUA on every command: see
 * pcd_check_request in protocol.h). */
static uint16_t
valid_flags (uint16_t type)
{
  switch (type) {
  case NBD_CMD_READ:         return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF;
  case NBD_CMD_WRITE_ZEROES: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                                    NBD_CMD_FLAG_FAST_ZERO;
  case NBD_CMD_BLOCK_STATUS: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
  default:                   return NBD_CMD_FLAG_FUA;
  }
}

uint32_t
pcd_check_request (const struct pcd_request *req,
                   const struct pcd_export_caps *caps)
{
  uint16_t t = req->type;

  if (t > NBD_CMD_BLOCK_STATUS)
    return NBD_EINVAL;
  if (req->flags & ~valid_flags (t))
    return NBD_EINVAL;
  if ((req->flags & NBD_CMD_FLAG_DF) && !caps->structured)
    return NBD_EINVAL;
  if (caps->readonly && (t == NBD_CMD_WRITE || t == NBD_CMD_TRIM ||
                         t == NBD_CMD_WRITE_ZEROES))
    return NBD_EPERM;
  if (t == NBD_CMD_BLOCK_STATUS &&
      (!caps->structured || !caps->meta_base_allocation))
    return NBD_EINVAL;
  if (t == NBD_CMD_FLUSH || t == NBD_CMD_DISC)
    return 0;                   /* offset and count ignored */
  if (req->count == 0)
    return NBD_EINVAL;
  if ((t == NBD_CMD_READ || t == NBD_CMD_WRITE) &&
      req->count > PCD_MAX_REQUEST_SIZE)
    return NBD_EINVAL;
  /* P3: offset + count may wrap at 2^64; compare with what is left. */
  if (req->offset > caps->size || req->count > caps->size - req->offset)
    return t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES
           ? NBD_ENOSPC : NBD_EINVAL;
  return 0;
}

size_t
pcd_encode_simple_reply (uint8_t *buf, uint64_t cookie, uint32_t error)
{
  pcd_put32 (buf, NBD_SIMPLE_REPLY_MAGIC);
  pcd_put32 (buf + 4, error);
  pcd_put64 (buf + 8, cookie);
  return PCD_SIMPLE_REPLY_SIZE;
}

size_t
pcd_encode_chunk_header (uint8_t *buf, uint64_t cookie, uint16_t flags,
                         uint16_t type, uint32_t length)
{
  pcd_put32 (buf, NBD_STRUCTURED_REPLY_MAGIC);
  pcd_put16 (buf + 4, flags);
  pcd_put16 (buf + 6, type);
  pcd_put64 (buf + 8, cookie);
  pcd_put32 (buf + 16, length);
  return PCD_CHUNK_HEADER_SIZE;
}

size_t
pcd_encode_offset_hole (uint8_t *buf, uint64_t offset, uint32_t len)
{
  pcd_put64 (buf, offset);
  pcd_put32 (buf + 8, len);
  return 12;
}

size_t
pcd_encode_error_chunk (uint8_t *buf, uint32_t error, const char *msg,
                        uint16_t msglen)
{
  pcd_put32 (buf, error);
  pcd_put16 (buf + 4, msglen);
  if (msglen)
    memcpy (buf + 6, msg, msglen);
  return 6 + (size_t) msglen;
}

size_t
pcd_encode_extent (uint8_t *buf, uint32_t length, uint32_t flags)
{
  pcd_put32 (buf, length);
  pcd_put32 (buf + 4, flags);
  return 8;
}

uint32_t
pcd_nbd_error (int err)
{
  if (err < 0)
    err = err == INT_MIN ? EIO : -err;          /* -INT_MIN overflows */
  if (err == 0)
    return 0;
  if (err == ENOTSUP || err == EOPNOTSUPP)  /* the same value on Linux */
    return NBD_ENOTSUP;
  switch (err) {
  case EPERM:
  case EROFS:     return NBD_EPERM;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:     return NBD_ENOSPC;
  case ENOMEM:    return NBD_ENOMEM;
  case EINVAL:    return NBD_EINVAL;
  case EOVERFLOW: return NBD_EOVERFLOW;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  default:        return NBD_EIO;
  }
}
