/* punchcached: one NBD connection, driven by its event loop.
 *
 * What: the fixed-newstyle handshake, option haggling (LIST, INFO, GO,
 * EXPORT_NAME, STARTTLS, STRUCTURED_REPLY, LIST/SET_META_CONTEXT, ABORT)
 * and the transmission phase of one client, as a state machine fed by
 * socket readiness.  Every byte a client sends is checked by the pure
 * parsers of protocol.c before it is acted on.  Requests go to the
 * asynchronous core (pc_core_submit); their completions come back on this
 * connection's loop (inline for cache hits, through the loop's completion
 * list otherwise) and become replies.
 *
 * Data structures: a 16 KiB input buffer (headers are parsed in place, many
 * per read(2) when the client pipelines); write payloads are read into
 * their own buffer, straight from the socket once the input buffer is
 * drained; an output queue of replies, each a small inline header plus an
 * optional data buffer (a READ's buffer is sent as is, no copy), sent with
 * one writev(2) for many replies.
 *
 * States:
 *   CLIENT_FLAGS -> OPT_HEADER <-> OPT_PAYLOAD            (handshake)
 *        OPT_HEADER -STARTTLS-> TLS_HANDSHAKE -> OPT_HEADER
 *        OPT_HEADER -GO/EXPORT_NAME-> REQ_HEADER
 *   REQ_HEADER -> REQ_PAYLOAD (WRITE) -> REQ_HEADER      (transmission)
 *   REQ_HEADER -> REQ_DISCARD (refused WRITE: skip its payload)
 *   any -> draining (DISC, end of stream, error, server stop) -> freed
 *
 * Invariants:
 *  C1 A connection is freed only when no request of it is in flight in the
 *     core and it is not inside one of its own handlers: a late completion
 *     never touches freed memory, however the client died (this is what
 *     nbdkit < 1.33.10 gets wrong: it asserts on a send to a closed socket).
 *  C2 After an error on the socket nothing more is read or written; the
 *     replies of requests still in flight are dropped when they complete.
 *  C3 Memory per connection is bounded: at most MAX_INFLIGHT requests and
 *     MAX_INFLIGHT_BYTES (+ one request) of data buffers in flight, and
 *     about MAX_OUT_BYTES of queued replies; beyond any of these, the
 *     connection stops reading until the client drains its replies.  A
 *     WRITE's payload is buffered only if it is at most
 *     PCD_MAX_REQUEST_SIZE; longer ones are refused and skipped.
 *  C4 Option payloads longer than PCD_MAX_OPTION_LENGTH drop the
 *     connection without being read.
 *
 * Locks: none.  A connection belongs to one loop thread (server.h); the
 * core's workers only touch a request's own memory (struct pcd_creq) and
 * post it back to the loop.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "protocol.h"
#include "server.h"

#define IN_SIZE (16 * 1024)
#define MAX_INFLIGHT 64
/* Bytes of READ/WRITE buffers in flight per connection before it stops
 * reading (one more request of up to PCD_MAX_REQUEST_SIZE may start). */
#define MAX_INFLIGHT_BYTES (64u * 1024 * 1024)
#define MAX_OUT_BYTES (64u * 1024 * 1024)
#define MAX_EXTENTS 1024
#define META_CONTEXT_ID 1          /* our id for base:allocation */
#define BASE_ALLOCATION "base:allocation"

enum cstate {
  CS_CLIENT_FLAGS, CS_OPT_HEADER, CS_OPT_PAYLOAD, CS_TLS_HANDSHAKE,
  CS_REQ_HEADER, CS_REQ_PAYLOAD, CS_REQ_DISCARD,
};

struct outbuf {
  struct outbuf *next;
  uint8_t hdr[32];
  uint32_t hdrlen;
  uint8_t *data;                 /* sent after hdr */
  size_t datalen;
  uint8_t *to_free;              /* freed when sent (data, or NULL when the
                                  * data is a slice another chunk frees) */
  size_t off;                    /* bytes of hdr+data already sent */
};

struct extent { uint32_t length, flags; };

struct pcd_creq {
  struct pc_req req;             /* first: the core hands it back */
  struct pcd_conn *conn;
  struct pcd_creq *next;         /* the loop's completion list */
  struct pcd_request nbd;
  uint8_t *buf;                  /* READ/WRITE data */
  struct extent *ext;            /* BLOCK_STATUS */
  unsigned next_ext;
};

struct pcd_conn {
  struct pcd_loop *loop;
  struct pcd_conn *prev, *next;
  int fd;
  ev_io rw, ww;
  struct pcd_tls_session *tls;
  bool tls_wants_write;          /* TLS recv needs the socket writable */
  enum cstate st;
  uint8_t in[IN_SIZE];
  size_t in_start, in_end;
  /* The payload being received: an option's or a WRITE's, or the count of
   * bytes to skip (REQ_DISCARD). */
  uint8_t *payload;
  uint64_t need, have;
  struct pcd_option opt;
  struct pcd_creq *wreq;         /* the WRITE whose payload is coming */
  bool no_zeroes;
  bool tls_done;
  struct pc_volume *vol;
  struct pcd_export_caps caps;
  struct outbuf *out_head, *out_tail;
  size_t out_bytes;
  unsigned inflight;
  uint64_t inflight_bytes;       /* READ/WRITE buffers in flight (C3) */
  unsigned in_handler;           /* C1 */
  bool draining;                 /* no more requests are read */
  bool broken;                   /* C2 */
  bool close_after_output;       /* ABORT / refused handshake */
};

static void conn_flush (struct pcd_conn *c);
static void conn_read (struct pcd_conn *c);
static void conn_maybe_free (struct pcd_conn *c);
static bool paused (const struct pcd_conn *c);

struct pcd_creq *pcd_creq_next (struct pcd_creq *cr) { return cr->next; }
void pcd_creq_set_next (struct pcd_creq *cr, struct pcd_creq *n)
{ cr->next = n; }
struct pcd_conn *pcd_conn_next (struct pcd_conn *c) { return c->next; }

/* ---- life cycle ---- */

static void
watch (struct pcd_conn *c)
{
  bool want_read = !c->broken && !c->draining && c->st != CS_TLS_HANDSHAKE &&
    c->inflight < MAX_INFLIGHT && c->inflight_bytes < MAX_INFLIGHT_BYTES &&
    c->out_bytes < MAX_OUT_BYTES && !c->close_after_output;
  bool want_write = !c->broken && (c->out_head != NULL || c->tls_wants_write);

  if (c->st == CS_TLS_HANDSHAKE && !c->broken)
    return;                       /* the handshake sets its own watchers */
  if (want_read != ev_is_active (&c->rw)) {
    if (want_read) ev_io_start (c->loop->ev, &c->rw);
    else ev_io_stop (c->loop->ev, &c->rw);
  }
  if (want_write != ev_is_active (&c->ww)) {
    if (want_write) ev_io_start (c->loop->ev, &c->ww);
    else ev_io_stop (c->loop->ev, &c->ww);
  }
}

static void
conn_break (struct pcd_conn *c, const char *why)
{
  if (!c->broken && why)
    pcd_debug ("connection %d: %s", c->fd, why);
  c->broken = true;
  c->draining = true;
}

static void
protocol_error (struct pcd_conn *c, const char *why)
{
  atomic_fetch_add (&c->loop->stats.protocol_errors, 1);
  pcd_log ("client sent %s: connection dropped", why);
  conn_break (c, NULL);
}

static void
conn_free (struct pcd_conn *c)
{
  struct outbuf *o, *on;

  ev_io_stop (c->loop->ev, &c->rw);
  ev_io_stop (c->loop->ev, &c->ww);
  for (o = c->out_head; o; o = on) {
    on = o->next;
    free (o->to_free);
    free (o);
  }
  if (c->tls)
    pcd_tls_session_free (c->tls);
  if (c->vol)
    pc_volume_close (c->vol);
  free (c->payload);
  if (c->wreq) {
    free (c->wreq->buf);
    free (c->wreq);
  }
  close (c->fd);
  if (c->prev) c->prev->next = c->next;
  else c->loop->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  atomic_fetch_sub (&c->loop->stats.connections_now, 1);
  pcd_loop_conn_gone (c->loop);
  free (c);
}

/* C1: free once idle, never from inside a handler. */
static void
conn_maybe_free (struct pcd_conn *c)
{
  if (c->in_handler || c->inflight)
    return;
  if (c->broken || (c->draining && c->out_head == NULL)) {
    conn_free (c);
    return;
  }
  watch (c);
}

void
pcd_conn_shutdown (struct pcd_conn *c)
{
  c->draining = true;
  if (c->st != CS_REQ_HEADER && c->st != CS_REQ_PAYLOAD &&
      c->st != CS_REQ_DISCARD)
    c->broken = true;             /* mid-handshake: nothing to finish */
  conn_maybe_free (c);
}

void
pcd_conn_abandon (struct pcd_conn *c)
{
  conn_break (c, "dropped at shutdown");
  conn_maybe_free (c);
}

/* ---- output ---- */

static struct outbuf *
out_new (struct pcd_conn *c, uint32_t hdrlen, uint8_t *data, size_t datalen)
{
  struct outbuf *o = calloc (1, sizeof *o);

  if (o == NULL) {
    free (data);
    conn_break (c, "out of memory for a reply");
    return NULL;
  }
  o->hdrlen = hdrlen;
  o->data = o->to_free = data;
  o->datalen = datalen;
  return o;
}

static void
out_queue (struct pcd_conn *c, struct outbuf *o)
{
  if (o == NULL)
    return;
  if (c->broken) {                /* C2 */
    free (o->to_free);
    free (o);
    return;
  }
  if (c->out_tail) c->out_tail->next = o;
  else c->out_head = o;
  c->out_tail = o;
  c->out_bytes += o->hdrlen + o->datalen;
}

/* Queue bytes (copied). */
static void
out_bytes (struct pcd_conn *c, const void *p, size_t len)
{
  uint8_t *data = NULL;
  struct outbuf *o;

  if (len > sizeof o->hdr && (data = malloc (len)) == NULL) {
    conn_break (c, "out of memory for a reply");
    return;
  }
  if ((o = out_new (c, data ? 0 : (uint32_t) len, data, data ? len : 0)) == NULL)
    return;
  memcpy (data ? data : o->hdr, p, len);
  out_queue (c, o);
}

static ssize_t
send_some (struct pcd_conn *c, struct iovec *iov, int n)
{
  ssize_t r;
  bool ww;

  if (c->tls == NULL) {
    r = writev (c->fd, iov, n);
    return r < 0 ? -errno : r;
  }
  /* TLS: one record at a time, the same slice on a retry. */
  r = pcd_tls_send (c->tls, iov[0].iov_base,
                    iov[0].iov_len < 16384 ? iov[0].iov_len : 16384, &ww);
  return r;
}

static void
conn_flush (struct pcd_conn *c)
{
  while (c->out_head && !c->broken) {
    struct iovec iov[64];
    struct outbuf *o = c->out_head;
    int n = 0;
    ssize_t r;

    for (; o && n < 62; o = o->next) {
      size_t off = o->off;
      if (off < o->hdrlen) {
        iov[n++] = (struct iovec) { o->hdr + off, o->hdrlen - off };
        off = o->hdrlen;
      }
      if (o->datalen > off - o->hdrlen)
        iov[n++] = (struct iovec) { o->data + (off - o->hdrlen),
                                    o->datalen - (off - o->hdrlen) };
    }
    r = send_some (c, iov, n);
    if (r == -EAGAIN || r == -EINTR)
      break;
    if (r < 0) {
      conn_break (c, "send failed");
      break;
    }
    atomic_fetch_add (&c->loop->stats.bytes_out, (uint64_t) r);
    c->out_bytes -= (size_t) r;
    while (r > 0) {
      o = c->out_head;
      size_t left = o->hdrlen + o->datalen - o->off;
      if ((size_t) r < left) {
        o->off += (size_t) r;
        break;
      }
      r -= (ssize_t) left;
      c->out_head = o->next;
      if (c->out_head == NULL) c->out_tail = NULL;
      free (o->to_free);
      free (o);
    }
  }
  if (c->out_head == NULL && c->close_after_output)
    conn_break (c, NULL);
}

/* ---- handshake: option replies ---- */

static void
opt_reply (struct pcd_conn *c, uint32_t reply, const void *payload,
           uint32_t len)
{
  uint8_t *data = NULL;
  struct outbuf *o;

  if (len && (data = malloc (len)) == NULL) {
    conn_break (c, "out of memory for an option reply");
    return;
  }
  if (len) memcpy (data, payload, len);
  if ((o = out_new (c, PCD_OPTION_REPLY_HEADER_SIZE, data, len)) == NULL)
    return;
  pcd_encode_option_reply (o->hdr, c->opt.option, reply, len);
  out_queue (c, o);
}

static void
opt_error (struct pcd_conn *c, uint32_t reply, const char *msg)
{
  /* Clients probe for options (UNSUP is routine); anything else is worth
   * the operator's eye, as nbdkit logs it. */
  if (reply == NBD_REP_ERR_UNSUP)
    pcd_debug ("option %" PRIu32 " refused: %s", c->opt.option, msg);
  else
    pcd_log ("client option %" PRIu32 " refused: %s", c->opt.option, msg);
  opt_reply (c, reply, msg, (uint32_t) strlen (msg));
}

static uint16_t
export_flags (const struct pcd_conn *c)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
    NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

  if (c->caps.readonly)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
      NBD_FLAG_SEND_FAST_ZERO;
  if (c->caps.structured)
    f |= NBD_FLAG_SEND_DF;
  return f;
}

/* Open the volume an export name selects ("" = the default export). */
static int
open_export (struct pcd_conn *c, const char *name, uint32_t len,
             struct pc_volume **vol)
{
  char buf[PCD_MAX_STRING + 1];

  if (len == 0) {
    name = pcd_config.default_export;
    len = (uint32_t) strlen (name);
  }
  memcpy (buf, name, len);
  buf[len] = '\0';
  if (strlen (buf) != len)
    return pc_error (EINVAL, "export name contains a NUL byte");
  return pc_volume_open (pcd_config.pool, buf, vol);
}

static void
enter_transmission (struct pcd_conn *c, struct pc_volume *vol)
{
  c->vol = vol;
  c->caps.size = pc_volume_size (vol);
  c->caps.readonly = pcd_config.readonly;
  c->st = CS_REQ_HEADER;
}

struct list_ctx { struct pcd_conn *c; };

static int
list_one (void *opaque, const struct pc_volume_info *vi)
{
  struct list_ctx *lc = opaque;
  uint8_t buf[4 + sizeof vi->name + 96];
  char desc[96];
  uint32_t nl = (uint32_t) strlen (vi->name);
  int dl = snprintf (desc, sizeof desc, "thin volume, %" PRIu64 " bytes",
                     vi->size);

  opt_reply (lc->c, NBD_REP_SERVER, buf,
             (uint32_t) pcd_encode_rep_server (buf, vi->name, nl, desc,
                                               (uint32_t) dl));
  return 0;
}

static void
opt_info_go (struct pcd_conn *c, bool go)
{
  struct pcd_info_go ig;
  struct pc_volume *vol;
  uint8_t buf[2 + PCD_MAX_STRING + 8];
  bool want_bs = false, want_name = false, want_desc = false;
  unsigned i;

  if (pcd_parse_info_go (c->payload, c->opt.length, &ig) < 0) {
    opt_error (c, NBD_REP_ERR_INVALID, "malformed INFO/GO request");
    return;
  }
  if (open_export (c, ig.name, ig.namelen, &vol) < 0) {
    opt_error (c, NBD_REP_ERR_UNKNOWN, pc_last_error ());
    return;
  }
  for (i = 0; i < ig.ninfos && i < 32; i++) {
    want_bs |= ig.infos[i] == NBD_INFO_BLOCK_SIZE;
    want_name |= ig.infos[i] == NBD_INFO_NAME;
    want_desc |= ig.infos[i] == NBD_INFO_DESCRIPTION;
  }
  c->caps.readonly = pcd_config.readonly;
  opt_reply (c, NBD_REP_INFO, buf,
             (uint32_t) pcd_encode_info_export (buf, pc_volume_size (vol),
                                                export_flags (c)));
  if (want_bs)
    opt_reply (c, NBD_REP_INFO, buf,
               (uint32_t) pcd_encode_info_block_size
                 (buf, 1, pc_volume_block_size (vol), PCD_MAX_REQUEST_SIZE));
  if (want_name) {
    struct pc_volume_info vi;
    pc_volume_get_info (vol, &vi);
    opt_reply (c, NBD_REP_INFO, buf,
               (uint32_t) pcd_encode_info_string (buf, NBD_INFO_NAME, vi.name,
                                                  (uint32_t) strlen (vi.name)));
  }
  if (want_desc) {
    static const char desc[] = "punchcache thin volume";
    opt_reply (c, NBD_REP_INFO, buf,
               (uint32_t) pcd_encode_info_string (buf, NBD_INFO_DESCRIPTION,
                                                  desc, sizeof desc - 1));
  }
  opt_reply (c, NBD_REP_ACK, NULL, 0);
  if (go)
    enter_transmission (c, vol);
  else
    pc_volume_close (vol);
}

static void
opt_meta_context (struct pcd_conn *c, bool set)
{
  struct pcd_meta_query *q = malloc (sizeof *q);
  uint8_t buf[4 + sizeof BASE_ALLOCATION];
  bool found = false;
  uint32_t i;

  if (q == NULL) {
    conn_break (c, "out of memory");
    return;
  }
  if (!c->caps.structured)
    opt_error (c, NBD_REP_ERR_INVALID,
               "meta contexts need structured replies first");
  else if (pcd_parse_meta_context (c->payload, c->opt.length, q) < 0)
    opt_error (c, NBD_REP_ERR_INVALID, "malformed meta context request");
  else {
    for (i = 0; i < q->nqueries; i++)
      found |= pcd_meta_query_matches_base_allocation (q->queries[i].str,
                                                       q->queries[i].len,
                                                       !set);
    if (!set && q->nqueries == 0)
      found = true;                 /* list every context we have */
    if (set)
      c->caps.meta_base_allocation = found;
    if (found)
      opt_reply (c, NBD_REP_META_CONTEXT, buf,
                 (uint32_t) pcd_encode_meta_context
                   (buf, set ? META_CONTEXT_ID : 0, BASE_ALLOCATION,
                    sizeof BASE_ALLOCATION - 1));
    opt_reply (c, NBD_REP_ACK, NULL, 0);
  }
  free (q);
}

static void
start_tls (struct pcd_conn *c)
{
  char err[256];

  if (c->in_end != c->in_start) {
    protocol_error (c, "data after STARTTLS before the TLS handshake");
    return;
  }
  opt_reply (c, NBD_REP_ACK, NULL, 0);
  conn_flush (c);                   /* the ACK goes out in clear */
  if (c->out_head) {
    conn_break (c, "could not send the STARTTLS reply at once");
    return;
  }
  if (pcd_tls_session_new (pcd_config.tls_creds, c->fd, &c->tls, err,
                           sizeof err) < 0) {
    pcd_log ("TLS session: %s", err);
    conn_break (c, NULL);
    return;
  }
  c->st = CS_TLS_HANDSHAKE;
}

static void
handle_option (struct pcd_conn *c)
{
  uint32_t len = c->opt.length;
  struct pc_volume *vol;
  uint8_t buf[134];
  struct list_ctx lc = { c };

  if (pcd_config.tls_mode == PCD_TLS_REQUIRE && !c->tls_done &&
      c->opt.option != NBD_OPT_STARTTLS && c->opt.option != NBD_OPT_ABORT) {
    if (c->opt.option == NBD_OPT_EXPORT_NAME) {
      pcd_log ("plaintext client refused: TLS is required");
      conn_break (c, NULL);
    }
    else
      opt_error (c, NBD_REP_ERR_TLS_REQD, "TLS is required (STARTTLS)");
    return;
  }
  switch (c->opt.option) {
  case NBD_OPT_EXPORT_NAME:
    if (pcd_check_string ((char *) c->payload, len) < 0 ||
        open_export (c, (char *) c->payload, len, &vol) < 0) {
      pcd_log ("EXPORT_NAME refused: %s", len > PCD_MAX_STRING ?
               "name too long" : pc_last_error ());
      conn_break (c, NULL);
      return;
    }
    c->caps.readonly = pcd_config.readonly;
    out_bytes (c, buf, pcd_encode_export_name_reply (buf, pc_volume_size (vol),
                                                     export_flags (c),
                                                     c->no_zeroes));
    enter_transmission (c, vol);
    return;
  case NBD_OPT_ABORT:
    opt_reply (c, NBD_REP_ACK, NULL, 0);
    c->close_after_output = true;
    return;
  case NBD_OPT_LIST:
    if (len) { opt_error (c, NBD_REP_ERR_INVALID, "LIST takes no data"); return; }
    pc_volume_foreach (pcd_config.pool, list_one, &lc);
    opt_reply (c, NBD_REP_ACK, NULL, 0);
    return;
  case NBD_OPT_STARTTLS:
    if (len) opt_error (c, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
    else if (pcd_config.tls_mode == PCD_TLS_OFF)
      opt_error (c, NBD_REP_ERR_UNSUP, "TLS is not enabled on this server");
    else if (c->tls_done)
      opt_error (c, NBD_REP_ERR_INVALID, "TLS is already on");
    else
      start_tls (c);
    return;
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
    opt_info_go (c, c->opt.option == NBD_OPT_GO);
    return;
  case NBD_OPT_STRUCTURED_REPLY:
    if (len) opt_error (c, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
    else if (c->caps.structured)
      opt_error (c, NBD_REP_ERR_INVALID, "structured replies already on");
    else {
      c->caps.structured = true;
      opt_reply (c, NBD_REP_ACK, NULL, 0);
    }
    return;
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    opt_meta_context (c, c->opt.option == NBD_OPT_SET_META_CONTEXT);
    return;
  default:
    opt_error (c, NBD_REP_ERR_UNSUP, "option not supported");
  }
}

/* ---- transmission: replies ---- */

static void
simple_reply (struct pcd_conn *c, uint64_t cookie, uint32_t error,
              uint8_t *data, size_t len)
{
  struct outbuf *o = out_new (c, PCD_SIMPLE_REPLY_SIZE, data, len);

  if (o == NULL) return;
  pcd_encode_simple_reply (o->hdr, cookie, error);
  out_queue (c, o);
}

static void
error_reply (struct pcd_conn *c, const struct pcd_request *r, uint32_t error,
             const char *msg)
{
  size_t ml = strlen (msg);
  uint8_t *data;
  struct outbuf *o;

  if (!c->caps.structured ||
      (r->type != NBD_CMD_READ && r->type != NBD_CMD_BLOCK_STATUS)) {
    simple_reply (c, r->cookie, error, NULL, 0);
    return;
  }
  if (ml > 4096) ml = 4096;
  if ((data = malloc (6 + ml)) == NULL) {
    conn_break (c, "out of memory for a reply");
    return;
  }
  pcd_encode_error_chunk (data, error, msg, (uint16_t) ml);
  if ((o = out_new (c, PCD_CHUNK_HEADER_SIZE, data, 6 + ml)) == NULL)
    return;
  pcd_encode_chunk_header (o->hdr, r->cookie, NBD_REPLY_FLAG_DONE,
                           NBD_REPLY_TYPE_ERROR, (uint32_t) (6 + ml));
  out_queue (c, o);
}

/* Structured READ replies: runs of whole zero 4 KiB pages (aligned to the
 * export) go as OFFSET_HOLE chunks, the rest as OFFSET_DATA chunks, unless
 * the client set DF or the read is small (one chunk is cheaper than the
 * scan).  The chunks share the read's buffer; the last one frees it. */
#define SPARSE_MIN (64u * 1024)
#define ZPAGE 4096u

static bool
page_is_zero (const uint8_t *p, size_t n)
{
  const uint64_t *w = (const uint64_t *) p;
  size_t i;

  for (i = 0; i < n / 8; i++)
    if (w[i]) return false;
  for (i = n & ~(size_t) 7; i < n; i++)
    if (p[i]) return false;
  return true;
}

/* Queue one chunk of a READ reply: [pos, pos+len) of buf. */
static void
read_chunk (struct pcd_conn *c, const struct pcd_creq *cr, uint8_t *buf,
            uint32_t pos, uint32_t len, bool hole, bool last)
{
  uint16_t flags = last ? NBD_REPLY_FLAG_DONE : 0;
  struct outbuf *o = out_new (c, PCD_CHUNK_HEADER_SIZE + (hole ? 12 : 8),
                              hole ? NULL : buf + pos, hole ? 0 : len);

  if (o == NULL) {
    if (last) free (buf);
    return;
  }
  o->to_free = last ? buf : NULL;
  if (hole) {
    pcd_encode_chunk_header (o->hdr, cr->nbd.cookie, flags,
                             NBD_REPLY_TYPE_OFFSET_HOLE, 12);
    pcd_encode_offset_hole (o->hdr + PCD_CHUNK_HEADER_SIZE,
                            cr->nbd.offset + pos, len);
  }
  else {
    pcd_encode_chunk_header (o->hdr, cr->nbd.cookie, flags,
                             NBD_REPLY_TYPE_OFFSET_DATA, len + 8);
    pcd_put64 (o->hdr + PCD_CHUNK_HEADER_SIZE, cr->nbd.offset + pos);
  }
  out_queue (c, o);
}

static void
read_reply (struct pcd_conn *c, struct pcd_creq *cr)
{
  uint8_t *buf = cr->buf;
  uint32_t n = cr->nbd.count, pos = 0, end;
  bool hole;

  cr->buf = NULL;                               /* the chunks own it now */
  if (!c->caps.structured) {
    simple_reply (c, cr->nbd.cookie, 0, buf, n);
    return;
  }
  if (n < SPARSE_MIN || (cr->nbd.flags & NBD_CMD_FLAG_DF)) {
    read_chunk (c, cr, buf, 0, n, false, true);
    return;
  }
  while (pos < n && !c->broken) {
    /* The run starting at pos: page by page, pages aligned to the export
     * (the first and last may be partial; partial pages count as data). */
    end = pos;
    hole = false;
    for (;;) {
      uint64_t off = cr->nbd.offset + end;
      uint32_t step = ZPAGE - (uint32_t) (off % ZPAGE);
      bool z;
      if (step > n - end) step = n - end;
      z = step == ZPAGE && page_is_zero (buf + end, ZPAGE);
      if (end == pos) hole = z;
      else if (z != hole) break;
      end += step;
      if (end == n) break;
    }
    read_chunk (c, cr, buf, pos, end - pos, hole, end == n);
    pos = end;
  }
  if (c->broken && pos < n)
    free (buf);                                 /* the last chunk never went */
}

static void
block_status_reply (struct pcd_conn *c, struct pcd_creq *cr)
{
  size_t len = 4 + 8 * (size_t) cr->next_ext;
  uint8_t *data = malloc (len);
  struct outbuf *o;
  unsigned i;

  if (data == NULL) {
    conn_break (c, "out of memory for a reply");
    return;
  }
  pcd_put32 (data, META_CONTEXT_ID);
  for (i = 0; i < cr->next_ext; i++)
    pcd_encode_extent (data + 4 + 8 * i, cr->ext[i].length, cr->ext[i].flags);
  if ((o = out_new (c, PCD_CHUNK_HEADER_SIZE, data, len)) == NULL)
    return;
  pcd_encode_chunk_header (o->hdr, cr->nbd.cookie, NBD_REPLY_FLAG_DONE,
                           NBD_REPLY_TYPE_BLOCK_STATUS, (uint32_t) len);
  out_queue (c, o);
}

static void
creq_free (struct pcd_creq *cr)
{
  free (cr->buf);
  free (cr->ext);
  free (cr);
}

/* A request completed: reply (loop thread). */
void
pcd_conn_complete (struct pcd_creq *cr)
{
  struct pcd_conn *c = cr->conn;

  c->inflight--;
  if (cr->nbd.type == NBD_CMD_READ || cr->nbd.type == NBD_CMD_WRITE)
    c->inflight_bytes -= cr->nbd.count;
  atomic_fetch_add (&c->loop->stats.replies, 1);
  if (c->broken)
    ;                                         /* C2: nobody to reply to */
  else if (cr->req.result < 0)
    error_reply (c, &cr->nbd, pcd_nbd_error (-cr->req.result), cr->req.error);
  else if (cr->nbd.type == NBD_CMD_READ)
    read_reply (c, cr);
  else if (cr->nbd.type == NBD_CMD_BLOCK_STATUS)
    block_status_reply (c, cr);
  else
    simple_reply (c, cr->nbd.cookie, 0, NULL, 0);
  creq_free (cr);
  if (c->in_handler)
    return;                                   /* the handler flushes */
  c->in_handler++;
  conn_flush (c);
  c->in_handler--;
  if (!c->broken && !paused (c) &&
      (c->in_end > c->in_start || (c->tls && pcd_tls_pending (c->tls))))
    conn_read (c);                            /* resume parsed-ahead input */
  conn_maybe_free (c);
}

/* Core callback: any thread. */
static void
on_done (struct pc_req *req)
{
  struct pcd_creq *cr = (struct pcd_creq *) req;

  if (req->completed_inline)
    pcd_conn_complete (cr);                   /* we are on the loop */
  else
    pcd_loop_post_completion (cr->conn->loop, cr);
}

/* BLOCK_STATUS runs: on whatever thread runs the request; only touches
 * the request.  Runs are merged, clipped to the request, capped. */
static int
add_extent (struct pc_req *req, uint64_t offset, uint64_t length,
            bool is_hole)
{
  struct pcd_creq *cr = (struct pcd_creq *) req;
  uint64_t end = cr->nbd.offset + cr->nbd.count;
  uint32_t flags = is_hole ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
  struct extent *last = cr->next_ext ? &cr->ext[cr->next_ext - 1] : NULL;

  if (offset >= end)
    return 1;
  if (length > end - offset)
    length = end - offset;
  if (last && last->flags == flags && !(req->flags & PC_REQ_ONE)) {
    last->length += (uint32_t) length;        /* sum <= count: fits */
    return 0;
  }
  if (cr->next_ext == MAX_EXTENTS)
    return 1;
  cr->ext[cr->next_ext++] = (struct extent) { (uint32_t) length, flags };
  return (req->flags & PC_REQ_ONE) ? 1 : 0;
}

static enum pc_op
core_op (uint16_t type)
{
  switch (type) {
  case NBD_CMD_READ: return PC_OP_READ;
  case NBD_CMD_WRITE: return PC_OP_WRITE;
  case NBD_CMD_FLUSH: return PC_OP_FLUSH;
  case NBD_CMD_TRIM: return PC_OP_TRIM;
  case NBD_CMD_CACHE: return PC_OP_CACHE;
  case NBD_CMD_BLOCK_STATUS: return PC_OP_EXTENTS;
  default: return PC_OP_ZERO;
  }
}

static void
submit (struct pcd_conn *c, struct pcd_creq *cr)
{
  const struct pcd_request *r = &cr->nbd;
  unsigned f = 0;

  if (r->flags & NBD_CMD_FLAG_FUA) f |= PC_FUA;
  if (r->type == NBD_CMD_WRITE_ZEROES && (r->flags & NBD_CMD_FLAG_NO_HOLE))
    f |= PC_NO_HOLE;
  if (r->flags & NBD_CMD_FLAG_REQ_ONE) f |= PC_REQ_ONE;
  cr->req = (struct pc_req) {
    .op = core_op (r->type), .vol = c->vol, .offset = r->offset,
    .count = r->count, .flags = f, .buf = cr->buf, .extent = add_extent,
    .done = on_done,
  };
  c->inflight++;
  if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)
    c->inflight_bytes += r->count;
  atomic_fetch_add (&c->loop->stats.requests, 1);
  pc_core_submit (pcd_config.core, &cr->req);
}

static struct pcd_creq *
creq_new (struct pcd_conn *c, const struct pcd_request *r)
{
  struct pcd_creq *cr = calloc (1, sizeof *cr);

  if (cr == NULL)
    return NULL;
  cr->conn = c;
  cr->nbd = *r;
  if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
      (cr->buf = malloc (r->count)) == NULL) {
    free (cr);
    return NULL;
  }
  if (r->type == NBD_CMD_BLOCK_STATUS &&
      (cr->ext = malloc (MAX_EXTENTS * sizeof *cr->ext)) == NULL) {
    free (cr);
    return NULL;
  }
  return cr;
}

/* A request header arrived. */
static void
handle_request (struct pcd_conn *c, const uint8_t *hdr)
{
  struct pcd_request r;
  struct pcd_creq *cr;
  uint32_t err;

  if (pcd_parse_request (hdr, &r) < 0) {
    protocol_error (c, "a request with a bad magic");
    return;
  }
  if (r.type == NBD_CMD_DISC) {
    c->draining = true;
    return;
  }
  err = pcd_check_request (&r, &c->caps);
  if (r.type == NBD_CMD_WRITE && (err || r.count > PCD_MAX_REQUEST_SIZE)) {
    /* C3: refuse at once (the client may never send a 4 GiB payload),
     * then skip the payload, never buffering it. */
    error_reply (c, &r, err ? err : NBD_EINVAL,
                 r.count > PCD_MAX_REQUEST_SIZE ? "write larger than 64 MiB"
                                                : "invalid write");
    c->need = r.count;
    c->have = 0;
    c->st = CS_REQ_DISCARD;
    return;
  }
  if (err) {
    error_reply (c, &r, err, "invalid request");
    return;
  }
  if ((cr = creq_new (c, &r)) == NULL) {
    error_reply (c, &r, NBD_ENOMEM, "out of memory");
    return;
  }
  if (r.type == NBD_CMD_WRITE) {
    c->wreq = cr;
    c->need = r.count;
    c->have = 0;
    c->st = CS_REQ_PAYLOAD;
    return;
  }
  submit (c, cr);
}

/* ---- input ---- */

static size_t
avail (const struct pcd_conn *c)
{
  return c->in_end - c->in_start;
}

/* Consume up to n buffered bytes into dst (NULL: drop them). */
static size_t
take (struct pcd_conn *c, void *dst, uint64_t n)
{
  size_t k = avail (c) < n ? avail (c) : (size_t) n;

  if (dst) memcpy (dst, c->in + c->in_start, k);
  c->in_start += k;
  return k;
}

static bool
paused (const struct pcd_conn *c)
{
  return c->broken || c->draining || c->st == CS_TLS_HANDSHAKE ||
    c->inflight >= MAX_INFLIGHT || c->inflight_bytes >= MAX_INFLIGHT_BYTES ||
    c->out_bytes >= MAX_OUT_BYTES || c->close_after_output;
}

/* Parse what the input buffer holds.  Returns when it needs more bytes or
 * the connection pauses. */
static void
process_input (struct pcd_conn *c)
{
  uint32_t flags;

  while (!paused (c)) {
    switch (c->st) {
    case CS_CLIENT_FLAGS:
      if (avail (c) < 4) return;
      if (pcd_parse_client_flags (c->in + c->in_start, &flags) < 0) {
        protocol_error (c, "bad handshake flags");
        return;
      }
      c->in_start += 4;
      c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
      c->st = CS_OPT_HEADER;
      break;
    case CS_OPT_HEADER:
      if (avail (c) < PCD_OPTION_HEADER_SIZE) return;
      if (pcd_parse_option_header (c->in + c->in_start, &c->opt) < 0) {
        protocol_error (c, "an option with a bad magic");
        return;
      }
      c->in_start += PCD_OPTION_HEADER_SIZE;
      if (c->opt.length > PCD_MAX_OPTION_LENGTH) {        /* C4 */
        protocol_error (c, "an option longer than 64 KiB");
        return;
      }
      free (c->payload);
      c->payload = malloc (c->opt.length + 1);
      if (c->payload == NULL) { conn_break (c, "out of memory"); return; }
      c->need = c->opt.length;
      c->have = 0;
      c->st = CS_OPT_PAYLOAD;
      break;
    case CS_OPT_PAYLOAD:
      c->have += take (c, c->payload + c->have, c->need - c->have);
      if (c->have < c->need) return;
      c->st = CS_OPT_HEADER;
      handle_option (c);
      break;
    case CS_REQ_HEADER:
      if (avail (c) < PCD_REQUEST_SIZE) return;
      c->in_start += PCD_REQUEST_SIZE;
      handle_request (c, c->in + c->in_start - PCD_REQUEST_SIZE);
      break;
    case CS_REQ_PAYLOAD:
      c->have += take (c, c->wreq->buf + c->have, c->need - c->have);
      if (c->have < c->need) return;
      c->st = CS_REQ_HEADER;
      submit (c, c->wreq);
      c->wreq = NULL;
      break;
    case CS_REQ_DISCARD:
      c->have += take (c, NULL, c->need - c->have);
      if (c->have < c->need) return;
      c->st = CS_REQ_HEADER;
      break;
    case CS_TLS_HANDSHAKE:
      return;
    }
  }
}

static ssize_t
recv_some (struct pcd_conn *c, void *buf, size_t len)
{
  ssize_t r;

  if (c->tls)
    return pcd_tls_recv (c->tls, buf, len, &c->tls_wants_write);
  r = recv (c->fd, buf, len, 0);
  return r < 0 ? -errno : r;
}

/* Read and process until the socket would block or we pause. */
static void
conn_read (struct pcd_conn *c)
{
  for (;;) {
    ssize_t r;
    void *dst;
    size_t len;

    process_input (c);
    if (paused (c))
      return;
    if (c->in_start == c->in_end)
      c->in_start = c->in_end = 0;
    if (c->st == CS_REQ_PAYLOAD && avail (c) == 0 &&
        c->need - c->have >= IN_SIZE) {
      dst = c->wreq->buf + c->have;           /* big payload: no copy */
      len = (size_t) (c->need - c->have);
    }
    else {
      if (c->in_end == IN_SIZE) {             /* compact */
        memmove (c->in, c->in + c->in_start, avail (c));
        c->in_end -= c->in_start;
        c->in_start = 0;
      }
      dst = c->in + c->in_end;
      len = IN_SIZE - c->in_end;
    }
    r = recv_some (c, dst, len);
    if (r == -EAGAIN || r == -EINTR)
      return;
    if (r <= 0) {
      conn_break (c, r == 0 ? "client closed the connection" : "recv failed");
      return;
    }
    atomic_fetch_add (&c->loop->stats.bytes_in, (uint64_t) r);
    if (dst == c->in + c->in_end)
      c->in_end += (size_t) r;
    else
      c->have += (uint64_t) r;
  }
}

/* ---- TLS handshake ---- */

static void
tls_step (struct pcd_conn *c)
{
  char err[256];
  bool ww = false;
  int r = pcd_tls_handshake (c->tls, &ww, err, sizeof err);

  ev_io_stop (c->loop->ev, &c->rw);
  ev_io_stop (c->loop->ev, &c->ww);
  if (r == -EAGAIN) {
    ev_io_start (c->loop->ev, ww ? &c->ww : &c->rw);
    return;
  }
  if (r < 0) {
    pcd_log ("TLS handshake failed: %s", err);
    conn_break (c, NULL);
    return;
  }
  pcd_debug ("TLS on, peer %s", pcd_tls_peer (c->tls));
  c->tls_done = true;
  c->st = CS_OPT_HEADER;
}

/* ---- libev callbacks ---- */

static void
on_io (struct pcd_conn *c, bool readable)
{
  c->in_handler++;
  if (c->st == CS_TLS_HANDSHAKE)
    tls_step (c);
  if (c->st != CS_TLS_HANDSHAKE) {
    if (readable || c->tls_wants_write)
      conn_read (c);
    conn_flush (c);
    if (!c->broken && !paused (c) &&
        (c->in_end > c->in_start || (c->tls && pcd_tls_pending (c->tls))))
      conn_read (c);
  }
  c->in_handler--;
  conn_maybe_free (c);
}

static void
on_readable (struct ev_loop *ev, ev_io *w, int revents)
{
  on_io (w->data, true);
}

static void
on_writable (struct ev_loop *ev, ev_io *w, int revents)
{
  on_io (w->data, false);
}

void
pcd_conn_new (struct pcd_loop *loop, int fd)
{
  struct pcd_conn *c = calloc (1, sizeof *c);
  uint8_t greeting[PCD_GREETING_SIZE];

  if (c == NULL) {
    pcd_log ("out of memory for a new connection: closed");
    close (fd);
    return;
  }
  c->loop = loop;
  c->fd = fd;
  c->st = CS_CLIENT_FLAGS;
  ev_io_init (&c->rw, on_readable, fd, EV_READ);
  ev_io_init (&c->ww, on_writable, fd, EV_WRITE);
  c->rw.data = c->ww.data = c;
  c->next = loop->conns;
  if (loop->conns) loop->conns->prev = c;
  loop->conns = c;
  atomic_fetch_add (&loop->stats.connections, 1);
  atomic_fetch_add (&loop->stats.connections_now, 1);
  out_bytes (c, greeting, pcd_encode_greeting (greeting));
  c->in_handler++;
  conn_flush (c);
  c->in_handler--;
  conn_maybe_free (c);
}
