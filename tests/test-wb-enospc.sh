#!/usr/bin/env bash
# Description: SPEC §4 I11 under write-back (delayed allocation): blocks
# are reserved when a write to an unmapped block is accepted, so ENOSPC is
# reported at write time and never at write-back.
#
# A pool of 8M in 64K blocks (128 blocks) with a 64M volume, and a cache
# large enough that nothing is written back before the FLUSH
# (cache=64M dirty=32M, dirty-expire 30 s):
#  1. 136 distinct blocks written, no FLUSH: exactly the first 128 are
#     acknowledged, the rest fail with ENOSPC, as does a 100-byte write
#     into another unmapped block; an overwrite of a dirty block works.
#     A trim of an unflushed dirty block gives its reservation back: one
#     new block can be written, and the next fails with ENOSPC.  Then
#     FLUSH succeeds, every acknowledged byte reads back after a restart,
#     128 blocks are allocated, and `punchcache check` is clean.
#  2. The same with -D punchcache.unsafe_no_reservations=1: more than 128
#     writes are acknowledged, and then the FLUSH fails or acknowledged
#     data is missing after the restart -- the test MUST catch it.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires jq --version

pool=$tmp/pool
sock=$tmp/sock
uri=$(nbd_uri "$sock" big)
cat > "$tmp/enospc.py" <<'EOF'
# nbdsh -c 'exec(open(...).read())' with PHASE=write|verify and EXPECTED
import errno, os, pickle
B = 65536
def fill(i): return bytes([i % 251 + 1]) * (B - 8) + b"%08d" % i
def result(fn):
    try:
        fn()
        return "ok"
    except nbd.Error as e:
        assert e.errnum in (errno.ENOSPC, errno.EIO), e
        return errno.errorcode[e.errnum]
if os.environ["PHASE"] == "write":
    expected = {}
    for i in range(136):
        if result(lambda: h.pwrite(fill(i), i * B)) == "ok":
            expected[i] = fill(i)
    print("acknowledged %d of 136 distinct block writes" % len(expected))
    if len(expected) == 128:
        assert sorted(expected) == list(range(128)), sorted(expected)
        assert result(lambda: h.pwrite(b"p" * 100, 300 * B + 7)) == "ENOSPC", \
            "a small write into an unmapped block was accepted in a full pool"
        h.pwrite(b"over", 3 * B + 100)                 # dirty, reserved
        expected[3] = expected[3][:100] + b"over" + expected[3][104:]
        h.trim(B, 5 * B)                                # unflushed, dirty
        expected[5] = bytes(B)
        assert result(lambda: h.pwrite(fill(200), 200 * B)) == "ok", \
            "the trim of a dirty block did not give its reservation back"
        expected[200] = fill(200)
        assert result(lambda: h.pwrite(fill(201), 201 * B)) == "ENOSPC", \
            "a trim gave back more than one reservation"
        print("reservations: small write refused, trim gave back exactly one")
    print("FLUSH:", result(h.flush))
    pickle.dump(expected, open(os.environ["EXPECTED"], "wb"))
else:
    expected = pickle.load(open(os.environ["EXPECTED"], "rb"))
    bad = [i for i in sorted(expected) if h.pread(B, i * B) != expected[i]]
    print("after the restart: %d of %d acknowledged blocks wrong" %
          (len(bad), len(expected)))
    assert not bad, "wrong after the restart: blocks %r" % bad[:10]
EOF

pyrun () {   # pyrun PHASE: run the script against the running server
    PHASE=$1 EXPECTED=$tmp/expected URI=$uri timeout 120 nbdsh -u "$uri" \
        -c "exec(open('$tmp/enospc.py').read())"
}

# fill_pool UNSAFE: 0 if everything holds, 1 if acknowledged data did not
# survive (the FLUSH failed or data is wrong after the restart); fails the
# test if the write phase breaks an expectation of the protected run.
fill_pool () {
    local rc=0
    rm -f "$pool"
    start_punchcache "$sock" -D punchcache.unsafe_no_reservations="$1" \
        pool="$pool" size=8M block-size=64K volume=big:64M cache=64M dirty=32M
    pyrun write | tee "$tmp/write.out" || rc=$?
    stop_nbdkit
    [ $rc = 0 ] || fail "write phase failed"
    if [ "$1" = 0 ]; then
        grep -q "^acknowledged 128 of 136" "$tmp/write.out" ||
            fail "the pool did not refuse writes at exactly its 128 blocks"
    else
        grep -q "^acknowledged 128 of 136" "$tmp/write.out" &&
            fail "no reservations, but writes were still refused at 128 blocks"
    fi
    grep -q "^FLUSH: ok" "$tmp/write.out" || rc=1
    start_punchcache "$sock" pool="$pool"
    pyrun verify || rc=1
    stop_nbdkit
    [ $rc = 0 ] || return 1
    [ "$("$PUNCHCACHE" info "$pool" --json | jq -r '.volumes[] | select(.name == "big") | .allocated_blocks')" = 128 ] ||
        fail "allocated blocks after the FLUSH: not the pool's 128"
    "$PUNCHCACHE" check "$pool" || fail "pool damaged"
}

echo "== 1. reservations: ENOSPC at write time, never at write-back"
fill_pool 0 || fail "acknowledged data did not survive FLUSH and restart"

echo "== 2. no reservations (debug switch): over-acknowledged writes must be caught"
if fill_pool 1; then
    fail "writes over the pool's capacity were acknowledged and not caught"
fi
echo "write-back ENOSPC test: OK (over-acknowledged writes caught only without reservations)"
