/* punchcache: on-disk format -- layout, superblock, metadata pages.
 *
 * What: pure encode/decode/validate functions for the structures described
 * byte by byte in include/punchcache/format.h (and docs/design.md).  No
 * I/O, no locks, so every decoder is fuzzed (fuzz/fuzz-pool.c).
 *
 * Why fixed layout: every offset is a function of (nblocks, block_size)
 * alone (pc_layout_for_nblocks), so the superblock's layout fields are
 * redundant on purpose: a decoder recomputes them and rejects any
 * difference, which catches corruption the checksum cannot (a well-formed
 * superblock from another pool or program) and bounds every later access.
 *
 * Layout rule:
 *   meta_pages    = PC_VOLTABLE_PAGES + ceil(nblocks / PC_RMAP_PER_PAGE)
 *   journal_pages = clamp(2 * (min(meta_pages, PC_TXN_MAX_PAGES) + 2),
 *                         PC_JOURNAL_MIN_PAGES, PC_JOURNAL_MAX_PAGES)
 *   meta_offset   = 2 pages; journal follows the metadata area;
 *   data_offset   = journal end rounded up to max(block_size, 1 MiB)
 *   total_bytes   = data_offset + nblocks * block_size
 *   with 1 <= nblocks <= 2^48 and total_bytes <= INT64_MAX (an off_t), else
 *   -EINVAL.  pc_layout_for_device picks the largest nblocks whose
 *   total_bytes fits the device (binary search: total_bytes is strictly
 *   increasing in nblocks).
 *
 * Checksums (exactly):
 *   superblock, journal descriptor and commit pages:
 *     crc32c(0, page with its 4-byte crc field as zero, 4096)
 *   metadata page number n:
 *     crc32c(crc32c(0, le32(n), 4), page + 4, 4092)
 *   so the stored page number (bytes 4..7) is covered as well as seeded.
 *
 * Strictness: decoders accept exactly what the encoders write.  Beyond the
 * format.h field rules, a volume entry's name bytes after the NUL must be
 * zero and an in-use volume's size must be non-zero (the store refuses
 * size 0 too); an entry with flags 0 is valid only if all its 64 bytes are
 * zero (otherwise it is damage, -EUCLEAN).
 *
 * Invariants:
 *  F1 Decoders never read outside the page they are given and never trust
 *     a field before range-checking it.
 *  F2 A decoded superblock's layout equals pc_layout_for_nblocks() of its
 *     nblocks and block size, and total_bytes cannot overflow.
 *  F3 Metadata page checksums are seeded with the page number, so a page
 *     written at the wrong place fails its check.
 *  F4 An all-zero metadata page or volume entry is valid and empty.
 *
 * Locks: none.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"

#define MIB (UINT64_C (1) << 20)
#define SB_CRC_OFF 12
#define SB_USED_BYTES 120
#define VOL_ENTRY_SIZE 64
#define META_HDR 8
#define PC_MAX_NBLOCKS (UINT64_C (1) << 48)

static int bad (char *why, size_t len, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static int
bad (char *why, size_t len, const char *fmt, ...)
{
  va_list ap;

  if (why && len) {
    va_start (ap, fmt);
    vsnprintf (why, len, fmt, ap);
    va_end (ap);
  }
  return -EUCLEAN;
}

static bool
valid_block_size (uint64_t bs)
{
  return bs >= PC_MIN_BLOCK_SIZE && bs <= PC_MAX_BLOCK_SIZE &&
    (bs & (bs - 1)) == 0;
}

/* ---- layout ---- */

uint64_t
pc_meta_pages_for (uint64_t nblocks)
{
  return PC_VOLTABLE_PAGES + (nblocks + PC_RMAP_PER_PAGE - 1) / PC_RMAP_PER_PAGE;
}

uint32_t
pc_journal_pages_for (uint64_t meta_pages)
{
  uint64_t t = meta_pages < PC_TXN_MAX_PAGES ? meta_pages : PC_TXN_MAX_PAGES;
  uint64_t j = 2 * (t + 2);

  if (j < PC_JOURNAL_MIN_PAGES) j = PC_JOURNAL_MIN_PAGES;
  if (j > PC_JOURNAL_MAX_PAGES) j = PC_JOURNAL_MAX_PAGES;
  return (uint32_t) j;
}

/* The largest block count for block_size: nblocks <= 2^48 (the reverse map
 * and the superblock bound it) and nblocks * block_size <= INT64_MAX, so
 * every pool offset fits in an off_t.  0 if block_size is invalid. */
static uint64_t
max_nblocks (uint32_t block_size)
{
  uint64_t n;

  if (!valid_block_size (block_size))
    return 0;
  n = (uint64_t) INT64_MAX / block_size;
  return n < PC_MAX_NBLOCKS ? n : PC_MAX_NBLOCKS;
}

int
pc_layout_for_nblocks (uint64_t nblocks, uint32_t block_size,
                       struct pc_superblock *sb)
{
  uint64_t align, meta, jend, data_offset;
  uint32_t jpages;

  if (nblocks == 0 || nblocks > max_nblocks (block_size))
    return -EINVAL;
  meta = pc_meta_pages_for (nblocks);          /* < 2^40: no overflow below */
  jpages = pc_journal_pages_for (meta);
  align = block_size > MIB ? block_size : MIB;
  jend = 2 * PC_PAGE_SIZE + (meta + jpages) * PC_PAGE_SIZE;
  data_offset = (jend + align - 1) / align * align;
  if (data_offset > (uint64_t) INT64_MAX - nblocks * block_size)
    return -EINVAL;                                      /* F2 */
  sb->block_size = block_size;
  sb->nblocks = nblocks;
  sb->meta_offset = 2 * PC_PAGE_SIZE;
  sb->meta_pages = meta;
  sb->journal_pages = jpages;
  sb->journal_offset = sb->meta_offset + meta * PC_PAGE_SIZE;
  sb->data_offset = data_offset;
  sb->total_bytes = data_offset + nblocks * block_size;
  return 0;
}

/* total_bytes grows strictly with nblocks (every layout term is
 * non-decreasing in it), so a binary search finds the largest count that
 * fits: at most ~48 steps. */
int
pc_layout_for_device (uint64_t device_bytes, uint32_t block_size,
                      struct pc_superblock *sb)
{
  uint64_t lo = 0, hi, mid;           /* lo fits (0 = none yet); hi+1 does not */

  if (!valid_block_size (block_size))
    return -EINVAL;
  hi = device_bytes / block_size;
  if (hi > max_nblocks (block_size))
    hi = max_nblocks (block_size);
  while (lo < hi) {
    mid = lo + (hi - lo + 1) / 2;
    if (pc_layout_for_nblocks (mid, block_size, sb) == 0 &&
        sb->total_bytes <= device_bytes)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0)
    return -ENOSPC;
  return pc_layout_for_nblocks (lo, block_size, sb);
}

/* ---- superblock ---- */

void
pc_sb_encode (const struct pc_superblock *sb, void *page)
{
  uint8_t *p = page;

  memset (p, 0, PC_PAGE_SIZE);
  memcpy (p, PC_SB_MAGIC, 8);
  pc_put_le32 (p + 8, sb->version ? sb->version : PC_FORMAT_VERSION);
  pc_put_le64 (p + 16, sb->generation);
  pc_put_le32 (p + 24, sb->block_size);
  pc_put_le32 (p + 28, sb->journal_pages);
  pc_put_le64 (p + 32, sb->nblocks);
  pc_put_le64 (p + 40, sb->meta_offset);
  pc_put_le64 (p + 48, sb->meta_pages);
  pc_put_le64 (p + 56, sb->journal_offset);
  pc_put_le64 (p + 64, sb->data_offset);
  pc_put_le64 (p + 72, sb->total_bytes);
  pc_put_le64 (p + 80, sb->journal_tail);
  pc_put_le64 (p + 88, sb->journal_seq);
  memcpy (p + 96, sb->uuid, 16);
  pc_put_le64 (p + 112, sb->created);
  pc_put_le32 (p + SB_CRC_OFF, pc_crc32c (0, p, PC_PAGE_SIZE));
}

uint32_t
pc_page_crc_without (const void *page, size_t crc_off)
{
  static const uint8_t zero4[4];
  const uint8_t *p = page;
  uint32_t c = pc_crc32c (0, p, crc_off);

  c = pc_crc32c (c, zero4, 4);
  return pc_crc32c (c, p + crc_off + 4, PC_PAGE_SIZE - crc_off - 4);
}

static void
sb_read_fields (const uint8_t *p, struct pc_superblock *sb)
{
  sb->version = pc_get_le32 (p + 8);
  sb->generation = pc_get_le64 (p + 16);
  sb->block_size = pc_get_le32 (p + 24);
  sb->journal_pages = pc_get_le32 (p + 28);
  sb->nblocks = pc_get_le64 (p + 32);
  sb->meta_offset = pc_get_le64 (p + 40);
  sb->meta_pages = pc_get_le64 (p + 48);
  sb->journal_offset = pc_get_le64 (p + 56);
  sb->data_offset = pc_get_le64 (p + 64);
  sb->total_bytes = pc_get_le64 (p + 72);
  sb->journal_tail = pc_get_le64 (p + 80);
  sb->journal_seq = pc_get_le64 (p + 88);
  memcpy (sb->uuid, p + 96, 16);
  sb->created = pc_get_le64 (p + 112);
}

#define LAYOUT_FIELD(f) \
  if (sb->f != l.f) \
    return bad (why, whylen, "superblock field " #f " is %" PRIu64 \
                " but the layout of %" PRIu64 " blocks needs %" PRIu64, \
                (uint64_t) sb->f, sb->nblocks, (uint64_t) l.f)

static int
sb_check_layout (const struct pc_superblock *sb, char *why, size_t whylen)
{
  struct pc_superblock l;

  if (!valid_block_size (sb->block_size))
    return bad (why, whylen, "block size %" PRIu32 " is not a power of two "
                "from 4096 to 1048576", sb->block_size);
  if (pc_layout_for_nblocks (sb->nblocks, sb->block_size, &l) < 0)
    return bad (why, whylen, "block count %" PRIu64 " is out of range "
                "(1 to %" PRIu64 " blocks of %" PRIu32 " bytes)",
                sb->nblocks, max_nblocks (sb->block_size), sb->block_size);
  LAYOUT_FIELD (meta_offset);
  LAYOUT_FIELD (meta_pages);
  LAYOUT_FIELD (journal_pages);
  LAYOUT_FIELD (journal_offset);
  LAYOUT_FIELD (data_offset);
  LAYOUT_FIELD (total_bytes);
  if (sb->journal_tail >= sb->journal_pages)
    return bad (why, whylen, "journal tail %" PRIu64 " is past the journal "
                "(%" PRIu32 " pages)", sb->journal_tail, sb->journal_pages);
  return 0;
}

int
pc_sb_decode (const void *page, struct pc_superblock *sb,
              char *why, size_t whylen)
{
  const uint8_t *p = page;
  uint32_t version = pc_get_le32 (p + 8);
  size_t i;

  if (memcmp (p, PC_SB_MAGIC, 8) != 0)
    return bad (why, whylen, "bad magic (not a punchcache pool)");
  if (version > PC_FORMAT_VERSION)
    return bad (why, whylen, "pool format version %" PRIu32 " is newer than "
                "this program supports (%u)", version, PC_FORMAT_VERSION);
  if (pc_get_le32 (p + SB_CRC_OFF) != pc_page_crc_without (p, SB_CRC_OFF))
    return bad (why, whylen, "checksum mismatch");
  if (version < PC_FORMAT_VERSION_MIN)
    return bad (why, whylen, "unknown format version %" PRIu32, version);
  for (i = SB_USED_BYTES; i < PC_PAGE_SIZE; i++)
    if (p[i] != 0)
      return bad (why, whylen, "reserved byte %zu is not zero", i);
  sb_read_fields (p, sb);
  return sb_check_layout (sb, why, whylen);
}

/* ---- metadata pages ---- */

static uint32_t
meta_crc (const uint8_t *page, uint32_t page_no)
{
  uint8_t seed[4];

  pc_put_le32 (seed, page_no);                   /* F3 */
  return pc_crc32c (pc_crc32c (0, seed, 4), page + 4, PC_PAGE_SIZE - 4);
}

void
pc_meta_page_seal (void *page, uint32_t page_no)
{
  uint8_t *p = page;

  pc_put_le32 (p + 4, page_no);
  pc_put_le32 (p, meta_crc (p, page_no));
}

static bool
all_zero (const uint8_t *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

int
pc_meta_page_check (const void *page, uint32_t page_no,
                    char *why, size_t whylen)
{
  const uint8_t *p = page;

  if (all_zero (p, PC_PAGE_SIZE))                /* F4 */
    return 0;
  if (pc_get_le32 (p + 4) != page_no)
    return bad (why, whylen, "it carries page number %" PRIu32
                " instead of %" PRIu32, pc_get_le32 (p + 4), page_no);
  if (pc_get_le32 (p) != meta_crc (p, page_no))
    return bad (why, whylen, "checksum mismatch (stored 0x%08" PRIx32
                ", computed 0x%08" PRIx32 ")", pc_get_le32 (p),
                meta_crc (p, page_no));
  return 0;
}

/* ---- volume table ---- */

int
pc_vol_name_valid (const char *name)
{
  size_t i, len = strnlen (name, PC_VOL_NAME_MAX + 1);

  if (len == 0 || len > PC_VOL_NAME_MAX || name[0] == '.' || name[0] == '-')
    return 0;
  for (i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr ("._+@-", c)))
      return 0;
  }
  return 1;
}

/* Index out of range: a programming error; asserted in debug builds and
 * otherwise ignored (nothing outside the page is touched, F1). */
void
pc_vol_entry_encode (const struct pc_volume_entry *e, void *page, unsigned idx)
{
  uint8_t *p = (uint8_t *) page + META_HDR + (size_t) idx * VOL_ENTRY_SIZE;

  assert (idx < PC_VOLS_PER_PAGE);
  if (idx >= PC_VOLS_PER_PAGE)
    return;
  memset (p, 0, VOL_ENTRY_SIZE);
  if (!(e->flags & PC_VOL_IN_USE))
    return;                                      /* F4: unused = all zero */
  memcpy (p, e->name, strnlen (e->name, PC_VOL_NAME_MAX));
  pc_put_le64 (p + 48, e->size);
  pc_put_le32 (p + 56, PC_VOL_IN_USE);
}

/* Replace bytes outside printable ASCII by '?'. */
static void
printable (char *s)
{
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e)
      *s = '?';
}

/* The name field: NUL-terminated within 48 bytes, valid, zero after the
 * NUL.  Copies it into e->name. */
static int
vol_name_check (const uint8_t *p, struct pc_volume_entry *e,
                char *why, size_t whylen)
{
  const uint8_t *nul = memchr (p, 0, PC_VOL_NAME_MAX + 1);
  size_t len;

  if (nul == NULL)
    return bad (why, whylen, "volume name is not NUL-terminated within %u "
                "bytes", PC_VOL_NAME_MAX + 1);
  len = (size_t) (nul - p);
  memcpy (e->name, p, len + 1);
  if (!pc_vol_name_valid (e->name)) {
    printable (e->name);                         /* it goes to a terminal */
    return bad (why, whylen, "invalid volume name '%s'", e->name);
  }
  if (!all_zero (nul, PC_VOL_NAME_MAX + 1 - len))
    return bad (why, whylen, "volume '%s' has junk after its name", e->name);
  return 0;
}

int
pc_vol_entry_decode (const void *page, unsigned idx,
                     struct pc_volume_entry *e, char *why, size_t whylen)
{
  const uint8_t *p;
  int r;

  memset (e, 0, sizeof *e);
  if (idx >= PC_VOLS_PER_PAGE)
    return bad (why, whylen, "entry index %u out of range (0 to %u)", idx,
                PC_VOLS_PER_PAGE - 1);
  p = (const uint8_t *) page + META_HDR + (size_t) idx * VOL_ENTRY_SIZE;
  if (all_zero (p, VOL_ENTRY_SIZE))              /* F4: unused */
    return 0;
  if (pc_get_le32 (p + 56) == 0)
    return bad (why, whylen, "entry is not in use (flags 0) but not zero");
  if (pc_get_le32 (p + 56) != PC_VOL_IN_USE)
    return bad (why, whylen, "unknown flags 0x%" PRIx32, pc_get_le32 (p + 56));
  if (pc_get_le32 (p + 60) != 0)
    return bad (why, whylen, "reserved field is 0x%" PRIx32 ", not zero",
                pc_get_le32 (p + 60));
  if ((r = vol_name_check (p, e, why, whylen)) < 0)
    return r;
  e->size = pc_get_le64 (p + 48);
  e->flags = PC_VOL_IN_USE;
  if (e->size == 0 || e->size % 512 || e->size > PC_MAX_VOLUME_BYTES)
    return bad (why, whylen, "volume '%s' has invalid size %" PRIu64
                " (must be a non-zero multiple of 512, at most 2^60)",
                e->name, e->size);
  return 0;
}

/* ---- reverse map ---- */

/* Index out of range: asserted; otherwise reads as free / writes nothing. */
uint64_t
pc_rmap_get (const void *page, unsigned idx)
{
  assert (idx < PC_RMAP_PER_PAGE);
  if (idx >= PC_RMAP_PER_PAGE)
    return 0;
  return pc_get_le64 ((const uint8_t *) page + META_HDR + (size_t) idx * 8);
}

void
pc_rmap_put (void *page, unsigned idx, uint64_t entry)
{
  assert (idx < PC_RMAP_PER_PAGE);
  if (idx >= PC_RMAP_PER_PAGE)
    return;
  pc_put_le64 ((uint8_t *) page + META_HDR + (size_t) idx * 8, entry);
}

/* ---- origin records ---- */

int
pc_origin_uri_valid (const char *uri)
{
  size_t n = strnlen (uri, PC_ORIGIN_URI_MAX + 1);

  if (n == 0 || n > PC_ORIGIN_URI_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (uri[i] < 0x21 || uri[i] > 0x7e)
      return 0;
  return 1;
}

#define OD_CRC_OFF 8

int
pc_origin_desc_encode (const struct pc_origin_desc *d, void *page)
{
  uint8_t *p = page;
  size_t n = strlen (d->uri);

  if (!pc_origin_uri_valid (d->uri) || d->mode > PC_ORIGIN_WRITETHROUGH)
    return -EINVAL;
  memset (p, 0, PC_PAGE_SIZE);
  memcpy (p, PC_ORIGIN_DESC_MAGIC, 8);
  pc_put_le32 (p + 12, d->slot);
  pc_put_le32 (p + 16, d->mode);
  pc_put_le32 (p + 20, (uint32_t) n);
  pc_put_le64 (p + 24, d->size);
  memcpy (p + PC_OMAP_HEADER, d->uri, n);
  pc_put_le32 (p + OD_CRC_OFF, pc_page_crc_without (p, OD_CRC_OFF));
  return 0;
}

int
pc_origin_desc_decode (const void *page, struct pc_origin_desc *d,
                       char *why, size_t whylen)
{
  const uint8_t *p = page;
  uint32_t n;
  size_t i;

  if (memcmp (p, PC_ORIGIN_DESC_MAGIC, 8) != 0)
    return bad (why, whylen, "bad magic (not an origin descriptor)");
  if (pc_get_le32 (p + OD_CRC_OFF) != pc_page_crc_without (p, OD_CRC_OFF))
    return bad (why, whylen, "checksum mismatch");
  d->slot = pc_get_le32 (p + 12);
  d->mode = pc_get_le32 (p + 16);
  n = pc_get_le32 (p + 20);
  d->size = pc_get_le64 (p + 24);
  if (d->slot >= PC_MAX_VOLUMES)
    return bad (why, whylen, "volume slot %" PRIu32 " out of range", d->slot);
  if (d->mode > PC_ORIGIN_WRITETHROUGH)
    return bad (why, whylen, "unknown origin mode %" PRIu32, d->mode);
  if (n == 0 || n > PC_ORIGIN_URI_MAX)
    return bad (why, whylen, "origin URI length %" PRIu32 " out of range", n);
  if (d->size == 0 || d->size > PC_MAX_VOLUME_BYTES)
    return bad (why, whylen, "origin size %" PRIu64 " out of range", d->size);
  for (i = 32; i < PC_OMAP_HEADER; i++)
    if (p[i] != 0)
      return bad (why, whylen, "reserved byte %zu is not zero", i);
  for (i = PC_OMAP_HEADER + n; i < PC_PAGE_SIZE; i++)
    if (p[i] != 0)
      return bad (why, whylen, "byte %zu after the URI is not zero", i);
  memcpy (d->uri, p + PC_OMAP_HEADER, n);
  d->uri[n] = '\0';
  if (!pc_origin_uri_valid (d->uri))
    return bad (why, whylen, "origin URI holds a character that is not "
                "printable ASCII");
  return 0;
}

#define OM_CRC_OFF 8

static uint32_t
block_crc_without (const uint8_t *p, uint32_t bs)
{
  static const uint8_t zero4[4];
  uint32_t c = pc_crc32c (0, p, OM_CRC_OFF);

  c = pc_crc32c (c, zero4, 4);
  return pc_crc32c (c, p + OM_CRC_OFF + 4, bs - OM_CRC_OFF - 4);
}

void
pc_omap_chunk_seal (void *block, uint32_t block_size, uint32_t slot,
                    uint64_t index)
{
  uint8_t *p = block;

  memset (p, 0, PC_OMAP_HEADER);
  memcpy (p, PC_OMAP_MAGIC, 8);
  pc_put_le32 (p + 12, slot);
  pc_put_le64 (p + 16, index);
  pc_put_le32 (p + OM_CRC_OFF, block_crc_without (p, block_size));
}

int
pc_omap_chunk_check (const void *block, uint32_t block_size, uint32_t slot,
                     uint64_t index, char *why, size_t whylen)
{
  const uint8_t *p = block;
  size_t i;

  if (memcmp (p, PC_OMAP_MAGIC, 8) != 0)
    return bad (why, whylen, "bad magic (not a punched-map block)");
  if (pc_get_le32 (p + OM_CRC_OFF) != block_crc_without (p, block_size))
    return bad (why, whylen, "checksum mismatch");
  if (pc_get_le32 (p + 12) != slot)
    return bad (why, whylen, "names volume slot %" PRIu32 ", owned by slot %"
                PRIu32, pc_get_le32 (p + 12), slot);
  if (pc_get_le64 (p + 16) != index)
    return bad (why, whylen, "names chunk %" PRIu64 ", owned as chunk %" PRIu64,
                pc_get_le64 (p + 16), index);
  for (i = 24; i < PC_OMAP_HEADER; i++)
    if (p[i] != 0)
      return bad (why, whylen, "reserved byte %zu is not zero", i);
  return 0;
}
