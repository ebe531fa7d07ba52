/* punchcache: JSON string output, shared by the statistics writer
 * (lib/stats.c) and the admin tool.
 *
 * What: writes a C string as a JSON string literal.  Names come from pool
 * files and clients (untrusted), so every byte is accounted for: quotes,
 * backslashes and control characters are escaped and bytes that are not
 * valid UTF-8 (overlong forms, surrogates, > U+10FFFF) become U+FFFD, so
 * the output is always valid JSON.  No state, no locks.
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>

#include "punchcache/punchcache.h"

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static int
utf8_len (const unsigned char *s)
{
  int n, i;
  uint32_t cp;

  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) { n = 2; cp = s[0] & 0x1f; }
  else if ((s[0] & 0xf0) == 0xe0) { n = 3; cp = s[0] & 0x0f; }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) { n = 4; cp = s[0] & 0x07; }
  else return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * bytes that are not valid UTF-8 become U+FFFD. */
void
pc_json_string (FILE *f, const char *str)
{
  const unsigned char *s = (const unsigned char *) str;
  int n;

  putc ('"', f);
  while (*s) {
    if (*s == '"' || *s == '\\') fprintf (f, "\\%c", *s);
    else if (*s == '\n') fputs ("\\n", f);
    else if (*s == '\t') fputs ("\\t", f);
    else if (*s < 0x20 || *s == 0x7f) fprintf (f, "\\u%04x", *s);
    else if ((n = utf8_len (s)) == 0) fputs ("\\ufffd", f);
    else { fwrite (s, 1, (size_t) n, f); s += n; continue; }
    s++;
  }
  putc ('"', f);
}

