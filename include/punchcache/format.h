/* punchcache: the on-disk pool format (encode, decode, validate).
 *
 * Pure functions over byte buffers: no I/O, no locks, so every decoder can
 * be fuzzed.  Everything on disk is little-endian.  Every decoder treats
 * its input as untrusted: each field is range-checked before use and a
 * failure returns -EUCLEAN (structure damaged) or -EINVAL, with a sentence
 * naming the field in `why` (may be NULL).
 *
 * Pool layout (all offsets in bytes; P = PC_PAGE_SIZE = 4096):
 *
 *   0        superblock slot A (1 page)
 *   P        superblock slot B (1 page)
 *   2P       metadata area: meta_pages pages
 *              pages 0..PC_VOLTABLE_PAGES-1   volume table
 *              pages PC_VOLTABLE_PAGES..      reverse map (pblock -> owner)
 *   ...      journal: journal_pages pages
 *   data_off data blocks, data_off a multiple of max(block_size, 1 MiB)
 *   total  = data_off + nblocks * block_size
 *
 * Superblock page (either slot; the valid one with the higher generation
 * wins):
 *   0  u8[8]  magic "PCPOOL\0\1"
 *   8  u32    version (PC_FORMAT_VERSION)
 *   12 u32    crc32c of the page with this field zero
 *   16 u64    generation (incremented at every superblock write)
 *   24 u32    block_size (power of two, 4 KiB..1 MiB)
 *   28 u32    journal_pages
 *   32 u64    nblocks
 *   40 u64    meta_offset (= 2P)
 *   48 u64    meta_pages
 *   56 u64    journal_offset
 *   64 u64    data_offset
 *   72 u64    total_bytes
 *   80 u64    journal_tail (page index in the journal where replay starts)
 *   88 u64    journal_seq  (sequence number expected at journal_tail)
 *   96 u8[16] uuid
 *   112 u64   created (seconds since the epoch)
 *   rest      zero
 *
 * Metadata page (volume table and reverse map):
 *   0  u32    crc32c of bytes 4..4095 seeded with the page number n:
 *             pc_crc32c (pc_crc32c (0, le32 (n), 4), page + 4, 4092)
 *   4  u32    page number (index in the metadata area)
 *   8  ...    payload
 *   An all-zero page is valid and empty (never written).
 *
 * Volume table payload: PC_VOLS_PER_PAGE entries of 64 bytes:
 *   0  char[48] name, NUL-terminated, [A-Za-z0-9._+@-], 1..47 chars
 *   48 u64      size in bytes (multiple of 512, <= PC_MAX_VOLUME_BYTES)
 *   56 u32      flags (PC_VOL_IN_USE; other bits must be zero)
 *   60 u32      reserved (zero)
 *   The volume slot number is page * PC_VOLS_PER_PAGE + index.
 *
 * Reverse-map payload: PC_RMAP_PER_PAGE u64 entries.  Page
 *   PC_VOLTABLE_PAGES + k describes pblocks k*PC_RMAP_PER_PAGE ...
 *   entry 0 = free; otherwise bits 63..48 = volume slot + 1, bits 47..0 =
 *   logical block.
 *
 * Journal transaction (npages metadata page images, 1..PC_TXN_MAX_PAGES),
 * written contiguously as npages + 2 pages:
 *   descriptor page:
 *     0  u8[8] magic "PCJDESC1"
 *     8  u64   seq
 *     16 u32   npages
 *     20 u32   crc32c of the page with this field zero
 *     24 u32[npages] metadata page numbers (strictly increasing)
 *   npages images (each a valid metadata page for its page number)
 *   commit page:
 *     0  u8[8] magic "PCJCMIT1"
 *     8  u64   seq
 *     16 u32   npages
 *     20 u32   crc32c of the page with this field zero
 *     24 u32   crc32c over the descriptor page and all images, in order
 *
 * Origin records (version 2; lib/pool/omap.c).  A volume that reads
 * through a remote origin owns, besides its data blocks, data blocks whose
 * reverse-map entries name a logical block at or above PC_OMAP_LBLOCK_BASE
 * (no volume with an origin reaches that far): BASE + 0 is the origin
 * descriptor, BASE + 1 + k is punched-map chunk k.  Each is written
 * copy-on-write (a new block, then the reverse-map change in the journal),
 * so the journal makes it atomic.
 *
 * Origin descriptor (the block's first page):
 *   0  u8[8]  magic "PCORIGN1"
 *   8  u32    crc32c of the page with this field zero
 *   12 u32    volume slot
 *   16 u32    mode (PC_ORIGIN_OVERLAY, PC_ORIGIN_WRITETHROUGH)
 *   20 u32    uri_len (1..PC_ORIGIN_URI_MAX)
 *   24 u64    origin size in bytes (= the volume's size)
 *   32..63    zero
 *   64        uri (uri_len printable ASCII bytes, no NUL), rest zero
 *
 * Punched-map chunk (a whole block; bits for pc_omap_bits_per_chunk()
 * logical blocks):
 *   0  u8[8]  magic "PCOMAP01"
 *   8  u32    crc32c of the block with this field zero
 *   12 u32    volume slot
 *   16 u64    chunk index k
 *   24..63    zero
 *   64        bit i (byte i / 8, bit i % 8) set: logical block
 *             k * bits_per_chunk + i is punched -- it reads zeros and is
 *             never read from the origin again
 */
#ifndef PUNCHCACHE_FORMAT_H
#define PUNCHCACHE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define PC_PAGE_SIZE 4096u
#define PC_FORMAT_VERSION 2u    /* 2: origin records */
#define PC_FORMAT_VERSION_MIN 1u /* version 1 pools open (no origins) */
#define PC_SB_MAGIC "PCPOOL\0\1"
#define PC_JDESC_MAGIC "PCJDESC1"
#define PC_JCOMMIT_MAGIC "PCJCMIT1"

#define PC_MIN_BLOCK_SIZE 4096u
#define PC_MAX_BLOCK_SIZE (1024u * 1024u)
#define PC_DEFAULT_BLOCK_SIZE (64u * 1024u)

#define PC_VOLTABLE_PAGES 4u
#define PC_VOLS_PER_PAGE 63u
#define PC_MAX_VOLUMES (PC_VOLTABLE_PAGES * PC_VOLS_PER_PAGE)
#define PC_VOL_NAME_MAX 47u            /* characters, without the NUL */
#define PC_VOL_IN_USE 1u
#define PC_MAX_VOLUME_BYTES (UINT64_C (1) << 60) /* 1 EiB */
#define PC_RMAP_PER_PAGE 511u
#define PC_MAX_LBLOCK ((UINT64_C (1) << 48) - 1)

#define PC_TXN_MAX_PAGES 1000u
#define PC_JOURNAL_MAX_PAGES 2048u
#define PC_JOURNAL_MIN_PAGES 64u

#define PC_OMAP_LBLOCK_BASE (UINT64_C (1) << 47)
#define PC_OMAP_MAX_CHUNKS (1u << 20)
#define PC_OMAP_HEADER 64u
#define PC_ORIGIN_URI_MAX 2048u
#define PC_ORIGIN_DESC_MAGIC "PCORIGN1"
#define PC_OMAP_MAGIC "PCOMAP01"
enum { PC_ORIGIN_OVERLAY = 0, PC_ORIGIN_WRITETHROUGH = 1 };

/* Decoded superblock. */
struct pc_superblock {
  uint64_t generation;
  uint32_t version;
  uint32_t block_size;
  uint32_t journal_pages;
  uint64_t nblocks;
  uint64_t meta_offset;
  uint64_t meta_pages;
  uint64_t journal_offset;
  uint64_t data_offset;
  uint64_t total_bytes;
  uint64_t journal_tail;
  uint64_t journal_seq;
  uint8_t uuid[16];
  uint64_t created;
};

struct pc_volume_entry {
  char name[PC_VOL_NAME_MAX + 1];
  uint64_t size;
  uint32_t flags;
};

/* ---- layout ---- */

/* Fill the layout fields of *sb (block_size, journal_pages, nblocks,
 * meta_offset, meta_pages, journal_offset, data_offset, total_bytes) for a
 * pool of `nblocks` data blocks.  Other fields untouched.  0 or -EINVAL. */
int pc_layout_for_nblocks (uint64_t nblocks, uint32_t block_size,
                           struct pc_superblock *sb);
/* The largest layout whose total_bytes <= device_bytes.  0, -EINVAL, -ENOSPC
 * (device too small for even one block). */
int pc_layout_for_device (uint64_t device_bytes, uint32_t block_size,
                          struct pc_superblock *sb);
uint64_t pc_meta_pages_for (uint64_t nblocks);
uint32_t pc_journal_pages_for (uint64_t meta_pages);

/* ---- superblock ---- */
void pc_sb_encode (const struct pc_superblock *sb, void *page);
/* Checks magic, version, crc, and that the layout equals
 * pc_layout_for_nblocks(nblocks, block_size) and journal_tail is in range. */
int pc_sb_decode (const void *page, struct pc_superblock *sb,
                  char *why, size_t whylen);

/* CRC-32C of a PC_PAGE_SIZE page whose 4-byte checksum field at crc_off
 * is taken as zero (superblock, journal descriptor and commit pages). */
uint32_t pc_page_crc_without (const void *page, size_t crc_off);

/* ---- metadata pages ---- */
/* Compute and store crc + page number in the header. */
void pc_meta_page_seal (void *page, uint32_t page_no);
/* 0 if the page is valid for page_no (or all zero), -EUCLEAN otherwise. */
int pc_meta_page_check (const void *page, uint32_t page_no,
                        char *why, size_t whylen);

/* Volume table entries (slot index within page: 0..PC_VOLS_PER_PAGE-1). */
void pc_vol_entry_encode (const struct pc_volume_entry *e, void *page,
                          unsigned idx);
/* Decodes and validates one entry; an all-zero entry decodes as unused
 * (flags 0).  0 or -EUCLEAN. */
int pc_vol_entry_decode (const void *page, unsigned idx,
                         struct pc_volume_entry *e, char *why, size_t whylen);
/* 1 if name is a valid volume name, else 0. */
int pc_vol_name_valid (const char *name);

/* Reverse map entries. */
static inline uint64_t
pc_rmap_make (uint32_t slot, uint64_t lblock)
{
  return ((uint64_t) (slot + 1) << 48) | lblock;
}
static inline uint32_t pc_rmap_slot (uint64_t e) { return (uint32_t) (e >> 48) - 1; }
static inline uint64_t pc_rmap_lblock (uint64_t e) { return e & PC_MAX_LBLOCK; }
uint64_t pc_rmap_get (const void *page, unsigned idx);
void pc_rmap_put (void *page, unsigned idx, uint64_t entry);
/* Metadata page number and index of physical block pblock. */
static inline uint32_t pc_rmap_page_of (uint64_t pblock)
{ return (uint32_t) (PC_VOLTABLE_PAGES + pblock / PC_RMAP_PER_PAGE); }
static inline unsigned pc_rmap_index_of (uint64_t pblock)
{ return (unsigned) (pblock % PC_RMAP_PER_PAGE); }

/* ---- origin records (version 2) ---- */
struct pc_origin_desc {
  uint32_t slot;
  uint32_t mode;                  /* PC_ORIGIN_* */
  uint64_t size;
  char uri[PC_ORIGIN_URI_MAX + 1];
};
/* Logical blocks one punched-map chunk covers in a pool of block_size. */
static inline uint64_t pc_omap_bits_per_chunk (uint32_t block_size)
{ return (uint64_t) (block_size - PC_OMAP_HEADER) * 8; }
/* Encode into a zeroed PC_PAGE_SIZE page.  -EINVAL for a bad uri/mode. */
int pc_origin_desc_encode (const struct pc_origin_desc *d, void *page);
int pc_origin_desc_decode (const void *page, struct pc_origin_desc *d,
                           char *why, size_t whylen);
/* Seal a chunk block (header + crc) whose bits are already in place. */
void pc_omap_chunk_seal (void *block, uint32_t block_size, uint32_t slot,
                         uint64_t index);
/* Check a chunk block: magic, crc, slot, index.  0 or -EUCLEAN. */
int pc_omap_chunk_check (const void *block, uint32_t block_size,
                         uint32_t slot, uint64_t index,
                         char *why, size_t whylen);
/* 1 if uri is acceptable for a descriptor (1..PC_ORIGIN_URI_MAX printable
 * ASCII characters), else 0. */
int pc_origin_uri_valid (const char *uri);

/* ---- little-endian helpers ---- */
static inline uint32_t pc_get_le32 (const void *p)
{ const uint8_t *b = p;
  return (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24; }
static inline uint64_t pc_get_le64 (const void *p)
{ return pc_get_le32 (p) | (uint64_t) pc_get_le32 ((const uint8_t *) p + 4) << 32; }
static inline void pc_put_le32 (void *p, uint32_t v)
{ uint8_t *b = p; b[0] = v; b[1] = v >> 8; b[2] = v >> 16; b[3] = v >> 24; }
static inline void pc_put_le64 (void *p, uint64_t v)
{ pc_put_le32 (p, (uint32_t) v); pc_put_le32 ((uint8_t *) p + 4, (uint32_t) (v >> 32)); }

#endif
