/* Description: unit tests of the physical allocator (lib/alloc.c):
 * lowest-free-first, ENOSPC and recovery, deferred frees not reusable
 * before their epoch is released (SPEC I3b), double-free detection,
 * concurrent get/put never handing a block out twice. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "punchcache/alloc.h"

static uint64_t
get (struct pc_alloc *a)
{
  uint64_t p;
  assert_int_equal (pc_alloc_get (a, &p), 0);
  return p;
}

static void
test_lowest_first_and_enospc (void **state)
{
  struct pc_alloc *a;
  uint64_t p;

  assert_int_equal (pc_alloc_create (130, &a), 0);
  assert_int_equal (pc_alloc_mark_used (a, 1), 0);
  assert_int_equal (pc_alloc_mark_used (a, 1), -EEXIST);
  assert_int_equal (get (a), 0);
  assert_int_equal (get (a), 2);                     /* 1 was in use */
  for (int i = 3; i < 130; i++) assert_int_equal (get (a), (uint64_t) i);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  pc_alloc_put_now (a, 77);
  pc_alloc_put_now (a, 5);
  assert_int_equal (get (a), 5);                     /* lowest first */
  assert_int_equal (get (a), 77);
  assert_int_equal (pc_alloc_verify (a), 0);
  pc_alloc_destroy (a);
}

static void
test_deferred (void **state)
{
  struct pc_alloc *a;
  struct pc_alloc_stats st;
  uint64_t p;

  assert_int_equal (pc_alloc_create (4, &a), 0);
  for (int i = 0; i < 4; i++) get (a);
  assert_int_equal (pc_alloc_defer (a, 2, 10), 0);
  assert_int_equal (pc_alloc_defer (a, 2, 10), -EINVAL);  /* double free */
  assert_int_equal (pc_alloc_defer (a, 0, 11), 0);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);       /* I3b */
  pc_alloc_get_stats (a, &st);
  assert_int_equal (st.pending, 2);
  pc_alloc_release_through (a, 9);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  pc_alloc_release_through (a, 10);                       /* only epoch 10 */
  assert_int_equal (get (a), 2);
  assert_int_equal (pc_alloc_get (a, &p), -ENOSPC);
  pc_alloc_release_through (a, 11);
  assert_int_equal (get (a), 0);
  assert_int_equal (pc_alloc_verify (a), 0);
  pc_alloc_destroy (a);
}

#define N 4096
static int owner[N];
static volatile int twice;

static void *
churn (void *arg)
{
  struct pc_alloc *a = arg;
  uint64_t held[16];
  for (int round = 0; round < 20000; round++) {
    int n = 0;
    while (n < 16 && pc_alloc_get (a, &held[n]) == 0) {
      if (__atomic_add_fetch (&owner[held[n]], 1, __ATOMIC_SEQ_CST) != 1) twice = 1;
      n++;
    }
    while (n-- > 0) {
      __atomic_sub_fetch (&owner[held[n]], 1, __ATOMIC_SEQ_CST);
      pc_alloc_put_now (a, held[n]);
    }
  }
  return NULL;
}

static void
test_concurrent (void **state)
{
  struct pc_alloc *a;
  pthread_t th[4];

  assert_int_equal (pc_alloc_create (40, &a), 0);        /* contended */
  for (int i = 0; i < 4; i++) pthread_create (&th[i], NULL, churn, a);
  for (int i = 0; i < 4; i++) pthread_join (th[i], NULL);
  assert_int_equal (twice, 0);
  assert_int_equal (pc_alloc_verify (a), 0);
  pc_alloc_destroy (a);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_lowest_first_and_enospc),
    cmocka_unit_test (test_deferred),
    cmocka_unit_test (test_concurrent),
  };
  return cmocka_run_group_tests_name ("alloc", tests, NULL, NULL);
}
