/* punchcache: the range invalidate lock (shared/exclusive over block ranges).
 *
 * What: the user-space twin of Linux's mapping->invalidate_lock, per block
 * range instead of per file (SPEC §4).  Punches (trim, zero) lock their
 * blocks exclusive; reads, writes, extents (and later cache fills) lock them
 * shared.  The same object also serves as the per-block allocation lock.
 *
 * Data structure:
 *
 *   block ──> domain = block >> 12 ──hash──> shard (NSHARDS = 64 per lock)
 *
 *   shard { mutex; head ⇄ entry ⇄ entry ⇄ ... ⇄ tail }   arrival order
 *   entry = struct pc_rl_segment: one request's blocks inside one domain,
 *           granted or waiting; it lives in the requester's token.
 *
 * A lock call splits [first, first+count) into per-domain segments and
 * acquires them one by one in ascending block order.  The segments live in
 * the caller's token: inline for up to PC_RANGE_TOKEN_INLINE segments, on the
 * heap beyond (-ENOMEM if that fails).
 *
 * Why shards: requests on unrelated ranges take different mutexes (SPEC I8,
 * no global lock on the data path).  Why a plain list per shard: a shard holds
 * only the in-flight requests of the domains hashed to it (a handful), so a
 * linear scan is cheaper than any tree, and arrival order, which fairness
 * needs, comes free.
 *
 * Why 2^12-block domains: NBD reads and writes are at most 32 MiB (nbdkit's
 * limit), i.e. at most 8192 blocks at the smallest block size (4 KiB), so
 * they span at most 3 domains and always fit the 4 inline segments: the data
 * path never allocates.  Only trims/zeros (up to 4 GiB per NBD request) may
 * need heap segments: 256 of them (10 KiB) at 4 KiB blocks, 16 at the
 * default 64 KiB.  Larger domains would gather more unrelated requests into
 * one shard; that only costs contention on a mutex held for list work, never
 * a wait across I/O, so we prefer "no allocation on the data path".
 *
 * Invariants (shard mutex held; pc_rangelock_verify checks RL1, RL2, RL5,
 * RL6):
 *  RL1 No two GRANTED entries of a shard overlap unless both are shared.
 *  RL2 (fairness) An entry is granted if and only if no EARLIER entry in its
 *      shard's list, granted or waiting, conflicts with it (overlaps it with
 *      at least one of the two exclusive).  "Only if" gives FIFO among
 *      conflicting requests: a stream of readers cannot starve a punch (nor
 *      punches a reader).  "If" means no lost wake-up: RL2 implies RL1.
 *      Entries are only appended, so the earlier set of an entry only
 *      shrinks; hence RL2 is kept by checking an entry when it is appended
 *      and, when an entry is removed, re-checking the later waiting entries
 *      that conflicted with it (no other entry's answer can change).
 *  RL3 (no deadlock) Segments of one request are acquired in ascending block
 *      order, one at a time, and a segment waits only for conflicting, hence
 *      overlapping, hence same-domain earlier entries.  If request A waits in
 *      domain d for request B, then either B's entry is granted, so B holds
 *      domain d and is either running (it will unlock) or waiting in a domain
 *      > d; or B's entry is waiting too, in domain d, earlier in the list.
 *      So along any wait-for chain the pair (domain, -list position) strictly
 *      increases: there is no cycle, and every chain ends at a running holder.
 *      (Two domains of one request may share a shard; their segments never
 *      overlap, so a request never waits for itself.)
 *  RL4 Disjoint ranges never wait for each other (waiting needs overlap).
 *  RL5 Lists are well formed: prev/next consistent, head/tail/nentries agree,
 *      each entry lies inside one domain hashed to its shard, and a waiting
 *      entry has its waiter's condition variable set.
 *  RL6 nexclusive and nwaiting count the listed exclusive and the listed
 *      not-granted entries.  They make the common case O(1): a shared
 *      request in a shard with no exclusive entry conflicts with nothing
 *      (shared never conflicts with shared), so it is granted without the
 *      scan; a release in a shard with nobody waiting grants nothing, so it
 *      skips the successor scan.  Both shortcuts give exactly the answer
 *      of the scans they skip, so RL2 is unchanged.  (A domain is 256 MiB
 *      at 64 KiB blocks, so fio at QD32 x 2 on a small volume keeps ~64
 *      reads in one shard's list; without RL6 each of them scanned them
 *      all under the mutex.  perf put lock_range + grantable at 0.3% of
 *      the server's cycles there, so this is hygiene, not a speed-up one
 *      can measure on this machine.)
 *
 * Fairness is per domain, not global: a wide exclusive request still
 * waiting in domain d may find, once it reaches domain d+1, a later shared
 * request already granted there; it then queues behind it, and from then on
 * later arrivals queue behind it.  Nobody starves.
 *
 * Waiting: each waiter has its own condition variable (on its stack, set in
 * its entry while it waits).  The releaser grants the entries that became
 * grantable (RL2) and signals exactly those waiters: no thundering herd, and
 * a woken waiter never re-checks anything (its granted flag was set for it).
 *
 * Locks: shard->mutex protects the shard's list, nentries, and every listed
 * entry's prev/next/granted/wake.  It is held for list manipulation and the
 * conflict scans only: released while waiting (pthread_cond_wait), never
 * held across I/O nor together with another shard's mutex.  Range holders
 * hold no mutex.  Stats are relaxed atomics, no lock.  Lock order of range
 * lock objects between each other: lib/LOCKING.
 *
 * Token life: the token must not move (be copied) between lock and unlock,
 * since tok->segs may point into it.  On any error nothing is held and the
 * token is left empty (unlock on it is a no-op).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "punchcache/clock.h"
#include "punchcache/rangelock.h"

#define DOMAIN_BITS 12
#define DOMAIN_BLOCKS (UINT64_C (1) << DOMAIN_BITS)
#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
/* Refuse absurd ranges (> 2^36 blocks = 4 PiB at 64 KiB blocks) with
 * -ENOMEM rather than try a multi-GiB token allocation. */
#define MAX_SEGS (UINT64_C (1) << 24)

struct pc_rl_segment {
  struct pc_rl_segment *prev, *next;  /* shard list, arrival order */
  pthread_cond_t *wake;               /* waiter's cond while waiting */
  uint64_t first;                     /* first block */
  uint32_t count;                     /* 1 .. DOMAIN_BLOCKS, same domain */
  uint16_t shard;
  bool exclusive;
  bool granted;
};

_Static_assert (PC_RANGE_TOKEN_INLINE * sizeof (struct pc_rl_segment)
               <= sizeof ((struct pc_range_token *) 0)->inline_space,
               "inline segments must fit the token's inline_space");
_Static_assert (_Alignof (struct pc_rl_segment) <= _Alignof (uint64_t),
               "inline_space is not aligned enough for segments");

struct shard {
  pthread_mutex_t mutex;
  struct pc_rl_segment *head, *tail;  /* protected by mutex */
  uint64_t nentries;                  /* protected by mutex */
  uint32_t nexclusive;                /* listed exclusive entries (RL6) */
  uint32_t nwaiting;                  /* listed entries not granted (RL6) */
} __attribute__ ((aligned (64)));     /* one cache line each */

struct stats {
  _Atomic uint64_t acquired[2], waits[2], wait_ns[2];  /* [exclusive] */
};

struct pc_rangelock {
  struct shard shards[NSHARDS];
  struct stats stats;
};

/* ---- small helpers ---- */

static void
shard_lock (struct shard *sh)
{
  pthread_mutex_lock (&sh->mutex);
}

static void
shard_unlock (struct shard *sh)
{
  pthread_mutex_unlock (&sh->mutex);
}

static unsigned
shard_of (uint64_t block)
{
  uint64_t domain = block >> DOMAIN_BITS;

  return (unsigned) ((domain * UINT64_C (0x9E3779B97F4A7C15))
                     >> (64 - SHARD_BITS));
}


static bool
conflicts (const struct pc_rl_segment *a, const struct pc_rl_segment *b)
{
  return (a->exclusive || b->exclusive) &&
    a->first < b->first + b->count && b->first < a->first + a->count;
}

/* RL2: true if no earlier entry conflicts with s.  (shard mutex held) */
static bool
grantable (const struct pc_rl_segment *s)
{
  const struct pc_rl_segment *e;

  for (e = s->prev; e != NULL; e = e->prev)
    if (conflicts (e, s))
      return false;
  return true;
}

/* ---- create / destroy ---- */

int
pc_rangelock_create (struct pc_rangelock **out)
{
  struct pc_rangelock *l;
  unsigned i;

  if (posix_memalign ((void **) &l, 64, sizeof *l) != 0)
    return -ENOMEM;
  memset (l, 0, sizeof *l);
  for (i = 0; i < NSHARDS; i++)
    pthread_mutex_init (&l->shards[i].mutex, NULL);
  *out = l;
  return 0;
}

/* The caller guarantees nobody holds or waits for a range. */
void
pc_rangelock_destroy (struct pc_rangelock *l)
{
  unsigned i;

  if (l == NULL)
    return;
  for (i = 0; i < NSHARDS; i++)
    pthread_mutex_destroy (&l->shards[i].mutex);
  free (l);
}

/* ---- shard lists (shard mutex held) ---- */

static void
list_append (struct shard *sh, struct pc_rl_segment *s)
{
  sh->nexclusive += s->exclusive;
  s->next = NULL;
  s->prev = sh->tail;
  if (sh->tail)
    sh->tail->next = s;
  else
    sh->head = s;
  sh->tail = s;
  sh->nentries++;
}

static void
list_remove (struct shard *sh, struct pc_rl_segment *s)
{
  sh->nexclusive -= s->exclusive;
  if (s->prev)
    s->prev->next = s->next;
  else
    sh->head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    sh->tail = s->prev;
  sh->nentries--;
}

/* RL2 after removing 'gone' (already unlinked; its next pointer still
 * names its old successor): only later waiting entries that conflicted
 * with it can have become grantable. */
static void
grant_successors (struct shard *sh, const struct pc_rl_segment *gone,
                  struct pc_rl_segment *from)
{
  struct pc_rl_segment *e;

  for (e = from; e != NULL && sh->nwaiting > 0; e = e->next)
    if (!e->granted && conflicts (e, gone) && grantable (e)) {
      e->granted = true;
      sh->nwaiting--;
      pthread_cond_signal (e->wake);
    }
}

/* ---- acquire / release one segment ---- */

/* Called with the shard mutex held and s not grantable; blocks until a
 * releaser grants s (RL2), unlocks.  Returns the ns spent waiting, plus one
 * so that a wait never counts as "did not wait". */
static uint64_t
wait_granted (struct shard *sh, struct pc_rl_segment *s)
{
  pthread_cond_t cond;
  uint64_t t0 = pc_now_ns ();

  pthread_cond_init (&cond, NULL);
  s->wake = &cond;
  while (!s->granted)
    pthread_cond_wait (&cond, &sh->mutex);
  s->wake = NULL;
  shard_unlock (sh);
  pthread_cond_destroy (&cond);   /* nobody signals a granted entry */
  return pc_now_ns () - t0 + 1;
}

/* Returns the ns spent waiting (0: granted at once). */
static uint64_t
acquire_segment (struct pc_rangelock *l, struct pc_rl_segment *s)
{
  struct shard *sh = &l->shards[s->shard];

  shard_lock (sh);
  list_append (sh, s);
  s->granted = (!s->exclusive && sh->nexclusive == 0) || grantable (s);
  if (!s->granted) {
    sh->nwaiting++;
    return wait_granted (sh, s);
  }
  shard_unlock (sh);
  return 0;
}

static void
release_segment (struct pc_rangelock *l, struct pc_rl_segment *s)
{
  struct shard *sh = &l->shards[s->shard];

  shard_lock (sh);
  list_remove (sh, s);
  if (sh->nwaiting > 0)
    grant_successors (sh, s, s->next);
  shard_unlock (sh);
}

/* Non-blocking acquire (pc_rangelock_trylock_shared): grant s only if that
 * needs no wait; otherwise leave the shard as it was.  An entry that is
 * appended and removed again at once, never granted, was the list's tail:
 * nobody is behind it, so its removal changes no other entry's RL2 answer
 * and nobody needs waking. */
static bool
try_acquire_segment (struct pc_rangelock *l, struct pc_rl_segment *s)
{
  struct shard *sh = &l->shards[s->shard];

  shard_lock (sh);
  list_append (sh, s);
  s->granted = (!s->exclusive && sh->nexclusive == 0) || grantable (s);
  if (!s->granted)
    list_remove (sh, s);
  shard_unlock (sh);
  return s->granted;
}

/* ---- lock / unlock ---- */

/* Split [first, first+count) into per-domain segments in tok. */
static int
split (struct pc_range_token *tok, uint64_t first, uint64_t count,
       bool exclusive)
{
  uint64_t last = first + count - 1, b = first, n, i;

  n = (last >> DOMAIN_BITS) - (first >> DOMAIN_BITS) + 1;
  if (n > MAX_SEGS)
    return -ENOMEM;
  tok->segs = (struct pc_rl_segment *) tok->inline_space;
  if (n > PC_RANGE_TOKEN_INLINE &&
      (tok->segs = calloc (n, sizeof *tok->segs)) == NULL)
    return -ENOMEM;
  for (i = 0; i < n; i++) {
    uint64_t e = b | (DOMAIN_BLOCKS - 1);  /* last block of b's domain */
    if (e > last)
      e = last;
    tok->segs[i] = (struct pc_rl_segment) {
      .first = b, .count = (uint32_t) (e - b + 1), .exclusive = exclusive,
      .shard = (uint16_t) shard_of (b),
    };
    b = e + 1;
  }
  tok->nsegs = (unsigned) n;
  return 0;
}

static void
count_acquisition (struct pc_rangelock *l, bool exclusive, uint64_t ns)
{
  struct stats *st = &l->stats;

  atomic_fetch_add_explicit (&st->acquired[exclusive], 1,
                             memory_order_relaxed);
  if (ns == 0)
    return;
  atomic_fetch_add_explicit (&st->waits[exclusive], 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&st->wait_ns[exclusive], ns,
                             memory_order_relaxed);
}

/* Fill tok for [first, first+count) and split it into its segments;
 * nothing is acquired.  On error the token is left empty. */
static int
token_init (struct pc_rangelock *l, struct pc_range_token *tok,
            uint64_t first, uint64_t count, bool exclusive)
{
  int r;

  *tok = (struct pc_range_token) {
    .lock = l, .first = first, .count = count, .exclusive = exclusive,
  };
  if (count == 0 || first + count < first)
    return -EINVAL;
  if ((r = split (tok, first, count, exclusive)) < 0) {
    tok->segs = NULL;
    return r;
  }
  return 0;
}

static int
lock_range (struct pc_rangelock *l, struct pc_range_token *tok,
            uint64_t first, uint64_t count, bool exclusive)
{
  uint64_t ns = 0;
  unsigned i;
  int r;

  if ((r = token_init (l, tok, first, count, exclusive)) < 0)
    return r;
  for (i = 0; i < tok->nsegs; i++)           /* RL3: ascending order */
    ns += acquire_segment (l, &tok->segs[i]);
  count_acquisition (l, exclusive, ns);
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

static int
trylock_range (struct pc_rangelock *l, struct pc_range_token *tok,
               uint64_t first, uint64_t count, bool exclusive)
{
  unsigned i;
  int r;

  if ((r = token_init (l, tok, first, count, exclusive)) < 0)
    return r;
  for (i = 0; i < tok->nsegs; i++)           /* RL3: ascending order */
    if (!try_acquire_segment (l, &tok->segs[i])) {
      tok->nsegs = i;                        /* give back what we got */
      pc_rangelock_unlock (tok);
      return -EAGAIN;
    }
  count_acquisition (l, exclusive, 0);
  return 0;
}

int
pc_rangelock_trylock_shared (struct pc_rangelock *l,
                             struct pc_range_token *tok,
                             uint64_t first, uint64_t count)
{
  return trylock_range (l, tok, first, count, false);
}

int
pc_rangelock_trylock_exclusive (struct pc_rangelock *l,
                                struct pc_range_token *tok,
                                uint64_t first, uint64_t count)
{
  return trylock_range (l, tok, first, count, true);
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
  struct stats *st = &l->stats;

  *out = (struct pc_rangelock_stats) {
    .shared_acquired = atomic_load_explicit (&st->acquired[0],
                                             memory_order_relaxed),
    .exclusive_acquired = atomic_load_explicit (&st->acquired[1],
                                                memory_order_relaxed),
    .shared_waits = atomic_load_explicit (&st->waits[0], memory_order_relaxed),
    .exclusive_waits = atomic_load_explicit (&st->waits[1],
                                             memory_order_relaxed),
    .shared_wait_ns = atomic_load_explicit (&st->wait_ns[0],
                                            memory_order_relaxed),
    .exclusive_wait_ns = atomic_load_explicit (&st->wait_ns[1],
                                               memory_order_relaxed),
  };
}

/* ---- verify ---- */

/* RL5 for one entry, and RL2 (which implies RL1). */
static bool
entry_ok (const struct pc_rl_segment *e, unsigned shard)
{
  if (e->count == 0 || e->count > DOMAIN_BLOCKS ||
      (e->first >> DOMAIN_BITS) != ((e->first + e->count - 1) >> DOMAIN_BITS))
    return false;
  if (e->shard != shard || shard_of (e->first) != shard)
    return false;
  if (!e->granted && e->wake == NULL)
    return false;
  return e->granted == grantable (e);
}

/* RL1, checked on its own so a broken RL2 check cannot hide it. */
static bool
granted_compatible (const struct pc_rl_segment *a)
{
  const struct pc_rl_segment *b;

  for (b = a->next; a->granted && b != NULL; b = b->next)
    if (b->granted && conflicts (a, b))
      return false;
  return true;
}

/* RL5 links, walking at most nentries + 1 steps (a corrupt list may loop). */
static bool
links_ok (const struct shard *sh)
{
  const struct pc_rl_segment *e, *prev = NULL;
  uint64_t n = 0;

  for (e = sh->head; e != NULL && n <= sh->nentries; prev = e, e = e->next) {
    if (e->prev != prev)
      return false;
    n++;
  }
  return e == NULL && n == sh->nentries && sh->tail == prev;
}

static int
verify_shard (struct shard *sh, unsigned shard)
{
  const struct pc_rl_segment *e;
  uint32_t nexcl = 0, nwait = 0;
  int r = 0;

  shard_lock (sh);
  if (!links_ok (sh))
    r = -EUCLEAN;
  for (e = sh->head; r == 0 && e != NULL; e = e->next) {
    if (!entry_ok (e, shard) || !granted_compatible (e))
      r = -EUCLEAN;
    nexcl += e->exclusive;
    nwait += !e->granted;
  }
  if (r == 0 && (nexcl != sh->nexclusive || nwait != sh->nwaiting))
    r = -EUCLEAN;                                       /* RL6 */
  shard_unlock (sh);
  return r;
}

int
pc_rangelock_verify (struct pc_rangelock *l)
{
  unsigned i;
  int r = 0;

  for (i = 0; i < NSHARDS; i++)
    if (verify_shard (&l->shards[i], i) < 0)
      r = -EUCLEAN;
  return r;
}
