#!/usr/bin/env bash
# Description: nbdcopy (4 connections, multi-conn) of a sparse image with
# scattered, unaligned data into a volume, out to a file, and volume to
# volume: byte exact; copying a mostly-zero image allocates only its data
# (nbdcopy skips zeros and the pool stays thin), checked with nbdinfo
# --map and with the admin tool's per-volume "allocated".
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdcopy --version
requires nbdinfo --version

pool=$tmp/pool
sock=$tmp/sock
# 128 MiB image: 4 MiB at 0, 1 MiB at 60 MiB, and 40 random pieces of
# 1..5000 bytes at odd offsets in 96..128 MiB.
python3 - "$tmp/src.img" <<'PY'
import os, random, sys
r = random.Random(42)
with open(sys.argv[1], "wb") as f:
    f.truncate(128 << 20)
    f.write(os.urandom(4 << 20))
    f.seek(60 << 20); f.write(os.urandom(1 << 20))
    for i in range(40):
        f.seek(r.randrange(96 << 20, (128 << 20) - 5000))
        f.write(os.urandom(r.randrange(1, 5000)))
PY
start_punchcache "$sock" pool="$pool" size=256M volume=img:128M volume=copy:128M
nbdcopy --connections=4 --flush "$tmp/src.img" "$(nbd_uri "$sock" img)"
nbdcopy --connections=4 "$(nbd_uri "$sock" img)" "$tmp/out.img"
cmp "$tmp/src.img" "$tmp/out.img" || fail "nbdcopy round trip differs"
nbdcopy --connections=4 "$(nbd_uri "$sock" img)" "$(nbd_uri "$sock" copy)"
nbdcopy --connections=2 "$(nbd_uri "$sock" copy)" - | cmp - "$tmp/src.img" ||
    fail "volume to volume copy differs"
data=$(nbdinfo --map --totals "$(nbd_uri "$sock" img)" | awk '$3 == 0 {print $1}')
echo "nbdinfo --map --totals: ${data:-0} bytes of data"
[ "${data:-0}" -ge $((5 << 20)) ] && [ "${data:-0}" -le $((8 << 20)) ] ||
    fail "block status shows ${data:-0} bytes of data, expected 5..8 MiB"
stop_nbdkit
"$PUNCHCACHE" info --json "$pool" > "$tmp/info.json"
python3 - "$tmp/info.json" <<'PY' || fail "the pool is not thin"
import json, sys
j = json.load(open(sys.argv[1]))
v = {x["name"]: x["allocated"] for x in j["volumes"]}
print("allocated:", v, "used:", j["used"])
for name in ("img", "copy"):
    # 5 MiB + at most 40 pieces of <= 2 blocks each.
    assert 5 << 20 <= v[name] <= (5 << 20) + 80 * j["block_size"], (name, v)
assert v["default"] == 0, v
assert j["used"] == v["img"] + v["copy"], j
PY
"$PUNCHCACHE" check "$pool"
