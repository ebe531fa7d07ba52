/* punchcache: what the files of the statistics module share among
 * themselves (lib/stats/stats.c, statsfile.c, writer.c).  Nothing outside
 * lib/stats/ includes this.
 */
#ifndef PUNCHCACHE_STATS_INTERNAL_H
#define PUNCHCACHE_STATS_INTERNAL_H

#include <json-c/json.h>

#include "punchcache/stats.h"

/* statsfile.c: the JSON object of a snapshot, as pc_stats_to_json writes
 * it; an allocation failure is recorded in *err (see pc_json_set). */
struct json_object *pc_stats_to_object (const struct pc_stats *st, int *err);

/* stats.c: write text to path atomically (temporary file in the same
 * directory + rename): a reader never sees a half-written file. */
int pc_stats_write_text (const char *path, const char *text);

#endif
