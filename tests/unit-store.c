/* Description: unit tests of the store (lib/pool/store.c, lib/core/volume.c,
 * lib/pool/check.c) on real pool files: persistence, journal replay after a
 * simulated crash (the process "dies" without committing), repair of a torn
 * in-place metadata page, deferred reuse of freed blocks (I3b), ENOSPC and
 * recovery, reclaim of unreachable blocks, check finding damage.
 *
 * A "crash" is simulated by pc_store_free() without a final commit: it
 * drops RAM state and the lock exactly as kill -9 would, leaving on disk
 * only what the commit protocol made durable.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/pool/store-internal.h"

struct ctx {
  char dir[64];
  char path[96];
  struct pc_pool *pool;
  struct pc_volume *vol;
};

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  strcpy (c->dir, "/tmp/unit-store.XXXXXX");
  assert_non_null (mkdtemp (c->dir));
  snprintf (c->path, sizeof c->path, "%s/pool", c->dir);
  /* 64 blocks of 4 KiB. */
  assert_int_equal (pc_pool_create (c->path, 64 * 4096, 4096), 0);
  assert_int_equal (pc_pool_open (c->path, NULL, &c->pool), 0);
  assert_int_equal (pc_volume_add (c->pool, "v", 1024 * 1024), 0);
  assert_int_equal (pc_volume_open (c->pool, "v", &c->vol), 0);
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;
  char cmd[128];

  if (c->vol) pc_volume_close (c->vol);
  if (c->pool) pc_pool_close (c->pool);
  snprintf (cmd, sizeof cmd, "rm -rf %s", c->dir);
  if (system (cmd) != 0) return -1;
  free (c);
  return 0;
}

static void
crash (struct ctx *c)
{
  pc_volume_close (c->vol);
  c->vol = NULL;
  pc_store_free (c->pool);          /* no commit: like kill -9 */
  c->pool = NULL;
}

static void
reopen (struct ctx *c)
{
  assert_int_equal (pc_pool_open (c->path, NULL, &c->pool), 0);
  assert_int_equal (pc_volume_open (c->pool, "v", &c->vol), 0);
}

static void
fill (char *buf, size_t n, int seed)
{
  for (size_t i = 0; i < n; i++) buf[i] = (char) (seed + i * 7);
}

static void
assert_block (struct ctx *c, uint64_t off, int seed)
{
  char want[4096], got[4096];

  if (seed < 0) memset (want, 0, sizeof want);
  else fill (want, sizeof want, seed);
  assert_int_equal (pc_read (c->vol, got, sizeof got, off), 0);
  assert_memory_equal (got, want, sizeof want);
}

static void
write_block (struct ctx *c, uint64_t off, int seed)
{
  char buf[4096];

  fill (buf, sizeof buf, seed);
  assert_int_equal (pc_write (c->vol, buf, sizeof buf, off, 0), 0);
}

static uint64_t
pblock_of (struct ctx *c, uint64_t lblock)
{
  return pc_blockmap_get (c->pool->vols[c->vol->slot].map, lblock);
}

static void
test_persist_clean_close (void **state)
{
  struct ctx *c = *state;

  write_block (c, 0, 1);
  write_block (c, 5 * 4096, 2);
  pc_volume_close (c->vol);
  assert_int_equal (pc_pool_close (c->pool), 0);
  reopen (c);
  assert_block (c, 0, 1);
  assert_block (c, 5 * 4096, 2);
  assert_block (c, 4096, -1);
}

static void
test_flushed_survives_crash (void **state)
{
  struct ctx *c = *state;

  write_block (c, 0, 3);
  assert_int_equal (pc_pool_flush (c->pool), 0);
  write_block (c, 4096, 4);             /* not flushed */
  crash (c);
  reopen (c);
  assert_block (c, 0, 3);               /* replayed from the journal */
  assert_block (c, 4096, -1);           /* lost, reads zeros, not garbage */
}

static void
test_torn_page_repaired (void **state)
{
  struct ctx *c = *state;
  char junk[PC_PAGE_SIZE];
  uint64_t off;
  int fd;

  write_block (c, 0, 5);
  assert_int_equal (pc_pool_flush (c->pool), 0);
  off = c->pool->sb.meta_offset + (uint64_t) pc_rmap_page_of (0) * PC_PAGE_SIZE;
  crash (c);
  memset (junk, 0x5a, sizeof junk);     /* a torn in-place write */
  fd = open (c->path, O_WRONLY);
  assert_true (fd >= 0);
  assert_int_equal (pwrite (fd, junk, 512, (off_t) off), 512);
  close (fd);
  reopen (c);
  assert_block (c, 0, 5);
}

static void
test_freed_block_reused_only_after_commit (void **state)
{
  struct ctx *c = *state;
  uint64_t p0;

  write_block (c, 0, 6);
  p0 = pblock_of (c, 0);
  assert_int_equal (pc_pool_flush (c->pool), 0);
  assert_int_equal (pc_trim (c->vol, 4096, 0, 0), 0);
  assert_block (c, 0, -1);
  write_block (c, 10 * 4096, 7);        /* before the freeing is durable */
  assert_int_not_equal (pblock_of (c, 10), p0);
  assert_int_equal (pc_pool_flush (c->pool), 0);
  write_block (c, 11 * 4096, 8);        /* now lowest-first reuses p0 */
  assert_int_equal (pblock_of (c, 11), p0);
  assert_block (c, 10 * 4096, 7);
  assert_block (c, 11 * 4096, 8);
}

static void
count_problem (void *opaque, const char *msg)
{
  (*(int *) opaque)++;
}

/* Prepared blocks (lib/pool/prepared.c, O_DIRECT + ZERO_RANGE only): the first
 * allocation zeroes a run of free blocks and keeps the rest; they count as
 * free, read as zeros under a partial write, are used lowest first, and
 * none is left in use after a close (the pool checks clean), whose host
 * space the close gives back (at least half of it: ext4 may leave a few
 * zeroed blocks written instead of unwritten).  Teeth: without
 * pc_pool_release_prepared (then pc_volume_release_prepared) in pc_pool_close, the st_blocks check failed. */
static void
test_prepared_blocks (void **state)
{
  struct ctx *c = *state;
  struct pc_pool_info in;
  char part[1024], got[4096];
  struct stat before, after;
  int n = 0;

  if (!c->pool->io.direct || !c->pool->io.can_zero_range) skip ();
  fill (part, sizeof part, 5);
  assert_int_equal (pc_write (c->vol, part, sizeof part, 1024, 0), 0);
  assert_int_equal (pc_pool_get_info (c->pool, &in), 0);
  assert_int_equal (in.used_blocks, 1);
  assert_int_equal (in.prepared_blocks, 63);   /* the whole 64-block pool */
  assert_int_equal (in.free_blocks, 63);
  assert_int_equal (pc_read (c->vol, got, sizeof got, 0), 0);
  for (unsigned i = 0; i < sizeof got; i++)
    assert_int_equal (got[i], i >= 1024 && i < 2048 ? part[i - 1024] : 0);
  write_block (c, 5 * 4096, 6);
  assert_int_equal (pblock_of (c, 5), pblock_of (c, 0) + 1);  /* lowest */
  assert_int_equal (pc_pool_get_info (c->pool, &in), 0);
  assert_int_equal (in.used_blocks, 2);
  assert_int_equal (in.prepared_blocks, 62);
  assert_int_equal (stat (c->path, &before), 0);
  pc_volume_close (c->vol);
  assert_int_equal (pc_pool_close (c->pool), 0);
  c->pool = NULL;
  c->vol = NULL;
  /* The close punched the 62 prepared blocks: host space came back. */
  assert_int_equal (stat (c->path, &after), 0);
  assert_true ((before.st_blocks - after.st_blocks) * 512 >= 32 * 4096);
  assert_int_equal (pc_pool_check (c->path, count_problem, &n), 0);
  reopen (c);
  assert_int_equal (pc_pool_get_info (c->pool, &in), 0);
  assert_int_equal (in.used_blocks, 2);
  assert_int_equal (in.prepared_blocks, 0);
  assert_block (c, 5 * 4096, 6);
}

static void
test_enospc_and_recovery (void **state)
{
  struct ctx *c = *state;
  char buf[4096];
  uint64_t i;
  int r = 0;

  fill (buf, sizeof buf, 9);
  for (i = 0; i < 200 && r == 0; i++)
    r = pc_write (c->vol, buf, sizeof buf, i * 4096, 0);
  assert_int_equal (r, -ENOSPC);
  assert_int_equal (i - 1, 64);         /* exactly the pool's 64 blocks */
  assert_non_null (strstr (pc_last_error (), "full"));
  assert_block (c, 0, 9);               /* nothing else broke */
  assert_int_equal (pc_trim (c->vol, 4096 * 4, 0, 0), 0);
  /* No FLUSH: a full pool commits the waiting frees itself (SPEC §3). */
  assert_int_equal (pc_write (c->vol, buf, sizeof buf, 100 * 4096, 0), 0);
  assert_block (c, 100 * 4096, 9);
}

static void
test_odd_size_last_block_freed (void **state)
{
  struct ctx *c = *state;
  struct pc_volume *odd;
  char buf[4096 + 1024];

  /* 1 block + 1 KiB: the last block is partial but wholly the volume's. */
  assert_int_equal (pc_volume_add (c->pool, "odd", sizeof buf), 0);
  assert_int_equal (pc_volume_open (c->pool, "odd", &odd), 0);
  fill (buf, sizeof buf, 11);
  assert_int_equal (pc_write (odd, buf, sizeof buf, 0, 0), 0);
  assert_int_equal (pc_blockmap_count (c->pool->vols[odd->slot].map), 2);
  assert_int_equal (pc_trim (odd, sizeof buf, 0, 0), 0);
  assert_int_equal (pc_blockmap_count (c->pool->vols[odd->slot].map), 0);
  assert_int_equal (pc_read (odd, buf, sizeof buf, 0), 0);
  for (size_t i = 0; i < sizeof buf; i++) assert_int_equal (buf[i], 0);
  pc_volume_close (odd);
}

static void
test_unreachable_reclaimed (void **state)
{
  struct ctx *c = *state;
  struct pc_pool_info info;

  /* An owner entry for slot 7 (no such volume): an interrupted remove. */
  assert_int_equal (pc_alloc_mark_used (c->pool->alloc, 40), 0);
  assert_int_equal (pc_store_set_owner (c->pool, 40, pc_rmap_make (7, 3)), 0);
  assert_int_equal (pc_pool_flush (c->pool), 0);
  crash (c);
  reopen (c);
  assert_int_equal (pc_pool_get_info (c->pool, &info), 0);
  assert_int_equal (info.used_blocks, 0);
}

static void
test_check_clean_and_damaged (void **state)
{
  struct ctx *c = *state;
  char junk[64];
  uint64_t off;
  int n = 0, fd;

  write_block (c, 0, 10);
  off = c->pool->sb.meta_offset + (uint64_t) pc_rmap_page_of (0) * PC_PAGE_SIZE;
  pc_volume_close (c->vol); c->vol = NULL;
  assert_int_equal (pc_pool_close (c->pool), 0); c->pool = NULL;
  assert_int_equal (pc_pool_check (c->path, count_problem, &n), 0);
  assert_int_equal (n, 0);
  memset (junk, 0xff, sizeof junk);
  fd = open (c->path, O_WRONLY);
  assert_int_equal (pwrite (fd, junk, sizeof junk, (off_t) off + 100), 64);
  close (fd);
  assert_true (pc_pool_check (c->path, count_problem, &n) > 0);
  assert_true (n > 0);
  assert_int_equal (pc_pool_open (c->path, NULL, &c->pool), -EUCLEAN);
  assert_non_null (strstr (pc_last_error (), "damaged"));
  c->pool = NULL;
}

static void
test_second_opener_refused (void **state)
{
  struct ctx *c = *state;
  struct pc_pool *p2;

  assert_int_equal (pc_pool_open (c->path, NULL, &p2), -EBUSY);
  assert_non_null (strstr (pc_last_error (), "in use"));
}

static void
test_out_of_range (void **state)
{
  struct ctx *c = *state;
  char buf[16];

  assert_int_equal (pc_read (c->vol, buf, 16, 1024 * 1024 - 8), -EINVAL);
  assert_int_equal (pc_write (c->vol, buf, 16, UINT64_MAX - 4, 0), -EINVAL);
  assert_int_equal (pc_trim (c->vol, 0, 0, 0), -EINVAL);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_persist_clean_close, setup, teardown),
    cmocka_unit_test_setup_teardown (test_flushed_survives_crash, setup, teardown),
    cmocka_unit_test_setup_teardown (test_torn_page_repaired, setup, teardown),
    cmocka_unit_test_setup_teardown (test_freed_block_reused_only_after_commit, setup, teardown),
    cmocka_unit_test_setup_teardown (test_prepared_blocks, setup, teardown),
    cmocka_unit_test_setup_teardown (test_enospc_and_recovery, setup, teardown),
    cmocka_unit_test_setup_teardown (test_odd_size_last_block_freed, setup, teardown),
    cmocka_unit_test_setup_teardown (test_unreachable_reclaimed, setup, teardown),
    cmocka_unit_test_setup_teardown (test_check_clean_and_damaged, setup, teardown),
    cmocka_unit_test_setup_teardown (test_second_opener_refused, setup, teardown),
    cmocka_unit_test_setup_teardown (test_out_of_range, setup, teardown),
  };
  return cmocka_run_group_tests_name ("store", tests, NULL, NULL);
}
