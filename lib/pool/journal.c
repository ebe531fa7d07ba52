/* punchcache: journal transactions -- encode, and the replay scanner.
 *
 * What: the byte format of a metadata transaction (descriptor page, page
 * images, commit page; see format.h) and the scanner that finds the chain
 * of complete transactions after a crash.  The store does the I/O.
 *
 * Why whole-page images (as jbd2 does) rather than logical records: a page
 * written in place can be torn by a power cut; replaying its full image
 * from the journal repairs it without needing the old contents.
 *
 * Invariants:
 *  J1 The scanner reads only inside the buffer it is given, whatever the
 *     bytes say: a transaction claiming to run past the journal's end is
 *     invalid.
 *  J2 A transaction is applied only if every check passes (magics, sequence
 *     number, page count, both page checksums, the checksum over descriptor
 *     and images, page numbers strictly increasing and inside the metadata
 *     area, every image a valid page for its number); the first transaction
 *     that fails ends the chain.  So replay applies a prefix of the
 *     committed transactions and never part of one.
 *  J3 Sequence numbers are consecutive from the superblock's journal_seq:
 *     stale transactions from before a journal restart never match.
 *  J4 The encoder refuses (-EINVAL) what the scanner would reject (page
 *     numbers not strictly increasing, an image that is not a valid sealed
 *     metadata page for its number), so a transaction that was written and
 *     synced is never silently dropped at replay.  (meta_pages is not known
 *     here: the store keeps page numbers in range.)
 *
 * Locks: none (pure functions).
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"
#include "punchcache/journal.h"

#define CRC_OFF 20
#define LIST_OFF 24
#define MAX_LIST ((PC_PAGE_SIZE - LIST_OFF) / 4)

_Static_assert (PC_TXN_MAX_PAGES <= MAX_LIST, "descriptor too small");

/* CRC of a descriptor or commit page with its CRC field taken as zero. */
static uint32_t
page_crc (const uint8_t *p)
{
  return pc_page_crc_without (p, CRC_OFF);
}

int
pc_journal_encode (uint64_t seq, uint32_t npages, const uint32_t *page_nos,
                   const void *images, void *buf)
{
  uint8_t *desc = buf;
  uint8_t *commit = desc + ((size_t) npages + 1) * PC_PAGE_SIZE;
  uint32_t i;

  if (npages == 0 || npages > PC_TXN_MAX_PAGES)
    return -EINVAL;
  for (i = 0; i < npages; i++)                          /* J4 */
    if ((i > 0 && page_nos[i] <= page_nos[i - 1]) ||
        pc_meta_page_check ((const uint8_t *) images + (size_t) i * PC_PAGE_SIZE,
                            page_nos[i], NULL, 0) < 0)
      return -EINVAL;
  memset (desc, 0, PC_PAGE_SIZE);
  memcpy (desc, PC_JDESC_MAGIC, 8);
  pc_put_le64 (desc + 8, seq);
  pc_put_le32 (desc + 16, npages);
  for (i = 0; i < npages; i++)
    pc_put_le32 (desc + LIST_OFF + 4 * i, page_nos[i]);
  pc_put_le32 (desc + CRC_OFF, page_crc (desc));
  memcpy (desc + PC_PAGE_SIZE, images, (size_t) npages * PC_PAGE_SIZE);
  memset (commit, 0, PC_PAGE_SIZE);
  memcpy (commit, PC_JCOMMIT_MAGIC, 8);
  pc_put_le64 (commit + 8, seq);
  pc_put_le32 (commit + 16, npages);
  pc_put_le32 (commit + LIST_OFF,
               pc_crc32c (0, desc, ((size_t) npages + 1) * PC_PAGE_SIZE));
  pc_put_le32 (commit + CRC_OFF, page_crc (commit));
  return 0;
}

/* Header checks of the descriptor at page `at`; returns npages or 0. */
static uint32_t
check_descriptor (const uint8_t *j, uint64_t journal_pages, uint64_t at,
                  uint64_t seq)
{
  const uint8_t *d = j + at * PC_PAGE_SIZE;
  uint32_t n;

  if (memcmp (d, PC_JDESC_MAGIC, 8) != 0 || pc_get_le64 (d + 8) != seq)
    return 0;
  n = pc_get_le32 (d + 16);
  if (n == 0 || n > PC_TXN_MAX_PAGES || n + 2 > journal_pages - at)  /* J1 */
    return 0;
  if (pc_get_le32 (d + CRC_OFF) != page_crc (d))
    return 0;
  return n;
}

static bool
check_images (const uint8_t *d, uint32_t n, uint64_t meta_pages)
{
  uint32_t i, prev = 0;

  for (i = 0; i < n; i++) {
    uint32_t p = pc_get_le32 (d + LIST_OFF + 4 * i);
    if (p >= meta_pages || (i > 0 && p <= prev))
      return false;
    if (pc_meta_page_check (d + ((size_t) i + 1) * PC_PAGE_SIZE, p, NULL, 0))
      return false;
    prev = p;
  }
  return true;
}

static bool
check_commit (const uint8_t *d, uint32_t n, uint64_t seq)
{
  const uint8_t *c = d + ((size_t) n + 1) * PC_PAGE_SIZE;

  return memcmp (c, PC_JCOMMIT_MAGIC, 8) == 0 &&
    pc_get_le64 (c + 8) == seq && pc_get_le32 (c + 16) == n &&
    pc_get_le32 (c + CRC_OFF) == page_crc (c) &&
    pc_get_le32 (c + LIST_OFF) ==
      pc_crc32c (0, d, ((size_t) n + 1) * PC_PAGE_SIZE);
}

int
pc_journal_scan (const void *journal, uint64_t journal_pages,
                 uint64_t tail, uint64_t seq, uint64_t meta_pages,
                 pc_journal_apply_fn apply, void *opaque,
                 struct pc_journal_scan_result *res)
{
  const uint8_t *j = journal;
  uint32_t n, i;
  int r;

  memset (res, 0, sizeof *res);
  if (tail >= journal_pages)
    return -EINVAL;
  while (tail < journal_pages &&
         (n = check_descriptor (j, journal_pages, tail, seq)) != 0) {
    const uint8_t *d = j + tail * PC_PAGE_SIZE;
    if (!check_images (d, n, meta_pages) || !check_commit (d, n, seq))
      break;                                            /* J2 */
    for (i = 0; i < n; i++) {
      r = apply (opaque, pc_get_le32 (d + LIST_OFF + 4 * i),
                 d + ((size_t) i + 1) * PC_PAGE_SIZE);
      if (r < 0) return r;
    }
    res->ntxns++;
    res->npages += n;
    tail += n + 2;
    seq++;                                              /* J3 */
  }
  res->next_seq = seq;
  res->next_page = tail;
  return 0;
}
