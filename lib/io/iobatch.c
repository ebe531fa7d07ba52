/* punchcache: batched data I/O -- io_uring, with a system-call fallback.
 *
 * What: pc_io_data_batch issues several data transfers of one request at
 * once (the cache-page runs of every block a multi-block read touches, or
 * the pieces of a multi-block write) and waits until every one of them has
 * finished.  Physical blocks of consecutive logical blocks are rarely
 * adjacent in a thin pool, so a 1 MiB read over 64 KiB blocks is 16
 * separate transfers: issued one after another they cost 16 device round
 * trips, issued together (O_DIRECT makes them truly asynchronous) about
 * one.
 *
 * Why these structures:
 *  - One io_uring per worker thread (thread-local, created on the first
 *    batch, freed by a pthread key destructor when the thread exits), used
 *    synchronously: submit the batch, wait for all of its completions.
 *    nbdkit runs each request start to finish on one worker thread, so a
 *    per-thread ring needs no lock at all and its completions can only be
 *    ours.  SINGLE_ISSUER and DEFER_TASKRUN (completions processed only
 *    when we wait) are asked for and dropped on kernels that refuse them.
 *  - No registered files: a fixed-file table entry holds a reference to
 *    the open file, so every worker's ring would keep the pool file -- and
 *    its advisory lock -- open after pc_pool_close, and the pool could not
 *    be reopened by the same process.  Registered buffers are not used
 *    either: cache pages, bounce pages and nbdkit's request buffers all
 *    change per request, and registering per request costs more than the
 *    page pinning it saves.
 *  - Fallback: the same ops one after another with preadv/pwritev, when
 *    io_uring is unavailable (kernel without it, seccomp, io_uring_disabled
 *    sysctl, RLIMIT_MEMLOCK on old kernels), when the user asked for
 *    io=sync, and per thread when that thread's ring cannot be created.
 *
 * Invariants:
 *  B1 When pc_io_data_batch returns, no op of the batch is in flight: every
 *     submitted SQE's completion has been reaped, even after an error, so
 *     the caller may free or reuse every buffer.
 *  B2 Each op transfers all its bytes or the batch fails (IO1): a short
 *     completion is finished with the synchronous loop from where it
 *     stopped (from its start again, under O_DIRECT, when it stopped off
 *     PC_IO_ALIGN); a read at the end of a sparse file completes with
 *     zeros.
 *  B3 The result is 0 only if every op succeeded; otherwise the first
 *     error in op order, with its message (pc_error).
 *
 * Locks: none.  The ring is thread-local; pc_io fields read here are set
 * at open and never change afterwards.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <liburing.h>

#include "punchcache/io.h"
#include "punchcache/punchcache.h"

#define RING_DEPTH 64u

struct thread_ring {
  struct io_uring ring;
  bool ok;                      /* false: creation failed, use the fallback */
};

static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;
static bool ring_key_ok;

static void
ring_free (void *p)
{
  struct thread_ring *tr = p;

  if (tr->ok)
    io_uring_queue_exit (&tr->ring);
  free (tr);
}

static void
ring_key_create (void)
{
  ring_key_ok = pthread_key_create (&ring_key, ring_free) == 0;
}

/* Create a ring with the most helpful flags this kernel accepts. */
static int
ring_init (struct io_uring *ring)
{
  static const unsigned tries[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_COOP_TASKRUN,
    0,
  };
  int r = -EINVAL;

  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    r = io_uring_queue_init (RING_DEPTH, ring, tries[i]);
    if (r != -EINVAL) break;
  }
  return r;
}

/* This thread's ring, or NULL (use the fallback). */
static struct thread_ring *
thread_ring (void)
{
  struct thread_ring *tr;

  pthread_once (&ring_once, ring_key_create);
  if (!ring_key_ok) return NULL;
  tr = pthread_getspecific (ring_key);
  if (tr == NULL) {
    if ((tr = calloc (1, sizeof *tr)) == NULL) return NULL;
    tr->ok = ring_init (&tr->ring) == 0;
    if (pthread_setspecific (ring_key, tr) != 0) {
      ring_free (tr);
      return NULL;
    }
  }
  return tr->ok ? tr : NULL;
}

void
pc_io_thread_prepare (const struct pc_io *io)
{
  if (io->uring)
    thread_ring ();
}

int
pc_io_probe_uring (const char **why)
{
  struct io_uring ring;
  int r = ring_init (&ring);

  if (r < 0) {
    *why = r == -ENOSYS ? "the kernel has no io_uring"
         : r == -EPERM ? "io_uring is not permitted (seccomp or the "
                         "kernel.io_uring_disabled sysctl)"
         : r == -ENOMEM ? "io_uring ring memory could not be locked "
                          "(RLIMIT_MEMLOCK)"
         : "io_uring_queue_init failed";
    return r;
  }
  io_uring_queue_exit (&ring);
  *why = NULL;
  return 0;
}

/* Configures the batch backend; lives here, above io.c, so that io.c never
 * calls into this file (the dependency points one way: iobatch -> io). */
int
pc_io_set_backend (struct pc_io *io, enum pc_io_backend mode,
                   const char **why)
{
  int r;

  io->uring = false;
  *why = NULL;
  if (mode == PC_IO_SYNC) {
    *why = "disabled by io=sync";
    return 0;
  }
  r = pc_io_probe_uring (why);
  if (r < 0 && mode == PC_IO_URING)
    return pc_error (-r, "io=uring: %s (%s); use io=auto or io=sync", *why,
                     strerror (-r));
  io->uring = r == 0;
  return 0;
}

/* ---- the synchronous loop (fallback, and the rest of short transfers) ---- */

static uint64_t
iov_bytes (const struct iovec *iov, int iovcnt)
{
  uint64_t n = 0;
  for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
  return n;
}

/* Transfer op from its byte `done` on, synchronously (B2). */
static int
op_finish_sync (struct pc_io *io, const struct pc_io_op *op, uint64_t done)
{
  struct iovec v[PC_IO_MAX_IOV];
  uint64_t skip;
  int i = 0, n = op->iovcnt;

  /* O_DIRECT may stop at a device sector that is not a multiple of our
   * alignment: then transfer the whole op again (same bytes, same place). */
  if (io->direct && (done & (PC_IO_ALIGN - 1)))
    done = 0;
  skip = done;

  memcpy (v, op->iov, sizeof v[0] * (size_t) n);
  while (i < n && skip >= v[i].iov_len) skip -= v[i++].iov_len;
  if (i == n) return 0;
  v[i].iov_base = (char *) v[i].iov_base + skip;
  v[i].iov_len -= skip;
  return op->write ? pc_io_pwritev_data (io, &v[i], n - i, op->off + done)
                   : pc_io_preadv_data (io, &v[i], n - i, op->off + done);
}

static void
finish_all_sync (struct pc_io *io, struct pc_io_op *ops, unsigned from,
                 unsigned to)
{
  for (unsigned i = from; i < to; i++)
    if (ops[i].result == 1)
      ops[i].result = op_finish_sync (io, &ops[i], 0);
}

/* ---- io_uring ---- */

static void
prep (struct io_uring_sqe *sqe, struct pc_io *io, struct pc_io_op *op,
      unsigned idx)
{
  if (op->write)
    io_uring_prep_writev (sqe, io->dfd, op->iov, (unsigned) op->iovcnt,
                          op->off);
  else
    io_uring_prep_readv (sqe, io->dfd, op->iov, (unsigned) op->iovcnt,
                         op->off);
  io_uring_sqe_set_data64 (sqe, idx);
}

/* One completion: record it; a short or interrupted transfer is finished
 * synchronously from where it stopped (B2). */
static void
complete (struct pc_io *io, struct pc_io_op *op, int res)
{
  if (res == -EINTR || res == -EAGAIN)
    res = 0;                            /* redo it all, synchronously */
  if (res < 0)
    op->result = pc_error (-res, "pool %s at offset %llu: %s",
                           op->write ? "write" : "read",
                           (unsigned long long) op->off, strerror (-res));
  else if ((uint64_t) res == iov_bytes (op->iov, op->iovcnt))
    op->result = 0;
  else
    op->result = op_finish_sync (io, op, (uint64_t) res);
}

/* Wait for one completion and record it. */
static int
reap_one (struct pc_io *io, struct io_uring *ring, struct pc_io_op *ops,
          unsigned *reaped)
{
  struct io_uring_cqe *cqe;
  int r;

  do r = io_uring_wait_cqe (ring, &cqe); while (r == -EINTR);
  if (r < 0) return r;                  /* not expected: the ring is ours */
  complete (io, &ops[io_uring_cqe_get_data64 (cqe)], cqe->res);
  io_uring_cqe_seen (ring, cqe);
  (*reaped)++;
  return 0;
}

/* Submit ops[from, to) (at most RING_DEPTH) and reap every completion of
 * what was submitted (B1).  If the kernel refuses a submission outright,
 * the SQEs it did not take would stay queued in the ring, to be submitted
 * by the next batch with dangling pointers: so, after reaping what is in
 * flight, the ring is torn down (this thread falls back to system calls)
 * and the ops it did not take are done synchronously. */
static void
batch_ring_chunk (struct pc_io *io, struct thread_ring *tr,
                  struct pc_io_op *ops, unsigned from, unsigned to)
{
  struct io_uring *ring = &tr->ring;
  unsigned queued = 0, submitted = 0, reaped = 0, i;
  bool broken = false;
  int r;

  for (i = from; i < to; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe (ring);
    if (sqe == NULL) break;             /* not expected: to - from <= depth */
    prep (sqe, io, &ops[i], i);
    queued++;
  }
  while (submitted < queued && !broken) {
    r = io_uring_submit (ring);
    if (r > 0)
      submitted += (unsigned) r;
    else if (r == -EINTR)
      continue;
    else if ((r == -EAGAIN || r == -EBUSY) && reaped < submitted)
      broken = reap_one (io, ring, ops, &reaped) < 0;   /* make room */
    else
      broken = true;            /* refused, or out of resources while idle */
  }
  while (reaped < submitted && !broken)
    broken = reap_one (io, ring, ops, &reaped) < 0;
  if (broken) {
    /* Only reachable if io_uring_enter refuses our own healthy ring
     * (liburing documents that for bad arguments only): stop using it. */
    io_uring_queue_exit (ring);
    tr->ok = false;
  }
  finish_all_sync (io, ops, from, to);  /* anything not taken by the ring */
}

int
pc_io_data_batch (struct pc_io *io, struct pc_io_op *ops, unsigned n)
{
  struct thread_ring *tr;
  int first = 0;

  for (unsigned i = 0; i < n; i++) {
    int r = pc_io_check_iov (io, ops[i].iov, ops[i].iovcnt, ops[i].off);
    if (r < 0) return r;
    ops[i].result = 1;                  /* not finished */
  }
  if (n > 1 && io->uring && (tr = thread_ring ()) != NULL)
    for (unsigned from = 0; from < n && tr->ok; from += RING_DEPTH)
      batch_ring_chunk (io, tr, ops, from,
                        n - from > RING_DEPTH ? from + RING_DEPTH : n);
  finish_all_sync (io, ops, 0, n);
  for (unsigned i = 0; i < n; i++)
    if (ops[i].result < 0 && first == 0) first = ops[i].result;
  return first;
}
