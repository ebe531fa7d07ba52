#!/usr/bin/env bash
# Description: qemu-img convert into and out of a volume (byte-exact),
# qemu-img compare, and qemu-io write/read/discard patterns.
source "$top_srcdir/tests/functions.sh"
requires qemu-img --version
requires qemu-io --version

uri=$(nbd_uri "$tmp/sock")
start_punchcache "$tmp/sock" pool="$tmp/pool" size=64M
# A raw image with data, holes and a short tail.
head -c 8M /dev/urandom > "$tmp/src.img"
truncate -s 48M "$tmp/src.img"
printf 'tail' >> "$tmp/src.img"
truncate -s 64M "$tmp/src.img"
qemu-img convert -n -f raw -O raw "$tmp/src.img" "$uri"
qemu-img compare -f raw -F raw "$tmp/src.img" "$uri" || fail "qemu-img compare"
qemu-img convert -f raw -O raw "$uri" "$tmp/out.img"
cmp "$tmp/src.img" "$tmp/out.img" || fail "convert out differs"
qemu-io -f raw "$uri" \
    -c 'write -P 0xab 1M 1M' -c 'read -P 0xab 1M 1M' \
    -c 'discard 1M 1M' -c 'read -P 0 1M 1M' \
    -c 'write -z 2M 64k' -c 'read -P 0 2M 64k' > "$tmp/qio.out" 2>&1 ||
    { cat "$tmp/qio.out"; fail "qemu-io"; }
grep -qi "pattern verification failed\|error" "$tmp/qio.out" &&
    { cat "$tmp/qio.out"; fail "qemu-io pattern mismatch"; }
echo "qemu ok"
