/* Description: multi-connection race checker for SPEC I1 (no stale read),
 * I2 (no foreign read) and I3 (no reuse while reachable).
 *
 * Usage: race-client [options] SOCKET
 *   --volumes a,b       export names (default "a,b")
 *   --blocks N          blocks per volume used (default 64)
 *   --block-size N      bytes (default 4096; must equal the pool's)
 *   --seconds S         run time (default 10)
 *   --writers/--trimmers/--readers N   threads per volume (default 2 each)
 *   --punch trim|zero   how trimmers punch: NBD_CMD_TRIM (default: whole
 *                       blocks are unmapped and freed) or NBD_CMD_WRITE_ZEROES
 *                       with NO_HOLE (blocks stay mapped and are zeroed in
 *                       place: nothing is freed, so the only way to read
 *                       pre-punch data is a cache fill that outlived the
 *                       punch -- the I6 test)
 *   --expect-clean | --expect-violations | --expect-stale
 *                       --expect-stale: at least one STALE read (I1/I6)
 *   --allow-write-errors  writes failing with EIO are expected (fault
 *                         injection) and are not counted as completed
 *
 * Every write fills a whole block with "tagged" 512-byte sectors: a header
 * {magic, volume, block, seq, sector} and a body derived from it, so any
 * byte that does not belong to this block and this write is detected.
 * One global tick counter orders events.  Writers record when each write
 * ended; trimmers record, per block, the latest start tick of a trim that
 * has completed.  A reader loads that value M *before* reading, then checks
 * every sector:
 *   zeros                                   ok
 *   tag of another volume/block             FOREIGN (I2, I3)
 *   bad header or body                      CORRUPT (unless a write of
 *                                           the same block overlapped
 *                                           the read: torn, allowed)
 *   tag of this block whose write ended before M   STALE (I1: the write
 *       ended before a trim started that completed before this read began)
 *   all zeros although a write to this block completed, no trim was in
 *       flight when it started and none has started since   LOST (I5: a
 *       failed write elsewhere must not unmap what another write populated)
 * A flusher thread flushes every few ms so freed blocks are committed and
 * handed out again quickly (lowest-first), which is what turns a missing
 * invalidate lock into foreign reads.
 *
 * Exit: 0 if the expectation holds, 1 if not, 2 on error.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "tagged.h"

#define SECTOR TAG_SECTOR
#define MAX_SEQ (1u << 22)
#define MAX_VOLS 4

static const char *sock;
static char *vol_names[MAX_VOLS];
static unsigned nvols;
static uint64_t nblocks = 64, bs = 4096;
static unsigned seconds = 10, nwriters = 2, ntrimmers = 2, nreaders = 2;
static int expect = 0;               /* 1 clean, -1 violations, -2 stale */
static bool punch_zero;              /* --punch zero */

static uint64_t tick;                /* global event clock */
static uint64_t next_seq = 1;
static uint64_t *write_end;          /* [seq] tick after completion */
static uint64_t *trim_start[MAX_VOLS]; /* [block] max start of completed trims */
static uint64_t *write_busy[MAX_VOLS]; /* [block] writes in flight */
static uint64_t *write_gen[MAX_VOLS];  /* [block] writes started */
static uint64_t *trims_busy[MAX_VOLS]; /* [block] trims in flight */
static uint64_t *trim_begun[MAX_VOLS]; /* [block] max start of any trim */
static uint64_t *clean_write[MAX_VOLS]; /* [block] max start of a completed
                                          write that no trim overlapped */
static bool allow_write_errors;
static volatile bool stop;
static uint64_t n_reads, n_writes, n_trims, n_flushes;
static uint64_t n_foreign, n_stale, n_corrupt, n_errors, n_torn;
static uint64_t n_lost, n_write_failed;

static uint64_t clock_tick (void) { return __atomic_add_fetch (&tick, 1, __ATOMIC_SEQ_CST); }

static void
atomic_max (uint64_t *p, uint64_t v)
{
  uint64_t cur = __atomic_load_n (p, __ATOMIC_SEQ_CST);
  while (cur < v &&
         !__atomic_compare_exchange_n (p, &cur, v, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST))
    ;
}

/* Classify one sector read from (vol, block) with trim mark m. */
static void
check_sector (const uint8_t *s, uint32_t vol, uint64_t block, uint32_t sector,
              uint64_t m, bool concurrent_write)
{
  struct tag_hdr h;
  uint64_t end;

  if (tag_is_zero (s, SECTOR)) return;
  if (!tag_decode (s, sector, &h) || h.seq >= MAX_SEQ) {
    /* A read racing a write of the same block may see a byte-level mix of
     * old and new data (NBD leaves it undefined); anything else is not. */
    __atomic_add_fetch (concurrent_write ? &n_torn : &n_corrupt, 1,
                        __ATOMIC_RELAXED);
    return;
  }
  if (h.vol != vol || h.block != block) {
    if (__atomic_add_fetch (&n_foreign, 1, __ATOMIC_RELAXED) <= 3)
      fprintf (stderr, "FOREIGN: read vol %u block %" PRIu64 " got vol %u "
               "block %" PRIu64 " seq %" PRIu64 "\n", vol, block, h.vol,
               h.block, h.seq);
    return;
  }
  end = __atomic_load_n (&write_end[h.seq], __ATOMIC_SEQ_CST);
  if (end != 0 && end < m) {
    if (__atomic_add_fetch (&n_stale, 1, __ATOMIC_RELAXED) <= 3)
      fprintf (stderr, "STALE: vol %u block %" PRIu64 " seq %" PRIu64
               " ended at %" PRIu64 " before a trim that started at %" PRIu64
               "\n", vol, block, h.seq, end, m);
  }
}

static struct nbd_handle *
connect_to (uint32_t vol)
{
  struct nbd_handle *h = nbd_create ();

  if (h == NULL || nbd_set_export_name (h, vol_names[vol]) == -1 ||
      nbd_connect_unix (h, sock) == -1) {
    fprintf (stderr, "race-client: connect: %s\n", nbd_get_error ());
    exit (2);
  }
  return h;
}

struct worker { uint32_t vol; unsigned id; int kind; };

static void
note_error (const char *what)
{
  if (__atomic_add_fetch (&n_errors, 1, __ATOMIC_RELAXED) <= 3)
    fprintf (stderr, "race-client: %s: %s\n", what, nbd_get_error ());
}

static void
do_write (struct nbd_handle *h, uint32_t vol, uint64_t b, uint8_t *buf)
{
  uint64_t seq = __atomic_fetch_add (&next_seq, 1, __ATOMIC_SEQ_CST);
  uint64_t start;
  bool clean;
  uint32_t s;

  if (seq >= MAX_SEQ) { stop = true; return; }
  for (s = 0; s < bs / SECTOR; s++)
    tag_fill_sector (buf + s * SECTOR, vol, b, seq, s);
  __atomic_add_fetch (&write_gen[vol][b], 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch (&write_busy[vol][b], 1, __ATOMIC_SEQ_CST);
  start = clock_tick ();
  clean = __atomic_load_n (&trims_busy[vol][b], __ATOMIC_SEQ_CST) == 0;
  if (nbd_pwrite (h, buf, bs, b * bs, 0) == -1) {
    if (allow_write_errors && nbd_get_errno () == EIO)
      __atomic_add_fetch (&n_write_failed, 1, __ATOMIC_RELAXED);
    else
      note_error ("pwrite");
  }
  else {
    __atomic_store_n (&write_end[seq], clock_tick (), __ATOMIC_SEQ_CST);
    if (clean) atomic_max (&clean_write[vol][b], start);
  }
  __atomic_sub_fetch (&write_busy[vol][b], 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch (&n_writes, 1, __ATOMIC_RELAXED);
}

static void
do_trim (struct nbd_handle *h, uint32_t vol, uint64_t b, uint64_t n)
{
  uint64_t start, i;

  for (i = b; i < b + n; i++)
    __atomic_add_fetch (&trims_busy[vol][i], 1, __ATOMIC_SEQ_CST);
  start = clock_tick ();
  for (i = b; i < b + n; i++)
    atomic_max (&trim_begun[vol][i], start);
  if (punch_zero
      ? nbd_zero (h, n * bs, b * bs, LIBNBD_CMD_FLAG_NO_HOLE) == -1
      : nbd_trim (h, n * bs, b * bs, 0) == -1)
    note_error (punch_zero ? "zero" : "trim");
  for (i = b; i < b + n; i++) {
    atomic_max (&trim_start[vol][i], start);
    __atomic_sub_fetch (&trims_busy[vol][i], 1, __ATOMIC_SEQ_CST);
  }
  __atomic_add_fetch (&n_trims, 1, __ATOMIC_RELAXED);
}

static void
do_read (struct nbd_handle *h, uint32_t vol, uint64_t b, uint8_t *buf)
{
  uint64_t m = __atomic_load_n (&trim_start[vol][b], __ATOMIC_SEQ_CST);
  uint64_t g = __atomic_load_n (&write_gen[vol][b], __ATOMIC_SEQ_CST);
  bool concurrent = __atomic_load_n (&write_busy[vol][b], __ATOMIC_SEQ_CST) > 0;
  uint64_t cw = __atomic_load_n (&clean_write[vol][b], __ATOMIC_SEQ_CST);
  bool must_have_data;
  uint32_t s;

  clock_tick ();
  if (nbd_pread (h, buf, bs, b * bs, 0) == -1) { note_error ("pread"); return; }
  concurrent |= __atomic_load_n (&write_gen[vol][b], __ATOMIC_SEQ_CST) != g;
  /* Trims that began at any time before the read completed may erase. */
  must_have_data = cw > 0 &&
    cw > __atomic_load_n (&trim_begun[vol][b], __ATOMIC_SEQ_CST);
  for (s = 0; s < bs / SECTOR; s++)
    check_sector (buf + s * SECTOR, vol, b, s, m, concurrent);
  /* I5: a completed write that no trim has touched since cannot vanish. */
  if (must_have_data && tag_is_zero (buf, bs) &&
      __atomic_add_fetch (&n_lost, 1, __ATOMIC_RELAXED) <= 3)
    fprintf (stderr, "LOST: vol %u block %" PRIu64 " reads zeros after a "
             "completed write and no trim since\n", vol, b);
  __atomic_add_fetch (&n_reads, 1, __ATOMIC_RELAXED);
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  struct nbd_handle *h = connect_to (w->vol);
  unsigned seed = w->id * 7919 + w->vol;
  uint8_t *buf = malloc (bs);

  while (!stop) {
    uint64_t b = (uint64_t) rand_r (&seed) % nblocks;
    if (w->kind == 0) do_write (h, w->vol, b, buf);
    else if (w->kind == 1) {
      uint64_t n = (rand_r (&seed) % 4 == 0) ? 1 + rand_r (&seed) % 4 : 1;
      if (b + n > nblocks) n = nblocks - b;
      do_trim (h, w->vol, b, n);
    }
    else if (w->kind == 2) do_read (h, w->vol, b, buf);
    else {
      if (nbd_flush (h, 0) == -1) note_error ("flush");
      __atomic_add_fetch (&n_flushes, 1, __ATOMIC_RELAXED);
      usleep (2000);
    }
  }
  nbd_shutdown (h, 0);
  nbd_close (h);
  free (buf);
  return NULL;
}

static void
parse_volumes (char *s)
{
  char *tok, *save = NULL;

  nvols = 0;
  for (tok = strtok_r (s, ",", &save); tok && nvols < MAX_VOLS;
       tok = strtok_r (NULL, ",", &save))
    vol_names[nvols++] = tok;
}

static void
parse_args (int argc, char **argv)
{
  static const struct option opts[] = {
    { "volumes", 1, NULL, 'v' }, { "blocks", 1, NULL, 'n' },
    { "block-size", 1, NULL, 'b' }, { "seconds", 1, NULL, 's' },
    { "writers", 1, NULL, 'W' }, { "trimmers", 1, NULL, 'T' },
    { "readers", 1, NULL, 'R' }, { "expect-clean", 0, NULL, 'c' },
    { "expect-violations", 0, NULL, 'x' },
    { "allow-write-errors", 0, NULL, 'E' }, { "punch", 1, NULL, 'P' },
    { "expect-stale", 0, NULL, 'S' }, { NULL, 0, NULL, 0 },
  };
  static char defvols[] = "a,b";
  int c;

  parse_volumes (defvols);
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'v': parse_volumes (optarg); break;
    case 'n': nblocks = strtoull (optarg, NULL, 0); break;
    case 'b': bs = strtoull (optarg, NULL, 0); break;
    case 's': seconds = (unsigned) atoi (optarg); break;
    case 'W': nwriters = (unsigned) atoi (optarg); break;
    case 'T': ntrimmers = (unsigned) atoi (optarg); break;
    case 'R': nreaders = (unsigned) atoi (optarg); break;
    case 'c': expect = 1; break;
    case 'x': expect = -1; break;
    case 'E': allow_write_errors = true; break;
    case 'S': expect = -2; break;
    case 'P':
      if (strcmp (optarg, "zero") == 0) punch_zero = true;
      else if (strcmp (optarg, "trim") == 0) punch_zero = false;
      else { fprintf (stderr, "race-client: --punch trim|zero\n"); exit (2); }
      break;
    default: exit (2);
    }
  }
  if (optind != argc - 1 || nvols == 0 || nblocks == 0 || bs % SECTOR ||
      seconds == 0 || seconds > 600) {
    fprintf (stderr, "usage: race-client [options] SOCKET\n");
    exit (2);
  }
  sock = argv[optind];
}

int
main (int argc, char **argv)
{
  struct worker ws[MAX_VOLS * 64 + 1];
  pthread_t th[MAX_VOLS * 64 + 1];
  unsigned nth = 0, v, i, k;
  uint64_t violations;
  bool ok;

  parse_args (argc, argv);
  write_end = calloc (MAX_SEQ, sizeof *write_end);
  for (v = 0; v < nvols; v++) {
    trim_start[v] = calloc (nblocks, sizeof *trim_start[v]);
    write_busy[v] = calloc (nblocks, sizeof *write_busy[v]);
    write_gen[v] = calloc (nblocks, sizeof *write_gen[v]);
    trims_busy[v] = calloc (nblocks, sizeof *trims_busy[v]);
    trim_begun[v] = calloc (nblocks, sizeof *trim_begun[v]);
    clean_write[v] = calloc (nblocks, sizeof *clean_write[v]);
  }
  for (v = 0; v < nvols; v++)
    for (k = 0; k < 3; k++) {
      unsigned n = k == 0 ? nwriters : k == 1 ? ntrimmers : nreaders;
      for (i = 0; i < n && nth < MAX_VOLS * 64; i++, nth++)
        ws[nth] = (struct worker) { v, nth, (int) k };
    }
  ws[nth++] = (struct worker) { 0, 999, 3 };          /* flusher */
  for (i = 0; i < nth; i++)
    pthread_create (&th[i], NULL, worker_main, &ws[i]);
  sleep (seconds);
  stop = true;
  for (i = 0; i < nth; i++)
    pthread_join (th[i], NULL);
  violations = n_foreign + n_stale + n_corrupt + n_lost;
  printf ("race-client: %" PRIu64 " reads checked, %" PRIu64 " writes, %"
          PRIu64 " trims, %" PRIu64 " flushes; violations: %" PRIu64
          " foreign, %" PRIu64 " stale, %" PRIu64 " corrupt, %" PRIu64
          " lost; %" PRIu64 " torn sectors under a concurrent write (allowed);"
          " %" PRIu64 " injected write failures; %" PRIu64 " errors\n",
          n_reads, n_writes, n_trims, n_flushes, n_foreign, n_stale,
          n_corrupt, n_lost, n_torn, n_write_failed, n_errors);
  /* With the protection removed (expect < 0), errors are part of what
   * removing it breaks (a write-back racing an unlocked punch may fail);
   * the question there is only whether the violations showed.  With the
   * protection on, any error fails the run. */
  if (n_errors && expect >= 0) return 2;
  ok = expect == 1 ? violations == 0 : expect == -1 ? violations > 0
     : expect == -2 ? n_stale > 0 : true;
  return ok ? 0 : 1;
}
