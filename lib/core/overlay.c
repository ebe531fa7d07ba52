/* punchcache: connecting volumes to their origins (issue 15).
 *
 * What: the front-ends' one entry to origins.  pc_overlay_probe connects
 * to a URI once to learn its size and check it (before any fork: the
 * error reaches the user at start); pc_overlay_connect_all gives every
 * volume the pool records an origin for a live client (lib/origin) once
 * the process is what it will stay (after daemonising: the client has
 * threads); pc_overlay_disconnect_all closes them before the pool.  While
 * connected, a thread notes an origin going down or coming back (the
 * front-end's note callback: one line each) and pushes an "origin"
 * section into stats=PATH every second (pc_stats_writer_set_section: pushed, so the statistics layer
 * never calls up into the core).
 *
 * Why: the pool (lib/pool/omap.c) records a volume's origin but never
 * talks to it -- the pool layer is below the origin client's users -- so
 * the live client hangs off the volume's state, set here while no
 * request can run (before serving) and cleared after the last one.
 *
 * Invariants:
 *  OV1 A volume's live client, if any, is connected to the URI its
 *      descriptor records and has the volume's size.
 *  OV2 Clients are set before the first request and closed after the
 *      last (the front-ends call connect_all before serving and
 *      disconnect_all after their workers stop).
 *
 * Locks: stats_mutex protects the stats thread's stop flag (was_up[] is
 * the thread's own once it runs); vol state's
 * origin pointers are written only under OV2's quiet periods.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "punchcache/json.h"
#include "punchcache/origin.h"
#include "punchcache/overlay.h"
#include "punchcache/stats.h"
#include "../pool/store-internal.h"

int
pc_overlay_probe (const char *uri, unsigned mode, uint64_t *size)
{
  struct pc_origin *o;
  int r;

  r = pc_origin_open (uri, 1, mode == PC_ORIGIN_WRITETHROUGH, &o);
  if (r < 0)
    return r;
  *size = pc_origin_size (o);
  pc_origin_close (o);
  return 0;
}

/* ---- the stats section ---- */

static pthread_mutex_t stats_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stats_cond = PTHREAD_COND_INITIALIZER;
static pthread_t stats_thread;
static bool stats_running, stats_stop;
/* The front-end's note (pc_params_open_pool's), and what the monitor saw
 * last of each volume's origin: it says when one goes down or comes back. */
static void (*note_fn) (void *opaque, const char *msg);
static void *note_opaque;
static bool was_up[PC_MAX_VOLUMES];

void
pc_overlay_set_note (void (*note) (void *opaque, const char *msg),
                     void *opaque)
{
  note_fn = note;
  note_opaque = opaque;
}

/* Once a second: an origin that went down or came back is worth a line in
 * the server's log (requests that need it fail meanwhile, each with its
 * own error to its client; this is the operator's one line). */
static void
watch_origins (struct pc_pool *pool)
{
  for (unsigned s = 0; note_fn && s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct pc_origin_stats st;
    char msg[PC_ORIGIN_URI_MAX + 200];
    if (!v->in_use || v->origin == NULL) continue;
    pc_origin_get_stats (v->origin, &st);
    if (st.connected == was_up[s]) continue;
    was_up[s] = st.connected;
    if (st.connected)
      snprintf (msg, sizeof msg, "origin %s of volume '%s' is reachable "
                "again (%" PRIu64 " reconnects so far)", v->omap->desc.uri,
                v->name, st.reconnects);
    else
      snprintf (msg, sizeof msg, "origin %s of volume '%s' is unreachable: "
                "reads that need it fail with EIO until it is back "
                "(reconnecting)", v->omap->desc.uri, v->name);
    note_fn (note_opaque, msg);
  }
}

static struct json_object *
volume_section (struct pc_vol_state *v, int *err)
{
  struct json_object *o = json_object_new_object ();
  const struct pc_origin_fill_stats *f = &v->ostats;
  struct pc_origin_stats st;

  if (o == NULL) { *err = -ENOMEM; return NULL; }
  pc_origin_get_stats (v->origin, &st);
  pc_json_set_string (o, "uri", v->omap->desc.uri, err);
  pc_json_set_string (o, "mode", v->omap->desc.mode == PC_ORIGIN_WRITETHROUGH
                   ? "writethrough" : "overlay", err);
  pc_json_set_bool (o, "connected", st.connected, err);
  pc_json_set_u64 (o, "connections", st.connections, err);
  pc_json_set_u64 (o, "connections_up", st.connections_up, err);
  pc_json_set_u64 (o, "origin_reads", st.reads, err);
  pc_json_set_u64 (o, "bytes_fetched", st.bytes_read, err);
  pc_json_set_u64 (o, "origin_writes", st.writes, err);
  pc_json_set_u64 (o, "bytes_written", st.bytes_written, err);
  pc_json_set_u64 (o, "reconnects", st.reconnects, err);
  pc_json_set_u64 (o, "errors", st.errors, err);
  pc_json_set_u64 (o, "fills", __atomic_load_n (&f->fills, __ATOMIC_RELAXED),
                   err);
  pc_json_set_u64 (o, "fill_blocks",
                   __atomic_load_n (&f->fill_blocks, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "zero_blocks",
                   __atomic_load_n (&f->zero_blocks, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "fill_ns_total",
                   __atomic_load_n (&f->fill_ns_total, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "fill_ns_max",
                   __atomic_load_n (&f->fill_ns_max, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "local_reads",
                   __atomic_load_n (&f->local_reads, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "readahead_blocks",
                   __atomic_load_n (&f->readahead_blocks, __ATOMIC_RELAXED),
                   err);
  pc_json_set_u64 (o, "dirty_fills",
                   __atomic_load_n (&f->dirty_fills, __ATOMIC_RELAXED), err);
  pc_json_set_u64 (o, "fill_errors",
                   __atomic_load_n (&f->errors, __ATOMIC_RELAXED), err);
  return o;
}

static void
push_stats (struct pc_pool *pool)
{
  struct json_object *root = json_object_new_object ();
  int err = 0;

  if (root == NULL) return;
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct json_object *o;
    if (!v->in_use || v->origin == NULL) continue;
    if ((o = volume_section (v, &err)) != NULL)
      json_object_object_add (root, v->name, o);
  }
  if (err == 0)
    pc_stats_writer_set_section ("origin", root);
  else
    json_object_put (root);
}

static void *
stats_main (void *arg)
{
  struct pc_pool *pool = arg;
  struct timespec ts;

  pthread_mutex_lock (&stats_mutex);
  while (!stats_stop) {
    pthread_mutex_unlock (&stats_mutex);
    watch_origins (pool);
    push_stats (pool);
    pthread_mutex_lock (&stats_mutex);
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    if (!stats_stop)
      pthread_cond_timedwait (&stats_cond, &stats_mutex, &ts);
  }
  pthread_mutex_unlock (&stats_mutex);
  return NULL;
}

/* ---- connect, disconnect ---- */

/* OV1: the origin still has the volume's size. */
static int
check_size (const struct pc_vol_state *v, uint64_t size)
{
  if (size == v->size)
    return 0;
  return pc_error (EINVAL, "origin %s of volume '%s' is now %" PRIu64
                   " bytes, the volume %" PRIu64 ": they must match",
                   v->omap->desc.uri, v->name, size, v->size);
}

int
pc_overlay_connect_all (struct pc_pool *pool, unsigned connections)
{
  bool any = false;
  int r = 0;

  if (connections == 0)
    connections = pool->opts.origin_connections
      ? pool->opts.origin_connections : PC_DEFAULT_ORIGIN_CONNECTIONS;
  for (unsigned s = 0; r == 0 && s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    struct pc_origin *o;
    if (!v->in_use || v->omap == NULL || v->origin) continue;
    r = pc_origin_open (v->omap->desc.uri, connections,
                        v->omap->desc.mode == PC_ORIGIN_WRITETHROUGH &&
                        !pool->readonly, &o);
    if (r < 0) break;
    if ((r = check_size (v, pc_origin_size (o))) < 0) {   /* OV1 */
      pc_origin_close (o);
      break;
    }
    v->origin = o;
    was_up[s] = true;
    any = true;
  }
  if (r < 0) {
    pc_overlay_disconnect_all (pool);
    return r;
  }
  if (any && !stats_running) {
    stats_stop = false;
    stats_running = pthread_create (&stats_thread, NULL, stats_main,
                                    pool) == 0;
  }
  return 0;
}

void
pc_overlay_disconnect_all (struct pc_pool *pool)
{
  if (stats_running) {
    pthread_mutex_lock (&stats_mutex);
    stats_stop = true;
    pthread_cond_signal (&stats_cond);
    pthread_mutex_unlock (&stats_mutex);
    pthread_join (stats_thread, NULL);
    stats_running = false;
    watch_origins (pool);               /* the last change, if any */
    push_stats (pool);                  /* the final figures */
  }
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    if (v->in_use && v->origin) {
      pc_origin_close (v->origin);
      v->origin = NULL;
    }
  }
}

int
pc_overlay_check_all (struct pc_pool *pool)
{
  int r = 0;

  for (unsigned s = 0; r == 0 && s < PC_MAX_VOLUMES; s++) {
    struct pc_vol_state *v = &pool->vols[s];
    uint64_t size;
    if (!v->in_use || v->omap == NULL) continue;
    r = pc_overlay_probe (v->omap->desc.uri,
                          pool->readonly ? PC_ORIGIN_OVERLAY
                                         : v->omap->desc.mode, &size);
    if (r == 0)
      r = check_size (v, size);
  }
  return r;
}

bool
pc_overlay_any (struct pc_pool *pool)
{
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++)
    if (pool->vols[s].in_use && pool->vols[s].origin)
      return true;
  return false;
}
