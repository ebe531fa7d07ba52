/* punchcached: the server's own figures in the statistics file.
 *
 * What: every second (and once more before the pool closes) the acceptor
 * thread builds a "server" object -- per event loop: connections, requests,
 * replies, bytes, protocol errors; and the asynchronous core's counts of
 * requests completed inline and parked -- and pushes it to the statistics
 * writer (pc_stats_writer_set_section), which puts it beside the pool's
 * figures in stats=PATH.  Pushed, never pulled: the library does not call
 * up into the server.  Without stats= the push is a no-op.
 */
#include <config.h>

#include <stdatomic.h>

#include <json-c/json.h>

#include "punchcache/json.h"
#include "punchcache/stats.h"
#include "server.h"

static void
loop_figures (struct json_object *o, const struct pcd_loop_stats *s, int *err)
{
  pc_json_set_u64 (o, "connections", s->connections, err);
  pc_json_set_u64 (o, "connections_now", s->connections_now, err);
  pc_json_set_u64 (o, "requests", s->requests, err);
  pc_json_set_u64 (o, "replies", s->replies, err);
  pc_json_set_u64 (o, "bytes_in", s->bytes_in, err);
  pc_json_set_u64 (o, "bytes_out", s->bytes_out, err);
  pc_json_set_u64 (o, "protocol_errors", s->protocol_errors, err);
}

void
pcd_stats_push (void)
{
  struct json_object *root, *loops, *core;
  struct pcd_loop_stats sum, one;
  struct pc_core_stats cs;
  unsigned n, i;
  int err = 0;

  if (!pc_stats_writer_active ())
    return;
  root = json_object_new_object ();
  loops = json_object_new_array ();
  core = json_object_new_object ();
  pcd_loops_get_stats (&sum, &n);
  pc_json_set_string (root, "front_end", "punchcached", &err);
  pc_json_set_u64 (root, "event_loops", n, &err);
  loop_figures (root, &sum, &err);
  for (i = 0; i < n; i++) {
    struct json_object *o = json_object_new_object ();
    pcd_loops_get_one (i, &one);
    loop_figures (o, &one, &err);
    pc_json_append (loops, o, &err);
  }
  pc_json_set (root, "loops", loops, &err);
  pc_core_get_stats (pcd_config.core, &cs);
  pc_json_set_u64 (core, "workers", cs.workers, &err);
  pc_json_set_u64 (core, "submitted", cs.submitted, &err);
  pc_json_set_u64 (core, "inline_done", cs.inline_done, &err);
  pc_json_set_u64 (core, "parked", cs.parked, &err);
  pc_json_set_u64 (core, "parked_remote", cs.parked_remote, &err);
  pc_json_set_u64 (core, "remote_workers", cs.remote_workers, &err);
  pc_json_set_u64 (core, "queued_now", cs.queued_now, &err);
  pc_json_set_u64 (core, "queued_max", cs.queued_max, &err);
  pc_json_set (root, "core", core, &err);
  if (err) {
    json_object_put (root);
    pcd_log ("statistics: out of memory building the server's figures");
    return;
  }
  pc_stats_writer_set_section ("server", root);
}
