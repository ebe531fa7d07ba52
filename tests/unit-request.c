/* Description: unit tests of the asynchronous core (lib/core/request.c) on
 * a real pool file: which requests complete inline (cache hits, holes,
 * validation errors) and which are parked and completed by a worker; that
 * a submit never waits for a stalled pool read or a punch holding the
 * invalidate lock (SPEC I13), while cache hits keep completing meanwhile;
 * that done() runs once per request; that destroy drains; that
 * pc_core_run returns the error sentence; extents through the core; and
 * the try-lock of the invalidate lock (pc_rangelock_trylock_shared).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/punchcache.h"
#include "punchcache/rangelock.h"
#include "punchcache/request.h"

#define BS 4096u

struct ctx {
  char dir[64];
  char path[96];
  struct pc_pool *pool;
  struct pc_volume *vol;
  struct pc_core *core;
};

/* A request with a completion record. */
struct treq {
  struct pc_req req;
  _Atomic int done_calls;
  pthread_t done_thread;
  char buf[2 * BS];
};

static void
on_done (struct pc_req *req)
{
  struct treq *t = (struct treq *) req;

  t->done_thread = pthread_self ();
  atomic_fetch_add (&t->done_calls, 1);
}

static void
open_pool (struct ctx *c, const struct pc_pool_options *opts)
{
  static const struct pc_pool_options with_cache = { .cache_bytes = 1 << 20 };

  if (opts == NULL)
    opts = &with_cache;
  assert_int_equal (pc_pool_open (c->path, opts, &c->pool), 0);
  assert_int_equal (pc_volume_open (c->pool, "v", &c->vol), 0);
  assert_int_equal (pc_core_create (c->pool, 2, &c->core), 0);
}

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);
  struct pc_pool *pool;

  strcpy (c->dir, "/tmp/unit-request.XXXXXX");
  assert_non_null (mkdtemp (c->dir));
  snprintf (c->path, sizeof c->path, "%s/pool", c->dir);
  assert_int_equal (pc_pool_create (c->path, 64 * BS, BS), 0);
  assert_int_equal (pc_pool_open (c->path, NULL, &pool), 0);
  assert_int_equal (pc_volume_add (pool, "v", 1024 * 1024), 0);
  assert_int_equal (pc_pool_close (pool), 0);
  *state = c;
  return 0;
}

static void
close_pool (struct ctx *c)
{
  pc_core_destroy (c->core);
  c->core = NULL;
  if (c->vol) pc_volume_close (c->vol);
  c->vol = NULL;
  if (c->pool) assert_int_equal (pc_pool_close (c->pool), 0);
  c->pool = NULL;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  char cmd[128];

  close_pool (c);
  snprintf (cmd, sizeof cmd, "rm -rf %s", c->dir);
  if (system (cmd) != 0) return -1;
  free (c);
  return 0;
}

static void
prepare (struct treq *t, struct ctx *c, enum pc_op op, uint64_t off,
         uint64_t count)
{
  memset (t, 0, sizeof *t);
  t->req = (struct pc_req) { .op = op, .vol = c->vol, .offset = off,
                             .count = count, .buf = t->buf, .done = on_done };
}

/* Wait (bounded: 10 s) until done() ran. */
static void
wait_done (struct treq *t)
{
  for (int i = 0; i < 10000 && atomic_load (&t->done_calls) == 0; i++)
    usleep (1000);
  assert_int_equal (atomic_load (&t->done_calls), 1);
}

/* Holes and cache hits complete inline; writes and misses are parked. */
static void
test_inline_and_parked (void **state)
{
  struct ctx *c = *state;
  struct pc_core_stats st;
  struct treq t;

  open_pool (c, NULL);
  prepare (&t, c, PC_OP_READ, 0, BS);                   /* a hole */
  memset (t.buf, 'x', BS);
  pc_core_submit (c->core, &t.req);
  assert_int_equal (t.done_calls, 1);
  assert_true (t.req.completed_inline);
  assert_true (pthread_equal (t.done_thread, pthread_self ()));
  assert_int_equal (t.req.result, 0);
  for (unsigned i = 0; i < BS; i++) assert_int_equal (t.buf[i], 0);

  prepare (&t, c, PC_OP_WRITE, BS, BS);                 /* parked */
  memset (t.buf, 'w', BS);
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_false (t.req.completed_inline);
  assert_false (pthread_equal (t.done_thread, pthread_self ()));
  assert_int_equal (t.req.result, 0);

  prepare (&t, c, PC_OP_READ, BS, BS);                  /* a miss: parked */
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_false (t.req.completed_inline);
  assert_memory_equal (t.buf, (char[BS]) { [0 ... BS - 1] = 'w' }, BS);

  prepare (&t, c, PC_OP_READ, BS + 100, 200);           /* now a hit */
  pc_core_submit (c->core, &t.req);
  assert_int_equal (t.done_calls, 1);
  assert_true (t.req.completed_inline);
  assert_memory_equal (t.buf, (char[200]) { [0 ... 199] = 'w' }, 200);

  pc_core_get_stats (c->core, &st);
  assert_int_equal (st.submitted, 4);
  assert_int_equal (st.inline_done, 2);
  assert_int_equal (st.parked, 2);
  assert_int_equal (st.workers, 2);
}

/* Validation errors complete inline, with the sentence. */
static void
test_errors (void **state)
{
  struct ctx *c = *state;
  struct treq t;

  open_pool (c, NULL);
  prepare (&t, c, PC_OP_READ, 1024 * 1024 - 1, 2);
  pc_core_submit (c->core, &t.req);
  assert_int_equal (t.done_calls, 1);
  assert_int_equal (t.req.result, -EINVAL);
  assert_non_null (strstr (t.req.error, "outside volume 'v'"));

  prepare (&t, c, PC_OP_WRITE, 1024 * 1024, 1);       /* via pc_core_run */
  assert_int_equal (pc_core_run (c->core, &t.req), -EINVAL);
  assert_int_equal (t.done_calls, 0);                   /* run: no done() */
  assert_non_null (strstr (t.req.error, "outside volume"));
}

/* I13: with pool reads stalled (race_delay_us: 1.5 s between the map
 * lookup and the pool read), submitting misses returns at once -- the
 * misses are still pending afterwards -- and cache hits on another range
 * complete inline while both workers sit in the stall. */
static void
test_submit_never_waits (void **state)
{
  struct ctx *c = *state;
  struct pc_pool_options opts = { .cache_bytes = 1 << 20 };
  struct treq w, miss[3], hit;
  int i;

  open_pool (c, NULL);
  prepare (&w, c, PC_OP_WRITE, 0, 2 * BS);              /* data for hits */
  memset (w.buf, 'h', 2 * BS);
  assert_int_equal (pc_core_run (c->core, &w.req), 0);
  prepare (&w, c, PC_OP_WRITE, 8 * BS, BS);             /* data for misses */
  assert_int_equal (pc_core_run (c->core, &w.req), 0);
  close_pool (c);

  opts.race_delay_us = 1500 * 1000;
  open_pool (c, &opts);
  prepare (&hit, c, PC_OP_READ, 0, 2 * BS);             /* warm, stalled */
  assert_int_equal (pc_core_run (c->core, &hit.req), 0);

  for (i = 0; i < 3; i++) {                             /* > workers */
    prepare (&miss[i], c, PC_OP_READ, 8 * BS, BS);
    pc_core_submit (c->core, &miss[i].req);
  }
  for (i = 0; i < 3; i++)
    assert_int_equal (atomic_load (&miss[i].done_calls), 0);
  for (i = 0; i < 100; i++) {                           /* hits go on */
    prepare (&hit, c, PC_OP_READ, (uint64_t) (i % 2) * BS, BS);
    pc_core_submit (c->core, &hit.req);
    assert_int_equal (hit.done_calls, 1);
    assert_true (hit.req.completed_inline);
    assert_int_equal (hit.buf[0], 'h');
  }
  for (i = 0; i < 3; i++)
    assert_int_equal (atomic_load (&miss[i].done_calls), 0);
  close_pool (c);                                       /* R5: drains */
  for (i = 0; i < 3; i++) {
    assert_int_equal (atomic_load (&miss[i].done_calls), 1);
    assert_int_equal (miss[i].req.result, 0);
  }
}

struct punch_arg { struct pc_volume *vol; };

static void *
slow_trim (void *arg)
{
  struct punch_arg *p = arg;

  pc_trim (p->vol, BS, 0, 0);
  return NULL;
}

/* A read of a range a punch holds exclusive is parked, not waited for:
 * the range lock's try path (trylock_shared) says -EAGAIN. */
static void
test_trylock (void **state)
{
  struct pc_rangelock *l;
  struct pc_range_token a, b, x;

  (void) state;
  assert_int_equal (pc_rangelock_create (&l), 0);
  assert_int_equal (pc_rangelock_trylock_shared (l, &a, 10, 5), 0);
  assert_int_equal (pc_rangelock_trylock_shared (l, &b, 12, 1), 0);
  pc_rangelock_unlock (&b);
  assert_int_equal (pc_rangelock_lock_exclusive (l, &x, 100, 10), 0);
  assert_int_equal (pc_rangelock_trylock_shared (l, &b, 105, 1), -EAGAIN);
  assert_int_equal (pc_rangelock_trylock_shared (l, &b, 90, 20), -EAGAIN);
  assert_int_equal (pc_rangelock_verify (l), 0);
  pc_rangelock_unlock (&x);
  pc_rangelock_unlock (&a);
  /* Wide: the first domains are granted, a later one is busy: all of it
   * is given back, and the free ranges stay free. */
  assert_int_equal (pc_rangelock_lock_exclusive (l, &b, 5 * 4096, 1), 0);
  assert_int_equal (pc_rangelock_trylock_shared (l, &a, 0, 6 * 4096), -EAGAIN);
  assert_int_equal (pc_rangelock_verify (l), 0);
  assert_int_equal (pc_rangelock_trylock_shared (l, &a, 0, 4 * 4096), 0);
  assert_int_equal (pc_rangelock_lock_exclusive (l, &x, 4 * 4096, 1), 0);
  pc_rangelock_unlock (&x);
  pc_rangelock_unlock (&a);
  pc_rangelock_unlock (&b);
  assert_int_equal (pc_rangelock_trylock_shared (l, &a, 0, 6 * 4096), 0);
  pc_rangelock_unlock (&a);
  assert_int_equal (pc_rangelock_trylock_shared (l, &a, 0, 0), -EINVAL);
  assert_int_equal (pc_rangelock_verify (l), 0);
  pc_rangelock_destroy (l);
}

/* Fairness: a try never jumps an exclusive waiter queued behind a shared
 * holder. */
static void
test_trylock_fair (void **state)
{
  struct ctx *c = *state;
  struct pc_pool_options opts = { .cache_bytes = 1 << 20,
                                  .race_delay_us = 500 * 1000 };
  struct treq w, r1, r2;
  struct punch_arg pa;
  pthread_t th;

  open_pool (c, NULL);
  prepare (&w, c, PC_OP_WRITE, 0, BS);
  memset (w.buf, 'q', BS);
  assert_int_equal (pc_core_run (c->core, &w.req), 0);
  close_pool (c);
  open_pool (c, &opts);
  prepare (&r1, c, PC_OP_READ, 0, BS);        /* a miss holds it shared */
  pc_core_submit (c->core, &r1.req);
  usleep (100 * 1000);
  pa.vol = c->vol;
  assert_int_equal (pthread_create (&th, NULL, slow_trim, &pa), 0);
  usleep (100 * 1000);                         /* the trim queues */
  prepare (&r2, c, PC_OP_READ, 0, BS);         /* must not pass the trim */
  pc_core_submit (c->core, &r2.req);
  assert_false (r2.req.completed_inline && r2.done_calls == 1 &&
                r2.buf[0] == 'q');
  pthread_join (th, NULL);
  wait_done (&r1);
  wait_done (&r2);
  assert_int_equal (r2.req.result, 0);
  assert_int_equal (r2.buf[0], 0);             /* after the trim: zeros */
}

/* With write-back, writes into the cache complete inline; a FUA write, a
 * partial write of a page only the pool holds, and a write at the dirty
 * limit are parked.  Whatever path, the data reads back. */
static void
test_write_fast_path (void **state)
{
  struct ctx *c = *state;
  struct pc_pool_options opts = { .cache_bytes = 1 << 20, .writeback = true };
  struct treq t;

  open_pool (c, &opts);
  prepare (&t, c, PC_OP_WRITE, 0, 2 * BS);              /* whole pages */
  memset (t.buf, 'a', 2 * BS);
  pc_core_submit (c->core, &t.req);
  assert_int_equal (t.done_calls, 1);
  assert_true (t.req.completed_inline);
  assert_int_equal (t.req.result, 0);

  prepare (&t, c, PC_OP_WRITE, 100, 10);                /* cached page */
  memset (t.buf, 'b', 10);
  pc_core_submit (c->core, &t.req);
  assert_int_equal (t.done_calls, 1);
  assert_true (t.req.completed_inline);

  prepare (&t, c, PC_OP_WRITE, 4 * BS, BS);
  t.req.flags = PC_FUA;                                 /* durable: waits */
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_false (t.req.completed_inline);
  assert_int_equal (t.req.result, 0);

  prepare (&t, c, PC_OP_READ, 0, 2 * BS);
  assert_int_equal (pc_core_run (c->core, &t.req), 0);
  assert_memory_equal (t.buf, (char[100]) { [0 ... 99] = 'a' }, 100);
  assert_memory_equal (t.buf + 100, "bbbbbbbbbb", 10);
  assert_memory_equal (t.buf + 110, (char[100]) { [0 ... 99] = 'a' }, 100);
  close_pool (c);

  /* After a restart (the close wrote everything back), the pages are in
   * the pool only: a partial write of one must read it, so it is parked. */
  open_pool (c, &opts);
  prepare (&t, c, PC_OP_WRITE, 200, 10);
  memset (t.buf, 'c', 10);
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_false (t.req.completed_inline);
  prepare (&t, c, PC_OP_READ, 190, 30);
  assert_int_equal (pc_core_run (c->core, &t.req), 0);
  assert_memory_equal (t.buf, "aaaaaaaaaacccccccccca", 21);
}

static void
test_trylock_exclusive (void **state)
{
  struct pc_rangelock *l;
  struct pc_range_token a, b;

  (void) state;
  assert_int_equal (pc_rangelock_create (&l), 0);
  assert_int_equal (pc_rangelock_trylock_exclusive (l, &a, 10, 1), 0);
  assert_int_equal (pc_rangelock_trylock_exclusive (l, &b, 10, 1), -EAGAIN);
  assert_int_equal (pc_rangelock_trylock_shared (l, &b, 10, 1), -EAGAIN);
  assert_int_equal (pc_rangelock_trylock_exclusive (l, &b, 11, 1), 0);
  pc_rangelock_unlock (&b);
  pc_rangelock_unlock (&a);
  assert_int_equal (pc_rangelock_trylock_exclusive (l, &a, 10, 1), 0);
  pc_rangelock_unlock (&a);
  assert_int_equal (pc_rangelock_verify (l), 0);
  pc_rangelock_destroy (l);
}

static int
collect (struct pc_req *req, uint64_t off, uint64_t len, bool hole)
{
  unsigned *n = (unsigned *) ((struct treq *) req)->buf;

  n[0]++;
  n[1 + (hole ? 1 : 0)] += (unsigned) (len / BS);
  return (req->flags & PC_REQ_ONE) ? 1 : 0;
}

static void
test_extents_and_flush (void **state)
{
  struct ctx *c = *state;
  struct treq t;
  unsigned *n = (unsigned *) t.buf;

  open_pool (c, NULL);
  prepare (&t, c, PC_OP_WRITE, 2 * BS, BS);
  memset (t.buf, 'e', BS);
  assert_int_equal (pc_core_run (c->core, &t.req), 0);
  prepare (&t, c, PC_OP_FLUSH, 0, 0);
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_int_equal (t.req.result, 0);
  prepare (&t, c, PC_OP_EXTENTS, 0, 4 * BS);
  t.req.extent = collect;
  pc_core_submit (c->core, &t.req);
  wait_done (&t);
  assert_int_equal (t.req.result, 0);
  assert_int_equal (n[0], 3);                  /* hole, data, hole */
  assert_int_equal (n[1], 1);
  assert_int_equal (n[2], 3);
  prepare (&t, c, PC_OP_EXTENTS, 0, 4 * BS);
  t.req.extent = collect;
  t.req.flags = PC_REQ_ONE;
  assert_int_equal (pc_core_run (c->core, &t.req), 0);
  assert_int_equal (n[0], 1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_inline_and_parked, setup, teardown),
    cmocka_unit_test_setup_teardown (test_errors, setup, teardown),
    cmocka_unit_test_setup_teardown (test_submit_never_waits, setup,
                                     teardown),
    cmocka_unit_test (test_trylock),
    cmocka_unit_test_setup_teardown (test_trylock_fair, setup, teardown),
    cmocka_unit_test_setup_teardown (test_extents_and_flush, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_write_fast_path, setup, teardown),
    cmocka_unit_test (test_trylock_exclusive),
  };
  return cmocka_run_group_tests_name ("request", tests, NULL, NULL);
}
