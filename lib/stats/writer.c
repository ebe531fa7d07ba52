/* punchcache: the statistics writer behind stats=PATH.
 *
 * What: one thread per process, owned by this module, that rewrites the
 * statistics file (a snapshot of the pool, pc_pool_get_stats, as JSON)
 * every interval_ms, with the sections front-ends pushed
 * (pc_stats_writer_set_section) as extra top-level keys.  The file is
 * written once synchronously at open, so an unwritable path fails
 * start-up, and once more at close, which pc_params_close_pool calls after
 * the pool's final commit.
 *
 * Why its own thread: the pool's committer used to write the file, so the
 * pool layer called up into statistics.  Now the pool only keeps counters
 * (include/punchcache/counters.h), this module reads them, and front-ends
 * open, start and close the writer around the pool's life through
 * lib/core/params.c (docs/design.md "Layers").  Front-end figures are
 * pushed, never pulled: no callback runs from here into a front-end.
 *
 * Invariants:
 *  W1 At most one writer per process; from open to close its pool stays
 *     open (the caller's promise) and only this thread and close use it.
 *  W2 The file on disk is always a complete document (pc_stats_write_text:
 *     temporary file + rename); a failed periodic write leaves the last
 *     one in place and is retried at the next period.
 *  W3 Each section name is held at most once; a push replaces the object
 *     and releases the old one; close releases them all.  A pushed object
 *     is used only under the mutex (deep-copied for writing), so json-c
 *     objects are never used by two threads at once.
 *
 * Locks: w.mutex protects the sections, the open state and the stop flag.
 * A leaf: held for pointer swaps and deep copies of the sections only,
 * never while taking the pool's snapshot or writing the file
 * (lib/LOCKING).  The thread sleeps on w.cond (CLOCK_MONOTONIC).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "punchcache/json.h"
#include "punchcache/stats.h"
#include "stats-internal.h"

struct section {
  char name[PC_STATS_SECTION_NAME_MAX + 1];
  struct json_object *obj;
};

static struct {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  struct pc_pool *pool;         /* NULL: no writer open */
  char *path;
  unsigned interval_ms;
  bool running, stop;
  pthread_t thread;
  struct section sections[PC_STATS_MAX_SECTIONS];
  unsigned nsections;
} w = { .mutex = PTHREAD_MUTEX_INITIALIZER };

/* The keys the snapshot itself writes (pc_stats_to_object). */
static const char *const reserved[] = {
  "version", "time", "uptime_ms", "pool", "cache", "volumes",
  "invalidate_lock", "writeback",
};

static bool
section_name_valid (const char *name)
{
  size_t len = strlen (name);

  if (len == 0 || len > PC_STATS_SECTION_NAME_MAX ||
      strspn (name, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
    return false;
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strcmp (name, reserved[i]) == 0)
      return false;
  return true;
}

/* Attach deep copies of the sections to root (under the mutex, W3). */
static void
attach_sections (struct json_object *root, int *err)
{
  pthread_mutex_lock (&w.mutex);
  for (unsigned i = 0; i < w.nsections && *err == 0; i++) {
    struct json_object *copy = NULL;
    if (json_object_deep_copy (w.sections[i].obj, &copy, NULL) != 0)
      copy = NULL;
    pc_json_set (root, w.sections[i].name, copy, err);
  }
  pthread_mutex_unlock (&w.mutex);
}

/* One write of the file: snapshot, sections, text, rename (W2). */
static int
write_once (void)
{
  struct pc_stats st;
  struct json_object *root;
  char *text;
  int err = 0, r;

  if ((r = pc_pool_get_stats (w.pool, &st)) < 0)
    return r;
  root = pc_stats_to_object (&st, &err);
  pc_stats_free (&st);
  attach_sections (root, &err);
  if ((r = pc_json_to_text (root, err, &text)) < 0)
    return r;
  r = pc_stats_write_text (w.path, text);
  free (text);
  return r;
}

static void
deadline_after (struct timespec *ts, unsigned ms)
{
  clock_gettime (CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts->tv_nsec >= 1000000000) { ts->tv_sec++; ts->tv_nsec -= 1000000000; }
}

static void *
writer_thread (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&w.mutex);
  while (!w.stop) {
    struct timespec ts;
    deadline_after (&ts, w.interval_ms);
    while (!w.stop &&
           pthread_cond_timedwait (&w.cond, &w.mutex, &ts) != ETIMEDOUT)
      ;
    if (w.stop)
      break;
    pthread_mutex_unlock (&w.mutex);
    write_once ();              /* W2: a failure is retried next period */
    pthread_mutex_lock (&w.mutex);
  }
  pthread_mutex_unlock (&w.mutex);
  return NULL;
}

/* Open or closed, as set_section sees it (under the mutex). */
static void
set_pool (struct pc_pool *pool)
{
  pthread_mutex_lock (&w.mutex);
  w.pool = pool;
  pthread_mutex_unlock (&w.mutex);
}

int
pc_stats_writer_open (struct pc_pool *pool, const char *path,
                      unsigned interval_ms)
{
  int r;

  if (w.pool != NULL)
    return pc_error (EBUSY, "a statistics writer is already open");
  if ((w.path = strdup (path)) == NULL)
    return pc_error (ENOMEM, "out of memory");
  w.interval_ms = interval_ms ?: PC_DEFAULT_STATS_INTERVAL_MS;
  set_pool (pool);
  if ((r = write_once ()) < 0) {
    set_pool (NULL);
    free (w.path);
    w.path = NULL;
  }
  return r;
}

int
pc_stats_writer_start (void)
{
  pthread_condattr_t attr;
  int r;

  if (w.pool == NULL || w.running)
    return 0;
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&w.cond, &attr);
  pthread_condattr_destroy (&attr);
  w.stop = false;
  r = pthread_create (&w.thread, NULL, writer_thread, NULL);
  if (r != 0) {
    pthread_cond_destroy (&w.cond);
    return pc_error (r, "cannot start the statistics thread: %s",
                     strerror (r));
  }
  w.running = true;
  return 0;
}

static void
stop_thread (void)
{
  if (!w.running)
    return;
  pthread_mutex_lock (&w.mutex);
  w.stop = true;
  pthread_cond_signal (&w.cond);
  pthread_mutex_unlock (&w.mutex);
  pthread_join (w.thread, NULL);
  pthread_cond_destroy (&w.cond);
  w.running = false;
}

int
pc_stats_writer_close (void)
{
  int r;

  if (w.pool == NULL)
    return 0;
  stop_thread ();
  r = write_once ();            /* the final figures */
  pthread_mutex_lock (&w.mutex);
  for (unsigned i = 0; i < w.nsections; i++)
    json_object_put (w.sections[i].obj);
  w.nsections = 0;
  w.pool = NULL;
  pthread_mutex_unlock (&w.mutex);
  free (w.path);
  w.path = NULL;
  return r;
}

bool
pc_stats_writer_active (void)
{
  bool open;

  pthread_mutex_lock (&w.mutex);
  open = w.pool != NULL;
  pthread_mutex_unlock (&w.mutex);
  return open;
}

/* The slot for name (a free one if it is new), or NULL if all are taken.
 * Under the mutex. */
static struct section *
find_section (const char *name)
{
  for (unsigned i = 0; i < w.nsections; i++)
    if (strcmp (w.sections[i].name, name) == 0)
      return &w.sections[i];
  if (w.nsections == PC_STATS_MAX_SECTIONS)
    return NULL;
  struct section *s = &w.sections[w.nsections++];
  strcpy (s->name, name);
  s->obj = NULL;
  return s;
}

int
pc_stats_writer_set_section (const char *name, struct json_object *obj)
{
  struct json_object *old = NULL;
  struct section *s;
  int r = 0;

  if (!section_name_valid (name) ||
      !json_object_is_type (obj, json_type_object)) {
    json_object_put (obj);
    return pc_error (EINVAL, "statistics section \"%s\": the name must be "
                     "1 to %u of [a-z0-9_] and not a key of the file, the "
                     "value a JSON object", name, PC_STATS_SECTION_NAME_MAX);
  }
  pthread_mutex_lock (&w.mutex);
  if (w.pool == NULL)
    old = obj;                  /* no writer: nothing is kept */
  else if ((s = find_section (name)) == NULL) {
    old = obj;
    r = -ENOSPC;
  }
  else {
    old = s->obj;
    s->obj = obj;
  }
  pthread_mutex_unlock (&w.mutex);
  json_object_put (old);        /* unreachable by the writer now (W3) */
  if (r < 0)
    return pc_error (-r, "statistics section \"%s\": already %u sections",
                     name, PC_STATS_MAX_SECTIONS);
  return 0;
}
