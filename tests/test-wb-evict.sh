#!/usr/bin/env bash
# Description: SPEC §4 I12 -- the cache writes a dirty page back before it
# drops it.  128 MiB of 4K random writes (fio, nbd engine, queue depth 16,
# crc32c verify) go through cache=8M, so nearly every page written is
# evicted before the end and before any FLUSH:
#  1. fio's verify pass (after the write phase, no FLUSH in between) finds
#     every byte right; the stats file shows the cache evicted pages;
#     after a graceful restart a verify-only pass finds every byte right
#     again, and `punchcache check` is clean.
#  2. With -D punchcache.unsafe_evict_dirty=1 (the cache may evict dirty
#     pages unwritten) the verification MUST fail, in the first pass or
#     after the restart.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires fio --version
requires jq --version
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio has no nbd engine"

cd "$tmp" || exit 1       # fio writes its verify state in the cwd
pool=$tmp/pool
sock=$tmp/sock
stats=$tmp/stats.json
uri=$(nbd_uri "$sock")

fio_job () {   # fio_job NAME ARGS...: 0 if fio and its verification passed
    local name=$1 rc=0; shift
    timeout 300 fio --name=evict --ioengine=nbd --uri="$uri" --bs=4k \
        --iodepth=16 --rw=randwrite --size=128M --verify=crc32c \
        --verify_fatal=1 --output="$tmp/$name.out" "$@" || rc=$?
    grep -h "IOPS" "$tmp/$name.out" | sed "s/^/$name: /"
    if [ $rc != 0 ] || ! grep -q "err= *0" "$tmp/$name.out"; then
        grep -i "verify\|crc\|bad\|err" "$tmp/$name.out" | head -n 5
        return 1
    fi
}

run () {   # run UNSAFE: 0 if every byte was right, twice
    local rc=0
    rm -f "$pool" "$stats"
    start_punchcache "$sock" -D punchcache.unsafe_evict_dirty="$1" \
        pool="$pool" size=256M block-size=64K cache=8M stats="$stats"
    fio_job write --do_verify=1 || rc=1
    stop_nbdkit
    jq -c '.cache | {budget, evictions}' "$stats"
    (( $(jq -e -r '.cache.evictions' "$stats") > 16384 )) ||
        fail "the cache evicted too little for this test to mean anything"
    start_punchcache "$sock" pool="$pool" cache=8M
    fio_job verify --verify_only || rc=1
    stop_nbdkit
    "$PUNCHCACHE" check "$pool" || fail "pool damaged"
    return $rc
}

echo "== 1. 128 MiB of 4K random writes through cache=8M: every byte right"
run 0 || fail "data lost or damaged through a small write-back cache"

echo "== 2. dirty pages evicted unwritten (debug switch): verification must fail"
# The switch makes eviction drop the oldest dirty page before any clean
# one (lib/cache/cache.c evict_dirty_debug): the nbdkit cache filter's bug.
if run 1; then
    fail "-D punchcache.unsafe_evict_dirty=1 lost no data: this test cannot" \
         "see a dirty page dropped"
fi
echo "write-back eviction test: OK (lost pages caught only when dirty pages may be evicted)"
