#!/usr/bin/env bash
# Description: qemu-img convert into and out of a volume (byte-exact),
# qemu-img compare, qemu-img map (only the image's data is allocated:
# zeros were not written), and qemu-io write/read/discard/write-zeroes
# patterns, each read verified by qemu-io's pattern check.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
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
qemu-img map --output=json -f raw "$uri" > "$tmp/map.json"
python3 - "$tmp/map.json" <<'PY' || { cat "$tmp/map.json"; fail "qemu-img map"; }
import json, sys
data = [(e["start"], e["length"]) for e in json.load(open(sys.argv[1])) if e["data"]]
assert data == [(0, 8 << 20), (48 << 20, 65536)], data
PY
qemu-img convert -f raw -O raw "$uri" "$tmp/out.img"
cmp "$tmp/src.img" "$tmp/out.img" || fail "convert out differs"
# Change the source a little and check compare notices it on the export.
printf 'X' | dd of="$tmp/src.img" bs=1 seek=$((40 << 20)) conv=notrunc status=none
if qemu-img compare -q -f raw -F raw "$tmp/src.img" "$uri"; then
    fail "qemu-img compare missed a difference"
fi
qemu-io -f raw "$uri" \
    -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' \
    -c 'discard 0 1M' -c 'read -P 0 0 1M' \
    -c 'write -P 0xcd 1M 1M' -c 'write -z 1280k 64k' \
    -c 'read -P 0xcd 1M 256k' -c 'read -P 0 1280k 64k' \
    -c 'read -P 0xcd 1344k 704k' -c 'discard 1000k 100k' \
    -c 'read -P 0 1000k 100k' -c 'read -P 0xcd 1100k 180k' \
    -c 'read -P 0 47M 1M' > "$tmp/qio.out" 2>&1 ||
    { cat "$tmp/qio.out"; fail "qemu-io"; }
grep -qi "fail\|error" "$tmp/qio.out" &&
    { cat "$tmp/qio.out"; fail "qemu-io pattern mismatch"; }
echo "qemu ok"
