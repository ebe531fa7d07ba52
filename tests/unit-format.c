/* Description: unit tests of the on-disk format (lib/format.c,
 * lib/crc32c.c): CRC-32C check value and chaining, layout rules and
 * overflow, device sizing, superblock round trip, every single-bit flip of
 * an encoded superblock rejected, newer versions named, metadata page
 * seal/check (wrong page number, corruption), volume entries. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"

static void
test_crc (void **state)
{
  const char *s = "123456789";
  uint8_t big[10000];

  assert_int_equal (pc_crc32c (0, s, 9), 0xE3069283u);
  assert_int_equal (pc_crc32c (pc_crc32c (0, s, 4), s + 4, 5), 0xE3069283u);
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t) (i * 31);
  assert_int_equal (pc_crc32c (pc_crc32c (0, big, 4097), big + 4097, 5903),
                    pc_crc32c (0, big, sizeof big));
}

static void
test_layout (void **state)
{
  struct pc_superblock sb, d;

  assert_int_equal (pc_layout_for_nblocks (1000, 65536, &sb), 0);
  assert_int_equal (sb.meta_pages, PC_VOLTABLE_PAGES + 2);
  assert_int_equal (sb.journal_pages, PC_JOURNAL_MIN_PAGES);
  assert_int_equal (sb.data_offset % (1 << 20), 0);
  assert_int_equal (sb.total_bytes, sb.data_offset + 1000 * 65536);
  assert_int_equal (pc_layout_for_nblocks (0, 65536, &sb), -EINVAL);
  assert_int_equal (pc_layout_for_nblocks (10, 3000, &sb), -EINVAL);
  assert_int_equal (pc_layout_for_nblocks (UINT64_C (1) << 50, 1 << 20, &sb), -EINVAL);
  assert_int_equal (pc_layout_for_nblocks (UINT64_C (1) << 28, 4096, &sb), 0);
  assert_int_equal (sb.journal_pages, 2 * (PC_TXN_MAX_PAGES + 2));
  assert_int_equal (pc_layout_for_device (100 << 20, 65536, &d), 0);
  assert_true (d.total_bytes <= 100 << 20);
  assert_true (d.total_bytes + 65536 > (100 << 20) - (2 << 20));
  assert_int_equal (pc_layout_for_device (1 << 20, 65536, &d), -ENOSPC);
}

static void
make_sb (struct pc_superblock *sb)
{
  memset (sb, 0, sizeof *sb);
  assert_int_equal (pc_layout_for_nblocks (12345, 4096, sb), 0);
  sb->version = PC_FORMAT_VERSION;
  sb->generation = 7;
  sb->journal_tail = 3;
  sb->journal_seq = 99;
  memset (sb->uuid, 0xab, 16);
}

static void
test_superblock (void **state)
{
  struct pc_superblock sb, out;
  uint8_t page[PC_PAGE_SIZE], bad[PC_PAGE_SIZE];
  char why[256];
  int rejected = 0;

  make_sb (&sb);
  pc_sb_encode (&sb, page);
  memset (&out, 0, sizeof out);                     /* padding too */
  assert_int_equal (pc_sb_decode (page, &out, why, sizeof why), 0);
  assert_memory_equal (&sb, &out, sizeof sb);
  for (size_t i = 0; i < PC_PAGE_SIZE * 8; i++) {   /* every bit flip */
    memcpy (bad, page, sizeof bad);
    bad[i / 8] ^= (uint8_t) (1u << (i % 8));
    rejected += pc_sb_decode (bad, &out, why, sizeof why) == -EUCLEAN;
  }
  assert_int_equal (rejected, PC_PAGE_SIZE * 8);
  sb.journal_tail = sb.journal_pages;               /* out of range */
  pc_sb_encode (&sb, page);
  assert_int_equal (pc_sb_decode (page, &out, why, sizeof why), -EUCLEAN);
  assert_non_null (strstr (why, "journal tail"));
  make_sb (&sb);
  sb.data_offset += 4096;                           /* layout lie */
  pc_sb_encode (&sb, page);
  assert_int_equal (pc_sb_decode (page, &out, why, sizeof why), -EUCLEAN);
  assert_non_null (strstr (why, "data_offset"));
  make_sb (&sb);
  pc_sb_encode (&sb, page);
  page[8] = 2;                                      /* newer version */
  assert_int_equal (pc_sb_decode (page, &out, why, sizeof why), -EUCLEAN);
  assert_non_null (strstr (why, "newer"));
}

static void
test_meta_page (void **state)
{
  uint8_t page[PC_PAGE_SIZE] = { 0 };
  char why[256];

  assert_int_equal (pc_meta_page_check (page, 17, why, sizeof why), 0);
  pc_rmap_put (page, 5, pc_rmap_make (3, 1234));
  pc_meta_page_seal (page, 17);
  assert_int_equal (pc_meta_page_check (page, 17, why, sizeof why), 0);
  assert_int_equal (pc_meta_page_check (page, 18, why, sizeof why), -EUCLEAN);
  assert_non_null (strstr (why, "page number"));
  assert_int_equal (pc_rmap_slot (pc_rmap_get (page, 5)), 3);
  assert_int_equal (pc_rmap_lblock (pc_rmap_get (page, 5)), 1234);
  page[1000] ^= 1;
  assert_int_equal (pc_meta_page_check (page, 17, why, sizeof why), -EUCLEAN);
  assert_non_null (strstr (why, "checksum"));
}

static void
test_volume_entries (void **state)
{
  uint8_t page[PC_PAGE_SIZE] = { 0 };
  struct pc_volume_entry e = { .size = 1 << 30, .flags = PC_VOL_IN_USE }, d;
  char why[256];

  strcpy (e.name, "vm-1.disk_2");
  pc_vol_entry_encode (&e, page, 62);
  assert_int_equal (pc_vol_entry_decode (page, 62, &d, why, sizeof why), 0);
  assert_string_equal (d.name, "vm-1.disk_2");
  assert_int_equal (d.size, 1 << 30);
  assert_int_equal (pc_vol_entry_decode (page, 0, &d, why, sizeof why), 0);
  assert_int_equal (d.flags, 0);                    /* unused */
  assert_int_equal (pc_vol_entry_decode (page, 63, &d, why, sizeof why), -EUCLEAN);
  page[8 + 62 * 64 + 48] = 1;                       /* size not /512 */
  assert_int_equal (pc_vol_entry_decode (page, 62, &d, why, sizeof why), -EUCLEAN);
  pc_vol_entry_encode (&e, page, 62);
  page[8 + 62 * 64 + 2] = '/';                      /* bad name */
  assert_int_equal (pc_vol_entry_decode (page, 62, &d, why, sizeof why), -EUCLEAN);
  pc_vol_entry_encode (&e, page, 62);
  page[8 + 62 * 64 + 56] = 3;                       /* unknown flag */
  assert_int_equal (pc_vol_entry_decode (page, 62, &d, why, sizeof why), -EUCLEAN);
  assert_true (pc_vol_name_valid ("a"));
  assert_false (pc_vol_name_valid (""));
  assert_false (pc_vol_name_valid ("-x"));
  assert_false (pc_vol_name_valid (".hidden"));
  assert_false (pc_vol_name_valid ("a:b"));
  assert_false (pc_vol_name_valid ("0123456789012345678901234567890123456789012345678"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_crc),
    cmocka_unit_test (test_layout),
    cmocka_unit_test (test_superblock),
    cmocka_unit_test (test_meta_page),
    cmocka_unit_test (test_volume_entries),
  };
  return cmocka_run_group_tests_name ("format", tests, NULL, NULL);
}
