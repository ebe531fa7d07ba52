/* Description: unit tests of the forward block map (lib/pool/blockmap.c): set,
 * get, clear, bounds and bad arguments; huge sparse maps (2^36 and 2^40
 * blocks) that stay a few hundred KiB and answer next_mapped fast; four
 * concurrent setters (then clearers) of interleaved entries, racing to
 * create the same nodes, with lock-free readers checking every value they
 * see and exact count/memory afterwards; resize grow, shrink, -EBUSY;
 * pc_blockmap_verify after every test (teardown).
 *
 * Every thread loop is bounded in count, and a watchdog (alarm) kills the
 * program if a next_mapped that fails to skip empty subtrees takes minutes.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/blockmap.h"

#define LEAF_BYTES (4096 * sizeof (uint64_t))   /* lib/pool/blockmap.c */
#define MID_BYTES (4096 * sizeof (void *))

struct ctx {
  struct pc_blockmap *map;
  size_t base_memory;           /* pc_blockmap_memory right after create */
};

static struct ctx *
ctx_new (void **state, uint64_t nblocks)
{
  struct ctx *c = calloc (1, sizeof *c);

  assert_non_null (c);
  assert_int_equal (pc_blockmap_create (nblocks, &c->map), 0);
  c->base_memory = pc_blockmap_memory (c->map);
  *state = c;
  return c;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  int r = 0;

  if (c == NULL) return 0;
  if (c->map) r = pc_blockmap_verify (c->map);
  pc_blockmap_destroy (c->map);
  free (c);
  return r == 0 ? 0 : -1;
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_bad_args (void **state)
{
  struct pc_blockmap *m = NULL;

  assert_int_equal (pc_blockmap_create (0, &m), -EINVAL);
  assert_int_equal (pc_blockmap_create ((UINT64_C (1) << 48) + 1, &m), -EINVAL);
  assert_null (m);
  pc_blockmap_destroy (NULL);
  *state = NULL;
}

static void
test_basic (void **state)
{
  struct ctx *c = ctx_new (state, 100000);
  struct pc_blockmap *m = c->map;

  assert_int_equal (pc_blockmap_nblocks (m), 100000);
  assert_int_equal (pc_blockmap_get (m, 5), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_clear (m, 5), PC_NO_BLOCK);   /* no leaf */
  assert_int_equal (pc_blockmap_set (m, 5, 0), 0);        /* pblock 0 ok */
  assert_int_equal (pc_blockmap_set (m, 99999, PC_NO_BLOCK - 1), 0);
  assert_int_equal (pc_blockmap_get (m, 5), 0);
  assert_int_equal (pc_blockmap_get (m, 4), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_get (m, 99999), PC_NO_BLOCK - 1);
  assert_int_equal (pc_blockmap_count (m), 2);
  assert_int_equal (pc_blockmap_set (m, 5, 7), 0);        /* remap */
  assert_int_equal (pc_blockmap_count (m), 2);
  assert_int_equal (pc_blockmap_clear (m, 5), 7);
  assert_int_equal (pc_blockmap_clear (m, 5), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_count (m), 1);
  assert_int_equal (pc_blockmap_verify (m), 0);
}

static void
test_out_of_range (void **state)
{
  struct ctx *c = ctx_new (state, 100000);
  struct pc_blockmap *m = c->map;

  assert_int_equal (pc_blockmap_set (m, 100000, 1), -ERANGE);
  assert_int_equal (pc_blockmap_set (m, UINT64_MAX, 1), -ERANGE);
  assert_int_equal (pc_blockmap_set (m, 1, PC_NO_BLOCK), -ERANGE);
  assert_int_equal (pc_blockmap_get (m, 100000), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_get (m, UINT64_MAX), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_clear (m, UINT64_MAX), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_count (m), 0);
  assert_int_equal (pc_blockmap_memory (m), c->base_memory);  /* nothing made */
}

static void
test_next_mapped (void **state)
{
  struct ctx *c = ctx_new (state, 100000);
  struct pc_blockmap *m = c->map;

  assert_int_equal (pc_blockmap_next_mapped (m, 0, 100000), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_set (m, 4095, 1), 0);     /* leaf edges */
  assert_int_equal (pc_blockmap_set (m, 4096, 2), 0);
  assert_int_equal (pc_blockmap_set (m, 99999, 3), 0);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, 100000), 4095);
  assert_int_equal (pc_blockmap_next_mapped (m, 4095, 4095), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_next_mapped (m, 4096, 100000), 4096);
  assert_int_equal (pc_blockmap_next_mapped (m, 4097, 100000), 99999);
  assert_int_equal (pc_blockmap_next_mapped (m, 4097, 99999), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, UINT64_MAX), 4095);
  assert_int_equal (pc_blockmap_next_mapped (m, 100000, UINT64_MAX), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_next_mapped (m, 5000, 10), PC_NO_BLOCK);
}

/* nblocks 2^36: two entries, far apart, cost a top array of 4096 pointers,
 * two mids and two leaves; next_mapped over the gap is fast. */
static void
test_huge_sparse (void **state)
{
  uint64_t n = UINT64_C (1) << 36;       /* 256 TiB of 4 KiB blocks */
  struct ctx *c = ctx_new (state, n);
  struct pc_blockmap *m = c->map;
  double t0;

  assert_int_equal (pc_blockmap_set (m, n - 1, 3), 0);
  assert_int_equal (pc_blockmap_set (m, 12345, 4), 0);
  assert_int_equal (pc_blockmap_memory (m),
                    c->base_memory + 2 * MID_BYTES + 2 * LEAF_BYTES);
  assert_true (pc_blockmap_memory (m) < 200 * 1024);      /* tiny */
  t0 = now_s ();
  for (int i = 0; i < 1000; i++) {
    assert_int_equal (pc_blockmap_next_mapped (m, 12346, n), n - 1);
    assert_int_equal (pc_blockmap_next_mapped (m, 12346, n - 1), PC_NO_BLOCK);
  }
  assert_true (now_s () - t0 < 5.0);     /* ~10 ms natively; valgrind-safe */
  assert_int_equal (pc_blockmap_next_mapped (m, 0, n), 12345);
  assert_int_equal (pc_blockmap_get (m, n - 1), 3);
}

/* nblocks 2^40 (4 PiB of 4 KiB blocks), one entry at the very end. */
static void
test_huge_sparse_2_40 (void **state)
{
  uint64_t n = UINT64_C (1) << 40;
  struct ctx *c = ctx_new (state, n);
  double t0;

  assert_int_equal (pc_blockmap_set (c->map, n - 1, 8), 0);
  assert_true (pc_blockmap_memory (c->map) < 1024 * 1024);
  t0 = now_s ();
  for (int i = 0; i < 100; i++)
    assert_int_equal (pc_blockmap_next_mapped (c->map, 0, n), n - 1);
  assert_true (now_s () - t0 < 5.0);
}

#define NSET 4
#define NENT 200000u            /* 49 leaves, all shared by the 4 setters */

struct th {
  struct pc_blockmap *m;
  uint64_t base;                /* setter/clearer: entries base, base+4, ... */
  int bad;                      /* reader: wrong values seen */
  int *stop;
};

/* The value entry i must hold while mapped. */
static uint64_t
expected (uint64_t i)
{
  return 1000000 + i * 3;
}

static void *
setter (void *arg)
{
  struct th *t = arg;
  for (uint64_t i = t->base; i < NENT; i += NSET)
    if (pc_blockmap_set (t->m, i, expected (i)) != 0)
      __atomic_store_n (&t->bad, 1, __ATOMIC_RELAXED);
  return NULL;
}

static void *
clearer (void *arg)
{
  struct th *t = arg;
  for (uint64_t i = t->base; i < NENT; i += NSET)
    if (pc_blockmap_clear (t->m, i) != expected (i))
      __atomic_store_n (&t->bad, 1, __ATOMIC_RELAXED);
  return NULL;
}

/* Lock-free reader: an entry is unmapped or holds its one value, and
 * next_mapped never returns an entry out of range. */
static void *
reader (void *arg)
{
  struct th *t = arg;
  for (int round = 0; round < 50 && !__atomic_load_n (t->stop, __ATOMIC_ACQUIRE);
       round++)
    for (uint64_t i = 0; i < NENT; i++) {
      uint64_t p = pc_blockmap_get (t->m, i);
      uint64_t nx = pc_blockmap_next_mapped (t->m, i, i + 64);
      if ((p != PC_NO_BLOCK && p != expected (i)) ||
          (nx != PC_NO_BLOCK && (nx < i || nx >= i + 64)))
        t->bad++;
    }
  return NULL;
}

static void
run_phase (struct pc_blockmap *m, void *(*fn) (void *))
{
  pthread_t th[NSET + 1];
  struct th t[NSET + 1];
  int stop = 0;

  for (int i = 0; i <= NSET; i++) {
    t[i] = (struct th) { .m = m, .base = (uint64_t) i, .stop = &stop };
    assert_int_equal (pthread_create (&th[i], NULL, i < NSET ? fn : reader,
                                      &t[i]), 0);
  }
  for (int i = 0; i < NSET; i++) pthread_join (th[i], NULL);
  __atomic_store_n (&stop, 1, __ATOMIC_RELEASE);
  pthread_join (th[NSET], NULL);
  for (int i = 0; i <= NSET; i++)
    assert_int_equal (t[i].bad, 0);
}

static void
test_concurrent (void **state)
{
  struct ctx *c = ctx_new (state, NENT);
  struct pc_blockmap *m = c->map;
  uint64_t nleaves = (NENT + 4095) / 4096;

  run_phase (m, setter);
  assert_int_equal (pc_blockmap_count (m), NENT);
  for (uint64_t i = 0; i < NENT; i++)
    assert_int_equal (pc_blockmap_get (m, i), expected (i));
  /* Losers of node-creation races freed theirs and did not count it. */
  assert_int_equal (pc_blockmap_memory (m),
                    c->base_memory + MID_BYTES + nleaves * LEAF_BYTES);
  assert_int_equal (pc_blockmap_verify (m), 0);
  run_phase (m, clearer);
  assert_int_equal (pc_blockmap_count (m), 0);
  assert_int_equal (pc_blockmap_next_mapped (m, 0, NENT), PC_NO_BLOCK);
}

static void
test_resize (void **state)
{
  struct ctx *c = ctx_new (state, 1000);
  struct pc_blockmap *m = c->map;
  uint64_t big = UINT64_C (1) << 30;

  assert_int_equal (pc_blockmap_set (m, 900, 1), 0);
  assert_int_equal (pc_blockmap_resize (m, 500), -EBUSY);
  assert_int_equal (pc_blockmap_resize (m, 901), 0);      /* 900 still fits */
  assert_int_equal (pc_blockmap_resize (m, 900), -EBUSY);
  assert_int_equal (pc_blockmap_clear (m, 900), 1);
  assert_int_equal (pc_blockmap_resize (m, 500), 0);
  assert_int_equal (pc_blockmap_nblocks (m), 500);
  assert_int_equal (pc_blockmap_set (m, 600, 1), -ERANGE);
  assert_int_equal (pc_blockmap_resize (m, 0), -EINVAL);
  assert_int_equal (pc_blockmap_resize (m, big), 0);      /* 64 top slots */
  assert_int_equal (pc_blockmap_get (m, 900), PC_NO_BLOCK);
  assert_int_equal (pc_blockmap_set (m, big - 1, 9), 0);
  assert_int_equal (pc_blockmap_set (m, 499, 10), 0);
  assert_int_equal (pc_blockmap_get (m, big - 1), 9);
  assert_int_equal (pc_blockmap_next_mapped (m, 500, big), big - 1);
  assert_int_equal (pc_blockmap_verify (m), 0);
  assert_int_equal (pc_blockmap_resize (m, 1000), -EBUSY);
  assert_int_equal (pc_blockmap_clear (m, big - 1), 9);
  assert_int_equal (pc_blockmap_resize (m, 1000), 0);     /* frees the far mid */
  assert_int_equal (pc_blockmap_memory (m),
                    c->base_memory + MID_BYTES + LEAF_BYTES);
  assert_int_equal (pc_blockmap_get (m, 499), 10);
  assert_int_equal (pc_blockmap_count (m), 1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown (test_bad_args, teardown),
    cmocka_unit_test_teardown (test_basic, teardown),
    cmocka_unit_test_teardown (test_out_of_range, teardown),
    cmocka_unit_test_teardown (test_next_mapped, teardown),
    cmocka_unit_test_teardown (test_huge_sparse, teardown),
    cmocka_unit_test_teardown (test_huge_sparse_2_40, teardown),
    cmocka_unit_test_teardown (test_concurrent, teardown),
    cmocka_unit_test_teardown (test_resize, teardown),
  };

  alarm (120);                  /* whole run: ~0.1 s, ~1 s under valgrind */
  return cmocka_run_group_tests_name ("blockmap", tests, NULL, NULL);
}
