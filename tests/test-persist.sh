#!/usr/bin/env bash
# Description: data survives restarts: writes followed by FLUSH, and then
# writes, trims and zeroes with no FLUSH at all but a clean stop (SIGTERM:
# shutdown commits), on two volumes; the images copied out with nbdcopy
# before and after each restart are identical (sha256), and `punchcache
# check` is clean after each stop.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdcopy --version

pool=$tmp/pool
sock=$tmp/sock
snapshot () {             # snapshot NAME: sha256 of both volumes -> $tmp/NAME
    local v
    for v in default v2; do
        nbdcopy "$(nbd_uri "$sock" $v)" - | sha256sum | cut -d' ' -f1
    done > "$tmp/$1"
}

start_punchcache "$sock" pool="$pool" size=64M block-size=4K volume=v2:16M
nbdsh -u "$(nbd_uri "$sock")" -c '
import random
r = random.Random(7)
for i in range(200):
    n = r.randrange(1, 20000)
    h.pwrite(bytes(r.getrandbits(8) for _ in range(64)) * (n // 64 + 1), r.randrange((64 << 20) - 30000))
h.flush()'
nbdsh -u "$(nbd_uri "$sock" v2)" -c 'h.pwrite(b"v2" * (4 << 20), 4096); h.flush()'
snapshot flushed
# A FUA write (it commits), then unflushed changes that all need new
# metadata: allocating writes, an unaligned trim of written data, zeroes
# with NO_HOLE over a hole and without NO_HOLE over data.
nbdsh -u "$(nbd_uri "$sock")" -c '
h.pwrite(b"fua" * 3000, 30 << 20, nbd.CMD_FLAG_FUA)
h.trim(h.get_size() - (48 << 20), 48 << 20)          # make room to allocate
h.pwrite(b"unflushed" * 100000, 50 << 20)
h.trim(5 << 20, (1 << 20) + 77)
h.zero(1 << 20, 60 << 20, nbd.CMD_FLAG_NO_HOLE)
h.zero(1 << 20, 20 << 20)'
nbdsh -u "$(nbd_uri "$sock" v2)" -c '
h.pwrite(b"late" * 1000, (12 << 20) + 3)
h.trim(1 << 20, 4096)'
snapshot unflushed
cmp -s "$tmp/flushed" "$tmp/unflushed" && fail "test wrote nothing after the flush"
stop_nbdkit
"$PUNCHCACHE" check "$pool"

for round in 1 2; do
    start_punchcache "$sock" pool="$pool"
    snapshot "after$round"
    stop_nbdkit
    "$PUNCHCACHE" check "$pool"
    cmp "$tmp/unflushed" "$tmp/after$round" ||
        fail "data changed across clean restart $round"
done
echo "persistence ok: $(tr '\n' ' ' < "$tmp/after2")"
