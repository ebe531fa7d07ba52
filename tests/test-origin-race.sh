#!/usr/bin/env bash
# Description: punch-aware fills (issue 15, SPEC I1, I2, I6; volume.c V6):
# a trim, zero or write that completes while a fill of the same block from
# the origin is in flight is never overwritten by the late fill.
#
# The origin is `nbdkit file` over random data behind the delay filter
# (300 ms per read), so a fill's origin read is a wide window.  Each
# attempt takes a cold block: client 1 starts reading it (aio: the fill
# begins), 100 ms later -- the fill still in flight, checked -- client 2
# punches it (TRIM or WRITE_ZEROES, alternately) or writes it whole, and
# waits for that to complete; once client 1's read is done too, client 2
# reads the block again: it must read zeros (or what it wrote), never the
# origin's data, and still so after the server restarts.
#
#  1. punches with the invalidate lock: K=6 attempts, all clean.  (An
#     attempt whose fill ended before the update was sent -- a stall of
#     the machine -- is skipped and said so; at least K/2 must count.)
#  2. writes (writeback=off, so a write goes to the pool at once) with the
#     allocation lock: K=6 attempts, all clean; the same with writeback=on,
#     and partial writes (1000 bytes: the block must read the origin's
#     bytes around the write).
#  3. punches with -D punchcache.unsafe_no_invalidate_lock=1 (a punch does
#     not wait for the fill): MUST read origin data after a punch at least
#     once in K attempts; up to 3 runs, like tests/test-race.sh.
#  4. writes with -D punchcache.unsafe_origin_fill=1 (the fill takes no
#     allocation lock and does not look again): MUST read origin data after
#     a write at least once in K attempts; up to 3 runs.
# The test FAILS if 3 or 4 do not show the bug: that is what proves it can
# fail.  `punchcache check` is clean after 1 and 2.
#
# Measured while writing it (2 vCPUs, load ~7 from other work), both
# front-ends: runs 1, 2 and 2b clean, each punch or write completing
# ~200 ms after it was sent (it waited for the fill: sent at +100 ms, fill
# done at +300 ms); run 3 read origin data in 6 of 6 attempts and run 4 in
# 6 of 6, first run each (the punch or write then completed in 0-2 ms);
# 16-18 s in all.  Before the plugin exported the unsafe_origin_fill
# switch (the commit before this test), the plugin variant failed here:
# "did not show origin data over a write in 3 runs".
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

K=6
origin_vars

head -c $((4 << 20)) /dev/urandom > "$img"       # no all-zero block
start_origin -r --filter=delay file "$img" delay-read=300ms

# attempt_run MODE UNSAFE-OPTION...: a fresh pool over the slow origin,
# K attempts of MODE (punch: TRIM/WRITE_ZEROES; write: whole blocks;
# partial: 1000 bytes inside the block) on blocks 1..K; writeback=$WB.
# Exit status 0: every attempt read zeros / the written data; 3: at least
# one read origin data (the bug); anything else: a broken run.
attempt_run () {
    local mode=$1 rc=0; shift
    rm -f "$pool"
    start_punchcache "$sock" "$@" pool="$pool" size=64M block-size=64K \
        origin="$ouri" writeback="${WB:-off}"
    MODE=$mode K=$K IMG=$img URI=$uri timeout 60 nbdsh -c '
import os, sys, time
B = 65536
mode, K, uri = os.environ["MODE"], int(os.environ["K"]), os.environ["URI"]
img = open(os.environ["IMG"], "rb").read()
h1 = nbd.NBD(); h1.connect_uri(uri)
h2 = nbd.NBD(); h2.connect_uri(uri)
bad, tried = 0, []
for i in range(1, K + 1):
    off = i * B
    origin = img[off:off + B]
    if mode == "write":
        want, what = bytes([0x60 + i]) * B, "write"
    elif mode == "partial":
        want, what = origin[:100] + bytes([0x60 + i]) * 1000 + origin[1100:], "partial write"
    else:
        want, what = bytes(B), ("trim" if i % 2 else "zero")
    buf = nbd.Buffer(B)
    t0 = time.time()
    c = h1.aio_pread(buf, off)                   # the fill starts
    time.sleep(0.1)
    h1.poll(0)
    if h1.aio_command_completed(c):              # a stall of this machine
        print("block %d: the fill ended within %.0f ms: window missed"
              % (i, (time.time() - t0) * 1000))
        continue
    t1 = time.time()
    tried.append(i)
    if what == "write": h2.pwrite(want, off)
    elif what == "partial write": h2.pwrite(want[100:1100], off + 100)
    elif what == "trim": h2.trim(B, off)
    else: h2.zero(B, off)
    t2 = time.time()
    while not h1.aio_command_completed(c): h1.poll(-1)
    got = h2.pread(B, off)
    state = "ok" if got == want else ("ORIGIN DATA" if got == origin else "OTHER DATA")
    print("block %d: %s at +%.0f ms took %.0f ms, fill done +%.0f ms; read after: %s"
          % (i, what, (t1 - t0) * 1000, (t2 - t1) * 1000, (time.time() - t0) * 1000, state))
    assert state != "OTHER DATA", "block %d: neither origin data nor the %s" % (i, what)
    bad += state != "ok"
print("%s: %d of %d attempts read origin data afterwards" % (mode, bad, len(tried)))
assert len(tried) >= K // 2, "only %d of %d attempts hit the fill window" % (len(tried), K)
open(os.environ["IMG"] + ".bad", "w").write(str(bad))
open(os.environ["IMG"] + ".tried", "w").write(" ".join(map(str, tried)))
' || rc=$?
    stop_nbdkit
    [ "$rc" = 0 ] || return 99
    [ "$(cat "$img.bad")" = 0 ] || return 3
    # The pool as it stands, after a restart (origin recorded): the same.
    start_punchcache "$sock" pool="$pool"
    IMG=$img MODE=$mode K=$K nbdsh -u "$uri" -c '
import os
B = 65536
img = open(os.environ["IMG"], "rb").read()
for i in map(int, open(os.environ["IMG"] + ".tried").read().split()):
    origin = img[i*B:(i+1)*B]
    want = {"write": bytes([0x60 + i]) * B, "punch": bytes(B),
            "partial": origin[:100] + bytes([0x60 + i]) * 1000 + origin[1100:]}[os.environ["MODE"]]
    assert h.pread(B, i * B) == want, "block %d wrong after a restart" % i
print("after a restart: the same")
' || rc=$?
    stop_nbdkit
    [ "$rc" = 0 ] || return 3
    "$PUNCHCACHE" check "$pool" > "$tmp/check.out" 2>&1 ||
        { cat "$tmp/check.out"; return 99; }
    echo "punchcache check: clean"
}

# must_catch MODE UNSAFE-OPTION...: up to 3 runs; fail unless one shows the bug.
must_catch () {
    local mode=$1 attempt rc; shift
    for attempt in 1 2 3; do
        rc=0; attempt_run "$mode" "$@" || rc=$?
        [ "$rc" = 3 ] && { echo "caught with $*: origin data over a completed $mode"; return 0; }
        [ "$rc" = 0 ] || fail "run $attempt ($mode, $*) broke (status $rc)"
        echo "run $attempt ($mode, $*): the bug did not show"
    done
    fail "$* did not show origin data over a $mode in 3 runs: the test has no teeth"
}

echo "== 1. punches during fills, with the invalidate lock"
attempt_run punch || fail "a trim or zero lost to a fill in flight"
echo "== 2. whole-block writes during fills (writeback=off), with the allocation lock"
attempt_run write || fail "a write lost to a fill in flight"
echo "== 2b. the same with writeback=on, and partial writes (fill first, then the write)"
WB=on attempt_run write || fail "a write-back write lost to a fill in flight"
attempt_run partial || fail "a partial write lost to a fill in flight"
echo "== 3. punches, invalidate lock removed: expect origin data over a punch"
must_catch punch -D punchcache.unsafe_no_invalidate_lock=1
echo "== 4. writes, fills without the allocation lock: expect origin data over a write"
must_catch write -D punchcache.unsafe_origin_fill=1
echo "origin race test: OK (late fills lose; the unsafe switches show the bug)"
