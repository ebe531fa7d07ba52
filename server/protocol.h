/* punchcached: the NBD wire protocol -- constants, parsers and encoders.
 *
 * What: everything punchcached reads from or writes to a client socket, as
 * pure functions over byte buffers: no I/O, no allocation the caller does
 * not see, no state.  server/conn.c drives them from the event loop;
 * fuzz/fuzz-nbdproto.c drives them from a fuzzer's bytes.
 *
 * Why pure: every length and offset a client sends is validated here, in
 * one place a fuzzer can reach, before the connection code acts on it.
 * The protocol is the NBD "fixed newstyle" protocol as nbdkit serves it
 * (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md):
 * options EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY,
 * LIST_META_CONTEXT, SET_META_CONTEXT (base:allocation); commands READ,
 * WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS.
 *
 * Conventions: all integers on the wire are big-endian.  Parsers return 0
 * or a negative errno (-EPROTO for malformed input, -EINVAL for values out
 * of range, -E2BIG for lengths past our limits); encoders return the number
 * of bytes written into the caller's buffer, which must be at least the
 * documented size.
 */
#ifndef PUNCHCACHED_PROTOCOL_H
#define PUNCHCACHED_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- handshake ---- */
#define NBD_MAGIC              UINT64_C (0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT           UINT64_C (0x49484156454F5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC          UINT64_C (0x0003e889045565a9)
#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES      2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 1u
#define NBD_FLAG_C_NO_ZEROES      2u

/* The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags (18 bytes). */
#define PCD_GREETING_SIZE 18
size_t pcd_encode_greeting (uint8_t *buf);

/* Client flags (4 bytes).  -EPROTO if unknown bits are set or FIXED_NEWSTYLE
 * is missing (we speak fixed newstyle only, like nbdkit). */
int pcd_parse_client_flags (const uint8_t buf[4], uint32_t *flags);

/* ---- options ---- */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10

#define NBD_REP_ACK            1
#define NBD_REP_SERVER         2
#define NBD_REP_INFO           3
#define NBD_REP_META_CONTEXT   4
#define NBD_REP_ERR_UNSUP      (0x80000000u | 1)
#define NBD_REP_ERR_POLICY     (0x80000000u | 2)
#define NBD_REP_ERR_INVALID    (0x80000000u | 3)
#define NBD_REP_ERR_PLATFORM   (0x80000000u | 4)
#define NBD_REP_ERR_TLS_REQD   (0x80000000u | 5)
#define NBD_REP_ERR_UNKNOWN    (0x80000000u | 6)
#define NBD_REP_ERR_SHUTDOWN   (0x80000000u | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (0x80000000u | 8)
#define NBD_REP_ERR_TOO_BIG    (0x80000000u | 9)

#define NBD_INFO_EXPORT       0
#define NBD_INFO_NAME         1
#define NBD_INFO_DESCRIPTION  2
#define NBD_INFO_BLOCK_SIZE   3

/* Transmission flags (in NBD_INFO_EXPORT and the EXPORT_NAME reply). */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Longest option payload we accept.  Longer: the connection is dropped
 * (after an NBD_REP_ERR_TOO_BIG reply if the payload is still short enough
 * to skip), never buffered. */
#define PCD_MAX_OPTION_LENGTH  (64u * 1024)
/* Export names and meta context names: at most this many bytes (NBD's
 * string limit is 4096). */
#define PCD_MAX_STRING 4096u
/* Queries in one LIST/SET_META_CONTEXT. */
#define PCD_MAX_META_QUERIES 64u
/* Information requests in one INFO/GO. */
#define PCD_MAX_INFO_REQUESTS 32u

/* A client string (export name, meta context query): -E2BIG if longer
 * than PCD_MAX_STRING, -EPROTO if it contains a NUL byte (the NBD spec
 * forbids them; nbdkit refuses them too).  The INFO/GO and META_CONTEXT
 * parsers apply it to every string; use it on the EXPORT_NAME payload. */
int pcd_check_string (const char *str, uint32_t len);

/* Option header: IHAVEOPT (8), option (4), length (4). */
#define PCD_OPTION_HEADER_SIZE 16
struct pcd_option {
  uint32_t option;
  uint32_t length;              /* payload bytes that follow */
};
/* -EPROTO for a bad magic.  Any length is returned (the caller decides
 * whether to skip or drop: compare against PCD_MAX_OPTION_LENGTH). */
int pcd_parse_option_header (const uint8_t buf[PCD_OPTION_HEADER_SIZE],
                             struct pcd_option *opt);

/* Option reply header: REP_MAGIC (8), option (4), reply type (4), length
 * (4).  The payload (length bytes) follows. */
#define PCD_OPTION_REPLY_HEADER_SIZE 20
size_t pcd_encode_option_reply (uint8_t *buf, uint32_t option,
                                uint32_t reply, uint32_t length);

/* INFO/GO payload: name length (4), name, number of info requests (2),
 * requests (2 each).  name points into payload (NOT NUL-terminated);
 * infos[] receives up to PCD_MAX_INFO_REQUESTS requests (duplicates kept;
 * unknown values kept: the caller ignores them, as the protocol says).
 * -EPROTO if the lengths do not add up exactly to len or the name holds a
 * NUL, -E2BIG if the name is longer than PCD_MAX_STRING or there are more
 * than PCD_MAX_INFO_REQUESTS requests. */
struct pcd_info_go {
  const char *name;
  uint32_t namelen;
  uint16_t ninfos;
  uint16_t infos[PCD_MAX_INFO_REQUESTS];
};
int pcd_parse_info_go (const uint8_t *payload, uint32_t len,
                       struct pcd_info_go *out);

/* EXPORT_NAME payload is the bare name: check it with pcd_check_string. */

/* LIST_META_CONTEXT / SET_META_CONTEXT payload: export name length (4),
 * name, number of queries (4), then per query: length (4), string.
 * Strings point into payload.  -EPROTO if lengths do not add up exactly
 * or a string holds a NUL, -E2BIG past PCD_MAX_STRING or
 * PCD_MAX_META_QUERIES. */
struct pcd_meta_query {
  const char *name;
  uint32_t namelen;
  uint32_t nqueries;
  struct { const char *str; uint32_t len; } queries[PCD_MAX_META_QUERIES];
};
int pcd_parse_meta_context (const uint8_t *payload, uint32_t len,
                            struct pcd_meta_query *out);
/* Does this query select base:allocation?  ("base:allocation" exactly, or
 * for LIST only, "base:" which lists every base context.) */
bool pcd_meta_query_matches_base_allocation (const char *str, uint32_t len,
                                             bool listing);

/* Reply payloads (encoders).  Sizes: NBD_REP_SERVER with a name and a
 * description: 4 + namelen + desclen; NBD_INFO_EXPORT: 12 bytes;
 * NBD_INFO_BLOCK_SIZE: 14 bytes; NBD_INFO_NAME/DESCRIPTION: 2 + len;
 * NBD_REP_META_CONTEXT: 4 + len. */
size_t pcd_encode_rep_server (uint8_t *buf, const char *name, uint32_t namelen,
                              const char *desc, uint32_t desclen);
size_t pcd_encode_info_export (uint8_t *buf, uint64_t size, uint16_t flags);
size_t pcd_encode_info_block_size (uint8_t *buf, uint32_t minimum,
                                   uint32_t preferred, uint32_t maximum);
size_t pcd_encode_info_string (uint8_t *buf, uint16_t info, const char *str,
                               uint32_t len);
size_t pcd_encode_meta_context (uint8_t *buf, uint32_t id, const char *str,
                                uint32_t len);
/* The reply to NBD_OPT_EXPORT_NAME: size (8), flags (2), and 124 zero
 * bytes unless the client set NO_ZEROES.  buf must hold 134 bytes. */
size_t pcd_encode_export_name_reply (uint8_t *buf, uint64_t size,
                                     uint16_t flags, bool no_zeroes);

/* ---- transmission ---- */
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_OFFSET_HOLE   2
#define NBD_REPLY_TYPE_BLOCK_STATUS  5
#define NBD_REPLY_TYPE_ERROR         ((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET  ((1u << 15) | 2)

/* NBD error numbers (not host errno values). */
#define NBD_EPERM      1
#define NBD_EIO        5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* Block status flags of base:allocation. */
#define NBD_STATE_HOLE 1u
#define NBD_STATE_ZERO 2u

/* Largest READ/WRITE payload we serve (what we advertise as the maximum
 * block size, and nbdkit's limit).  A WRITE longer than this is refused
 * with EINVAL (the NBD spec keeps EOVERFLOW for DF reads and payload-less
 * commands) and its payload skipped, never buffered. */
#define PCD_MAX_REQUEST_SIZE (64u * 1024 * 1024)

#define PCD_REQUEST_SIZE 28
struct pcd_request {
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint32_t count;
};
/* -EPROTO for a bad magic (the connection must be dropped: the stream is
 * out of sync).  Any type/flags/range is returned: validate with
 * pcd_check_request. */
int pcd_parse_request (const uint8_t buf[PCD_REQUEST_SIZE],
                       struct pcd_request *req);

/* What the connection negotiated, for pcd_check_request. */
struct pcd_export_caps {
  uint64_t size;                /* export size in bytes */
  bool readonly;
  bool structured;              /* structured replies negotiated */
  bool meta_base_allocation;    /* base:allocation context selected */
};
/* Validate a parsed request: known type; only flags valid for that type
 * (FUA on every command -- the NBD spec says a server advertising
 * SEND_FUA MUST accept it on all of them, ignoring it where nothing is
 * written, as nbdkit does; NO_HOLE and FAST_ZERO on WRITE_ZEROES;
 * DF on READ, only with structured replies; REQ_ONE on BLOCK_STATUS);
 * offset + count inside the export and count >= 1 for READ, WRITE, TRIM,
 * WRITE_ZEROES, CACHE and BLOCK_STATUS (FLUSH and DISC ignore both; the
 * spec says clients send zeros there, nbdkit refuses a FLUSH without);
 * READ and WRITE count at most PCD_MAX_REQUEST_SIZE; no WRITE, TRIM or
 * WRITE_ZEROES on a read-only export; no BLOCK_STATUS unless structured
 * replies and base:allocation were negotiated.
 * Returns 0 or the NBD error number for the reply of the first check that
 * fails (in the order listed at the top of protocol.c): NBD_EPERM for a
 * write on a read-only export, NBD_ENOSPC for a WRITE or WRITE_ZEROES
 * past the end, NBD_EINVAL for everything else. */
uint32_t pcd_check_request (const struct pcd_request *req,
                            const struct pcd_export_caps *caps);

/* Simple reply: magic (4), error (4), cookie (8) = 16 bytes. */
#define PCD_SIMPLE_REPLY_SIZE 16
size_t pcd_encode_simple_reply (uint8_t *buf, uint64_t cookie,
                                uint32_t error);

/* Structured reply chunk header: magic (4), flags (2), type (2), cookie
 * (8), length (4) = 20 bytes; the chunk payload follows. */
#define PCD_CHUNK_HEADER_SIZE 20
size_t pcd_encode_chunk_header (uint8_t *buf, uint64_t cookie, uint16_t flags,
                                uint16_t type, uint32_t length);
/* OFFSET_DATA payload prefix: offset (8); the data follows. */
/* OFFSET_HOLE payload: offset (8), hole size (4) = 12 bytes. */
size_t pcd_encode_offset_hole (uint8_t *buf, uint64_t offset, uint32_t len);
/* ERROR payload: error (4), message length (2), message = 6 + msglen
 * bytes (msglen capped at 4096 by the caller). */
size_t pcd_encode_error_chunk (uint8_t *buf, uint32_t error, const char *msg,
                               uint16_t msglen);
/* BLOCK_STATUS payload: context id (4), then (length (4), flags (4)) per
 * extent; write the descriptors with pcd_encode_extent. */
size_t pcd_encode_extent (uint8_t *buf, uint32_t length, uint32_t flags);

/* Host errno -> NBD error number (EROFS -> EPERM, EDQUOT/EFBIG/ENOSPC ->
 * ENOSPC, ESHUTDOWN, EOVERFLOW, ENOTSUP/EOPNOTSUPP, ENOMEM, EINVAL, EPERM;
 * anything else -> EIO).  err may be negative (a core -errno return);
 * 0 -> 0. */
uint32_t pcd_nbd_error (int err);

/* Big-endian helpers. */
static inline void pcd_put16 (uint8_t *p, uint16_t v)
{ p[0] = (uint8_t) (v >> 8); p[1] = (uint8_t) v; }
static inline void pcd_put32 (uint8_t *p, uint32_t v)
{ pcd_put16 (p, (uint16_t) (v >> 16)); pcd_put16 (p + 2, (uint16_t) v); }
static inline void pcd_put64 (uint8_t *p, uint64_t v)
{ pcd_put32 (p, (uint32_t) (v >> 32)); pcd_put32 (p + 4, (uint32_t) v); }
static inline uint16_t pcd_get16 (const uint8_t *p)
{ return (uint16_t) ((p[0] << 8) | p[1]); }
static inline uint32_t pcd_get32 (const uint8_t *p)
{ return ((uint32_t) pcd_get16 (p) << 16) | pcd_get16 (p + 2); }
static inline uint64_t pcd_get64 (const uint8_t *p)
{ return ((uint64_t) pcd_get32 (p) << 32) | pcd_get32 (p + 4); }

#endif
