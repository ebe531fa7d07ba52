#!/usr/bin/env bash
# Description: byte-exact round trips at odd offsets and lengths (unaligned
# heads and tails, block-spanning writes, the last byte of the volume),
# checked against a model, with 4K and the default 64K block sizes; and
# out-of-range requests rejected without harming the server.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version

for bs in 4K 64K; do
    rm -f "$tmp/pool"
    start_punchcache "$tmp/sock" pool="$tmp/pool" size=8M block-size=$bs
    nbdsh -u "$(nbd_uri "$tmp/sock")" -c '
import random
size = h.get_size()
model = bytearray(size)
def w(off, data):
    h.pwrite(bytes(data), off)
    model[off:off+len(data)] = data
rnd = random.Random(1)
def pat(n): return bytearray(rnd.getrandbits(8) for _ in range(n))
w(65535, pat(1))                       # one byte before a 64K boundary
w(3*65536 - 5, pat(3*4096 + 7 + 65536)) # spans several blocks, odd ends
w(3*65536 + 100, pat(10))              # overwrite inside an existing write
w(size - 1, pat(1))                    # the last byte
w(4095, pat(2))                        # straddles a 4K boundary
for i in range(200):                   # random small writes
    off = rnd.randrange(size - 9000)
    w(off, pat(rnd.randrange(1, 9000)))
for off, n in [(0, size), (65530, 20), (size - 4096, 4096), (4000, 200)]:
    got = h.pread(n, off)
    assert got == model[off:off+n], "mismatch at %d+%d" % (off, n)
for off, n in [(size - 1, 2), (size, 1), (size + 4096, 512)]:
    try:
        h.pread(n, off); raise AssertionError("out-of-range read accepted")
    except nbd.Error:
        pass
assert h.pread(1, size - 1) == model[size-1:]
print("roundtrip ok, block size", h.get_block_size(nbd.SIZE_PREFERRED))
' || fail "round trip failed with block-size=$bs"
    stop_nbdkit
done
