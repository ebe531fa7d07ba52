/* Description: unit tests of the forward block map (lib/blockmap.c): set,
 * get, clear, bounds, a huge sparse map that stays small and answers
 * next_mapped fast, concurrent setters with lock-free readers, resize. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "punchcache/blockmap.h"

static void
test_basic (void **state)
{
  struct pc_blockmap *m;

  assert_int_equal (pc_blockmap_create (100000, &m), 0);
  assert_int_equal (pc_blockmap_get (m, 5), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_set (m, 5, 0), 0);        /* pblock 0 ok */
  assert_int_equal (pc_blockmap_set (m, 99999, 42), 0);
  assert_int_equal (pc_blockmap_get (m, 5), 0);
  assert_int_equal (pc_blockmap_get (m, 99999), 42);
  assert_int_equal (pc_blockmap_count (m), 2);
  assert_int_equal (pc_blockmap_set (m, 100000, 1), -ERANGE);
  assert_int_equal (pc_blockmap_get (m, 100000), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_set (m, 5, 7), 0);        /* remap */
  assert_int_equal (pc_blockmap_count (m), 2);
  assert_int_equal (pc_blockmap_clear (m, 5), 7);
  assert_int_equal (pc_blockmap_clear (m, 5), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, 100000), 99999);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, 99999), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_verify (m), 0);
  pc_blockmap_destroy (m);
}

static void
test_huge_sparse (void **state)
{
  struct pc_blockmap *m;
  uint64_t n = UINT64_C (1) << 36;       /* 256 TiB of 4 KiB blocks */

  assert_int_equal (pc_blockmap_create (n, &m), 0);
  assert_int_equal (pc_blockmap_set (m, n - 1, 3), 0);
  assert_int_equal (pc_blockmap_set (m, 12345, 4), 0);
  assert_true (pc_blockmap_memory (m) < 200 * 1024);      /* tiny */
  assert_int_equal (pc_blockmap_next_mapped (m, 12346, n), n - 1);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, n), 12345);
  assert_int_equal (pc_blockmap_verify (m), 0);
  pc_blockmap_destroy (m);
}

struct th { struct pc_blockmap *m; uint64_t base; };

static void *
setter (void *arg)
{
  struct th *t = arg;
  for (uint64_t i = 0; i < 50000; i++)
    pc_blockmap_set (t->m, t->base + i * 4, t->base + i);
  return NULL;
}

static volatile int torn;

/* Lock-free reader: an entry is either unmapped or its final value. */
static void *
reader (void *arg)
{
  struct th *t = arg;
  for (int round = 0; round < 20; round++)
    for (uint64_t i = 0; i < 200000; i++) {
      uint64_t p = pc_blockmap_get (t->m, i);
      if (p != PC_NO_BLOCK && p != (i & 3) + i / 4)
        torn = 1;
    }
  return NULL;
}

static void
test_concurrent (void **state)
{
  struct pc_blockmap *m;
  pthread_t th[5];
  struct th t[5];

  assert_int_equal (pc_blockmap_create (200000, &m), 0);
  for (int i = 0; i < 4; i++) {
    t[i] = (struct th) { m, (uint64_t) i };
    pthread_create (&th[i], NULL, setter, &t[i]);
  }
  t[4] = (struct th) { m, 0 };
  pthread_create (&th[4], NULL, reader, &t[4]);
  for (int i = 0; i < 5; i++) pthread_join (th[i], NULL);
  assert_int_equal (torn, 0);
  assert_int_equal (pc_blockmap_count (m), 200000);
  for (uint64_t i = 0; i < 200000; i++)
    assert_int_equal (pc_blockmap_get (m, i), (i & 3) + i / 4);
  assert_int_equal (pc_blockmap_verify (m), 0);
  pc_blockmap_destroy (m);
}

static void
test_resize (void **state)
{
  struct pc_blockmap *m;

  assert_int_equal (pc_blockmap_create (1000, &m), 0);
  assert_int_equal (pc_blockmap_set (m, 900, 1), 0);
  assert_int_equal (pc_blockmap_resize (m, 500), -EBUSY);
  pc_blockmap_clear (m, 900);
  assert_int_equal (pc_blockmap_resize (m, 500), 0);
  assert_int_equal (pc_blockmap_set (m, 600, 1), -ERANGE);
  assert_int_equal (pc_blockmap_resize (m, UINT64_C (1) << 30), 0);
  assert_int_equal (pc_blockmap_set (m, (UINT64_C (1) << 30) - 1, 9), 0);
  assert_int_equal (pc_blockmap_get (m, (UINT64_C (1) << 30) - 1), 9);
  assert_int_equal (pc_blockmap_verify (m), 0);
  pc_blockmap_destroy (m);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_basic),
    cmocka_unit_test (test_huge_sparse),
    cmocka_unit_test (test_concurrent),
    cmocka_unit_test (test_resize),
  };
  return cmocka_run_group_tests_name ("blockmap", tests, NULL, NULL);
}
