/* punchcache: per-thread error messages.
 *
 * Core functions return -errno; the sentence explaining the failure is kept
 * in a thread-local buffer so front-ends can show it (nbdkit_error, the
 * admin tool's stderr) without the library ever printing.  No locks: the
 * buffer is per thread.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "punchcache/punchcache.h"

static __thread char last_error[512];

const char *
pc_last_error (void)
{
  return last_error;
}

int
pc_error (int err, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (last_error, sizeof last_error, fmt, ap);
  va_end (ap);
  return err > 0 ? -err : err;
}
