/* A mutation loop for fuzz-pool.c when libFuzzer is not available (gcc
 * builds): starts from valid seeds it makes itself (a superblock, a volume
 * table page, a journal of two transactions) and feeds random mutations
 * (bit flips, byte sets, 32/64-bit field overwrites with boundary values,
 * truncation, page splices) to the target.
 *
 *   fuzz-pool-asan [ITERATIONS [SECONDS]]   (default 200000, 20)
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "punchcache/format.h"
#include "punchcache/journal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAXP 8
static uint8_t seeds[3][MAXP * PC_PAGE_SIZE];
static size_t seed_len[3];

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
  unsigned n = 0;

  if (pc_sb_decode (seeds[0], &sb, NULL, 0) < 0 ||
      pc_meta_page_check (seeds[1], 0, NULL, 0) < 0 ||
      pc_vol_entry_decode (seeds[1], 7, &e, NULL, 0) < 0 ||
      strcmp (e.name, "vol") != 0 ||
      pc_journal_scan (seeds[2], MAXP, 0, 9, 6, count_pages, &n, &res) < 0 ||
      res.ntxns != 2 || n != 3) {
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

  pc_layout_for_nblocks (5000, 65536, &sb);
  pc_sb_encode (&sb, seeds[0]);
  seed_len[0] = PC_PAGE_SIZE;
  pc_vol_entry_encode (&e, seeds[1], 7);
  pc_meta_page_seal (seeds[1], 0);
  seed_len[1] = PC_PAGE_SIZE;
  /* Journal: seq 9 (pages 1 and 5) at page 0, seq 10 (page 2) at page 4. */
  pc_rmap_put (img + PC_PAGE_SIZE, 3, pc_rmap_make (1, 77));
  pc_meta_page_seal (img, 1);
  pc_meta_page_seal (img + PC_PAGE_SIZE, 5);
  pc_journal_encode (9, 2, nos, img, seeds[2]);
  pc_meta_page_seal (img, 2);
  pc_journal_encode (10, 1, &two, img, seeds[2] + 4 * PC_PAGE_SIZE);
  seed_len[2] = 7 * PC_PAGE_SIZE;
  check_seeds ();
}

static uint64_t rng = 88172645463325252u;
static uint64_t next (void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static size_t
mutate (uint8_t *buf, size_t len)
{
  static const uint64_t edge[] = { 0, 1, 2, 511, 4095, 4096, 65535, 0x7fffffff,
                                   0xffffffff, UINT64_MAX, UINT64_MAX / 2 };
  unsigned n = 1 + next () % 8, i;

  for (i = 0; i < n; i++) {
    size_t at = next () % len;
    switch (next () % 6) {
    case 0: buf[at] ^= (uint8_t) (1u << (next () % 8)); break;
    case 1: buf[at] = (uint8_t) next (); break;
    case 2: if (at + 8 <= len) { uint64_t v = edge[next () % 11]; memcpy (buf + at, &v, 8); } break;
    case 3: if (at + 4 <= len) { uint32_t v = (uint32_t) edge[next () % 11]; memcpy (buf + at, &v, 4); } break;
    case 4: len = 1 + next () % len; break;                       /* truncate */
    case 5: {                                                     /* splice */
      size_t src = next () % 3, pg = next () % MAXP;
      if ((pg + 1) * PC_PAGE_SIZE <= len)
        memcpy (buf + pg * PC_PAGE_SIZE, seeds[src], PC_PAGE_SIZE);
    } break;
    }
  }
  return len;
}

int
main (int argc, char **argv)
{
  unsigned long iters = argc > 1 ? strtoul (argv[1], NULL, 0) : 200000;
  unsigned long secs = argc > 2 ? strtoul (argv[2], NULL, 0) : 20, i;
  time_t t0 = time (NULL);
  uint8_t *buf = malloc (MAXP * PC_PAGE_SIZE);

  if (buf == NULL)
    return 1;
  make_seeds ();
  for (i = 0; i < 3; i++)
    LLVMFuzzerTestOneInput (seeds[i], seed_len[i]);
  for (i = 0; i < iters && (unsigned long) (time (NULL) - t0) < secs; i++) {
    size_t s = next () % 3, len = seed_len[s];
    uint8_t *in;
    memcpy (buf, seeds[s], MAXP * PC_PAGE_SIZE);
    if (next () % 4 == 0) len = MAXP * PC_PAGE_SIZE;
    len = mutate (buf, len);
    in = malloc (len);                 /* exact size, so ASan catches overreads */
    memcpy (in, buf, len);
    LLVMFuzzerTestOneInput (in, len);
    free (in);
  }
  printf ("fuzz-pool: %lu inputs in %ld s, no crash\n", i, (long) (time (NULL) - t0));
  free (buf);
  return 0;
}
