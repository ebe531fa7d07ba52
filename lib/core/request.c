/* punchcache: the asynchronous core -- requests that complete by callback.
 *
 * What: the one entry point of the data path for every front-end.  A
 * request (struct pc_req: an operation on a volume range and a completion
 * callback) either completes at once, on the submitter's thread, or is
 * *parked* and completed later by a completion callback from the thread
 * that ran it.  punchcached's event loops submit and go on serving other
 * connections; the nbdkit plugin, whose threads may block, runs the same
 * path with pc_core_run and lends its own thread to a request that must
 * wait.
 *
 * The life of a request:
 *
 *   submit ──► validate ──► fast path ──(done)──► done(), inline
 *                              │ must wait (-EAGAIN)
 *                              ▼
 *                 pc_core_submit: park on the run queue ──► a core worker
 *                 pc_core_run:    run on the caller's thread   runs it
 *                              │                                   │
 *                              ▼                                   ▼
 *                 blocking data path (lib/core/volume.c, lib/pool/store.c): range
 *                 lock waits, cache fills, pool I/O batches, commits
 *                              │
 *                              ▼
 *                 result + error sentence in the request ──► done()
 *
 * The fast path is what never waits: a read whose bytes are all holes or
 * cached pages, under a try-lock of the invalidate lock (pc_read_nowait);
 * with write-back, a write whose pages all go into the cache without
 * waiting (pc_write_nowait); and requests that fail validation.
 * Everything else -- a cache miss, a write-through write, a write at the
 * dirty limit or with FUA, a punch (exclusive range lock), a flush (a
 * commit), an extents query -- waits for something and is parked.  The fast path still takes a cache shard mutex and a range
 * lock shard mutex for a few list operations: those are never held across
 * I/O or a wait (lib/LOCKING), so they bound the time, unlike a lock that
 * a punch holds while it commits.
 *
 * Why a run queue and workers rather than a state machine per wait: the
 * waits of the data path (range lock, fill, pool I/O batch, commit) are
 * sequential steps of one request in lib/core/volume.c; running those steps on
 * a worker keeps the one data path that the plugin, the tests and the
 * race proofs already exercise, and keeps the event loops free (I13).
 * Workers are the core's, not the front-end's: a front-end only sees
 * submit and done.  Pool I/O inside a request already goes out as one
 * io_uring batch per window (lib/io/iobatch.c).
 *
 * Invariants:
 *  R1 done() is called exactly once per pc_core_submit, after the core's
 *     last access to the request; pc_core_run never calls it.
 *  R2 A request parked by pc_core_submit is run by exactly one worker, in
 *     FIFO order of parking (no request starves behind later ones).
 *  R3 pc_core_submit never waits for a range lock held by another request,
 *     never does pool I/O, never waits for a commit (SPEC I13).
 *  R4 req->result is 0 or -errno; when negative, req->error holds the
 *     sentence (pc_last_error() of the thread that ran it).
 *  R5 pc_core_destroy returns only when nothing is parked or running.
 *
 * Locks: queue_mutex protects both run queues (head, tail, nqueued), the
 * stop flag and inflight; held for list operations only, never while a
 * request runs.  It is a leaf: nothing else is taken while it is held, and
 * done() is called without it.  Counters are relaxed atomics.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/overlay.h"
#include "punchcache/request.h"

/* Two run queues: LOCAL for requests that wait for the pool (CPU, disk,
 * locks), REMOTE for reads that must fetch from a volume's origin
 * (lib/core/volume.c fills), which spend their time waiting for the
 * network.  The remote queue has its own, larger set of workers: they
 * sleep on the origin, so they cost no CPU the event loops need, and a
 * slow origin cannot take every local worker (measured: 8 workers for
 * both kinds made punchcached's cold 4K reads through a 2 ms origin 0.11x
 * the plugin's, whose nbdkit threads were 16). */
enum { Q_LOCAL, Q_REMOTE, NQUEUES };
#define REMOTE_WORKERS 16u

struct runq {
  pthread_cond_t cond;           /* its workers wait for work or stop */
  struct pc_req *head, *tail;    /* parked requests, FIFO (R2) */
  uint64_t nqueued;
  unsigned nworkers;
  pthread_t *workers;
};

struct pc_core {
  struct pc_pool *pool;
  pthread_mutex_t queue_mutex;
  pthread_cond_t idle_cond;      /* destroy waits for inflight == 0 */
  struct runq q[NQUEUES];
  uint64_t inflight;             /* parked or running on a worker */
  bool stop;
  _Atomic uint64_t submitted, inline_done, parked, queued_max, remote;
};

struct worker_arg {
  struct pc_core *core;
  struct runq *q;
};

/* ---- running a request (blocking path) ---- */

static int
extent_trampoline (void *opaque, uint64_t offset, uint64_t length,
                   bool is_hole)
{
  struct pc_req *req = opaque;

  return req->extent (req, offset, length, is_hole);
}

/* The data path proper: may wait for anything (R3 does not apply). */
static int
run_blocking (struct pc_req *req)
{
  struct pc_volume *vol = req->vol;

  switch (req->op) {
  case PC_OP_READ:
    return pc_read (vol, req->buf, req->count, req->offset);
  case PC_OP_WRITE:
    return pc_write (vol, req->buf, req->count, req->offset,
                     req->flags & PC_FUA);
  case PC_OP_TRIM:
    return pc_trim (vol, req->count, req->offset, req->flags & PC_FUA);
  case PC_OP_ZERO:
    return pc_zero (vol, req->count, req->offset,
                    req->flags & (PC_FUA | PC_NO_HOLE));
  case PC_OP_FLUSH:
    return pc_volume_flush (vol);
  case PC_OP_CACHE:
    return pc_prefetch (vol, req->count, req->offset);
  case PC_OP_EXTENTS:
    return pc_extents (vol, req->count, req->offset, extent_trampoline, req);
  }
  return pc_error (EINVAL, "unknown request type %d", (int) req->op);
}

/* R4: record the outcome of a run on this thread. */
static void
finish (struct pc_req *req, int r)
{
  req->result = r < 0 ? r : 0;
  if (r < 0)
    snprintf (req->error, sizeof req->error, "%s",
              *pc_last_error () ? pc_last_error () : strerror (-r));
  else
    req->error[0] = '\0';
}

/* The fast path: 1 if the request completed (finish() called), 0 if it
 * must wait for the pool, 2 if it must wait for an origin.  R3: only
 * calls that never wait. */
static int
try_now (struct pc_req *req)
{
  int r;

  if ((unsigned) req->op > PC_OP_MAX || req->vol == NULL) {
    finish (req, pc_error (EINVAL, "malformed request"));
    return 1;
  }
  if (req->op == PC_OP_READ)
    r = pc_read_nowait (req->vol, req->buf, req->count, req->offset);
  else if (req->op == PC_OP_WRITE)
    r = pc_write_nowait (req->vol, req->buf, req->count, req->offset,
                         req->flags & PC_FUA);
  else
    return 0;
  if (r == -EAGAIN)
    return 0;
  if (r == -EREMOTE)
    return 2;
  finish (req, r);
  return 1;
}

/* ---- workers ---- */

static void *
worker_main (void *arg)
{
  struct pc_core *core = ((struct worker_arg *) arg)->core;
  struct runq *q = ((struct worker_arg *) arg)->q;
  struct pc_req *req;

  free (arg);
  pc_pool_thread_prepare (core->pool);
  pthread_mutex_lock (&core->queue_mutex);
  for (;;) {
    while (q->head == NULL && !core->stop)
      pthread_cond_wait (&q->cond, &core->queue_mutex);
    if (q->head == NULL)
      break;                                  /* stop, and nothing left */
    req = q->head;
    q->head = req->next;
    if (q->head == NULL)
      q->tail = NULL;
    q->nqueued--;
    pthread_mutex_unlock (&core->queue_mutex);

    finish (req, run_blocking (req));
    req->done (req);                          /* R1: last touch before */

    pthread_mutex_lock (&core->queue_mutex);
    if (--core->inflight == 0)
      pthread_cond_broadcast (&core->idle_cond);
  }
  pthread_mutex_unlock (&core->queue_mutex);
  return NULL;
}

/* which: Q_REMOTE goes to the remote queue if it has workers. */
static void
park (struct pc_core *core, struct pc_req *req, int which)
{
  struct runq *q = &core->q[which == Q_REMOTE &&
                            core->q[Q_REMOTE].nworkers ? Q_REMOTE : Q_LOCAL];
  uint64_t n;

  req->next = NULL;
  pthread_mutex_lock (&core->queue_mutex);
  if (q->tail)
    q->tail->next = req;
  else
    q->head = req;
  q->tail = req;
  n = ++q->nqueued;
  core->inflight++;
  pthread_cond_signal (&q->cond);
  pthread_mutex_unlock (&core->queue_mutex);
  atomic_fetch_add_explicit (&core->parked, 1, memory_order_relaxed);
  if (which == Q_REMOTE)
    atomic_fetch_add_explicit (&core->remote, 1, memory_order_relaxed);
  if (n > atomic_load_explicit (&core->queued_max, memory_order_relaxed))
    atomic_store_explicit (&core->queued_max, n, memory_order_relaxed);
}

static int
start_workers (struct pc_core *core, struct runq *q, unsigned n)
{
  unsigned i;
  int r;

  if (n && (q->workers = calloc (n, sizeof (pthread_t))) == NULL)
    return pc_error (ENOMEM, "core: out of memory");
  for (i = 0; i < n; i++) {
    struct worker_arg *a = malloc (sizeof *a);
    if (a == NULL)
      return pc_error (ENOMEM, "core: out of memory");
    *a = (struct worker_arg) { core, q };
    if ((r = pthread_create (&q->workers[i], NULL, worker_main, a))) {
      free (a);
      return pc_error (r, "core: starting worker thread %u: %s", i,
                       strerror (r));
    }
    q->nworkers = i + 1;
  }
  return 0;
}

/* ---- API ---- */

int
pc_core_create (struct pc_pool *pool, unsigned workers, struct pc_core **out)
{
  struct pc_core *core = calloc (1, sizeof *core);
  int r;

  if (core == NULL)
    return pc_error (ENOMEM, "core: out of memory");
  core->pool = pool;
  pthread_mutex_init (&core->queue_mutex, NULL);
  pthread_cond_init (&core->idle_cond, NULL);
  for (unsigned k = 0; k < NQUEUES; k++)
    pthread_cond_init (&core->q[k].cond, NULL);
  r = start_workers (core, &core->q[Q_LOCAL], workers);
  if (r == 0 && workers && pc_overlay_any (pool))
    r = start_workers (core, &core->q[Q_REMOTE], REMOTE_WORKERS);
  if (r < 0) {
    char why[256];
    snprintf (why, sizeof why, "%s", pc_last_error ());
    pc_core_destroy (core);
    return pc_error (r, "%s", why);
  }
  *out = core;
  return 0;
}

void
pc_core_destroy (struct pc_core *core)
{
  if (core == NULL)
    return;
  pthread_mutex_lock (&core->queue_mutex);
  while (core->inflight > 0)                  /* R5 */
    pthread_cond_wait (&core->idle_cond, &core->queue_mutex);
  core->stop = true;
  for (unsigned k = 0; k < NQUEUES; k++)
    pthread_cond_broadcast (&core->q[k].cond);
  pthread_mutex_unlock (&core->queue_mutex);
  for (unsigned k = 0; k < NQUEUES; k++) {
    for (unsigned i = 0; i < core->q[k].nworkers; i++)
      pthread_join (core->q[k].workers[i], NULL);
    pthread_cond_destroy (&core->q[k].cond);
    free (core->q[k].workers);
  }
  pthread_cond_destroy (&core->idle_cond);
  pthread_mutex_destroy (&core->queue_mutex);
  free (core);
}

void
pc_core_submit (struct pc_core *core, struct pc_req *req)
{
  atomic_fetch_add_explicit (&core->submitted, 1, memory_order_relaxed);
  int k;

  req->completed_inline = false;
  if ((k = try_now (req)) == 1) {
    atomic_fetch_add_explicit (&core->inline_done, 1, memory_order_relaxed);
    req->completed_inline = true;
    req->done (req);
    return;
  }
  park (core, req, k == 2 ? Q_REMOTE : Q_LOCAL);
}

int
pc_core_run (struct pc_core *core, struct pc_req *req)
{
  atomic_fetch_add_explicit (&core->submitted, 1, memory_order_relaxed);
  req->completed_inline = true;
  if (try_now (req) == 1) {
    atomic_fetch_add_explicit (&core->inline_done, 1, memory_order_relaxed);
    return req->result;
  }
  atomic_fetch_add_explicit (&core->parked, 1, memory_order_relaxed);
  req->completed_inline = false;
  finish (req, run_blocking (req));
  return req->result;
}

void
pc_core_get_stats (struct pc_core *core, struct pc_core_stats *st)
{
  memset (st, 0, sizeof *st);
  st->submitted = atomic_load_explicit (&core->submitted, memory_order_relaxed);
  st->inline_done = atomic_load_explicit (&core->inline_done,
                                          memory_order_relaxed);
  st->parked = atomic_load_explicit (&core->parked, memory_order_relaxed);
  st->queued_max = atomic_load_explicit (&core->queued_max,
                                         memory_order_relaxed);
  st->parked_remote = atomic_load_explicit (&core->remote,
                                            memory_order_relaxed);
  pthread_mutex_lock (&core->queue_mutex);
  st->queued_now = core->q[Q_LOCAL].nqueued + core->q[Q_REMOTE].nqueued;
  pthread_mutex_unlock (&core->queue_mutex);
  st->workers = core->q[Q_LOCAL].nworkers;
  st->remote_workers = core->q[Q_REMOTE].nworkers;
}
