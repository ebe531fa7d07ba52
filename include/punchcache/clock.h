/* punchcache: the one monotonic clock (lib/util).
 *
 * Latencies, waits and timeouts everywhere are CLOCK_MONOTONIC
 * nanoseconds: never wall time, which jumps. */
#ifndef PUNCHCACHE_CLOCK_H
#define PUNCHCACHE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
pc_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

#endif
