/* Tagged test data shared by the test clients: every 512-byte sector
 * written carries a header {magic, volume, block, seq, sector} and a body
 * derived from it, so a reader can tell exactly which write of which block
 * a sector came from, or that it is garbage. */
#ifndef PUNCHCACHE_TESTS_TAGGED_H
#define PUNCHCACHE_TESTS_TAGGED_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define TAG_MAGIC 0x50435243u            /* "PCRC" */
#define TAG_SECTOR 512

struct tag_hdr { uint32_t magic, vol; uint64_t block, seq; uint32_t sector, pad; };

static inline uint64_t
tag_mix (uint64_t x)
{
  x ^= x >> 33; x *= UINT64_C (0xff51afd7ed558ccd);
  x ^= x >> 33; x *= UINT64_C (0xc4ceb9fe1a85ec53);
  return x ^ (x >> 33);
}

static inline void
tag_fill_sector (uint8_t *s, uint32_t vol, uint64_t block, uint64_t seq,
                 uint32_t sector)
{
  struct tag_hdr h = { TAG_MAGIC, vol, block, seq, sector, 0 };
  uint64_t x = tag_mix (seq * 131 + block * 7 + vol + sector * 1000003);
  size_t i;

  memcpy (s, &h, sizeof h);
  for (i = sizeof h; i < TAG_SECTOR; i += 8) {
    x = tag_mix (x + i);
    memcpy (s + i, &x, 8);
  }
}

static inline bool
tag_is_zero (const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++) if (p[i]) return false;
  return true;
}

/* Decode a non-zero sector: true and *h if it is a well-formed tagged
 * sector (header and body consistent), false if it is garbage. */
static inline bool
tag_decode (const uint8_t *s, uint32_t sector, struct tag_hdr *h)
{
  uint8_t want[TAG_SECTOR];

  memcpy (h, s, sizeof *h);
  if (h->magic != TAG_MAGIC || h->sector != sector || h->seq == 0)
    return false;
  tag_fill_sector (want, h->vol, h->block, h->seq, h->sector);
  return memcmp (want, s, TAG_SECTOR) == 0;
}

#endif
