/* Description: unit tests of the on-disk format (lib/pool/format.c,
 * lib/util/crc32c.c): CRC-32C check values (hardware and table paths) against a
 * bitwise reference at every length and alignment, chaining; layout rules
 * for several block counts and sizes, overflow, and device sizing (always
 * the largest block count that fits); superblock round trip, every single
 * bit flip rejected, each field check with a precise message; metadata
 * page seal/check (exact checksum formula, wrong page number, every bit
 * flip); volume entry round trip and each bad case; reverse-map helpers. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "punchcache/crc32c.h"
#include "punchcache/format.h"

#define P PC_PAGE_SIZE
#define MIB (UINT64_C (1) << 20)
#define VOL_OFF(idx) (8 + (idx) * 64)

struct ctx {
  uint8_t page[P];
  uint8_t bad[P];
  struct pc_superblock sb;
  struct pc_superblock out;
  char why[256];
};

static int
setup (void **state)
{
  struct ctx *c = calloc (1, sizeof *c);

  if (c == NULL) return -1;
  *state = c;
  return 0;
}

static int
teardown (void **state)
{
  free (*state);
  return 0;
}

/* ---- CRC-32C ---- */

static uint32_t
crc_reference (uint32_t crc, const uint8_t *p, size_t len)
{
  crc = ~crc;
  while (len--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
  }
  return ~crc;
}

/* Check values (RFC 3720 B.4 and the usual "123456789"), every length
 * 0..300 at every alignment 0..7 against the reference, and chaining at
 * every split point.  Returns the number of mismatches. */
static int
crc_selftest (void)
{
  static const struct { uint8_t fill; int step; uint32_t crc; } rfc[] = {
    { 0x00, 0, 0x8A9136AAu }, { 0xff, 0, 0x62A8AB43u },
    { 0x00, 1, 0x46DD794Eu }, { 0x1f, -1, 0x113FDB5Cu },
  };
  uint8_t buf[320];
  int bad = 0;

  bad += pc_crc32c (0, "123456789", 9) != 0xE3069283u;
  bad += pc_crc32c (0, "", 0) != 0;
  bad += pc_crc32c (0x12345678u, "", 0) != 0x12345678u;
  for (size_t r = 0; r < sizeof rfc / sizeof rfc[0]; r++) {
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t) (rfc[r].fill + rfc[r].step * i);
    bad += pc_crc32c (0, buf, 32) != rfc[r].crc;
  }
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t) (i * 167 + 13);
  for (size_t off = 0; off < 8; off++)
    for (size_t len = 0; len + off <= 308; len++)
      bad += pc_crc32c (0, buf + off, len) != crc_reference (0, buf + off, len);
  for (size_t split = 0; split <= 300; split++)
    bad += pc_crc32c (pc_crc32c (0, buf, split), buf + split, 300 - split) !=
      pc_crc32c (0, buf, 300);
  return bad;
}

static void
test_crc (void **state)
{
  static uint8_t big[3 * P + 17];

  assert_int_equal (pc_crc32c (0, "123456789", 9), 0xE3069283u);
  assert_int_equal (pc_crc32c (pc_crc32c (0, "1234", 4), "56789", 5), 0xE3069283u);
  assert_int_equal (crc_selftest (), 0);
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t) (i * 31 + (i >> 9));
  assert_int_equal (pc_crc32c (pc_crc32c (0, big, 4097), big + 4097, sizeof big - 4097),
                    crc_reference (0, big, sizeof big));
}

/* This program's path, read at start (valgrind virtualises the link). */
static char self_exe[4096];

/* The table path, in a fresh process (the path is chosen once). */
static void
test_crc_software_path (void **state)
{
  pid_t pid;
  int status;

  assert_true (self_exe[0] != 0);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    setenv ("PUNCHCACHE_CRC32C", "software", 1);
    execl (self_exe, "unit-format", "--crc-selftest", (char *) NULL);
    _exit (127);
  }
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFEXITED (status));
  assert_int_equal (WEXITSTATUS (status), 0);
}

/* ---- layout ---- */

static uint64_t
round_up (uint64_t x, uint64_t a)
{
  return (x + a - 1) / a * a;
}

/* The layout rule written out independently of lib/pool/format.c. */
static int
expected_layout (uint64_t n, uint64_t bs, struct pc_superblock *e)
{
  uint64_t meta = 4 + (n + 510) / 511, t = meta < 1000 ? meta : 1000;
  uint64_t jp = 2 * (t + 2), jend;

  memset (e, 0, sizeof *e);

  if (n == 0 || n > (UINT64_C (1) << 48) || bs < 4096 || bs > MIB ||
      (bs & (bs - 1)))
    return -EINVAL;
  jp = jp < 64 ? 64 : jp > 2048 ? 2048 : jp;
  e->block_size = (uint32_t) bs;
  e->nblocks = n;
  e->meta_offset = 2 * P;
  e->meta_pages = meta;
  e->journal_pages = (uint32_t) jp;
  e->journal_offset = 2 * P + meta * P;
  jend = e->journal_offset + jp * P;
  e->data_offset = round_up (jend, bs > MIB ? bs : MIB);
  if (n > (uint64_t) INT64_MAX / bs ||
      e->data_offset > (uint64_t) INT64_MAX - n * bs)
    return -EINVAL;
  e->total_bytes = e->data_offset + n * bs;
  return 0;
}

static void
test_layout_rules (void **state)
{
  static const uint64_t counts[] = {
    1, 2, 510, 511, 512, 1000, 511 * 60, 511 * 60 + 1, 511 * 996,
    511 * 996 + 1, 511 * 2000, UINT64_C (1) << 20, UINT64_C (1) << 28,
    UINT64_C (1) << 40, UINT64_C (1) << 43, UINT64_C (1) << 44,
    UINT64_C (1) << 48, (UINT64_C (1) << 48) + 1, 0, UINT64_MAX,
  };
  static const uint32_t sizes[] = { 4096, 8192, 65536, 1 << 20, 0, 2048,
                                    3000, 65537, 2 << 20 };
  struct ctx *c = *state;
  struct pc_superblock e;
  int ok = 0, einval = 0;

  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      int want = expected_layout (counts[i], sizes[j], &e);
      memset (&c->sb, 0, sizeof c->sb);
      assert_int_equal (pc_layout_for_nblocks (counts[i], sizes[j], &c->sb), want);
      if (want < 0) { einval++; continue; }
      ok++;
      assert_memory_equal (&c->sb, &e, sizeof e);
      assert_int_equal (c->sb.data_offset % MIB, 0);
      assert_int_equal (c->sb.data_offset % sizes[j], 0);
      assert_true (c->sb.data_offset >= c->sb.journal_offset +
                   (uint64_t) c->sb.journal_pages * P);
    }
  assert_true (ok > 50 && einval > 50);
  /* Spot values. */
  assert_int_equal (pc_layout_for_nblocks (1000, 65536, &c->sb), 0);
  assert_int_equal (c->sb.meta_pages, 6);
  assert_int_equal (c->sb.journal_pages, 64);
  assert_int_equal (c->sb.data_offset, MIB);
  assert_int_equal (pc_layout_for_nblocks (UINT64_C (1) << 28, 4096, &c->sb), 0);
  assert_int_equal (c->sb.journal_pages, 2004);
  /* 2^48 blocks of 64 KiB is 2^64 bytes: overflow. */
  assert_int_equal (pc_layout_for_nblocks (UINT64_C (1) << 48, 65536, &c->sb), -EINVAL);
  assert_int_equal (pc_layout_for_nblocks (UINT64_C (1) << 48, 4096, &c->sb), 0);
  assert_true (c->sb.total_bytes <= (uint64_t) INT64_MAX);
}

/* pc_layout_for_device returns the largest block count that fits. */
static void
check_device (struct ctx *c, uint64_t dev, uint32_t bs)
{
  struct pc_superblock next;
  int r = pc_layout_for_device (dev, bs, &c->sb);

  if (r == -ENOSPC) {
    assert_true (pc_layout_for_nblocks (1, bs, &next) < 0 ||
                 next.total_bytes > dev);
    return;
  }
  assert_int_equal (r, 0);
  assert_true (c->sb.total_bytes <= dev);
  assert_true (pc_layout_for_nblocks (c->sb.nblocks + 1, bs, &next) < 0 ||
               next.total_bytes > dev);
}

static void
test_layout_device (void **state)
{
  static const uint32_t sizes[] = { 4096, 65536, 1 << 20 };
  struct ctx *c = *state;
  struct pc_superblock l;
  uint64_t rng = 12345;

  for (size_t j = 0; j < 3; j++) {
    uint32_t bs = sizes[j];
    for (uint64_t n = 1; n < 200000; n = n * 3 + 1) {
      assert_int_equal (pc_layout_for_nblocks (n, bs, &l), 0);
      check_device (c, l.total_bytes, bs);
      assert_int_equal (c->sb.nblocks, n);          /* exact fit */
      check_device (c, l.total_bytes - 1, bs);
      check_device (c, l.total_bytes + bs - 1, bs);
    }
    for (int i = 0; i < 3000; i++) {
      rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
      check_device (c, rng % (UINT64_C (1) << (20 + i % 25)), bs);
    }
    check_device (c, UINT64_MAX, bs);
    check_device (c, (uint64_t) INT64_MAX, bs);
  }
  /* The smallest pool: metadata, a 64-page journal, 1 MiB aligned data. */
  assert_int_equal (pc_layout_for_device (MIB, 65536, &c->sb), -ENOSPC);
  assert_int_equal (pc_layout_for_device (MIB + 65535, 65536, &c->sb), -ENOSPC);
  assert_int_equal (pc_layout_for_device (MIB + 65536, 65536, &c->sb), 0);
  assert_int_equal (c->sb.nblocks, 1);
  assert_int_equal (pc_layout_for_device (0, 4096, &c->sb), -ENOSPC);
  assert_int_equal (pc_layout_for_device (1 << 30, 3000, &c->sb), -EINVAL);
  /* A huge device is capped at 2^48 blocks or off_t, whichever is lower. */
  assert_int_equal (pc_layout_for_device (UINT64_MAX, 4096, &c->sb), 0);
  assert_int_equal (c->sb.nblocks, UINT64_C (1) << 48);
  assert_int_equal (pc_layout_for_device (UINT64_MAX, 1 << 20, &c->sb), 0);
  assert_true (c->sb.total_bytes <= (uint64_t) INT64_MAX);
}

/* ---- superblock ---- */

static void
make_sb (struct pc_superblock *sb, uint64_t n, uint32_t bs)
{
  memset (sb, 0, sizeof *sb);
  assert_int_equal (pc_layout_for_nblocks (n, bs, sb), 0);
  sb->version = PC_FORMAT_VERSION;
  sb->generation = 7;
  sb->journal_tail = 3;
  sb->journal_seq = 99;
  sb->created = 1700000000;
  for (int i = 0; i < 16; i++) sb->uuid[i] = (uint8_t) (0xa0 + i);
}

static void
reseal_sb (uint8_t *page)
{
  pc_put_le32 (page + 12, pc_page_crc_without (page, 12));
}

static void
test_sb_round_trip (void **state)
{
  struct ctx *c = *state;

  make_sb (&c->sb, 12345, 4096);
  pc_sb_encode (&c->sb, c->page);
  assert_memory_equal (c->page, PC_SB_MAGIC, 8);
  assert_int_equal (pc_get_le32 (c->page + 12), pc_page_crc_without (c->page, 12));
  memset (&c->out, 0, sizeof c->out);                /* padding too */
  assert_int_equal (pc_sb_decode (c->page, &c->out, c->why, sizeof c->why), 0);
  assert_memory_equal (&c->sb, &c->out, sizeof c->sb);
  /* Extremes of the free fields and of the layout. */
  make_sb (&c->sb, UINT64_C (1) << 48, 4096);
  c->sb.generation = UINT64_MAX;
  c->sb.journal_seq = UINT64_MAX;
  c->sb.created = UINT64_MAX;
  c->sb.journal_tail = c->sb.journal_pages - 1;
  pc_sb_encode (&c->sb, c->page);
  memset (&c->out, 0, sizeof c->out);
  assert_int_equal (pc_sb_decode (c->page, &c->out, c->why, sizeof c->why), 0);
  assert_memory_equal (&c->sb, &c->out, sizeof c->sb);
  make_sb (&c->sb, 1, 1 << 20);
  c->sb.journal_tail = 0;
  pc_sb_encode (&c->sb, c->page);
  assert_int_equal (pc_sb_decode (c->page, &c->out, NULL, 0), 0);
}

static void
test_sb_bit_flips (void **state)
{
  struct ctx *c = *state;
  int rejected = 0;

  make_sb (&c->sb, 777777, 65536);
  pc_sb_encode (&c->sb, c->page);
  for (size_t i = 0; i < P * 8; i++) {                /* every bit */
    memcpy (c->bad, c->page, P);
    c->bad[i / 8] ^= (uint8_t) (1u << (i % 8));
    c->why[0] = 0;
    if (pc_sb_decode (c->bad, &c->out, c->why, sizeof c->why) == -EUCLEAN &&
        c->why[0] != 0)
      rejected++;
  }
  assert_int_equal (rejected, P * 8);
}

/* One field changed, checksum recomputed: the field check must catch it
 * and say so. */
struct sb_case {
  size_t off;
  int width;                     /* 1, 4 or 8 bytes; 0 = add to the u64 */
  uint64_t value;
  const char *why;
};

static void
test_sb_fields (void **state)
{
  static const struct sb_case cases[] = {
    { 0, 1, 'X', "bad magic (not a punchcache pool)" },
    { 7, 1, 2, "bad magic" },
    { 8, 4, 0, "unknown format version 0" },
    { 8, 4, 3, "pool format version 3 is newer than this program supports (2)" },
    { 8, 4, UINT32_MAX, "pool format version 4294967295 is newer" },
    { 12, 4, 0, "checksum mismatch" },
    { 24, 4, 3000, "block size 3000 is not a power of two" },
    { 24, 4, 2048, "block size 2048" },
    { 24, 4, 2 << 20, "block size 2097152" },
    { 24, 4, 0, "block size 0" },
    { 24, 4, 8192, "total_bytes" },
    { 28, 4, 65, "journal_pages is 65 but" },
    { 32, 8, 0, "block count 0 is out of range" },
    { 32, 8, (UINT64_C (1) << 48) + 1, "block count 281474976710657 is out of range" },
    { 32, 0, 511, "meta_pages" },
    { 32, 0, 1, "total_bytes" },
    { 40, 0, 4096, "meta_offset is 12288 but" },
    { 48, 0, 1, "meta_pages" },
    { 56, 0, 4096, "journal_offset" },
    { 64, 0, 1 << 20, "data_offset" },
    { 72, 0, 1, "total_bytes" },
    { 80, 8, 64, "journal tail 64 is past the journal (64 pages)" },
    { 80, 8, UINT64_MAX, "journal tail 18446744073709551615" },
    { 120, 1, 1, "reserved byte 120 is not zero" },
    { 2000, 1, 0x80, "reserved byte 2000" },
    { 4095, 1, 1, "reserved byte 4095" },
  };
  struct ctx *c = *state;

  make_sb (&c->sb, 1000, 65536);                     /* 64-page journal */
  pc_sb_encode (&c->sb, c->page);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct sb_case *k = &cases[i];
    memcpy (c->bad, c->page, P);
    if (k->width == 1) c->bad[k->off] = (uint8_t) k->value;
    else if (k->width == 4) pc_put_le32 (c->bad + k->off, (uint32_t) k->value);
    else if (k->width == 8) pc_put_le64 (c->bad + k->off, k->value);
    else pc_put_le64 (c->bad + k->off, pc_get_le64 (c->bad + k->off) + k->value);
    if (k->off != 12) reseal_sb (c->bad);
    c->why[0] = 0;
    if (pc_sb_decode (c->bad, &c->out, c->why, sizeof c->why) != -EUCLEAN ||
        strstr (c->why, k->why) == NULL)
      fail_msg ("case %zu (offset %zu): got '%s', want '%s'", i, k->off,
                c->why, k->why);
  }
  /* Free fields take any value. */
  memcpy (c->bad, c->page, P);
  memset (c->bad + 96, 0xff, 24);                    /* uuid, created */
  pc_put_le64 (c->bad + 16, 0);
  pc_put_le64 (c->bad + 88, UINT64_MAX);
  reseal_sb (c->bad);
  assert_int_equal (pc_sb_decode (c->bad, &c->out, c->why, sizeof c->why), 0);
}

/* ---- metadata pages ---- */

static void
test_meta_page (void **state)
{
  struct ctx *c = *state;
  uint8_t seed[4];
  int rejected = 0;

  assert_int_equal (pc_meta_page_check (c->page, 17, c->why, sizeof c->why), 0);
  for (size_t i = 8; i < P; i++) c->page[i] = (uint8_t) (i * 7);
  pc_meta_page_seal (c->page, 17);
  assert_int_equal (pc_get_le32 (c->page + 4), 17);
  pc_put_le32 (seed, 17);                            /* the exact formula */
  assert_int_equal (pc_get_le32 (c->page),
                    pc_crc32c (pc_crc32c (0, seed, 4), c->page + 4, P - 4));
  assert_int_equal (pc_meta_page_check (c->page, 17, c->why, sizeof c->why), 0);
  assert_int_equal (pc_meta_page_check (c->page, 18, c->why, sizeof c->why), -EUCLEAN);
  assert_string_equal (c->why, "it carries page number 17 instead of 18");
  /* Page number field rewritten to match: the seeded crc still fails. */
  memcpy (c->bad, c->page, P);
  pc_put_le32 (c->bad + 4, 18);
  assert_int_equal (pc_meta_page_check (c->bad, 18, c->why, sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "checksum mismatch (stored 0x"));
  for (size_t i = 0; i < P * 8; i++) {
    memcpy (c->bad, c->page, P);
    c->bad[i / 8] ^= (uint8_t) (1u << (i % 8));
    rejected += pc_meta_page_check (c->bad, 17, NULL, 0) == -EUCLEAN;
  }
  assert_int_equal (rejected, P * 8);
  /* A sealed empty page is valid; the seal is not all zero. */
  memset (c->page, 0, P);
  pc_meta_page_seal (c->page, 0);
  assert_int_not_equal (pc_get_le32 (c->page), 0);
  assert_int_equal (pc_meta_page_check (c->page, 0, NULL, 0), 0);
  assert_int_equal (pc_meta_page_check (c->page, 1, NULL, 0), -EUCLEAN);
}

/* ---- volume table ---- */

static void
test_vol_round_trip (void **state)
{
  struct ctx *c = *state;
  struct pc_volume_entry e = { .size = PC_MAX_VOLUME_BYTES, .flags = PC_VOL_IN_USE }, d;
  const char *longest = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq.-_+";
  const char *names[] = { "a", "default", "vm-1.disk_2", "x@y+z", "0", longest };

  assert_int_equal (strlen (longest), PC_VOL_NAME_MAX);
  for (unsigned i = 0; i < 6; i++) {
    strcpy (e.name, names[i]);
    e.size = i == 0 ? 512 : PC_MAX_VOLUME_BYTES - 512 * i;
    pc_vol_entry_encode (&e, c->page, i * 12);
  }
  pc_meta_page_seal (c->page, 2);
  assert_int_equal (pc_meta_page_check (c->page, 2, NULL, 0), 0);
  for (unsigned i = 0; i < PC_VOLS_PER_PAGE; i++) {
    assert_int_equal (pc_vol_entry_decode (c->page, i, &d, c->why, sizeof c->why), 0);
    if (i % 12 || i / 12 >= 6) {
      assert_int_equal (d.flags, 0);                 /* unused */
      assert_int_equal (d.size, 0);
      assert_string_equal (d.name, "");
      continue;
    }
    assert_int_equal (d.flags, PC_VOL_IN_USE);
    assert_string_equal (d.name, names[i / 12]);
    assert_int_equal (d.size, i == 0 ? 512 : PC_MAX_VOLUME_BYTES - 512 * (i / 12));
  }
  /* Encoding an unused entry clears it. */
  e.flags = 0;
  pc_vol_entry_encode (&e, c->page, 12);
  for (unsigned i = 0; i < 64; i++)
    assert_int_equal (c->page[VOL_OFF (12) + i], 0);
  /* Index 62 is the last whole entry of the page. */
  assert_int_equal (VOL_OFF (62) + 64, 8 + PC_VOLS_PER_PAGE * 64);
  assert_true (VOL_OFF (62) + 64 <= P);
}

struct vol_case {
  size_t off;                    /* within the entry */
  int width;                     /* 1, 4, 8 bytes; 0 = string at off */
  uint64_t value;
  const char *str;
  const char *why;
};

static void
test_vol_bad (void **state)
{
  static const struct vol_case cases[] = {
    { 0, 0, 0, "/etc", "invalid volume name '/etc'" },
    { 0, 0, 0, ".x", "invalid volume name '.x'" },
    { 0, 0, 0, "-x", "invalid volume name '-x'" },
    { 0, 0, 0, "a b", "invalid volume name 'a b'" },
    { 0, 0, 0, "a:b", "invalid volume name 'a:b'" },
    { 0, 0, 0, "\xc3\xa9", "invalid volume name '?" "?'" },
    { 0, 0, 0, "\x1b[2J", "invalid volume name '?[2J'" },   /* no escapes */
    { 0, 1, 0, NULL, "invalid volume name ''" },
    { 0, 0, 0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "not NUL-terminated within 48 bytes" },
    { 47, 1, 'x', NULL, "has junk after its name" },
    { 48, 8, 0, NULL, "has invalid size 0" },
    { 48, 8, 511, NULL, "has invalid size 511" },
    { 48, 8, 1000, NULL, "has invalid size 1000" },
    { 48, 8, PC_MAX_VOLUME_BYTES + 512, NULL, "has invalid size 1152921504606847488" },
    { 48, 8, UINT64_MAX, NULL, "invalid size" },
    { 56, 4, 0, NULL, "not in use (flags 0) but not zero" },
    { 56, 4, 2, NULL, "unknown flags 0x2" },
    { 56, 4, 3, NULL, "unknown flags 0x3" },
    { 56, 4, 0x80000001u, NULL, "unknown flags 0x80000001" },
    { 60, 4, 1, NULL, "reserved field is 0x1, not zero" },
    { 63, 1, 0x80, NULL, "reserved field is 0x80000000" },
  };
  struct ctx *c = *state;
  struct pc_volume_entry e = { .name = "vol", .size = 1 << 30, .flags = PC_VOL_IN_USE }, d;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct vol_case *k = &cases[i];
    uint8_t *p = c->page + VOL_OFF (5);
    memset (c->page, 0, P);
    pc_vol_entry_encode (&e, c->page, 5);
    if (k->width == 1) p[k->off] = (uint8_t) k->value;
    else if (k->width == 4) pc_put_le32 (p + k->off, (uint32_t) k->value);
    else if (k->width == 8) pc_put_le64 (p + k->off, k->value);
    else { memset (p, 0, 48); memcpy (p, k->str, strnlen (k->str, 48)); }
    c->why[0] = 0;
    if (pc_vol_entry_decode (c->page, 5, &d, c->why, sizeof c->why) != -EUCLEAN ||
        strstr (c->why, k->why) == NULL)
      fail_msg ("case %zu: got '%s', want '%s'", i, c->why, k->why);
    assert_true (memchr (d.name, 0, sizeof d.name) != NULL);
  }
  memset (c->page, 0, P);
  assert_int_equal (pc_vol_entry_decode (c->page, PC_VOLS_PER_PAGE, &d, c->why,
                                         sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "entry index 63 out of range"));
  assert_int_equal (pc_vol_entry_decode (c->page, UINT32_MAX, &d, NULL, 0), -EUCLEAN);
}

static void
test_vol_names (void **state)
{
  assert_true (pc_vol_name_valid ("a"));
  assert_true (pc_vol_name_valid ("default"));
  assert_true (pc_vol_name_valid ("A.b_c+d@e-f.0"));
  assert_true (pc_vol_name_valid ("a."));
  assert_true (pc_vol_name_valid ("_x"));
  assert_true (pc_vol_name_valid ("01234567890123456789012345678901234567890123456"));
  assert_false (pc_vol_name_valid ("012345678901234567890123456789012345678901234567"));
  assert_false (pc_vol_name_valid (""));
  assert_false (pc_vol_name_valid ("-x"));
  assert_false (pc_vol_name_valid (".hidden"));
  assert_false (pc_vol_name_valid ("."));
  assert_false (pc_vol_name_valid ("a:b"));
  assert_false (pc_vol_name_valid ("a/b"));
  assert_false (pc_vol_name_valid ("a\nb"));
  assert_false (pc_vol_name_valid ("a\x7f"));
  assert_false (pc_vol_name_valid ("caf\xc3\xa9"));
}

/* ---- reverse map ---- */

static void
test_rmap (void **state)
{
  struct ctx *c = *state;
  uint64_t e;

  e = pc_rmap_make (0, 0);
  assert_int_not_equal (e, 0);                       /* 0 means free */
  assert_int_equal (pc_rmap_slot (e), 0);
  assert_int_equal (pc_rmap_lblock (e), 0);
  e = pc_rmap_make (PC_MAX_VOLUMES - 1, PC_MAX_LBLOCK);
  assert_int_equal (pc_rmap_slot (e), PC_MAX_VOLUMES - 1);
  assert_int_equal (pc_rmap_lblock (e), PC_MAX_LBLOCK);
  assert_int_equal (pc_rmap_page_of (0), PC_VOLTABLE_PAGES);
  assert_int_equal (pc_rmap_index_of (0), 0);
  assert_int_equal (pc_rmap_page_of (510), PC_VOLTABLE_PAGES);
  assert_int_equal (pc_rmap_index_of (510), 510);
  assert_int_equal (pc_rmap_page_of (511), PC_VOLTABLE_PAGES + 1);
  assert_int_equal (pc_rmap_index_of (511), 0);
  /* The last block of the largest pool has a page in the metadata area. */
  assert_int_equal (pc_layout_for_nblocks (1023, 4096, &c->sb), 0);
  assert_int_equal (pc_rmap_page_of (1022), c->sb.meta_pages - 1);
  pc_rmap_put (c->page, 0, pc_rmap_make (3, 1234));
  pc_rmap_put (c->page, 510, UINT64_MAX);
  for (int i = 0; i < 8; i++)
    assert_int_equal (c->page[i], 0);                /* header untouched */
  assert_int_equal (c->page[P - 1], 0xff);           /* entry 510 ends the page */
  assert_int_equal (pc_rmap_get (c->page, 0), pc_rmap_make (3, 1234));
  assert_int_equal (pc_rmap_get (c->page, 510), UINT64_MAX);
  assert_int_equal (pc_rmap_get (c->page, 1), 0);
  pc_meta_page_seal (c->page, 4);
  assert_int_equal (pc_rmap_get (c->page, 0), pc_rmap_make (3, 1234));
  assert_int_equal (pc_meta_page_check (c->page, 4, NULL, 0), 0);
}

/* A version 1 pool still decodes, and is written back as version 1. */
static void
test_sb_version1 (void **state)
{
  struct ctx *c = *state;

  make_sb (&c->sb, 1000, 65536);
  c->sb.version = 1;
  pc_sb_encode (&c->sb, c->page);
  assert_int_equal (pc_get_le32 (c->page + 8), 1);
  assert_int_equal (pc_sb_decode (c->page, &c->out, c->why, sizeof c->why), 0);
  assert_int_equal (c->out.version, 1);
}

/* Origin descriptors: round trip, then each field broken (resealed). */
static void
test_origin_desc (void **state)
{
  static const struct { size_t off; int width; uint64_t value;
                        const char *why; } cases[] = {
    { 0, 1, 'X', "bad magic" },
    { 12, 4, PC_MAX_VOLUMES, "slot 252 out of range" },
    { 16, 4, 2, "unknown origin mode 2" },
    { 20, 4, 0, "URI length 0" },
    { 20, 4, PC_ORIGIN_URI_MAX + 1, "URI length 2049" },
    { 20, 4, 5, "after the URI is not zero" },
    { 24, 8, 0, "origin size 0" },
    { 40, 1, 1, "reserved byte 40" },
    { 64, 1, 0x07, "not printable" },
    { 66, 1, ' ', "not printable" },
  };
  struct ctx *c = *state;
  struct pc_origin_desc d = { .slot = 3, .mode = PC_ORIGIN_WRITETHROUGH,
                              .size = 1 << 30,
                              .uri = "nbd://images.example.com:10809/golden" };
  struct pc_origin_desc out;

  assert_int_equal (pc_origin_desc_encode (&d, c->page), 0);
  assert_int_equal (pc_origin_desc_decode (c->page, &out, c->why,
                                           sizeof c->why), 0);
  assert_string_equal (out.uri, d.uri);
  assert_int_equal (out.slot, 3);
  assert_int_equal (out.mode, PC_ORIGIN_WRITETHROUGH);
  assert_true (out.size == (1u << 30));
  memcpy (c->bad, c->page, P);
  c->bad[100] ^= 1;                                   /* not resealed */
  assert_int_equal (pc_origin_desc_decode (c->bad, &out, c->why,
                                           sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "checksum"));
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy (c->bad, c->page, P);
    if (cases[i].width == 1) c->bad[cases[i].off] = (uint8_t) cases[i].value;
    else if (cases[i].width == 4)
      pc_put_le32 (c->bad + cases[i].off, (uint32_t) cases[i].value);
    else pc_put_le64 (c->bad + cases[i].off, cases[i].value);
    pc_put_le32 (c->bad + 8, pc_page_crc_without (c->bad, 8));
    c->why[0] = 0;
    if (pc_origin_desc_decode (c->bad, &out, c->why, sizeof c->why) !=
        -EUCLEAN || strstr (c->why, cases[i].why) == NULL)
      fail_msg ("descriptor case %zu: got '%s', want '%s'", i, c->why,
                cases[i].why);
  }
  /* Encoding refuses what decoding would. */
  strcpy (d.uri, "nbd://a b/");
  assert_int_equal (pc_origin_desc_encode (&d, c->page), -EINVAL);
  d.uri[0] = 0;
  assert_int_equal (pc_origin_desc_encode (&d, c->page), -EINVAL);
}

/* Punched-map chunks: sealed ones check; a flipped bit, another slot or
 * index, or a reserved byte is caught. */
static void
test_omap_chunk (void **state)
{
  struct ctx *c = *state;

  memset (c->page, 0, P);
  c->page[PC_OMAP_HEADER + 9] = 0x5a;
  pc_omap_chunk_seal (c->page, P, 5, 77);
  assert_int_equal (pc_omap_chunk_check (c->page, P, 5, 77, c->why,
                                         sizeof c->why), 0);
  assert_int_equal (pc_omap_chunk_check (c->page, P, 4, 77, c->why,
                                         sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "slot"));
  assert_int_equal (pc_omap_chunk_check (c->page, P, 5, 78, c->why,
                                         sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "chunk 77"));
  memcpy (c->bad, c->page, P);
  c->bad[P - 1] ^= 0x10;
  assert_int_equal (pc_omap_chunk_check (c->bad, P, 5, 77, c->why,
                                         sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "checksum"));
  memcpy (c->bad, c->page, P);
  c->bad[30] = 1;
  pc_put_le32 (c->bad + 8, 0);
  /* reseal over the changed reserved byte: seal zeroes the header, so
   * compute the crc by hand instead */
  {
    uint32_t crc = pc_crc32c (0, c->bad, 8);
    static const uint8_t z[4];
    crc = pc_crc32c (crc, z, 4);
    crc = pc_crc32c (crc, c->bad + 12, P - 12);
    pc_put_le32 (c->bad + 8, crc);
  }
  assert_int_equal (pc_omap_chunk_check (c->bad, P, 5, 77, c->why,
                                         sizeof c->why), -EUCLEAN);
  assert_non_null (strstr (c->why, "reserved byte 30"));
  assert_true (pc_omap_bits_per_chunk (65536) == (65536 - 64) * 8);
}

int
main (int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_crc, setup, teardown),
    cmocka_unit_test_setup_teardown (test_crc_software_path, setup, teardown),
    cmocka_unit_test_setup_teardown (test_layout_rules, setup, teardown),
    cmocka_unit_test_setup_teardown (test_layout_device, setup, teardown),
    cmocka_unit_test_setup_teardown (test_sb_round_trip, setup, teardown),
    cmocka_unit_test_setup_teardown (test_sb_bit_flips, setup, teardown),
    cmocka_unit_test_setup_teardown (test_sb_fields, setup, teardown),
    cmocka_unit_test_setup_teardown (test_meta_page, setup, teardown),
    cmocka_unit_test_setup_teardown (test_vol_round_trip, setup, teardown),
    cmocka_unit_test_setup_teardown (test_vol_bad, setup, teardown),
    cmocka_unit_test_setup_teardown (test_vol_names, setup, teardown),
    cmocka_unit_test_setup_teardown (test_rmap, setup, teardown),
    cmocka_unit_test_setup_teardown (test_sb_version1, setup, teardown),
    cmocka_unit_test_setup_teardown (test_origin_desc, setup, teardown),
    cmocka_unit_test_setup_teardown (test_omap_chunk, setup, teardown),
  };

  if (argc == 2 && strcmp (argv[1], "--crc-selftest") == 0)
    return crc_selftest () == 0 ? 0 : 1;
  if (readlink ("/proc/self/exe", self_exe, sizeof self_exe - 1) < 0)
    self_exe[0] = 0;
  return cmocka_run_group_tests_name ("format", tests, NULL, NULL);
}
