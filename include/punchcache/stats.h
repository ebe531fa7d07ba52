/* punchcache: the statistics file (nbdkit punchcache ... stats=PATH) as a
 * C structure -- taken from a live pool, written as JSON, and read back
 * from a file by `punchcache stats` (lib/stats/stats.c takes it,
 * lib/stats/statsfile.c converts it, lib/stats/writer.c rewrites the file
 * periodically; docs/punchcache.1.md lists the fields).
 *
 * The statistics module sits above the pool and beside the front-ends: it
 * reads the pool's counters (include/punchcache/counters.h) and is never
 * called by the pool (docs/design.md "Layers").
 *
 * Round trip: for any snapshot s, pc_stats_parse (pc_stats_to_json (s))
 * gives s again in every field the file carries, and pc_stats_to_json of
 * that is the same text.  The reader
 * accepts only what the writer can produce (version 1, every field there
 * with its type, the pool's figures consistent with one another); unknown
 * keys are ignored, so later writers may add fields.
 *
 * All functions return 0 or -errno with a message (pc_last_error()); those
 * that fill a struct pc_stats leave it empty on failure.  A struct
 * pc_stats owns its strings and volume array: release with pc_stats_free.
 */
#ifndef PUNCHCACHE_STATS_H
#define PUNCHCACHE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "punchcache/cache.h"
#include "punchcache/counters.h"
#include "punchcache/punchcache.h"
#include "punchcache/rangelock.h"

#define PC_STATS_VERSION 1
/* The largest statistics file read.  The largest a server writes is about
 * 210 KB (252 volumes, 20-digit counters, a 4 KiB pool path of control
 * characters, each escaped to 6 bytes); json-c needs up to ~250 bytes of
 * memory per value parsed, so a hostile file of this size costs at most
 * ~135 MB while it is refused. */
#define PC_STATS_MAX_SIZE (512u << 10)

/* struct pc_stats_volume, one volume's figures: counters.h. */

struct pc_stats {
  uint64_t time;                    /* when taken: seconds since the epoch */
  uint64_t uptime_ms;               /* since the pool was opened */
  char *pool_path;
  /* block_size, nblocks, capacity, used_blocks, free_blocks, commits,
   * metadata_ram, nvolumes (= entries in volumes[]).  The file does not
   * carry uuid, total_bytes, meta_pages, journal_pages: 0 when read. */
  struct pc_pool_info pool;
  bool readonly;
  bool direct_io;                   /* pool data I/O uses O_DIRECT */
  char *direct_io_note;             /* why not (or NULL) */
  /* Since io_uring batches and prepared blocks: read when present (files
   * of earlier servers lack them: false, NULL, 0). */
  bool io_uring;                    /* multi-block requests as io_uring */
  char *io_uring_note;              /* why not (or NULL) */
  uint64_t prepared_runs;           /* runs zeroed ahead since open */
  uint64_t prepared_total;          /* blocks those runs held */
  bool cache_enabled;
  struct pc_cache_stats cache;      /* all zero when the cache is off */
  struct pc_rangelock_stats lock;   /* invalidate locks, summed over volumes */
  struct pc_wb_stats writeback;     /* all zero with writeback off (and in
                                     * files of servers before write-back) */
  struct pc_stats_volume *volumes;  /* pool.nvolumes, in slot order */
  /* A file's front-end sections (pc_stats_writer_set_section: punchcached's
   * "server"), kept as read -- objects under keys this reader does not
   * know -- and written back out by pc_stats_to_json; NULL if none. */
  struct json_object *sections;
};

/* Snapshot a live pool. */
int pc_pool_get_stats (struct pc_pool *pool, struct pc_stats *st);
/* The snapshot as JSON text (pc_stats_to_json of pc_pool_get_stats). */
int pc_pool_stats_json (struct pc_pool *pool, char **json);
/* Write that JSON to path atomically (temporary file + rename). */
int pc_pool_write_stats (struct pc_pool *pool, const char *path);
/* The JSON text of a snapshot (malloc'd, NUL-terminated, in *json). */
int pc_stats_to_json (const struct pc_stats *st, char **json);
/* Read a snapshot back from JSON text or from a file; messages start with
 * name or path ("stats.json: not a punchcache statistics file (no
 * \"version\": 1)"). */
int pc_stats_parse (const char *text, size_t len, const char *name,
                    struct pc_stats *st);
int pc_stats_read_file (const char *path, struct pc_stats *st);
void pc_stats_free (struct pc_stats *st);

/* ---- the writer behind stats=PATH (lib/stats/writer.c) ----
 *
 * One per process, owned by this module: its own thread rewrites the file
 * every interval_ms.  Front-ends drive it through lib/core/params.c:
 * pc_params_open_pool opens it (the first write happens there, so an
 * unwritable path fails start-up), pc_params_start_pool starts its thread
 * (after any fork), pc_params_close_pool commits, closes it (the final
 * write, after the final commit) and closes the pool. */
#define PC_DEFAULT_STATS_INTERVAL_MS 2000u

/* Write the file once now (0 or -errno with the write's message) and
 * remember pool, path and interval_ms (0 = PC_DEFAULT_STATS_INTERVAL_MS).
 * -EBUSY if a writer is already open.  pool must stay open until
 * pc_stats_writer_close. */
int pc_stats_writer_open (struct pc_pool *pool, const char *path,
                          unsigned interval_ms);
/* Start the periodic thread.  0 (also when no writer is open) or -errno.
 * A failed periodic write is retried at the next period; the file keeps
 * its last complete content. */
int pc_stats_writer_start (void);
/* Stop the thread, write the final figures, forget the pool and every
 * section.  0, or the final write's -errno.  Nothing to do (0) when no
 * writer is open. */
int pc_stats_writer_close (void);
/* Is a writer open? */
bool pc_stats_writer_active (void);

/* A front-end's own figures, pushed (the writer never calls back): obj
 * (a JSON object) is written as the top-level key `name` of every file
 * written from now on, replacing what an earlier push under that name
 * gave.  Takes ownership of obj in every case (released on error, when no
 * writer is open, on replacement and at close).  name: 1 to
 * PC_STATS_SECTION_NAME_MAX of [a-z0-9_], not a key the file already has
 * ("version", "time", "uptime_ms", "pool", "cache", "volumes",
 * "invalidate_lock"); at most PC_STATS_MAX_SECTIONS names.  0 (also when no
 * writer is open: nothing is kept), -EINVAL (bad name, obj not an object)
 * or -ENOSPC (too many names).  Any thread; it takes the writer's mutex for
 * a pointer swap only.  Readers (pc_stats_parse) ignore such keys. */
#define PC_STATS_MAX_SECTIONS 8u
#define PC_STATS_SECTION_NAME_MAX 31u
struct json_object;
int pc_stats_writer_set_section (const char *name, struct json_object *obj);

#endif
