/* punchcache: the offline consistency check (`punchcache check`).
 *
 * What: loads a pool read-only with the same loader the server uses
 * (store.c), but in "report" mode: every problem is reported and counted
 * instead of the first one being fatal, and the journal is replayed into
 * memory only.  Then it runs each module's *_verify() over the loaded
 * structures.  Reusing the loader means check and open can never disagree
 * about what is valid.
 *
 * What it finds: damaged superblock slots, metadata pages failing their
 * checksum or carrying the wrong page number, bad volume table entries,
 * duplicate volume names, reverse-map entries past the pool's end, a
 * logical block mapped to two physical blocks, and internal inconsistency
 * between allocator and maps.  Blocks left unreachable by an interrupted
 * remove/shrink are not damage (the next read-write open reclaims them).
 *
 * Locks: takes the pool's advisory lock shared, so it refuses to run while
 * a server holds the pool.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store-internal.h"

static int
verify_structures (struct pc_pool *pool,
                   void (*report) (void *, const char *), void *opaque)
{
  struct pc_alloc_stats st;
  uint64_t mapped = 0;
  char msg[256];
  unsigned s;
  int n = 0;

  for (s = 0; s < PC_MAX_VOLUMES; s++) {
    if (!pool->vols[s].in_use) continue;
    mapped += pc_blockmap_count (pool->vols[s].map) +
      pc_omap_blocks (pool->vols[s].omap);     /* origin records */
    if (pc_blockmap_verify (pool->vols[s].map) < 0) {
      snprintf (msg, sizeof msg, "volume '%s': block map is inconsistent",
                pool->vols[s].name);
      report (opaque, msg); n++;
    }
  }
  pc_alloc_get_stats (pool->alloc, &st);
  if (pc_alloc_verify (pool->alloc) < 0 || st.used + st.pending != mapped) {
    snprintf (msg, sizeof msg, "allocator disagrees with the maps: %" PRIu64
              " blocks in use, %" PRIu64 " mapped (or origin records)", st.used + st.pending,
              mapped);
    report (opaque, msg); n++;
  }
  return n;
}

int
pc_pool_check (const char *path, void (*report) (void *, const char *),
               void *opaque)
{
  struct pc_pool *pool = calloc (1, sizeof *pool);
  int r;

  if (pool == NULL)
    return pc_error (ENOMEM, "out of memory");
  pool->opts.readonly = true;
  r = pc_store_load (pool, path, true, report, opaque);
  if (r == -EUCLEAN) {          /* damage that stops the loader */
    report (opaque, pc_last_error ());
    r = 1;
  }
  else if (r >= 0 && pool->alloc)
    r += verify_structures (pool, report, opaque);
  pc_store_free (pool);
  return r;
}
