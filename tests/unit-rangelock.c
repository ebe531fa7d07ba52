/* Description: unit tests of the range invalidate lock (lib/rangelock.c):
 * exclusion between overlapping shared/exclusive holders, no waiting
 * between disjoint ranges, wide multi-domain ranges, FIFO fairness (a
 * later reader waits behind a queued punch), and a many-thread stress run
 * that checks with per-block counters that no conflicting holder is ever
 * inside a held range.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/rangelock.h"

struct ctx { struct pc_rangelock *lock; };

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);
  assert_int_equal (pc_rangelock_create (&c->lock), 0);
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  pc_rangelock_destroy (c->lock);
  free (c);
  return 0;
}

/* A thread that takes a lock and records when it got it. */
struct taker {
  struct pc_rangelock *lock;
  uint64_t first, count;
  bool exclusive;
  volatile int acquired;
  volatile int release;
  pthread_t th;
};

static void *
taker_main (void *arg)
{
  struct taker *t = arg;
  struct pc_range_token tok;

  if (t->exclusive)
    assert_int_equal (pc_rangelock_lock_exclusive (t->lock, &tok, t->first, t->count), 0);
  else
    assert_int_equal (pc_rangelock_lock_shared (t->lock, &tok, t->first, t->count), 0);
  __atomic_store_n (&t->acquired, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n (&t->release, __ATOMIC_SEQ_CST))
    usleep (1000);
  pc_rangelock_unlock (&tok);
  return NULL;
}

static void
start_taker (struct taker *t, struct pc_rangelock *l, uint64_t first,
             uint64_t count, bool exclusive)
{
  *t = (struct taker) { l, first, count, exclusive, 0, 0, 0 };
  pthread_create (&t->th, NULL, taker_main, t);
}

/* Wait up to ms for t->acquired; returns it. */
static int
acquired_within (struct taker *t, int ms)
{
  for (int i = 0; i < ms && !t->acquired; i++) usleep (1000);
  return t->acquired;
}

static void
finish (struct taker *t)
{
  t->release = 1;
  pthread_join (t->th, NULL);
}

static void
test_exclusive_blocks_overlap (void **state)
{
  struct ctx *c = *state;
  struct taker a, b, s;

  start_taker (&a, c->lock, 10, 10, true);
  assert_true (acquired_within (&a, 2000));
  start_taker (&b, c->lock, 15, 1, false);          /* overlaps: waits */
  start_taker (&s, c->lock, 20, 5, true);           /* disjoint: runs */
  assert_true (acquired_within (&s, 2000));
  assert_false (acquired_within (&b, 100));
  assert_int_equal (pc_rangelock_verify (c->lock), 0);
  finish (&a);
  assert_true (acquired_within (&b, 2000));
  finish (&b);
  finish (&s);
}

static void
test_shared_together (void **state)
{
  struct ctx *c = *state;
  struct taker a, b, x;

  start_taker (&a, c->lock, 0, 100, false);
  start_taker (&b, c->lock, 50, 100, false);
  assert_true (acquired_within (&a, 2000));
  assert_true (acquired_within (&b, 2000));          /* both at once */
  start_taker (&x, c->lock, 99, 1, true);
  assert_false (acquired_within (&x, 100));
  finish (&a);
  assert_false (acquired_within (&x, 50));           /* b still holds */
  finish (&b);
  assert_true (acquired_within (&x, 2000));
  finish (&x);
}

static void
test_fairness (void **state)
{
  struct ctx *c = *state;
  struct taker r1, w, r2;

  start_taker (&r1, c->lock, 0, 8, false);
  assert_true (acquired_within (&r1, 2000));
  start_taker (&w, c->lock, 0, 8, true);             /* queued punch */
  assert_false (acquired_within (&w, 100));
  start_taker (&r2, c->lock, 4, 1, false);           /* later reader */
  assert_false (acquired_within (&r2, 100));         /* must not jump */
  finish (&r1);
  assert_true (acquired_within (&w, 2000));
  assert_false (acquired_within (&r2, 50));
  finish (&w);
  assert_true (acquired_within (&r2, 2000));
  finish (&r2);
}

static void
test_wide_ranges (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t1, t2;
  struct taker x;

  /* Spans hundreds of domains: heap segments. */
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t1, 5, 1000000), 0);
  start_taker (&x, c->lock, 999999, 2, false);
  assert_false (acquired_within (&x, 100));
  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t2, 1000005, 3000), 0);
  pc_rangelock_unlock (&t1);
  assert_true (acquired_within (&x, 2000));
  finish (&x);
  pc_rangelock_unlock (&t2);
}

static void
test_invalid (void **state)
{
  struct ctx *c = *state;
  struct pc_range_token t;

  assert_int_equal (pc_rangelock_lock_shared (c->lock, &t, 5, 0), -EINVAL);
  assert_int_equal (pc_rangelock_lock_exclusive (c->lock, &t, UINT64_MAX, 2), -EINVAL);
}

/* ---- stress ---- */

#define NBLK 256
static int shared_in[NBLK], excl_in[NBLK];
static volatile int bad;

struct stress { struct pc_rangelock *lock; unsigned seed; };

static void *
stress_main (void *arg)
{
  struct stress *s = arg;
  struct timespec t0, t;

  clock_gettime (CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < 20000; i++) {
    struct pc_range_token tok;
    uint64_t first = (uint64_t) rand_r (&s->seed) % NBLK;
    uint64_t n = 1 + (uint64_t) rand_r (&s->seed) % 8, b;
    bool ex = rand_r (&s->seed) % 4 == 0;
    if (first + n > NBLK) n = NBLK - first;
    if (ex) pc_rangelock_lock_exclusive (s->lock, &tok, first, n);
    else pc_rangelock_lock_shared (s->lock, &tok, first, n);
    for (b = first; b < first + n; b++) {
      if (ex) {
        if (__atomic_add_fetch (&excl_in[b], 1, __ATOMIC_SEQ_CST) != 1 ||
            __atomic_load_n (&shared_in[b], __ATOMIC_SEQ_CST) != 0) bad = 1;
      }
      else {
        __atomic_add_fetch (&shared_in[b], 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n (&excl_in[b], __ATOMIC_SEQ_CST) != 0) bad = 1;
      }
    }
    for (b = first; b < first + n; b++)
      __atomic_sub_fetch (ex ? &excl_in[b] : &shared_in[b], 1, __ATOMIC_SEQ_CST);
    pc_rangelock_unlock (&tok);
    clock_gettime (CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > 10) break;             /* bound in time */
  }
  return NULL;
}

static void
test_stress (void **state)
{
  struct ctx *c = *state;
  struct stress s[8];
  pthread_t th[8];
  struct pc_rangelock_stats st;

  for (int i = 0; i < 8; i++) {
    s[i] = (struct stress) { c->lock, (unsigned) i * 977 + 1 };
    pthread_create (&th[i], NULL, stress_main, &s[i]);
  }
  for (int i = 0; i < 8; i++)
    pthread_join (th[i], NULL);
  assert_int_equal (bad, 0);
  pc_rangelock_get_stats (c->lock, &st);
  assert_true (st.shared_acquired + st.exclusive_acquired > 0);
  assert_true (st.exclusive_waits + st.shared_waits > 0);   /* contended */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_exclusive_blocks_overlap, setup, teardown),
    cmocka_unit_test_setup_teardown (test_shared_together, setup, teardown),
    cmocka_unit_test_setup_teardown (test_fairness, setup, teardown),
    cmocka_unit_test_setup_teardown (test_wide_ranges, setup, teardown),
    cmocka_unit_test_setup_teardown (test_invalid, setup, teardown),
    cmocka_unit_test_setup_teardown (test_stress, setup, teardown),
  };
  return cmocka_run_group_tests_name ("rangelock", tests, NULL, NULL);
}
