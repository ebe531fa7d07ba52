#!/usr/bin/env bash
# Description: data survives restarts: after FLUSH and a clean stop, and
# without FLUSH but with a clean stop (shutdown commits); `punchcache
# check` is clean after each.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version

pool=$tmp/pool
uri=$(nbd_uri "$tmp/sock")
start_punchcache "$tmp/sock" pool="$pool" size=64M
nbdsh -u "$uri" -c '
import random
r = random.Random(7)
for i in range(64):
    h.pwrite(bytes([r.randrange(256)]) * 4096, r.randrange(16000) * 4096)
h.flush()
open("'"$tmp"'/a.bin", "wb").write(h.pread(64 << 20, 0))
h.pwrite(b"unflushed" * 100, 12345)
h.trim(65536, 65536 * 10)
open("'"$tmp"'/b.bin", "wb").write(h.pread(64 << 20, 0))
'
stop_nbdkit
"$PUNCHCACHE" check "$pool"
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$uri" -c 'open("'"$tmp"'/c.bin", "wb").write(h.pread(64 << 20, 0))'
stop_nbdkit
cmp "$tmp/b.bin" "$tmp/c.bin" || fail "data changed across a clean restart"
cmp -s "$tmp/a.bin" "$tmp/b.bin" && fail "test wrote nothing after the flush"
echo "persistence ok"
