#!/usr/bin/env bash
# Description: plugin parameters (SPEC §5, §3 "bad input"): --help names
# every key; each bad parameter makes the server (either front-end) refuse
# to start with a clear message naming the problem, never a crash, and good
# ones start.
#
# Teeth: with the start-up check of stats=PATH removed (lib/store.c writes
# the statistics once in pc_pool_open), the stats=/nonexistent case started
# and this test failed.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

pool=$tmp/pool

expect_fail () { punchcache_refuses "$@"; }
expect_ok () { punchcache_starts "$@"; }

echo "== --help documents every key"
punchcache_help >"$tmp/help"
for key in pool size block-size volume cache direct io stats; do
    grep -qE "^[[:space:]]*$key=" "$tmp/help" || fail "--help does not document $key="
done

echo "== bad parameters"
expect_fail "does not exist.*size=" pool="$pool"
expect_fail "pool" size=64M
expect_fail "block size|block-size|power of 2|power of two" \
    pool="$pool" size=64M block-size=3K
expect_fail "size|parse" pool="$pool" size=abc
expect_fail "direct=maybe: expected auto, on or off" pool="$pool" size=64M direct=maybe
expect_fail "io=fast: expected auto, uring or sync" pool="$pool" size=64M io=fast
expect_fail "unknown parameter 'nosuch'" pool="$pool" size=64M nosuch=1
expect_fail "cache=1 is too small" pool="$pool" size=64M cache=1
expect_fail "volume" pool="$pool" size=64M volume=novolumesize
expect_fail "stats=/nonexistent/stats.json cannot be written" \
    pool="$pool" size=64M stats=/nonexistent/stats.json
rm -f "$pool"

echo "== good parameters start"
expect_ok pool="$pool" size=64M cache=0 direct=off io=sync stats="$tmp/s.json"
[ -s "$tmp/s.json" ] || fail "no statistics file written"
expect_ok pool="$pool" cache=8K direct=auto io=auto volume=extra:1G
"$PUNCHCACHE" volume list "$pool" | grep -q extra || fail "volume=extra:1G not created"
echo "params test: OK"
