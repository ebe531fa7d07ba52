/* punchcache: volumes and their origins (lib/core/overlay.c).
 *
 * The front-ends' calls for origins: probe a URI at start (its size, a
 * clear error if it cannot be reached), connect every volume the pool
 * records an origin for once the process is final (after any fork: the
 * client has threads), disconnect them before the pool closes.
 * pc_params_open_pool / start / close call these for the front-ends.
 */
#ifndef PUNCHCACHE_OVERLAY_H
#define PUNCHCACHE_OVERLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "punchcache/punchcache.h"

#define PC_DEFAULT_ORIGIN_CONNECTIONS 4u

/* Connect once to uri (writable for writethrough), learn its size,
 * disconnect.  0 or -errno with a message naming the URI. */
int pc_overlay_probe (const char *uri, unsigned mode, uint64_t *size);
/* Probe every origin the pool records (sizes must still match). */
int pc_overlay_check_all (struct pc_pool *pool);
/* Give each volume with an origin its live client of `connections`
 * connections (0: the pool's origin-connections=).  All or nothing. */
int pc_overlay_connect_all (struct pc_pool *pool, unsigned connections);
void pc_overlay_disconnect_all (struct pc_pool *pool);
/* Where to say that an origin went down or came back (a line for the
 * server's log; pc_params_open_pool passes its note callback). */
void pc_overlay_set_note (void (*note) (void *opaque, const char *msg),
                          void *opaque);
/* Queue a background read-ahead of [offset, offset+count) on the volume
 * whose prefetcher this is (lib/core/volume.c; NULL: nothing).  Never
 * waits; a hint that may be dropped. */
struct pc_prefetcher;
void pc_overlay_prefetch (struct pc_prefetcher *pf, uint64_t offset,
                          uint64_t count);
/* Is any volume of the pool connected to an origin? */
bool pc_overlay_any (struct pc_pool *pool);

#endif
