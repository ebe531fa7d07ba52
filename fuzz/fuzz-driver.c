/* A mutation loop for the fuzz targets in fuzz/ when libFuzzer is not
 * available (gcc builds): starts from the valid seeds the target's
 * seeds-NAME.c makes (fuzz-driver.h) and feeds random mutations to the
 * target -- bit flips, byte sets, 32/64-bit field overwrites with boundary
 * values, truncation, and the target's own format-aware changes.  Every
 * input is a heap copy of exactly its length, so ASan catches overreads.
 *
 *   fuzz-NAME-asan [ITERATIONS [SECONDS]]   (default 200000, 20)
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz-driver.h"

static uint64_t rng = 88172645463325252u;

uint64_t
fuzz_rand (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static size_t
mutate (const struct fuzz_seeds *s, uint8_t *buf, size_t len)
{
  static const uint64_t edge[] = { 0, 1, 2, 511, 4095, 4096, 65535, 0x7fffffff,
                                   0xffffffff, UINT64_MAX, UINT64_MAX / 2 };
  unsigned n = 1 + fuzz_rand () % (s->max_changes ? s->max_changes : 8);
  unsigned i, ops = s->mutate ? 6 : 5;

  for (i = 0; i < n; i++) {
    size_t at = fuzz_rand () % len;
    switch (fuzz_rand () % ops) {
    case 0: buf[at] ^= (uint8_t) (1u << (fuzz_rand () % 8)); break;
    case 1: buf[at] = (uint8_t) fuzz_rand (); break;
    case 2: if (at + 8 <= len) { uint64_t v = edge[fuzz_rand () % 11]; memcpy (buf + at, &v, 8); } break;
    case 3: if (at + 4 <= len) { uint32_t v = (uint32_t) edge[fuzz_rand () % 11]; memcpy (buf + at, &v, 4); } break;
    case 4: len = 1 + fuzz_rand () % len; break;                /* truncate */
    case 5: len = s->mutate (s, buf, len); break;
    }
  }
  return len;
}

int
main (int argc, char **argv)
{
  unsigned long iters = argc > 1 ? strtoul (argv[1], NULL, 0) : 200000;
  unsigned long secs = argc > 2 ? strtoul (argv[2], NULL, 0) : 20, i;
  time_t t0 = time (NULL);
  struct fuzz_seeds s = { 0 };
  uint8_t *buf;

  fuzz_get_seeds (&s);
  if ((buf = malloc (s.max_len)) == NULL)
    return 1;
  for (i = 0; i < s.n; i++)
    LLVMFuzzerTestOneInput (s.data[i], s.len[i]);
  for (i = 0; i < iters && (unsigned long) (time (NULL) - t0) < secs; i++) {
    size_t k = fuzz_rand () % s.n, len = s.len[k];
    uint8_t *in;
    memset (buf, 0, s.max_len);
    memcpy (buf, s.data[k], len);
    if (s.grow && fuzz_rand () % 4 == 0) len = s.max_len;
    len = mutate (&s, buf, len);
    in = malloc (len);                 /* exact size, so ASan catches overreads */
    memcpy (in, buf, len);
    LLVMFuzzerTestOneInput (in, len);
    free (in);
  }
  printf ("%s: %lu inputs in %ld s, no crash\n", s.name, i,
          (long) (time (NULL) - t0));
  free (buf);
  return 0;
}
