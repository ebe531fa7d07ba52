/* punchcache: the physical block allocator.
 *
 * One bit per physical block (1 = in use or pending free), lowest-free-first
 * allocation from a hint, and a list of *deferred* frees.  A block freed by
 * a punch is not reusable until the metadata commit that records its
 * freeing is durable (SPEC I3(b)): the store tags each deferred free with
 * the commit epoch that will carry it and calls pc_alloc_release_through()
 * once that commit is on disk.
 *
 * Lowest-first keeps data, and so the reverse-map pages that describe it,
 * dense at the start of the pool.
 *
 * Locking: one internal mutex, held for bitmap scans only (never across
 * I/O).  Callers may hold the store's metadata mutex when calling
 * pc_alloc_defer (order: meta -> alloc, see lib/LOCKING).
 */
#ifndef PUNCHCACHE_ALLOC_H
#define PUNCHCACHE_ALLOC_H

#include <stdint.h>

struct pc_alloc;

struct pc_alloc_stats {
  uint64_t nblocks;   /* total physical blocks */
  uint64_t used;      /* allocated and not freed */
  uint64_t pending;   /* freed, waiting for a durable commit */
  uint64_t free;      /* allocatable now */
};

int pc_alloc_create (uint64_t nblocks, struct pc_alloc **out); /* 0, -ENOMEM */
void pc_alloc_destroy (struct pc_alloc *a);

/* While loading a pool: mark pblock as in use.  0, -ERANGE, -EEXIST (already
 * marked: the same physical block appears twice). */
int pc_alloc_mark_used (struct pc_alloc *a, uint64_t pblock);

/* Allocate the lowest free block.  0 and *pblock, or -ENOSPC. */
int pc_alloc_get (struct pc_alloc *a, uint64_t *pblock);
/* The lowest free block now (nblocks if none); it may be taken at once by
 * another thread: a hint, not a reservation. */
uint64_t pc_alloc_lowest_free (struct pc_alloc *a);
/* Allocate the lowest free block and the free blocks right after it, up
 * to max (>= 1) in all: 0 with *first and *n (1..max), or -ENOSPC. */
int pc_alloc_get_run (struct pc_alloc *a, unsigned max, uint64_t *first,
                      unsigned *n);

/* Return a block that was never published (its write failed): reusable at
 * once. */
void pc_alloc_put_now (struct pc_alloc *a, uint64_t pblock);

/* The deferred blocks that pc_alloc_release_through (epoch) would free
 * now, ascending, in a malloc'd array *out (NULL if none): their count, or
 * -ENOMEM.  Only the caller of release_through may call it (the set can
 * only grow in between, never lose a block). */
int64_t pc_alloc_releasable (struct pc_alloc *a, uint64_t epoch,
                             uint64_t **out);
/* A published block was unmapped; reusable once commit `epoch` is durable. */
int pc_alloc_defer (struct pc_alloc *a, uint64_t pblock, uint64_t epoch);

/* Commit `epoch` is durable: every block deferred with epoch <= this one
 * becomes free. */
void pc_alloc_release_through (struct pc_alloc *a, uint64_t epoch);

void pc_alloc_get_stats (struct pc_alloc *a, struct pc_alloc_stats *out);

/* 1 if pblock is marked (in use or pending), 0 if free, -ERANGE. */
int pc_alloc_is_used (struct pc_alloc *a, uint64_t pblock);

/* Debug: recount bits and pending list against counters.  0 or -EUCLEAN. */
int pc_alloc_verify (struct pc_alloc *a);

#endif
