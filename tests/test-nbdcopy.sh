#!/usr/bin/env bash
# Description: nbdcopy (multi-connection) into and out of a volume, byte
# exact; copying a mostly-zero image allocates only its data (nbdcopy
# skips zeros and the pool stays thin).
source "$top_srcdir/tests/functions.sh"
requires nbdcopy --version

pool=$tmp/pool
uri=$(nbd_uri "$tmp/sock")
head -c 4M /dev/urandom > "$tmp/src.img"
truncate -s 60M "$tmp/src.img"
head -c 1M /dev/urandom >> "$tmp/src.img"
truncate -s 128M "$tmp/src.img"
start_punchcache "$tmp/sock" pool="$pool" size=128M
nbdcopy --connections=4 "$tmp/src.img" "$uri"
nbdcopy --connections=4 "$uri" "$tmp/out.img"
cmp "$tmp/src.img" "$tmp/out.img" || fail "nbdcopy round trip differs"
stop_nbdkit
used=$("$PUNCHCACHE" info --json "$pool" | python3 -c 'import json,sys; print(json.load(sys.stdin)["used"])')
echo "5 MiB of data in a 128 MiB image: pool uses $used bytes"
[ "$used" -le $((8 << 20)) ] || fail "zeros were allocated (used=$used)"
[ "$used" -ge $((5 << 20)) ] || fail "data missing (used=$used)"
