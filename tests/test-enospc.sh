#!/usr/bin/env bash
# Description: SPEC §3 out of space: with an overcommitted volume, a write
# that needs a block when the pool is full fails with ENOSPC after exactly
# the pool's capacity, and nothing else breaks: data already written stays
# intact, the failed block still reads zeros, overwrites in place and
# FLUSH work, other connections work.  After a trim writes succeed again:
# at once after trim + FLUSH (exactly as many blocks as were freed), and
# within a few seconds after a trim alone (the background commit).
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

start_punchcache "$tmp/sock" pool="$tmp/pool" size=8M block-size=64K volume=big:64M
URI=$(nbd_uri "$tmp/sock" big) nbdsh -u "$(nbd_uri "$tmp/sock" big)" -c '
import errno, os, time
B = 65536
def fill(i): return bytes([i % 251 + 1]) * B
def enospc(fn):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, e
        return True
    return False

# Fill: 8 MiB of capacity is 128 blocks of 64K.
n = 0
while n < 1024 and not enospc(lambda: h.pwrite(fill(n), n * B)):
    n += 1
print("ENOSPC after", n, "blocks")
assert n == 128, n
assert h.pread(B, n * B) == bytes(B), "failed write left data behind"
assert enospc(lambda: h.pwrite(b"y", 500 * B + 7))       # still full
assert enospc(lambda: h.zero(B, 501 * B, nbd.CMD_FLAG_NO_HOLE)) or \
       h.pread(B, 501 * B) == bytes(B)
for i in range(n):
    assert h.pread(B, i * B) == fill(i), "block %d damaged" % i
h.pwrite(b"x" * 10, 3 * B + 5)           # overwrite in place still works
h.flush()
h2 = nbd.NBD(); h2.connect_uri(os.environ["URI"])
assert h2.pread(15, 3 * B) == fill(3)[:5] + b"x" * 10

# Trim 4 blocks + FLUSH: exactly 4 blocks can be allocated again.
h.trim(4 * B, 10 * B)
h.flush()
for j in range(4):
    h.pwrite(b"\x77" * B, (200 + j) * B)
assert enospc(lambda: h.pwrite(b"\x77" * B, 204 * B)), "more than freed"
for j in range(4):
    assert h2.pread(B, (200 + j) * B) == b"\x77" * B

# Trim without FLUSH, on another connection: the very next write that
# needs a block must succeed (SPEC §3: "trims free space and writes
# succeed again"); the server commits the waiting frees itself.
h2.trim(2 * B, 20 * B)
h.pwrite(b"\x66" * B, 300 * B)
print("write right after an unflushed trim succeeded")
for i in range(n):
    if i in (10, 11, 12, 13, 20, 21): want = bytes(B)
    else: want = bytearray(fill(i))
    if i == 3: want[5:15] = b"x" * 10
    assert h.pread(B, i * B) == want, "block %d wrong at the end" % i
assert h.pread(B, 300 * B) == b"\x66" * B
print("recovered after trim")
'
stop_nbdkit
"$PUNCHCACHE" check "$tmp/pool"
used=$("$PUNCHCACHE" info --json "$tmp/pool" | python3 -c 'import json,sys; print(json.load(sys.stdin)["used_blocks"])')
[ "$used" -eq 127 ] || fail "expected 127 blocks in use after the test, got $used"

# A pool filled to exactly 100% by concurrent writers: every block must be
# usable.  Teeth: before get_block (now pc_pool_take_block) waited for runs
# of prepared blocks other threads were still zeroing (then lib/volume.c,
# now lib/pool/prepared.c), 2 fio jobs writing a 256 MiB
# pool through a 256 MiB volume got ENOSPC at 97.9% (86 blocks stranded in
# the prepared stack), and bench/scale-fill.sh hit it at 256M to 2G.
if fio --enghelp=nbd >/dev/null 2>&1; then
    rm -f "$tmp/pool2"
    "$PUNCHCACHE" create "$tmp/pool2" 256M >/dev/null
    "$PUNCHCACHE" volume add "$tmp/pool2" v 256M >/dev/null
    start_punchcache "$tmp/sock2" pool="$tmp/pool2"
    timeout -k 5 300 fio --name=fill --ioengine=nbd \
        --uri="$(nbd_uri "$tmp/sock2" v)" --size=256M --rw=randwrite \
        --bs=64k --iodepth=16 --numjobs=2 --output="$tmp/fill.log" ||
        { cat "$tmp/fill.log"; fail "concurrent fill to 100% failed"; }
    stop_nbdkit
    used=$("$PUNCHCACHE" info --json "$tmp/pool2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["used_blocks"])')
    [ "$used" -eq 4096 ] || fail "concurrent fill reached $used of 4096 blocks"
    echo "concurrent fill to 100%: all 4096 blocks used"
fi
