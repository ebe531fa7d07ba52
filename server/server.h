/* punchcached: shared declarations of the standalone server's modules.
 *
 *   main.c  command line, listeners, daemon, signals, start and shutdown
 *   loop.c  event loop threads (libev): connection hand-off from the
 *           acceptor, completions from the core, graceful stop
 *   conn.c  one NBD connection: handshake, options, STARTTLS,
 *           transmission; requests go to the core (lib/core/request.c)
 *   protocol.c  the wire format, pure functions (fuzzed)
 *   tls.c   GnuTLS credentials and sessions
 *   stats.c the server's figures in the statistics file
 *
 * Threading (the libev contract: one loop per thread): a connection lives
 * on one loop for its whole life, so its state needs no lock.  The core
 * completes a parked request on one of its worker threads; the completion
 * is handed to the connection's loop through a mutex-protected list and
 * an ev_async, and the reply is built and sent on the loop.
 */
#ifndef PUNCHCACHED_SERVER_H
#define PUNCHCACHED_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <ev.h>

#include "punchcache/punchcache.h"
#include "punchcache/request.h"
#include "tls.h"

/* What every connection needs to know, fixed at start-up. */
struct pcd_config {
  struct pc_pool *pool;
  struct pc_core *core;
  struct pcd_tls_creds *tls_creds;  /* NULL: TLS off */
  enum pcd_tls_mode tls_mode;
  const char *default_export;       /* -e, default "default" */
  bool readonly;                    /* -r */
  bool verbose;                     /* -v */
};
extern struct pcd_config pcd_config;

/* Per-loop figures (atomics: read by the statistics writer). */
struct pcd_loop_stats {
  _Atomic uint64_t connections, connections_now;
  _Atomic uint64_t requests, replies, bytes_in, bytes_out;
  _Atomic uint64_t protocol_errors;
};

struct pcd_conn;
struct pcd_creq;

struct pcd_loop {
  unsigned id;
  struct ev_loop *ev;
  pthread_t thread;
  ev_async wake;                    /* new fds, completions, stop */
  pthread_mutex_t mutex;            /* protects the three fields below */
  int *new_fds; unsigned nnew, new_cap;
  struct pcd_creq *done_head, *done_tail;
  bool stop_requested;
  /* Loop thread only: */
  bool stopping;
  ev_timer stop_timer;               /* drain deadline once stopping */
  struct pcd_conn *conns;           /* doubly linked */
  struct pcd_loop_stats stats;
};

/* loop.c */
int pcd_loops_start (unsigned n);
/* Hand an accepted, non-blocking socket to a loop (round robin).  Called
 * by the acceptor thread. */
void pcd_loops_adopt (int fd);
/* Graceful stop: every connection finishes its in-flight requests and
 * sends their replies, then closes; returns when every loop has ended. */
void pcd_loops_stop (void);
void pcd_loops_get_stats (struct pcd_loop_stats *sum, unsigned *nloops);
void pcd_loops_get_one (unsigned i, struct pcd_loop_stats *out);
/* From any thread: queue a completed request for its loop. */
void pcd_loop_post_completion (struct pcd_loop *loop, struct pcd_creq *cr);
/* Loop thread: a connection closed; end the loop if it is stopping and
 * that was the last. */
void pcd_loop_conn_gone (struct pcd_loop *loop);

/* conn.c (loop thread only) */
void pcd_conn_new (struct pcd_loop *loop, int fd);
void pcd_conn_complete (struct pcd_creq *cr);
/* Stop reading new requests; close once idle. */
void pcd_conn_shutdown (struct pcd_conn *c);
/* Drop the connection now (replies not yet sent are discarded); it is
 * freed once its in-flight requests have completed. */
void pcd_conn_abandon (struct pcd_conn *c);
struct pcd_conn *pcd_conn_next (struct pcd_conn *c);
/* The completion list's link (the request is conn.c's). */
struct pcd_creq *pcd_creq_next (struct pcd_creq *cr);
void pcd_creq_set_next (struct pcd_creq *cr, struct pcd_creq *next);

/* stats.c: push the server's figures to the statistics writer. */
void pcd_stats_push (void);

/* main.c */
void pcd_debug (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void pcd_log (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

#endif
