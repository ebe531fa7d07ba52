#!/usr/bin/env bash
# Description: several volumes in one pool (SPEC §5): nbdinfo --list shows
# them (and "default" when size= created the pool), the export name
# selects the volume and the empty name is "default", writes to one volume
# are never visible in another (data or block status), an unknown export
# is refused, volume sizes may overcommit the pool, and volumes with their
# data are still there after a restart without volume= parameters.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdinfo --version

sock=$tmp/sock
pool=$tmp/pool
list_exports () {
    nbdinfo --list --json "$(nbd_uri "$sock")" > "$tmp/list.json"
    python3 - "$tmp/list.json" <<'PY' || fail "nbdinfo --list"
import json, sys
names = sorted(e["export-name"] for e in json.load(open(sys.argv[1]))["exports"])
assert names == ["a", "b", "default", "huge"], names
PY
}

# A 160M pool holding 160M + 64M + 64M + 64G of volumes: overcommitted.
start_punchcache "$sock" pool="$pool" size=160M volume=a:64M volume=b:64M \
    volume=huge:64G
list_exports
# Fill all of a, each 4K with its own pattern; b stays zeros and one hole.
nbdsh -u "$(nbd_uri "$sock" a)" -c '
assert h.get_size() == 64 << 20
buf = bytearray(64 << 20)
for i in range(len(buf) // 4096):
    buf[i*4096:(i+1)*4096] = (b"a%07d" % i) * 512
h.pwrite(bytes(buf), 0)
h.flush()
open("'"$tmp"'/a.img", "wb").write(buf)'
nbdsh --base-allocation -u "$(nbd_uri "$sock" b)" -c '
assert h.get_size() == 64 << 20
assert h.pread(64 << 20, 0) == bytes(64 << 20), "volume b sees data of volume a"
ext = []
h.block_status(64 << 20, 0, lambda m, o, e, err: ext.extend(e))
assert ext == [64 << 20, 3], ext         # one hole+zero extent
h.pwrite(b"\x5a" * 4096, 0)
h.pwrite(b"\x5b" * 100, (64 << 20) - 100)'
nbdsh -u "$(nbd_uri "$sock" a)" -c '
assert h.pread(64 << 20, 0) == open("'"$tmp"'/a.img", "rb").read(), "a changed"'
# The empty export name is the volume "default".
nbdsh -u "$(nbd_uri "$sock")" -c '
assert h.get_size() == 160 << 20
assert h.pread(1 << 20, 0) == bytes(1 << 20)
h.pwrite(b"default!", 4096)'
nbdsh -u "$(nbd_uri "$sock" default)" -c 'assert h.pread(8, 4096) == b"default!"'
nbdsh -u "$(nbd_uri "$sock" huge)" -c '
assert h.get_size() == 64 << 30
h.pwrite(b"end", (64 << 30) - 3)
h.pwrite(b"mid", 40 << 30)
assert h.pread(3, (64 << 30) - 3) == b"end"
assert h.pread(4096, 0) == bytes(4096)'
if nbdinfo "$(nbd_uri "$sock" nosuch)" > "$tmp/out" 2>&1; then
    fail "unknown export name was accepted"
fi
grep -q "nosuch" "$tmp/nbdkit.log" || fail "server log does not name the missing volume"
stop_nbdkit

# Restart without volume= or size=: the volumes and their data remain.
start_punchcache "$sock" pool="$pool"
list_exports
nbdsh -u "$(nbd_uri "$sock" a)" -c '
assert h.pread(64 << 20, 0) == open("'"$tmp"'/a.img", "rb").read(), "a lost data"'
nbdsh -u "$(nbd_uri "$sock" b)" -c '
assert h.pread(4096, 0) == b"\x5a" * 4096
assert h.pread(100, (64 << 20) - 100) == b"\x5b" * 100
assert h.pread((64 << 20) - 8192, 4096) == bytes((64 << 20) - 8192)'
nbdsh -u "$(nbd_uri "$sock" huge)" -c '
assert h.pread(3, 40 << 30) == b"mid" and h.pread(3, (64 << 30) - 3) == b"end"'
stop_nbdkit
"$PUNCHCACHE" info --json "$pool" > "$tmp/info.json"
python3 - "$tmp/info.json" <<'PY' || fail "punchcache info volumes"
import json, sys
j = json.load(open(sys.argv[1]))
v = {x["name"]: x for x in j["volumes"]}
assert v["a"]["allocated"] == 64 << 20, v["a"]
assert 0 < v["b"]["allocated"] <= 2 * j["block_size"], v["b"]
assert v["huge"]["size"] == 64 << 30, v["huge"]
assert j["used"] == sum(x["allocated"] for x in v.values()), j
print("volumes ok:", {n: x["allocated"] for n, x in v.items()})
PY
"$PUNCHCACHE" check "$pool"
