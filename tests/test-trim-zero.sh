#!/usr/bin/env bash
# Description: SPEC §3 trim and zero semantics: reads return zeros after
# trim (aligned and unaligned, partial edges zeroed in place, the rest of
# an edge block intact), WRITE_ZEROES with and without NO_HOLE, FAST_ZERO,
# block status (hole+zero exactly where nothing is allocated, checked with
# libnbd and with nbdinfo --map; every range reported zero reads as zeros,
# I7), and pool space returned (admin tool "used" and du of the pool file).
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdinfo --version

pool=$tmp/pool
uri=$(nbd_uri "$tmp/sock")
start_punchcache "$tmp/sock" pool="$pool" size=64M block-size=64K
nbdsh --base-allocation -u "$uri" -c '
B = 65536
assert h.can_trim() and h.can_zero() and h.can_fast_zero()
def extents(off, n):
    out = []
    def cb(meta, o, ents, err):
        out.extend(zip(ents[0::2], ents[1::2]))
    h.block_status(n, off, cb)
    return out
def is_zero(off, n): return h.pread(n, off) == bytes(n)
def is_aa(off, n): return h.pread(n, off) == b"\xaa" * n

h.pwrite(b"\xaa" * (18*B), 0)
h.trim(2*B, B)                           # aligned: blocks 1-2 freed
assert is_zero(B, 2*B)
assert is_aa(0, B) and is_aa(3*B, B)
h.trim(4*B + 100, B)                     # [B, 5B+100): blocks 1-4 freed,
assert is_zero(B, 4*B + 100)             # block 5 head zeroed in place
assert is_aa(0, B) and is_aa(5*B + 100, B - 100)
h.trim(50, 7*B + 10)                     # inside one block: zeroed in place
assert h.pread(70, 7*B) == b"\xaa" * 10 + bytes(50) + b"\xaa" * 10
h.trim(B + B//2 + 200, 8*B + B//2)       # partial head and tail, 1 whole
assert is_aa(8*B, B//2) and is_zero(8*B + B//2, B + B//2 + 200)
assert is_aa(10*B + 200, B - 200)
e = extents(0, 8*B)
assert e[0] == (B, 0), e                 # block 0 data
assert e[1] == (4*B, 3), e               # blocks 1-4 hole+zero
h.zero(B, 12*B, nbd.CMD_FLAG_NO_HOLE)    # stays allocated, reads zeros
assert is_zero(12*B, B)
h.zero(B, 13*B)                          # no NO_HOLE: a punch, hole
assert is_zero(13*B, B)
h.zero(B, 20*B, nbd.CMD_FLAG_NO_HOLE)    # NO_HOLE on a hole: reads zeros
assert is_zero(20*B, B)
h.zero(2*B, 14*B + 100, nbd.CMD_FLAG_FAST_ZERO)  # accepted, unaligned
assert is_aa(14*B, 100) and is_zero(14*B + 100, 2*B)
assert is_aa(16*B + 100, 2*B - 100)
h.trim(3*B, 40*B)                        # trim never-written space: no-op
h.trim(B//2, 41*B + 7)                   # unaligned trim inside a hole
assert is_zero(40*B, 4*B)
# Allocation after all this, per block: 0 and 5 (edges zeroed in place),
# 6,7 untouched; 8 (head edge), 10 (tail edge); 11 untouched; 12 NO_HOLE;
# 14, 16 edges of the FAST_ZERO, 17 untouched; 20 NO_HOLE on a hole may
# or may not allocate.  Everything else is a hole.
data = {0, 5, 6, 7, 8, 10, 11, 12, 14, 16, 17}
ext = extents(0, 64*B)
assert sum(l for l, f in ext) == 64*B, ext
pos = 0
for length, flags in ext:
    for b in range(pos // B, (pos + length) // B):
        if b == 20: continue
        assert (flags == 0) == (b in data), (b, flags, ext)
        assert flags in (0, 3), (b, flags)
    if flags & 2:                        # I7: reported zero reads as zero
        assert is_zero(pos, length), (pos, length)
    pos += length
open("'"$tmp"'/expect", "w").write(" ".join(map(str, sorted(data))))
print("trim/zero semantics ok")
' || fail "trim/zero semantics"

# The same allocation as seen by nbdinfo --map.
nbdinfo --map --json "$uri" > "$tmp/map.json"
python3 - "$tmp/map.json" "$tmp/expect" <<'PY' || fail "nbdinfo --map"
import json, sys
B = 65536
data = set(map(int, open(sys.argv[2]).read().split()))
pos = 0
for e in json.load(open(sys.argv[1])):
    assert e["offset"] == pos, e
    for b in range(pos // B, (pos + e["length"]) // B):
        if b == 20: continue
        want = "data" if b in data else "hole,zero"
        assert e["description"] == want, (b, e)
    pos += e["length"]
assert pos == 64 << 20, pos
print("nbdinfo --map ok")
PY
stop_nbdkit

# Space: write 32 MiB, then trim it all; used space and du must drop.
used () {
    "$PUNCHCACHE" info --json "$pool" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); v={x["name"]: x["allocated"] for x in j["volumes"]}; assert j["used"] == v["default"], j; print(j["used"])'
}
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$uri" -c 'h.trim(h.get_size(), 0); h.pwrite(b"\x55" * (32 << 20), 0); h.flush()'
stop_nbdkit
used_full=$(used)
du_full=$(du -k "$pool" | cut -f1)
start_punchcache "$tmp/sock" pool="$pool"
nbdinfo --map "$uri" | grep -q "33554432 *3 *hole,zero" ||
    { nbdinfo --map "$uri"; fail "map after restart"; }
nbdsh -u "$uri" -c '
h.trim(h.get_size(), 0)
h.flush()
assert h.pread(32 << 20, 0) == bytes(32 << 20)'
nbdinfo --map "$uri" | grep -q "^ *0 *67108864 *3 *hole,zero" ||
    { nbdinfo --map "$uri"; fail "trimmed volume is not one hole"; }
stop_nbdkit
used_empty=$(used)
du_empty=$(du -k "$pool" | cut -f1)
echo "used: $used_full -> $used_empty bytes; du: $du_full -> $du_empty KiB"
[ "$used_full" -eq $((32 << 20)) ] || fail "32 MiB written but used=$used_full"
[ "$used_empty" -eq 0 ] || fail "everything trimmed but used=$used_empty"
[ "$du_full" -ge 32768 ] || fail "pool file holds only $du_full KiB"
[ "$du_empty" -lt $((du_full - 30000)) ] || fail "pool file did not shrink"
"$PUNCHCACHE" check "$pool"
