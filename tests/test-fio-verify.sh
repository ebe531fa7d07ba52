#!/usr/bin/env bash
# Description: fio with the nbd engine: random 4K writes with crc32c
# verification, then a verifying read pass over a second connection.
source "$top_srcdir/tests/functions.sh"
requires fio --version
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio has no nbd engine"

start_punchcache "$tmp/sock" pool="$tmp/pool" size=128M block-size=4K
cd "$tmp"                # fio writes its verify state in the cwd
uri=$(nbd_uri "$tmp/sock")
timeout 300 fio --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite \
    --bs=4k --size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --output="$tmp/fio1.out" || { cat "$tmp/fio1.out"; fail "fio write+verify"; }
timeout 300 fio --name=verify --ioengine=nbd --uri="$uri" --rw=randread \
    --bs=4k --size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 \
    --verify_only --output="$tmp/fio2.out" || { cat "$tmp/fio2.out"; fail "fio verify pass"; }
grep -E "err= *0" "$tmp/fio1.out" >/dev/null || fail "fio reported errors"
grep -h "IOPS" "$tmp/fio1.out" "$tmp/fio2.out"
