/* Fuzz target for every parser of untrusted pool bytes: the superblock,
 * metadata pages, volume table entries and the journal scanner.  Builds as
 * a libFuzzer target (clang -fsanitize=fuzzer,address) or with
 * fuzz-driver.c under gcc's AddressSanitizer (tests/test-fuzz-pool.sh). */
#include <config.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/journal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
apply_nothing (void *opaque, uint32_t page_no, const void *image)
{
  (*(uint64_t *) opaque) += page_no + ((const uint8_t *) image)[4095];
  return 0;
}

static void
fuzz_page (const uint8_t *page)
{
  struct pc_superblock sb;
  struct pc_volume_entry e;
  char why[128];
  unsigned i;

  pc_sb_decode (page, &sb, why, sizeof why);
  pc_meta_page_check (page, pc_get_le32 (page + 4), why, sizeof why);
  for (i = 0; i < PC_VOLS_PER_PAGE; i++)
    pc_vol_entry_decode (page, i, &e, why, sizeof why);
  for (i = 0; i < PC_RMAP_PER_PAGE; i++)
    (void) pc_rmap_get (page, i);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t page[PC_PAGE_SIZE] = { 0 };
  struct pc_journal_scan_result res;
  size_t npages = size / PC_PAGE_SIZE;
  uint64_t sink = 0, tail, seq, meta;
  uint8_t *copy;

  memcpy (page, data, size < sizeof page ? size : sizeof page);
  fuzz_page (page);
  if (npages == 0)
    return 0;
  /* Journal: tail/seq/meta_pages from the first page's bytes 24..47. */
  tail = pc_get_le64 (data + 24) % npages;
  seq = pc_get_le64 (data + 32);
  meta = pc_get_le64 (data + 40);
  copy = malloc (npages * PC_PAGE_SIZE);   /* exact size: ASan sees overruns */
  if (copy == NULL) return 0;
  memcpy (copy, data, npages * PC_PAGE_SIZE);
  pc_journal_scan (copy, npages, tail, seq, meta, apply_nothing, &sink, &res);
  pc_journal_scan (copy, npages, 0, pc_get_le64 (copy + 8), UINT32_MAX,
                   apply_nothing, &sink, &res);
  free (copy);
  return (int) (sink & 0);
}
