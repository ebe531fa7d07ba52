#!/usr/bin/env bash
# Description: `punchcache stats FILE` (docs/punchcache.1.md) on the
# statistics file of a real server (nbdkit punchcache ... stats=FILE).
#  - --help and usage errors follow the tool's conventions (exit 2).
#  - While the server runs, with a client connected: info fails (the lock)
#    but stats reads the live file, and its figures are those of the I/O
#    done -- 1 MiB written, read three times, 64K trimmed, 4K blocks:
#    used 240 blocks, 256 misses then 512 hits (hit rate 66.7%), 256
#    fills, 16 pages punched, 0 punch/fill overlaps, 5 shared and 1
#    exclusive lock acquisitions, volume "default" 960 KiB allocated with
#    1 connection.
#  - After the server stopped: the final file says the same as `info`
#    does of the pool; --json prints the file exactly as the server wrote
#    it (it is already normal) and jq reads it; age and stale warning.
#  - cache=0: "disabled".
#  - Bad files exit 1 with a message naming the file and the problem, and
#    print nothing on stdout: missing, a directory, empty, truncated, not
#    JSON, JSON but not a statistics file, another version, a field
#    missing or of the wrong type, figures that do not add up, an integer
#    beyond 64 bits (json-c would read it as 2^64-1), over 512 KiB;
#    a control character in a volume name never reaches the terminal.
#
# Shown to fail by deliberate mutations, one at a time: the tool printing
# the misses counter on the "hits:" line (the live figures check fails);
# lib/stats/statsfile.c no longer checking the version (a "version": 2 file is
# accepted); lib/stats/statsfile.c accepting 2^64-1, which is what json-c makes
# of 18446744073709551616 (huge.json accepted); the age computed from the wrong end (now - time reversed:
# "in the future" instead of "1 h 0 min ago").
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires jq --version

P=$PUNCHCACHE
pool=$tmp/pool
sock=$tmp/sock
stats=$tmp/stats.json

# figure LABEL FILE: the number after "LABEL:" in a summary.
figure () { sed -n "s/^ *$1: *\([0-9][0-9]*\).*/\1/p" "$2"; }
# expect_figure LABEL VALUE FILE
expect_figure () {
    [ "$(figure "$1" "$3")" = "$2" ] ||
        { cat "$3"; fail "stats: '$1' is '$(figure "$1" "$3")', expected $2"; }
}
# has LINE-REGEX FILE
has () { grep -q -- "$1" "$2" || { cat "$2"; fail "stats: no line matching '$1'"; }; }

# ---- help and usage ----
"$P" stats --help > "$tmp/help" || fail "stats --help exited non-zero"
has "^Usage: punchcache stats FILE \[--json\]" "$tmp/help"
has "--json" "$tmp/help"
"$P" --help | grep -q "^  punchcache stats FILE \[--json\]" || fail "--help does not list stats"
expect_fail 2 "stats: expected FILE \[--json\]" "$P" stats
expect_fail 2 "expected FILE" "$P" stats a b
expect_fail 2 "does not apply" "$P" stats --block-size 4K "$stats"
grep -q "Try 'punchcache stats --help'" "$tmp/err" || fail "usage error without a hint"

# ---- a live server ----
# writeback=off: the figures below are those of the fill path (a write
# goes to the pool and the reads miss, then hit); write-back's own figures
# are checked in tests/test-writeback.sh.
start_punchcache "$sock" pool="$pool" size=64M block-size=4K volume=b:8M \
    cache=16M stats="$stats" writeback=off
# With the connection still open: wait for the periodic file to show the
# I/O (it is rewritten every 2 s), then read it while the server runs.
P=$P STATS=$stats POOL=$pool OUT=$tmp nbdsh -u "$(nbd_uri "$sock")" -c '
import json, os, subprocess, time
h.pwrite(b"\x42" * (1 << 20), 0)
assert h.pread(1 << 20, 0) == b"\x42" * (1 << 20)   # misses, fills
assert h.pread(1 << 20, 0) == b"\x42" * (1 << 20)   # hits
assert h.pread(1 << 20, 0) == b"\x42" * (1 << 20)   # hits
h.trim(65536, 0)
h.flush()
for i in range(100):
    try:
        with open(os.environ["STATS"]) as f:
            d = json.load(f)
        if d["pool"]["used"] > 0 and d["cache"]["punched"] > 0:
            break
    except (OSError, ValueError):
        pass
    time.sleep(0.1)
else:
    raise SystemExit("the statistics file did not show the I/O within 10 s")
def tool(*args):
    return subprocess.run([os.environ["P"], *args], capture_output=True, text=True)
live = tool("stats", os.environ["STATS"])
open(os.environ["OUT"] + "/live", "w").write(live.stdout + live.stderr)
assert live.returncode == 0, "stats of a live server exited %d" % live.returncode
info = tool("info", os.environ["POOL"])
# info shows the live pool too (as of the last commit).
assert info.returncode == 0 and "in use:" in info.stdout, info.stdout + info.stderr
'
live=$tmp/live
has "^statistics: *$stats$" "$live"
has "^written: .*([0-9] s ago)$" "$live"
has "^pool: *$pool (read-write)$" "$live"
has "^used: *983040 bytes (960.0 KiB, 240 blocks, " "$live"
has "^cache: *enabled (s3fifo, [0-9]* shards)$" "$live"
has "^  hit rate: *66.7%$" "$live"
expect_figure "  hits" 512 "$live"
expect_figure "  misses" 256 "$live"
expect_figure "  fills" 256 "$live"
expect_figure "  punched" 16 "$live"
expect_figure "  punch_fill_overlaps" 0 "$live"
has "^  punch_fill_overlaps: *0 (must be 0 unless the debug switch" "$live"
# Shared: the write, the first read twice (the core's fast path takes the
# lock with a try, finds a miss and gives it back; the blocking path takes
# it again), the two cached reads once each (fast path) = 5.
has "^  shared: *5 acquired, 0 waited, mean wait -$" "$live"
has "^  exclusive: *1 acquired, 0 waited, mean wait -$" "$live"
has "^volumes: *2$" "$live"
has "^  default  *64.0 MiB  *960.0 KiB  *1.5%  *1  *0  *0$" "$live"
has "^  b  *8.0 MiB  *0 B  *0.0%  *0  *0  *0$" "$live"
stop_nbdkit                                  # writes the final file

# ---- the final file ----
"$P" stats "$stats" > "$tmp/final" || fail "stats of the final file"
"$P" info "$pool" > "$tmp/info"
for label in used free capacity; do
    [ "$(grep "^$label:" "$tmp/info" | sed 's/^[a-z]*: *//; s/,.*//')" = \
      "$(grep "^$label:" "$tmp/final" | sed 's/^[a-z]*: *//; s/,.*//')" ] ||
        { cat "$tmp/info" "$tmp/final"; fail "stats and info disagree on '$label'"; }
done
has "^  default .* 0  *0  *0$" "$tmp/final"      # the client is gone
"$P" stats --json "$stats" > "$tmp/json" || fail "stats --json"
cmp -s "$tmp/json" "$stats" || { diff "$stats" "$tmp/json"; fail "--json is not the file as written"; }
[ "$(jq '.cache.hits + .cache.misses' "$tmp/json")" = 768 ] || fail "--json: hits + misses"
[ "$(jq -r '.volumes[0].name' "$tmp/json")" = default ] || fail "--json: volume name"

# Age: an hour old, and from the future.
jq '.time -= 3600' "$stats" > "$tmp/old.json"
"$P" stats "$tmp/old.json" > "$tmp/out"
has "^written: .*(1 h 0 min ago; not rewritten since: has the server stopped?)$" "$tmp/out"
jq '.time += 3600' "$stats" > "$tmp/future.json"
"$P" stats "$tmp/future.json" > "$tmp/out"
has "^written: .*(in the future: do the clocks differ?)$" "$tmp/out"

# ---- cache=0 ----
start_punchcache "$sock" pool="$pool" cache=0 stats="$tmp/nocache.json"
nbdsh -u "$(nbd_uri "$sock")" -c 'h.pread(4096, 0)'
stop_nbdkit
"$P" stats "$tmp/nocache.json" > "$tmp/out"
has "^cache: *disabled (cache=0)$" "$tmp/out"
! grep -q "hit rate" "$tmp/out" || fail "a disabled cache shows a hit rate"

# ---- bad files: exit 1, "punchcache: stats: FILE: problem", no output ----
bad () {   # bad NAME PATTERN: stats (and stats --json) of $tmp/NAME fail
    local f=$tmp/$1
    expect_fail 1 "^punchcache: stats: $f: $2" "$P" stats "$f"
    [ ! -s "$tmp/out" ] || { cat "$tmp/out"; fail "stats of a bad file printed output"; }
    expect_fail 1 "^punchcache: stats: $f: $2" "$P" stats --json "$f"
}
edit () {  # edit NAME SED-SCRIPT: $tmp/NAME is the final file, edited
    sed "$2" "$stats" > "$tmp/$1"
    ! cmp -s "$stats" "$tmp/$1" || fail "edit $1: the sed script changed nothing"
}
bad missing.json "No such file or directory"
mkdir "$tmp/dir.json"
bad dir.json "Is a directory"
: > "$tmp/empty.json"
bad empty.json "empty (no JSON value)"
head -c "$(( $(stat -c %s "$stats") / 2 ))" "$stats" > "$tmp/half.json"
bad half.json "line [0-9]*, column [0-9]*: unexpected end of data, found end of file"
head -c 8192 "$pool" > "$tmp/pool.json"
bad pool.json "line 1, column 1: unexpected character, found 'P'"
edit comma.json '3s/,$//'
bad comma.json "line 4, column 3: object value separator ',' expected, found '\"'"
echo '{"hits": 1}' > "$tmp/other.json"
bad other.json 'not a punchcache statistics file (no "version": 1)'
echo '[1, 2]' > "$tmp/array.json"
bad array.json 'not a punchcache statistics file (no "version": 1)'
edit v2.json 's/"version": 1,/"version": 2,/'
bad v2.json "statistics format version is not 1"
edit nohits.json '/"hits":/d'
bad nohits.json 'cache: no member "hits"'
edit neg.json 's/"misses": 256/"misses": -256/'
bad neg.json "cache.misses: expected a non-negative integer, found -256"
edit str.json 's/"hits": 512/"hits": "256"/'
bad str.json "cache.hits: expected a non-negative integer, found a string"
edit huge.json 's/"hits": 512/"hits": 18446744073709551616/'
bad huge.json "cache.hits: integer out of range (at most 18446744073709551614)"
edit used.json 's/"used": 983040/"used": 983041/'
bad used.json "pool: the space figures do not add up"
edit count.json 's/"volumes": 2,/"volumes": 1,/'
bad count.json "pool.volumes is 1, but the volumes list has 2"
edit esc.json 's/"name": "b"/"name": "\\u001b[2J"/'
bad esc.json 'volumes\[1\].name: "?\[2J" is not a valid volume name'
! grep -q $'\x1b' "$tmp/err" || fail "a control character reached the terminal"
{ printf '{"version": 1, "pad": "'; head -c $((1 << 20)) /dev/zero | tr '\0' x; printf '"}'; } > "$tmp/big.json"
bad big.json "larger than 524288 bytes"
echo "stats ok"
