/* Seeds for fuzz-pool.c under fuzz-driver.c: a superblock, a volume table
 * page and a journal of two transactions, all valid; and the pool's own
 * mutation, splicing a whole page of one seed into the input.
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/format.h"
#include "punchcache/journal.h"
#include "fuzz-driver.h"

#define MAXP 8
#define NSEEDS 5
static uint8_t seeds[NSEEDS][MAXP * PC_PAGE_SIZE];

static int
count_pages (void *opaque, uint32_t page_no, const void *image)
{
  (*(unsigned *) opaque)++;
  return 0;
}

/* The seeds must be valid, or the run would only fuzz the first checks. */
static void
check_seeds (void)
{
  struct pc_superblock sb;
  struct pc_volume_entry e;
  struct pc_journal_scan_result res;
  struct pc_origin_desc d;
  unsigned n = 0;

  if (pc_sb_decode (seeds[0], &sb, NULL, 0) < 0 ||
      pc_meta_page_check (seeds[1], 0, NULL, 0) < 0 ||
      pc_vol_entry_decode (seeds[1], 7, &e, NULL, 0) < 0 ||
      strcmp (e.name, "vol") != 0 ||
      pc_journal_scan (seeds[2], MAXP, 0, 9, 6, count_pages, &n, &res) < 0 ||
      res.ntxns != 2 || n != 3 ||
      pc_origin_desc_decode (seeds[3], &d, NULL, 0) < 0 ||
      pc_omap_chunk_check (seeds[4], PC_PAGE_SIZE, 7, 3, NULL, 0) < 0) {
    fprintf (stderr, "fuzz-pool: a seed input is not valid\n");
    exit (1);
  }
}

static void
make_seeds (void)
{
  struct pc_superblock sb = { .generation = 3, .journal_seq = 9 };
  struct pc_volume_entry e = { .name = "vol", .size = 1 << 20, .flags = PC_VOL_IN_USE };
  uint8_t img[2 * PC_PAGE_SIZE] = { 0 };
  uint32_t nos[2] = { 1, 5 }, two = 2;
  struct pc_origin_desc od = { .slot = 7, .mode = PC_ORIGIN_WRITETHROUGH,
                               .size = 1 << 20,
                               .uri = "nbd+unix:///disk?socket=/run/o.sock" };

  pc_layout_for_nblocks (5000, 65536, &sb);
  pc_sb_encode (&sb, seeds[0]);
  pc_vol_entry_encode (&e, seeds[1], 7);
  pc_meta_page_seal (seeds[1], 0);
  /* Journal: seq 9 (pages 1 and 5) at page 0, seq 10 (page 2) at page 4. */
  pc_rmap_put (img + PC_PAGE_SIZE, 3, pc_rmap_make (1, 77));
  pc_meta_page_seal (img, 1);
  pc_meta_page_seal (img + PC_PAGE_SIZE, 5);
  pc_journal_encode (9, 2, nos, img, seeds[2]);
  pc_meta_page_seal (img, 2);
  pc_journal_encode (10, 1, &two, img, seeds[2] + 4 * PC_PAGE_SIZE);
  /* An origin descriptor, and a punched-map chunk of a 4 KiB-block pool. */
  pc_origin_desc_encode (&od, seeds[3]);
  seeds[4][PC_OMAP_HEADER + 5] = 0x81;
  pc_omap_chunk_seal (seeds[4], PC_PAGE_SIZE, 7, 3);
  check_seeds ();
}

/* A whole page of a seed over a page of the input. */
static size_t
splice_page (const struct fuzz_seeds *s, uint8_t *buf, size_t len)
{
  size_t src = fuzz_rand () % NSEEDS, pg = fuzz_rand () % MAXP;

  if ((pg + 1) * PC_PAGE_SIZE <= len)
    memcpy (buf + pg * PC_PAGE_SIZE, seeds[src], PC_PAGE_SIZE);
  return len;
}

void
fuzz_get_seeds (struct fuzz_seeds *s)
{
  make_seeds ();
  *s = (struct fuzz_seeds) {
    .name = "fuzz-pool", .max_len = MAXP * PC_PAGE_SIZE, .n = NSEEDS,
    .data = { seeds[0], seeds[1], seeds[2], seeds[3], seeds[4] },
    .len = { PC_PAGE_SIZE, PC_PAGE_SIZE, 7 * PC_PAGE_SIZE, PC_PAGE_SIZE,
             PC_PAGE_SIZE },
    .grow = true, .mutate = splice_page,
  };
}
