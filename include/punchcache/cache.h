/* punchcache: the shared block cache.
 *
 * One RAM cache of 4 KiB pages shared by every connection and every volume
 * of a pool, with a fixed memory budget.  Keys are (volume slot, logical
 * page); the cache knows nothing about physical blocks.  lib/cache/cache.c has
 * the design (data structure, policy, invariants, locks).
 *
 * The fill protocol (SPEC §2, §4 I1/I6), which callers in lib/core/volume.c
 * follow:
 *  - A read looks up each page (pc_cache_get).  On a miss it reserves the
 *    page (pc_cache_fill_begin, which returns a 4 KiB-aligned buffer and a
 *    ticket), reads the pool into that buffer, and publishes it
 *    (pc_cache_fill_end).  All of this happens while the caller holds the
 *    volume's invalidate lock shared over the page.
 *  - A punch (trim, zero) holds the invalidate lock exclusive and drops the
 *    range (pc_cache_punch).  Because fills hold the lock shared, no fill
 *    of the range can be in flight: the lock, not the cache, is what keeps
 *    a fill from landing after a punch.
 *  - A write is not excluded from fills by the invalidate lock (both hold
 *    it shared), so writes use the ticket instead: after its pool write a
 *    write calls pc_cache_invalidate, which drops the page and voids every
 *    ticket issued before it; pc_cache_fill_end publishes only if its ticket
 *    is still valid.
 *
 * All functions are thread-safe.  A NULL cache is valid everywhere and
 * behaves as an always-empty cache.
 */
#ifndef PUNCHCACHE_CACHE_H
#define PUNCHCACHE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define PC_CACHE_PAGE 4096u
#define PC_CACHE_PAGE_SHIFT 12
/* Keys: volume slot in the top 16 bits, page number (byte offset / 4096)
 * in the low 48 (volumes are at most 2^60 bytes). */
#define PC_CACHE_KEY(slot, page) (((uint64_t) (slot) << 48) | (page))

enum pc_cache_policy {
  PC_CACHE_S3FIFO = 0,          /* default: scan-resistant (see cache.c) */
  PC_CACHE_LRU = 1,             /* plain LRU, kept for the policy bench */
};

struct pc_cache;

/* A reserved page being filled. */
struct pc_cache_ticket {
  uint32_t idx;                 /* entry index */
  uint64_t gen;                 /* entry generation when reserved */
  void *buf;                    /* PC_CACHE_PAGE bytes, 4096-aligned */
};

struct pc_cache_stats {
  uint64_t budget;              /* bytes, as configured */
  uint64_t capacity_pages;      /* pages that fit in the budget */
  uint64_t memory;              /* bytes reserved for pages + index */
  uint64_t pages;               /* pages cached now (valid) */
  uint64_t pending;             /* pages being filled now */
  unsigned nshards;
  enum pc_cache_policy policy;
  uint64_t hits, misses;        /* page lookups */
  uint64_t fills;               /* pages published by fills */
  uint64_t fills_discarded;     /* fills whose ticket a write voided */
  uint64_t fills_unreserved;    /* misses read without caching (no room,
                                 * or another fill of the page in flight) */
  uint64_t evictions;
  uint64_t invalidations;       /* pages dropped by writes */
  uint64_t punched;             /* pages dropped by punches */
  uint64_t punch_fill_overlaps; /* punches that found a fill in flight in
                                 * their range: always 0 unless the
                                 * invalidate lock is disabled (debug) */
  uint64_t ghost_hits;          /* S3-FIFO: misses readmitted to main */
  /* Write-back (dirty pages are counted in pages too): */
  uint64_t dirty_pages;         /* dirty now (incl. under write-back) */
  uint64_t writeback_pages;     /* under write-back now */
  uint64_t dirtied;             /* clean or new pages made dirty */
  uint64_t cleaned;             /* dirty pages written back */
  uint64_t writeback_failed;    /* write-backs that failed (page kept) */
  uint64_t dirty_punched;       /* dirty pages dropped by punches (I9) */
};

/* budget in bytes (0 = no cache: *out = NULL).  nshards 0 = automatic.
 * Returns 0 or -ENOMEM / -EINVAL (budget too small for one page). */
int pc_cache_create (uint64_t budget, enum pc_cache_policy policy,
                     unsigned nshards, struct pc_cache **out);
void pc_cache_destroy (struct pc_cache *c);

/* Hit: copy len bytes at offset off of the page into dst, return true. */
bool pc_cache_get (struct pc_cache *c, uint64_t key, void *dst,
                   uint32_t off, uint32_t len);

/* pc_cache_get for a fast path that will retry a miss through the fill
 * path: a miss is not counted (the retry counts it). */
bool pc_cache_probe (struct pc_cache *c, uint64_t key, void *dst,
                     uint32_t off, uint32_t len);

/* Reserve key for a fill.  Returns 0 with *t filled (read the page into
 * t->buf, then call pc_cache_fill_end); 1 if the page became valid in the
 * meantime and was copied into dst (if dst != NULL) like pc_cache_get;
 * -EBUSY if another fill of this page is in flight, -ENOMEM if no page can
 * be evicted (every page is being filled): read without the cache. */
int pc_cache_fill_begin (struct pc_cache *c, uint64_t key,
                         struct pc_cache_ticket *t,
                         void *dst, uint32_t off, uint32_t len);
/* Finish a fill: publish the page if ok and the ticket is still valid,
 * otherwise release it.  t->buf must not be used afterwards. */
void pc_cache_fill_end (struct pc_cache *c, struct pc_cache_ticket *t,
                        bool ok);

/* Writes: drop pages [key, key+n) and void their tickets. */
void pc_cache_invalidate (struct pc_cache *c, uint64_t key, uint64_t n);
/* Punches (invalidate lock held exclusive): drop pages [key, key+n). */
void pc_cache_punch (struct pc_cache *c, uint64_t key, uint64_t n);
/* Drop every page of a volume slot (volume removed or resized). */
void pc_cache_drop_slot (struct pc_cache *c, unsigned slot);

/* ---- write-back (lib/core/writeback.c drives these; cache.c has the
 * life of a dirty page) ---- */

/* Write len bytes at off of page key and mark it dirty with write sequence
 * seq.  0 done; -ENOENT: a partial write of a page the cache does not
 * hold: call again with base = the page's current 4 KiB; -EAGAIN: a fill
 * of the page is in flight: retry when it ended; -ENOSPC: no clean page
 * can be evicted in its shard: write back, then retry. */
int pc_cache_write (struct pc_cache *c, uint64_t key, const void *src,
                    uint32_t off, uint32_t len, const void *base,
                    uint64_t seq);
/* A punch of part of a page (invalidate lock exclusive): zero bytes
 * [off, off+len) of the cached page, dirty or clean, instead of dropping
 * it (dropping a dirty page would lose the rest of its bytes). */
void pc_cache_zero_part (struct pc_cache *c, uint64_t key, uint32_t off,
                         uint32_t len);
uint64_t pc_cache_dirty_pages (struct pc_cache *c);
/* Debug only (the I12 test): let eviction drop dirty pages. */
void pc_cache_set_unsafe_evict_dirty (struct pc_cache *c, bool on);
/* Move up to max dirty pages with dseq <= upto, oldest first, under
 * write-back; their keys, ascending, in keys[].  Returns how many. */
unsigned pc_cache_wb_collect (struct pc_cache *c, uint64_t upto,
                              uint64_t *keys, unsigned max);
/* Copy a collected page (4 KiB into dst); false if it was dropped (a
 * punch) since it was collected: then it must not be written. */
bool pc_cache_wb_copy (struct pc_cache *c, uint64_t key, void *dst);
/* The buffer of a collected page, to write it without a copy (NULL if it
 * was dropped since the collect).  It stays valid until wb_end while the
 * caller keeps punches out (the invalidate lock shared over its block)
 * and the slot is not dropped: a page under write-back is never evicted.
 * A write may change its bytes meanwhile; the page then stays dirty. */
void *pc_cache_wb_pin (struct pc_cache *c, uint64_t key);
/* End the write-back of a collected page: ok and not rewritten since the
 * collect: clean (evictable); otherwise dirty again. */
void pc_cache_wb_end (struct pc_cache *c, uint64_t key, bool ok);
/* The smallest dseq of any dirty page (UINT64_MAX: none). */
uint64_t pc_cache_oldest_dirty (struct pc_cache *c);
/* Any dirty page in [key, key+n)? */
bool pc_cache_has_dirty (struct pc_cache *c, uint64_t key, uint64_t n);

void pc_cache_get_stats (struct pc_cache *c, struct pc_cache_stats *st);

/* Debug: check every shard's lists, counts and hash chains.  0 or
 * -EUCLEAN. */
int pc_cache_verify (struct pc_cache *c);

#endif
