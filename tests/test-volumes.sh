#!/usr/bin/env bash
# Description: several volumes in one pool: nbdinfo --list shows them, the
# export name selects the volume, writes to one volume are never visible
# in another, an unknown export is refused, volume sizes may overcommit.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version
requires nbdinfo --version

sock=$tmp/sock
# 32M pool, volumes totalling 64G+: overcommit is allowed.
start_punchcache "$sock" pool="$tmp/pool" size=32M volume=a:64M volume=b:64M \
    volume=huge:64G
nbdinfo --list --json "$(nbd_uri "$sock")" > "$tmp/list.json"
python3 - "$tmp/list.json" <<'PY' || fail "nbdinfo --list"
import json, sys
names = sorted(e["export-name"] for e in json.load(open(sys.argv[1]))["exports"])
assert names == ["a", "b", "default", "huge"], names
PY
nbdsh -u "$(nbd_uri "$sock" a)" -c 'h.pwrite(b"\xa5" * (8 << 20), 0); h.flush()'
nbdsh -u "$(nbd_uri "$sock" b)" -c '
assert h.get_size() == 64 << 20
assert h.pread(8 << 20, 0) == bytes(8 << 20), "volume b sees data of volume a"
h.pwrite(b"\x5a" * 4096, 0)
'
nbdsh -u "$(nbd_uri "$sock" a)" -c 'assert h.pread(4096, 0) == b"\xa5" * 4096'
nbdsh -u "$(nbd_uri "$sock" huge)" -c '
assert h.get_size() == 64 << 30
h.pwrite(b"end", (64 << 30) - 3)
assert h.pread(3, (64 << 30) - 3) == b"end"
'
if nbdinfo "$(nbd_uri "$sock" nosuch)" > "$tmp/out" 2>&1; then
    fail "unknown export name was accepted"
fi
grep -q "nosuch" "$tmp/nbdkit.log" || fail "server log does not name the missing volume"
echo "volumes ok"
