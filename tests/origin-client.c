/* Description: drives lib/origin/ (the client of a remote origin export)
 * against real nbdkit origins, for tests/test-origin-client.sh.
 *
 * Usage: origin-client COMMAND ARGS...
 *   open URI CONNS rw|ro        open; print "size=N readonly=B" (exit 0),
 *                               or "open: ERRNO-NAME: message" (exit 3)
 *   roundtrip URI CONNS THREADS ITERS
 *                               THREADS threads each write and read back
 *                               ITERS patterned requests (4 KiB .. 1 MiB,
 *                               half of the reads asynchronous) in their
 *                               own part of the first quarter of the
 *                               origin, then one write and read of the
 *                               other three (48 MiB of 64: split across
 *                               connections);
 *                               every byte is checked; figures printed
 *   extents URI OFFSET LENGTH   print "OFF LEN zero|data" per run
 *   mkpattern FILE SIZE         write the pattern to FILE
 *   readloop URI CONNS SECONDS  4 threads read random 64 KiB pieces of a
 *                               pattern origin and check them, until
 *                               SECONDS pass or, once reads have failed,
 *                               200 reads after the last failure have
 *                               succeeded; print "ok= eio= other= bad=
 *                               ok_after= reconnects=" and the first
 *                               messages of failures
 *   timeout URI MS              timeout MS, one 4 KiB read: print
 *                               "rc= elapsed_ms= timeouts=" and its error
 *
 * Pattern: the 8-byte word at offset W (a multiple of 8) is mix(W + 1), so
 * zeros, shifted or stale data are all detected.
 * Exit: 0 ok, 1 a check failed, 2 usage or setup error, 3 open refused.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/origin.h"
#include "punchcache/punchcache.h"

static uint64_t
mix (uint64_t x)
{
  x ^= x >> 33; x *= UINT64_C (0xff51afd7ed558ccd);
  x ^= x >> 33; x *= UINT64_C (0xc4ceb9fe1a85ec53);
  return x ^ (x >> 33);
}

/* Fill/check buf as the bytes at offset off of pattern seed. */
static void
fill (void *buf, size_t len, uint64_t off, uint64_t seed)
{
  uint64_t *w = buf;
  size_t i;

  for (i = 0; i < len / 8; i++)
    w[i] = mix (off + 8 * i + 1 + seed);
}

static bool
check (const void *buf, size_t len, uint64_t off, uint64_t seed)
{
  const uint64_t *w = buf;
  size_t i;

  for (i = 0; i < len / 8; i++)
    if (w[i] != mix (off + 8 * i + 1 + seed))
      return false;
  return true;
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *
errname (int err)
{
  switch (-err) {
  case EINVAL: return "EINVAL";
  case EIO: return "EIO";
  case EROFS: return "EROFS";
  case ECONNREFUSED: return "ECONNREFUSED";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case ETIMEDOUT: return "ETIMEDOUT";
  case ENOMEM: return "ENOMEM";
  default: return "E?";
  }
}

static struct pc_origin *
open_or_die (const char *uri, unsigned conns, bool writable)
{
  struct pc_origin *o;
  int r = pc_origin_open (uri, conns, writable, &o);

  if (r < 0) {
    printf ("open: %s: %s\n", errname (r), pc_last_error ());
    exit (3);
  }
  return o;
}

/* ---- roundtrip ---- */

struct rt {
  struct pc_origin *o;
  unsigned id, iters;
  uint64_t base, span;
  atomic_uint failures;
};

struct async_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  int result;
};

static void
async_cb (void *opaque, int result)
{
  struct async_wait *aw = opaque;

  pthread_mutex_lock (&aw->lock);
  aw->done = true;
  aw->result = result;
  pthread_cond_signal (&aw->cond);
  pthread_mutex_unlock (&aw->lock);
}

static int
read_async (struct pc_origin *o, void *buf, uint64_t len, uint64_t off)
{
  struct async_wait aw = { PTHREAD_MUTEX_INITIALIZER,
                           PTHREAD_COND_INITIALIZER, false, 0 };
  int r = pc_origin_pread_async (o, buf, len, off, async_cb, &aw);

  if (r < 0)
    return r;
  pthread_mutex_lock (&aw.lock);
  while (!aw.done)
    pthread_cond_wait (&aw.cond, &aw.lock);
  pthread_mutex_unlock (&aw.lock);
  return aw.result;
}

static void *
rt_thread (void *arg)
{
  struct rt *t = arg;
  size_t max = 1024 * 1024;
  char *wb = malloc (max), *rb = malloc (max);
  unsigned i;
  uint64_t rnd = t->id * 7919 + 1;

  for (i = 0; wb && rb && i < t->iters; i++) {
    uint64_t len, off;
    int r;

    rnd = mix (rnd);
    len = 4096u << (rnd % 9);              /* 4 KiB .. 1 MiB */
    off = t->base + (mix (rnd + 1) % ((t->span - len) / 4096)) * 4096;
    fill (wb, len, off, t->id * 1000 + i);
    r = pc_origin_pwrite (t->o, wb, len, off, i % 8 == 0);
    if (r < 0) {
      fprintf (stderr, "thread %u: write: %s\n", t->id, pc_last_error ());
      t->failures++;
      continue;
    }
    memset (rb, 0, len);
    r = i % 2 ? read_async (t->o, rb, len, off)
      : pc_origin_pread (t->o, rb, len, off);
    if (r < 0) {
      fprintf (stderr, "thread %u: read: %s\n", t->id, pc_last_error ());
      t->failures++;
    }
    else if (!check (rb, len, off, t->id * 1000 + i)) {
      fprintf (stderr, "thread %u: read of %" PRIu64 " at %" PRIu64
               " returned other bytes than written\n", t->id, len, off);
      t->failures++;
    }
  }
  free (wb);
  free (rb);
  return NULL;
}

static int
cmd_roundtrip (const char *uri, unsigned conns, unsigned threads,
               unsigned iters)
{
  struct pc_origin *o = open_or_die (uri, conns, true);
  struct rt *t = calloc (threads, sizeof *t);
  pthread_t *tid = calloc (threads, sizeof *tid);
  uint64_t size = pc_origin_size (o), big = size / 4 * 3, span;
  struct pc_origin_stats st;
  unsigned i, failures = 0;
  double t0, secs;
  char *buf;

  if (!t || !tid || size < threads * UINT64_C (8) * 1024 * 1024)
    return 2;
  span = (size / 4) / threads / 4096 * 4096;
  t0 = now_s ();
  for (i = 0; i < threads; i++) {
    t[i] = (struct rt) { .o = o, .id = i, .iters = iters,
                         .base = i * span, .span = span };
    pthread_create (&tid[i], NULL, rt_thread, &t[i]);
  }
  for (i = 0; i < threads; i++) {
    pthread_join (tid[i], NULL);
    failures += t[i].failures;
  }
  secs = now_s () - t0;

  /* One request larger than the split size (48 MiB of a 64 MiB origin),
   * in the upper three quarters. */
  buf = malloc (big);
  if (!buf)
    return 2;
  fill (buf, big, size / 4, 424242);
  if (pc_origin_pwrite (o, buf, big, size / 4, false) < 0 ||
      pc_origin_flush (o) < 0) {
    fprintf (stderr, "big write/flush: %s\n", pc_last_error ());
    failures++;
  }
  memset (buf, 0, big);
  if (pc_origin_pread (o, buf, big, size / 4) < 0) {
    fprintf (stderr, "big read: %s\n", pc_last_error ());
    failures++;
  }
  else if (!check (buf, big, size / 4, 424242)) {
    fprintf (stderr, "big read: other bytes than written\n");
    failures++;
  }
  free (buf);

  pc_origin_get_stats (o, &st);
  printf ("roundtrip: %u connections (%u up), %u threads x %u: %.2f s; "
          "reads=%" PRIu64 " (%.1f MiB) writes=%" PRIu64 " (%.1f MiB) "
          "flushes=%" PRIu64 " errors=%" PRIu64 " read latency avg %.0f us "
          "max %.0f us; split size %u; failures=%u\n",
          st.connections, st.connections_up, threads, iters, secs,
          st.reads, st.bytes_read / 1048576.0, st.writes,
          st.bytes_written / 1048576.0, st.flushes, st.errors,
          st.reads ? st.read_ns_total / 1e3 / st.reads : 0.0,
          st.read_ns_max / 1e3, pc_origin_max_request (o), failures);
  if (st.in_flight != 0 || st.reads != (uint64_t) threads * iters + 1 ||
      st.writes != (uint64_t) threads * iters + 1) {
    fprintf (stderr, "roundtrip: counters disagree (in_flight %" PRIu64
             ")\n", st.in_flight);
    failures++;
  }
  pc_origin_close (o);
  free (t);
  free (tid);
  return failures ? 1 : 0;
}

/* ---- extents ---- */

static int
print_run (void *opaque, uint64_t off, uint64_t len, bool zero)
{
  (void) opaque;
  printf ("%" PRIu64 " %" PRIu64 " %s\n", off, len, zero ? "zero" : "data");
  return 0;
}

static int
cmd_extents (const char *uri, uint64_t off, uint64_t len)
{
  struct pc_origin *o = open_or_die (uri, 1, false);
  int r = pc_origin_extents (o, len, off, print_run, NULL);

  if (r)
    fprintf (stderr, "extents: %d: %s\n", r, pc_last_error ());
  pc_origin_close (o);
  return r ? 1 : 0;
}

/* ---- readloop ---- */

struct loop {
  struct pc_origin *o;
  double end;
  unsigned id;
};
static atomic_uint n_ok, n_eio, n_other, n_bad, n_ok_after;
static atomic_bool failed_once;
static pthread_mutex_t msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_msg[512], first_unreachable[512];

static void *
loop_thread (void *arg)
{
  struct loop *l = arg;
  uint64_t size = pc_origin_size (l->o), rnd = l->id + 99;
  size_t len = 65536;
  char *buf = malloc (len);

  while (buf && now_s () < l->end && n_ok_after < 200) {
    uint64_t off;
    int r;

    rnd = mix (rnd);
    off = (rnd % (size / len)) * len;
    memset (buf, 0, len);
    r = pc_origin_pread (l->o, buf, len, off);
    if (r == 0) {
      if (check (buf, len, off, 0)) {
        n_ok++;
        if (failed_once)
          n_ok_after++;
      }
      else
        n_bad++;
      continue;
    }
    if (r == -EIO)
      n_eio++;
    else
      n_other++;
    n_ok_after = 0;
    failed_once = true;
    pthread_mutex_lock (&msg_lock);
    if (!*first_msg)
      snprintf (first_msg, sizeof first_msg, "%s", pc_last_error ());
    if (!*first_unreachable && strstr (pc_last_error (), "unreachable"))
      snprintf (first_unreachable, sizeof first_unreachable, "%s",
                pc_last_error ());
    pthread_mutex_unlock (&msg_lock);
    usleep (2000);                /* failures come at once: do not spin */
  }
  free (buf);
  return NULL;
}

static int
cmd_readloop (const char *uri, unsigned conns, double seconds)
{
  struct pc_origin *o = open_or_die (uri, conns, false);
  struct loop l[4];
  pthread_t tid[4];
  struct pc_origin_stats st;
  unsigned i;

  for (i = 0; i < 4; i++) {
    l[i] = (struct loop) { o, now_s () + seconds, i };
    pthread_create (&tid[i], NULL, loop_thread, &l[i]);
  }
  for (i = 0; i < 4; i++)
    pthread_join (tid[i], NULL);
  pc_origin_get_stats (o, &st);
  printf ("ok=%u eio=%u other=%u bad=%u ok_after=%u reconnects=%" PRIu64
          " errors=%" PRIu64 " up=%u\n", n_ok, n_eio, n_other, n_bad,
          n_ok_after, st.reconnects, st.errors, st.connections_up);
  printf ("first error: %s\n", first_msg);
  printf ("first unreachable: %s\n", first_unreachable);
  pc_origin_close (o);
  return 0;
}

static int
cmd_mkpattern (const char *path, uint64_t size)
{
  FILE *f = fopen (path, "w");
  char *buf = malloc (1 << 20);
  uint64_t off;

  if (!f || !buf)
    return 2;
  for (off = 0; off < size; off += 1 << 20) {
    fill (buf, 1 << 20, off, 0);
    if (fwrite (buf, 1, 1 << 20, f) != 1 << 20)
      return 2;
  }
  free (buf);
  return fclose (f) ? 2 : 0;
}

static int
cmd_timeout (const char *uri, unsigned ms)
{
  struct pc_origin *o = open_or_die (uri, 1, false);
  struct pc_origin_stats st;
  char buf[4096];
  double t0;
  int r;

  pc_origin_set_timeout (o, ms);
  t0 = now_s ();
  r = pc_origin_pread (o, buf, sizeof buf, 0);
  printf ("rc=%s elapsed_ms=%.0f", r ? errname (r) : "0",
          (now_s () - t0) * 1000);
  pc_origin_get_stats (o, &st);
  printf (" timeouts=%" PRIu64 "\nerror: %s\n", st.timeouts,
          r ? pc_last_error () : "");
  t0 = now_s ();
  pc_origin_close (o);
  printf ("close_ms=%.0f\n", (now_s () - t0) * 1000);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc >= 5 && strcmp (argv[1], "open") == 0) {
    struct pc_origin *o = open_or_die (argv[2], atoi (argv[3]),
                                       strcmp (argv[4], "rw") == 0);
    printf ("size=%" PRIu64 " readonly=%d\n", pc_origin_size (o),
            pc_origin_readonly (o));
    pc_origin_close (o);
    return 0;
  }
  if (argc == 6 && strcmp (argv[1], "roundtrip") == 0)
    return cmd_roundtrip (argv[2], atoi (argv[3]), atoi (argv[4]),
                          atoi (argv[5]));
  if (argc == 5 && strcmp (argv[1], "extents") == 0)
    return cmd_extents (argv[2], strtoull (argv[3], NULL, 0),
                        strtoull (argv[4], NULL, 0));
  if (argc == 4 && strcmp (argv[1], "mkpattern") == 0)
    return cmd_mkpattern (argv[2], strtoull (argv[3], NULL, 0));
  if (argc == 5 && strcmp (argv[1], "readloop") == 0)
    return cmd_readloop (argv[2], atoi (argv[3]), atof (argv[4]));
  if (argc == 4 && strcmp (argv[1], "timeout") == 0)
    return cmd_timeout (argv[2], atoi (argv[3]));
  fprintf (stderr, "usage: see the comment at the top of %s\n", __FILE__);
  return 2;
}
