/* punchcache: a volume's origin record and punched map (pool layer).
 *
 * What: a volume that reads through a remote origin (lib/origin, driven by
 * lib/core/volume.c) has three kinds of logical block (issue 15):
 *   local       mapped in the block map (its data is in the pool);
 *   punched     unmapped, and its bit here is set: it reads zeros and is
 *               never read from the origin again (a trim or zero punched
 *               it, or the origin's copy was all zeros when it was filled);
 *   from-origin unmapped, bit clear: reads go to the origin.
 * (A block reserved for dirty pages is local-to-be: volume.c checks the
 * reservation map before this one.)  This module keeps the origin's
 * descriptor (URI, mode, size) and the punched bits, in RAM and in the
 * pool (format.h "Origin records"), and commits them with the metadata.
 *
 * Why this structure: one bit per logical block, in chunks of one pool
 * block each (pc_omap_bits_per_chunk: 524,032 blocks per 64 KiB chunk, so
 * a 1 TiB volume of 64 KiB blocks needs at most 32 chunks), allocated on
 * the first punch in their range.  A chunk in RAM is the image of its
 * block on disk, so a commit writes it as is.  Chunks are written
 * copy-on-write into a spare block taken when the chunk turned dirty: the
 * reverse-map change that points the chunk at its new block rides in the
 * commit's journal transaction, after the block was written and synced
 * (store.c ST1), so a crash leaves the old or the new chunk, never a torn
 * one, and no commit ever needs to allocate (it cannot wait for space).
 *
 * Invariants:
 *  M1 A dirty chunk has a spare block (taken, not published) for its next
 *     copy; a commit consumes it.
 *  M2 A chunk's bits and its dirty flag change under meta_mutex, and the
 *     commit copies every dirty chunk under meta_mutex in the same hold as
 *     its snapshot of the reverse map: a punch that freed a block and set
 *     its bit is in a commit whole or not at all (never "unmapped but not
 *     punched", which would read origin data in place of data or zeros).
 *  M3 Bits are only ever set while the volume has its origin; they are
 *     never cleared (a local block's bit means nothing: mapped wins).
 *  M4 The descriptor is written before the commit that publishes it, into
 *     a new block (attach, change of URI); the old one is freed by that
 *     commit.
 *
 * Locks: meta_mutex (store.c) protects chunk pointers' creation, bits,
 * dirty flags and spares; readers test bits without it (atomic loads).
 * vol_mutex is held for attach, detach and the descriptor.  Order:
 * vol_mutex -> (range locks) -> commit_mutex -> meta_mutex -> allocator.
 * pc_omap_mark takes a spare (which may commit) before meta_mutex.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"

struct pc_omap_chunk {
  uint64_t pb;                  /* committed copy, or PC_NO_BLOCK */
  uint64_t spare;               /* M1: block for the next copy */
  bool dirty;
  uint64_t words[];             /* bits; atomic */
};

static uint64_t
nchunks_for (const struct pc_pool *pool, uint64_t nblocks)
{
  uint64_t bits = pc_omap_bits_per_chunk (pool->block_size);
  return (nblocks + bits - 1) / bits;
}

int
pc_omap_create (struct pc_pool *pool, struct pc_vol_state *v,
                struct pc_omap **out)
{
  struct pc_omap *m;
  uint64_t n = nchunks_for (pool, v->nblocks);

  if (v->nblocks >= PC_OMAP_LBLOCK_BASE || n > PC_OMAP_MAX_CHUNKS)
    return pc_error (EFBIG, "volume '%s' is too large to have an origin "
                     "(at most %" PRIu64 " blocks)", v->name,
                     (uint64_t) PC_OMAP_MAX_CHUNKS *
                     pc_omap_bits_per_chunk (pool->block_size));
  m = calloc (1, sizeof *m);
  if (m) m->chunk = calloc (n ?: 1, sizeof *m->chunk);
  if (m == NULL || m->chunk == NULL) {
    free (m);
    return pc_error (ENOMEM, "out of memory for the punched map of '%s'",
                     v->name);
  }
  m->bits = pc_omap_bits_per_chunk (pool->block_size);
  m->nchunks = n;
  m->desc_pb = PC_NO_BLOCK;
  *out = m;
  return 0;
}

/* Free RAM; blocks stay as they are (spares return to the allocator). */
void
pc_omap_destroy (struct pc_pool *pool, struct pc_omap *m)
{
  if (m == NULL) return;
  for (uint64_t k = 0; k < m->nchunks; k++) {
    struct pc_omap_chunk *c = m->chunk[k];
    if (c && c->spare != PC_NO_BLOCK && pool->alloc)
      pc_alloc_put_now (pool->alloc, c->spare);
    free (c);
  }
  free (m->chunk);
  free (m);
}

static struct pc_omap_chunk *
chunk_new (const struct pc_pool *pool)
{
  struct pc_omap_chunk *c = calloc (1, sizeof *c + pool->block_size -
                                    PC_OMAP_HEADER);
  if (c) c->pb = c->spare = PC_NO_BLOCK;
  return c;
}

bool
pc_omap_test (const struct pc_omap *m, uint64_t lblock)
{
  uint64_t k = lblock / m->bits, i = lblock % m->bits;
  struct pc_omap_chunk *c;

  if (k >= m->nchunks) return false;
  c = __atomic_load_n (&m->chunk[k], __ATOMIC_ACQUIRE);
  return c && (__atomic_load_n (&c->words[i / 64], __ATOMIC_ACQUIRE) >>
               (i % 64) & 1);
}

/* A block for a chunk's next copy (may commit to free space). */
static int
take_spare (struct pc_pool *pool, uint64_t *pb)
{
  bool clean;

  if (pc_wb_reserve (pool) < 0)
    return -ENOSPC;
  if (pc_wb_take_reserved (pool, pb, &clean) < 0) {
    pc_wb_unreserve (pool);
    return -ENOSPC;
  }
  return 0;
}

int
pc_omap_mark (struct pc_pool *pool, struct pc_vol_state *v, uint64_t lblock)
{
  struct pc_omap *m = v->omap;
  uint64_t k = lblock / m->bits, i = lblock % m->bits;
  uint64_t spare = PC_NO_BLOCK;
  struct pc_omap_chunk *c;
  int r = 0;

  if (k >= m->nchunks)
    return pc_error (ERANGE, "internal error: block %" PRIu64 " past the "
                     "punched map of '%s'", lblock, v->name);
  if (pc_omap_test (m, lblock))
    return 0;
  for (;;) {
    bool need;
    pthread_mutex_lock (&pool->meta_mutex);
    c = m->chunk[k];
    if (c == NULL && (c = chunk_new (pool)) != NULL)
      __atomic_store_n (&m->chunk[k], c, __ATOMIC_RELEASE);
    if (c == NULL) {
      pthread_mutex_unlock (&pool->meta_mutex);
      r = pc_error (ENOMEM, "out of memory for the punched map");
      break;
    }
    if (!c->dirty && c->spare == PC_NO_BLOCK && spare != PC_NO_BLOCK) {
      c->spare = spare;                         /* M1 */
      spare = PC_NO_BLOCK;
    }
    need = !c->dirty && c->spare == PC_NO_BLOCK;
    if (!need) {
      __atomic_or_fetch (&c->words[i / 64], UINT64_C (1) << (i % 64),
                         __ATOMIC_RELEASE);
      c->dirty = true;
    }
    pthread_mutex_unlock (&pool->meta_mutex);
    if (!need) break;
    if ((r = take_spare (pool, &spare)) < 0) {
      r = pc_error (ENOSPC, "pool %s is full: no block for the punched map "
                    "of volume '%s'", pool->path, v->name);
      break;
    }
  }
  if (spare != PC_NO_BLOCK)
    pc_alloc_put_now (pool->alloc, spare);
  __atomic_store_n (&pool->data_dirty, true, __ATOMIC_SEQ_CST);
  return r;
}

/* ---- commit (store.c take_snapshot, meta_mutex held: M2) ---- */

int
pc_omap_snapshot_locked (struct pc_pool *pool, struct pc_omap_out *out)
{
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct pc_omap *m = v->in_use ? v->omap : NULL;
    for (uint64_t k = 0; m && k < m->nchunks; k++) {
      struct pc_omap_chunk *c = m->chunk[k];
      struct pc_omap_write *w;
      if (c == NULL || !c->dirty) continue;
      if (out->n == out->cap) {
        unsigned cap = out->cap ? out->cap * 2 : 8;
        void *p = realloc (out->w, cap * sizeof *out->w);
        if (p == NULL) goto nomem;
        out->w = p;
        out->cap = cap;
      }
      w = &out->w[out->n];
      if ((w->buf = aligned_alloc (PC_IO_ALIGN, pool->block_size)) == NULL)
        goto nomem;
      for (uint64_t j = 0; j < (pool->block_size - PC_OMAP_HEADER) / 8; j++) {
        uint64_t x = __atomic_load_n (&c->words[j], __ATOMIC_ACQUIRE);
        pc_put_le64 ((uint8_t *) w->buf + PC_OMAP_HEADER + j * 8, x);
      }
      pc_omap_chunk_seal (w->buf, pool->block_size, s, k);
      w->pb = c->spare;
      out->n++;
      pc_store_set_owner_locked (pool, c->spare,
                                 pc_rmap_make (s, PC_OMAP_LBLOCK_BASE + 1 + k));
      if (c->pb != PC_NO_BLOCK)
        pc_store_free_block_locked (pool, c->pb);
      c->pb = c->spare;
      c->spare = PC_NO_BLOCK;
      c->dirty = false;
    }
  }
  return 0;
 nomem:
  return pc_error (ENOMEM, "out of memory for a punched-map commit");
}

int
pc_omap_write_out (struct pc_pool *pool, struct pc_omap_out *out, bool do_io)
{
  int r = 0;

  for (unsigned i = 0; i < out->n; i++) {
    if (do_io && r == 0)
      r = pc_io_pwrite_data (&pool->io, out->w[i].buf, pool->block_size,
                             pc_data_offset (pool, out->w[i].pb));
    free (out->w[i].buf);
  }
  free (out->w);
  memset (out, 0, sizeof *out);
  return r;
}

/* ---- load ---- */

/* The reverse map names block pb as record k (0 descriptor, 1 + chunk) of
 * volume slot.  -EUCLEAN with why on a damaged map. */
int
pc_omap_load_entry (struct pc_pool *pool, unsigned slot, uint64_t k,
                    uint64_t pb, char *why, size_t whylen)
{
  struct pc_vol_state *v = &pool->vols[slot];
  int r;

  if (v->omap == NULL && (r = pc_omap_create (pool, v, &v->omap)) < 0) {
    snprintf (why, whylen, "%s", pc_last_error ());
    return r == -ENOMEM ? r : -EUCLEAN;
  }
  if (k == 0) {
    if (v->omap->desc_pb != PC_NO_BLOCK) {
      snprintf (why, whylen, "two origin descriptors (blocks %" PRIu64
                " and %" PRIu64 ")", v->omap->desc_pb, pb);
      return -EUCLEAN;
    }
    v->omap->desc_pb = pb;
    return 0;
  }
  if (k - 1 >= v->omap->nchunks) {
    snprintf (why, whylen, "punched-map chunk %" PRIu64 " lies past the "
              "volume's %" PRIu64 " chunks", k - 1, v->omap->nchunks);
    return -EUCLEAN;
  }
  if (v->omap->chunk[k - 1]) {
    snprintf (why, whylen, "punched-map chunk %" PRIu64 " appears twice",
              k - 1);
    return -EUCLEAN;
  }
  if ((v->omap->chunk[k - 1] = chunk_new (pool)) == NULL)
    return -ENOMEM;
  v->omap->chunk[k - 1]->pb = pb;
  return 0;
}

/* After the reverse map: read and check the volume's records. */
int
pc_omap_load_blocks (struct pc_pool *pool, unsigned slot, char *why,
                     size_t whylen)
{
  struct pc_vol_state *v = &pool->vols[slot];
  struct pc_omap *m = v->omap;
  uint8_t *buf;
  int r = 0;

  if (m == NULL) return 0;
  if (m->desc_pb == PC_NO_BLOCK) {
    snprintf (why, whylen, "punched-map blocks without an origin descriptor");
    return -EUCLEAN;
  }
  if ((buf = aligned_alloc (PC_IO_ALIGN, pool->block_size)) == NULL)
    return -ENOMEM;
  r = pc_io_pread (&pool->io, buf, PC_PAGE_SIZE,
                        pc_data_offset (pool, m->desc_pb));
  if (r < 0)
    snprintf (why, whylen, "cannot read the origin descriptor: %s",
              pc_last_error ());
  else if ((r = pc_origin_desc_decode (buf, &m->desc, why, whylen)) == 0 &&
           (m->desc.slot != slot || m->desc.size != v->size)) {
    snprintf (why, whylen, "origin descriptor names slot %" PRIu32 " and %"
              PRIu64 " bytes, not slot %u and %" PRIu64, m->desc.slot,
              m->desc.size, slot, v->size);
    r = -EUCLEAN;
  }
  for (uint64_t k = 0; r == 0 && k < m->nchunks; k++) {
    struct pc_omap_chunk *c = m->chunk[k];
    char w2[200];
    if (c == NULL) continue;
    r = pc_io_pread (&pool->io, buf, pool->block_size,
                          pc_data_offset (pool, c->pb));
    if (r < 0) {
      snprintf (why, whylen, "cannot read punched-map chunk %" PRIu64 ": %s",
                k, pc_last_error ());
      break;
    }
    if ((r = pc_omap_chunk_check (buf, pool->block_size, slot, k, w2,
                                  sizeof w2)) < 0) {
      snprintf (why, whylen, "punched-map chunk %" PRIu64 " (block %" PRIu64
                ") is damaged: %s", k, c->pb, w2);
      break;
    }
    for (uint64_t j = 0; j < (pool->block_size - PC_OMAP_HEADER) / 8; j++)
      c->words[j] = pc_get_le64 (buf + PC_OMAP_HEADER + j * 8);
  }
  free (buf);
  return r;
}

/* ---- attach, detach, figures (vol_mutex held) ---- */

/* Every block record of the origin: freed (detach, remove). */
int
pc_omap_free_blocks (struct pc_pool *pool, struct pc_omap *m)
{
  int r = 0;

  if (m->desc_pb != PC_NO_BLOCK)
    r = pc_store_free_block (pool, m->desc_pb);
  m->desc_pb = PC_NO_BLOCK;
  for (uint64_t k = 0; r == 0 && k < m->nchunks; k++)
    if (m->chunk[k] && m->chunk[k]->pb != PC_NO_BLOCK) {
      r = pc_store_free_block (pool, m->chunk[k]->pb);
      m->chunk[k]->pb = PC_NO_BLOCK;
    }
  return r;
}

/* Local blocks are counted by the maps already (a block is mapped or
 * reserved, never both); only set bits are visited, a word at a time, so
 * the cost follows what was punched, not the volume's size (this runs
 * for every connection's export info). */
void
pc_omap_count (const struct pc_vol_state *v, uint64_t *punched,
               uint64_t *from_origin)
{
  const struct pc_omap *m = v->omap;
  uint64_t p = 0, local;

  *punched = *from_origin = 0;
  if (m == NULL) return;
  for (uint64_t k = 0; k < m->nchunks; k++) {
    const struct pc_omap_chunk *c = m->chunk[k];
    for (uint64_t j = 0; c && j < m->bits / 64; j++) {
      uint64_t w = __atomic_load_n (&c->words[j], __ATOMIC_ACQUIRE);
      while (w) {
        uint64_t lb = k * m->bits + j * 64 + (uint64_t) __builtin_ctzll (w);
        w &= w - 1;
        if (lb < v->nblocks && pc_blockmap_get (v->map, lb) == PC_NO_BLOCK &&
            pc_blockmap_get (v->resv, lb) == PC_NO_BLOCK)
          p++;
      }
    }
  }
  local = pc_blockmap_count (v->map) + pc_blockmap_count (v->resv);
  *punched = p;
  *from_origin = v->nblocks - local - p;
}

/* Write a new descriptor for v (M4) and free the old one. */
static int
write_descriptor (struct pc_pool *pool, unsigned slot,
                  const struct pc_origin_desc *d, struct pc_omap *m)
{
  uint8_t *page;
  uint64_t pb;
  int r;

  if ((page = aligned_alloc (PC_IO_ALIGN, PC_PAGE_SIZE)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  if ((r = pc_origin_desc_encode (d, page)) < 0) {
    free (page);
    return pc_error (EINVAL, "origin URI '%.80s' cannot be stored (1 to %u "
                     "printable characters)", d->uri, PC_ORIGIN_URI_MAX);
  }
  if ((r = take_spare (pool, &pb)) < 0) {
    free (page);
    return pc_error (ENOSPC, "pool %s is full: no block for the origin "
                     "descriptor", pool->path);
  }
  r = pc_io_pwrite_data (&pool->io, page, PC_PAGE_SIZE,
                         pc_data_offset (pool, pb));
  free (page);
  if (r == 0)
    r = pc_store_set_owner (pool, pb, pc_rmap_make (slot, PC_OMAP_LBLOCK_BASE));
  if (r < 0) {
    pc_alloc_put_now (pool->alloc, pb);
    return r;
  }
  if (m->desc_pb != PC_NO_BLOCK)
    r = pc_store_free_block (pool, m->desc_pb);
  m->desc_pb = pb;
  m->desc = *d;
  return r;
}

int
pc_volume_set_origin (struct pc_pool *pool, const char *name, const char *uri,
                      unsigned mode, uint64_t origin_size)
{
  struct pc_origin_desc d = { .mode = mode, .size = origin_size };
  struct pc_omap *fresh = NULL;
  struct pc_vol_state *v;
  int slot, r = 0;

  if (strlen (uri) > PC_ORIGIN_URI_MAX || !pc_origin_uri_valid (uri))
    return pc_error (EINVAL, "origin URI '%.80s' cannot be stored (1 to %u "
                     "printable characters)", uri, PC_ORIGIN_URI_MAX);
  strcpy (d.uri, uri);
  pthread_mutex_lock (&pool->vol_mutex);
  slot = pc_store_find_volume_locked (pool, name);
  v = slot >= 0 ? &pool->vols[slot] : NULL;
  if (v == NULL)
    r = pc_error (ENOENT, "no volume named '%s' in pool %s", name, pool->path);
  else if (v->size != origin_size)
    r = pc_error (EINVAL, "volume '%s' is %" PRIu64 " bytes but its origin "
                  "%s is %" PRIu64 " bytes: they must match", name, v->size,
                  uri, origin_size);
  else if (v->omap && v->omap->desc.mode == mode &&
           strcmp (v->omap->desc.uri, uri) == 0)
    goto out;                                   /* as recorded */
  else if (pool->readonly)
    r = pc_error (EROFS, "pool %s is open read-only: cannot record origin %s "
                  "for volume '%s'", pool->path, uri, name);
  else if (v->open_count > 0)
    r = pc_error (EBUSY, "volume '%s' is open: its origin cannot change",
                  name);
  else if (v->omap == NULL &&
           (pc_blockmap_count (v->map) || pc_blockmap_count (v->resv)))
    r = pc_error (EEXIST, "volume '%s' already holds %" PRIu64 " blocks of "
                  "its own data: an origin under it would change what it "
                  "reads (use a new volume for origin %s)", name,
                  pc_blockmap_count (v->map) + pc_blockmap_count (v->resv),
                  uri);
  if (r < 0) goto out;
  d.slot = (unsigned) slot;
  if (pool->sb.version < 2) {        /* older programs must not open it */
    pthread_mutex_lock (&pool->commit_mutex);
    pool->sb.version = 2;
    r = pc_store_write_superblock (pool);
    pthread_mutex_unlock (&pool->commit_mutex);
    if (r < 0) goto out;
  }
  if (v->omap == NULL && (r = pc_omap_create (pool, v, &fresh)) < 0)
    goto out;
  r = write_descriptor (pool, (unsigned) slot, &d, fresh ? fresh : v->omap);
  if (r == 0) r = pc_store_commit (pool);
  if (r == 0 && fresh) {
    v->omap = fresh;
    fresh = NULL;
  }
 out:
  pthread_mutex_unlock (&pool->vol_mutex);
  pc_omap_destroy (pool, fresh);
  return r;
}

int
pc_volume_detach_origin (struct pc_pool *pool, const char *name)
{
  struct pc_vol_state *v;
  uint64_t punched, remote;
  int slot, r;

  if ((r = pc_wb_flush (pool)) < 0)
    return r;
  pthread_mutex_lock (&pool->vol_mutex);
  if ((r = pc_store_lookup_unused_locked (pool, name, &slot)) < 0)
    goto out;
  v = &pool->vols[slot];
  if (v->omap == NULL) {
    r = pc_error (EINVAL, "volume '%s' has no origin", name);
    goto out;
  }
  pc_omap_count (v, &punched, &remote);
  if (remote) {
    r = pc_error (EBUSY, "volume '%s' still reads %" PRIu64 " of its %"
                  PRIu64 " blocks from origin %s: read the whole volume "
                  "through the server once (that fills it), then detach",
                  name, remote, v->nblocks, v->omap->desc.uri);
    goto out;
  }
  /* Every block is local or punched: punched ones read zeros, which is
   * what an unmapped block of a volume without an origin reads. */
  if ((r = pc_omap_free_blocks (pool, v->omap)) == 0 &&
      (r = pc_store_commit (pool)) == 0) {
    pc_omap_destroy (pool, v->omap);
    v->omap = NULL;
  }
 out:
  pthread_mutex_unlock (&pool->vol_mutex);
  return r;
}

/* Pool blocks holding the origin's records (descriptor, chunks). */
uint64_t
pc_omap_blocks (const struct pc_omap *m)
{
  uint64_t n = 0;

  if (m == NULL) return 0;
  n += m->desc_pb != PC_NO_BLOCK;
  for (uint64_t k = 0; k < m->nchunks; k++)
    n += m->chunk[k] && m->chunk[k]->pb != PC_NO_BLOCK;
  return n;
}
