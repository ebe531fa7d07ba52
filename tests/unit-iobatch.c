/* Description: unit tests of batched data I/O (lib/io/iobatch.c) on a real
 * pool-like file opened O_DIRECT where /tmp allows it, with both backends
 * (io_uring and system calls): round trips of batches larger than the ring
 * (B1, chunking), scatter reads, reads past the end of a sparse file
 * returning zeros and a real short completion (a read straddling the end
 * of the file: the kernel returns the part before it, the rest must read
 * as zeros, B2), the first error in op order (B3), alignment refused
 * before anything is issued, and the kernel refusing a submission (through
 * -Wl,--wrap=io_uring_submit): the thread falls back to system calls and
 * every op still completes, in this batch and the next.
 *
 * Teeth: with complete() taking a short result as success (op->result = 0
 * for any res >= 0), test_past_eof and (buffered) test_straddles_eof
 * failed; with the
 * ring kept after a refused submission (no tr->ok = false), the stale
 * SQEs left in it went out with the next batch and test_submit_refused
 * failed.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "punchcache/io.h"

#define PAGE 4096u
#define NOPS 150u                       /* more than the ring's 64 entries */

/* ---- wrapped liburing entry points ---- */

static int refuse_submit;               /* io_uring_submit fails this often */

int __real_io_uring_submit (struct io_uring *ring);
int __wrap_io_uring_submit (struct io_uring *ring);

int
__wrap_io_uring_submit (struct io_uring *ring)
{
  if (refuse_submit > 0) {
    refuse_submit--;
    return -EOPNOTSUPP;
  }
  return __real_io_uring_submit (ring);
}

/* ---- fixture ---- */

struct ctx {
  char dir[64], path[96];
  struct pc_io io;
  char *w, *r;                          /* NOPS pages each, aligned */
  struct iovec wiov[NOPS], riov[NOPS * 2];
  struct pc_io_op op[NOPS];
};

static int
open_backend (void **state, enum pc_io_backend mode, enum pc_io_direct direct)
{
  struct ctx *c = calloc (1, sizeof *c);
  const char *why;
  int fd;

  strcpy (c->dir, "/tmp/unit-iobatch.XXXXXX");
  assert_non_null (mkdtemp (c->dir));
  snprintf (c->path, sizeof c->path, "%s/pool", c->dir);
  fd = open (c->path, O_CREAT | O_RDWR, 0600);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, 4 * 1024 * 1024), 0);
  close (fd);
  assert_int_equal (pc_io_open (&c->io, c->path, false), 0);
  assert_int_equal (pc_io_open_data (&c->io, c->path, direct, &why), 0);
  assert_int_equal (pc_io_set_backend (&c->io, mode, &why), 0);
  if (mode == PC_IO_URING) assert_true (c->io.uring);
  assert_int_equal (posix_memalign ((void **) &c->w, PAGE, NOPS * PAGE), 0);
  assert_int_equal (posix_memalign ((void **) &c->r, PAGE, NOPS * PAGE), 0);
  for (unsigned i = 0; i < NOPS * PAGE; i++)
    c->w[i] = (char) (i * 7 + i / PAGE);
  refuse_submit = 0;
  *state = c;
  return 0;
}

static int setup_uring (void **s)
{ return open_backend (s, PC_IO_URING, PC_DIRECT_AUTO); }
static int setup_sync (void **s)
{ return open_backend (s, PC_IO_SYNC, PC_DIRECT_AUTO); }
/* Buffered: O_DIRECT reads zero the rest of the buffer past the end of
 * the file themselves (ext4), hiding a mishandled short read. */
static int setup_uring_buffered (void **s)
{ return open_backend (s, PC_IO_URING, PC_DIRECT_OFF); }

static int
teardown (void **state)
{
  struct ctx *c = *state;

  pc_io_close (&c->io);
  unlink (c->path);
  rmdir (c->dir);
  free (c->w);
  free (c->r);
  free (c);
  return 0;
}

/* Op i covers page i at a scattered pool offset (page (i * 37) % 1024). */
static uint64_t
op_off (unsigned i)
{
  return (uint64_t) ((i * 37) % 1024) * PAGE;
}

static int
write_all (struct ctx *c)
{
  for (unsigned i = 0; i < NOPS; i++) {
    c->wiov[i] = (struct iovec) { c->w + i * PAGE, PAGE };
    c->op[i] = (struct pc_io_op) { &c->wiov[i], 1, true, op_off (i), 7 };
  }
  return pc_io_data_batch (&c->io, c->op, NOPS);
}

/* Read back as two half-page iovecs per op (scatter). */
static int
read_all (struct ctx *c)
{
  memset (c->r, 0xee, NOPS * PAGE);
  for (unsigned i = 0; i < NOPS; i++) {
    c->riov[2 * i] = (struct iovec) { c->r + i * PAGE, PAGE / 2 };
    c->riov[2 * i + 1] = (struct iovec) { c->r + i * PAGE + PAGE / 2, PAGE / 2 };
    if (c->io.direct)                   /* O_DIRECT wants whole pages */
      c->op[i] = (struct pc_io_op) { &c->riov[2 * i], 1, false, op_off (i), 7 },
      c->riov[2 * i].iov_len = PAGE;
    else
      c->op[i] = (struct pc_io_op) { &c->riov[2 * i], 2, false, op_off (i), 7 };
  }
  return pc_io_data_batch (&c->io, c->op, NOPS);
}

static void
check_round_trip (struct ctx *c)
{
  assert_int_equal (write_all (c), 0);
  for (unsigned i = 0; i < NOPS; i++) assert_int_equal (c->op[i].result, 0);
  assert_int_equal (read_all (c), 0);
  for (unsigned i = 0; i < NOPS; i++) assert_int_equal (c->op[i].result, 0);
  assert_memory_equal (c->w, c->r, NOPS * PAGE);
}

static void
test_round_trip (void **state)
{
  check_round_trip (*state);
}

static void
test_past_eof (void **state)
{
  struct ctx *c = *state;
  struct iovec v[2] = { { c->r, PAGE }, { c->r + PAGE, PAGE } };
  struct pc_io_op op[2] = {
    { &v[0], 1, false, 0, 7 },
    { &v[1], 1, false, 64ull * 1024 * 1024, 7 },   /* past the end */
  };

  memset (c->r, 0xee, 2 * PAGE);
  assert_int_equal (pc_io_data_batch (&c->io, op, 2), 0);
  for (unsigned i = 0; i < 2 * PAGE; i++) assert_int_equal (c->r[i], 0);
}

static void
test_unaligned_refused (void **state)
{
  struct ctx *c = *state;
  struct iovec v = { c->r + 1, PAGE };
  struct pc_io_op op[2] = { { &c->wiov[0], 1, true, 0, 7 },
                            { &v, 1, false, 0, 7 } };

  if (!c->io.direct) skip ();
  c->wiov[0] = (struct iovec) { c->w, PAGE };
  assert_int_equal (pc_io_data_batch (&c->io, op, 2), -EINVAL);
}

static void
test_first_error (void **state)
{
  struct ctx *c = *state;
  struct pc_io ro;
  const char *why;
  int r;

  /* A read-only descriptor: every write fails with EBADF. */
  assert_int_equal (pc_io_open (&ro, c->path, true), 0);
  assert_int_equal (pc_io_open_data (&ro, c->path, PC_DIRECT_AUTO, &why), 0);
  assert_int_equal (pc_io_set_backend (&ro, c->io.uring ? PC_IO_URING
                                                        : PC_IO_SYNC, &why), 0);
  for (unsigned i = 0; i < 8; i++) {
    c->wiov[i] = (struct iovec) { c->w + i * PAGE, PAGE };
    c->op[i] = (struct pc_io_op) { &c->wiov[i], 1, true, op_off (i), 7 };
  }
  r = pc_io_data_batch (&ro, c->op, 8);
  assert_int_equal (r, -EBADF);
  for (unsigned i = 0; i < 8; i++) assert_int_equal (c->op[i].result, -EBADF);
  pc_io_close (&ro);
}

/* The last page of the file, then one past its end, in one op. */
static void
test_straddles_eof (void **state)
{
  struct ctx *c = *state;
  uint64_t last = 4 * 1024 * 1024 - PAGE;
  struct iovec w = { c->w, PAGE }, r[2] = { { c->r, PAGE }, { c->r + PAGE, PAGE } };
  struct pc_io_op op[2] = { { &w, 1, true, last, 7 }, { &w, 1, true, 0, 7 } };

  assert_int_equal (pc_io_data_batch (&c->io, op, 2), 0);
  memset (c->r, 0xee, 2 * PAGE);
  op[0] = (struct pc_io_op) { r, 2, false, last, 7 };
  op[1] = (struct pc_io_op) { &w, 1, true, 0, 7 };   /* a second op: a batch */
  assert_int_equal (pc_io_data_batch (&c->io, op, 2), 0);
  assert_memory_equal (c->r, c->w, PAGE);
  for (unsigned i = PAGE; i < 2 * PAGE; i++) assert_int_equal (c->r[i], 0);
}

static void
test_submit_refused (void **state)
{
  struct ctx *c = *state;

  refuse_submit = 1;                    /* the first submission of a batch */
  check_round_trip (c);                 /* this batch and the next one */
  assert_int_equal (refuse_submit, 0);
  check_round_trip (c);                 /* the thread is on the fallback */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_round_trip, setup_uring, teardown),
    cmocka_unit_test_setup_teardown (test_round_trip, setup_sync, teardown),
    cmocka_unit_test_setup_teardown (test_past_eof, setup_uring, teardown),
    cmocka_unit_test_setup_teardown (test_past_eof, setup_sync, teardown),
    cmocka_unit_test_setup_teardown (test_unaligned_refused, setup_uring,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_first_error, setup_uring, teardown),
    cmocka_unit_test_setup_teardown (test_first_error, setup_sync, teardown),
    cmocka_unit_test_setup_teardown (test_straddles_eof, setup_uring,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_straddles_eof, setup_uring_buffered,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_round_trip, setup_uring_buffered,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_straddles_eof, setup_sync,
                                     teardown),
    /* Last: it leaves this thread's ring torn down. */
    cmocka_unit_test_setup_teardown (test_submit_refused, setup_uring,
                                     teardown),
  };
  const char *why;

  if (pc_io_probe_uring (&why) < 0) {
    printf ("SKIP: io_uring unavailable here: %s\n", why);
    return 77;
  }
  return cmocka_run_group_tests_name ("iobatch", tests, NULL, NULL);
}
