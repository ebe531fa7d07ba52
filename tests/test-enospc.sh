#!/usr/bin/env bash
# Description: SPEC §3 out of space: with an overcommitted volume, a write
# that needs a block when the pool is full fails with ENOSPC, data already
# written stays intact, and after a trim (and the flush that commits it)
# writes succeed again.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version

start_punchcache "$tmp/sock" pool="$tmp/pool" size=8M block-size=64K volume=big:64M
nbdsh -u "$(nbd_uri "$tmp/sock" big)" -c '
import errno
B = 65536
n = 0
try:
    for i in range((64 << 20) // B):
        h.pwrite(bytes([i % 251 + 1]) * B, i * B)
        n += 1
    raise AssertionError("no ENOSPC after 64 MiB into an 8 MiB pool")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
print("ENOSPC after", n, "blocks")
assert n == 128, n                      # exactly the pool capacity
for i in range(n):
    assert h.pread(B, i * B) == bytes([i % 251 + 1]) * B, i
h.pwrite(b"x" * 10, 3 * B + 5)          # overwrite in place still works
h.trim(4 * B, 0)
h.flush()                               # frees are reusable once committed
h.pwrite(b"\x77" * B, 200 * B)
assert h.pread(B, 200 * B) == b"\x77" * B
print("recovered after trim")
'
stop_nbdkit
"$PUNCHCACHE" check "$tmp/pool"
