#!/usr/bin/env bash
# Description: SPEC §4 I10, failed write-back: with write-back failures
# injected (-D punchcache.fail_writeback=N: the next N data writes of
# write-back fail with EIO), FLUSH and FUA report EIO, the pages stay dirty
# and are retried, every later FLUSH fails until a write-back of them
# succeeds, and once one does every byte is right -- also after a restart.
#
#  1. 8 blocks of 64K written (no FLUSH), 20 failures injected (a pass
#     writes the 8 blocks as 8 writes): the first FLUSH fails with EIO, a
#     FUA write on another connection fails with EIO, that connection's
#     FLUSH fails too (the pages are still dirty: W5), and FLUSHes retried
#     (at most 30) end with one that succeeds; the data reads back right,
#     and again after a graceful restart; `punchcache check` is clean.
#  2. No block another request populated is unmapped or freed by a failed
#     write-back: half of block 0 written and flushed (durable); then, with
#     every write-back failing, the other half of block 0 and a new block
#     1 are written and FLUSH fails (twice); kill -9; after the restart
#     block 0's durable half is intact, the rest reads zeros, exactly one
#     block is allocated and the pool checks clean.
#  3. Run 1 again with -D punchcache.unsafe_wb_forget_failures=1 (a failed
#     write-back marks its pages clean, as Linux did -- PostgreSQL's
#     "fsyncgate"): the second FLUSH reports success although the data
#     never reached the pool; the data MUST be found missing (it is, both
#     through the running server -- the forgotten pages' block was never
#     mapped -- and after the restart).
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires jq --version

pool=$tmp/pool
sock=$tmp/sock
uri=$(nbd_uri "$sock")
cat > "$tmp/eio.py" <<'EOF'
# nbdsh -c 'exec(open(...).read())' with PHASE=write|verify and URI set.
import errno, os
B = 65536
def pattern(i): return bytes([0x40 + i]) * (B - 16) + b"blk%9d end" % i
def outcome(fn):
    try:
        fn()
        return "ok"
    except nbd.Error as e:
        assert e.errnum == errno.EIO, "expected EIO, got %s" % e
        return "EIO"
if os.environ["PHASE"] == "write":
    h2 = nbd.NBD(); h2.connect_uri(os.environ["URI"])
    for i in range(8): h.pwrite(pattern(i), i * B)
    print("first FLUSH:", outcome(h.flush))
    print("FUA write:", outcome(lambda: h2.pwrite(pattern(8), 8 * B,
                                                  nbd.CMD_FLAG_FUA)))
    print("other connection's FLUSH:", outcome(h2.flush))
    n = 0
    while outcome(h.flush) != "ok":
        n += 1
        assert n < 30, "FLUSH still fails after 30 retries"
    print("FLUSHes failed before one succeeded:", n)
    bad = [i for i in range(8) if h.pread(B, i * B) != pattern(i)]
    print("blocks wrong through the running server:", len(bad))
else:
    bad = [i for i in range(8) if h.pread(B, i * B) != pattern(i)]
    zeros = [i for i in bad if h.pread(B, i * B) == bytes(B)]
    assert not bad, "after a restart blocks %r are wrong (%r read zeros)" % (bad, zeros)
    assert h.pread(B, 8 * B) in (pattern(8), bytes(B)), "FUA block garbled"
    print("after the restart all 8 blocks read back right")
EOF

# flush_until_ok UNSAFE: scenario 1 (or 3 with UNSAFE=1); fails the test
# on a broken FLUSH expectation; returns 1 if the data is wrong after the
# successful FLUSH, through the running server or after the restart.
flush_until_ok () {
    local rc=0
    rm -f "$pool"
    start_punchcache "$sock" -D punchcache.fail_writeback=20 \
        -D punchcache.unsafe_wb_forget_failures="$1" \
        pool="$pool" size=16M block-size=64K cache=16M
    PHASE=write URI=$uri timeout 60 nbdsh -u "$uri" \
        -c "exec(open('$tmp/eio.py').read())" | tee "$tmp/write.out" || rc=$?
    stop_nbdkit
    [ $rc = 0 ] || fail "write phase failed"
    grep -q "^first FLUSH: EIO" "$tmp/write.out" ||
        fail "FLUSH succeeded while every write-back failed"
    grep -q "^blocks wrong through the running server: 0" "$tmp/write.out" ||
        rc=1
    if [ "$1" = 0 ]; then
        grep -q "^FUA write: EIO" "$tmp/write.out" ||
            fail "a FUA write succeeded with failed write-backs pending"
        grep -q "^other connection's FLUSH: EIO" "$tmp/write.out" ||
            fail "a FLUSH after a failed one succeeded while the pages were still dirty"
    fi
    start_punchcache "$sock" pool="$pool"
    PHASE=verify timeout 60 nbdsh -u "$uri" \
        -c "exec(open('$tmp/eio.py').read())" || rc=1
    stop_nbdkit
    [ $rc = 0 ] || return 1
    "$PUNCHCACHE" check "$pool" || fail "pool damaged after failed write-backs"
}

echo "== 1. injected write-back failures: FLUSH fails until a retry succeeds"
flush_until_ok 0 || fail "data lost although a FLUSH reported success"

echo "== 2. a failed write-back unmaps nothing another request populated"
rm -f "$pool"
start_punchcache "$sock" pool="$pool" size=16M block-size=64K cache=16M
nbdsh -u "$uri" -c 'h.pwrite(b"\xa5" * 32768, 0); h.flush()' || fail "setup write"

stop_nbdkit
start_punchcache "$sock" -D punchcache.fail_writeback=1000000 pool="$pool" cache=16M
nbdsh -u "$uri" -c '
import errno
h.pwrite(b"\x5a" * 32768, 32768)
h.pwrite(b"\x3c" * 65536, 65536)
for n in range(2):
    try:
        h.flush()
        raise AssertionError("FLUSH %d succeeded while write-back fails" % n)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert h.pread(65536, 0) == b"\xa5" * 32768 + b"\x5a" * 32768
print("two FLUSHes failed with EIO; the dirty data still reads back")' ||
    fail "FLUSH did not report the failed write-back, or dirty data was lost"
kill -9 "$nbdkit_pid"; wait "$nbdkit_pid" 2>/dev/null || :
start_punchcache "$sock" pool="$pool"
nbdsh -u "$uri" -c '
assert h.pread(32768, 0) == b"\xa5" * 32768, "durable half of block 0 lost"
assert h.pread(98304, 32768) == bytes(98304), "data of failed write-backs on disk"
print("after kill -9: the durable data is intact, the rest reads zeros")' ||
    fail "a failed write-back damaged data another request made durable"
stop_nbdkit
alloc=$("$PUNCHCACHE" info "$pool" --json | jq -r '.volumes[0].allocated_blocks')
[ "$alloc" = 1 ] || fail "$alloc blocks allocated after failed write-backs, want 1"
"$PUNCHCACHE" check "$pool" || fail "pool damaged by failed write-backs and kill -9"

echo "== 3. failures forgotten (debug switch): the data loss must be caught"
if flush_until_ok 1; then
    fail "forgotten write-back failures were not caught: the test has no teeth"
fi
echo "write-back EIO test: OK (lost data caught only when failures are forgotten)"
