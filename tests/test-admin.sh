#!/usr/bin/env bash
# Description: the admin tool: create (sparse), info (human and --json),
# volume list/add/resize/rm, check, and its error messages: existing file,
# bad sizes and block sizes, bad or duplicate names, missing volume, and a
# pool held by a running server.
source "$top_srcdir/tests/functions.sh"
requires nbdsh --version

P=$PUNCHCACHE
pool=$tmp/pool
json () { "$P" info --json "$pool" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
expect_fail () {   # expect_fail PATTERN CMD...: must fail, stderr must match
    local pat=$1; shift
    if "$@" > "$tmp/out" 2>&1; then cat "$tmp/out"; fail "succeeded: $*"; fi
    grep -qi -- "$pat" "$tmp/out" || { cat "$tmp/out"; fail "'$*' did not say '$pat'"; }
}

"$P" --help | grep -q "volume add POOL NAME SIZE" || fail "--help"
"$P" --version | grep -q "punchcache" || fail "--version"
"$P" create "$pool" 1G --block-size 64K
[ "$(du -k "$pool" | cut -f1)" -lt 2048 ] || fail "a new pool is not sparse"
"$P" volume add "$pool" vm1 10G
"$P" volume add "$pool" vm2 2T                      # overcommit is fine
"$P" volumes "$pool" | grep -q vm2 || fail "volumes"
"$P" volume list "$pool" | grep -q vm1 || fail "volume list"
[ "$(json 'd["capacity"]')" = $((1 << 30)) ] || fail "capacity"
[ "$(json 'd["block_size"]')" = 65536 ] || fail "block_size"
[ "$(json 'len(d["volumes"])')" = 2 ] || fail "volume count"
"$P" info "$pool" | grep -q "^capacity: *1073741824 bytes" || fail "human info"
"$P" volume resize "$pool" vm1 20G
[ "$(json '[v["size"] for v in d["volumes"] if v["name"]=="vm1"][0]')" = $((20 << 30)) ] || fail "resize"
"$P" volume rm "$pool" vm2
[ "$(json 'len(d["volumes"])')" = 1 ] || fail "rm"
"$P" check "$pool" | grep -q clean || fail "check"

expect_fail "not empty" "$P" create "$pool" 1G
expect_fail "parse size" "$P" create "$tmp/x" lots
expect_fail "power of two" "$P" create "$tmp/y" 1G --block-size 3K
expect_fail "power of two" "$P" create "$tmp/z" 1G --block-size 2M
expect_fail "invalid volume name" "$P" volume add "$pool" "a/b" 1G
expect_fail "already exists" "$P" volume add "$pool" vm1 1G
expect_fail "multiple of 512" "$P" volume add "$pool" odd 1000
expect_fail "no volume named" "$P" volume rm "$pool" nosuch
expect_fail "unknown command" "$P" frobnicate
expect_fail "usage" "$P" volume add "$pool"

# Allocation shows in info; a running server holds the pool's lock.
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$(nbd_uri "$tmp/sock" vm1)" -c 'h.pwrite(b"x" * (4 << 20), 0); h.flush()'
expect_fail "in use" "$P" volume add "$pool" late 1G
expect_fail "in use" "$P" info "$pool"
stop_nbdkit
[ "$(json '[v["allocated"] for v in d["volumes"] if v["name"]=="vm1"][0]')" = $((4 << 20)) ] ||
    fail "allocated bytes after writing 4 MiB"
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$(nbd_uri "$tmp/sock" vm1)" -c 'h.trim(4 << 20, 0); h.flush()'
stop_nbdkit
[ "$(json 'd["used"]')" = 0 ] || fail "used after trim"
# A second nbdkit on the same pool is refused clearly.
start_punchcache "$tmp/sock" pool="$pool"
if "$NBDKIT" -U "$tmp/sock2" "$PLUGIN" pool="$pool" --run true > "$tmp/out" 2>&1; then
    fail "a second server opened the same pool"
fi
grep -q "in use" "$tmp/out" || { cat "$tmp/out"; fail "second server: unclear error"; }
echo "admin tool ok"
