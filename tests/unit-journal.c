/* Description: unit tests of journal transactions (lib/journal.c): round
 * trip of several transactions, a torn last transaction (damaged image,
 * damaged commit page, missing tail) is not applied while earlier ones
 * are, wrong sequence numbers end the chain, out-of-range page numbers and
 * transactions running past the journal end are rejected, apply errors
 * propagate, bad arguments are refused. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "punchcache/format.h"
#include "punchcache/journal.h"

#define JP 64                 /* journal pages */
#define MP 32                 /* metadata pages */

static uint8_t journal[JP * PC_PAGE_SIZE];
static uint32_t applied[256];
static unsigned napplied;

static int
record (void *opaque, uint32_t page_no, const void *image)
{
  if (opaque) return -EIO;
  assert_int_equal (pc_meta_page_check (image, page_no, NULL, 0), 0);
  applied[napplied++] = page_no;
  return 0;
}

/* Append a transaction of pages [first, first+n) at journal page *at. */
static void
put_txn (uint64_t *at, uint64_t seq, uint32_t first, uint32_t n)
{
  uint8_t *img = calloc (n, PC_PAGE_SIZE);
  uint32_t nos[16];

  for (uint32_t i = 0; i < n; i++) {
    nos[i] = first + i;
    memset (img + i * PC_PAGE_SIZE + 8, (int) (seq + i), 100);
    pc_meta_page_seal (img + i * PC_PAGE_SIZE, nos[i]);
  }
  assert_int_equal (pc_journal_encode (seq, n, nos, img,
                                       journal + *at * PC_PAGE_SIZE), 0);
  *at += n + 2;
  free (img);
}

static int
scan (uint64_t seq, struct pc_journal_scan_result *res)
{
  napplied = 0;
  return pc_journal_scan (journal, JP, 0, seq, MP, record, NULL, res);
}

static int
setup (void **state)
{
  uint64_t at = 0;

  memset (journal, 0, sizeof journal);
  put_txn (&at, 5, 0, 3);        /* pages 0..4  */
  put_txn (&at, 6, 10, 2);       /* pages 5..8  */
  put_txn (&at, 7, 4, 1);        /* pages 9..11 */
  return 0;
}

static void
test_round_trip (void **state)
{
  struct pc_journal_scan_result res;

  assert_int_equal (scan (5, &res), 0);
  assert_int_equal (res.ntxns, 3);
  assert_int_equal (res.npages, 6);
  assert_int_equal (res.next_seq, 8);
  assert_int_equal (res.next_page, 12);
  assert_int_equal (applied[3], 10);
}

static void
test_torn_image (void **state)
{
  struct pc_journal_scan_result res;

  journal[10 * PC_PAGE_SIZE + 50] ^= 0x40;     /* image of the last txn */
  assert_int_equal (scan (5, &res), 0);
  assert_int_equal (res.ntxns, 2);
  assert_int_equal (napplied, 5);
  assert_int_equal (res.next_seq, 7);
}

static void
test_torn_commit (void **state)
{
  struct pc_journal_scan_result res;

  journal[8 * PC_PAGE_SIZE + 30] ^= 1;          /* commit of txn 6 */
  assert_int_equal (scan (5, &res), 0);
  assert_int_equal (res.ntxns, 1);
  memset (journal + 8 * PC_PAGE_SIZE, 0, PC_PAGE_SIZE);   /* missing */
  assert_int_equal (scan (5, &res), 0);
  assert_int_equal (res.ntxns, 1);
}

static void
test_wrong_seq (void **state)
{
  struct pc_journal_scan_result res;

  assert_int_equal (scan (4, &res), 0);
  assert_int_equal (res.ntxns, 0);
  assert_int_equal (res.next_seq, 4);
}

static void
test_out_of_range_page (void **state)
{
  struct pc_journal_scan_result res;
  uint64_t at = 12;

  put_txn (&at, 8, MP - 1, 2);                  /* page MP is outside */
  assert_int_equal (scan (5, &res), 0);
  assert_int_equal (res.ntxns, 3);
}

static void
test_past_end (void **state)
{
  struct pc_journal_scan_result res;
  uint8_t small[6 * PC_PAGE_SIZE];

  /* The txn at page 5 (n=2 needs 4 pages) would run past a 6-page journal. */
  memcpy (small, journal, sizeof small);
  napplied = 0;
  assert_int_equal (pc_journal_scan (small, 6, 0, 5, MP, record, NULL, &res), 0);
  assert_int_equal (res.ntxns, 1);
}

static void
test_errors (void **state)
{
  struct pc_journal_scan_result res;
  uint32_t nos[2] = { 3, 3 };
  uint8_t img[2 * PC_PAGE_SIZE] = { 0 };

  assert_int_equal (pc_journal_scan (journal, JP, 0, 5, MP, record, (void *) 1, &res), -EIO);
  assert_int_equal (pc_journal_scan (journal, JP, JP, 5, MP, record, NULL, &res), -EINVAL);
  assert_int_equal (pc_journal_encode (1, 2, nos, img, journal), -EINVAL);
  assert_int_equal (pc_journal_encode (1, 0, nos, img, journal), -EINVAL);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup (test_round_trip, setup),
    cmocka_unit_test_setup (test_torn_image, setup),
    cmocka_unit_test_setup (test_torn_commit, setup),
    cmocka_unit_test_setup (test_wrong_seq, setup),
    cmocka_unit_test_setup (test_out_of_range_page, setup),
    cmocka_unit_test_setup (test_past_end, setup),
    cmocka_unit_test_setup (test_errors, setup),
  };
  return cmocka_run_group_tests_name ("journal", tests, NULL, NULL);
}
