#!/usr/bin/env bash
# Description: the origin client (lib/origin/, issue 15) against real
# nbdkit origins, through tests/origin-client:
#  1. nbdkit memory 64M, 4 connections, 8 threads: patterned writes and
#     reads (sync and async, 4 KiB .. 1 MiB) read back exactly, and one
#     48 MiB request (split at 32 MiB, across connections) too; counters
#     add up.
#  2. nbdkit file on a sparse file: extents report the holes as zero and
#     the written ranges as data, clipped to the range asked; with
#     --filter=noextents everything is one data run.
#  3. Errors: a bad URI (EINVAL, "not a valid NBD URI"), a socket nobody
#     listens on (named in the message), a writable open of an nbdkit -r
#     origin (EROFS), a read-only open of it works.
#  4. The origin killed (-9) under 4 reading threads: reads fail with EIO,
#     never return other bytes (zeros); "unreachable" while it is down;
#     restarted on the same socket, reads work again without any action,
#     reconnects >= 1.
#  5. A hung origin (--filter=delay delay-read=20): with a 1 s timeout the
#     read fails with EIO "timed out" within 1..5 s, timeouts counted.
#
# Shown to fail (temporary patches, reverted): with completion_cb in
# lib/origin/origin.c completing every piece with 0 (errors ignored, so a
# read cut off by the kill returns the caller's buffer as data), part 4
# reported "bad=4" (4 reads of zeros) and the test failed; with the
# deadline check in conn_serve disabled (poll without timeout), part 5 got
# "rc=0 elapsed_ms=20023 timeouts=0" and failed.
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires "$NBDKIT" --version
requires "$NBDKIT" memory --version
requires "$NBDKIT" file --version
requires "$NBDKIT" --filter=delay null --version
requires "$NBDKIT" --filter=noextents null --version

client=$top_builddir/tests/origin-client
[ -x "$client" ] || fail "$client not built (make check builds it)"
oc () { timeout 120 "$client" "$@"; }

# ---- 1. round trip ----
sock=$tmp/mem.sock
start_nbdkit "$sock" memory 64M
out=$(oc roundtrip "$(nbd_uri "$sock")" 4 8 200) ||
    { echo "$out"; fail "roundtrip against nbdkit memory"; }
echo "$out"
grep -q "failures=0" <<<"$out" || fail "roundtrip: failures"
grep -q "split size 33554432" <<<"$out" || fail "roundtrip: split size"
stop_nbdkit

# ---- 2. extents on a sparse origin ----
img=$tmp/sparse.img
truncate -s 64M "$img"
dd if=/dev/urandom of="$img" bs=64K seek=16 count=2 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M seek=40 count=1 conv=notrunc status=none
sock=$tmp/file.sock
start_nbdkit "$sock" file "$img"
oc extents "$(nbd_uri "$sock")" 0 67108864 > "$tmp/ext" || fail "extents"
cat "$tmp/ext"
# Runs cover [0, 64M) in order, without gaps.
awk 'BEGIN { e = 0 } $1 != e { exit 1 } { e = $1 + $2 } END { exit e != 67108864 }' \
    "$tmp/ext" || fail "extents: the runs do not cover the range in order"
# The data (1M..1M+128K, 40M..41M) is reported as data, the rest as zero
# (the filesystem may report data in coarser units: check points).
is_at () {                      # is_at OFFSET zero|data
    awk -v o="$1" -v k="$2" '$1 <= o && o < $1 + $2 { f = ($3 == k) }
                             END { exit !f }' "$tmp/ext" ||
        fail "extents: offset $1 is not reported $2"
}
is_at 1048576 data; is_at 1179647 data; is_at 41943040 data
is_at 42991615 data
is_at 0 zero; is_at 16777216 zero; is_at 67108863 zero
# A range starting and ending inside runs is clipped to itself.
oc extents "$(nbd_uri "$sock")" 1000000 100000 > "$tmp/ext2" || fail "extents (clip)"
[ "$(head -1 "$tmp/ext2" | cut -d' ' -f1)" = 1000000 ] &&
[ "$(awk '{ e = $1 + $2 } END { print e }' "$tmp/ext2")" = 1100000 ] ||
    { cat "$tmp/ext2"; fail "extents: not clipped to [1000000, 1100000)"; }
stop_nbdkit
start_nbdkit "$sock" --filter=noextents file "$img"
oc extents "$(nbd_uri "$sock")" 0 67108864 > "$tmp/ext3" || fail "extents (noextents)"
[ "$(cat "$tmp/ext3")" = "0 67108864 data" ] ||
    { cat "$tmp/ext3"; fail "extents without base:allocation: not one data run"; }
stop_nbdkit

# ---- 3. errors at open ----
expect_open () {                # expect_open ERRNO PATTERN URI CONNS rw|ro
    local want=$1 pat=$2 rc=0; shift 2
    oc open "$@" > "$tmp/open" 2>&1 || rc=$?
    cat "$tmp/open"
    [ "$rc" = 3 ] || fail "open $*: exit $rc, expected a refusal"
    grep -q "^open: $want: " "$tmp/open" || fail "open $*: not $want"
    grep -qF -- "$pat" "$tmp/open" || fail "open $*: no '$pat'"
}
expect_open EINVAL "origin=nbdx://host/x: not a valid NBD URI: " \
    "nbdx://host/x" 1 ro
expect_open EINVAL "not a valid NBD URI" "nbd+unix:///?sock=x" 1 ro
expect_open EHOSTUNREACH "origin $(nbd_uri "$tmp/nobody.sock"): cannot connect: " \
    "$(nbd_uri "$tmp/nobody.sock")" 2 ro
start_nbdkit "$sock" -r file "$img"
expect_open EROFS "origin $(nbd_uri "$sock") is read-only" \
    "$(nbd_uri "$sock")" 2 rw
oc open "$(nbd_uri "$sock")" 2 ro | grep -q "size=67108864 readonly=1" ||
    fail "read-only open of an nbdkit -r origin"
stop_nbdkit

# ---- 4. the origin killed and restarted under reads ----
pat=$tmp/pattern.img
oc mkpattern "$pat" 67108864 || fail "mkpattern"
sock=$tmp/pat.sock
start_nbdkit "$sock" file "$pat"
oc readloop "$(nbd_uri "$sock")" 4 20 > "$tmp/loop" 2>&1 &
loop_pid=$!
cleanup_fn "kill $loop_pid 2>/dev/null || :"
sleep 1
kill -9 "$nbdkit_pid"; wait "$nbdkit_pid" 2>/dev/null || :
sleep 2
start_nbdkit "$sock" file "$pat"
wait "$loop_pid" || { cat "$tmp/loop"; fail "readloop failed"; }
cat "$tmp/loop"
read -r ok eio other bad ok_after reconnects _ < <(head -1 "$tmp/loop" |
    sed 's/[a-z_]*=//g')
[ "$bad" = 0 ] || fail "origin killed: $bad reads returned other bytes (zeros?)"
[ "$other" = 0 ] || fail "origin killed: $other reads failed with another errno than EIO"
[ "$eio" -gt 0 ] || fail "origin killed: no read failed"
[ "$ok_after" -ge 200 ] || fail "origin restarted: reads did not recover"
[ "$reconnects" -ge 1 ] || fail "origin restarted: reconnects = $reconnects"
grep -qF "first error: origin $(nbd_uri "$sock"): " "$tmp/loop" ||
    fail "origin killed: the error does not name the URI"
grep -qE "first unreachable: origin .* is unreachable \(reconnecting since [0-9]+ s\): ." \
    "$tmp/loop" || fail "origin down: no 'unreachable' error"
stop_nbdkit

# ---- 5. a hung origin ----
sock=$tmp/delay.sock
start_nbdkit "$sock" --filter=delay memory 64M delay-read=20
oc timeout "$(nbd_uri "$sock")" 1000 > "$tmp/hung" || fail "timeout run"
cat "$tmp/hung"
grep -q "^rc=EIO " "$tmp/hung" || fail "hung origin: the read did not fail with EIO"
ms=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' "$tmp/hung")
[ "$ms" -ge 900 ] && [ "$ms" -le 5000 ] ||
    fail "hung origin: failed after $ms ms, expected 1000..5000"
grep -q "timeouts=1" "$tmp/hung" || fail "hung origin: timeouts not counted"
grep -qF "error: origin $(nbd_uri "$sock"): no reply within 1000 ms (timed out)" \
    "$tmp/hung" || fail "hung origin: message"
stop_nbdkit
echo "origin client: all 5 parts pass"
