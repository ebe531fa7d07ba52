/* punchcache: size parsing ("64K", "10G") shared by every front-end.
 *
 * Accepts a decimal number followed by an optional suffix: b/B (bytes),
 * s/S (512-byte sectors), or K/k, M/m, G/g, T/t, P/p, E/e (powers of 1024),
 * the last six optionally followed by "iB" or "B".  Every suffix nbdkit's
 * own parser (nbdkit_parse_size) accepts is accepted, so the nbdkit plugin
 * and punchcached read size= the same way; "KiB"/"KB" are extras.  Rejects
 * negative numbers, junk and overflow.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/punchcache.h"

static int
suffix_shift (const char *s, unsigned *shift)
{
  static const char units[] = "bkmgtpe";
  const char *u;

  if (*s == '\0') { *shift = 0; return 0; }
  if (*s == 's' || *s == 'S') {           /* 512-byte sectors */
    *shift = 9;
    return s[1] == '\0' ? 0 : -1;
  }
  u = strchr (units, tolower ((unsigned char) *s));
  if (u == NULL) return -1;
  *shift = (unsigned) (u - units) * 10;
  s++;
  if (*u != 'b' && (strcmp (s, "iB") == 0 || strcmp (s, "B") == 0))
    s += strlen (s);
  return *s == '\0' ? 0 : -1;
}

int64_t
pc_parse_size (const char *str)
{
  char *end;
  unsigned long long n;
  unsigned shift;

  if (str == NULL || !isdigit ((unsigned char) *str))
    return pc_error (EINVAL, "could not parse size '%s': expected a number "
                     "with an optional suffix b, s (512 bytes), K, M, G, T, P or E",
                     str ? str : "");
  errno = 0;
  n = strtoull (str, &end, 10);
  if (errno == ERANGE || n > INT64_MAX)
    return pc_error (ERANGE, "size '%s' is too large", str);
  if (suffix_shift (end, &shift) == -1)
    return pc_error (EINVAL, "could not parse size '%s': unknown suffix '%s'",
                     str, end);
  if (shift && n > ((uint64_t) INT64_MAX >> shift))
    return pc_error (ERANGE, "size '%s' is too large", str);
  return (int64_t) (n << shift);
}
