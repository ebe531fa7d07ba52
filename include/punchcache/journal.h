/* punchcache: metadata journal transactions (encode and replay scan).
 *
 * Physical journaling of whole metadata pages, as jbd2 does: a commit
 * writes the images of every metadata page it changed as one transaction
 * (descriptor, images, commit page; format in format.h), fsyncs, and only
 * then writes the pages in place.  A torn in-place write is therefore always
 * repaired by replaying the journal from the superblock's tail.
 *
 * Pure functions over buffers (the store does the I/O), so the scanner can
 * be fuzzed.  The scanner validates a whole transaction (both magics, the
 * sequence number, both crcs, the images crc, page numbers in range and
 * strictly increasing, every image a valid metadata page for its number)
 * before it applies any page of it, and stops at the first transaction that
 * fails: a torn last transaction is simply not there.
 */
#ifndef PUNCHCACHE_JOURNAL_H
#define PUNCHCACHE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

/* Size in bytes of an encoded transaction of npages images. */
static inline size_t pc_journal_txn_bytes (uint32_t npages)
{ return ((size_t) npages + 2) * 4096u; }

/* Encode a transaction into buf (pc_journal_txn_bytes(npages) bytes).
 * page_nos must be strictly increasing; images are npages sealed metadata
 * pages, concatenated.  0 or -EINVAL (npages 0 or > PC_TXN_MAX_PAGES,
 * page numbers not increasing, or an image that fails pc_meta_page_check
 * for its page number: the scanner would drop such a transaction). */
int pc_journal_encode (uint64_t seq, uint32_t npages,
                       const uint32_t *page_nos, const void *images,
                       void *buf);

/* Called for every page image of every valid transaction, in order. */
typedef int (*pc_journal_apply_fn) (void *opaque, uint32_t page_no,
                                    const void *image);

struct pc_journal_scan_result {
  uint64_t next_seq;    /* sequence number after the last valid txn */
  uint64_t next_page;   /* journal page index after the last valid txn */
  uint64_t ntxns;       /* transactions applied */
  uint64_t npages;      /* page images applied */
};

/* Scan `journal` (journal_pages pages, the whole journal region read into
 * memory) from page `tail` expecting sequence `seq`; apply each valid
 * transaction's images via apply() (an apply error stops the scan and is
 * returned).  meta_pages bounds the page numbers.  Returns 0 (the end of
 * the valid chain was reached, which is normal) or apply's negative error,
 * or -EINVAL if tail >= journal_pages.
 */
int pc_journal_scan (const void *journal, uint64_t journal_pages,
                     uint64_t tail, uint64_t seq, uint64_t meta_pages,
                     pc_journal_apply_fn apply, void *opaque,
                     struct pc_journal_scan_result *res);

#endif
