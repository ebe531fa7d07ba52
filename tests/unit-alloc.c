/* Description: unit tests of the physical allocator (lib/pool/alloc.c):
 * lowest-free-first order (also across word boundaries and after frees),
 * ENOSPC when full and recovery, deferred frees NOT reusable before their
 * epoch is released and reusable after (SPEC I3b), releasing an earlier
 * epoch leaves later ones pending (also when epochs arrive out of order),
 * mark_used -EEXIST / -ERANGE, double-free detection (defer and put_now),
 * exact statistics, and 4 threads doing get / put_now / defer while a fifth
 * releases epochs, checking with a per-block state array that no block is
 * ever handed out twice nor reused before its epoch was released.
 * pc_alloc_verify runs after every test (teardown).
 *
 * Every thread loop is bounded in count.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "punchcache/alloc.h"

struct ctx { struct pc_alloc *a; };

static struct pc_alloc *
ctx_new (void **state, uint64_t nblocks)
{
  struct ctx *c = calloc (1, sizeof *c);

  assert_non_null (c);
  assert_int_equal (pc_alloc_create (nblocks, &c->a), 0);
  *state = c;
  return c->a;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  int r = pc_alloc_verify (c->a);

  pc_alloc_destroy (c->a);
  free (c);
  return r == 0 ? 0 : -1;
}

static uint64_t
get (struct pc_alloc *a)
{
  uint64_t p = UINT64_MAX;
  assert_int_equal (pc_alloc_get (a, &p), 0);
  return p;
}

static void
assert_stats (struct pc_alloc *a, uint64_t used, uint64_t pending,
              uint64_t free_)
{
  struct pc_alloc_stats st;

  pc_alloc_get_stats (a, &st);
  assert_int_equal (st.used, used);
  assert_int_equal (st.pending, pending);
  assert_int_equal (st.free, free_);
  assert_int_equal (st.nblocks, used + pending + free_);
}

static void
test_lowest_first_and_enospc (void **state)
{
  struct pc_alloc *a = ctx_new (state, 130);      /* 3 words, last partial */
  uint64_t p;

  assert_int_equal (pc_alloc_mark_used (a, 1), 0);
  assert_int_equal (pc_alloc_mark_used (a, 64), 0);
  assert_int_equal (get (a), 0);
  assert_int_equal (get (a), 2);                     /* 1 was in use */
  for (uint64_t i = 3; i < 130; i++)
    if (i != 64) assert_int_equal (get (a), i);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);  /* stays full */
  assert_stats (a, 130, 0, 0);
  pc_alloc_put_now (a, 129);
  pc_alloc_put_now (a, 77);
  pc_alloc_put_now (a, 5);
  assert_stats (a, 127, 0, 3);
  assert_int_equal (get (a), 5);                     /* lowest first */
  assert_int_equal (get (a), 77);
  assert_int_equal (get (a), 129);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  assert_int_equal (pc_alloc_verify (a), 0);
}

/* pc_alloc_get_run: the lowest free block and the free ones right after
 * it, stopping at a used block, at max, and at the end of the pool. */
static void
test_get_run (void **state)
{
  struct pc_alloc *a = ctx_new (state, 130);
  uint64_t first = 0;
  unsigned n = 0;

  assert_int_equal (pc_alloc_mark_used (a, 0), 0);
  assert_int_equal (pc_alloc_mark_used (a, 10), 0);
  assert_int_equal (pc_alloc_get_run (a, 16, &first, &n), 0);
  assert_int_equal (first, 1);
  assert_int_equal (n, 9);                          /* stops at used 10 */
  assert_int_equal (pc_alloc_get_run (a, 16, &first, &n), 0);
  assert_int_equal (first, 11);
  assert_int_equal (n, 16);                         /* stops at max */
  assert_int_equal (get (a), 27);                   /* hint moved past */
  pc_alloc_put_now (a, 5);
  assert_int_equal (pc_alloc_get_run (a, 16, &first, &n), 0);
  assert_int_equal (first, 5);                      /* lowest first */
  assert_int_equal (n, 1);
  for (uint64_t b = 28; b < 120; b++) assert_int_equal (get (a), b);
  assert_int_equal (pc_alloc_get_run (a, 64, &first, &n), 0);
  assert_int_equal (first, 120);
  assert_int_equal (n, 10);                         /* stops at the end */
  assert_int_equal (pc_alloc_get_run (a, 1, &first, &n), -ENOSPC);
  assert_stats (a, 130, 0, 0);
}

static void
test_mark_used (void **state)
{
  struct pc_alloc *a = ctx_new (state, 100);

  assert_int_equal (pc_alloc_mark_used (a, 99), 0);
  assert_int_equal (pc_alloc_mark_used (a, 99), -EEXIST);  /* mapped twice */
  assert_int_equal (pc_alloc_mark_used (a, 100), -ERANGE);
  assert_int_equal (pc_alloc_mark_used (a, UINT64_MAX), -ERANGE);
  assert_int_equal (pc_alloc_is_used (a, 99), 1);
  assert_int_equal (pc_alloc_is_used (a, 98), 0);
  assert_int_equal (pc_alloc_is_used (a, 100), -ERANGE);
  assert_int_equal (pc_alloc_defer (a, 99, 1), 0);
  assert_int_equal (pc_alloc_mark_used (a, 99), -EEXIST);  /* pending too */
  assert_int_equal (pc_alloc_is_used (a, 99), 1);
  assert_stats (a, 0, 1, 99);
}

static void
test_deferred (void **state)
{
  struct pc_alloc *a = ctx_new (state, 4);
  uint64_t p;

  for (int i = 0; i < 4; i++) get (a);
  assert_int_equal (pc_alloc_defer (a, 2, 10), 0);
  assert_int_equal (pc_alloc_defer (a, 0, 11), 0);
  assert_stats (a, 2, 2, 0);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);       /* I3b */
  /* What a commit of epoch 9, 10, 11 would punch: prefixes, ascending. */
  uint64_t *v;
  assert_int_equal (pc_alloc_releasable (a, 9, &v), 0);
  assert_null (v);
  assert_int_equal (pc_alloc_releasable (a, 10, &v), 1);
  assert_int_equal (v[0], 2);
  free (v);
  assert_int_equal (pc_alloc_releasable (a, 11, &v), 2);
  assert_int_equal (v[0], 0);
  assert_int_equal (v[1], 2);
  free (v);
  assert_stats (a, 2, 2, 0);                              /* nothing freed */
  pc_alloc_release_through (a, 9);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  pc_alloc_release_through (a, 10);                       /* only epoch 10 */
  assert_stats (a, 2, 1, 1);
  assert_int_equal (get (a), 2);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  pc_alloc_release_through (a, 11);
  assert_int_equal (get (a), 0);
  assert_stats (a, 4, 0, 0);
}

/* Epochs need not arrive in order: each block waits for its own. */
static void
test_deferred_out_of_order (void **state)
{
  struct pc_alloc *a = ctx_new (state, 10);
  uint64_t epochs[10] = { 7, 3, 9, 3, 1, 8, 2, 7, 5, 4 };

  for (int i = 0; i < 10; i++) get (a);
  for (uint64_t i = 0; i < 10; i++)
    assert_int_equal (pc_alloc_defer (a, i, epochs[i]), 0);
  for (uint64_t e = 0; e <= 9; e++) {
    pc_alloc_release_through (a, e);
    for (uint64_t i = 0; i < 10; i++)
      assert_int_equal (pc_alloc_is_used (a, i), epochs[i] > e);
    assert_int_equal (pc_alloc_verify (a), 0);
  }
  pc_alloc_release_through (a, 3);                  /* going back: no-op */
  assert_stats (a, 0, 0, 10);
}

static void
test_double_free (void **state)
{
  struct pc_alloc *a = ctx_new (state, 8);

  get (a); get (a);
  assert_int_equal (pc_alloc_defer (a, 5, 1), -EINVAL);   /* never used */
  assert_int_equal (pc_alloc_defer (a, 8, 1), -ERANGE);
  assert_int_equal (pc_alloc_defer (a, 1, 1), 0);
  assert_int_equal (pc_alloc_defer (a, 1, 2), -EINVAL);   /* pending */
  assert_stats (a, 1, 1, 6);
  pc_alloc_release_through (a, 1);
  assert_int_equal (pc_alloc_defer (a, 1, 3), -EINVAL);   /* free now */
  assert_int_equal (pc_alloc_verify (a), 0);
  pc_alloc_put_now (a, 0);
  pc_alloc_put_now (a, 0);                  /* ignored, no underflow ... */
  assert_stats (a, 0, 0, 8);
  assert_int_equal (pc_alloc_verify (a), -EUCLEAN);       /* ... but seen */
  pc_alloc_destroy (a);                     /* fresh one for teardown */
  assert_int_equal (pc_alloc_create (8, &((struct ctx *) *state)->a), 0);
}

/* Many deferred blocks over many epochs: the list grows past its first
 * allocation and release_through frees exactly a prefix. */
static void
test_deferred_many (void **state)
{
  struct pc_alloc *a = ctx_new (state, 5000);

  for (int i = 0; i < 5000; i++) get (a);
  for (uint64_t i = 0; i < 5000; i++)
    assert_int_equal (pc_alloc_defer (a, 4999 - i, i / 100), 0);
  pc_alloc_release_through (a, 24);                 /* blocks 2500..4999 */
  assert_stats (a, 0, 2500, 2500);
  assert_int_equal (get (a), 2500);
  pc_alloc_put_now (a, 2500);
  pc_alloc_release_through (a, 49);
  assert_int_equal (get (a), 0);
  assert_stats (a, 1, 0, 4999);
}

/* ---- concurrency ---- */

#define NB 40                   /* few blocks: heavy contention */
#define NTHREADS 4
#define MAX_ROUNDS 2000000   /* bound; normally TARGET ends it */
#define TARGET 20000          /* deferred blocks handed out again */

enum { FREE = 0, HELD = 1 };    /* else: PENDING_BASE + epoch */
#define PENDING_BASE 2

struct shared {
  struct pc_alloc *a;
  uint64_t state[NB];           /* FREE, HELD or PENDING_BASE + epoch */
  uint64_t epoch;               /* epoch new defers use */
  uint64_t released;            /* highest epoch released (set before) */
  int done, errors;
  uint64_t reused;              /* blocks handed out again after a defer */
};

/* b was just handed out: it must have been free, or pending with an epoch
 * that has been released. */
static void
claim (struct shared *s, uint64_t b)
{
  uint64_t old = __atomic_exchange_n (&s->state[b], HELD, __ATOMIC_SEQ_CST);

  if (old >= PENDING_BASE)
    __atomic_add_fetch (&s->reused, 1, __ATOMIC_RELAXED);
  if (old == HELD ||
      (old >= PENDING_BASE &&
       old - PENDING_BASE > __atomic_load_n (&s->released, __ATOMIC_SEQ_CST)))
    __atomic_add_fetch (&s->errors, 1, __ATOMIC_SEQ_CST);
}

static void
give_back (struct shared *s, uint64_t b, unsigned *seed)
{
  if (rand_r (seed) % 2) {
    __atomic_store_n (&s->state[b], FREE, __ATOMIC_SEQ_CST);
    pc_alloc_put_now (s->a, b);
  }
  else {
    uint64_t e = __atomic_load_n (&s->epoch, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s->state[b], PENDING_BASE + e, __ATOMIC_SEQ_CST);
    if (pc_alloc_defer (s->a, b, e) != 0)
      __atomic_add_fetch (&s->errors, 1, __ATOMIC_SEQ_CST);
  }
}

static void *
churn (void *arg)
{
  struct shared *s = arg;
  unsigned seed = (unsigned) (uintptr_t) &seed;
  uint64_t held[8];

  for (int round = 0; round < MAX_ROUNDS &&
         __atomic_load_n (&s->reused, __ATOMIC_RELAXED) < TARGET; round++) {
    int n = 0;
    while (n < 8 && pc_alloc_get (s->a, &held[n]) == 0)
      claim (s, held[n++]);
    if (n == 0) sched_yield ();                  /* all pending: let go */
    while (n-- > 0)
      give_back (s, held[n], &seed);
  }
  return NULL;
}

/* Releases epochs LAG behind the one new defers use, so some blocks are
 * always pending with an epoch that must not be released yet. */
#define LAG 3

static void *
releaser (void *arg)
{
  struct shared *s = arg;

  for (int i = 0; i < 1000000 && !__atomic_load_n (&s->done, __ATOMIC_SEQ_CST);
       i++) {
    uint64_t e = __atomic_fetch_add (&s->epoch, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s->released, e - LAG, __ATOMIC_SEQ_CST);
    pc_alloc_release_through (s->a, e - LAG);
    sched_yield ();
  }
  return NULL;
}

static void
test_concurrent (void **state)
{
  static struct shared s;
  pthread_t th[NTHREADS + 1];

  s = (struct shared) { .a = ctx_new (state, NB), .epoch = LAG };
  for (int i = 0; i < NTHREADS; i++)
    assert_int_equal (pthread_create (&th[i], NULL, churn, &s), 0);
  assert_int_equal (pthread_create (&th[NTHREADS], NULL, releaser, &s), 0);
  for (int i = 0; i < NTHREADS; i++) pthread_join (th[i], NULL);
  __atomic_store_n (&s.done, 1, __ATOMIC_SEQ_CST);
  pthread_join (th[NTHREADS], NULL);
  print_message ("%" PRIu64 " deferred blocks reused, last epoch %" PRIu64
                 "\n", s.reused, s.epoch);
  assert_int_equal (s.errors, 0);
  assert_int_equal (pc_alloc_verify (s.a), 0);
  pc_alloc_release_through (s.a, UINT64_MAX);
  assert_stats (s.a, 0, 0, NB);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown (test_lowest_first_and_enospc, teardown),
    cmocka_unit_test_teardown (test_get_run, teardown),
    cmocka_unit_test_teardown (test_mark_used, teardown),
    cmocka_unit_test_teardown (test_deferred, teardown),
    cmocka_unit_test_teardown (test_deferred_out_of_order, teardown),
    cmocka_unit_test_teardown (test_double_free, teardown),
    cmocka_unit_test_teardown (test_deferred_many, teardown),
    cmocka_unit_test_teardown (test_concurrent, teardown),
  };
  return cmocka_run_group_tests_name ("alloc", tests, NULL, NULL);
}
