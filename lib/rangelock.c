/* punchcache: the range invalidate lock (shared/exclusive over block ranges).
 *
 * What: the user-space twin of Linux's mapping->invalidate_lock, per block
 * range.  Punches lock their blocks exclusive; reads, writes, extents (and
 * later cache fills) lock them shared.
 *
 * Data structure:
 *
 *   block number ──> domain (2^10 blocks) ──hash──> shard (64 per lock)
 *   shard: { mutex, cond, list of segments in arrival order }
 *   segment: one request's blocks inside one domain, granted or waiting
 *
 * A request is split into per-domain segments, acquired in ascending block
 * order; its token holds them (inline for short requests, heap for wide
 * ones).  Why shards and not one interval tree under one mutex: requests on
 * unrelated ranges then touch different mutexes and never contend (I8); a
 * 1024-block domain (64 MiB at 64 KiB blocks) keeps ordinary requests in
 * one segment, while a huge trim costs one segment per domain it covers.
 * Why a list: a shard holds only the in-flight requests that hash to it
 * (a handful), so a linear scan beats any tree.
 *
 * Invariants:
 *  RL1 Within a shard, no two granted segments overlap unless both are
 *      shared.
 *  RL2 (fairness) A segment is granted only when no EARLIER segment in its
 *      shard's list, granted or waiting, overlaps it with at least one of
 *      the two exclusive.  FIFO among conflicting requests: a stream of
 *      readers cannot starve a punch, nor punches a reader.
 *  RL3 (no deadlock) Segments of one request are acquired in ascending
 *      domain order, and a segment waits only for earlier segments of its
 *      own domain.  A waiting request holds only domains below the one it
 *      waits in, so every wait chain moves to strictly higher domains or to
 *      granted segments, and ends.
 *  RL4 Segments of disjoint ranges never wait for each other.
 *
 * Locks: each shard's mutex protects its list and the granted flags; it is
 * held for list manipulation and the conflict scan only, released while
 * waiting (condition variable) and never held across I/O or across two
 * shards.  Callers hold ranges (not mutexes) across I/O.  Stats are
 * atomics.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "punchcache/rangelock.h"

#define DOMAIN_BITS 10
#define NSHARDS 64

struct pc_rl_segment {
  struct pc_rl_segment *prev, *next;
  uint64_t first, count;        /* blocks, inside one domain */
  bool exclusive;
  bool granted;
  uint16_t shard;
};

#define INLINE_SEGS \
  (sizeof ((struct pc_range_token *) 0)->inline_space / (sizeof (struct pc_rl_segment)))
_Static_assert (sizeof ((struct pc_range_token *) 0)->inline_space >=
                2 * sizeof (struct pc_rl_segment), "token too small");

struct shard {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  struct pc_rl_segment *head, *tail;
} __attribute__ ((aligned (64)));

struct pc_rangelock {
  struct shard shards[NSHARDS];
  struct pc_rangelock_stats stats;  /* atomics */
};

int
pc_rangelock_create (struct pc_rangelock **out)
{
  struct pc_rangelock *l;
  unsigned i;

  if (posix_memalign ((void **) &l, 64, sizeof *l) != 0)
    return -ENOMEM;
  memset (l, 0, sizeof *l);
  for (i = 0; i < NSHARDS; i++) {
    pthread_mutex_init (&l->shards[i].mutex, NULL);
    pthread_cond_init (&l->shards[i].cond, NULL);
  }
  *out = l;
  return 0;
}

void
pc_rangelock_destroy (struct pc_rangelock *l)
{
  unsigned i;

  if (l == NULL) return;
  for (i = 0; i < NSHARDS; i++) {
    pthread_mutex_destroy (&l->shards[i].mutex);
    pthread_cond_destroy (&l->shards[i].cond);
  }
  free (l);
}

static unsigned
shard_of (uint64_t block)
{
  uint64_t domain = block >> DOMAIN_BITS;
  return (unsigned) ((domain * UINT64_C (0x9E3779B97F4A7C15)) >> 58);
}

static bool
conflicts (const struct pc_rl_segment *a, const struct pc_rl_segment *b)
{
  return (a->exclusive || b->exclusive) &&
    a->first < b->first + b->count && b->first < a->first + a->count;
}

/* RL2: may s be granted?  (shard mutex held) */
static bool
can_grant (const struct pc_rl_segment *s)
{
  const struct pc_rl_segment *e;

  for (e = s->prev; e != NULL; e = e->prev)
    if (conflicts (e, s))
      return false;
  return true;
}

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Returns true if the acquisition had to wait. */
static bool
acquire_segment (struct pc_rangelock *l, struct pc_rl_segment *s)
{
  struct shard *sh = &l->shards[s->shard];
  bool waited = false;

  pthread_mutex_lock (&sh->mutex);
  s->next = NULL;
  s->prev = sh->tail;
  if (sh->tail) sh->tail->next = s; else sh->head = s;
  sh->tail = s;
  while (!can_grant (s)) {
    waited = true;
    pthread_cond_wait (&sh->cond, &sh->mutex);
  }
  s->granted = true;
  pthread_mutex_unlock (&sh->mutex);
  return waited;
}

static void
release_segment (struct pc_rangelock *l, struct pc_rl_segment *s)
{
  struct shard *sh = &l->shards[s->shard];

  pthread_mutex_lock (&sh->mutex);
  if (s->prev) s->prev->next = s->next; else sh->head = s->next;
  if (s->next) s->next->prev = s->prev; else sh->tail = s->prev;
  pthread_cond_broadcast (&sh->cond);
  pthread_mutex_unlock (&sh->mutex);
}

/* Split [first, first+count) into per-domain segments in tok. */
static int
split (struct pc_range_token *tok, uint64_t first, uint64_t count,
       bool exclusive)
{
  uint64_t last = first + count - 1;
  uint64_t n = (last >> DOMAIN_BITS) - (first >> DOMAIN_BITS) + 1, i;
  uint64_t b = first;

  tok->segs = (struct pc_rl_segment *) tok->inline_space;
  if (n > INLINE_SEGS) {
    tok->segs = calloc (n, sizeof *tok->segs);
    if (tok->segs == NULL) return -ENOMEM;
  }
  for (i = 0; i < n; i++) {
    uint64_t dend = ((b >> DOMAIN_BITS) + 1) << DOMAIN_BITS;
    uint64_t e = dend - 1 < last ? dend - 1 : last;
    tok->segs[i] = (struct pc_rl_segment) {
      .first = b, .count = e - b + 1, .exclusive = exclusive,
      .shard = (uint16_t) shard_of (b),
    };
    b = e + 1;
  }
  tok->nsegs = (unsigned) n;
  return 0;
}

static int
lock_range (struct pc_rangelock *l, struct pc_range_token *tok,
            uint64_t first, uint64_t count, bool exclusive)
{
  uint64_t t0 = 0;
  bool waited = false;
  unsigned i;
  int r;

  if (count == 0 || first + count < first)
    return -EINVAL;
  tok->lock = l;
  tok->first = first;
  tok->count = count;
  tok->exclusive = exclusive;
  if ((r = split (tok, first, count, exclusive)) < 0)
    return r;
  for (i = 0; i < tok->nsegs; i++) {            /* RL3: ascending */
    if (!waited) t0 = now_ns ();
    waited |= acquire_segment (l, &tok->segs[i]);
  }
  __atomic_add_fetch (exclusive ? &l->stats.exclusive_acquired
                      : &l->stats.shared_acquired, 1, __ATOMIC_RELAXED);
  if (waited) {
    __atomic_add_fetch (exclusive ? &l->stats.exclusive_waits
                        : &l->stats.shared_waits, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch (exclusive ? &l->stats.exclusive_wait_ns
                        : &l->stats.shared_wait_ns, now_ns () - t0,
                        __ATOMIC_RELAXED);
  }
  return 0;
}

int
pc_rangelock_lock_shared (struct pc_rangelock *l, struct pc_range_token *tok,
                          uint64_t first, uint64_t count)
{
  return lock_range (l, tok, first, count, false);
}

int
pc_rangelock_lock_exclusive (struct pc_rangelock *l,
                             struct pc_range_token *tok,
                             uint64_t first, uint64_t count)
{
  return lock_range (l, tok, first, count, true);
}

void
pc_rangelock_unlock (struct pc_range_token *tok)
{
  unsigned i;

  for (i = tok->nsegs; i-- > 0; )
    release_segment (tok->lock, &tok->segs[i]);
  if (tok->segs != (struct pc_rl_segment *) tok->inline_space)
    free (tok->segs);
  tok->nsegs = 0;
  tok->segs = NULL;
}

void
pc_rangelock_get_stats (struct pc_rangelock *l, struct pc_rangelock_stats *out)
{
  out->shared_acquired = __atomic_load_n (&l->stats.shared_acquired, __ATOMIC_RELAXED);
  out->exclusive_acquired = __atomic_load_n (&l->stats.exclusive_acquired, __ATOMIC_RELAXED);
  out->shared_waits = __atomic_load_n (&l->stats.shared_waits, __ATOMIC_RELAXED);
  out->exclusive_waits = __atomic_load_n (&l->stats.exclusive_waits, __ATOMIC_RELAXED);
  out->shared_wait_ns = __atomic_load_n (&l->stats.shared_wait_ns, __ATOMIC_RELAXED);
  out->exclusive_wait_ns = __atomic_load_n (&l->stats.exclusive_wait_ns, __ATOMIC_RELAXED);
}

static int
verify_shard (struct shard *sh)
{
  struct pc_rl_segment *a, *b, *prev = NULL;
  int r = 0;

  pthread_mutex_lock (&sh->mutex);
  for (a = sh->head; a != NULL; prev = a, a = a->next) {
    if (a->prev != prev) r = -EUCLEAN;           /* links */
    if (a->granted)
      for (b = a->next; b != NULL; b = b->next)
        if (b->granted && conflicts (a, b)) r = -EUCLEAN;   /* RL1 */
  }
  if (sh->tail != prev) r = -EUCLEAN;
  pthread_mutex_unlock (&sh->mutex);
  return r;
}

int
pc_rangelock_verify (struct pc_rangelock *l)
{
  unsigned i;
  int r = 0;

  for (i = 0; i < NSHARDS; i++)
    if (verify_shard (&l->shards[i]) < 0) r = -EUCLEAN;
  return r;
}
