/* punchcache: the shared block cache.
 *
 * What: one RAM cache of 4 KiB pages for every connection and volume of a
 * pool, holding data read from the pool so repeated reads do not touch the
 * disk (the pool is opened O_DIRECT where possible, so this is the only
 * cache).  Its memory is fixed at creation by the budget: page buffers,
 * entries, hash buckets and ghost table all come out of it.
 *
 * Why these structures:
 *  - Granularity 4 KiB, not the pool block (64 KiB by default): NBD
 *    clients (kernel, qemu, fio) read in 4 KiB units, so a block-sized
 *    entry would read and hold 16x more than asked on every random miss
 *    and fill the budget with cold neighbours; 4 KiB is also the O_DIRECT
 *    alignment unit, so a fill reads straight into the cache page.  The
 *    cost is one lookup per 4 KiB of a large read (about 40 ns against a
 *    4 KiB memcpy of about 200 ns).
 *  - Shards: the key hash picks one of up to 64 shards, each with its own
 *    mutex, hash table, queues and a fixed slice of the entries; threads
 *    only meet on a shard mutex, held for a lookup plus at most one 4 KiB
 *    copy, never across I/O (SPEC I8).
 *  - Policy S3-FIFO (Yang et al., SOSP 2023) per shard: new pages enter a
 *    small FIFO (10% of the shard); a page hit again before it leaves the
 *    small FIFO moves to the main FIFO, others leave and are remembered in
 *    a ghost table; a miss on a remembered key goes straight to main.  Main
 *    is a CLOCK with a 2-bit frequency (a hit page is reinserted, losing
 *    one count).  A one-pass sequential scan therefore only churns the
 *    small FIFO and leaves the hot set in main.  Hits only bump a counter:
 *    no list surgery.  Chosen by measurement: bench/cache-policy (zipf hot
 *    set + scans) against LRU, which stays selectable for that bench.
 *  - The ghost table is a direct-mapped array of (32-bit key fingerprint,
 *    32-bit insertion stamp), two slots per page; a key counts as
 *    remembered while its fingerprint is in its slot and fewer than
 *    main-capacity keys were added since.  A collision only forgets a key
 *    early; a false positive (which would let a scan page into main) needs
 *    a 32-bit fingerprint match.
 *  - Entries live in one array and link by 32-bit index (32 bytes each);
 *    page i's buffer is slab + i * 4096 in one MAP_NORESERVE mapping, so
 *    memory is touched (and counted in RSS) only as pages are used.
 *
 * Entry states: FREE (on the shard's free list), PENDING (reserved by a
 * fill: in the hash, in no queue, never evicted), VALID (in the hash and in
 * exactly one queue).  A VALID page is clean (in the small or main FIFO,
 * evictable) or dirty (write-back, SPEC §1): then it is in the shard's
 * dirty list, or, while a write-back has collected it, in the shard's
 * write-back list -- in neither FIFO, so eviction never sees it (I12).
 *
 * The life of a page under write-back (lib/core/writeback.c drives it):
 *
 *   clean --pc_cache_write--> dirty --wb_collect--> under write-back
 *     ^                         ^  \                 |   |   |
 *     |                         |   pc_cache_write:   |   |   | wb_end(ok),
 *     |                         |   stays dirty       |   |   | not rewritten
 *     |                         +--- wb_end(failed) --+   |   v
 *     |                         +--- wb_end(ok), rewritten +  clean
 *     +------------------------------------------------------+
 *   any VALID state --pc_cache_punch / drop_slot--> FREE (data dropped:
 *   the caller's exclusive invalidate lock makes that the punch's effect)
 *
 * A dirty page remembers dseq, the write sequence number that first made
 * it dirty since it was last clean; a FLUSH that started at sequence S
 * covers every page with dseq <= S.  A page rewritten while under
 * write-back remembers the rewrite's number (rseq) and stays dirty after
 * the write-back with dseq = rseq: what the write-back wrote may predate
 * the rewrite.
 *
 * Invariants:
 *  C1 (budget) page buffers + entries + buckets + ghost slots <= budget
 *     (reported as memory); the number of entries never grows.  Outside
 *     the budget: a fixed 256 KiB of per-slot page counts and the shard
 *     headers (a few hundred bytes each).
 *  C2 A key is in its shard's hash at most once, and only in state PENDING
 *     or VALID; every VALID entry is in exactly one queue; PENDING and FREE
 *     entries are in none.
 *  C3 (I6 for writes) A fill publishes only if its entry's generation is
 *     unchanged since fill_begin; pc_cache_invalidate changes the
 *     generation of a PENDING entry, so a fill that overlapped a write
 *     never publishes what it read before the write landed.
 *  C4 (I6 for punches) pc_cache_punch drops every VALID page of its range.
 *     It does not void PENDING fills: the caller's exclusive invalidate
 *     lock guarantees there are none (counted in punch_fill_overlaps, which
 *     is non-zero only with the debug switch that disables that lock -- the
 *     race test relies on this to show that the lock is what protects).
 *  C5 A PENDING entry is only freed by the fill_end of its own ticket, so
 *     a fill's buffer stays valid until then.
 *  C6 (I12) A dirty page is never evicted and never dropped except by a
 *     punch or a slot drop: eviction only takes clean pages from the
 *     FIFOs; pc_cache_invalidate (write-through writes) never meets a
 *     dirty page, since writes go through the cache in write-back mode.
 *  C7 ndirty counts the dirty pages (in the dirty and write-back lists);
 *     a page is in the write-back list only between wb_collect and
 *     wb_end, and only one write-back holds it.
 *
 * Locks: one mutex per shard, a leaf (lib/LOCKING): nothing else is taken
 * under it and it is never held across I/O.  The per-slot page counts are
 * atomics read without it (a stale zero only skips a walk that would have
 * found nothing the caller could be racing with, see slot_has_pages).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "punchcache/cache.h"

#define NIL UINT32_MAX
#define MAX_SHARDS 64
#define NSLOTS 65536            /* 16-bit slot field of the key */
#define FREQ_MAX 3

enum { E_FREE = 0, E_PENDING, E_VALID };
enum { Q_NONE = 0, Q_SMALL, Q_MAIN, Q_DIRTY, Q_WB };

struct entry {
  uint64_t key;
  uint64_t gen;
  uint64_t dseq;                /* dirty: write sequence that dirtied it */
  uint64_t rseq;                /* under write-back: rewritten at (0: no) */
  uint32_t hnext;               /* hash chain */
  uint32_t prev, next;          /* queue (or free list: next only) */
  uint8_t state, queue, freq;
};

struct queue {
  uint32_t head, tail;          /* head = newest */
  uint32_t size;
};

struct shard {
  pthread_mutex_t mutex;
  uint32_t base, n;             /* entries [base, base + n) */
  uint32_t *buckets;
  uint32_t bmask;
  uint32_t free_head;
  struct queue small, main;
  struct queue dirty, wb;       /* dirty pages; those under write-back */
  uint32_t small_target;
  uint64_t *ghost;              /* fingerprint << 32 | insertion stamp */
  uint32_t gmask, gclock;
  uint64_t next_gen;
  uint32_t pending;
  /* statistics */
  uint64_t hits, misses, fills, fills_discarded, fills_unreserved;
  uint64_t evictions, invalidations, punched, punch_fill_overlaps;
  uint64_t ghost_hits;
  uint64_t dirtied, cleaned, wb_failed, dirty_punched;
} __attribute__ ((aligned (64)));

struct pc_cache {
  uint64_t budget, memory;
  uint32_t capacity;            /* entries */
  unsigned nshards, shard_shift;
  enum pc_cache_policy policy;
  struct entry *entries;
  char *slab;
  size_t slab_bytes;
  struct shard *shards;
  uint32_t *slot_pages;         /* atomic: PENDING + VALID entries per slot */
  uint64_t ndirty;              /* atomic: dirty pages (C7) */
  bool unsafe_evict_dirty;      /* debug: break C6 (I12 test) */
};

/* Bytes of budget one page costs at least: buffer, entry, bucket, two ghost
 * slots (pc_cache_create charges the power-of-two rounding too). */
#define PAGE_COST (PC_CACHE_PAGE + sizeof (struct entry) + 4 + 2 * 8)

static inline uint64_t
mix (uint64_t key)
{
  key ^= key >> 33;
  key *= UINT64_C (0xff51afd7ed558ccd);
  key ^= key >> 33;
  key *= UINT64_C (0xc4ceb9fe1a85ec53);
  key ^= key >> 33;
  return key;
}

static inline struct shard *
shard_of (struct pc_cache *c, uint64_t h)
{
  return &c->shards[c->nshards == 1 ? 0 : h >> c->shard_shift];
}

static inline char *
page_buf (struct pc_cache *c, uint32_t idx)
{
  return c->slab + (size_t) idx * PC_CACHE_PAGE;
}

static inline unsigned
key_slot (uint64_t key)
{
  return (unsigned) (key >> 48);
}

/* ---- queues ---- */

static void
q_push_head (struct pc_cache *c, struct queue *q, uint32_t idx, uint8_t which)
{
  struct entry *e = &c->entries[idx];

  e->prev = NIL;
  e->next = q->head;
  if (q->head != NIL) c->entries[q->head].prev = idx;
  q->head = idx;
  if (q->tail == NIL) q->tail = idx;
  q->size++;
  e->queue = which;
}

static void
q_remove (struct pc_cache *c, struct queue *q, uint32_t idx)
{
  struct entry *e = &c->entries[idx];

  if (e->prev != NIL) c->entries[e->prev].next = e->next;
  else q->head = e->next;
  if (e->next != NIL) c->entries[e->next].prev = e->prev;
  else q->tail = e->prev;
  e->prev = e->next = NIL;
  e->queue = Q_NONE;
  q->size--;
}

static struct queue *
queue_of (struct shard *s, const struct entry *e)
{
  switch (e->queue) {
  case Q_SMALL: return &s->small;
  case Q_DIRTY: return &s->dirty;
  case Q_WB: return &s->wb;
  default: return &s->main;
  }
}

/* ---- hash ---- */

static inline uint32_t
bucket_of (struct shard *s, uint64_t h)
{
  return (uint32_t) h & s->bmask;
}

static uint32_t
lookup (struct pc_cache *c, struct shard *s, uint64_t key, uint64_t h)
{
  uint32_t i = s->buckets[bucket_of (s, h)];

  while (i != NIL && c->entries[i].key != key)
    i = c->entries[i].hnext;
  return i;
}

static void
hash_insert (struct pc_cache *c, struct shard *s, uint32_t idx, uint64_t h)
{
  uint32_t *b = &s->buckets[bucket_of (s, h)];

  c->entries[idx].hnext = *b;
  *b = idx;
}

static void
hash_remove (struct pc_cache *c, struct shard *s, uint32_t idx)
{
  uint32_t *p = &s->buckets[bucket_of (s, mix (c->entries[idx].key))];

  while (*p != idx)
    p = &c->entries[*p].hnext;
  *p = c->entries[idx].hnext;
  c->entries[idx].hnext = NIL;
}

/* ---- ghost table (S3-FIFO) ---- */

static inline uint32_t
ghost_slot (struct shard *s, uint64_t h)
{
  return (uint32_t) (h >> 32) & s->gmask;
}

static inline uint64_t
ghost_fp (uint64_t h)
{
  return (h & 0xffffffff) << 32;
}

static void
ghost_add (struct shard *s, uint64_t h)
{
  if (++s->gclock == 0) s->gclock = 1;
  s->ghost[ghost_slot (s, h)] = ghost_fp (h) | s->gclock;
}

static bool
ghost_has (struct shard *s, uint64_t h)
{
  uint64_t g = s->ghost[ghost_slot (s, h)];
  uint32_t stamp = (uint32_t) g;

  return stamp != 0 && (g & ~(uint64_t) 0xffffffff) == ghost_fp (h) &&
         s->gclock - stamp < s->n - s->small_target;
}

/* ---- entry life cycle ---- */

static void
free_entry (struct pc_cache *c, struct shard *s, uint32_t idx)
{
  struct entry *e = &c->entries[idx];

  __atomic_sub_fetch (&c->slot_pages[key_slot (e->key)], 1, __ATOMIC_RELAXED);
  hash_remove (c, s, idx);
  e->state = E_FREE;
  e->freq = 0;
  e->next = s->free_head;
  s->free_head = idx;
}

static bool
is_dirty (const struct entry *e)
{
  return e->queue == Q_DIRTY || e->queue == Q_WB;
}

/* Remove a VALID entry from its queue and free it. */
static void
drop_valid (struct pc_cache *c, struct shard *s, uint32_t idx)
{
  if (is_dirty (&c->entries[idx]))
    __atomic_sub_fetch (&c->ndirty, 1, __ATOMIC_RELAXED);
  q_remove (c, queue_of (s, &c->entries[idx]), idx);
  free_entry (c, s, idx);
}

static void
evict (struct pc_cache *c, struct shard *s, uint32_t idx)
{
  drop_valid (c, s, idx);
  s->evictions++;
}

/* S3-FIFO: make one entry free.  Returns false if nothing is evictable. */
static bool
evict_one_s3fifo (struct pc_cache *c, struct shard *s)
{
  /* Bounded: each main entry can be reinserted at most FREQ_MAX times and
   * each small entry moves to main at most once before being evicted. */
  for (uint64_t steps = 0; steps <= (uint64_t) s->n * (FREQ_MAX + 2); steps++) {
    if (s->small.size > 0 &&
        (s->small.size >= s->small_target || s->main.size == 0)) {
      uint32_t t = s->small.tail;
      struct entry *e = &c->entries[t];
      if (e->freq > 0) {                /* hit while small: promote */
        q_remove (c, &s->small, t);
        e->freq = 0;
        q_push_head (c, &s->main, t, Q_MAIN);
        continue;
      }
      ghost_add (s, mix (e->key));
      evict (c, s, t);
      return true;
    }
    if (s->main.size == 0)
      return false;
    uint32_t t = s->main.tail;
    struct entry *e = &c->entries[t];
    if (e->freq > 0) {                  /* CLOCK: second chance */
      e->freq--;
      q_remove (c, &s->main, t);
      q_push_head (c, &s->main, t, Q_MAIN);
      continue;
    }
    evict (c, s, t);
    return true;
  }
  return false;
}

static bool
evict_one_lru (struct pc_cache *c, struct shard *s)
{
  if (s->main.size == 0)
    return false;
  evict (c, s, s->main.tail);
  return true;
}

/* Debug (unsafe_evict_dirty, the I12 test): drop the oldest dirty page,
 * before any clean one -- nbdkit's cache filter's bug, which C6 forbids. */
static bool
evict_dirty_debug (struct pc_cache *c, struct shard *s)
{
  if (!c->unsafe_evict_dirty || s->dirty.tail == NIL)
    return false;
  evict (c, s, s->dirty.tail);
  return true;
}

static uint32_t
alloc_entry (struct pc_cache *c, struct shard *s)
{
  uint32_t idx;

  if (s->free_head == NIL && !evict_dirty_debug (c, s) &&
      !(c->policy == PC_CACHE_LRU ? evict_one_lru (c, s)
                                  : evict_one_s3fifo (c, s)))
    return NIL;
  idx = s->free_head;
  s->free_head = c->entries[idx].next;
  c->entries[idx].next = NIL;
  return idx;
}

/* Make a VALID page visible to the policy. */
static void
admit (struct pc_cache *c, struct shard *s, uint32_t idx, uint64_t h)
{
  struct entry *e = &c->entries[idx];

  e->state = E_VALID;
  e->freq = 0;
  if (c->policy == PC_CACHE_LRU)
    q_push_head (c, &s->main, idx, Q_MAIN);
  else if (ghost_has (s, h)) {
    s->ghost_hits++;
    q_push_head (c, &s->main, idx, Q_MAIN);
  }
  else
    q_push_head (c, &s->small, idx, Q_SMALL);
}

static void
hit (struct pc_cache *c, struct shard *s, uint32_t idx)
{
  struct entry *e = &c->entries[idx];

  if (c->policy == PC_CACHE_LRU) {
    q_remove (c, &s->main, idx);
    q_push_head (c, &s->main, idx, Q_MAIN);
  }
  else if (e->freq < FREQ_MAX)
    e->freq++;
  s->hits++;
}

/* ---- creation ---- */

static unsigned
auto_shards (uint32_t capacity)
{
  unsigned n = 1;

  /* At least 64 pages per shard so each shard's small FIFO is useful. */
  while (n < MAX_SHARDS && (uint64_t) n * 2 * 64 <= capacity)
    n *= 2;
  return n;
}

static uint32_t
pow2_at_least (uint32_t x)
{
  uint32_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

static int
shard_init (struct pc_cache *c, struct shard *s, uint32_t base, uint32_t n)
{
  uint32_t nb = pow2_at_least (n);

  s->base = base;
  s->n = n;
  s->bmask = nb - 1;
  s->gmask = nb * 2 - 1;
  s->buckets = malloc (sizeof *s->buckets * nb);
  s->ghost = calloc ((size_t) nb * 2, sizeof *s->ghost);
  if (s->buckets == NULL || s->ghost == NULL)
    return -ENOMEM;
  memset (s->buckets, 0xff, sizeof *s->buckets * nb);
  s->small.head = s->small.tail = s->main.head = s->main.tail = NIL;
  s->dirty.head = s->dirty.tail = s->wb.head = s->wb.tail = NIL;
  s->small_target = n / 10 ? n / 10 : 1;
  s->next_gen = 1;
  s->free_head = NIL;
  for (uint32_t i = base + n; i-- > base; ) {
    struct entry *e = &c->entries[i];
    e->hnext = e->prev = NIL;
    e->next = s->free_head;
    s->free_head = i;
  }
  pthread_mutex_init (&s->mutex, NULL);
  return 0;
}

/* Bytes that cap entries in nshards shards take: page buffers, entries,
 * and per shard a power-of-two bucket array plus twice as many ghost
 * slots. */
static uint64_t
memory_for (uint64_t cap, unsigned nshards)
{
  uint64_t m = cap * (PC_CACHE_PAGE + sizeof (struct entry));

  for (unsigned i = 0; i < nshards; i++) {
    uint64_t n = cap * (i + 1) / nshards - cap * i / nshards;
    m += (uint64_t) pow2_at_least ((uint32_t) n) * (4 + 2 * 8);
  }
  return m;
}

int
pc_cache_create (uint64_t budget, enum pc_cache_policy policy,
                 unsigned nshards, struct pc_cache **out)
{
  struct pc_cache *c;
  uint64_t cap = budget / PAGE_COST, m;
  unsigned want = nshards;
  unsigned i;

  *out = NULL;
  if (budget == 0)
    return 0;
  if (policy != PC_CACHE_S3FIFO && policy != PC_CACHE_LRU)
    return -EINVAL;
  if (cap > UINT32_MAX - 1)
    cap = UINT32_MAX - 1;
  /* PAGE_COST assumes bucket arrays of exactly one slot per page; the
   * power-of-two rounding can add up to that again, so shrink until the
   * whole index fits too (C1).  Converges in a few steps. */
  for (;;) {
    if (cap == 0)
      return -EINVAL;
    nshards = want ? want : auto_shards ((uint32_t) cap);
    if (nshards > MAX_SHARDS || (nshards & (nshards - 1)) || nshards > cap)
      return -EINVAL;
    m = memory_for (cap, nshards);
    if (m <= budget)
      break;
    cap -= (m - budget + PAGE_COST - 1) / PAGE_COST;
  }

  c = calloc (1, sizeof *c);
  if (c == NULL) return -ENOMEM;
  c->budget = budget;
  c->capacity = (uint32_t) cap;
  c->policy = policy;
  c->nshards = nshards;
  c->shard_shift = 64 - (unsigned) __builtin_ctz (nshards);
  c->slab_bytes = (size_t) cap * PC_CACHE_PAGE;
  c->slab = mmap (NULL, c->slab_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  c->entries = calloc (cap, sizeof *c->entries);
  c->shards = aligned_alloc (64, sizeof *c->shards * nshards);
  c->slot_pages = calloc (NSLOTS, sizeof *c->slot_pages);
  if (c->slab == MAP_FAILED) c->slab = NULL;
  if (c->slab == NULL || c->entries == NULL || c->shards == NULL ||
      c->slot_pages == NULL) {
    free (c->shards);
    c->shards = NULL;
    pc_cache_destroy (c);
    return -ENOMEM;
  }
  memset (c->shards, 0, sizeof *c->shards * nshards);
  c->memory = m;
  for (i = 0; i < nshards; i++) {
    uint32_t base = (uint32_t) (cap * i / nshards);
    uint32_t end = (uint32_t) (cap * (i + 1) / nshards);
    if (shard_init (c, &c->shards[i], base, end - base) < 0) {
      c->nshards = i + 1;
      pc_cache_destroy (c);
      return -ENOMEM;
    }
  }
  *out = c;
  return 0;
}

void
pc_cache_destroy (struct pc_cache *c)
{
  if (c == NULL) return;
  if (c->shards) {
    for (unsigned i = 0; i < c->nshards; i++) {
      free (c->shards[i].buckets);
      free (c->shards[i].ghost);
      if (c->shards[i].n)
        pthread_mutex_destroy (&c->shards[i].mutex);
    }
    free (c->shards);
  }
  if (c->slab) munmap (c->slab, c->slab_bytes);
  free (c->entries);
  free (c->slot_pages);
  free (c);
}

/* ---- lookups and fills ---- */

static bool
get_page (struct pc_cache *c, uint64_t key, void *dst, uint32_t off,
          uint32_t len, bool count_miss)
{
  uint64_t h;
  struct shard *s;
  uint32_t idx;
  bool found;

  if (c == NULL) return false;
  h = mix (key);
  s = shard_of (c, h);
  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  found = idx != NIL && c->entries[idx].state == E_VALID;
  if (found) {
    hit (c, s, idx);
    memcpy (dst, page_buf (c, idx) + off, len);
  }
  else if (count_miss)
    s->misses++;
  pthread_mutex_unlock (&s->mutex);
  return found;
}

bool
pc_cache_get (struct pc_cache *c, uint64_t key, void *dst,
              uint32_t off, uint32_t len)
{
  return get_page (c, key, dst, off, len, true);
}

bool
pc_cache_probe (struct pc_cache *c, uint64_t key, void *dst,
                uint32_t off, uint32_t len)
{
  return get_page (c, key, dst, off, len, false);
}

int
pc_cache_fill_begin (struct pc_cache *c, uint64_t key,
                     struct pc_cache_ticket *t,
                     void *dst, uint32_t off, uint32_t len)
{
  uint64_t h;
  struct shard *s;
  uint32_t idx;
  int r = 0;

  if (c == NULL) return -ENOMEM;
  h = mix (key);
  s = shard_of (c, h);
  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  if (idx != NIL && c->entries[idx].state == E_VALID) {
    hit (c, s, idx);
    if (dst) memcpy (dst, page_buf (c, idx) + off, len);
    r = 1;
  }
  else if (idx != NIL) {
    s->fills_unreserved++;
    r = -EBUSY;
  }
  else if ((idx = alloc_entry (c, s)) == NIL) {
    s->fills_unreserved++;
    r = -ENOMEM;
  }
  else {
    struct entry *e = &c->entries[idx];
    e->key = key;
    e->state = E_PENDING;
    e->gen = s->next_gen++;
    hash_insert (c, s, idx, h);
    s->pending++;
    __atomic_add_fetch (&c->slot_pages[key_slot (key)], 1, __ATOMIC_RELAXED);
    t->idx = idx;
    t->gen = e->gen;
    t->buf = page_buf (c, idx);
  }
  pthread_mutex_unlock (&s->mutex);
  return r;
}

void
pc_cache_fill_end (struct pc_cache *c, struct pc_cache_ticket *t, bool ok)
{
  struct entry *e = &c->entries[t->idx];
  uint64_t h = mix (e->key);
  struct shard *s = shard_of (c, h);

  pthread_mutex_lock (&s->mutex);
  s->pending--;
  if (ok && e->gen == t->gen) {                 /* C3 */
    admit (c, s, t->idx, h);
    s->fills++;
  }
  else {
    if (ok) s->fills_discarded++;
    free_entry (c, s, t->idx);
  }
  pthread_mutex_unlock (&s->mutex);
  t->buf = NULL;
}

/* ---- invalidation ---- */

enum drop_mode { DROP_WRITE, DROP_PUNCH, DROP_SLOT };

static void
drop_entry (struct pc_cache *c, struct shard *s, uint32_t idx,
            enum drop_mode mode)
{
  struct entry *e = &c->entries[idx];

  if (e->state == E_VALID) {
    if (mode == DROP_PUNCH && is_dirty (e)) s->dirty_punched++;
    drop_valid (c, s, idx);
    if (mode == DROP_PUNCH) s->punched++;
    else s->invalidations++;
  }
  else if (mode == DROP_PUNCH)
    s->punch_fill_overlaps++;                   /* C4: see above */
  else
    e->gen = s->next_gen++;                     /* C3: void the ticket */
}

static bool
slot_has_pages (struct pc_cache *c, unsigned slot)
{
  return __atomic_load_n (&c->slot_pages[slot], __ATOMIC_RELAXED) != 0;
}

/* Visit every entry in [lo, hi] by scanning whole shards. */
static void
drop_scan (struct pc_cache *c, uint64_t lo, uint64_t hi, enum drop_mode mode)
{
  for (unsigned i = 0; i < c->nshards; i++) {
    struct shard *s = &c->shards[i];
    pthread_mutex_lock (&s->mutex);
    for (uint32_t idx = s->base; idx < s->base + s->n; idx++) {
      struct entry *e = &c->entries[idx];
      if (e->state != E_FREE && e->key >= lo && e->key <= hi)
        drop_entry (c, s, idx, mode);
    }
    pthread_mutex_unlock (&s->mutex);
  }
}

static void
drop_range (struct pc_cache *c, uint64_t key, uint64_t n, enum drop_mode mode)
{
  if (c == NULL || n == 0 || !slot_has_pages (c, key_slot (key)))
    return;
  if (n > c->capacity) {
    drop_scan (c, key, key + n - 1, mode);
    return;
  }
  for (uint64_t k = key; k < key + n; k++) {
    uint64_t h = mix (k);
    struct shard *s = shard_of (c, h);
    uint32_t idx;
    pthread_mutex_lock (&s->mutex);
    if ((idx = lookup (c, s, k, h)) != NIL)
      drop_entry (c, s, idx, mode);
    pthread_mutex_unlock (&s->mutex);
  }
}

void
pc_cache_invalidate (struct pc_cache *c, uint64_t key, uint64_t n)
{
  drop_range (c, key, n, DROP_WRITE);
}

void
pc_cache_punch (struct pc_cache *c, uint64_t key, uint64_t n)
{
  drop_range (c, key, n, DROP_PUNCH);
}

void
pc_cache_drop_slot (struct pc_cache *c, unsigned slot)
{
  if (c == NULL || !slot_has_pages (c, slot & 0xffff))
    return;
  drop_scan (c, PC_CACHE_KEY (slot, 0), PC_CACHE_KEY (slot, 0) | 0xffffffffffffULL,
             DROP_SLOT);
}

/* ---- write-back: dirty pages ---- */

/* Make VALID entry idx dirty (from clean: leave its FIFO). */
static void
make_dirty (struct pc_cache *c, struct shard *s, uint32_t idx, uint64_t seq)
{
  struct entry *e = &c->entries[idx];

  if (e->queue == Q_WB) {                        /* rewritten under wb */
    if (e->rseq == 0) e->rseq = seq;
    return;
  }
  if (e->queue == Q_DIRTY)
    return;
  if (e->queue != Q_NONE)
    q_remove (c, queue_of (s, e), idx);
  e->dseq = seq;
  e->rseq = 0;
  q_push_head (c, &s->dirty, idx, Q_DIRTY);
  __atomic_add_fetch (&c->ndirty, 1, __ATOMIC_RELAXED);
  s->dirtied++;
}

int
pc_cache_write (struct pc_cache *c, uint64_t key, const void *src,
                uint32_t off, uint32_t len, const void *base, uint64_t seq)
{
  uint64_t h;
  struct shard *s;
  uint32_t idx;
  struct entry *e;

  if (c == NULL) return -ENOSPC;
  h = mix (key);
  s = shard_of (c, h);
  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  if (idx != NIL && c->entries[idx].state == E_PENDING) {
    pthread_mutex_unlock (&s->mutex);
    return -EAGAIN;                              /* a fill: wait for it */
  }
  if (idx == NIL) {
    if (base == NULL && (off != 0 || len != PC_CACHE_PAGE)) {
      pthread_mutex_unlock (&s->mutex);
      return -ENOENT;                            /* need the page's bytes */
    }
    if ((idx = alloc_entry (c, s)) == NIL) {
      pthread_mutex_unlock (&s->mutex);
      return -ENOSPC;                            /* all dirty: write back */
    }
    e = &c->entries[idx];
    e->key = key;
    e->state = E_VALID;
    e->queue = Q_NONE;
    e->freq = 0;
    e->gen = s->next_gen++;
    hash_insert (c, s, idx, h);
    __atomic_add_fetch (&c->slot_pages[key_slot (key)], 1, __ATOMIC_RELAXED);
    if (base)
      memcpy (page_buf (c, idx), base, PC_CACHE_PAGE);
  }
  memcpy (page_buf (c, idx) + off, src, len);
  make_dirty (c, s, idx, seq);
  pthread_mutex_unlock (&s->mutex);
  return 0;
}

void
pc_cache_zero_part (struct pc_cache *c, uint64_t key, uint32_t off,
                    uint32_t len)
{
  uint64_t h;
  struct shard *s;
  uint32_t idx;

  if (c == NULL) return;
  h = mix (key);
  s = shard_of (c, h);
  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  if (idx != NIL && c->entries[idx].state == E_VALID)
    memset (page_buf (c, idx) + off, 0, len);
  else if (idx != NIL)
    s->punch_fill_overlaps++;                   /* C4, as punch */
  pthread_mutex_unlock (&s->mutex);
}

void
pc_cache_set_unsafe_evict_dirty (struct pc_cache *c, bool on)
{
  if (c) c->unsafe_evict_dirty = on;
}

uint64_t
pc_cache_dirty_pages (struct pc_cache *c)
{
  return c ? __atomic_load_n (&c->ndirty, __ATOMIC_RELAXED) : 0;
}

static int
key_cmp (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

unsigned
pc_cache_wb_collect (struct pc_cache *c, uint64_t upto, uint64_t *keys,
                     unsigned max)
{
  unsigned n = 0;

  if (c == NULL) return 0;
  for (unsigned i = 0; i < c->nshards && n < max; i++) {
    struct shard *s = &c->shards[i];
    uint32_t idx, prev;
    pthread_mutex_lock (&s->mutex);
    for (idx = s->dirty.tail; idx != NIL && n < max; idx = prev) {
      struct entry *e = &c->entries[idx];
      prev = e->prev;                            /* oldest first */
      if (e->dseq > upto) continue;
      q_remove (c, &s->dirty, idx);
      e->rseq = 0;
      q_push_head (c, &s->wb, idx, Q_WB);
      keys[n++] = e->key;
    }
    pthread_mutex_unlock (&s->mutex);
  }
  qsort (keys, n, sizeof *keys, key_cmp);
  return n;
}

bool
pc_cache_wb_copy (struct pc_cache *c, uint64_t key, void *dst)
{
  uint64_t h = mix (key);
  struct shard *s = shard_of (c, h);
  uint32_t idx;
  bool ok;

  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  ok = idx != NIL && c->entries[idx].queue == Q_WB;
  if (ok)
    memcpy (dst, page_buf (c, idx), PC_CACHE_PAGE);
  pthread_mutex_unlock (&s->mutex);
  return ok;
}

void *
pc_cache_wb_pin (struct pc_cache *c, uint64_t key)
{
  uint64_t h = mix (key);
  struct shard *s = shard_of (c, h);
  uint32_t idx;
  void *buf = NULL;

  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  if (idx != NIL && c->entries[idx].queue == Q_WB)
    buf = page_buf (c, idx);
  pthread_mutex_unlock (&s->mutex);
  return buf;
}

void
pc_cache_wb_end (struct pc_cache *c, uint64_t key, bool ok)
{
  uint64_t h = mix (key);
  struct shard *s = shard_of (c, h);
  uint32_t idx;
  struct entry *e;

  pthread_mutex_lock (&s->mutex);
  idx = lookup (c, s, key, h);
  if (idx == NIL || c->entries[idx].queue != Q_WB) {
    pthread_mutex_unlock (&s->mutex);            /* punched meanwhile */
    return;
  }
  e = &c->entries[idx];
  q_remove (c, &s->wb, idx);
  if (ok && e->rseq == 0) {                      /* clean now */
    __atomic_sub_fetch (&c->ndirty, 1, __ATOMIC_RELAXED);
    s->cleaned++;
    admit (c, s, idx, h);
  }
  else {
    if (ok) e->dseq = e->rseq;                   /* rewritten meanwhile */
    else s->wb_failed++;
    e->rseq = 0;
    q_push_head (c, &s->dirty, idx, Q_DIRTY);
  }
  pthread_mutex_unlock (&s->mutex);
}

uint64_t
pc_cache_oldest_dirty (struct pc_cache *c)
{
  uint64_t min = UINT64_MAX;

  if (c == NULL || pc_cache_dirty_pages (c) == 0) return min;
  for (unsigned i = 0; i < c->nshards; i++) {
    struct shard *s = &c->shards[i];
    pthread_mutex_lock (&s->mutex);
    for (uint32_t idx = s->dirty.head; idx != NIL; idx = c->entries[idx].next)
      if (c->entries[idx].dseq < min) min = c->entries[idx].dseq;
    for (uint32_t idx = s->wb.head; idx != NIL; idx = c->entries[idx].next)
      if (c->entries[idx].dseq < min) min = c->entries[idx].dseq;
    pthread_mutex_unlock (&s->mutex);
  }
  return min;
}

bool
pc_cache_has_dirty (struct pc_cache *c, uint64_t key, uint64_t n)
{
  if (c == NULL || n == 0 || pc_cache_dirty_pages (c) == 0 ||
      !slot_has_pages (c, key_slot (key)))
    return false;
  for (uint64_t k = key; k < key + n; k++) {
    uint64_t h = mix (k);
    struct shard *s = shard_of (c, h);
    uint32_t idx;
    bool d;
    pthread_mutex_lock (&s->mutex);
    idx = lookup (c, s, k, h);
    d = idx != NIL && is_dirty (&c->entries[idx]);
    pthread_mutex_unlock (&s->mutex);
    if (d) return true;
  }
  return false;
}

/* ---- statistics and verification ---- */

void
pc_cache_get_stats (struct pc_cache *c, struct pc_cache_stats *st)
{
  memset (st, 0, sizeof *st);
  if (c == NULL) return;
  st->budget = c->budget;
  st->capacity_pages = c->capacity;
  st->memory = c->memory;
  st->nshards = c->nshards;
  st->policy = c->policy;
  for (unsigned i = 0; i < c->nshards; i++) {
    struct shard *s = &c->shards[i];
    pthread_mutex_lock (&s->mutex);
    st->pages += s->small.size + s->main.size + s->dirty.size + s->wb.size;
    st->dirty_pages += s->dirty.size + s->wb.size;
    st->writeback_pages += s->wb.size;
    st->dirtied += s->dirtied;
    st->cleaned += s->cleaned;
    st->writeback_failed += s->wb_failed;
    st->dirty_punched += s->dirty_punched;
    st->pending += s->pending;
    st->hits += s->hits;
    st->misses += s->misses;
    st->fills += s->fills;
    st->fills_discarded += s->fills_discarded;
    st->fills_unreserved += s->fills_unreserved;
    st->evictions += s->evictions;
    st->invalidations += s->invalidations;
    st->punched += s->punched;
    st->punch_fill_overlaps += s->punch_fill_overlaps;
    st->ghost_hits += s->ghost_hits;
    pthread_mutex_unlock (&s->mutex);
  }
}

static int
verify_queue (struct pc_cache *c, struct shard *s, struct queue *q,
              uint8_t which)
{
  uint32_t n = 0, prev = NIL;

  for (uint32_t i = q->head; i != NIL; prev = i, i = c->entries[i].next) {
    struct entry *e = &c->entries[i];
    if (i < s->base || i >= s->base + s->n || e->state != E_VALID ||
        e->queue != which || e->prev != prev || ++n > s->n)
      return -EUCLEAN;
  }
  return n == q->size && prev == q->tail ? 0 : -EUCLEAN;
}

static int
verify_shard (struct pc_cache *c, struct shard *s, uint32_t *slot_count)
{
  uint32_t nfree = 0, nhashed = 0, npending = 0;

  if (verify_queue (c, s, &s->small, Q_SMALL) < 0 ||
      verify_queue (c, s, &s->main, Q_MAIN) < 0 ||
      verify_queue (c, s, &s->dirty, Q_DIRTY) < 0 ||
      verify_queue (c, s, &s->wb, Q_WB) < 0)
    return -EUCLEAN;
  for (uint32_t i = s->free_head; i != NIL; i = c->entries[i].next)
    if (c->entries[i].state != E_FREE || ++nfree > s->n)
      return -EUCLEAN;
  for (uint32_t b = 0; b <= s->bmask; b++)
    for (uint32_t i = s->buckets[b]; i != NIL; i = c->entries[i].hnext) {
      struct entry *e = &c->entries[i];
      uint64_t h = mix (e->key);
      if (e->state == E_FREE || shard_of (c, h) != s ||
          bucket_of (s, h) != b || ++nhashed > s->n ||
          lookup (c, s, e->key, h) != i)        /* C2: key unique */
        return -EUCLEAN;
      if (e->state == E_PENDING) {
        if (e->queue != Q_NONE) return -EUCLEAN;
        npending++;
      }
      slot_count[key_slot (e->key)]++;
    }
  if (nfree + nhashed != s->n || npending != s->pending ||
      nhashed - npending != s->small.size + s->main.size + s->dirty.size +
                            s->wb.size)
    return -EUCLEAN;
  return 0;
}

int
pc_cache_verify (struct pc_cache *c)
{
  uint32_t *count;
  int r = 0;

  if (c == NULL) return 0;
  count = calloc (NSLOTS, sizeof *count);
  if (count == NULL) return -ENOMEM;
  for (unsigned i = 0; i < c->nshards; i++)
    pthread_mutex_lock (&c->shards[i].mutex);
  uint64_t nd = 0;
  for (unsigned i = 0; r == 0 && i < c->nshards; i++) {
    r = verify_shard (c, &c->shards[i], count);
    nd += c->shards[i].dirty.size + c->shards[i].wb.size;
  }
  if (r == 0 && nd != __atomic_load_n (&c->ndirty, __ATOMIC_RELAXED))
    r = -EUCLEAN;                                /* C7 */
  for (unsigned i = 0; r == 0 && i < NSLOTS; i++)
    if (count[i] != __atomic_load_n (&c->slot_pages[i], __ATOMIC_RELAXED))
      r = -EUCLEAN;
  for (unsigned i = c->nshards; i-- > 0; )
    pthread_mutex_unlock (&c->shards[i].mutex);
  free (count);
  return r;
}
