/* punchcached: event loop threads.
 *
 * What: N libev loops, one per thread (-t).  The acceptor (main.c) hands
 * each accepted socket to a loop, round robin; the connection then lives on
 * that loop until it closes (memcached's hand-off).  The loop also receives
 * the completions of requests the core ran on its workers.
 *
 * Why a list + ev_async per loop: libev loops are not thread-safe; the only
 * cross-thread entry is ev_async_send, which coalesces.  So other threads
 * append to a mutex-protected list and wake the loop; the loop drains the
 * list in one go.
 *
 * Invariants:
 *  L1 Only the loop's own thread touches its connections and its libev
 *     watchers (except ev_async_send).
 *  L2 Every completion posted to a loop is delivered (drained) before the
 *     loop ends: a loop ends only once it is stopping and has no
 *     connection, and a connection is freed only with no request in flight.
 *
 * Locks: loop->mutex protects new_fds/nnew, done_head/done_tail and
 * stop_requested; held for list operations only, never while a
 * connection's code runs.  A leaf.
 */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"


static struct pcd_loop *loops;
static unsigned nloops;
static _Atomic unsigned next_loop;

static void
maybe_end (struct pcd_loop *l)
{
  if (l->stopping && l->conns == NULL)
    ev_break (l->ev, EVBREAK_ALL);
}

void
pcd_loop_conn_gone (struct pcd_loop *l)
{
  maybe_end (l);
}

/* Seconds a stopping loop waits for its clients to read their last
 * replies before it drops them (a client that stopped reading must not
 * keep the server from shutting down). */
#define DRAIN_SECONDS 10.

static void
on_drain_timeout (struct ev_loop *ev, ev_timer *w, int revents)
{
  struct pcd_loop *l = w->data;
  struct pcd_conn *c, *cn;

  pcd_log ("shutdown: dropping connections that did not read their "
           "replies within %.0f s", DRAIN_SECONDS);
  for (c = l->conns; c; c = cn) {
    cn = pcd_conn_next (c);
    pcd_conn_abandon (c);               /* may free c */
  }
  maybe_end (l);
}

static void
on_wake (struct ev_loop *ev, ev_async *w, int revents)
{
  struct pcd_loop *l = w->data;
  struct pcd_creq *done, *next;
  int *fds;
  unsigned nfds, i;
  bool stop;

  pthread_mutex_lock (&l->mutex);
  done = l->done_head;
  l->done_head = l->done_tail = NULL;
  fds = l->new_fds; nfds = l->nnew;
  l->new_fds = NULL; l->nnew = l->new_cap = 0;
  stop = l->stop_requested;
  pthread_mutex_unlock (&l->mutex);

  for (; done; done = next) {
    next = pcd_creq_next (done);
    pcd_conn_complete (done);
  }
  for (i = 0; i < nfds; i++) {
    if (stop) close (fds[i]);
    else pcd_conn_new (l, fds[i]);
  }
  free (fds);
  if (stop && !l->stopping) {
    struct pcd_conn *c, *cn;
    l->stopping = true;
    ev_timer_init (&l->stop_timer, on_drain_timeout, DRAIN_SECONDS, 0.);
    l->stop_timer.data = l;
    ev_timer_start (ev, &l->stop_timer);
    for (c = l->conns; c; c = cn) {
      cn = pcd_conn_next (c);
      pcd_conn_shutdown (c);            /* may free c */
    }
  }
  maybe_end (l);
}

static void *
loop_main (void *arg)
{
  struct pcd_loop *l = arg;

  ev_run (l->ev, 0);
  return NULL;
}

int
pcd_loops_start (unsigned n)
{
  unsigned i;
  int r;

  loops = calloc (n, sizeof *loops);
  if (loops == NULL)
    return -ENOMEM;
  for (i = 0; i < n; i++) {
    struct pcd_loop *l = &loops[i];
    l->id = i;
    l->ev = ev_loop_new (EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (l->ev == NULL)
      return -ENOMEM;
    pthread_mutex_init (&l->mutex, NULL);
    ev_async_init (&l->wake, on_wake);
    l->wake.data = l;
    ev_async_start (l->ev, &l->wake);
    if ((r = pthread_create (&l->thread, NULL, loop_main, l)) != 0)
      return -r;
    nloops = i + 1;
  }
  return 0;
}

void
pcd_loops_adopt (int fd)
{
  struct pcd_loop *l = &loops[atomic_fetch_add (&next_loop, 1) % nloops];

  pthread_mutex_lock (&l->mutex);
  if (l->nnew == l->new_cap) {
    unsigned cap = l->new_cap ? l->new_cap * 2 : 16;
    int *p = realloc (l->new_fds, cap * sizeof *p);
    if (p == NULL) {
      pthread_mutex_unlock (&l->mutex);
      pcd_log ("out of memory adopting a connection: closed");
      close (fd);
      return;
    }
    l->new_fds = p; l->new_cap = cap;
  }
  l->new_fds[l->nnew++] = fd;
  pthread_mutex_unlock (&l->mutex);
  ev_async_send (l->ev, &l->wake);
}

void
pcd_loop_post_completion (struct pcd_loop *l, struct pcd_creq *cr)
{
  pcd_creq_set_next (cr, NULL);
  pthread_mutex_lock (&l->mutex);
  if (l->done_tail)
    pcd_creq_set_next (l->done_tail, cr);
  else
    l->done_head = cr;
  l->done_tail = cr;
  pthread_mutex_unlock (&l->mutex);
  ev_async_send (l->ev, &l->wake);
}

void
pcd_loops_stop (void)
{
  unsigned i;

  for (i = 0; i < nloops; i++) {
    pthread_mutex_lock (&loops[i].mutex);
    loops[i].stop_requested = true;
    pthread_mutex_unlock (&loops[i].mutex);
    ev_async_send (loops[i].ev, &loops[i].wake);
  }
  for (i = 0; i < nloops; i++)
    pthread_join (loops[i].thread, NULL);
  pcd_stats_push ();                    /* the final figures, every loop */
  for (i = 0; i < nloops; i++) {
    ev_loop_destroy (loops[i].ev);
    pthread_mutex_destroy (&loops[i].mutex);
  }
  free (loops);
  loops = NULL;
  nloops = 0;
}

void
pcd_loops_get_one (unsigned i, struct pcd_loop_stats *out)
{
  struct pcd_loop_stats *s = &loops[i].stats;

  out->connections = s->connections;
  out->connections_now = s->connections_now;
  out->requests = s->requests;
  out->replies = s->replies;
  out->bytes_in = s->bytes_in;
  out->bytes_out = s->bytes_out;
  out->protocol_errors = s->protocol_errors;
}

void
pcd_loops_get_stats (struct pcd_loop_stats *sum, unsigned *n)
{
  unsigned i;

  memset (sum, 0, sizeof *sum);
  for (i = 0; i < nloops; i++) {
    struct pcd_loop_stats s;
    pcd_loops_get_one (i, &s);
    sum->connections += s.connections;
    sum->connections_now += s.connections_now;
    sum->requests += s.requests;
    sum->replies += s.replies;
    sum->bytes_in += s.bytes_in;
    sum->bytes_out += s.bytes_out;
    sum->protocol_errors += s.protocol_errors;
  }
  *n = nloops;
}
