/* punchcache: the key=value parameters shared by every front-end.
 *
 * `nbdkit punchcache KEY=VALUE...` and `punchcached KEY=VALUE...` take the
 * same keys through this one parser, so a user can switch front-ends
 * without relearning anything; the text of --help for the keys lives here
 * too.  Debug switches (`-D punchcache.NAME=VALUE`) are set by name.
 *
 * All functions return 0 or -errno with pc_last_error() set to a sentence
 * naming the key and the value ("cache=12: too small: ...").
 */
#ifndef PUNCHCACHE_PARAMS_H
#define PUNCHCACHE_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "punchcache/punchcache.h"

#define PC_DEFAULT_VOLUME "default"
#define PC_MAX_VOLUME_PARAMS 64

struct pc_params {
  char *pool_path;               /* pool= (absolute path: servers may chdir /) */
  int64_t create_size;           /* size=, -1 if not given */
  int64_t block_size;            /* block-size=, 0 = default */
  int64_t cache_size;            /* cache=, default 256M */
  char *stats_path;              /* stats= (absolute), or NULL */
  int direct_mode;               /* direct= (enum pc_io_direct) */
  int io_mode;                   /* io= (enum pc_io_backend) */
  int writeback;                 /* writeback=on|off: 1 (default) or 0 */
  int64_t dirty_size;            /* dirty=, 0 = half the cache */
  int64_t dirty_expire_s;        /* dirty-expire=SECONDS, 0 = 30 */
  char *origin;                  /* origin=URI (volume "default"), or NULL */
  int origin_mode;               /* origin-mode=: PC_ORIGIN_* (overlay) */
  int64_t origin_connections;    /* origin-connections=N, 0 = default (4) */
  struct { char *name; int64_t size; } volumes[PC_MAX_VOLUME_PARAMS];
  unsigned nvolumes;             /* volume=NAME:SIZE */
  /* Debug switches, by name (see pc_params_set_debug). */
  struct pc_pool_options debug;  /* only the debug fields are used */
};

/* Defaults (cache 256M, create_size -1, ...). */
void pc_params_init (struct pc_params *p);
void pc_params_free (struct pc_params *p);

/* One KEY=VALUE.  -EINVAL for an unknown key or a bad value. */
int pc_params_set (struct pc_params *p, const char *key, const char *value);
/* "PATH" alone (no '=') means pool=PATH, as nbdkit's magic key. */
#define PC_PARAMS_MAGIC_KEY "pool"
/* One command-line word as nbdkit reads it: "KEY=VALUE" when the part
 * before the first '=' is a key name (a letter, then letters, digits, '_',
 * '-' or '.'), otherwise the whole word is PC_PARAMS_MAGIC_KEY's value
 * ("/pools/a=b" is pool=/pools/a=b).  For front-ends that see the words
 * themselves (punchcached). */
int pc_params_set_arg (struct pc_params *p, const char *arg);

/* Checks across keys (pool= given, block-size range, cache minimum). */
int pc_params_complete (const struct pc_params *p);

/* A debug switch by name, without the "punchcache." prefix:
 * unsafe_no_invalidate_lock, race_delay_us, fill_delay_us,
 * fail_write_every, commit_interval_ms, stats_interval_ms.  -EINVAL for an
 * unknown name or a non-integer value. */
int pc_params_set_debug (struct pc_params *p, const char *name,
                         const char *value);

/* The lines --help shows for the keys (no trailing newline). */
extern const char pc_params_help[];

/* Create the pool if it is missing/empty and size= was given (with a volume
 * "default" of that size), open it with these parameters (readonly as the
 * front-end's -r flag says), and create every volume= that is missing.
 * note(opaque, msg) is called for information the user should see (data
 * I/O is buffered and why; io_uring unavailable and why); it may be NULL.
 * With stats=PATH it also opens the statistics writer (the file is written
 * once here: a path that cannot be written fails).
 * On success *out is the open pool; the caller starts it
 * (pc_params_start_pool) after any fork and closes it
 * (pc_params_close_pool). */
int pc_params_open_pool (const struct pc_params *p, bool readonly,
                         void (*note) (void *opaque, const char *msg),
                         void *opaque, struct pc_pool **out);
/* Start the pool's committer, connect the volumes that have origins
 * (origin-connections= each), and start the statistics writer's thread. */
int pc_params_start_pool (struct pc_pool *pool);
/* Commit, write the final statistics, close the pool: the result of the
 * final commit (pc_pool_close).  NULL: nothing to do. */
int pc_params_close_pool (struct pc_pool *pool);

#endif
