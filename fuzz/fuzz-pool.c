/* Fuzz target for every parser of untrusted pool bytes: the superblock,
 * metadata pages, volume table entries and the journal scanner.  Builds as
 * a libFuzzer target (clang -fsanitize=fuzzer,address) or with
 * fuzz-driver.c under gcc's AddressSanitizer (tests/test-fuzz-pool.sh).
 *
 * Each input is parsed twice: as it is, and after "fixing up" every
 * checksum in a copy (superblock crc, metadata page seals, journal
 * descriptor/commit/images crcs).  Random bytes almost never carry a valid
 * CRC-32C, so without the second pass a fuzzer would only ever exercise
 * the checksum tests and never the field checks behind them.
 *
 * Interpretation of the input:
 *   - its first 4096 bytes (zero padded) as a superblock, a metadata page
 *     (for page number 0 and for the number it carries) and a volume table
 *     page (every index) and a reverse-map page;
 *   - all of it, rounded down to whole pages, as a journal: once from tail
 *     0 with the descriptor's own seq and unbounded meta_pages (the valid
 *     path), once with tail/seq/meta_pages taken from bytes 24..47.
 * Journal buffers are heap copies of exactly the right size, so ASan
 * reports any read past the end.
 */
#include <config.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"
#include "punchcache/journal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
apply_sum (void *opaque, uint32_t page_no, const void *image)
{
  /* Touch the whole image so ASan checks it lies inside the buffer. */
  *(uint64_t *) opaque += page_no + pc_crc32c (0, image, PC_PAGE_SIZE);
  return 0;
}

/* An origin descriptor and a punched-map chunk (of a 4 KiB-block pool),
 * as they are and with their checksums made right. */
static void
parse_origin (const uint8_t *page)
{
  static uint8_t copy[PC_PAGE_SIZE];
  struct pc_origin_desc d;
  char why[256];

  if (pc_origin_desc_decode (page, &d, why, sizeof why) == 0 &&
      (!pc_origin_uri_valid (d.uri) || strlen (d.uri) > PC_ORIGIN_URI_MAX))
    abort ();                   /* decode accepted a URI it calls invalid */
  pc_omap_chunk_check (page, PC_PAGE_SIZE, pc_get_le32 (page + 12),
                       pc_get_le64 (page + 16), why, sizeof why);
  memcpy (copy, page, PC_PAGE_SIZE);
  pc_put_le32 (copy + 8, pc_page_crc_without (copy, 8));
  if (pc_origin_desc_decode (copy, &d, why, sizeof why) == 0 &&
      !pc_origin_uri_valid (d.uri))
    abort ();
  memcpy (copy, page, PC_PAGE_SIZE);
  pc_omap_chunk_seal (copy, PC_PAGE_SIZE, pc_get_le32 (page + 12),
                      pc_get_le64 (page + 16));
  if (pc_omap_chunk_check (copy, PC_PAGE_SIZE, pc_get_le32 (page + 12),
                           pc_get_le64 (page + 16), why, sizeof why) < 0)
    abort ();                   /* a sealed chunk must check */
}

static void
parse_page (const uint8_t *page)
{
  struct pc_superblock sb;
  struct pc_volume_entry e;
  char why[256];
  unsigned i;

  pc_sb_decode (page, &sb, why, sizeof why);
  pc_meta_page_check (page, 0, why, sizeof why);
  pc_meta_page_check (page, pc_get_le32 (page + 4), why, sizeof why);
  for (i = 0; i < PC_VOLS_PER_PAGE; i++)
    if (pc_vol_entry_decode (page, i, &e, why, sizeof why) == 0 &&
        e.flags && !pc_vol_name_valid (e.name))
      abort ();                 /* decode accepted a name it calls invalid */
  for (i = 0; i < PC_RMAP_PER_PAGE; i++)
    (void) pc_rmap_get (page, i);
  parse_origin (page);
}

/* Recompute the checksums of every journal transaction in buf whose
 * descriptor magic and page count look plausible. */
static void
fixup_journal (uint8_t *buf, size_t npages)
{
  size_t t = 0, i;

  while (t < npages) {
    uint8_t *d = buf + t * PC_PAGE_SIZE, *c;
    uint32_t n = pc_get_le32 (d + 16);
    if (memcmp (d, PC_JDESC_MAGIC, 8) != 0 || n == 0 ||
        n > PC_TXN_MAX_PAGES || n + 2 > npages - t) {
      t++;
      continue;
    }
    for (i = 0; i < n; i++)
      pc_meta_page_seal (d + (i + 1) * PC_PAGE_SIZE,
                         pc_get_le32 (d + 24 + 4 * i));
    pc_put_le32 (d + 20, pc_page_crc_without (d, 20));
    c = d + ((size_t) n + 1) * PC_PAGE_SIZE;
    pc_put_le32 (c + 24, pc_crc32c (0, d, ((size_t) n + 1) * PC_PAGE_SIZE));
    pc_put_le32 (c + 20, pc_page_crc_without (c, 20));
    t += n + 2;
  }
}

static void
parse_journal (const uint8_t *buf, size_t npages)
{
  struct pc_journal_scan_result res;
  uint64_t sink = 0;

  pc_journal_scan (buf, npages, 0, pc_get_le64 (buf + 8), UINT32_MAX,
                   apply_sum, &sink, &res);
  if (res.next_page > npages || res.npages > npages)
    abort ();                   /* the result claims more than was there */
  pc_journal_scan (buf, npages, pc_get_le64 (buf + 24) % npages,
                   pc_get_le64 (buf + 32), pc_get_le64 (buf + 40),
                   apply_sum, &sink, &res);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t page[PC_PAGE_SIZE] = { 0 };
  size_t npages = size / PC_PAGE_SIZE;
  uint8_t *copy;

  memcpy (page, data, size < sizeof page ? size : sizeof page);
  parse_page (page);
  pc_put_le32 (page + 12, pc_page_crc_without (page, 12));
  parse_page (page);                          /* as a sealed superblock */
  pc_meta_page_seal (page, pc_get_le32 (page + 4));
  parse_page (page);                          /* as a sealed metadata page */
  if (npages == 0)
    return 0;
  copy = malloc (npages * PC_PAGE_SIZE);
  if (copy == NULL)
    return 0;
  memcpy (copy, data, npages * PC_PAGE_SIZE);
  parse_journal (copy, npages);
  fixup_journal (copy, npages);
  parse_journal (copy, npages);
  free (copy);
  return 0;
}
