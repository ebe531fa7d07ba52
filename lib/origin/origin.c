/* punchcache: the client of a remote origin export (issue 15).
 *
 * What: a volume may read through a remote NBD export, its origin, named by
 * a libnbd URI.  This module keeps 1..16 connections to it and serves
 * blocking and asynchronous reads, writes, zeroes, trims, flushes and
 * block-status queries over them; it reconnects in the background when a
 * connection dies and never turns a failure into data (include/punchcache/
 * origin.h is the contract).  It is a bottom layer: it uses lib/util only.
 *
 * Why this shape: libnbd's asynchronous API lets one thread keep many
 * commands in flight on one socket, so each connection is owned by one
 * thread (its "connection thread") that alone calls nbd_* on its handle:
 * no lock around libnbd, and completion callbacks run in that thread.
 * Callers never touch a handle: a caller request is cut into pieces (at
 * the origin's maximum block size), each piece is appended to the queue of
 * the up connection with the least load (queued + in flight), and the
 * connection's eventfd wakes its thread.  The thread moves up to
 * PC_ORIGIN_MAX_IN_FLIGHT pieces from its queue into libnbd, then polls
 * the socket (in the direction libnbd asks for) and the eventfd, with a
 * timeout at the earliest reply deadline of its commands.  A request
 * completes when its last piece does, in whichever connection thread
 * finished that piece; blocking calls wait on a condition variable of
 * their own.
 *
 *   caller ──pieces──> conn[i].queue ──thread i──> libnbd handle i ──> origin
 *      ^                                              │ completion callback
 *      └──── cb / waiter <── last piece done <────────┘
 *
 * Faults: a connection that dies (EOF, reset, a reply that breaks the
 * protocol), or one with a command past its deadline, is dropped: its
 * handle is closed first (libnbd lets go of the buffers), then every piece
 * it held, queued or in flight, fails with EIO and a message naming the
 * URI.  Its thread then reconnects with exponential backoff (100 ms
 * doubling to 5 s) and puts the connection back up when the handshake
 * succeeds and the origin still has the same size.  While no connection
 * is up, requests fail at once ("unreachable").
 *
 * Invariants:
 *  O1 A handle is used only by its connection's thread (open hands each
 *     handle over before the thread starts and never touches it again).
 *  O2 Every piece completes exactly once (piece_done): by its completion
 *     callback, by a failed submission, or by the drop or close that
 *     removed it from its connection; p->done guards it.  A request
 *     completes (cb called or waiter woken) exactly once, when its
 *     remaining count reaches zero, and is freed after that by its owner
 *     (request_done for asynchronous reads, the waiting caller otherwise).
 *  O3 A piece is handed to a caller's buffer only while its handle is
 *     open: a dropped connection's handle is closed before its pieces are
 *     failed, so libnbd never writes into a buffer whose request already
 *     returned.
 *  O4 Pieces are queued only on connections that are up, under o->lock,
 *     and a drop marks the connection down and takes its queue in the same
 *     critical section: no piece is left in the queue of a down
 *     connection.  All pieces of one request are queued in one critical
 *     section, so a request is either wholly queued or refused at once
 *     (an asynchronous read's cb is never called from the submitter).
 *  O5 Data never comes from anywhere but the origin's reply: a read fails
 *     unless libnbd completed it without error (libnbd checks the reply's
 *     length and offsets, strict mode on).  Extents say zero only for the
 *     origin's NBD_STATE_ZERO runs, clipped to the request.
 *  O6 o->up == the number of connections with c->up, and down_since is the
 *     time o->up last became 0.
 *
 * Locks:
 *  o->lock (one mutex per origin) protects o->closing, o->up, down_since,
 *  last_err, and each connection's up flag and queue.  It is a leaf: held
 *  for list and flag work only, never across poll, a libnbd call, a
 *  callback or a wait.  w->lock (the waiter of one blocking call) is taken
 *  by request_done after o->lock is released, never with it.  Counters are
 *  atomics; a connection's in-flight list and handle belong to its thread
 *  (O1) and need no lock.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "punchcache/clock.h"
#include "punchcache/origin.h"
#include "punchcache/punchcache.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define ZERO_BUF_SIZE (1024 * 1024)          /* writes of zeros, fallback */
#define NOPAYLOAD_PIECE (1024u * 1024 * 1024)  /* zero/trim: 32-bit lengths */
#define EXTENTS_QUERY (1024u * 1024 * 1024)   /* one block-status command */
#define EXTENTS_MAX 4096                     /* entries kept per command */
#define WINDOW_PIECES 64                 /* pieces of one blocking request */
#define ASYNC_MAX_PIECES 4096            /* pieces of an asynchronous read */
#define MSG_SIZE 320
#define DETAIL_SIZE 200               /* libnbd's words, inside a message */

enum op { OP_READ, OP_WRITE, OP_ZERO, OP_ZERO_BY_WRITE, OP_TRIM, OP_FLUSH,
          OP_EXTENTS };
static const char *const op_name[] = {
  "read", "write", "write zeroes", "write of zeros", "trim", "flush",
  "block status",
};

struct extent { uint64_t off, len; bool zero; };

struct waiter {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
};

struct request;
struct conn;

/* One NBD command. */
struct piece {
  struct request *rq;
  struct conn *c;                 /* set when queued */
  uint64_t off, len;
  char *buf;                      /* read/write data, NULL otherwise */
  uint64_t deadline_ns;           /* set when handed to libnbd */
  struct piece *next, *prev;      /* queue (next only) or in-flight list */
  bool done;                      /* O2 */
};

/* One caller request. */
struct request {
  struct pc_origin *o;
  enum op op;
  uint64_t count, offset;
  bool fua;
  uint64_t start_ns;
  void (*cb) (void *opaque, int result);   /* asynchronous reads */
  void *opaque;
  struct waiter *waiter;                   /* blocking calls */
  atomic_uint remaining;
  atomic_int error;               /* first error (-errno), 0 if none */
  char msg[MSG_SIZE];             /* written by whoever set error */
  /* OP_EXTENTS (one piece; written by the connection thread, read by the
   * waiting caller after completion): */
  struct extent *ext;
  size_t next;
  uint64_t ext_end;               /* end of what the entries cover */
  bool ext_seen;
  unsigned npieces;
  struct piece pieces[];
};

struct conn {
  struct pc_origin *o;
  unsigned idx;
  pthread_t thread;
  bool thread_started;
  int efd;                        /* eventfd: new pieces, close */
  atomic_uint load;               /* pieces queued or in flight here */
  /* Under o->lock: */
  bool up;
  struct piece *q_head, **q_tail;
  /* The connection thread's own (O1): */
  struct nbd_handle *h;
  struct piece *inflight;         /* doubly linked */
  unsigned n_inflight;
  struct piece *issuing;          /* handed to libnbd right now, until its
                                   * call returns or its callback runs */
  bool dropping;
  char drop_msg[MSG_SIZE];
};

struct pc_origin {
  char *uri;
  uint64_t size;
  bool readonly, writable;
  bool can_zero, can_trim, can_flush, can_fua, base_allocation;
  unsigned max_request;
  char *zero_buf;                 /* ZERO_BUF_SIZE zeros if !can_zero */
  atomic_uint timeout_ms;
  unsigned nconns;

  pthread_mutex_t lock;
  /* Under lock: */
  bool closing;
  unsigned up;                    /* O6 */
  uint64_t down_since_ns;
  char last_err[MSG_SIZE];

  atomic_uint_fast64_t reads, bytes_read, writes, bytes_written, zeroes;
  atomic_uint_fast64_t trims, flushes, errors, reconnects, timeouts;
  atomic_uint_fast64_t read_ns_total, read_ns_max, in_flight;

  struct conn conns[PC_ORIGIN_MAX_CONNECTIONS];
};


static void
wake (struct conn *c)
{
  uint64_t one = 1;
  ssize_t r = write (c->efd, &one, sizeof one);

  (void) r;                       /* EAGAIN: the counter is already set */
}

/* ---- completion ---- */

static void
request_done (struct request *rq)
{
  struct pc_origin *o = rq->o;
  int result = atomic_load (&rq->error);
  uint64_t ns = pc_now_ns () - rq->start_ns, max;

  if (result == 0) {
    switch (rq->op) {
    case OP_READ:
      atomic_fetch_add (&o->reads, 1);
      atomic_fetch_add (&o->bytes_read, rq->count);
      break;
    case OP_WRITE:
      atomic_fetch_add (&o->writes, 1);
      atomic_fetch_add (&o->bytes_written, rq->count);
      break;
    case OP_ZERO: case OP_ZERO_BY_WRITE:
      atomic_fetch_add (&o->zeroes, 1); break;
    case OP_TRIM: atomic_fetch_add (&o->trims, 1); break;
    case OP_FLUSH: atomic_fetch_add (&o->flushes, 1); break;
    case OP_EXTENTS: break;
    }
  }
  else
    atomic_fetch_add (&o->errors, 1);
  if (rq->op == OP_READ) {
    atomic_fetch_add (&o->read_ns_total, ns);
    max = atomic_load (&o->read_ns_max);
    while (ns > max &&
           !atomic_compare_exchange_weak (&o->read_ns_max, &max, ns))
      ;
  }
  atomic_fetch_sub (&o->in_flight, 1);

  if (rq->waiter) {               /* the caller frees rq (O2) */
    struct waiter *w = rq->waiter;

    pthread_mutex_lock (&w->lock);
    w->done = true;
    pthread_cond_signal (&w->cond);
    pthread_mutex_unlock (&w->lock);
    return;
  }
  if (result)
    pc_error (result, "%s", rq->msg);
  rq->cb (rq->opaque, result);
  free (rq->ext);
  free (rq);
}

/* O2: complete one piece (err 0 or -errno, msg explaining err). */
static void
piece_done (struct piece *p, int err, const char *msg)
{
  struct request *rq = p->rq;

  if (p->done)
    return;
  p->done = true;
  if (p->c)
    atomic_fetch_sub (&p->c->load, 1);
  if (err) {
    int none = 0;

    if (atomic_compare_exchange_strong (&rq->error, &none, err))
      snprintf (rq->msg, sizeof rq->msg, "%s", msg);
  }
  if (atomic_fetch_sub (&rq->remaining, 1) == 1)
    request_done (rq);
}

static void
inflight_unlink (struct conn *c, struct piece *p)
{
  if (p->prev)
    p->prev->next = p->next;
  else
    c->inflight = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->next = p->prev = NULL;
  c->n_inflight--;
}

static void
piece_fail (struct piece *p, int err, const char *detail)
{
  char msg[MSG_SIZE];

  snprintf (msg, sizeof msg, "origin %s: %s of %" PRIu64 " bytes at %"
            PRIu64 " failed: %s", p->rq->o->uri, op_name[p->rq->op],
            p->len, p->off, detail);
  piece_done (p, err, msg);
}

/* libnbd's completion callback (in the connection thread). */
static int
completion_cb (void *user_data, int *error)
{
  struct piece *p = user_data;
  struct conn *c = p->c;

  if (c->issuing == p)            /* called from within issue () */
    c->issuing = NULL;
  inflight_unlink (c, p);
  if (*error == 0 && p->rq->op == OP_EXTENTS && !p->rq->ext_seen) {
    /* A reply without our context: the run is data (O5); not an error. */
    p->rq->ext_end = p->off;
  }
  if (*error == 0)
    piece_done (p, 0, NULL);
  else if (c->dropping)
    piece_done (p, -EIO, c->drop_msg);
  else
    piece_fail (p, *error == ENOSPC ? -ENOSPC : -EIO, strerror (*error));
  return 1;
}

/* libnbd's block-status callback: keep the base:allocation entries,
 * clipped to the piece, in order (O5). */
static int
extent_cb (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct piece *p = user_data;
  struct request *rq = p->rq;
  uint64_t cur = p->off, end = p->off + p->len, len;
  size_t i;

  (void) error;
  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 ||
      rq->ext_seen)
    return 0;                     /* one reply per context */
  rq->ext_seen = true;
  rq->ext_end = cur;
  if (offset != p->off)           /* not the start we asked for */
    return 0;
  for (i = 0; i + 1 < nr_entries && cur < end && rq->next < EXTENTS_MAX;
       i += 2) {
    len = entries[i];
    if (len == 0)
      break;
    if (len > end - cur)
      len = end - cur;
    rq->ext[rq->next++] = (struct extent) {
      cur, len, (entries[i + 1] & LIBNBD_STATE_ZERO) != 0 };
    cur += len;
  }
  rq->ext_end = cur;
  return 0;
}

/* ---- the connection thread ---- */

/* Hand one piece to libnbd; false if the handle is dead. */
static bool
issue (struct conn *c, struct piece *p)
{
  struct pc_origin *o = c->o;
  struct request *rq = p->rq;
  nbd_completion_callback cb = { .callback = completion_cb, .user_data = p };
  uint32_t flags = rq->fua && o->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
  int64_t r = -1;

  p->deadline_ns = pc_now_ns () + atomic_load (&o->timeout_ms) * UINT64_C (1000000);
  p->prev = NULL;
  p->next = c->inflight;
  if (c->inflight)
    c->inflight->prev = p;
  c->inflight = p;
  c->n_inflight++;
  c->issuing = p;
  switch (rq->op) {
  case OP_READ:
    r = nbd_aio_pread (c->h, p->buf, p->len, p->off, cb, 0);
    break;
  case OP_WRITE:
    r = nbd_aio_pwrite (c->h, p->buf, p->len, p->off, cb, flags);
    break;
  case OP_ZERO_BY_WRITE:
    r = nbd_aio_pwrite (c->h, o->zero_buf, p->len, p->off, cb, flags);
    break;
  case OP_ZERO:
    r = nbd_aio_zero (c->h, p->len, p->off, cb, flags);
    break;
  case OP_TRIM:
    r = nbd_aio_trim (c->h, p->len, p->off, cb, flags);
    break;
  case OP_FLUSH:
    r = nbd_aio_flush (c->h, cb, 0);
    break;
  case OP_EXTENTS:
    r = nbd_aio_block_status (c->h, p->len, p->off,
                              (nbd_extent_callback) {
                                .callback = extent_cb, .user_data = p },
                              cb, 0);
    break;
  }
  if (r == -1 && c->issuing) {    /* not queued, and no callback ran */
    c->issuing = NULL;
    inflight_unlink (c, p);
    piece_fail (p, -EIO, nbd_get_error ());
  }
  c->issuing = NULL;              /* p may be freed from here on */
  return !(nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h));
}

/* Take the connection down: O4 (queue), O3 (close before failing), O6. */
static void
conn_drop (struct conn *c, const char *why)
{
  struct pc_origin *o = c->o;
  struct piece *queued, *p;

  c->dropping = true;
  snprintf (c->drop_msg, sizeof c->drop_msg, "%s", why);
  pthread_mutex_lock (&o->lock);
  if (c->up) {
    c->up = false;
    if (--o->up == 0)
      o->down_since_ns = pc_now_ns ();
  }
  snprintf (o->last_err, sizeof o->last_err, "%s", why);
  queued = c->q_head;
  c->q_head = NULL;
  c->q_tail = &c->q_head;
  pthread_mutex_unlock (&o->lock);

  if (c->h) {
    nbd_close (c->h);             /* may run completion callbacks */
    c->h = NULL;
  }
  while ((p = c->inflight) != NULL) {
    inflight_unlink (c, p);
    piece_done (p, -EIO, c->drop_msg);
  }
  while ((p = queued) != NULL) {
    queued = p->next;
    piece_done (p, -EIO, c->drop_msg);
  }
  c->dropping = false;
}

static bool
closing (struct pc_origin *o)
{
  bool r;

  pthread_mutex_lock (&o->lock);
  r = o->closing;
  pthread_mutex_unlock (&o->lock);
  return r;
}

static void
drain (int efd)
{
  uint64_t v;
  ssize_t r = read (efd, &v, sizeof v);

  (void) r;
}

/* Serve while the connection is up; returns after conn_drop. */
static void
conn_serve (struct conn *c)
{
  struct pc_origin *o = c->o;
  char why[MSG_SIZE];

  for (;;) {
    struct piece *take = NULL, **tail = &take, *p;
    struct pollfd fds[2];
    uint64_t now, first;
    unsigned dir, n;
    int timeout, r;
    bool stop;

    pthread_mutex_lock (&o->lock);
    stop = o->closing;
    for (n = c->n_inflight;
         !stop && c->q_head && n < PC_ORIGIN_MAX_IN_FLIGHT; n++) {
      p = c->q_head;
      c->q_head = p->next;
      if (!c->q_head)
        c->q_tail = &c->q_head;
      p->next = NULL;
      *tail = p;
      tail = &p->next;
    }
    pthread_mutex_unlock (&o->lock);
    if (stop) {                   /* nothing was taken */
      snprintf (why, sizeof why, "origin %s: closed", o->uri);
      conn_drop (c, why);
      return;
    }
    while ((p = take) != NULL) {
      take = p->next;
      if (!issue (c, p)) {
        snprintf (why, sizeof why, "origin %s: connection lost: %s",
                  o->uri, nbd_get_error ());
        while ((p = take) != NULL) {
          take = p->next;
          piece_done (p, -EIO, why);
        }
        conn_drop (c, why);
        return;
      }
    }

    /* Wait for the socket, new pieces, or the first deadline. */
    now = pc_now_ns ();
    first = UINT64_MAX;
    for (p = c->inflight; p; p = p->next)
      if (p->deadline_ns < first)
        first = p->deadline_ns;
    if (first != UINT64_MAX && first <= now) {
      n = 0;
      for (p = c->inflight; p; p = p->next)
        if (p->deadline_ns <= now)
          n++;
      atomic_fetch_add (&o->timeouts, n);
      snprintf (why, sizeof why,
                "origin %s: no reply within %u ms (timed out); reconnecting",
                o->uri, atomic_load (&o->timeout_ms));
      conn_drop (c, why);
      return;
    }
    timeout = first == UINT64_MAX ? -1
      : (int) ((first - now + 999999) / 1000000);
    dir = nbd_aio_get_direction (c->h);
    fds[0] = (struct pollfd) { .fd = c->efd, .events = POLLIN };
    fds[1] = (struct pollfd) { .fd = nbd_aio_get_fd (c->h), .events = 0 };
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      fds[1].events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
      fds[1].events |= POLLOUT;
    r = poll (fds, 2, timeout);
    if (r == -1 && errno != EINTR) {
      snprintf (why, sizeof why, "origin %s: poll: %s", o->uri,
                strerror (errno));
      conn_drop (c, why);
      return;
    }
    if (r <= 0)
      continue;
    if (fds[0].revents & POLLIN)
      drain (c->efd);
    r = 0;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
      r = nbd_aio_notify_read (c->h);
    else if (fds[1].revents & POLLOUT)
      r = nbd_aio_notify_write (c->h);
    if (r == -1 || nbd_aio_is_dead (c->h) || nbd_aio_is_closed (c->h)) {
      snprintf (why, sizeof why, "origin %s: connection lost: %s", o->uri,
                r == -1 ? nbd_get_error () : "closed by the server");
      conn_drop (c, why);
      return;
    }
  }
}

/* ---- connecting ---- */

/* Connect a new handle to o->uri and wait for the handshake, at most
 * timeout_ms, giving up early if efd >= 0 is signalled and o is closing.
 * On failure: -errno (libnbd's, or ETIMEDOUT/ECANCELED) and msg. */
static int
conn_connect (struct pc_origin *o, int efd, struct nbd_handle **hp,
              char *msg, size_t msgsize, bool *in_call)
{
  struct nbd_handle *h = nbd_create ();
  uint64_t deadline = pc_now_ns () + atomic_load (&o->timeout_ms) * UINT64_C (1000000);
  int err;

  *in_call = false;
  if (!h) {
    snprintf (msg, msgsize, "%s", nbd_get_error ());
    return -ENOMEM;
  }
  if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
    goto fail;
  *in_call = true;
  if (nbd_aio_connect_uri (h, o->uri) == -1)
    goto fail;
  *in_call = false;
  while (!nbd_aio_is_ready (h)) {
    struct pollfd fds[2];
    unsigned dir;
    uint64_t now = pc_now_ns ();
    int r;

    if (nbd_aio_is_dead (h) || nbd_aio_is_closed (h)) {
      snprintf (msg, msgsize, "the server closed the connection during "
                "the handshake");
      nbd_close (h);
      return -ECONNRESET;
    }
    if (now >= deadline) {
      snprintf (msg, msgsize, "no handshake within %u ms (timed out)",
                atomic_load (&o->timeout_ms));
      nbd_close (h);
      return -ETIMEDOUT;
    }
    dir = nbd_aio_get_direction (h);
    fds[0] = (struct pollfd) { .fd = nbd_aio_get_fd (h), .events = 0 };
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      fds[0].events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
      fds[0].events |= POLLOUT;
    fds[1] = (struct pollfd) { .fd = efd, .events = POLLIN };
    r = poll (fds, efd >= 0 ? 2 : 1,
              (int) ((deadline - now + 999999) / 1000000));
    if (r == -1 && errno != EINTR) {
      snprintf (msg, msgsize, "poll: %s", strerror (errno));
      nbd_close (h);
      return -EIO;
    }
    if (r <= 0)
      continue;
    if (efd >= 0 && (fds[1].revents & POLLIN)) {
      drain (efd);
      if (closing (o)) {
        snprintf (msg, msgsize, "closed");
        nbd_close (h);
        return -ECANCELED;
      }
    }
    r = 0;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
      r = nbd_aio_notify_read (h);
    else if (fds[0].revents & POLLOUT)
      r = nbd_aio_notify_write (h);
    if (r == -1)
      goto fail;
  }
  *hp = h;
  return 0;

 fail:
  err = nbd_get_errno ();
  snprintf (msg, msgsize, "%s", nbd_get_error ());
  nbd_close (h);
  return -(err ? err : EIO);
}

/* Check a connected handle against o (sizes O5, read-only). */
static int
conn_check (struct pc_origin *o, struct nbd_handle *h, bool first,
            char *msg, size_t msgsize)
{
  int64_t size = nbd_get_size (h);
  int ro = nbd_is_read_only (h);

  if (size <= 0 || (uint64_t) size > PC_ORIGIN_MAX_SIZE) {
    snprintf (msg, msgsize, "origin %s: implausible size %" PRId64
              " (must be 1 .. 2^60)", o->uri, size);
    return -EIO;
  }
  if (!first && (uint64_t) size != o->size) {
    snprintf (msg, msgsize, "origin %s: size %" PRId64 " differs from the "
              "%" PRIu64 " of its first connection", o->uri, size, o->size);
    return -EIO;
  }
  if (o->writable && ro != 0) {
    snprintf (msg, msgsize, "origin %s is read-only, but the volume writes "
              "through to it (writethrough)", o->uri);
    return -EROFS;
  }
  if (first) {
    int64_t max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);

    o->size = (uint64_t) size;
    o->readonly = ro != 0;
    o->can_zero = nbd_can_zero (h) == 1;
    o->can_trim = nbd_can_trim (h) == 1;
    o->can_flush = nbd_can_flush (h) == 1;
    o->can_fua = nbd_can_fua (h) == 1;
    o->base_allocation =
      nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    o->max_request = PC_ORIGIN_MAX_REQUEST;
    if (max > 0 && (uint64_t) max < o->max_request)
      o->max_request = max < 512 ? 512 : (unsigned) max;
  }
  return 0;
}

static void *
conn_thread (void *arg)
{
  struct conn *c = arg;
  struct pc_origin *o = c->o;
  unsigned backoff = BACKOFF_FIRST_MS;
  char msg[DETAIL_SIZE];

  for (;;) {
    struct pollfd fd = { .fd = c->efd, .events = POLLIN };
    struct nbd_handle *h;
    bool in_call, connected;
    int r;

    if (c->h) {
      conn_serve (c);
      backoff = BACKOFF_FIRST_MS;
    }
    /* Down: wait, then try again (O4: nothing is queued here now). */
    if (closing (o))
      return NULL;
    if (poll (&fd, 1, (int) backoff) > 0)
      drain (c->efd);
    if (closing (o))
      return NULL;
    r = conn_connect (o, c->efd, &h, msg, sizeof msg, &in_call);
    connected = r == 0;
    if (connected && (r = conn_check (o, h, false, msg, sizeof msg)) < 0)
      nbd_close (h);
    if (r < 0) {
      if (r == -ECANCELED)
        return NULL;
      pthread_mutex_lock (&o->lock);
      if (connected)
        snprintf (o->last_err, sizeof o->last_err, "%s", msg);
      else
        snprintf (o->last_err, sizeof o->last_err,
                  "origin %s: cannot connect: %s", o->uri, msg);
      pthread_mutex_unlock (&o->lock);
      backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
      continue;
    }
    c->h = h;
    pthread_mutex_lock (&o->lock);
    c->up = true;
    o->up++;
    pthread_mutex_unlock (&o->lock);
    atomic_fetch_add (&o->reconnects, 1);
  }
}

/* ---- open and close ---- */

static void
origin_free (struct pc_origin *o)
{
  unsigned i;

  for (i = 0; i < o->nconns; i++) {
    if (o->conns[i].h)
      nbd_close (o->conns[i].h);
    if (o->conns[i].efd >= 0)
      close (o->conns[i].efd);
  }
  pthread_mutex_destroy (&o->lock);
  free (o->zero_buf);
  free (o->uri);
  free (o);
}

int
pc_origin_open (const char *uri, unsigned connections, bool writable,
                struct pc_origin **out)
{
  struct pc_origin *o;
  char msg[DETAIL_SIZE];
  unsigned i;
  int r;

  *out = NULL;
  if (!uri || !*uri)
    return pc_error (EINVAL, "origin=: not a valid NBD URI: empty");
  if (connections < 1 || connections > PC_ORIGIN_MAX_CONNECTIONS)
    return pc_error (EINVAL, "origin %s: %u connections (must be 1..%d)",
                     uri, connections, PC_ORIGIN_MAX_CONNECTIONS);
  o = calloc (1, sizeof *o);
  if (!o || !(o->uri = strdup (uri))) {
    free (o);
    return pc_error (ENOMEM, "origin %s: out of memory", uri);
  }
  pthread_mutex_init (&o->lock, NULL);
  atomic_init (&o->timeout_ms, PC_ORIGIN_DEFAULT_TIMEOUT_MS);
  o->writable = writable;
  o->nconns = connections;
  for (i = 0; i < connections; i++) {
    o->conns[i].o = o;
    o->conns[i].idx = i;
    o->conns[i].efd = -1;
    o->conns[i].q_tail = &o->conns[i].q_head;
  }

  for (i = 0; i < connections; i++) {
    struct conn *c = &o->conns[i];
    bool in_call;

    r = conn_connect (o, -1, &c->h, msg, sizeof msg, &in_call);
    if (r < 0) {
      if (r == -EINVAL && in_call)
        r = pc_error (EINVAL, "origin=%s: not a valid NBD URI: %s", uri, msg);
      else {
        if (r == -ENOENT || r == -ENETUNREACH || r == -ETIMEDOUT ||
            r == -EHOSTUNREACH || r == -EHOSTDOWN)
          r = -EHOSTUNREACH;
        else if (r != -ECONNREFUSED && r != -ENOMEM)
          r = -EIO;
        r = pc_error (r, "origin %s: cannot connect: %s", uri, msg);
      }
      origin_free (o);
      return r;
    }
    r = conn_check (o, c->h, i == 0, msg, sizeof msg);
    if (r < 0) {
      origin_free (o);
      return pc_error (r, "%s", msg);
    }
    c->up = true;
    c->efd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd == -1) {
      r = pc_error (errno, "origin %s: eventfd: %s", uri, strerror (errno));
      origin_free (o);
      return r;
    }
  }
  o->up = connections;
  if (!o->can_zero && !o->readonly &&
      !(o->zero_buf = calloc (1, ZERO_BUF_SIZE))) {
    origin_free (o);
    return pc_error (ENOMEM, "origin %s: out of memory", uri);
  }
  for (i = 0; i < connections; i++) {
    r = pthread_create (&o->conns[i].thread, NULL, conn_thread, &o->conns[i]);
    if (r) {
      pc_origin_close (o);
      return pc_error (r, "origin %s: cannot start a thread: %s", uri,
                       strerror (r));
    }
    o->conns[i].thread_started = true;
  }
  *out = o;
  return 0;
}

void
pc_origin_close (struct pc_origin *o)
{
  unsigned i;

  if (!o)
    return;
  pthread_mutex_lock (&o->lock);
  o->closing = true;
  pthread_mutex_unlock (&o->lock);
  for (i = 0; i < o->nconns; i++)
    if (o->conns[i].thread_started) {
      wake (&o->conns[i]);
      pthread_join (o->conns[i].thread, NULL);
      o->conns[i].thread_started = false;
    }
  origin_free (o);
}

uint64_t pc_origin_size (const struct pc_origin *o) { return o->size; }
const char *pc_origin_uri (const struct pc_origin *o) { return o->uri; }
bool pc_origin_readonly (const struct pc_origin *o) { return o->readonly; }
unsigned pc_origin_max_request (const struct pc_origin *o)
{
  return o->max_request;
}

void
pc_origin_set_timeout (struct pc_origin *o, unsigned ms)
{
  atomic_store (&o->timeout_ms, ms ? ms : PC_ORIGIN_DEFAULT_TIMEOUT_MS);
}

/* ---- submission ---- */

/* A request of op over [offset, offset+count) cut into pieces of at most
 * piece bytes (npieces given for flush). */
static struct request *
request_new (struct pc_origin *o, enum op op, char *buf, uint64_t count,
             uint64_t offset, bool fua, uint64_t piece, unsigned npieces)
{
  struct request *rq;
  unsigned i;

  if (op != OP_FLUSH)
    npieces = (unsigned) ((count + piece - 1) / piece);
  rq = calloc (1, sizeof *rq + npieces * sizeof rq->pieces[0]);
  if (!rq)
    return NULL;
  if (op == OP_EXTENTS && !(rq->ext = calloc (EXTENTS_MAX, sizeof *rq->ext))) {
    free (rq);
    return NULL;
  }
  rq->o = o;
  rq->op = op;
  rq->count = count;
  rq->offset = offset;
  rq->fua = fua;
  rq->npieces = npieces;
  for (i = 0; i < npieces; i++) {
    struct piece *p = &rq->pieces[i];
    uint64_t at = (uint64_t) i * piece;

    p->rq = rq;
    if (op != OP_FLUSH) {
      p->off = offset + at;
      p->len = count - at < piece ? count - at : piece;
      p->buf = buf ? buf + at : NULL;
    }
  }
  return rq;
}

static void
request_free (struct request *rq)
{
  free (rq->ext);
  free (rq);
}

/* Queue every piece of rq (O4), or none: -errno with pc_error set. */
static int
request_submit (struct request *rq)
{
  struct pc_origin *o = rq->o;
  bool woken[PC_ORIGIN_MAX_CONNECTIONS] = { false };
  unsigned i, j, k;

  rq->start_ns = pc_now_ns ();
  pthread_mutex_lock (&o->lock);
  if (o->closing) {
    pthread_mutex_unlock (&o->lock);
    return pc_error (EIO, "origin %s: closed", o->uri);
  }
  if (o->up == 0) {
    uint64_t secs = (pc_now_ns () - o->down_since_ns) / 1000000000u;
    int r = pc_error (EIO, "origin %s is unreachable (reconnecting since %"
                      PRIu64 " s): %s", o->uri, secs, o->last_err);

    pthread_mutex_unlock (&o->lock);
    atomic_fetch_add (&o->errors, 1);
    return r;
  }
  if (rq->op == OP_FLUSH)         /* one piece per connection that is up */
    rq->npieces = o->up;
  atomic_init (&rq->remaining, rq->npieces);
  atomic_fetch_add (&o->in_flight, 1);
  for (i = 0, k = 0; i < rq->npieces; i++) {
    struct piece *p = &rq->pieces[i];
    struct conn *best = NULL;

    if (rq->op == OP_FLUSH) {
      while (!o->conns[k].up)
        k++;
      best = &o->conns[k++];
    }
    else
      for (j = 0; j < o->nconns; j++) {
        struct conn *c = &o->conns[j];
        if (c->up && (!best ||
                      atomic_load (&c->load) < atomic_load (&best->load)))
          best = c;
      }
    p->c = best;
    atomic_fetch_add (&best->load, 1);
    *best->q_tail = p;
    best->q_tail = &p->next;
    woken[best->idx] = true;
  }
  pthread_mutex_unlock (&o->lock);
  for (j = 0; j < o->nconns; j++)
    if (woken[j])
      wake (&o->conns[j]);
  return 0;
}

/* Submit and wait; rq is still the caller's afterwards (free it). */
static int
request_run (struct request *rq)
{
  struct waiter w = { .done = false };
  int r;

  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cond, NULL);
  rq->waiter = &w;
  r = request_submit (rq);
  if (r == 0) {
    pthread_mutex_lock (&w.lock);
    while (!w.done)
      pthread_cond_wait (&w.cond, &w.lock);
    pthread_mutex_unlock (&w.lock);
    r = atomic_load (&rq->error);
    if (r)
      pc_error (r, "%s", rq->msg);
  }
  pthread_cond_destroy (&w.cond);
  pthread_mutex_destroy (&w.lock);
  return r;
}

static int
check_range (struct pc_origin *o, uint64_t count, uint64_t offset)
{
  if (offset > o->size || count > o->size - offset)
    return pc_error (EINVAL, "origin %s: %" PRIu64 " bytes at %" PRIu64
                     " reach past its end (%" PRIu64 " bytes)",
                     o->uri, count, offset, o->size);
  return 0;
}

static int
check_writable (struct pc_origin *o, const char *what)
{
  if (o->readonly)
    return pc_error (EROFS, "origin %s is read-only: cannot %s", o->uri, what);
  return 0;
}

/* The blocking calls: validate, build, run, free. */
static int
run_op (struct pc_origin *o, enum op op, char *buf, uint64_t count,
        uint64_t offset, bool fua, uint64_t piece)
{
  struct request *rq;
  int r;

  if ((r = check_range (o, count, offset)) < 0)
    return r;
  /* At most WINDOW_PIECES pieces per request, the windows one after the
   * other: a huge zero or a tiny maximum block size cannot make one
   * request allocate without bound. */
  while (count > 0) {
    uint64_t n = count < piece * WINDOW_PIECES ? count : piece * WINDOW_PIECES;

    rq = request_new (o, op, buf, n, offset, fua, piece, 0);
    if (!rq)
      return pc_error (ENOMEM, "origin %s: out of memory", o->uri);
    r = request_run (rq);
    request_free (rq);
    if (r < 0)
      return r;
    count -= n;
    offset += n;
    if (buf)
      buf += n;
  }
  return 0;
}

int
pc_origin_pread (struct pc_origin *o, void *buf, uint64_t count,
                 uint64_t offset)
{
  return run_op (o, OP_READ, buf, count, offset, false, o->max_request);
}

int
pc_origin_pwrite (struct pc_origin *o, const void *buf, uint64_t count,
                  uint64_t offset, bool fua)
{
  int r = check_writable (o, "write");

  /* The buffer is only read (OP_WRITE); the cast keeps one piece type. */
  return r < 0 ? r : run_op (o, OP_WRITE, (char *) buf, count, offset, fua,
                             o->max_request);
}

int
pc_origin_zero (struct pc_origin *o, uint64_t count, uint64_t offset,
                bool fua)
{
  int r = check_writable (o, "write zeroes");

  if (r < 0)
    return r;
  if (o->can_zero)
    return run_op (o, OP_ZERO, NULL, count, offset, fua, NOPAYLOAD_PIECE);
  return run_op (o, OP_ZERO_BY_WRITE, NULL, count, offset, fua,
                 o->max_request < ZERO_BUF_SIZE ? o->max_request
                 : ZERO_BUF_SIZE);
}

int
pc_origin_trim (struct pc_origin *o, uint64_t count, uint64_t offset,
                bool fua)
{
  int r = check_writable (o, "trim");

  if (r < 0)
    return r;
  if (!o->can_trim)
    return check_range (o, count, offset);
  return run_op (o, OP_TRIM, NULL, count, offset, fua, NOPAYLOAD_PIECE);
}

int
pc_origin_flush (struct pc_origin *o)
{
  struct request *rq;
  int r;

  if (!o->can_flush)
    return 0;
  rq = request_new (o, OP_FLUSH, NULL, 0, 0, false, 1,
                    PC_ORIGIN_MAX_CONNECTIONS);
  if (!rq)
    return pc_error (ENOMEM, "origin %s: out of memory", o->uri);
  r = request_run (rq);
  request_free (rq);
  return r;
}

/* Runs of pc_origin_extents, merged while the kind stays the same. */
struct runs {
  int (*fn) (void *opaque, uint64_t off, uint64_t len, bool zero);
  void *opaque;
  uint64_t off, len;
  bool zero;
};

static int
runs_add (struct runs *rs, uint64_t off, uint64_t len, bool zero)
{
  int r = 0;

  if (rs->len && rs->zero == zero && rs->off + rs->len == off) {
    rs->len += len;
    return 0;
  }
  if (rs->len)
    r = rs->fn (rs->opaque, rs->off, rs->len, rs->zero);
  rs->off = off;
  rs->len = len;
  rs->zero = zero;
  return r;
}

int
pc_origin_extents (struct pc_origin *o, uint64_t count, uint64_t offset,
                   int (*fn) (void *opaque, uint64_t off, uint64_t len,
                              bool zero),
                   void *opaque)
{
  struct runs rs = { .fn = fn, .opaque = opaque };
  uint64_t cur = offset, end = offset + count;
  size_t i;
  int r;

  if ((r = check_range (o, count, offset)) < 0)
    return r;
  while (cur < end && o->base_allocation) {
    uint64_t len = end - cur < EXTENTS_QUERY ? end - cur : EXTENTS_QUERY;
    struct request *rq = request_new (o, OP_EXTENTS, NULL, len, cur, false,
                                      len, 0);
    bool stop;

    if (!rq)
      break;                      /* O5: the rest is reported as data */
    stop = request_run (rq) < 0 || rq->ext_end <= cur;
    for (i = 0, r = 0; !stop && i < rq->next && r == 0; i++)
      r = runs_add (&rs, rq->ext[i].off, rq->ext[i].len, rq->ext[i].zero);
    if (!stop)
      cur = rq->ext_end;
    request_free (rq);
    if (r)
      return r;
    if (stop)
      break;
  }
  if (cur < end && (r = runs_add (&rs, cur, end - cur, false)) != 0)
    return r;
  return rs.len ? fn (opaque, rs.off, rs.len, rs.zero) : 0;
}

int
pc_origin_pread_async (struct pc_origin *o, void *buf, uint64_t count,
                       uint64_t offset,
                       void (*cb) (void *opaque, int result), void *opaque)
{
  struct request *rq;
  int r;

  if ((r = check_range (o, count, offset)) < 0)
    return r;
  if (count == 0 || (count - 1) / o->max_request >= ASYNC_MAX_PIECES)
    return pc_error (EINVAL, "origin %s: asynchronous read of %" PRIu64
                     " bytes (must be 1 .. %u x %u)", o->uri, count,
                     ASYNC_MAX_PIECES, o->max_request);
  rq = request_new (o, OP_READ, buf, count, offset, false, o->max_request, 0);
  if (!rq)
    return pc_error (ENOMEM, "origin %s: out of memory", o->uri);
  rq->cb = cb;
  rq->opaque = opaque;
  r = request_submit (rq);
  if (r < 0)
    request_free (rq);
  return r;
}

void
pc_origin_get_stats (struct pc_origin *o, struct pc_origin_stats *st)
{
  pthread_mutex_lock (&o->lock);
  st->connections = o->nconns;
  st->connections_up = o->up;
  st->connected = o->up > 0;
  pthread_mutex_unlock (&o->lock);
  st->reads = atomic_load (&o->reads);
  st->bytes_read = atomic_load (&o->bytes_read);
  st->writes = atomic_load (&o->writes);
  st->bytes_written = atomic_load (&o->bytes_written);
  st->zeroes = atomic_load (&o->zeroes);
  st->trims = atomic_load (&o->trims);
  st->flushes = atomic_load (&o->flushes);
  st->errors = atomic_load (&o->errors);
  st->reconnects = atomic_load (&o->reconnects);
  st->timeouts = atomic_load (&o->timeouts);
  st->read_ns_total = atomic_load (&o->read_ns_total);
  st->read_ns_max = atomic_load (&o->read_ns_max);
  st->in_flight = atomic_load (&o->in_flight);
}
