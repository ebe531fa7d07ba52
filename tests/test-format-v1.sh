#!/usr/bin/env bash
# Description: pools of format version 1 (before origins) still open and
# serve, stay version 1 while no origin is recorded, and become version 2
# when one is (issue 15: "the pool format gets a version bump; pools of the
# old version still open").  A version 1 pool is made by writing a version
# 1 superblock (both slots, checksums recomputed) over a new pool that has
# data in it: the layout of versions 1 and 2 is the same, version 2 only
# adds origin records.  Then: `punchcache info` and `check` read it, the
# front-end serves the data and takes writes, the superblock still says 1
# after a clean stop, and a start with origin= on a fresh volume turns it
# into 2 (superblock read back), after which info shows the origin.
# It fails if version 1 pools are refused ("unknown format version"), or
# if attaching an origin leaves the pool at version 1 (an older program
# would then reclaim the origin records as unreachable blocks).  Shown:
# with version 1 refused (PC_FORMAT_VERSION_MIN 2) it failed with "info
# refuses a version 1 pool" (".. slot A: unknown format version 1").
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdcopy --version

pool=$tmp/pool
sock=$tmp/sock
osock=$tmp/origin.sock
img=$tmp/origin.img

# sb_version [SET]: print the version of the valid superblock with the
# higher generation; with SET, rewrite both slots' version (and crc32c).
sb_version () {
    python3 - "$pool" "$@" <<'PY'
import struct, sys
def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff
P = 4096
f = open(sys.argv[1], "r+b")
best = None
for slot in (0, 1):
    f.seek(slot * P); page = bytearray(f.read(P))
    if page[:8] != b"PCPOOL\0\1": continue
    if len(sys.argv) > 2:
        struct.pack_into("<I", page, 8, int(sys.argv[2]))
        struct.pack_into("<I", page, 12, 0)
        struct.pack_into("<I", page, 12, crc32c(bytes(page)))
        f.seek(slot * P); f.write(page)
    gen = struct.unpack_from("<Q", page, 16)[0]
    if best is None or gen > best[0]:
        best = (gen, struct.unpack_from("<I", page, 8)[0])
print(best[1])
PY
}

start_punchcache "$sock" pool="$pool" size=64M volume=data:8M
nbdsh -u "$(nbd_uri "$sock" data)" -c 'h.pwrite(b"version one " * 5000, 12345); h.flush()'
nbdcopy "$(nbd_uri "$sock" data)" "$tmp/before.img"
stop_nbdkit
[ "$(sb_version)" = 2 ] || fail "a new pool is not version 2 (it is $(sb_version))"
[ "$(sb_version 1)" = 1 ] || fail "could not write a version 1 superblock"
echo "pool rewritten as format version 1"

"$PUNCHCACHE" info "$pool" > "$tmp/info.out" || { cat "$tmp/info.out"; fail "info refuses a version 1 pool"; }
"$PUNCHCACHE" check "$pool" || fail "check refuses a version 1 pool"
start_punchcache "$sock" pool="$pool"
nbdcopy "$(nbd_uri "$sock" data)" "$tmp/after.img"
cmp "$tmp/before.img" "$tmp/after.img" || fail "a version 1 pool reads other data"
nbdsh -u "$(nbd_uri "$sock" data)" -c 'h.pwrite(b"still one", 0); h.flush()'
stop_nbdkit
[ "$(sb_version)" = 1 ] || fail "serving a version 1 pool without origins changed its version to $(sb_version)"
echo "version 1 pool: info, check, reads and writes; still version 1"

# Recording an origin makes it version 2.
head -c 4M /dev/urandom > "$img"
start_origin file "$img"
"$PUNCHCACHE" volume rm "$pool" default     # origin= fills volume "default"
"$PUNCHCACHE" volume add "$pool" default 4M
start_punchcache "$sock" pool="$pool" origin="$(nbd_uri "$osock")"
nbdcopy "$(nbd_uri "$sock")" "$tmp/o.img"
cmp "$img" "$tmp/o.img" || fail "the origin's bytes"
stop_nbdkit
stop_origin
[ "$(sb_version)" = 2 ] || fail "recording an origin left the pool at version $(sb_version)"
"$PUNCHCACHE" info "$pool" | grep -F "origin: $(nbd_uri "$osock")" ||
    fail "info does not show the origin"
"$PUNCHCACHE" check "$pool" || fail "check after the upgrade"
echo "format v1 test: OK (upgraded to version 2 by the origin)"
