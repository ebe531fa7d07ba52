/* punchcache: CRC-32C (Castagnoli) for every on-disk checksum.
 *
 * What: reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF,
 * chainable (pc_crc32c(pc_crc32c(0, a), b) == crc of a||b).  Why CRC-32C:
 * it detects all burst errors up to 32 bits and every odd number of bit
 * flips, and it is the checksum of ext4/btrfs/iSCSI metadata, so hardware
 * (SSE4.2) computes it when present.
 *
 * Data structure: eight 256-entry tables (slice-by-8), built once with
 * pthread_once: table[k][b] is the CRC of byte b followed by k zero bytes,
 * so eight table lookups advance the CRC over 8 bytes at once.  On x86-64
 * with SSE4.2 the crc32 instruction is used instead (same polynomial);
 * setting PUNCHCACHE_CRC32C=software in the environment before the first
 * call forces the table path (unit-format runs its vectors both ways).
 *
 * Invariants:
 *  C1 The tables and the path choice are immutable after init.
 *  C2 Both paths compute the same function for every buffer, alignment and
 *     length, independently of host byte order (the table path loads its
 *     8-byte words as little-endian explicitly).
 *
 * Locks: none (pthread_once only).
 */
#include <config.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "punchcache/crc32c.h"

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__)
static int have_sse42;
#endif

static void
init_tables (void)
{
  uint32_t i, k, c;

  for (i = 0; i < 256; i++) {
    c = i;
    for (k = 0; k < 8; k++)
      c = (c >> 1) ^ (POLY & (0u - (c & 1)));
    table[0][i] = c;
  }
  for (i = 0; i < 256; i++)
    for (k = 1; k < 8; k++)
      table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xff];
#if defined(__x86_64__)
  {
    const char *force = getenv ("PUNCHCACHE_CRC32C");
    have_sse42 = __builtin_cpu_supports ("sse4.2") &&
      !(force && strcmp (force, "software") == 0);
  }
#endif
}

static inline uint64_t
load_le64 (const uint8_t *p)
{
  uint64_t v = 0;
  int i;

  for (i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static uint32_t
crc_sw (uint32_t crc, const uint8_t *p, size_t len)
{
  while (len >= 8) {
    uint64_t v = load_le64 (p) ^ crc;           /* C2 */
    crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^
      table[5][(v >> 16) & 0xff] ^ table[4][(v >> 24) & 0xff] ^
      table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
      table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
    p += 8; len -= 8;
  }
  while (len--)
    crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__)
__attribute__ ((target ("sse4.2")))
static uint32_t
crc_hw (uint32_t crc, const uint8_t *p, size_t len)
{
  uint64_t c = crc;

  while (len >= 8) {
    uint64_t v;
    memcpy (&v, p, 8);
    c = __builtin_ia32_crc32di (c, v);
    p += 8; len -= 8;
  }
  while (len--)
    c = __builtin_ia32_crc32qi ((uint32_t) c, *p++);
  return (uint32_t) c;
}
#endif

uint32_t
pc_crc32c (uint32_t crc, const void *buf, size_t len)
{
  pthread_once (&table_once, init_tables);
#if defined(__x86_64__)
  if (have_sse42)
    return ~crc_hw (~crc, buf, len);
#endif
  return ~crc_sw (~crc, buf, len);
}
