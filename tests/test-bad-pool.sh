#!/usr/bin/env bash
# Description: damaged pool files (SPEC §3 "Bad input").  From a pool that
# holds data (closed cleanly, and another copy left by kill -9 so that its
# journal is live), each case copies the pool and damages it: truncation
# (to half, to 100 bytes, to 0), byte flips in superblock slot A or B only,
# in both slots, in a volume-table page, in a reverse-map page, in the
# journal, and junk over the journal.
#   damaged:   `punchcache check` exits 1 naming the problem; the server
#              (either front-end) refuses to start with a clear error and
#              no crash; `info` fails cleanly
#   degraded:  (one superblock slot) check exits 1 naming the slot and saying
#              the other is valid -- the store reports lost redundancy as a
#              problem -- but the pool opens and serves all its data, and
#              the next commit rewrites the slot (check clean again)
#   clean:     the store recovers everything (damage only in a journal the
#              store no longer needs, or in-place pages the live journal
#              repairs): check exits 0 and all the data reads back
# check and info run under valgrind when it is installed (exit 99 = errors).
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires python3 --version

P=$PUNCHCACHE
vg=()
VALGRIND=${VALGRIND:-$(command -v valgrind || :)}
if [ -n "$VALGRIND" ] && [ "$VALGRIND" != no ] && command -v "$VALGRIND" > /dev/null; then
    vg=("$VALGRIND" -q --error-exitcode=99)
    echo "check and info run under $VALGRIND"
else
    echo "valgrind not found: running without it"
fi

# ---- the reference pools ----
# 64M pool, 4K blocks, volumes "default" (64M) and "b" (8M); 1 MiB of 0x42
# at the start of default, 64K of 0x43 at 1M in b.
make_pool () {   # make_pool PATH clean|crash
    start_punchcache "$tmp/sock" pool="$1" size=64M block-size=4K volume=b:8M
    nbdsh -u "$(nbd_uri "$tmp/sock")" -c 'h.pwrite(b"\x42" * (1 << 20), 0); h.flush()'
    nbdsh -u "$(nbd_uri "$tmp/sock" b)" -c 'h.pwrite(b"\x43" * 65536, 1 << 20); h.flush()'
    if [ "$2" = crash ]; then
        kill -9 "$nbdkit_pid"; wait "$nbdkit_pid" 2>/dev/null || :
    else
        stop_nbdkit
    fi
}
# sbinfo FILE: "GEN_A GEN_B JOURNAL_OFFSET TAIL SEQ LIVE" from the slots with
# the magic (LIVE = 1 if a transaction with the expected seq is at the tail).
sbinfo () {
    python3 - "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb"); gens = []; best = None
for slot in (0, 1):
    f.seek(slot * 4096); p = f.read(4096)
    ok = p[:8] == b"PCPOOL\0\1"
    gen = struct.unpack_from("<Q", p, 16)[0] if ok else -1
    gens.append(gen)
    if ok and (best is None or gen > best[0]): best = (gen, p)
p = best[1]
joff, = struct.unpack_from("<Q", p, 56); tail, seq = struct.unpack_from("<QQ", p, 80)
f.seek(joff + tail * 4096); d = f.read(4096)
live = d[:8] == b"PCJDESC1" and struct.unpack_from("<Q", d, 8)[0] == seq
print(gens[0], gens[1], joff, tail, seq, int(live))
PY
}
good=$tmp/good
crashed=$tmp/crashed
make_pool "$good" clean
make_pool "$crashed" crash
"$P" check "$good" > "$tmp/out" || { cat "$tmp/out"; fail "the reference pool is not clean"; }
"$P" check "$crashed" > "$tmp/out" || { cat "$tmp/out"; fail "the crashed reference pool is not clean"; }
# Both superblock slots must be valid for the one-slot cases to mean
# anything: both carry the magic, with consecutive generations, and check
# (which reports each damaged slot) found nothing.
read -r gen_a gen_b joff _ _ live < <(sbinfo "$good")
[ "$gen_a" -ge 0 ] && [ "$gen_b" -ge 0 ] && [ $((gen_a - gen_b)) -le 1 ] &&
    [ $((gen_b - gen_a)) -le 1 ] || fail "reference pool: superblock slots $gen_a $gen_b"
[ "$live" = 0 ] || fail "cleanly closed pool still has a live journal"
read -r _ _ cjoff ctail _ clive < <(sbinfo "$crashed")
cjimage=$((cjoff + (ctail + 1) * 4096 + 100))   # first page image of the live journal
[ "$clive" = 1 ] || fail "the crashed pool has no live journal (test premise)"

flip () {   # flip FILE OFFSET...: invert one byte at each offset
    python3 - "$@" <<'PY'
import sys
f = open(sys.argv[1], "r+b")
for off in map(int, sys.argv[2:]):
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xff]))
PY
}

# The data must read back exactly (default and b); $1 = pool file.
verify_data () {
    local r=0
    start_punchcache "$tmp/vsock" pool="$1"
    nbdsh -c '
h.connect_uri("nbd+unix:///?socket='"$tmp/vsock"'")
assert h.pread(1 << 20, 0) == b"\x42" * (1 << 20), "default: data"
assert h.pread(1 << 20, 1 << 20) == bytes(1 << 20), "default: zeros"
h2 = nbd.NBD(); h2.connect_uri("nbd+unix:///b?socket='"$tmp/vsock"'")
assert h2.get_size() == 8 << 20, "b: size"
assert h2.pread(65536, 1 << 20) == b"\x43" * 65536, "b: data"
' > "$tmp/verify.out" 2>&1 || r=1
    stop_nbdkit
    [ "$r" = 0 ] || { cat "$tmp/verify.out"; return 1; }
}

# A read-write session that commits metadata: allocates 4K of default at
# 4M (outside what verify_data checks).  Overwriting allocated blocks would
# not do: that changes no metadata, so no superblock is written.
rewrite_data () {
    start_punchcache "$tmp/wsock" pool="$1"
    nbdsh -u "$(nbd_uri "$tmp/wsock")" -c 'h.pwrite(b"\x44" * 4096, 4 << 20); h.flush()' \
        > "$tmp/rewrite.out" 2>&1 ||
        { cat "$tmp/rewrite.out"; fail "$name: could not write to the pool"; }
    stop_nbdkit
}

run_check () {   # run_check FILE: sets $rc, output in $tmp/check.out
    rc=0
    "${vg[@]}" "$P" check "$1" > "$tmp/check.out" 2>&1 || rc=$?
    [ "$rc" -ne 99 ] || { cat "$tmp/check.out"; fail "$name: valgrind errors in check"; }
    [ "$rc" -lt 128 ] || fail "$name: check crashed (status $rc)"
}

expect_refused () {   # expect_refused FILE SERVER_PATTERN CHECK_PATTERN
    local r=0
    # $2 is a literal string: escape it for punchcache_refuses' grep -E.
    punchcache_refuses "$(sed 's/[][(){}.*+?|^$\\]/\\&/g' <<< "$2")" pool="$1" > /dev/null
    r=0
    "${vg[@]}" "$P" info "$1" > "$tmp/info.out" 2>&1 || r=$?
    [ "$r" -ne 99 ] || { cat "$tmp/info.out"; fail "$name: valgrind errors in info"; }
    [ "$r" -eq 1 ] || { cat "$tmp/info.out"; fail "$name: info exited $r, not 1"; }
    grep -qi -- "^punchcache: info: .*$3" "$tmp/info.out" ||
        { cat "$tmp/info.out"; fail "$name: info did not say '$3'"; }
}

# case_ NAME SOURCE EXPECT CHECK_PATTERN SERVER_PATTERN DAMAGE_FN [ARGS...]
case_ () {
    name=$1; local src=$2 expect=$3 pat=$4 npat=$5; shift 5
    local f=$tmp/$name
    cp --sparse=always "$src" "$f"
    "$1" "$f" "${@:2}"          # DAMAGE_FN FILE ARGS...
    run_check "$f"
    local first; first=$(head -n1 "$tmp/check.out")
    case "$expect" in
    clean)
        [ "$rc" -eq 0 ] || { cat "$tmp/check.out"; fail "$name: check should be clean"; }
        verify_data "$f" || fail "$name: data not recovered"
        ;;
    degraded)
        [ "$rc" -eq 1 ] || { cat "$tmp/check.out"; fail "$name: check exited $rc, not 1"; }
        grep -q -- "$pat" "$tmp/check.out" || { cat "$tmp/check.out"; fail "$name: check did not say '$pat'"; }
        verify_data "$f" || fail "$name: the pool does not serve its data from the other slot"
        rewrite_data "$f"    # the next superblock write goes to the damaged slot
        run_check "$f"
        [ "$rc" -eq 0 ] || { cat "$tmp/check.out"; fail "$name: slot not repaired by the next commit"; }
        verify_data "$f" || fail "$name: data lost after repairing the slot"
        ;;
    damaged)
        [ "$rc" -eq 1 ] || { cat "$tmp/check.out"; fail "$name: check exited $rc, not 1"; }
        grep -q -- "$pat" "$tmp/check.out" || { cat "$tmp/check.out"; fail "$name: check did not say '$pat'"; }
        grep -q "problems\? found" "$tmp/check.out" || fail "$name: no problem count"
        expect_refused "$f" "$npat" "$pat"
        ;;
    esac
    echo "$name: $expect ok ($first)"
}

trunc_half () { truncate -s $(( $(stat -c %s "$1") / 2 )) "$1"; }
trunc_100 () { truncate -s 100 "$1"; }
trunc_0 () { truncate -s 0 "$1"; }
voltable=$((8192 + 40))                 # volume table page 0, entry 0
rmap=$((8192 + 4 * 4096 + 300))         # reverse map page 0 (pblock 36)

case_ truncated-half "$good" damaged "is truncated: its superblock describes" "is truncated" trunc_half
case_ truncated-100 "$good" damaged "not a punchcache pool: it is only 100 bytes" "not a punchcache pool" trunc_100
case_ truncated-0 "$good" damaged "not a punchcache pool: it is only 0 bytes" "does not exist (or is empty)" trunc_0
case_ sb-slot-a "$good" degraded "superblock slot A is damaged (checksum mismatch); slot B is valid" "" flip 100
case_ sb-slot-b "$good" degraded "superblock slot B is damaged (checksum mismatch); slot A is valid" "" flip $((4096 + 100))
case_ sb-both "$good" damaged "has no valid superblock (slot A: checksum mismatch; slot B: checksum mismatch)" \
    "no valid superblock" flip 100 $((4096 + 100))
case_ sb-magic "$good" damaged "has no valid superblock (slot A: bad magic" "not a punchcache pool" flip 0 4096
case_ voltable "$good" damaged "metadata page 0 (volume table) is damaged: checksum mismatch" \
    "metadata page 0 (volume table)" flip $voltable
case_ rmap "$good" damaged "metadata page 4 (reverse map) is damaged: checksum mismatch" \
    "metadata page 4 (reverse map)" flip $rmap
# After a clean close nothing in the journal is needed (it restarts with a
# new sequence number), so damage there loses nothing.
case_ journal-flip "$good" clean "" "" flip $((joff + 4096 + 100))
junk_journal () { python3 -c '
import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); f.write(bytes(range(256)) * 64)' "$1" "$joff"; }
case_ journal-junk "$good" clean "" "" junk_journal
# After kill -9 the journal is live: it repairs damaged in-place pages...
case_ crash "$crashed" clean "" "" true
case_ crash-voltable "$crashed" clean "" "" flip $voltable
case_ crash-rmap "$crashed" clean "" "" flip $rmap
# ...and a damaged journal transaction ends replay there; the pages it
# carried are already in place (written right after the journal), so
# nothing is lost...
case_ crash-journal-flip "$crashed" clean "" "" flip $cjimage
# ...but with both the journal and the in-place page damaged, the volume
# table is really gone.
case_ crash-journal-voltable "$crashed" damaged "metadata page 0 (volume table) is damaged" \
    "metadata page 0 (volume table)" flip $cjimage $voltable
echo "bad pools: all rejected or recovered cleanly"
