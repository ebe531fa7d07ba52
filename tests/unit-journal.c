/* Description: unit tests of journal transactions (lib/pool/journal.c): round
 * trip of several transactions (from tail 0 and from a later tail); a torn
 * last transaction (a damaged image, commit page or descriptor, a missing
 * commit, a journal truncated inside it) is not applied at all while the
 * earlier ones are; every single-byte corruption of a transaction drops
 * it; wrong or stale sequence numbers end the chain; page numbers out of
 * range, not increasing, or not matching their image are rejected even
 * when every checksum is right; a transaction running past the journal end
 * is rejected; apply errors propagate; bad arguments are refused. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"
#include "punchcache/journal.h"

#define P PC_PAGE_SIZE
#define JP 64                 /* journal pages */
#define MP 32                 /* metadata pages */

struct ctx {
  uint8_t *journal;           /* JP pages, its own allocation so that ASan
                                 sees any read past its end */
  uint64_t at;                /* next free journal page */
  uint32_t applied[JP];       /* page numbers, in apply order */
  uint8_t first_byte[JP];     /* byte 8 of each applied image */
  unsigned napplied;
  unsigned fail_at;           /* apply fails (-EIO) at this call; 0 never */
  struct pc_journal_scan_result res;
};

static int
record (void *opaque, uint32_t page_no, const void *image)
{
  struct ctx *c = opaque;

  if (c->fail_at && c->napplied + 1 == c->fail_at)
    return -EIO;
  assert_true (c->napplied < JP);
  assert_int_equal (pc_meta_page_check (image, page_no, NULL, 0), 0);
  c->first_byte[c->napplied] = ((const uint8_t *) image)[8];
  c->applied[c->napplied++] = page_no;
  return 0;
}

static int
count (void *opaque, uint32_t page_no, const void *image)
{
  return 0;
}

/* Append a transaction of the given pages at c->at; image i's payload is
 * filled with byte (seq * 16 + i). */
static void
put_txn_pages (struct ctx *c, uint64_t seq, uint32_t n, const uint32_t *nos)
{
  uint8_t *img = calloc (n, P);

  assert_non_null (img);
  for (uint32_t i = 0; i < n; i++) {
    memset (img + (size_t) i * P + 8, (int) (seq * 16 + i), 100);
    pc_meta_page_seal (img + (size_t) i * P, nos[i]);
  }
  assert_true (c->at + n + 2 <= JP);
  assert_int_equal (pc_journal_encode (seq, n, nos, img,
                                       c->journal + c->at * P), 0);
  c->at += n + 2;
  free (img);
}

/* Pages [first, first+n). */
static void
put_txn (struct ctx *c, uint64_t seq, uint32_t first, uint32_t n)
{
  uint32_t nos[16];

  for (uint32_t i = 0; i < n; i++) nos[i] = first + i;
  put_txn_pages (c, seq, n, nos);
}

static int
scan_from (struct ctx *c, uint64_t jp, uint64_t tail, uint64_t seq)
{
  c->napplied = 0;
  return pc_journal_scan (c->journal, jp, tail, seq, MP, record, c, &c->res);
}

static int
scan (struct ctx *c, uint64_t seq)
{
  return scan_from (c, JP, 0, seq);
}

/* Recompute every checksum of the transaction at page t (after a test
 * altered a field), so that only the field check can reject it. */
static void
reseal_txn (struct ctx *c, uint64_t t)
{
  uint8_t *d = c->journal + t * P;
  uint32_t n = pc_get_le32 (d + 16);
  uint8_t *k = d + ((size_t) n + 1) * P;

  pc_put_le32 (d + 20, pc_page_crc_without (d, 20));
  pc_put_le32 (k + 24, pc_crc32c (0, d, ((size_t) n + 1) * P));
  pc_put_le32 (k + 20, pc_page_crc_without (k, 20));
}

/* Rewrite the page list of the transaction at t, reseal its images for
 * their new numbers and recompute every checksum: a transaction that is
 * well-formed except for what its list says. */
static void
relist (struct ctx *c, uint64_t t, uint32_t n, const uint32_t *nos)
{
  uint8_t *d = c->journal + t * P;

  for (uint32_t i = 0; i < n; i++) {
    pc_put_le32 (d + 24 + 4 * i, nos[i]);
    pc_meta_page_seal (d + ((size_t) i + 1) * P, nos[i]);
  }
  reseal_txn (c, t);
}

/* Journal: seq 5 pages 0..2 at 0..4; seq 6 pages 10,11 at 5..8; seq 7
 * page 4 at 9..11. */
static void
build (struct ctx *c)
{
  uint8_t *j = c->journal;

  memset (c, 0, sizeof *c);
  memset (j, 0, (size_t) JP * P);
  c->journal = j;
  put_txn (c, 5, 0, 3);
  put_txn (c, 6, 10, 2);
  put_txn (c, 7, 4, 1);
}

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  if (c == NULL || (c->journal = malloc ((size_t) JP * P)) == NULL) {
    free (c);
    return -1;
  }
  *state = c;
  build (c);
  return 0;
}

static int
teardown (void **state)
{
  struct ctx *c = *state;

  free (c->journal);
  free (c);
  return 0;
}

static void
test_round_trip (void **state)
{
  struct ctx *c = *state;
  static const uint32_t want[] = { 0, 1, 2, 10, 11, 4 };
  static const uint8_t bytes[] = { 80, 81, 82, 96, 97, 112 };

  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
  assert_int_equal (c->res.npages, 6);
  assert_int_equal (c->res.next_seq, 8);
  assert_int_equal (c->res.next_page, 12);
  assert_int_equal (c->napplied, 6);
  assert_memory_equal (c->applied, want, sizeof want);
  assert_memory_equal (c->first_byte, bytes, sizeof bytes);
  /* Starting at the second transaction. */
  assert_int_equal (scan_from (c, JP, 5, 6), 0);
  assert_int_equal (c->res.ntxns, 2);
  assert_int_equal (c->applied[0], 10);
  assert_int_equal (c->res.next_page, 12);
  /* Nothing at the tail: a clean, empty result. */
  assert_int_equal (scan_from (c, JP, JP - 1, 8), 0);
  assert_int_equal (c->res.ntxns, 0);
  assert_int_equal (c->res.next_page, JP - 1);
  assert_int_equal (c->res.next_seq, 8);
}

static void
test_fills_to_the_end (void **state)
{
  struct ctx *c = *state;

  c->at = 12;
  put_txn (c, 8, 20, 11);                      /* pages 12..24 */
  while (c->at + 3 <= JP)
    put_txn (c, 9 + (c->at - 25) / 3, 1, 1);
  assert_int_equal (c->at, JP);                /* the last ends exactly at JP */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.next_page, JP);
  assert_int_equal (c->res.ntxns, 4 + (JP - 25) / 3);
}

static void
test_torn_image (void **state)
{
  struct ctx *c = *state;

  c->at = 12;
  put_txn (c, 8, 20, 3);                       /* pages 12..16 */
  c->journal[15 * P + 50] ^= 0x40;             /* its last image */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
  assert_int_equal (c->napplied, 6);           /* none of pages 20..22 */
  assert_int_equal (c->res.next_seq, 8);
  assert_int_equal (c->res.next_page, 12);
}

static void
test_torn_commit (void **state)
{
  struct ctx *c = *state;

  c->journal[8 * P + 30] ^= 1;                 /* commit of seq 6 */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  assert_int_equal (c->napplied, 3);
  memset (c->journal + 8 * P, 0, P);           /* never written */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  assert_int_equal (c->res.next_page, 5);
  assert_int_equal (c->res.next_seq, 6);
}

static void
test_torn_descriptor (void **state)
{
  struct ctx *c = *state;

  c->journal[5 * P + 3000] ^= 1;               /* unused area, crc covers it */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
}

/* Every single-byte corruption of the last transaction drops it, and only
 * it. */
static void
test_every_byte (void **state)
{
  struct ctx *c = *state;
  uint64_t first = 9 * P, end = 12 * P;
  unsigned dropped = 0;

  for (uint64_t i = first; i < end; i++) {
    c->journal[i] ^= (uint8_t) (1u << (i % 8));
    assert_int_equal (scan (c, 5), 0);
    dropped += c->res.ntxns == 2 && c->napplied == 5;
    c->journal[i] ^= (uint8_t) (1u << (i % 8));
  }
  assert_int_equal (dropped, end - first);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
}

static void
test_truncated (void **state)
{
  struct ctx *c = *state;

  /* A journal that ends inside the third transaction (pages 9..11). */
  for (uint64_t jp = 9; jp < 12; jp++) {
    assert_int_equal (scan_from (c, jp, 0, 5), 0);
    assert_int_equal (c->res.ntxns, 2);
    assert_int_equal (c->res.next_page, 9);
  }
  assert_int_equal (scan_from (c, 12, 0, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
}

static void
test_past_end (void **state)
{
  struct ctx *c = *state;
  uint64_t t = JP - 3;

  /* A descriptor near the end whose page count (2, resealed) would run one
   * page past the journal: rejected without reading beyond it (ASan). */
  c->at = t;
  put_txn (c, 8, 1, 1);
  pc_put_le32 (c->journal + t * P + 16, 2);
  pc_put_le32 (c->journal + t * P + 24 + 4, 2);
  pc_put_le32 (c->journal + t * P + 20,
               pc_page_crc_without (c->journal + t * P, 20));
  assert_int_equal (scan_from (c, JP, t, 8), 0);
  assert_int_equal (c->res.ntxns, 0);
  /* The largest page count from the last page. */
  memset (c->journal + (JP - 1) * P, 0, P);
  memcpy (c->journal + (JP - 1) * P, PC_JDESC_MAGIC, 8);
  pc_put_le64 (c->journal + (JP - 1) * P + 8, 8);
  pc_put_le32 (c->journal + (JP - 1) * P + 16, PC_TXN_MAX_PAGES);
  pc_put_le32 (c->journal + (JP - 1) * P + 20,
               pc_page_crc_without (c->journal + (JP - 1) * P, 20));
  assert_int_equal (scan_from (c, JP, JP - 1, 8), 0);
  assert_int_equal (c->res.ntxns, 0);
}

static void
test_wrong_seq (void **state)
{
  struct ctx *c = *state;

  assert_int_equal (scan (c, 4), 0);
  assert_int_equal (c->res.ntxns, 0);
  assert_int_equal (c->res.next_seq, 4);
  assert_int_equal (c->res.next_page, 0);
  assert_int_equal (scan (c, 6), 0);
  assert_int_equal (c->res.ntxns, 0);
  /* A stale transaction (an older seq) after the chain ends it. */
  c->at = 12;
  put_txn (c, 3, 1, 1);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
  /* A gap in the sequence in the middle ends the chain there. */
  c->at = 5;
  put_txn (c, 7, 10, 2);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  /* The commit page's seq must match too (resealed). */
  c->at = 5;
  put_txn (c, 6, 10, 2);
  pc_put_le64 (c->journal + 8 * P + 8, 7);
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
}

static void
test_page_numbers (void **state)
{
  struct ctx *c = *state;
  uint32_t edge[2] = { MP - 2, MP - 1 }, out[2] = { MP - 1, MP };

  c->at = 12;
  put_txn_pages (c, 8, 2, edge);               /* the last two: fine */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 4);
  c->at = 12;
  put_txn_pages (c, 8, 2, out);                /* page MP is outside */
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
  assert_int_equal (c->napplied, 6);           /* not even page MP-1 */
  /* Lists rewritten with images and every checksum to match: only the
   * list checks can reject them. */
  {
    static const struct { uint32_t nos[2]; uint64_t ntxns; } cases[] = {
      { { 10, 12 }, 3 }, { { 0, MP - 1 }, 3 },          /* fine */
      { { 11, 10 }, 1 }, { { 10, 10 }, 1 },              /* not increasing */
      { { 10, MP }, 1 }, { { 10, UINT32_MAX }, 1 },      /* out of range */
      { { 0, 0 }, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      build (c);
      relist (c, 5, 2, cases[i].nos);
      assert_int_equal (scan (c, 5), 0);
      if (c->res.ntxns != cases[i].ntxns)
        fail_msg ("list case %zu: %" PRIu64 " transactions applied", i,
                  c->res.ntxns);
    }
  }
  /* Increasing, but image 2 was sealed for page 11, not 12. */
  build (c);
  pc_put_le32 (c->journal + 5 * P + 28, 12);
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
}

/* Each check must stand on its own, not only behind another one. */
static void
test_each_check (void **state)
{
  struct ctx *c = *state;
  uint8_t *d = c->journal + 5 * P, *k = c->journal + 8 * P;

  /* The descriptor's seq is wrong; the commit's is right (resealed). */
  pc_put_le64 (d + 8, 7);
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  /* An image replaced by another valid image of the same page (an old
   * copy from a reused journal): only the commit's images crc sees it. */
  build (c);
  memset (d + P + 8, 0x5a, 64);
  pc_meta_page_seal (d + P, 10);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  /* The descriptor changed and the commit recomputed, but the
   * descriptor's own crc left stale. */
  build (c);
  d[3000] ^= 1;
  pc_put_le32 (k + 24, pc_crc32c (0, d, 3 * P));
  pc_put_le32 (k + 20, pc_page_crc_without (k, 20));
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  /* The commit page's own crc. */
  build (c);
  k[2000] ^= 1;
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  /* The commit magic and the descriptor magic (resealed). */
  build (c);
  k[0] = 'X';
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
  build (c);
  d[7] = '2';
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
}

/* A well-formed transaction of zero pages (descriptor, commit): rejected,
 * the encoder never writes one. */
static void
test_empty_txn (void **state)
{
  struct ctx *c = *state;
  uint8_t *d = c->journal + 12 * P, *k = d + P;

  memcpy (d, PC_JDESC_MAGIC, 8);
  pc_put_le64 (d + 8, 8);
  memcpy (k, PC_JCOMMIT_MAGIC, 8);
  pc_put_le64 (k + 8, 8);
  reseal_txn (c, 12);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 3);
  assert_int_equal (c->res.next_page, 12);
}

/* A well-formed transaction of PC_TXN_MAX_PAGES + 1 (all-zero, valid)
 * images, in a journal big enough to hold it: rejected for its size. */
static void
test_too_many_pages (void **state)
{
  uint32_t n = PC_TXN_MAX_PAGES + 1;
  size_t jp = (size_t) n + 2;
  uint8_t *j = calloc (jp, P);
  struct pc_journal_scan_result res;

  assert_non_null (j);
  memcpy (j, PC_JDESC_MAGIC, 8);
  pc_put_le64 (j + 8, 1);
  pc_put_le32 (j + 16, n);
  for (uint32_t i = 0; i < n && 24 + 4 * i + 4 <= P; i++)
    pc_put_le32 (j + 24 + 4 * i, i);
  pc_put_le32 (j + 20, pc_page_crc_without (j, 20));
  memcpy (j + (jp - 1) * P, PC_JCOMMIT_MAGIC, 8);
  pc_put_le64 (j + (jp - 1) * P + 8, 1);
  pc_put_le32 (j + (jp - 1) * P + 16, n);
  pc_put_le32 (j + (jp - 1) * P + 24, pc_crc32c (0, j, (jp - 1) * P));
  pc_put_le32 (j + (jp - 1) * P + 20, pc_page_crc_without (j + (jp - 1) * P, 20));
  assert_int_equal (pc_journal_scan (j, jp, 0, 1, 2 * n, count, NULL, &res), 0);
  assert_int_equal (res.ntxns, 0);
  free (j);
}

static void
test_page_counts (void **state)
{
  struct ctx *c = *state;
  static const uint32_t bad[] = { 0, 1, 3, PC_TXN_MAX_PAGES + 1, UINT32_MAX };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    build (c);
    pc_put_le32 (c->journal + 5 * P + 16, bad[i]);   /* descriptor says so */
    pc_put_le32 (c->journal + 5 * P + 20,
                 pc_page_crc_without (c->journal + 5 * P, 20));
    assert_int_equal (scan (c, 5), 0);
    assert_int_equal (c->res.ntxns, 1);
  }
  /* The commit page disagrees with the descriptor (resealed). */
  build (c);
  pc_put_le32 (c->journal + 8 * P + 16, 3);
  reseal_txn (c, 5);
  assert_int_equal (scan (c, 5), 0);
  assert_int_equal (c->res.ntxns, 1);
}

static void
test_apply_error (void **state)
{
  struct ctx *c = *state;

  c->fail_at = 5;                              /* 2nd page of seq 6 */
  assert_int_equal (scan (c, 5), -EIO);
  assert_int_equal (c->napplied, 4);
  c->fail_at = 1;
  assert_int_equal (scan (c, 5), -EIO);
  assert_int_equal (c->napplied, 0);
}

static void
test_bad_arguments (void **state)
{
  struct ctx *c = *state;
  uint32_t same[2] = { 3, 3 }, down[2] = { 4, 3 }, ok[2] = { 3, 4 };
  uint8_t *img = calloc (PC_TXN_MAX_PAGES + 1, P);
  uint32_t *many = calloc (PC_TXN_MAX_PAGES + 1, sizeof *many);
  uint8_t *buf = malloc (pc_journal_txn_bytes (PC_TXN_MAX_PAGES + 1));

  assert_non_null (img); assert_non_null (many); assert_non_null (buf);
  assert_int_equal (scan_from (c, JP, JP, 5), -EINVAL);
  assert_int_equal (scan_from (c, JP, UINT64_MAX, 5), -EINVAL);
  assert_int_equal (pc_journal_scan (c->journal, 0, 0, 5, MP, record, c, &c->res), -EINVAL);
  assert_int_equal (pc_journal_encode (1, 0, ok, img, buf), -EINVAL);
  assert_int_equal (pc_journal_encode (1, 2, same, img, buf), -EINVAL);
  assert_int_equal (pc_journal_encode (1, 2, down, img, buf), -EINVAL);
  /* Zero images are valid pages; an image sealed for another number or
   * damaged is not, and would be dropped at replay. */
  assert_int_equal (pc_journal_encode (1, 2, ok, img, buf), 0);
  pc_meta_page_seal (img, 4);
  assert_int_equal (pc_journal_encode (1, 2, ok, img, buf), -EINVAL);
  pc_meta_page_seal (img, 3);
  img[100] ^= 1;
  assert_int_equal (pc_journal_encode (1, 2, ok, img, buf), -EINVAL);
  img[100] ^= 1;
  assert_int_equal (pc_journal_encode (1, 2, ok, img, buf), 0);
  /* The largest transaction encodes; one more page does not. */
  memset (img, 0, (size_t) (PC_TXN_MAX_PAGES + 1) * P);
  for (uint32_t i = 0; i <= PC_TXN_MAX_PAGES; i++) many[i] = i;
  assert_int_equal (pc_journal_encode (1, PC_TXN_MAX_PAGES, many, img, buf), 0);
  assert_int_equal (pc_journal_encode (1, PC_TXN_MAX_PAGES + 1, many, img, buf), -EINVAL);
  assert_int_equal (pc_journal_scan (buf, PC_TXN_MAX_PAGES + 2, 0, 1,
                                     PC_TXN_MAX_PAGES, count, NULL, &c->res), 0);
  assert_int_equal (c->res.ntxns, 1);
  assert_int_equal (c->res.npages, PC_TXN_MAX_PAGES);
  free (img); free (many); free (buf);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_round_trip, setup, teardown),
    cmocka_unit_test_setup_teardown (test_fills_to_the_end, setup, teardown),
    cmocka_unit_test_setup_teardown (test_torn_image, setup, teardown),
    cmocka_unit_test_setup_teardown (test_torn_commit, setup, teardown),
    cmocka_unit_test_setup_teardown (test_torn_descriptor, setup, teardown),
    cmocka_unit_test_setup_teardown (test_every_byte, setup, teardown),
    cmocka_unit_test_setup_teardown (test_truncated, setup, teardown),
    cmocka_unit_test_setup_teardown (test_past_end, setup, teardown),
    cmocka_unit_test_setup_teardown (test_wrong_seq, setup, teardown),
    cmocka_unit_test_setup_teardown (test_page_numbers, setup, teardown),
    cmocka_unit_test_setup_teardown (test_page_counts, setup, teardown),
    cmocka_unit_test_setup_teardown (test_each_check, setup, teardown),
    cmocka_unit_test_setup_teardown (test_too_many_pages, setup, teardown),
    cmocka_unit_test_setup_teardown (test_empty_txn, setup, teardown),
    cmocka_unit_test_setup_teardown (test_apply_error, setup, teardown),
    cmocka_unit_test_setup_teardown (test_bad_arguments, setup, teardown),
  };
  return cmocka_run_group_tests_name ("journal", tests, NULL, NULL);
}
