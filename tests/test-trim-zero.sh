#!/usr/bin/env bash
# Description: SPEC §3 trim and zero semantics: reads return zeros after
# trim (aligned and unaligned, partial edges zeroed in place), WRITE_ZEROES
# with and without NO_HOLE, FAST_ZERO, block status (hole+zero exactly
# where nothing is allocated), and pool space returned (admin tool and du).
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version
requires nbdinfo --version

pool=$tmp/pool
uri=$(nbd_uri "$tmp/sock")
start_punchcache "$tmp/sock" pool="$pool" size=64M block-size=64K
nbdsh --base-allocation -u "$uri" -c '
B = 65536
def extents(off, n):
    out = []
    def cb(meta, o, ents, err):
        out.extend(zip(ents[0::2], ents[1::2]))
    h.block_status(n, off, cb)
    return out
h.pwrite(b"\xaa" * (8*B), 0)
h.trim(2*B, B)                           # aligned: blocks 1-2 freed
assert h.pread(2*B, B) == bytes(2*B)
h.trim(4*B + 100, B)                     # [B, 5B+100): blocks 1-4 freed,
assert h.pread(4*B + 100, B) == bytes(4*B + 100)   # block 5 head zeroed
assert h.pread(100, 0) == b"\xaa" * 100
assert h.pread(100, 5*B + 100) == b"\xaa" * 100
h.trim(50, 7*B + 10)                     # inside one block: zeroed in place
assert h.pread(70, 7*B) == b"\xaa" * 10 + bytes(50) + b"\xaa" * 10
e = extents(0, 8*B)
assert e[0] == (B, 0), e                 # block 0 data
assert e[1] == (4*B, 3), e               # blocks 1-4 hole+zero
h.zero(B, 6*B, nbd.CMD_FLAG_NO_HOLE)     # stays allocated, reads zeros
assert h.pread(B, 6*B) == bytes(B)
h.zero(B, 7*B)                           # may punch: becomes a hole
assert h.pread(B, 7*B) == bytes(B)
h.zero(B, 20*B, nbd.CMD_FLAG_NO_HOLE)    # NO_HOLE on a hole allocates
assert h.pread(B, 20*B) == bytes(B)
if h.can_fast_zero():
    h.zero(B, 30*B, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(B, 30*B) == bytes(B)
ext = extents(0, 32*B)
pos = 0
for length, flags in ext:
    for b in range(pos // B, (pos + length) // B):
        allocated = b in (0, 5, 6, 20)
        assert (flags == 0) == allocated, (b, flags, ext)
    pos += length
print("trim/zero semantics ok")
' || fail "trim/zero semantics"
stop_nbdkit

# Space: write 32 MiB, then trim it all; used space and du must drop.
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$uri" -c 'h.trim(h.get_size(), 0); h.pwrite(b"\x55" * (32 << 20), 0); h.flush()'
stop_nbdkit
used_full=$("$PUNCHCACHE" info --json "$pool" | python3 -c 'import json,sys; print(json.load(sys.stdin)["used"])')
du_full=$(du -k "$pool" | cut -f1)
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$uri" -c 'h.trim(h.get_size(), 0); h.flush()'
stop_nbdkit
used_empty=$("$PUNCHCACHE" info --json "$pool" | python3 -c 'import json,sys; print(json.load(sys.stdin)["used"])')
du_empty=$(du -k "$pool" | cut -f1)
echo "used: $used_full -> $used_empty bytes; du: $du_full -> $du_empty KiB"
[ "$used_full" -ge $((32 << 20)) ] || fail "32 MiB written but used=$used_full"
[ "$used_empty" -eq 0 ] || fail "everything trimmed but used=$used_empty"
[ "$du_empty" -lt $((du_full - 30000)) ] || fail "pool file did not shrink"
"$PUNCHCACHE" check "$pool"
