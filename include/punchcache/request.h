/* punchcache: the asynchronous core -- requests that complete by callback.
 *
 * Every front-end sends its I/O through here: the nbdkit plugin as a thin
 * blocking wrapper (pc_core_run: submit, wait for the completion), and
 * punchcached from its event loops (pc_core_submit: the completion comes
 * back by callback and the loop sends the reply).  lib/core/request.c has
 * the design; this header is the contract.
 *
 * A request is a struct pc_req owned by the submitter from submit until its
 * done() callback has been called (exactly once).  While the core holds
 * it, the submitter must not touch it, nor its buffer.
 */
#ifndef PUNCHCACHE_REQUEST_H
#define PUNCHCACHE_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "punchcache/punchcache.h"

enum pc_op {
  PC_OP_READ,                   /* buf receives count bytes */
  PC_OP_WRITE,                  /* buf holds count bytes; flags PC_FUA */
  PC_OP_TRIM,                   /* flags PC_FUA */
  PC_OP_ZERO,                   /* flags PC_FUA, PC_NO_HOLE */
  PC_OP_FLUSH,                  /* the whole pool; offset/count ignored */
  PC_OP_CACHE,                  /* prefetch into the block cache */
  PC_OP_EXTENTS,                /* calls extent() for runs of the range */
};
#define PC_OP_MAX PC_OP_EXTENTS

/* PC_FUA and PC_NO_HOLE come from punchcache.h. */
#define PC_REQ_ONE 4u           /* EXTENTS: stop after the first run */

struct pc_req;
typedef void (*pc_req_done_fn) (struct pc_req *req);
/* EXTENTS: one run; return 0 to go on, > 0 to stop, < 0 to fail.  Called
 * on whatever thread runs the request: it must only touch the request's
 * own memory. */
typedef int (*pc_req_extent_fn) (struct pc_req *req, uint64_t offset,
                                 uint64_t length, bool is_hole);

struct pc_req {
  /* Set by the submitter. */
  enum pc_op op;
  struct pc_volume *vol;        /* FLUSH: any volume of the pool */
  uint64_t offset, count;
  unsigned flags;
  void *buf;
  pc_req_extent_fn extent;
  pc_req_done_fn done;          /* pc_core_submit only */
  void *opaque;                 /* the submitter's */
  /* Set by the core before done(). */
  int result;                   /* 0 or -errno */
  bool completed_inline;        /* done() ran inside pc_core_submit */
  char error[192];              /* result < 0: the sentence that says why */
  /* Core-private. */
  struct pc_req *next;
};

struct pc_core;

struct pc_core_stats {
  uint64_t submitted;           /* requests, by pc_core_submit or _run */
  uint64_t inline_done;         /* completed without waiting (fast path) */
  uint64_t parked;              /* had to wait: ran on a core worker (or on
                                 * a pc_core_run caller's own thread) */
  uint64_t queued_now;          /* parked, not yet picked by a worker */
  uint64_t queued_max;
  unsigned workers;
  uint64_t parked_remote;       /* of parked: waited for an origin */
  unsigned remote_workers;      /* workers of the remote queue (0: none) */
};

/* The core of an open pool.  workers = threads that run parked requests
 * (0: only pc_core_run may be used, whose callers lend their own thread).
 * If a volume has an origin (pc_params_start_pool connected it), 16 more
 * run the reads that must fetch from it, so they never hold up a worker
 * that waits for the pool. */
int pc_core_create (struct pc_pool *pool, unsigned workers,
                    struct pc_core **out);
/* Waits until every submitted request has completed, then frees. */
void pc_core_destroy (struct pc_core *core);

/* Submit without ever blocking the caller on a lock held across I/O, a
 * pool read or write, or a commit (SPEC I13).  A request that can complete
 * at once (a cache hit, a hole, a validation error) completes before this
 * returns, with done() called on the caller's thread; any other is parked
 * and done() is later called on a core worker thread. */
void pc_core_submit (struct pc_core *core, struct pc_req *req);

/* For callers whose thread may block (the nbdkit plugin's worker threads):
 * the same path as pc_core_submit, but a request that must wait runs on
 * the caller's thread instead of being handed to a worker (no thread
 * hand-off, no done() callback).  Returns req->result. */
int pc_core_run (struct pc_core *core, struct pc_req *req);

void pc_core_get_stats (struct pc_core *core, struct pc_core_stats *st);

#endif
