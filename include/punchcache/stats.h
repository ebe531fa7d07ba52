/* punchcache: the statistics file (nbdkit punchcache ... stats=PATH) as a
 * C structure -- taken from a live pool, written as JSON, and read back
 * from a file by `punchcache stats` (lib/stats/stats.c takes it, lib/stats/statsfile.c
 * converts it; docs/punchcache.1.md lists the fields).
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
#include "punchcache/punchcache.h"
#include "punchcache/rangelock.h"

#define PC_STATS_VERSION 1
/* The largest statistics file read.  The largest a server writes is about
 * 210 KB (252 volumes, 20-digit counters, a 4 KiB pool path of control
 * characters, each escaped to 6 bytes); json-c needs up to ~250 bytes of
 * memory per value parsed, so a hostile file of this size costs at most
 * ~135 MB while it is refused. */
#define PC_STATS_MAX_SIZE (512u << 10)

struct pc_stats_volume {
  char name[48];
  uint64_t size;                    /* virtual size, bytes */
  uint64_t allocated;               /* bytes mapped */
  unsigned connections;             /* open handles */
  struct pc_rangelock_stats lock;   /* its invalidate lock */
};

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
  struct pc_stats_volume *volumes;  /* pool.nvolumes, in slot order */
};

/* Snapshot a live pool. */
int pc_pool_get_stats (struct pc_pool *pool, struct pc_stats *st);
/* The JSON text of a snapshot (malloc'd, NUL-terminated, in *json). */
int pc_stats_to_json (const struct pc_stats *st, char **json);
/* Read a snapshot back from JSON text or from a file; messages start with
 * name or path ("stats.json: not a punchcache statistics file (no
 * \"version\": 1)"). */
int pc_stats_parse (const char *text, size_t len, const char *name,
                    struct pc_stats *st);
int pc_stats_read_file (const char *path, struct pc_stats *st);
void pc_stats_free (struct pc_stats *st);

#endif
