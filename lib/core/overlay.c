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

/* ---- read-ahead in the background ----
 *
 * A sequential reader's next window is fetched by a thread of the volume's
 * own (with a handle of its own), while the reader is served from the
 * window before: fills overlap instead of following one another (the
 * read's own fill and the window right after it are one origin read,
 * lib/core/volume.c read_ahead).  Jobs are hints: at most PF_JOBS wait,
 * more are dropped, and a job runs as NBD_CMD_CACHE does (pc_prefetch:
 * the invalidate lock shared, fills like a read's). */
#define PF_JOBS 4u

struct pc_prefetcher {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  pthread_t thread;
  struct pc_volume *vol;
  bool stop;
  unsigned n;
  struct { uint64_t offset, count; } job[PF_JOBS];
  uint64_t last;                  /* offset of the last job queued */
};

static void *
prefetch_main (void *arg)
{
  struct pc_prefetcher *pf = arg;

  pc_pool_thread_prepare (pc_volume_pool (pf->vol));
  pthread_mutex_lock (&pf->mutex);
  for (;;) {
    uint64_t offset, count;
    while (pf->n == 0 && !pf->stop)
      pthread_cond_wait (&pf->cond, &pf->mutex);
    if (pf->stop)
      break;
    offset = pf->job[0].offset;
    count = pf->job[0].count;
    memmove (&pf->job[0], &pf->job[1], --pf->n * sizeof pf->job[0]);
    pthread_mutex_unlock (&pf->mutex);
    (void) pc_prefetch (pf->vol, count, offset);   /* a hint: errors too */
    pthread_mutex_lock (&pf->mutex);
  }
  pthread_mutex_unlock (&pf->mutex);
  return NULL;
}

void
pc_overlay_prefetch (struct pc_prefetcher *pf, uint64_t offset,
                     uint64_t count)
{
  if (pf == NULL)
    return;
  pthread_mutex_lock (&pf->mutex);
  if (pf->n < PF_JOBS && !pf->stop && offset != pf->last) {
    pf->job[pf->n].offset = offset;
    pf->job[pf->n].count = count;
    pf->n++;
    pf->last = offset;
    pthread_cond_signal (&pf->cond);
  }
  pthread_mutex_unlock (&pf->mutex);
}

static int
prefetcher_start (struct pc_pool *pool, struct pc_vol_state *v)
{
  struct pc_prefetcher *pf = calloc (1, sizeof *pf);
  int r;

  if (pf == NULL)
    return pc_error (ENOMEM, "out of memory");
  pf->last = UINT64_MAX;
  if ((r = pc_volume_open (pool, v->name, &pf->vol)) < 0) {
    free (pf);
    return r;
  }
  pthread_mutex_init (&pf->mutex, NULL);
  pthread_cond_init (&pf->cond, NULL);
  if ((r = pthread_create (&pf->thread, NULL, prefetch_main, pf)) != 0) {
    pc_volume_close (pf->vol);
    free (pf);
    return pc_error (r, "starting the read-ahead thread of '%s': %s",
                     v->name, strerror (r));
  }
  v->prefetcher = pf;
  return 0;
}

static void
prefetcher_stop (struct pc_vol_state *v)
{
  struct pc_prefetcher *pf = v->prefetcher;

  if (pf == NULL)
    return;
  pthread_mutex_lock (&pf->mutex);
  pf->stop = true;
  pthread_cond_signal (&pf->cond);
  pthread_mutex_unlock (&pf->mutex);
  pthread_join (pf->thread, NULL);
  v->prefetcher = NULL;
  pc_volume_close (pf->vol);
  pthread_cond_destroy (&pf->cond);
  pthread_mutex_destroy (&pf->mutex);
  free (pf);
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
    if (!pool->readonly && (r = prefetcher_start (pool, v)) < 0)
      break;
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
  for (unsigned s = 0; s < PC_MAX_VOLUMES; s++)
    if (pool->vols[s].in_use)
      prefetcher_stop (&pool->vols[s]);      /* before the origins */
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
