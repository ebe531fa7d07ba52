#!/usr/bin/env bash
# Description: the admin tool (SPEC §5, docs/punchcache.1.md): --help tells
# the truth (every command it lists answers COMMAND --help), usage errors
# exit 2 with a hint; create makes a sparse file; info (human and --json,
# strings escaped, bytes that are not UTF-8 as U+FFFD: valid JSON);
# volume add/list/resize/rm; check of a clean pool; the
# error messages for an existing file, bad sizes and block sizes, bad or
# duplicate names and a missing volume; a pool held by a running nbdkit is
# refused by name, info and volume list then hinting at `punchcache stats`
# (tests/test-stats.sh tests that command); allocated bytes follow writes,
# trims and shrinks.  The hint checks are shown to fail when the tool
# gives the hint for read-write opens instead of read-only ones; the UTF-8
# check when pc_json_new_string (lib/stats/json.c) hands invalid bytes to json-c
# unchanged.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

P=$PUNCHCACHE
[ -x "$P" ] || fail "$P is not built"
pool=$tmp/pool

# ---- help, version, usage errors ----
"$P" --help > "$tmp/help" || fail "--help exited non-zero"
"$P" -h | cmp -s - "$tmp/help" || fail "-h differs from --help"
"$P" --version | grep -q "^punchcache [0-9]" || fail "--version"
# Every command --help lists must exist and answer its own --help, with a
# synopsis equal to the one in the overview.
ncmds=0
while read -r synopsis; do
    words=$(echo "$synopsis" | sed 's/^punchcache //; s/ [A-Z[].*//')
    # shellcheck disable=SC2086
    "$P" $words --help > "$tmp/chelp" || fail "'$words --help' failed"
    grep -qF "Usage: $synopsis" "$tmp/chelp" || fail "'$words --help' synopsis differs from --help"
    ncmds=$((ncmds + 1))
done < <(grep '^  punchcache ' "$tmp/help" | sed 's/^  //')
[ "$ncmds" -eq 10 ] || fail "--help lists $ncmds commands, expected 10"
"$P" create --help | grep -q -- "--block-size" || fail "create --help: --block-size"
"$P" info --help | grep -q -- "--json" || fail "info --help: --json"
expect_fail 2 "missing command" "$P"
expect_fail 2 "unknown command 'frobnicate'" "$P" frobnicate
expect_fail 2 "unknown option '--frob'" "$P" --frob
expect_fail 2 "expected POOL NAME SIZE" "$P" volume add "$pool"
expect_fail 2 "unknown subcommand 'grow'" "$P" volume grow "$pool" x 1G
expect_fail 2 "does not apply" "$P" create "$pool" 1G --json
expect_fail 2 "needs a value" "$P" create "$pool" 1G --block-size
grep -q "Try 'punchcache create --help'" "$tmp/err" || fail "usage error without a hint"
[ ! -e "$pool" ] || fail "a usage error created the pool"

# ---- create ----
"$P" create "$pool" 1G --block-size 64K > "$tmp/out"
grep -q "created pool" "$tmp/out" || fail "create said nothing"
[ "$(stat -c %s "$pool")" -gt $((1 << 30)) ] || fail "pool file smaller than its capacity"
[ "$(du -k "$pool" | cut -f1)" -lt 1024 ] || fail "a new pool is not sparse ($(du -k "$pool"))"
"$P" create --block-size=4K "$tmp/small" 100M > /dev/null   # options before arguments

expect_fail 1 "exists and is not empty" "$P" create "$pool" 1G
echo data > "$tmp/notempty"
expect_fail 1 "exists and is not empty" "$P" create "$tmp/notempty" 1G
[ "$(cat "$tmp/notempty")" = data ] || fail "create damaged an existing file"
expect_fail 1 "could not parse size 'lots'" "$P" create "$tmp/x" lots
expect_fail 1 "unknown suffix" "$P" create "$tmp/x" 10Q
expect_fail 1 "too large" "$P" create "$tmp/x" 99999999E
expect_fail 1 "capacity 0 is out of range" "$P" create "$tmp/x0" 0
expect_fail 1 "not a power of two between 4K and 1M" "$P" create "$tmp/y" 1G --block-size 3K
expect_fail 1 "not a power of two between 4K and 1M" "$P" create "$tmp/z" 1G --block-size 2M
expect_fail 1 "not a power of two between 4K and 1M" "$P" create "$tmp/z" 1G --block-size 2K
expect_fail 1 "not a power of two between 4K and 1M" "$P" create "$tmp/z" 1G --block-size 0
expect_fail 1 "could not parse size" "$P" create "$tmp/z" 1G --block-size big

# ---- volumes ----
"$P" volume add "$pool" vm1 10G
"$P" volume add "$pool" vm2 2T                        # overcommit is fine
"$P" volume add "$pool" scratch 1M
"$P" volumes "$pool" > "$tmp/list"
"$P" volume list "$pool" | cmp -s - "$tmp/list" || fail "volumes and volume list differ"
grep -Eq "^ +vm2 +2199023255552 +0 " "$tmp/list" || { cat "$tmp/list"; fail "volume list: vm2"; }
[ "$(grep -c '^ ' "$tmp/list")" -eq 4 ] || { cat "$tmp/list"; fail "volume list: header + 3 volumes"; }
"$P" volume resize "$pool" vm1 20G
"$P" volume rm "$pool" scratch
"$P" volume list "$pool" > "$tmp/list"
grep -Eq "^ +vm1 +21474836480 " "$tmp/list" || { cat "$tmp/list"; fail "resize not shown"; }
! grep -q scratch "$tmp/list" || fail "rm: the volume is still listed"

expect_fail 1 "invalid volume name 'a/b'" "$P" volume add "$pool" "a/b" 1G
expect_fail 1 "invalid volume name" "$P" volume add "$pool" -- -x 1G
expect_fail 1 "invalid volume name" "$P" volume add "$pool" .x 1G
expect_fail 1 "invalid volume name" "$P" volume add "$pool" "$(printf 'n%.0s' {1..48})" 1G
expect_fail 1 "already exists" "$P" volume add "$pool" vm1 1G
expect_fail 1 "multiple of 512" "$P" volume add "$pool" odd 1000
expect_fail 1 "could not parse size" "$P" volume add "$pool" odd 12X
expect_fail 1 "no volume named 'nosuch'" "$P" volume rm "$pool" nosuch
expect_fail 1 "no volume named 'nosuch'" "$P" volume resize "$pool" nosuch 1G
expect_fail 1 "No such file" "$P" volume add "$tmp/missing" v 1G
[ ! -e "$tmp/missing" ] || fail "volume add created a pool file"

# ---- info ----
"$P" info "$pool" > "$tmp/info"
for re in "^capacity: *1073741824 bytes (1.0 GiB, 16384 blocks)" \
          "^block size: *65536 bytes" "^used: *0 bytes .*0.0% used" \
          "^free: *1073741824 bytes" "^volumes: *2" "^uuid: *[0-9a-f-]\{36\}$" \
          "^metadata RAM: *[1-9]" "^metadata: *[1-9][0-9]* pages, journal [1-9]"; do
    grep -q "$re" "$tmp/info" || { cat "$tmp/info"; fail "info: no line matching '$re'"; }
done

if python3 -c 'import json' 2>/dev/null; then
    jq_ () {   # jq_ POOL PYTHON-EXPR [ARGS...]: evaluate over d = info --json
        local f=$1 e=$2; shift 2
        "$P" info --json "$f" | python3 -c "import json,sys; d=json.load(sys.stdin); print($e)" "$@"
    }
    [ "$(jq_ "$pool" 'd["capacity"]')" = $((1 << 30)) ] || fail "json capacity"
    [ "$(jq_ "$pool" 'd["block_size"]')" = 65536 ] || fail "json block_size"
    [ "$(jq_ "$pool" 'd["used"], d["free"]')" = "0 $((1 << 30))" ] || fail "json used/free"
    [ "$(jq_ "$pool" '[(v["name"], v["size"]) for v in d["volumes"]]')" = \
      "[('vm1', $((20 << 30))), ('vm2', $((2 << 40)))]" ] || fail "json volumes"
    # Strings are escaped: a pool path with a quote, a backslash, a tab and
    # UTF-8 comes back intact; an empty pool has "volumes": [].
    odd=$tmp/$'we"ird\\ \tpool é'
    "$P" create "$odd" 64M > /dev/null
    [ "$(jq_ "$odd" 'd["pool"] == sys.argv[1] and d["volumes"] == []' "$odd")" = True ] ||
        fail "json: path not escaped properly"
    # A byte that is not UTF-8 and a control character still give valid
    # JSON (json-c alone would copy the byte): U+FFFD, and \u0001.
    notutf8=$tmp/$'bad\xff\x01name'
    "$P" create "$notutf8" 64M > /dev/null
    "$P" info --json "$notutf8" | python3 -c '
import json, sys
d = json.loads(sys.stdin.buffer.read().decode("utf-8"))   # strict UTF-8
assert d["pool"].endswith("/bad\ufffd\x01name"), d["pool"]' ||
        fail "json: a path that is not UTF-8 did not give valid JSON"
else
    echo "SKIP part: python3 json module missing, --json not checked"
fi

# ---- check ----
"$P" check "$pool" > "$tmp/out" || { cat "$tmp/out"; fail "check of a clean pool"; }
grep -q "clean" "$tmp/out" || fail "check did not say clean"
expect_fail 2 "cannot check.*No such file" "$P" check "$tmp/missing"
rc=0; "$P" check "$tmp/notempty" > "$tmp/out" 2>&1 || rc=$?   # damage, not usage
[ "$rc" -eq 1 ] && grep -q "not a punchcache pool" "$tmp/out" &&
    grep -q "1 problem found" "$tmp/out" || { cat "$tmp/out"; fail "check of a non-pool ($rc)"; }
expect_fail 1 "not a punchcache pool" "$P" info "$tmp/notempty"

# ---- the lock: info, list and check only read (shared lock) ----
if command -v flock > /dev/null; then
    exec 9< "$pool"
    flock -s -n 9 || fail "could not take a shared lock on the pool"
    "$P" info "$pool" > /dev/null || fail "info needs more than a shared lock"
    "$P" volumes "$pool" > /dev/null || fail "volume list needs more than a shared lock"
    "$P" check "$pool" > /dev/null || fail "check needs more than a shared lock"
    expect_fail 1 "in use by another process" "$P" volume add "$pool" late 1G
    exec 9<&-                            # closing the only descriptor unlocks
fi

# ---- with a server: the lock, allocation ----
if ! nbdsh --version > /dev/null 2>&1; then
    echo "SKIP part: nbdsh missing, server interaction not checked"
    echo "admin tool ok (partly)"; exit 0
fi
alloc () {   # alloc VOLUME: allocated bytes from `volume list`
    "$P" volume list "$pool" | awk -v n="$1" '$1 == n { print $3 }'
}
start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$(nbd_uri "$tmp/sock" vm1)" -c 'h.pwrite(b"x" * (4 << 20), 0); h.flush()'
expect_fail 1 "in use by another process" "$P" volume add "$pool" late 1G
expect_fail 1 "in use by another process" "$P" volume rm "$pool" vm2
# info and volume list show a live pool as of the server's last commit
# (flushed above), without taking the lock.
"$P" info --json "$pool" > "$tmp/live.json" 2> "$tmp/err" ||
    { cat "$tmp/err"; fail "info of a pool in use refused"; }
jq -e '.live == true and .used == 4194304' "$tmp/live.json" > /dev/null ||
    { cat "$tmp/live.json"; fail "info of a live pool: not live, or used != 4 MiB"; }
"$P" info "$pool" | grep -q "^in use: *by a running server" ||
    fail "info of a live pool does not say it is in use"
[ "$(alloc vm1)" = $((4 << 20)) ] || fail "volume list of a live pool: $(alloc vm1)"
# The view follows commits: 4 MiB more, flushed, shows at once.
nbdsh -u "$(nbd_uri "$tmp/sock" vm1)" -c 'h.pwrite(b"y" * (4 << 20), 4 << 20); h.flush()'
[ "$("$P" info --json "$pool" | jq .used)" = $((8 << 20)) ] ||
    fail "info of a live pool did not follow a flushed write"
expect_fail 1 "in use by another process" "$P" volume resize "$pool" vm2 1T
expect_fail 2 "in use by another process" "$P" check "$pool"
# A second server on the same pool is refused clearly.
punchcache_refuses "in use" pool="$pool"
stop_nbdkit

[ "$(alloc vm1)" = $((8 << 20)) ] || fail "allocated after writing 8 MiB: $(alloc vm1)"
"$P" info "$pool" | grep -q "^used: *8388608 bytes (8.0 MiB, 128 blocks, 0.8% used)" ||
    { "$P" info "$pool"; fail "info: used after writing 8 MiB"; }
"$P" check "$pool" > /dev/null || fail "check after writes"

start_punchcache "$tmp/sock" pool="$pool"
nbdsh -u "$(nbd_uri "$tmp/sock" vm1)" -c 'h.trim(1 << 20, 0); h.flush()'
stop_nbdkit
[ "$(alloc vm1)" = $((7 << 20)) ] || fail "allocated after trimming 1 of 8 MiB: $(alloc vm1)"

"$P" volume resize "$pool" vm1 2M                    # shrinking frees the tail
[ "$(alloc vm1)" = $((1 << 20)) ] || fail "allocated after shrinking to 2 MiB: $(alloc vm1)"
"$P" volume rm "$pool" vm1
if python3 -c 'import json' 2>/dev/null; then
    [ "$(jq_ "$pool" 'd["used"], d["used_blocks"]')" = "0 0" ] || fail "used after rm"
fi
"$P" check "$pool" > /dev/null || fail "check after trim, shrink and rm"
echo "admin tool ok"
