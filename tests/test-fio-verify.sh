#!/usr/bin/env bash
# Description: fio with the nbd engine, on pools with 4K and 64K blocks:
# random 4K writes at queue depth 16 with crc32c verification (verify runs
# after the write phase), then a verify-only pass over a new connection;
# trimwrite (trim then rewrite each block) with verification; and an fio
# trim of a range, after which that range reads zeros and is a hole while
# the rest is unchanged.  (serialize_overlap=1 because without it fio may
# have a trim and a write of the same block in flight at once, whose order
# NBD leaves to the server.)
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires fio --version
requires nbdsh --version
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio has no nbd engine"

cd "$tmp" || exit 1       # fio writes its verify state in the cwd
run_fio () {             # run_fio NAME ARGS...: bounded, fails on any error
    local name=$1; shift
    timeout 120 fio --name="$name" --ioengine=nbd --uri="$uri" --bs=4k \
        --iodepth=16 --verify_fatal=1 --output="$tmp/$name.out" "$@" ||
        { cat "$tmp/$name.out"; fail "fio $name"; }
    grep -q "err= *0" "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "fio $name reported errors"; }
    grep -h "IOPS" "$tmp/$name.out" | sed "s/^/$name: /"
}

for bs in 4K 64K; do
    rm -f "$tmp/pool"
    start_punchcache "$tmp/sock" pool="$tmp/pool" size=128M block-size=$bs
    uri=$(nbd_uri "$tmp/sock")
    run_fio randwrite --rw=randwrite --size=32M --verify=crc32c --do_verify=1
    run_fio verifyonly --rw=randwrite --size=32M --verify=crc32c --verify_only
    run_fio trimwrite --rw=trimwrite --offset=32M --size=16M --verify=crc32c \
        --serialize_overlap=1
    # Trim 8..16 MiB with fio; the rest of the first 32 MiB must not change.
    nbdsh -u "$uri" -c '
import hashlib
open("before", "w").write(hashlib.sha256(h.pread(8 << 20, 0) + h.pread(16 << 20, 16 << 20)).hexdigest())'
    run_fio trim --rw=trim --bs=64k --offset=8M --size=8M
    nbdsh --base-allocation -u "$uri" -c '
import hashlib
got = hashlib.sha256(h.pread(8 << 20, 0) + h.pread(16 << 20, 16 << 20)).hexdigest()
assert got == open("before").read(), "fio trim changed data outside its range"
assert h.pread(8 << 20, 8 << 20) == bytes(8 << 20), "trimmed range is not zero"
ext = []
h.block_status(8 << 20, 8 << 20, lambda m, o, e, err: ext.extend(e))
assert ext == [8 << 20, 3], ext'
    stop_nbdkit
    "$PUNCHCACHE" check "$tmp/pool"
done
