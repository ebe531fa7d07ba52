#!/usr/bin/env bash
# Description: the punch/read race of SPEC §2 (invariants I2, I3, and the
# I1 check), over many connections on two volumes of one pool.
#
# race-client runs writers, trimmers, readers (2 of each per volume) and a
# flusher; every read is checked against the tags of what was written (see
# tests/race-client.c).  -D punchcache.race_delay_us widens the window
# between map lookup and pool I/O to 10 ms.
#
#  1. With the invalidate lock: no foreign, stale or corrupt read, and
#     `punchcache check` finds the pool clean afterwards.
#  2. With -D punchcache.unsafe_no_invalidate_lock=1 the same load MUST
#     produce violations -- proof that this test catches the bug.
#
#  3. I5: with every 5th allocating write failing (-D
#     punchcache.fail_write_every=5), no write that completed may vanish
#     (race-client's LOST check) and no read may be foreign or corrupt.
#
# Teeth for I5: with a mutation that "cleans up" a failed write by
# unmapping its block after dropping the allocation lock (the XFS
# punch-on-error bug), run 3 failed with 7 LOST and 8 FOREIGN reads.
#
# Measured while writing it (2 cores, 6 s per run): lock removed, 10 of 10
# runs caught violations (typically 1000-3000 foreign reads across volumes,
# i.e. one tenant's data served to another); with the lock, 0 violations in
# 10 of 10 runs (~15000-30000 reads checked each).  Re-measured after
# prepared blocks (lib/pool/prepared.c) on a machine loaded by other benchmarks:
# lock removed, 9 of 10 runs caught 80-904 foreign reads (direct=off: 40-280,
# so the load, not the allocator, makes the difference); hence up to three
# runs below.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires test -x "$top_builddir/tests/race-client"

client=$top_builddir/tests/race-client
pool=$tmp/pool
sock=$tmp/sock
params=(pool=$pool size=64M block-size=4K volume=a:1M volume=b:1M)

run () {   # run UNSAFE FAIL_EVERY CLIENT-ARGS...
    start_punchcache "$sock" -D punchcache.race_delay_us=10000 \
        -D punchcache.unsafe_no_invalidate_lock="$1" \
        -D punchcache.fail_write_every="$2" "${params[@]}"
    shift 2
    "$client" --seconds 6 --blocks 64 --block-size 4096 "$@" "$sock"
    local rc=$?
    stop_nbdkit
    return $rc
}

echo "== with the invalidate lock: expect no violation"
run 0 0 --expect-clean || fail "violations with the invalidate lock held"
"$PUNCHCACHE" check "$pool" || fail "pool damaged after the safe run"

echo "== I5: every 5th allocating write fails (EIO); no completed write may vanish"
rm -f "$pool"
run 0 5 --expect-clean --allow-write-errors ||
    fail "a failed write lost or corrupted data of another write"
"$PUNCHCACHE" check "$pool" || fail "pool damaged after failed writes"

# One 6 s run catches the bug 9-10 times in 10 (see above); up to three
# runs, stopping at the first catch, make a miss a one-in-a-thousand event
# instead of a flaky CI.
echo "== lock removed (debug switch): expect violations"
caught=no
for attempt in 1 2 3; do
    rm -f "$pool"
    if run 1 0 --expect-violations; then caught=yes; break; fi
    echo "attempt $attempt: no violation caught"
done
[ "$caught" = yes ] ||
    fail "the race test did not catch the missing invalidate lock in 3 runs"
echo "race test: OK (violations caught only without the lock)"
