/* What a fuzz target gives fuzz-driver.c, the mutation loop that stands in
 * for libFuzzer under gcc's AddressSanitizer: valid seed inputs and,
 * optionally, mutations that know the target's format.  Each target has a
 * fuzz/seeds-NAME.c defining fuzz_get_seeds; the target itself
 * (fuzz/fuzz-NAME.c, LLVMFuzzerTestOneInput) knows nothing of the driver,
 * so it builds as a libFuzzer target unchanged.
 */
#ifndef PUNCHCACHE_FUZZ_DRIVER_H
#define PUNCHCACHE_FUZZ_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_MAX_SEEDS 8

struct fuzz_seeds {
  const char *name;             /* first word of the summary line */
  size_t max_len;               /* the largest input made */
  unsigned n;                   /* seeds[0..n-1], each valid */
  const uint8_t *data[FUZZ_MAX_SEEDS];
  size_t len[FUZZ_MAX_SEEDS];
  /* Sometimes feed the whole max_len buffer (the seed, then zeros). */
  bool grow;
  /* At most this many changes per input (0: 8).  Fewer keep more inputs
   * valid enough to reach the checks behind the syntax. */
  unsigned max_changes;
  /* One format-aware change of buf (len bytes, room for max_len): returns
   * the new length (1..max_len).  NULL: only the generic mutations. */
  size_t (*mutate) (const struct fuzz_seeds *s, uint8_t *buf, size_t len);
};

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Defined by the target's seeds file: fills *s; exits 1 if a seed it made
 * is not valid (the run would only exercise the first checks). */
void fuzz_get_seeds (struct fuzz_seeds *s);

/* The driver's pseudo-random numbers (xorshift64, fixed seed). */
uint64_t fuzz_rand (void);

#endif
