/* Description: load generator and verifier for the kill -9 crash test.
 *
 *   crash-client load SOCKET STATEFILE [--conns K] [--blocks B] [--seconds S]
 *   crash-client verify SOCKET STATEFILE
 *
 * load: K connections; connection k owns blocks [k*B, (k+1)*B) of the
 * default export (4 KiB blocks) and loops, one request at a time: tagged
 * whole-block writes (one in five with FUA), trims, and flushes.  Every
 * request's start and end tick (a global counter) is recorded; when the
 * server dies every connection fails and stops, and the state is written
 * to STATEFILE.
 *
 * verify: let S be the latest start tick of any flush that completed.  For
 * each block, the *floor* is the last request on it that is durable: it
 * completed before S, or it is a completed FUA write.  Every sector of the
 * block must then hold either the floor's result (its data; zeros for a
 * trim) or the result of a request issued after the floor -- never a tag
 * of another block (foreign), never garbage.  Where no request of this
 * round is durable, the floor is what the block held when the round began:
 * the pool carries over from round to round, so verify saves what it read
 * in STATEFILE.base (per sector: 0 for zeros, else the tag's seq; read
 * before a clean shutdown, so durable) and the next round's verify starts
 * from it.  Without that, a round killed before it touched every block
 * durably reported the previous round's data as a violation (seen: "4
 * requests in the log, 106 violations").  Seqs are unique across rounds
 * (the load process's pid in the top half).
 *
 * Exit: 0 ok, 1 violations, 2 error.
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

#define BS 4096u
#define MAX_OPS (1u << 20)

enum kind { OP_WRITE = 0, OP_FUA = 1, OP_TRIM = 2 };

struct op { uint64_t block, seq, start, end; int kind; };

static const char *sock, *statefile;
static unsigned nconns = 4, blocks_per_conn = 32, seconds = 10;
static uint64_t tick, next_seq = 1;
static unsigned nrunning;             /* load threads still running */
static struct op *ops;
static uint64_t nops;
static uint64_t *base;                /* [block * SPB + sector] */
#define SPB (BS / TAG_SECTOR)
static uint64_t best_flush_start;     /* max start of a completed flush */
static volatile bool stop;

static uint64_t clock_tick (void) { return __atomic_add_fetch (&tick, 1, __ATOMIC_SEQ_CST); }

static struct op *
new_op (uint64_t block, int kind)
{
  uint64_t i = __atomic_fetch_add (&nops, 1, __ATOMIC_SEQ_CST);

  if (i >= MAX_OPS) { stop = true; return NULL; }
  ops[i] = (struct op) { block, 0, clock_tick (), 0, kind };
  return &ops[i];
}

static int
do_write (struct nbd_handle *h, uint64_t b, bool fua, uint8_t *buf)
{
  struct op *op = new_op (b, fua ? OP_FUA : OP_WRITE);
  uint32_t s;

  if (op == NULL) return -1;
  op->seq = ((uint64_t) getpid () << 32) +
            __atomic_fetch_add (&next_seq, 1, __ATOMIC_SEQ_CST);
  for (s = 0; s < BS / TAG_SECTOR; s++)
    tag_fill_sector (buf + s * TAG_SECTOR, 0, b, op->seq, s);
  if (nbd_pwrite (h, buf, BS, b * BS, fua ? LIBNBD_CMD_FLAG_FUA : 0) == -1)
    return -1;
  op->end = clock_tick ();
  return 0;
}

static int
do_trim (struct nbd_handle *h, uint64_t b)
{
  struct op *op = new_op (b, OP_TRIM);

  if (op == NULL || nbd_trim (h, BS, b * BS, 0) == -1) return -1;
  op->end = clock_tick ();
  return 0;
}

static int
do_flush (struct nbd_handle *h)
{
  uint64_t start = clock_tick (), cur;

  if (nbd_flush (h, 0) == -1) return -1;
  cur = __atomic_load_n (&best_flush_start, __ATOMIC_SEQ_CST);
  while (cur < start &&
         !__atomic_compare_exchange_n (&best_flush_start, &cur, start, false,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
    ;
  return 0;
}

/* NULL if the server cannot be reached (during load, it may already have
 * been killed: that connection then simply issues nothing). */
static struct nbd_handle *
try_connect (void)
{
  struct nbd_handle *h = nbd_create ();

  if (h != NULL && nbd_connect_unix (h, sock) == -1) {
    nbd_close (h);
    h = NULL;
  }
  return h;
}

static struct nbd_handle *
connect_default (void)
{
  struct nbd_handle *h = try_connect ();

  if (h == NULL) {
    fprintf (stderr, "crash-client: connect: %s\n", nbd_get_error ());
    exit (2);
  }
  return h;
}

static void *
load_main (void *arg)
{
  unsigned k = (unsigned) (uintptr_t) arg, seed = k * 31337 + 1;
  struct nbd_handle *h = try_connect ();
  uint8_t *buf = malloc (BS);
  int r = h ? 0 : -1;

  while (!stop && r == 0) {
    uint64_t b = (uint64_t) k * blocks_per_conn + rand_r (&seed) % blocks_per_conn;
    unsigned dice = (unsigned) rand_r (&seed) % 100;
    if (dice < 65) r = do_write (h, b, false, buf);
    else if (dice < 80) r = do_write (h, b, true, buf);
    else if (dice < 93) r = do_trim (h, b);
    else r = do_flush (h);
  }
  if (h) nbd_close (h);               /* server gone: just drop it */
  free (buf);
  __atomic_sub_fetch (&nrunning, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static int
save_state (void)
{
  FILE *f = fopen (statefile, "w");
  uint64_t i, n = nops < MAX_OPS ? nops : MAX_OPS;

  if (f == NULL) { perror (statefile); return 2; }
  fprintf (f, "flush %" PRIu64 "\nblocks %u\n", best_flush_start,
           nconns * blocks_per_conn);
  for (i = 0; i < n; i++)
    fprintf (f, "op %" PRIu64 " %" PRIu64 " %d %" PRIu64 " %" PRIu64 "\n",
             ops[i].block, ops[i].seq, ops[i].kind, ops[i].start, ops[i].end);
  return fclose (f) == 0 ? 0 : 2;
}

static int
cmd_load (void)
{
  pthread_t th[64];
  unsigned i;
  time_t t0 = time (NULL);

  nrunning = nconns;
  for (i = 0; i < nconns; i++)
    pthread_create (&th[i], NULL, load_main, (void *) (uintptr_t) i);
  /* Threads stop when the server dies (then the load ends at once, not
   * after the full run time); bound the run anyway. */
  while (!stop && __atomic_load_n (&nrunning, __ATOMIC_SEQ_CST) > 0 &&
         time (NULL) - t0 < seconds)
    usleep (50000);
  stop = true;
  for (i = 0; i < nconns; i++)
    pthread_join (th[i], NULL);
  printf ("crash-client: %" PRIu64 " requests issued\n", nops);
  return save_state ();
}

/* ---- verify ---- */

static int
cmp_op (const void *a, const void *b)
{
  const struct op *x = a, *y = b;
  if (x->block != y->block) return x->block < y->block ? -1 : 1;
  return x->start < y->start ? -1 : x->start > y->start;
}

static uint64_t nblocks_total, n_checked, n_bad;

static bool
durable (const struct op *o, uint64_t s)
{
  return o->end != 0 && (o->end < s || o->kind == OP_FUA);
}

static bool
matches (const struct op *o, bool zero, const struct tag_hdr *h)
{
  return o->kind == OP_TRIM ? zero : (!zero && h->seq == o->seq);
}

/* Is this sector acceptable given the n requests o[] on its block? */
static bool
sector_ok (const uint8_t *sec, uint32_t si, uint64_t block,
           const struct op *o, size_t n, uint64_t s, uint64_t *seen)
{
  size_t floor = SIZE_MAX, i;
  struct tag_hdr h = { 0 };
  bool zero = tag_is_zero (sec, TAG_SECTOR);
  uint64_t was = base[block * SPB + si];        /* at the round's start */

  if (!zero && (!tag_decode (sec, si, &h) || h.vol != 0 || h.block != block))
    return false;                               /* foreign or garbage */
  *seen = zero ? 0 : h.seq;
  for (i = 0; i < n; i++)
    if (durable (&o[i], s)) floor = i;
  if (floor == SIZE_MAX && (zero ? was == 0 : h.seq == was))
    return true;                                /* as the round began */
  for (i = floor == SIZE_MAX ? 0 : floor; i < n; i++)
    if (matches (&o[i], zero, &h))
      return true;                              /* the floor or later */
  return false;
}

static const char *
base_path (void)
{
  static char path[4096];
  snprintf (path, sizeof path, "%s.base", statefile);
  return path;
}

/* The previous round's verified contents (none: the pool was new). */
static int
load_base (void)
{
  FILE *f;
  uint64_t i;

  base = calloc ((size_t) nblocks_total * SPB, sizeof *base);
  if (base == NULL) return 2;
  if ((f = fopen (base_path (), "r")) == NULL) return 0;
  for (i = 0; i < nblocks_total * SPB; i++)
    if (fscanf (f, "%" SCNu64, &base[i]) != 1) {
      fprintf (stderr, "crash-client: %s is truncated\n", base_path ());
      fclose (f);
      return 2;
    }
  fclose (f);
  return 0;
}

static int
save_base (const uint64_t *seen)
{
  FILE *f = fopen (base_path (), "w");

  if (f == NULL) { perror (base_path ()); return 2; }
  for (uint64_t i = 0; i < nblocks_total * SPB; i++)
    fprintf (f, "%" PRIu64 "\n", seen[i]);
  return fclose (f) == 0 ? 0 : 2;
}

static int
load_state (void)
{
  FILE *f = fopen (statefile, "r");
  struct op o;
  unsigned nb;

  if (f == NULL || fscanf (f, "flush %" SCNu64 "\nblocks %u\n",
                           &best_flush_start, &nb) != 2) {
    fprintf (stderr, "crash-client: cannot read %s\n", statefile);
    return 2;
  }
  nblocks_total = nb;
  while (nops < MAX_OPS &&
         fscanf (f, "op %" SCNu64 " %" SCNu64 " %d %" SCNu64 " %" SCNu64 "\n",
                 &o.block, &o.seq, &o.kind, &o.start, &o.end) == 5)
    ops[nops++] = o;
  fclose (f);
  qsort (ops, nops, sizeof *ops, cmp_op);
  return load_base ();
}

static int
cmd_verify (void)
{
  struct nbd_handle *h;
  uint8_t *buf = malloc (BS);
  uint64_t b, i = 0;
  uint32_t s;
  int r;

  uint64_t *seen;

  if ((r = load_state ()) != 0) return r;
  if ((seen = calloc ((size_t) nblocks_total * SPB, sizeof *seen)) == NULL)
    return 2;
  h = connect_default ();
  for (b = 0; b < nblocks_total; b++) {
    size_t lo = i;
    while (i < nops && ops[i].block == b) i++;
    if (nbd_pread (h, buf, BS, b * BS, 0) == -1) {
      fprintf (stderr, "crash-client: pread: %s\n", nbd_get_error ());
      return 2;
    }
    for (s = 0; s < BS / TAG_SECTOR; s++)
      if (!sector_ok (buf + s * TAG_SECTOR, s, b, &ops[lo], i - lo,
                      best_flush_start, &seen[b * SPB + s])) {
        if (n_bad++ < 5)
          fprintf (stderr, "VIOLATION: block %" PRIu64 " sector %u holds data "
                   "that no acceptable request wrote\n", b, s);
        break;
      }
    n_checked++;
  }
  nbd_shutdown (h, 0);
  nbd_close (h);
  printf ("crash-client: %" PRIu64 " blocks verified, %" PRIu64
          " requests in the log, %" PRIu64 " violations\n",
          n_checked, nops, n_bad);
  return n_bad ? 1 : save_base (seen);
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "conns", 1, NULL, 'c' }, { "blocks", 1, NULL, 'b' },
    { "seconds", 1, NULL, 's' }, { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    if (c == 'c') nconns = (unsigned) atoi (optarg);
    else if (c == 'b') blocks_per_conn = (unsigned) atoi (optarg);
    else if (c == 's') seconds = (unsigned) atoi (optarg);
    else return 2;
  }
  if (argc - optind != 3 || nconns == 0 || nconns > 64 || blocks_per_conn == 0) {
    fprintf (stderr, "usage: crash-client load|verify SOCKET STATEFILE "
             "[--conns K] [--blocks B] [--seconds S]\n");
    return 2;
  }
  sock = argv[optind + 1];
  statefile = argv[optind + 2];
  ops = calloc (MAX_OPS, sizeof *ops);
  if (ops == NULL) return 2;
  if (strcmp (argv[optind], "load") == 0) return cmd_load ();
  if (strcmp (argv[optind], "verify") == 0) return cmd_verify ();
  fprintf (stderr, "crash-client: unknown mode %s\n", argv[optind]);
  return 2;
}
