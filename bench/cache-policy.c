/* bench/cache-policy - hit rates of the block cache's two policies, S3-FIFO
 * and LRU, on synthetic page-read streams, printed as a markdown table.
 *
 * Why: lib/cache/cache.c uses S3-FIFO rather than LRU and says the choice was
 * made by measurement; this program is that measurement.  It drives the
 * real cache (lib/cache/cache.c, through include/punchcache/cache.h) exactly as
 * the read path in lib/core/volume.c does: pc_cache_get of the whole 4 KiB page
 * and, on a miss, pc_cache_fill_begin + "read the page" (a memset of the
 * fill buffer) + pc_cache_fill_end.  Both policies see the identical access
 * stream (same seed, same generator).
 *
 * Workloads (keys are PC_CACHE_KEY (slot, page)):
 *  - zipf: pages drawn from Zipf(alpha) over a working set of W pages
 *    (default W = 4x the cache capacity), hot pages scattered over the
 *    working set by a fixed random permutation.  The steady state of a
 *    database or VM image: what an LRU handles well.
 *  - zipf + scan bursts: the same zipf stream, periodically interrupted by
 *    a one-pass sequential scan of 2x the capacity over a disjoint range
 *    (a backup, an fsck, a `cp` of a big file), scans making --scan-share
 *    of all accesses.  A burst that long flushes an LRU completely; a
 *    scan-resistant policy should keep the hot set.  The interesting hit
 *    rate is that of the zipf accesses (scan pages are never reused, so
 *    they always miss); both are reported.
 *  - zipf + mixed scan: the same, but the scan runs concurrently with the
 *    zipf traffic: each access is the scan's next page with probability
 *    --scan-share, a zipf page otherwise.
 *  - loop: a cyclic sequential scan over 1.2x the capacity, LRU's worst
 *    case (every access misses); informative for CLOCK-like policies.
 *
 * Hit rates are counted by this program per access class, after a
 * warm-up that is not counted, and checked against the cache's own
 * hit/miss counters (pc_cache_get_stats).  The warm-up is long (300x the
 * capacity in reads by default) because S3-FIFO builds its hot set slowly
 * while scans run: its main queue only takes pages hit while in the small
 * FIFO or remembered by the ghost table, and only evicts (so only improves)
 * when it takes one, so with 40% scan reads its zipf hit rate takes 200 to
 * 300x the capacity in reads to settle, against a few times the capacity
 * for LRU.  --warmup 0 shows the cold start instead.
 *
 * Two references are printed below the table: for the zipf stream, the
 * best hit rate any online policy can reach (the probability mass of the
 * capacity's most popular pages: for independent references, holding
 * exactly those is optimal), and LRU's hit rate predicted by the Che
 * approximation, which the measured LRU rate should match closely (a check
 * of the LRU implementation and of this program).
 *
 * With --threads N it also measures throughput (page reads per second) of
 * 1, 2, 4, ... N threads reading a zipf stream from one shared cache, with
 * the automatic shard count and, for contrast, with a single shard, to show
 * whether sharding lets lookups scale.
 *
 * It needs lib/cache/cache.c, plus lib/util/size.c and lib/util/error.c for --budget's
 * size parser.  Standalone build (BUILDDIR holds config.h):
 *   gcc -std=gnu11 -O2 -Wall -Wextra -I include -I BUILDDIR -D_GNU_SOURCE \
 *       -pthread bench/cache-policy.c BUILDDIR/lib/.libs/libpunchcache.a \
 *       -o cache-policy -lm
 * (or name lib/cache/cache.c lib/util/size.c lib/util/error.c instead of the archive).
 * Run with --help for the options.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "punchcache/cache.h"
#include "punchcache/punchcache.h"

#define PROG "cache-policy"
#define EXIT_USAGE 2
#define MAX_ALPHAS 8
#define MAX_THREADS 256
#define MAX_ACCESSES UINT64_C (1000000000000)

#define ZIPF_SLOT 0             /* zipf pages live in volume slot 0 */
#define SCAN_SLOT 1             /* scans read slot 1, disjoint from them */
#define SCAN_LEN_FACTOR 2.0     /* a scan burst is 2x the capacity */
#define LOOP_LEN_FACTOR 1.2     /* the loop covers 1.2x the capacity */
#define WARMUP_FACTOR 300       /* default warm-up: 300x the capacity */

/* ---------------------------------------------------------------------- */
/* Parameters. */

struct params {
  uint64_t budget;              /* bytes */
  uint64_t accesses;            /* counted, per run (policy x workload) */
  uint64_t warmup;              /* not counted, before them */
  bool warmup_set;
  double alphas[MAX_ALPHAS];
  unsigned nalphas;
  uint64_t seed;
  unsigned threads;             /* 0: no throughput measurement */
  double ws_factor;             /* working set / capacity */
  double scan_share;            /* fraction of accesses that are scans */
  bool verbose;
  /* Derived from the budget. */
  uint64_t capacity;            /* pages */
  unsigned nshards;
  uint64_t working_set;         /* pages */
};

static const char help_text[] =
  "Usage: " PROG " [OPTIONS]\n"
  "\n"
  "Measure the hit rates of the punchcache block cache's policies, S3-FIFO\n"
  "and LRU, on synthetic read streams driven through the real cache\n"
  "(lib/cache/cache.c), and print them as a markdown table.  Workloads: zipf over\n"
  "a working set; the same zipf stream with one-pass sequential scans of 2x\n"
  "the capacity in bursts, and mixed in access by access (hit rates of the\n"
  "zipf accesses and of all accesses); a cyclic scan over 1.2x the capacity.\n"
  "Every run first warms the cache up with reads that are not counted.\n"
  "\n"
  "Options:\n"
  "  --budget SIZE        cache budget in bytes, suffixes K, M, G, T\n"
  "                       (powers of 1024) (default 64M)\n"
  "  --accesses N         page reads counted per run, i.e. per workload\n"
  "                       and policy (default 5000000)\n"
  "  --warmup N           page reads before counting starts, per run\n"
  "                       (default 300x the capacity: S3-FIFO needs that\n"
  "                       long to settle under scans; 0 = cold start)\n"
  "  --alpha A[,A...]     Zipf exponent(s), each in [0, 10], at most 8\n"
  "                       (default 0.9,1.1)\n"
  "  --seed S             seed of the deterministic generator (default 1)\n"
  "  --working-set X      zipf working set, as a multiple of the cache\n"
  "                       capacity (default 4)\n"
  "  --scan-share F       fraction of accesses that are scan reads in the\n"
  "                       zipf+scan workloads, 0 < F < 1 (default 0.4)\n"
  "  --threads N          also measure throughput (page reads/s) of 1, 2, 4,\n"
  "                       ... N threads sharing one cache (N <= 256), with\n"
  "                       automatic sharding and with one shard; zipf with\n"
  "                       the first alpha, --accesses reads per run split\n"
  "                       over the threads, after the warm-up\n"
  "  -v, --verbose        print the cache's counters after every run\n"
  "                       (on stderr)\n"
  "  -h, --help           show this help\n"
  "\n"
  "Output (stdout): the parameters as a header line, then the table (hit\n"
  "rates in percent, difference = S3-FIFO - LRU in percentage points) and\n"
  "two references for the zipf stream: the best online hit rate, and LRU's\n"
  "predicted by the Che approximation.\n"
  "Exit status: 0 success, 1 failure, 2 usage error.\n";

static void usage_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

static void
usage_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, PROG ": ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry '" PROG " --help' for more information.\n");
  exit (EXIT_USAGE);
}

static void die (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

static void
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, PROG ": ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (EXIT_FAILURE);
}

static void *
xcalloc (size_t n, size_t size)
{
  void *p = calloc (n, size);

  if (p == NULL)
    die ("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

/* A decimal unsigned integer in [lo, hi], nothing else. */
static uint64_t
parse_uint (const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
  char *end;
  unsigned long long v;

  if (*s < '0' || *s > '9')
    usage_error ("%s: '%s' is not a non-negative integer", opt, s);
  errno = 0;
  v = strtoull (s, &end, 10);
  if (*end != '\0')
    usage_error ("%s: '%s' is not a non-negative integer", opt, s);
  if (errno == ERANGE || v < lo || v > hi)
    usage_error ("%s: %s is out of range (%" PRIu64 " to %" PRIu64 ")",
                 opt, s, lo, hi);
  return v;
}

/* A finite number at s; false if there is none.  *end gets the first
 * character after it. */
static bool
scan_double (const char *s, double *v, char **end)
{
  errno = 0;
  *v = strtod (s, end);
  return *end != s && errno != ERANGE && isfinite (*v);
}

/* A finite number and nothing else. */
static double
parse_double (const char *opt, const char *s)
{
  char *end;
  double v;

  if (!scan_double (s, &v, &end) || *end != '\0')
    usage_error ("%s: '%s' is not a number", opt, s);
  return v;
}

static void
parse_alphas (struct params *p, const char *s)
{
  const char *cur = s;
  char *end;

  p->nalphas = 0;
  for (;;) {
    double a;
    if (!scan_double (cur, &a, &end) || (*end != ',' && *end != '\0'))
      usage_error ("--alpha: '%s' is not a comma-separated list of numbers",
                   s);
    if (a < 0 || a > 10)
      usage_error ("--alpha: %g is out of range (0 to 10)", a);
    if (p->nalphas == MAX_ALPHAS)
      usage_error ("--alpha: at most %d values", MAX_ALPHAS);
    p->alphas[p->nalphas++] = a;
    if (*end == '\0')
      break;
    cur = end + 1;
  }
}

static void
parse_args (struct params *p, int argc, char **argv)
{
  enum { O_BUDGET = 256, O_ACCESSES, O_WARMUP, O_ALPHA, O_SEED, O_THREADS,
         O_WS, O_SCAN_SHARE };
  static const struct option longopts[] = {
    { "budget", required_argument, NULL, O_BUDGET },
    { "accesses", required_argument, NULL, O_ACCESSES },
    { "warmup", required_argument, NULL, O_WARMUP },
    { "alpha", required_argument, NULL, O_ALPHA },
    { "seed", required_argument, NULL, O_SEED },
    { "threads", required_argument, NULL, O_THREADS },
    { "working-set", required_argument, NULL, O_WS },
    { "scan-share", required_argument, NULL, O_SCAN_SHARE },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  *p = (struct params) {
    .budget = 64 << 20, .accesses = 5000000, .alphas = { 0.9, 1.1 },
    .nalphas = 2, .seed = 1, .ws_factor = 4, .scan_share = 0.4,
  };
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":vh", longopts, NULL)) != -1) {
    switch (c) {
    case O_BUDGET: {
      int64_t v = pc_parse_size (optarg);
      if (v < 0)
        usage_error ("--budget: %s", pc_last_error ());
      if (v == 0)
        usage_error ("--budget: must be more than 0");
      p->budget = (uint64_t) v;
      break;
    }
    case O_ACCESSES:
      p->accesses = parse_uint ("--accesses", optarg, 1, MAX_ACCESSES);
      break;
    case O_WARMUP:
      p->warmup = parse_uint ("--warmup", optarg, 0, MAX_ACCESSES);
      p->warmup_set = true;
      break;
    case O_ALPHA:
      parse_alphas (p, optarg);
      break;
    case O_SEED:
      p->seed = parse_uint ("--seed", optarg, 0, UINT64_MAX);
      break;
    case O_THREADS:
      p->threads = (unsigned) parse_uint ("--threads", optarg, 1,
                                          MAX_THREADS);
      break;
    case O_WS:
      p->ws_factor = parse_double ("--working-set", optarg);
      if (!(p->ws_factor > 0 && p->ws_factor <= 1000))
        usage_error ("--working-set: %s is out of range (0 < X <= 1000)",
                     optarg);
      break;
    case O_SCAN_SHARE:
      p->scan_share = parse_double ("--scan-share", optarg);
      if (!(p->scan_share > 0 && p->scan_share < 1))
        usage_error ("--scan-share: %s is out of range (0 < F < 1)", optarg);
      break;
    case 'v':
      p->verbose = true;
      break;
    case 'h':
      fputs (help_text, stdout);
      exit (EXIT_SUCCESS);
    case ':':
      usage_error ("option '%s' needs a value", argv[optind - 1]);
    default:
      usage_error ("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    usage_error ("unexpected argument '%s'", argv[optind]);
}

/* ---------------------------------------------------------------------- */
/* Deterministic random numbers: xoshiro256** seeded by splitmix64. */

struct rng {
  uint64_t s[4];
};

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Independent streams for the same seed are told apart by `stream`. */
static void
rng_seed (struct rng *r, uint64_t seed, uint64_t stream)
{
  uint64_t x = seed ^ splitmix64 (&stream);

  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64 (&x);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t
rng_next (struct rng *r)
{
  uint64_t *s = r->s;
  uint64_t result = rotl (s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;

  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

/* Uniform in [0, 1). */
static inline double
rng_double (struct rng *r)
{
  return (double) (rng_next (r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n > 0 (modulo bias n / 2^64: negligible). */
static inline uint64_t
rng_below (struct rng *r, uint64_t n)
{
  return rng_next (r) % n;
}

/* ---------------------------------------------------------------------- */
/* Zipf sampler: rank k (0-based) has probability (k+1)^-alpha / H.  The
 * CDF is precomputed; a draw is a binary search.  Ranks map to pages by a
 * fixed random permutation so hot pages are spread over the working set. */

struct zipf {
  double alpha;
  uint64_t n;
  double *cdf;                  /* cdf[k] = P(rank <= k); cdf[n-1] = 1 */
  uint64_t *page;               /* page of rank k */
};

static void
zipf_init (struct zipf *z, double alpha, uint64_t n, uint64_t seed)
{
  double sum = 0;
  struct rng r;

  z->alpha = alpha;
  z->n = n;
  z->cdf = xcalloc (n, sizeof *z->cdf);
  z->page = xcalloc (n, sizeof *z->page);
  for (uint64_t k = 0; k < n; k++) {
    sum += pow ((double) (k + 1), -alpha);
    z->cdf[k] = sum;
  }
  for (uint64_t k = 0; k < n; k++)
    z->cdf[k] /= sum;
  z->cdf[n - 1] = 1.0;

  rng_seed (&r, seed, 0x7065726d);      /* "perm" */
  for (uint64_t k = 0; k < n; k++)
    z->page[k] = k;
  for (uint64_t k = n - 1; k > 0; k--) {  /* Fisher-Yates */
    uint64_t j = rng_below (&r, k + 1), t = z->page[k];
    z->page[k] = z->page[j];
    z->page[j] = t;
  }
}

static void
zipf_free (struct zipf *z)
{
  free (z->cdf);
  free (z->page);
}

static inline uint64_t
zipf_page (const struct zipf *z, struct rng *r)
{
  double u = rng_double (r);
  uint64_t lo = 0, hi = z->n - 1;

  while (lo < hi) {             /* first k with cdf[k] > u */
    uint64_t mid = lo + (hi - lo) / 2;
    if (z->cdf[mid] > u) hi = mid;
    else lo = mid + 1;
  }
  return z->page[lo];
}

/* Probability mass of the `top` most popular pages. */
static double
zipf_mass (const struct zipf *z, uint64_t top)
{
  return top == 0 ? 0 : top >= z->n ? 1 : z->cdf[top - 1];
}

/* The Che approximation of LRU under independent references: a page
 * stays cached for a characteristic time T (in accesses) after its last
 * use, T being such that the expected number of distinct pages used within
 * T equals the capacity; the hit rate is then sum p_k (1 - exp (-p_k T)).
 * Returns the expected occupancy for T, and the hit rate in *hit_rate. */
static double
che_occupancy (const struct zipf *z, double t, double *hit_rate)
{
  double occupancy = 0, hits = 0, prev = 0;

  for (uint64_t k = 0; k < z->n; k++) {
    double pk = z->cdf[k] - prev, in = -expm1 (-pk * t);
    prev = z->cdf[k];
    occupancy += in;
    hits += pk * in;
  }
  *hit_rate = hits;
  return occupancy;
}

static double
che_lru_hit_rate (const struct zipf *z, uint64_t capacity)
{
  double lo = 0, hi = 1, hit_rate;

  if (capacity >= z->n)
    return 1;
  while (che_occupancy (z, hi, &hit_rate) < (double) capacity)
    hi *= 2;
  for (int i = 0; i < 60 && hi - lo > 1e-9 * hi; i++) {
    double mid = (lo + hi) / 2;
    if (che_occupancy (z, mid, &hit_rate) < (double) capacity) lo = mid;
    else hi = mid;
  }
  che_occupancy (z, (lo + hi) / 2, &hit_rate);
  return hit_rate;
}

/* ---------------------------------------------------------------------- */
/* Access streams. */

enum workload { W_ZIPF, W_SCAN_BURST, W_SCAN_MIXED, W_LOOP };
enum access_class { A_ZIPF, A_SCAN, NCLASSES };

struct stream {
  enum workload kind;
  const struct zipf *z;
  struct rng zrng;              /* zipf draws: the same in every workload */
  struct rng mrng;              /* W_SCAN_MIXED: scan or zipf? */
  uint64_t i;                   /* accesses generated so far */
  uint64_t scan_next;           /* next scan page (never reused) */
  uint64_t zipf_len, scan_len;  /* W_SCAN_BURST: phase lengths */
  uint64_t loop_len;            /* W_LOOP */
  double scan_share;            /* W_SCAN_MIXED */
};

static void
stream_init (struct stream *st, enum workload kind, const struct zipf *z,
             const struct params *p)
{
  *st = (struct stream) { .kind = kind, .z = z, .scan_share = p->scan_share };
  rng_seed (&st->zrng, p->seed, 0x7a697066);     /* "zipf" */
  rng_seed (&st->mrng, p->seed, 0x6d6978);       /* "mix" */
  st->scan_len = (uint64_t) llround (SCAN_LEN_FACTOR * (double) p->capacity);
  if (st->scan_len == 0) st->scan_len = 1;
  /* scan_len / (zipf_len + scan_len) = scan_share */
  st->zipf_len = (uint64_t) llround ((double) st->scan_len *
                                     (1 - p->scan_share) / p->scan_share);
  if (st->zipf_len == 0) st->zipf_len = 1;
  st->loop_len = (uint64_t) llround (LOOP_LEN_FACTOR * (double) p->capacity);
  if (st->loop_len == 0) st->loop_len = 1;
}

static inline uint64_t
scan_key (struct stream *st)
{
  return PC_CACHE_KEY (SCAN_SLOT, st->scan_next++);
}

/* The next key to read, and its class. */
static inline uint64_t
stream_next (struct stream *st, enum access_class *cls)
{
  uint64_t i = st->i++;

  *cls = A_ZIPF;
  switch (st->kind) {
  case W_ZIPF:
    break;
  case W_SCAN_BURST:
    /* Zipf phase first, then a scan burst, repeatedly. */
    if (i % (st->zipf_len + st->scan_len) >= st->zipf_len) {
      *cls = A_SCAN;
      return scan_key (st);
    }
    break;
  case W_SCAN_MIXED:
    if (rng_double (&st->mrng) < st->scan_share) {
      *cls = A_SCAN;
      return scan_key (st);
    }
    break;
  case W_LOOP:
    *cls = A_SCAN;
    return PC_CACHE_KEY (SCAN_SLOT, i % st->loop_len);
  }
  return PC_CACHE_KEY (ZIPF_SLOT, zipf_page (st->z, &st->zrng));
}

/* ---------------------------------------------------------------------- */
/* The read path, as lib/core/volume.c does it for one page. */

static inline bool
read_page (struct pc_cache *c, uint64_t key, void *buf, uint64_t *unreserved)
{
  struct pc_cache_ticket t;
  int r;

  if (pc_cache_get (c, key, buf, 0, PC_CACHE_PAGE))
    return true;
  r = pc_cache_fill_begin (c, key, &t, buf, 0, PC_CACHE_PAGE);
  if (r == 0) {
    memset (t.buf, (int) (key & 0xff), PC_CACHE_PAGE);  /* "pool read" */
    memcpy (buf, t.buf, PC_CACHE_PAGE);
    pc_cache_fill_end (c, &t, true);
  }
  else if (r < 0) {             /* uncached read (another fill, no room) */
    memset (buf, (int) (key & 0xff), PC_CACHE_PAGE);
    (*unreserved)++;
  }
  /* r == 1 (only with threads): another thread filled the page meanwhile
   * and it was copied.  Counted as a miss here; the cache counts both the
   * miss of pc_cache_get and a hit in pc_cache_fill_begin. */
  return false;
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static const char *
policy_name (enum pc_cache_policy policy)
{
  return policy == PC_CACHE_LRU ? "LRU" : "S3-FIFO";
}

static struct pc_cache *
make_cache (const struct params *p, enum pc_cache_policy policy,
            unsigned nshards)
{
  struct pc_cache *c;
  int r = pc_cache_create (p->budget, policy, nshards, &c);

  if (r < 0)
    die ("pc_cache_create: %s", strerror (-r));
  return c;
}

/* ---------------------------------------------------------------------- */
/* Hit-rate runs. */

struct result {
  uint64_t hits[NCLASSES], reads[NCLASSES];
};

static double
rate (uint64_t hits, uint64_t reads)
{
  return reads ? (double) hits / (double) reads : 0;
}

static void
print_stats (const char *what, enum pc_cache_policy policy,
             const struct pc_cache_stats *s)
{
  fprintf (stderr, "# %s, %s: pages %" PRIu64 "/%" PRIu64 ", hits %" PRIu64
           ", misses %" PRIu64 ", fills %" PRIu64 ", unreserved %" PRIu64
           ", evictions %" PRIu64 ", ghost hits %" PRIu64 "\n",
           what, policy_name (policy), s->pages, s->capacity_pages, s->hits,
           s->misses, s->fills, s->fills_unreserved, s->evictions,
           s->ghost_hits);
}

static struct result
run (const struct params *p, enum pc_cache_policy policy,
     enum workload kind, const struct zipf *z, const char *what)
{
  static char buf[PC_CACHE_PAGE] __attribute__ ((aligned (4096)));
  struct pc_cache *c = make_cache (p, policy, 0);
  struct pc_cache_stats s0, s1;
  struct result res = { { 0 }, { 0 } };
  struct stream st;
  uint64_t unreserved = 0;

  stream_init (&st, kind, z, p);
  for (uint64_t i = 0; i < p->warmup; i++) {
    enum access_class cls;
    read_page (c, stream_next (&st, &cls), buf, &unreserved);
  }
  pc_cache_get_stats (c, &s0);
  for (uint64_t i = 0; i < p->accesses; i++) {
    enum access_class cls;
    uint64_t key = stream_next (&st, &cls);
    res.reads[cls]++;
    res.hits[cls] += read_page (c, key, buf, &unreserved);
  }
  pc_cache_get_stats (c, &s1);

  /* Cross-check our counts against the cache's own counters. */
  if (s1.hits - s0.hits != res.hits[A_ZIPF] + res.hits[A_SCAN] ||
      s1.misses - s0.misses != res.reads[A_ZIPF] + res.reads[A_SCAN] -
                               res.hits[A_ZIPF] - res.hits[A_SCAN])
    fprintf (stderr, PROG ": warning: %s, %s: the cache counted %" PRIu64
             " hits and %" PRIu64 " misses, this program %" PRIu64
             " hits of %" PRIu64 " reads\n", what, policy_name (policy),
             s1.hits - s0.hits, s1.misses - s0.misses,
             res.hits[A_ZIPF] + res.hits[A_SCAN],
             res.reads[A_ZIPF] + res.reads[A_SCAN]);
  if (unreserved)
    fprintf (stderr, PROG ": warning: %s, %s: %" PRIu64 " reads could not "
             "reserve a cache page (single-threaded, expected 0)\n",
             what, policy_name (policy), unreserved);
  if (pc_cache_verify (c) < 0)
    die ("%s, %s: pc_cache_verify found the cache inconsistent",
         what, policy_name (policy));
  if (p->verbose)
    print_stats (what, policy, &s1);
  pc_cache_destroy (c);
  return res;
}

static void
print_row (const char *what, double lru, double s3)
{
  printf ("| %s | %.2f%% | %.2f%% | %+.2f pp |\n",
          what, 100 * lru, 100 * s3, 100 * (s3 - lru));
  fflush (stdout);
}

/* One workload under both policies: one row, or two (zipf accesses, all
 * accesses) for the mixed workloads. */
static void
compare (const struct params *p, enum workload kind, const struct zipf *z,
         const char *what)
{
  struct result lru = run (p, PC_CACHE_LRU, kind, z, what);
  struct result s3 = run (p, PC_CACHE_S3FIFO, kind, z, what);
  char label[160];

  if (kind == W_ZIPF || kind == W_LOOP) {
    enum access_class cls = kind == W_ZIPF ? A_ZIPF : A_SCAN;
    print_row (what, rate (lru.hits[cls], lru.reads[cls]),
               rate (s3.hits[cls], s3.reads[cls]));
    return;
  }
  snprintf (label, sizeof label, "%s: zipf accesses", what);
  print_row (label, rate (lru.hits[A_ZIPF], lru.reads[A_ZIPF]),
             rate (s3.hits[A_ZIPF], s3.reads[A_ZIPF]));
  snprintf (label, sizeof label, "%s: all accesses (%.0f%% scan)", what,
            100 * rate (lru.reads[A_SCAN],
                        lru.reads[A_ZIPF] + lru.reads[A_SCAN]));
  print_row (label,
             rate (lru.hits[A_ZIPF] + lru.hits[A_SCAN],
                   lru.reads[A_ZIPF] + lru.reads[A_SCAN]),
             rate (s3.hits[A_ZIPF] + s3.hits[A_SCAN],
                   s3.reads[A_ZIPF] + s3.reads[A_SCAN]));
}

static void
hit_rate_table (const struct params *p)
{
  double optimum[MAX_ALPHAS], che[MAX_ALPHAS];
  char what[128];

  printf ("# %s: budget %" PRIu64 " bytes (%" PRIu64 " pages of 4 KiB, "
          "%u shards), %" PRIu64 " accesses counted per run after %" PRIu64
          " of warm-up, zipf alpha",
          PROG, p->budget, p->capacity, p->nshards, p->accesses, p->warmup);
  for (unsigned i = 0; i < p->nalphas; i++)
    printf ("%s%g", i ? "," : " ", p->alphas[i]);
  printf (" over %" PRIu64 " pages (%gx capacity), scans of %gx capacity "
          "making %g%% of accesses, loop over %gx capacity, seed %" PRIu64
          "\n\n", p->working_set, p->ws_factor, SCAN_LEN_FACTOR,
          100 * p->scan_share, LOOP_LEN_FACTOR, p->seed);
  printf ("| workload | LRU hit rate | S3-FIFO hit rate | difference |\n"
          "|---|---:|---:|---:|\n");
  fflush (stdout);

  for (unsigned i = 0; i < p->nalphas; i++) {
    struct zipf z;
    double a = p->alphas[i];

    zipf_init (&z, a, p->working_set, p->seed);
    optimum[i] = zipf_mass (&z, p->capacity);
    che[i] = che_lru_hit_rate (&z, p->capacity);
    snprintf (what, sizeof what, "zipf %g", a);
    compare (p, W_ZIPF, &z, what);
    snprintf (what, sizeof what, "zipf %g + scan bursts", a);
    compare (p, W_SCAN_BURST, &z, what);
    snprintf (what, sizeof what, "zipf %g + mixed scan", a);
    compare (p, W_SCAN_MIXED, &z, what);
    zipf_free (&z);
  }
  snprintf (what, sizeof what, "loop over %gx capacity", LOOP_LEN_FACTOR);
  compare (p, W_LOOP, NULL, what);

  printf ("\nReferences for the zipf stream (no scans): best online hit "
          "rate (the capacity's most popular pages held)");
  for (unsigned i = 0; i < p->nalphas; i++)
    printf ("%s alpha %g %.2f%%", i ? ";" : "", p->alphas[i],
            100 * optimum[i]);
  printf (".  LRU predicted by the Che approximation");
  for (unsigned i = 0; i < p->nalphas; i++)
    printf ("%s alpha %g %.2f%%", i ? ";" : "", p->alphas[i], 100 * che[i]);
  printf (".\n");
}

/* ---------------------------------------------------------------------- */
/* Throughput: threads reading zipf pages from one shared cache. */

struct worker {
  pthread_t thread;
  struct pc_cache *cache;
  const struct zipf *z;
  pthread_barrier_t *start;
  uint64_t seed, stream, reads, hits, unreserved;
};

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  char *buf = aligned_alloc (4096, PC_CACHE_PAGE);
  struct rng r;

  if (buf == NULL)
    die ("out of memory");
  rng_seed (&r, w->seed, w->stream);
  pthread_barrier_wait (w->start);
  for (uint64_t i = 0; i < w->reads; i++) {
    uint64_t key = PC_CACHE_KEY (ZIPF_SLOT, zipf_page (w->z, &r));
    w->hits += read_page (w->cache, key, buf, &w->unreserved);
  }
  free (buf);
  return NULL;
}

struct tput {
  double reads_per_s, hit_rate;
  unsigned nshards;
};

static struct tput
measure_throughput (const struct params *p, enum pc_cache_policy policy,
                    unsigned nshards, unsigned nthreads, const struct zipf *z)
{
  static char buf[PC_CACHE_PAGE] __attribute__ ((aligned (4096)));
  struct pc_cache *c = make_cache (p, policy, nshards);
  struct worker *w = xcalloc (nthreads, sizeof *w);
  pthread_barrier_t start;
  struct pc_cache_stats s;
  struct rng r;
  uint64_t reads = 0, hits = 0, unreserved = 0;
  double t0, seconds;
  int err;

  /* Warm the cache single-threaded so every run starts in steady state. */
  rng_seed (&r, p->seed, 0x7761726d);   /* "warm" */
  for (uint64_t i = 0; i < p->warmup; i++)
    read_page (c, PC_CACHE_KEY (ZIPF_SLOT, zipf_page (z, &r)), buf,
               &unreserved);

  pthread_barrier_init (&start, NULL, nthreads + 1);
  for (unsigned i = 0; i < nthreads; i++) {
    w[i] = (struct worker) {
      .cache = c, .z = z, .start = &start, .seed = p->seed, .stream = i + 1,
      .reads = p->accesses / nthreads + (i < p->accesses % nthreads),
    };
    if ((err = pthread_create (&w[i].thread, NULL, worker_main, &w[i])) != 0)
      die ("pthread_create: %s", strerror (err));
  }
  pthread_barrier_wait (&start);
  t0 = now ();
  for (unsigned i = 0; i < nthreads; i++) {
    pthread_join (w[i].thread, NULL);
    reads += w[i].reads;
    hits += w[i].hits;
  }
  seconds = now () - t0;

  pthread_barrier_destroy (&start);
  pc_cache_get_stats (c, &s);
  if (pc_cache_verify (c) < 0)
    die ("throughput, %s, %u threads: pc_cache_verify found the cache "
         "inconsistent", policy_name (policy), nthreads);
  if (p->verbose)
    print_stats ("throughput", policy, &s);
  pc_cache_destroy (c);
  free (w);
  return (struct tput) { (double) reads / seconds, rate (hits, reads),
                         s.nshards };
}

static void
throughput_row (const struct params *p, const struct zipf *z,
                unsigned nshards, unsigned nthreads, const struct tput *base)
{
  struct tput lru = measure_throughput (p, PC_CACHE_LRU, nshards, nthreads, z);
  struct tput s3 = measure_throughput (p, PC_CACHE_S3FIFO, nshards, nthreads,
                                       z);

  printf ("| %u | %u | %.2f M | %.2f M | %.2fx | %.2fx | %.2f%% | %.2f%% |\n",
          nthreads, lru.nshards, lru.reads_per_s / 1e6, s3.reads_per_s / 1e6,
          lru.reads_per_s / base[0].reads_per_s,
          s3.reads_per_s / base[1].reads_per_s,
          100 * lru.hit_rate, 100 * s3.hit_rate);
  fflush (stdout);
}

static void
throughput_table (const struct params *p)
{
  struct zipf z;
  struct tput base[2];

  zipf_init (&z, p->alphas[0], p->working_set, p->seed);
  printf ("\n# throughput: zipf %g over %" PRIu64 " pages, %" PRIu64
          " page reads per run split over the threads (after a warm-up of "
          "%" PRIu64 "), %ld online CPUs\n\n", p->alphas[0], p->working_set,
          p->accesses, p->warmup, sysconf (_SC_NPROCESSORS_ONLN));
  printf ("| threads | shards | LRU reads/s | S3-FIFO reads/s "
          "| LRU speedup | S3-FIFO speedup | LRU hit rate "
          "| S3-FIFO hit rate |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  fflush (stdout);

  /* The 1-thread, automatic-shard run is the baseline of the speedups. */
  base[0] = measure_throughput (p, PC_CACHE_LRU, 0, 1, &z);
  base[1] = measure_throughput (p, PC_CACHE_S3FIFO, 0, 1, &z);
  printf ("| 1 | %u | %.2f M | %.2f M | 1.00x | 1.00x | %.2f%% | %.2f%% |\n",
          base[0].nshards, base[0].reads_per_s / 1e6,
          base[1].reads_per_s / 1e6, 100 * base[0].hit_rate,
          100 * base[1].hit_rate);
  fflush (stdout);
  for (unsigned t = 2; t < p->threads; t *= 2)
    throughput_row (p, &z, 0, t, base);
  if (p->threads > 1)
    throughput_row (p, &z, 0, p->threads, base);
  /* Contrast: every thread on one mutex. */
  if (base[0].nshards > 1)
    throughput_row (p, &z, 1, p->threads, base);
  zipf_free (&z);
}

/* ---------------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  struct params p;
  struct pc_cache *c;
  struct pc_cache_stats s;
  double t0 = now ();

  parse_args (&p, argc, argv);

  /* Capacity and shard count do not depend on the policy. */
  if (pc_cache_create (p.budget, PC_CACHE_S3FIFO, 0, &c) == -EINVAL)
    usage_error ("--budget: %" PRIu64 " bytes is too small for one cache "
                 "page and its index", p.budget);
  if (c == NULL)
    die ("pc_cache_create: out of memory");
  pc_cache_get_stats (c, &s);
  pc_cache_destroy (c);
  p.capacity = s.capacity_pages;
  p.nshards = s.nshards;
  if (!p.warmup_set)
    p.warmup = WARMUP_FACTOR * p.capacity;
  p.working_set = (uint64_t) llround (p.ws_factor * (double) p.capacity);
  if (p.working_set == 0)
    p.working_set = 1;
  if (p.working_set > (UINT64_C (1) << 48))
    usage_error ("--working-set: %" PRIu64 " pages do not fit in a volume "
                 "slot's 48-bit page numbers", p.working_set);

  hit_rate_table (&p);
  if (p.threads)
    throughput_table (&p);
  printf ("\nTotal runtime %.1f s.\n", now () - t0);
  return EXIT_SUCCESS;
}
