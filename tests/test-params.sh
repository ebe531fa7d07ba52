#!/usr/bin/env bash
# Description: plugin parameters (SPEC §5, §3 "bad input"): --help names
# every key; each bad parameter makes the server (either front-end) refuse
# to start with a clear message naming the problem, never a crash, and good
# ones start.
#
# Teeth: with the start-up check of stats=PATH removed (lib/pool/store.c writes
# the statistics once in pc_pool_open), the stats=/nonexistent case started
# and this test failed.  With the sector suffix 's' removed from
# lib/util/size.c, volume=sect:2048s did not start and this test failed.
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
expect_fail "volume=bad/name:1M: invalid volume name" \
    pool="$pool" size=64M volume=bad/name:1M
expect_fail "punchcache.race_delay_us=-1: expected a whole number" \
    pool="$pool" size=64M -D punchcache.race_delay_us=-1
[ ! -e "$pool" ] || fail "a refused start left a pool behind"

echo "== good parameters start"
expect_ok pool="$pool" size=64M cache=0 direct=off io=sync stats="$tmp/s.json"
[ -s "$tmp/s.json" ] || fail "no statistics file written"
expect_ok pool="$pool" cache=8K direct=auto io=auto volume=extra:1G
"$PUNCHCACHE" volume list "$pool" | grep -q extra || fail "volume=extra:1G not created"
# nbdkit's size suffixes, sectors included, read by the core's parser.
expect_ok pool="$pool" volume=sect:2048s
"$PUNCHCACHE" volume list "$pool" | grep -qE "^ *sect +1048576 " ||
    fail "volume=sect:2048s not created with 1048576 bytes"
echo "params test: OK"
