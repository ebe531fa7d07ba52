#!/usr/bin/env bash
# Description: byte-exact round trips at odd offsets and lengths (unaligned
# heads and tails, block-spanning writes, overwrites inside earlier writes,
# the last byte of the volume), checked against a model, with 4K and the
# default 64K block sizes and on a volume whose size is not a multiple of
# the block size; out-of-range requests reach the server (libnbd's own
# bounds check is switched off), are rejected with an error, and the
# server still serves the same data on the same and on a new connection.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

check_roundtrip () {
    local export=$1
    URI=$(nbd_uri "$tmp/sock" "$export") nbdsh -u "$(nbd_uri "$tmp/sock" "$export")" -c '
import errno, os, random
size = h.get_size()
bs = h.get_block_size(nbd.SIZE_PREFERRED)
model = bytearray(size)
rnd = random.Random(1)
def pat(n): return bytearray(rnd.getrandbits(8) for _ in range(n))
def w(off, data, flags=0):
    h.pwrite(bytes(data), off, flags)
    model[off:off+len(data)] = data
def check(off, n, handle=h):
    got = handle.pread(n, off)
    if got != model[off:off+n]:
        bad = next(i for i in range(n) if got[i] != model[off+i])
        raise AssertionError("mismatch at %d+%d: first bad byte at %d"
                             % (off, n, off + bad))

w(65535, pat(1))                         # 1 byte just before 64K
w(bs - 5, pat(3*bs + 7))                 # 3 blocks + 7 bytes, odd ends
w(bs + 100, pat(10))                     # inside the previous write
w(2*bs - 3, pat(bs + 6))                 # straddles two boundaries again
w(4095, pat(2))                          # straddles a 4K boundary
w(size - 1, pat(1))                      # the last byte of the volume
w(size - bs - 1, pat(bs), nbd.CMD_FLAG_FUA)  # FUA, ends 1 byte short
for i in range(300):                     # random writes, many overlapping
    n = rnd.randrange(1, 3*bs)
    w(rnd.randrange(size - n + 1), pat(n))
check(0, size)
for i in range(200):                     # random unaligned reads
    n = rnd.randrange(1, 2*bs)
    check(rnd.randrange(size - n + 1), n)
check(size - 1, 1)

# Out of range: let the requests reach nbdkit.
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_BOUNDS)
tries = [("read", lambda: h.pread(2, size - 1)),
         ("read", lambda: h.pread(1, size)),
         ("read", lambda: h.pread(512, 1 << 62)),
         ("write", lambda: h.pwrite(b"X" * 2, size - 1)),
         ("write", lambda: h.pwrite(b"X" * 512, (1 << 64) - 256)),
         ("trim", lambda: h.trim(2, size - 1)),
         ("zero", lambda: h.zero(bs, size))]
for name, req in tries:
    try:
        req()
        raise AssertionError("out-of-range %s accepted" % name)
    except nbd.Error as e:
        assert e.errnum in (errno.EINVAL, errno.ENOSPC, errno.EIO), (name, e)
check(size - bs, bs)                     # same connection still fine
h2 = nbd.NBD()
h2.connect_uri(os.environ["URI"])
check(0, size, h2)                       # and a new one sees the same data
h2.shutdown()
print("roundtrip ok: size", size, "block size", bs)
' || fail "round trip failed on export '$export' ($*)"
}

for bs in 4K 64K; do
    rm -f "$tmp/pool"
    args=(pool="$tmp/pool" size=12M volume=main:8M volume=odd:1000448)
    [ "$bs" = 64K ] || args+=("block-size=$bs")   # 64K is the default
    start_punchcache "$tmp/sock" "${args[@]}"
    check_roundtrip main block-size=$bs
    check_roundtrip odd block-size=$bs          # 1000448 = 15 blocks + 17408
    stop_nbdkit
done
"$PUNCHCACHE" check "$tmp/pool"
