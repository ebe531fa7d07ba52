#!/usr/bin/env bash
# Description: damaged pool files (SPEC §3 "Bad input"): truncated files,
# flipped bytes in one or both superblock slots, in a volume-table page and
# in a reverse-map page, and junk in the journal.  Each case gives a clear
# error naming the problem (or is recovered, where the format allows it),
# and nothing crashes: `punchcache check` runs under valgrind when present.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version

P=$PUNCHCACHE
good=$tmp/good
start_punchcache "$tmp/sock" pool="$good" size=64M block-size=4K volume=b:8M
nbdsh -u "$(nbd_uri "$tmp/sock")" -c 'h.pwrite(b"\x42" * (1 << 20), 0); h.flush()'
stop_nbdkit
"$P" check "$good" > /dev/null || fail "the reference pool is not clean"

vg=()
if [ "${VALGRIND:-no}" != no ] && command -v "$VALGRIND" >/dev/null; then
    vg=("$VALGRIND" -q --error-exitcode=99)
fi

flip () {   # flip FILE OFFSET: invert one byte
    python3 - "$1" "$2" <<'PY'
import sys
f = open(sys.argv[1], "r+b"); off = int(sys.argv[2])
f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xff]))
PY
}

# case NAME EXPECT PATTERN SETUP...
#   clean     check exits 0 (the damage is fully recoverable)
#   degraded  check reports PATTERN, but the pool still opens and serves
#   damaged   check reports PATTERN, nbdkit refuses with PATTERN, info fails
case_ () {
    local name=$1 expect=$2 pat=$3; shift 3
    local f=$tmp/$name rc=0
    cp --sparse=always "$good" "$f"
    "$@" "$f"
    "${vg[@]}" "$P" check "$f" > "$tmp/check.out" 2>&1 || rc=$?
    [ "$rc" -ne 99 ] || { cat "$tmp/check.out"; fail "$name: valgrind errors"; }
    [ "$rc" -lt 128 ] || fail "$name: check crashed (status $rc)"
    if [ "$expect" = clean ]; then
        [ "$rc" -eq 0 ] || { cat "$tmp/check.out"; fail "$name: check should be clean"; }
    else
        [ "$rc" -ne 0 ] || { cat "$tmp/check.out"; fail "$name: damage not found"; }
        grep -qi -- "$pat" "$tmp/check.out" || { cat "$tmp/check.out"; fail "$name: check did not say '$pat'"; }
    fi
    if [ "$expect" = damaged ]; then
        rc=0
        "$NBDKIT" -U "$tmp/s-$name" "$PLUGIN" pool="$f" --run true > "$tmp/nbdkit.out" 2>&1 || rc=$?
        [ "$rc" -ne 0 ] || fail "$name: nbdkit served a damaged pool"
        [ "$rc" -lt 128 ] || fail "$name: nbdkit crashed (status $rc)"
        grep -qi -- "$pat" "$tmp/nbdkit.out" || { cat "$tmp/nbdkit.out"; fail "$name: nbdkit did not say '$pat'"; }
        "$P" info "$f" > /dev/null 2>&1 && fail "$name: info accepted a damaged pool"
    fi
    echo "$name: ok ($(head -n1 "$tmp/check.out"))"
}

trunc_half () { truncate -s $(( $(stat -c %s "$1") / 2 )) "$1"; }
trunc_100 () { truncate -s 100 "$1"; }
trunc_0 () { truncate -s 0 "$1"; }
flip_sb_a () { flip "$1" 100; }
flip_sb_both () { flip "$1" 100; flip "$1" $((4096 + 100)); }
flip_sb_magic () { flip "$1" 0; flip "$1" 4096; }
flip_voltable () { flip "$1" $((8192 + 40)); }
flip_rmap () { flip "$1" $((8192 + 4 * 4096 + 300)); }
junk_journal () {   # the journal starts after the metadata area
    python3 - "$1" <<'PY'
import sys, struct
f = open(sys.argv[1], "r+b"); f.seek(56); joff = struct.unpack("<Q", f.read(8))[0]
f.seek(joff); f.write(bytes(range(256)) * 64)
PY
}

case_ truncated-half damaged "truncated" trunc_half
case_ truncated-100 damaged "not a punchcache pool" trunc_100
case_ truncated-0 damaged "not a punchcache pool\|is empty" trunc_0
case_ sb-slot-a degraded "slot A is damaged" flip_sb_a   # slot B still valid
"$NBDKIT" -U "$tmp/s" "$PLUGIN" pool="$tmp/sb-slot-a" --run \
    "nbdsh -u 'nbd+unix:///?socket=$tmp/s' -c 'assert h.pread(4096, 0) == b\"\\x42\" * 4096'" ||
    fail "pool with one damaged superblock slot does not serve its data"
case_ sb-both damaged "no valid superblock" flip_sb_both
case_ sb-magic damaged "not a punchcache pool" flip_sb_magic
case_ voltable damaged "volume table" flip_voltable
case_ rmap damaged "reverse map" flip_rmap
case_ journal-junk clean "" junk_journal   # not a valid transaction: ignored
echo "bad pools: all rejected or recovered cleanly"
