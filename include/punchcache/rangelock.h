/* punchcache: the range invalidate lock.
 *
 * A shared/exclusive lock over ranges of block numbers: the user-space twin
 * of Linux's mapping->invalidate_lock, but per range instead of per file.
 * Punches (trim, zero) take it exclusive on the blocks they unmap; reads,
 * extents queries, writes and (later) cache fills take it shared.
 *
 * Contract (see lib/cache/rangelock.c for the design and lib/LOCKING for order):
 *  - Two requests whose ranges do not overlap never wait for each other
 *    (they may briefly contend on an internal shard mutex, never across I/O).
 *  - Overlapping shared holders run together.
 *  - Fairness: a request waits for every *earlier* overlapping request that
 *    is incompatible with it, granted or still waiting.  So a stream of
 *    shared holders cannot starve an exclusive waiter.
 *  - A single lock call covers the whole range; there is no way to hold
 *    part of a range, so multi-range callers cannot deadlock as long as they
 *    take one call per lock object (and different lock objects in the order
 *    written in lib/LOCKING).
 *
 * The caller supplies a struct pc_range_token (usually on its stack) that
 * lives from lock to unlock; in the common case no memory is allocated.
 */
#ifndef PUNCHCACHE_RANGELOCK_H
#define PUNCHCACHE_RANGELOCK_H

#include <stdbool.h>
#include <stdint.h>

struct pc_rangelock;
struct pc_rl_segment;

#define PC_RANGE_TOKEN_INLINE 4

/* One held (or waited-for) range.  Treat as opaque. */
struct pc_range_token {
  struct pc_rangelock *lock;
  uint64_t first, count;
  bool exclusive;
  unsigned nsegs;                       /* segments used */
  struct pc_rl_segment *segs;           /* inline[] or heap */
  /* Inline storage for the common case; sized in rangelock.c's units. */
  uint64_t inline_space[PC_RANGE_TOKEN_INLINE * 8];
};

struct pc_rangelock_stats {
  uint64_t shared_acquired, exclusive_acquired;
  uint64_t shared_waits, exclusive_waits;     /* acquisitions that blocked */
  uint64_t shared_wait_ns, exclusive_wait_ns; /* total time spent blocked */
};

/* Returns 0 or -ENOMEM. */
int pc_rangelock_create (struct pc_rangelock **out);
void pc_rangelock_destroy (struct pc_rangelock *lock);

/* Lock blocks [first, first+count).  count must be >= 1.  Blocks until
 * granted.  Returns 0, or -ENOMEM (only for very wide ranges whose token
 * needs heap segments), or -EINVAL for count == 0 or overflow.
 */
int pc_rangelock_lock_shared (struct pc_rangelock *lock,
                              struct pc_range_token *tok,
                              uint64_t first, uint64_t count);
int pc_rangelock_lock_exclusive (struct pc_rangelock *lock,
                                 struct pc_range_token *tok,
                                 uint64_t first, uint64_t count);
/* Like pc_rangelock_lock_shared, but never waits: -EAGAIN (nothing held,
 * the token empty) if any block is held exclusive or an earlier request
 * waits for it (RL2: a try never jumps the queue).  For callers that must
 * not block, such as an event loop's fast path (SPEC I13): they park the
 * request and take the blocking path elsewhere. */
int pc_rangelock_trylock_shared (struct pc_rangelock *lock,
                                 struct pc_range_token *tok,
                                 uint64_t first, uint64_t count);
int pc_rangelock_trylock_exclusive (struct pc_rangelock *lock,
                                    struct pc_range_token *tok,
                                    uint64_t first, uint64_t count);
void pc_rangelock_unlock (struct pc_range_token *tok);

void pc_rangelock_get_stats (struct pc_rangelock *lock,
                             struct pc_rangelock_stats *out);

/* Debug: checks internal invariants (no two granted incompatible overlapping
 * entries, lists well formed).  Returns 0 or -EUCLEAN. */
int pc_rangelock_verify (struct pc_rangelock *lock);

#endif
