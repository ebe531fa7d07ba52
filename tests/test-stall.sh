#!/usr/bin/env bash
# Description: SPEC §4 I13 end to end -- a stalled pool device does not
# stop cache hits.  -D punchcache.race_delay_us=3000000 makes every read
# that must go to the pool sleep 3 s between its map lookup and its pool
# read (a stalled device).  Connection A sends 48 reads of uncached blocks
# (more than punchcached's 16 core workers, so its run queue backs up
# too); while they are all still pending, connection B reads a warm range
# 200 times, every read must complete and return its data, and A's reads
# must still be pending when B is done (so B was not served "after" the
# stall).  Finally A's reads complete with the right data.
#
# Structural, not timed: nothing asserts a latency; the check is that 200
# round trips on B finish inside the window in which 48 stalled reads on A
# cannot have finished.  With an event loop that waited for the pool (a
# blocking read in the loop thread, which is what I13 forbids), B's reads
# would queue behind A's on the same loop and the test fails.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

pool=$tmp/pool
sock=$tmp/sock

# Data first, with no stall.
start_punchcache "$sock" pool="$pool" size=64M volume=v:32M \
    cache=64M
nbdsh -u "$(nbd_uri "$sock" v)" -c '
h.pwrite(b"W" * (1 << 20), 0)                  # the warm range
h.pwrite(b"C" * (1 << 20), 16 << 20)           # the cold range
h.flush()'
stop_nbdkit

start_punchcache "$sock" -D punchcache.race_delay_us=3000000 \
    pool="$pool" cache=64M
URI="$(nbd_uri "$sock" v)" nbdsh -c '
import os, time
uri = os.environ["URI"]
b = nbd.NBD(); b.connect_uri(uri)
# Warm B'"'"'s range: 16 blocks of 64 KiB, read concurrently (each read
# stalls 3 s once).
def wait_all(h, cookies, limit, what):
    done, t0 = set(), time.monotonic()
    while len(done) < len(cookies):   # a completed cookie is retired once
        h.poll(1)
        done |= {c for c in cookies if c not in done and
                 h.aio_command_completed(c)}
        assert time.monotonic() - t0 < limit, what
def pending(h, cookies):
    return [c for c in cookies if not h.aio_command_completed(c)]
wait_all(b, [b.aio_pread(nbd.Buffer(65536), i * 65536) for i in range(16)],
         60, "warm-up did not finish in 60 s")
a = nbd.NBD(); a.connect_uri(uri)
bufs = [nbd.Buffer(4096) for _ in range(48)]
stalled = [a.aio_pread(bufs[i], (16 << 20) + i * 8192) for i in range(48)]
a.poll(0)
for i in range(200):
    off = (i * 4096 * 7) % (1 << 20)
    assert b.pread(4096, off) == b"W" * 4096, "hit returned wrong data"
left = pending(a, stalled)
print("hits done; stalled reads still pending:", len(left), "of 48")
assert len(left) == 48, "the stalled reads finished before the hits"
wait_all(a, left, 120, "stalled reads never completed")
for buf in bufs:
    assert buf.to_bytearray() == b"C" * 4096, "stalled read: wrong data"
print("stall ok")
' 2>&1 | tee "$tmp/out" || :
grep -q "^stall ok" "$tmp/out" || fail "I13: cache hits did not go on while pool reads stalled"
stop_nbdkit
"$PUNCHCACHE" check "$pool"
