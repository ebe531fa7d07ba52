/* Description: unit tests of the range invalidate lock (lib/cache/rangelock.c):
 * exclusion between overlapping holders (exclusive/shared, exclusive/
 * exclusive), shared holders together, disjoint ranges never waiting (also
 * across a domain boundary, checked through the wait counters), wide ranges
 * spanning many domains (heap segments), FIFO fairness (a later reader
 * waits behind a queued punch), exact statistics, EINVAL/ENOMEM cases, and
 * a many-thread stress run checking with per-block counters that no
 * conflicting holder is ever inside a held range, with pc_rangelock_verify
 * running concurrently.
 *
 * Every wait is bounded: a thread that does not finish in time (lost
 * wake-up, deadlock) makes the program exit 1 at once.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/rangelock.h"

#define DOMAIN 4096u            /* lib/cache/rangelock.c DOMAIN_BLOCKS */
#define WAIT_OK_MS 3000         /* "must be granted": generous */
#define WAIT_NO_MS 100          /* "must still be waiting" */

struct ctx { struct pc_rangelock *lock; };

static uint64_t
ms_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Join th, whose last act is setting *done, within 'seconds', or exit 1:
 * a stuck thread is a failure.  (Polling *done then calling plain
 * pthread_join keeps helgrind aware of the join.) */
static void
join_or_die (pthread_t th, const int *done, int seconds)
{
  uint64_t end = ms_now () + (uint64_t) seconds * 1000;

  while (!__atomic_load_n (done, __ATOMIC_SEQ_CST) && ms_now () < end)
    usleep (1000);
  if (!__atomic_load_n (done, __ATOMIC_SEQ_CST)) {
    fprintf (stderr, "unit-rangelock: a thread is stuck (lost wake-up or "
             "deadlock)\n");
    exit (1);
  }
  pthread_join (th, NULL);
}

/* ---- a thread that takes one range and holds it until told ---- */

struct taker {
  struct pc_rangelock *lock;
  uint64_t first, count;
  bool exclusive;
  int result;                   /* lock call's return */
  int acquired, release, done; /* atomics */
  bool joined;
  pthread_t th;
};

static void *
taker_main (void *arg)
{
  struct taker *t = arg;
  struct pc_range_token tok;
  int r;

  r = t->exclusive
    ? pc_rangelock_lock_exclusive (t->lock, &tok, t->first, t->count)
    : pc_rangelock_lock_shared (t->lock, &tok, t->first, t->count);
  __atomic_store_n (&t->result, r, __ATOMIC_SEQ_CST);
  __atomic_store_n (&t->acquired, 1, __ATOMIC_SEQ_CST);
  if (r == 0) {
    while (!__atomic_load_n (&t->release, __ATOMIC_SEQ_CST))
      usleep (500);
    pc_rangelock_unlock (&tok);
  }
  __atomic_store_n (&t->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* Takers live in a static pool, not on a test's stack: when an assertion
 * fails, cmocka leaves the test function while takers may still run. */
#define MAX_TAKERS 64
static struct taker takers[MAX_TAKERS];
static unsigned ntakers, test_first_taker;  /* test_first_taker: setup */

static struct taker *
start_taker (struct pc_rangelock *l, uint64_t first, uint64_t count,
             bool exclusive)
{
  struct taker *t;

  assert_true (ntakers < MAX_TAKERS);
  t = &takers[ntakers++];
  *t = (struct taker) { .lock = l, .first = first, .count = count,
                        .exclusive = exclusive };
  assert_int_equal (pthread_create (&t->th, NULL, taker_main, t), 0);
  return t;
}

/* Teardown: release every taker a failed test left behind.  Returns false
 * if some cannot finish (they still use the lock: it must be leaked). */
static bool
reap_takers (void)
{
  uint64_t end = ms_now () + 2000;
  bool all = true;
  unsigned i;

  for (i = test_first_taker; i < ntakers; i++)
    __atomic_store_n (&takers[i].release, 1, __ATOMIC_SEQ_CST);
  for (i = test_first_taker; i < ntakers; i++) {
    while (!__atomic_load_n (&takers[i].done, __ATOMIC_SEQ_CST) &&
           ms_now () < end)
      usleep (1000);
    if (!__atomic_load_n (&takers[i].done, __ATOMIC_SEQ_CST))
      all = false;
    else if (!takers[i].joined)
      pthread_join (takers[i].th, NULL);
  }
  if (all)
    ntakers = test_first_taker;
  return all;
}

/* ---- fixtures ---- */

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  assert_non_null (c);
  assert_int_equal (pc_rangelock_create (&c->lock), 0);
  test_first_taker = ntakers;
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  int r;

  if (!reap_takers ()) {
    print_error ("takers stuck: leaking the lock\n");
    return -1;
  }
  r = pc_rangelock_verify (c->lock);
  pc_rangelock_destroy (c->lock);
  free (c);
  return r == 0 ? 0 : -1;
}

/* Waits up to ms for t to hold its range; returns whether it does. */
static bool
acquired_within (struct taker *t, int ms)
{
  uint64_t end = ms_now () + (uint64_t) ms;

  while (!__atomic_load_n (&t->acquired, __ATOMIC_SEQ_CST) && ms_now () < end)
    usleep (500);
  return __atomic_load_n (&t->acquired, __ATOMIC_SEQ_CST);
}

static void
finish (struct taker *t)
{
  __atomic_store_n (&t->release, 1, __ATOMIC_SEQ_CST);
  join_or_die (t->th, &t->done, 5);
  t->joined = true;
  assert_int_equal (__atomic_load_n (&t->result, __ATOMIC_SEQ_CST), 0);
}

/* ---- exclusion ---- */

static void
test_exclusive_vs_shared (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token tok;
  struct taker *r1, *r2, *w;

  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &tok, 10, 10), 0);
  r1 = start_taker (c->lock, 19, 1, false);      /* last block: overlaps */
  r2 = start_taker (c->lock, 5, 6, false);       /* first block: overlaps */
  assert_false (acquired_within (r1, WAIT_NO_MS));
  assert_false (acquired_within (r2, 1));
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  pc_rangelock_unlock (&tok);
  assert_true (acquired_within (r1, WAIT_OK_MS));
  assert_true (acquired_within (r2, WAIT_OK_MS));
  /* The other way round: shared holders keep an exclusive out. */
  w = start_taker (c->lock, 0, 100, true);
  assert_false (acquired_within (w, WAIT_NO_MS));
  finish (r1);
  assert_false (acquired_within (w, WAIT_NO_MS)); /* r2 still holds */
  finish (r2);
  assert_true (acquired_within (w, WAIT_OK_MS));
  finish (w);
}

static void
test_exclusive_vs_exclusive (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token tok;
  struct taker *a, *b;

  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &tok, 100, 100), 0);
  a = start_taker (c->lock, 199, 100, true);     /* overlaps by one block */
  b = start_taker (c->lock, 0, 100, true);       /* adjacent: disjoint */
  assert_true (acquired_within (b, WAIT_OK_MS));
  assert_false (acquired_within (a, WAIT_NO_MS));
  pc_rangelock_unlock (&tok);
  assert_true (acquired_within (a, WAIT_OK_MS));
  finish (a);
  finish (b);
}

static void
test_shared_together (void **state)
{
  struct ctx *c = *state;
  struct taker *a, *b, *x;

  a = start_taker (c->lock, 0, 100, false);
  b = start_taker (c->lock, 50, 100, false);
  assert_true (acquired_within (a, WAIT_OK_MS));
  assert_true (acquired_within (b, WAIT_OK_MS));   /* both at once */
  x = start_taker (c->lock, 99, 1, true);
  assert_false (acquired_within (x, WAIT_NO_MS));
  finish (a);
  assert_false (acquired_within (x, WAIT_NO_MS)); /* b still holds 99 */
  finish (b);
  assert_true (acquired_within (x, WAIT_OK_MS));
  finish (x);
}

/* Disjoint ranges never wait: checked through the wait counters, which
 * must stay at zero, not only through timing. */
static void
test_disjoint_never_wait (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t1, t2;
  struct pc_rangelock_stats st;
  struct taker *a, *b, *d;

  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t1, 0, 10), 0);
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t2,
                                                 DOMAIN - 10, 10), 0);
  a = start_taker (c->lock, 10, 10, true);
  b = start_taker (c->lock, DOMAIN, 10, true);    /* next domain */
  d = start_taker (c->lock, 20, DOMAIN - 30, false); /* the gap between */
  assert_true (acquired_within (a, WAIT_OK_MS));
  assert_true (acquired_within (b, WAIT_OK_MS));
  assert_true (acquired_within (d, WAIT_OK_MS));
  pc_rangelock_get_stats (c->lock, &st);
  assert_int_equal (st.exclusive_acquired, 4);
  assert_int_equal (st.shared_acquired, 1);
  assert_int_equal (st.exclusive_waits + st.shared_waits, 0);
  finish (a);
  finish (b);
  finish (d);
  pc_rangelock_unlock (&t2);
  pc_rangelock_unlock (&t1);
}

/* ---- wide ranges ---- */

static void
test_wide_ranges (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t1, t2, t3;
  uint64_t end = 5 + 10 * (uint64_t) DOMAIN;       /* 11 domains: heap */
  struct taker *far, *near, *next;

  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t1, 5, end - 5), 0);
  assert_int_equal (t1.nsegs, 11);
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  far = start_taker (c->lock, end - 1, 2, false);  /* last block: waits */
  near = start_taker (c->lock, 0, 6, false);       /* first block: waits */
  next = start_taker (c->lock, end, 3 * DOMAIN, false);   /* disjoint */
  assert_true (acquired_within (next, WAIT_OK_MS));
  assert_false (acquired_within (far, WAIT_NO_MS));
  assert_false (acquired_within (near, 1));
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  pc_rangelock_unlock (&t1);
  assert_true (acquired_within (far, WAIT_OK_MS));
  assert_true (acquired_within (near, WAIT_OK_MS));
  /* Two wide shared ranges overlap and are granted together. */
  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t2, 0, end), 0);
  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t3, 7, 5 * DOMAIN), 0);
  finish (far);
  finish (near);
  finish (next);
  pc_rangelock_unlock (&t3);
  pc_rangelock_unlock (&t2);
}

/* Exactly PC_RANGE_TOKEN_INLINE segments (inline) and one more (heap). */
static void
test_inline_heap_boundary (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t1, t2;
  uint64_t n4 = PC_RANGE_TOKEN_INLINE * (uint64_t) DOMAIN;

  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t1, 0, n4), 0);
  assert_int_equal (t1.nsegs, PC_RANGE_TOKEN_INLINE);
  assert_ptr_equal ((void *) t1.segs, (void *) t1.inline_space);
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t2, n4 + 1, n4), 0);
  assert_int_equal (t2.nsegs, PC_RANGE_TOKEN_INLINE + 1);
  assert_ptr_not_equal ((void *) t2.segs, (void *) t2.inline_space);
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  pc_rangelock_unlock (&t2);
  pc_rangelock_unlock (&t1);
  assert_int_equal (t1.nsegs, 0);
}

/* ---- fairness ---- */

static void
test_fairness (void **state)
{
  struct ctx *c = *state;
  struct taker *r1, *w, *r2;

  r1 = start_taker (c->lock, 0, 8, false);
  assert_true (acquired_within (r1, WAIT_OK_MS));
  w = start_taker (c->lock, 0, 8, true);             /* queued punch */
  assert_false (acquired_within (w, WAIT_NO_MS));
  r2 = start_taker (c->lock, 4, 1, false);           /* later reader */
  assert_false (acquired_within (r2, WAIT_NO_MS));  /* must not jump */
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  finish (r1);
  assert_true (acquired_within (w, WAIT_OK_MS));
  assert_false (acquired_within (r2, WAIT_NO_MS));
  finish (w);
  assert_true (acquired_within (r2, WAIT_OK_MS));
  finish (r2);
}

/* Fairness across a domain boundary: the queued punch spans two domains. */
static void
test_fairness_two_domains (void **state)
{
  struct ctx *c = *state;
  struct taker *r1, *w, *r2;

  r1 = start_taker (c->lock, DOMAIN - 4, 8, false);
  assert_true (acquired_within (r1, WAIT_OK_MS));
  w = start_taker (c->lock, DOMAIN - 2, 4, true);
  assert_false (acquired_within (w, WAIT_NO_MS));
  r2 = start_taker (c->lock, DOMAIN - 1, 1, false);
  assert_false (acquired_within (r2, WAIT_NO_MS));
  finish (r1);
  assert_true (acquired_within (w, WAIT_OK_MS));
  assert_false (acquired_within (r2, WAIT_NO_MS));
  finish (w);
  assert_true (acquired_within (r2, WAIT_OK_MS));
  finish (r2);
}

/* ---- statistics ---- */

static void
test_stats (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t;
  struct pc_rangelock_stats st;
  struct taker *w;
  int i;

  for (i = 0; i < 3; i++) {
    assert_int_equal (pc_rangelock_lock_shared (c->lock, &t, 7, 3), 0);
    pc_rangelock_unlock (&t);
  }
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t, 7, 3), 0);
  pc_rangelock_get_stats (c->lock, &st);
  assert_int_equal (st.shared_acquired, 3);
  assert_int_equal (st.exclusive_acquired, 1);
  assert_int_equal (st.shared_waits + st.exclusive_waits, 0);
  assert_int_equal (st.shared_wait_ns + st.exclusive_wait_ns, 0);
  w = start_taker (c->lock, 9, 1, true);              /* waits ~100 ms */
  assert_false (acquired_within (w, 100));
  pc_rangelock_unlock (&t);
  assert_true (acquired_within (w, WAIT_OK_MS));
  finish (w);
  pc_rangelock_get_stats (c->lock, &st);
  assert_int_equal (st.exclusive_acquired, 2);
  assert_int_equal (st.exclusive_waits, 1);
  assert_int_equal (st.shared_waits, 0);
  assert_true (st.exclusive_wait_ns >= 20 * 1000000ull);  /* slack: load */
  assert_true (st.exclusive_wait_ns < 10 * 1000000000ull);
  assert_int_equal (st.shared_wait_ns, 0);
}

/* ---- invalid requests ---- */

static void
test_invalid (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t;
  struct pc_rangelock_stats st;

  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t, 5, 0), -EINVAL);
  pc_rangelock_unlock (&t);                     /* no-op on a failed token */
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t, UINT64_MAX, 1),
                    -EINVAL);
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t, UINT64_MAX, 2),
                    -EINVAL);
  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t, 1, UINT64_MAX),
                    -EINVAL);
  /* 2^52 domains: refused, not attempted. */
  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t, 0, UINT64_MAX),
                    -ENOMEM);
  pc_rangelock_get_stats (c->lock, &st);
  assert_int_equal (st.shared_acquired + st.exclusive_acquired, 0);
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  /* The very last valid block works. */
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t,
                                                 UINT64_MAX - 1, 1), 0);
  pc_rangelock_unlock (&t);
}

/* ---- stress ---- */

#define NBLK (6 * DOMAIN)
#define STRESS_THREADS 8
#define STRESS_OPS 20000
#define STRESS_SECONDS 4

static int shared_in[NBLK], excl_in[NBLK];   /* atomics */

struct stress {
  struct pc_rangelock *lock;
  unsigned seed;
  uint64_t deadline_ms, ops, bad;
  int done;                             /* atomic */
};

/* Mostly short ranges in a hot window across the first domain boundary,
 * some short ones anywhere, a few wide ones (up to 6 domains: heap). */
static void
pick_range (unsigned *seed, uint64_t *first, uint64_t *n)
{
  unsigned kind = (unsigned) rand_r (seed) % 200;

  if (kind == 0) {
    *first = (uint64_t) rand_r (seed) % NBLK;
    *n = 1 + (uint64_t) rand_r (seed) % NBLK;
  }
  else if (kind < 50) {
    *first = (uint64_t) rand_r (seed) % NBLK;
    *n = 1 + (uint64_t) rand_r (seed) % 16;
  }
  else {
    *first = DOMAIN - 48 + (uint64_t) rand_r (seed) % 96;
    *n = 1 + (uint64_t) rand_r (seed) % 16;
  }
  if (*first + *n > NBLK)
    *n = NBLK - *first;
}

/* Enter (delta 1) or leave (delta -1) [first, first+n); returns the number
 * of blocks where a conflicting holder was seen. */
static uint64_t
mark (uint64_t first, uint64_t n, bool ex, int delta)
{
  uint64_t b, bad = 0;
  int *mine = ex ? excl_in : shared_in;

  for (b = first; b < first + n; b++) {
    int v = __atomic_add_fetch (&mine[b], delta, __ATOMIC_SEQ_CST);
    if (ex && (v != (delta > 0) ||
               __atomic_load_n (&shared_in[b], __ATOMIC_SEQ_CST) != 0))
      bad++;
    if (!ex && __atomic_load_n (&excl_in[b], __ATOMIC_SEQ_CST) != 0)
      bad++;
  }
  return bad;
}

static void
stress_one (struct stress *s)
{
  struct pc_range_token tok;
  uint64_t first, n;
  bool ex = rand_r (&s->seed) % 4 == 0;
  int r;

  pick_range (&s->seed, &first, &n);
  r = ex ? pc_rangelock_lock_exclusive (s->lock, &tok, first, n)
    : pc_rangelock_lock_shared (s->lock, &tok, first, n);
  if (r < 0) {
    s->bad++;
    return;
  }
  s->bad += mark (first, n, ex, 1);
  if (rand_r (&s->seed) % 8 == 0)
    sched_yield ();                     /* hold a little longer */
  s->bad += mark (first, n, ex, -1);
  pc_rangelock_unlock (&tok);
  s->ops++;
}

static void *
stress_main (void *arg)
{
  struct stress *s = arg;

  while (s->ops < STRESS_OPS && ms_now () < s->deadline_ms)
    stress_one (s);
  __atomic_store_n (&s->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

struct verifier {
  struct pc_rangelock *lock;
  int stop, done;                       /* atomics */
  uint64_t calls, failures;
};

static void *
verifier_main (void *arg)
{
  struct verifier *v = arg;

  while (!__atomic_load_n (&v->stop, __ATOMIC_SEQ_CST)) {
    if (pc_rangelock_verify (v->lock) != 0)
      v->failures++;
    v->calls++;
    usleep (200);
  }
  __atomic_store_n (&v->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void
check_stress_stats (struct pc_rangelock *l, uint64_t ops)
{
  struct pc_rangelock_stats st;

  pc_rangelock_get_stats (l, &st);
  assert_int_equal (st.shared_acquired + st.exclusive_acquired, ops);
  assert_true (st.shared_waits <= st.shared_acquired);
  assert_true (st.exclusive_waits <= st.exclusive_acquired);
  assert_true (st.shared_waits + st.exclusive_waits > 0);   /* contended */
  assert_true ((st.shared_wait_ns > 0) == (st.shared_waits > 0));
  assert_true ((st.exclusive_wait_ns > 0) == (st.exclusive_waits > 0));
  print_message ("stress: %llu ops, shared %llu (%llu waited), exclusive "
                 "%llu (%llu waited)\n", (unsigned long long) ops,
                 (unsigned long long) st.shared_acquired,
                 (unsigned long long) st.shared_waits,
                 (unsigned long long) st.exclusive_acquired,
                 (unsigned long long) st.exclusive_waits);
}

static void
test_stress (void **state)
{
  struct ctx *c = *state;
  struct stress s[STRESS_THREADS];
  pthread_t th[STRESS_THREADS], vth;
  struct verifier v = { .lock = c->lock };
  uint64_t deadline = ms_now () + STRESS_SECONDS * 1000, ops = 0, bad = 0;
  int i;

  assert_int_equal (pthread_create (&vth, NULL, verifier_main, &v), 0);
  for (i = 0; i < STRESS_THREADS; i++) {
    s[i] = (struct stress) { .lock = c->lock, .seed = (unsigned) i * 977 + 1,
                             .deadline_ms = deadline };
    assert_int_equal (pthread_create (&th[i], NULL, stress_main, &s[i]), 0);
  }
  for (i = 0; i < STRESS_THREADS; i++) {
    join_or_die (th[i], &s[i].done, STRESS_SECONDS + 10);
    ops += s[i].ops;
    bad += s[i].bad;
  }
  __atomic_store_n (&v.stop, 1, __ATOMIC_SEQ_CST);
  join_or_die (vth, &v.done, 10);
  print_message ("stress: %llu conflicts seen, verify: %llu calls, %llu "
                 "failed\n", (unsigned long long) bad,
                 (unsigned long long) v.calls,
                 (unsigned long long) v.failures);
  assert_int_equal (bad, 0);
  assert_int_equal (v.failures, 0);
  assert_true (v.calls > 0);
  assert_true (ops >= 1000);
  check_stress_stats (c->lock, ops);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_exclusive_vs_shared, setup, teardown),
    cmocka_unit_test_setup_teardown (test_exclusive_vs_exclusive, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_shared_together, setup, teardown),
    cmocka_unit_test_setup_teardown (test_disjoint_never_wait, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_wide_ranges, setup, teardown),
    cmocka_unit_test_setup_teardown (test_inline_heap_boundary, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_fairness, setup, teardown),
    cmocka_unit_test_setup_teardown (test_fairness_two_domains, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_stats, setup, teardown),
    cmocka_unit_test_setup_teardown (test_invalid, setup, teardown),
    cmocka_unit_test_setup_teardown (test_stress, setup, teardown),
  };

  return cmocka_run_group_tests_name ("rangelock", tests, NULL, NULL);
}
