#!/usr/bin/env bash
# Description: origins (issue 15), overlay and writethrough, against a real
# nbdkit origin: round trip, persistence, the three block states, block
# status (I7), one origin request per cold block, info and detach.
#
# The origin is `nbdkit file` over an 8 MiB file of random data (blocks
# 10-13 all zeros, block 20 half zeros) behind the stats filter, so the
# file can be checksummed and the origin's read requests counted.
#
#  1. A fresh pool with origin=: volume "default" gets the origin's size;
#     reads of cold blocks equal the origin; full and partial writes, an
#     aligned and a partial trim, WRITE_ZEROES with and without NO_HOLE
#     land in the pool (a partial one over a from-origin block keeps the
#     origin's other bytes); block status and `nbdinfo --map` never say
#     zero for non-zero data and say hole,zero for punched blocks; the
#     origin file is unchanged (sha256).  `punchcache info` shows the URI,
#     the mode and the local share; `punchcache volume detach` is refused
#     and counts the blocks still remote.
#  2. Restart WITHOUT origin= (the pool remembers it): the same content,
#     punched blocks still zeros; a full nbdcopy equals the expected image
#     twice; the run fetched each remote block at most once (our stats:
#     bytes_fetched <= remote blocks at start).
#  3. Restart again: a full read makes no origin read at all (stats
#     origin_reads 0), info says 100% local, detach is accepted, and with
#     the origin stopped the pool serves the same bytes.  The origin's
#     stats filter saw exactly as many reads as our stats counted.
#  4. Eight clients read the same cold block of a slow origin (delay
#     filter, 500 ms): ONE origin read (origin stats filter, our "fills").
#  5. writethrough: writes, a trim and a zero reach the origin file (cmp
#     after flush); a read-only origin (nbdkit -r) with
#     origin-mode=writethrough is refused, naming the URI.
#  `punchcache check` is clean after every phase.
#
# Teeth (each checked while writing it, then reverted):
#  - -D punchcache.unsafe_origin_fill=1 added to the phase 4 server (fills
#    take no allocation lock and do not look again): 8 origin reads and 8
#    fills for 8 readers -> FAIL (both front-ends; the plugin needed the
#    switch exported, see the commit before this test's).
#  - lib/core/volume.c punch_piece not marking whole punched blocks in the
#    omap (`if (0 && v->omap ...`): "wrong data at block 50" -> FAIL.
#  - origin_extent() reporting every origin extent as zero: "block status
#    says zero for non-zero data at 262144+2359296" -> FAIL.
# Measured while writing it: ~5 s per front-end; phase 2 made 31 origin
# reads for 116 remote blocks (4 all-zero blocks became punched), the
# origin's stats filter counted exactly ours (4 + 31); 8 readers of one
# cold block took 0.50 s with one origin read.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdcopy --version
requires nbdinfo --version
requires jq --version
requires cmp --version

B=65536
NB=128                                   # origin: 8 MiB = 128 blocks
origin_vars
exp=$tmp/expect.img

python3 - "$img" <<'PY'
import os, sys
B = 65536
d = bytearray(os.urandom(128 * B))
d[10*B:14*B] = bytes(4*B)                # an all-zero run in the origin
d[20*B:20*B + B//2] = bytes(B//2)        # half a block of zeros
open(sys.argv[1], "wb").write(d)
PY
cp "$img" "$exp"
sum0=$(sha256sum < "$img")

start_origin --filter=stats file "$img" statsfile="$tmp/origin.stats"

# map_check URI EXPECTED [PUNCHED-BLOCKS...]: the export reads EXPECTED
# (unless NOREAD=1: a read would fill every block); block status (libnbd) and nbdinfo --map cover it exactly, never say zero
# where EXPECTED has a non-zero byte (I7), and say hole,zero (3) for every
# listed punched block.
map_check () {
    local u=$1 e=$2; shift 2
    nbdinfo --map --json "$u" > "$tmp/map.json" || fail "nbdinfo --map $u"
    NOREAD=${NOREAD:-0} PUNCHED="$*" EXP=$e MAP=$tmp/map.json nbdsh --base-allocation -u "$u" -c '
import json, os
B = 65536
exp = open(os.environ["EXP"], "rb").read()
punched = set(map(int, os.environ["PUNCHED"].split()))
size = h.get_size()
assert size == len(exp), (size, len(exp))
if os.environ["NOREAD"] != "1":
    data = b"".join(h.pread(min(1 << 21, size - o), o) for o in range(0, size, 1 << 21))
    bad = [i for i in range(size // B) if data[i*B:(i+1)*B] != exp[i*B:(i+1)*B]]
    assert not bad, "blocks that differ from the expected image: %r" % bad
def check(ents, who):
    pos = 0
    for off, length, flags in ents:
        assert off == pos, (who, off, pos)
        if flags & 2:
            assert exp[off:off+length] == bytes(length), \
                "%s says zero for non-zero data at %d+%d" % (who, off, length)
        for b in range(off // B, (off + length + B - 1) // B):
            if b in punched:
                assert flags == 3, "%s: punched block %d has flags %d" % (who, b, flags)
        pos += length
    assert pos == size, (who, pos, size)
ents = []
pos = 0
while pos < size:
    got = []
    h.block_status(size - pos, pos, lambda m, o, e, err: got.extend(zip(e[0::2], e[1::2])))
    for length, flags in got:
        ents.append((pos, length, flags)); pos += length
check(ents, "block status")
m = json.load(open(os.environ["MAP"]))
check([(e["offset"], e["length"], e["type"]) for e in m], "nbdinfo --map")
assert all(e["description"] == "hole,zero" for e in m if e["type"] == 3), m
print("map ok: %d extents, %d zero, punched %s all hole,zero"
      % (len(ents), sum(1 for e in ents if e[2] & 2), sorted(punched)))
' || fail "content or block status of $u"
}

# ostat KEY [FILE]: a figure of the origin section of our stats file.
ostat () {
    jq -e -r ".origin.default.$1" "${2:-$tmp/stats.json}" ||
        { cat "${2:-$tmp/stats.json}" >&2; fail "no origin.default.$1 in the stats"; }
}

# info KEY: a figure of the origin of volume default (info --json).
info () {
    "$PUNCHCACHE" info --json "$pool" |
        jq -e -r ".volumes[] | select(.name == \"default\") | .origin.$1"
}


echo "== 1. fresh pool with origin=$ouri: cold reads, writes, punches"
start_punchcache "$sock" pool="$pool" size=64M block-size=64K \
    origin="$ouri" stats="$tmp/stats.json"
EXP=$exp nbdsh -u "$uri" -c '
import os
B = 65536
exp = bytearray(open(os.environ["EXP"], "rb").read())
assert h.get_size() == len(exp), ("the volume does not have the origin size", h.get_size())
assert h.pread(4*B, 0) == exp[:4*B], "cold blocks 0-3 differ from the origin"
def write(buf, off):
    h.pwrite(buf, off); exp[off:off+len(buf)] = buf
def punch(n, off, f=None):
    if f is None: h.trim(n, off)
    else: h.zero(n, off, f)
    exp[off:off+n] = bytes(n)
write(b"\x11" * B, 40*B)                 # a whole from-origin block
write(b"\x22" * 1000, 41*B + 100)        # part of one: the rest is the origin
punch(2*B, 50*B)                         # trim, aligned: 50, 51 punched
punch(1000, 60*B + 200)                  # trim inside a from-origin block
punch(B, 70*B, 0)                        # zero, may punch: 70
punch(B, 71*B, nbd.CMD_FLAG_NO_HOLE)     # zero, allocated
punch(3000, 72*B + 5, 0)                 # zero inside a from-origin block
h.flush()
for off, n in [(40*B, B), (41*B, B), (50*B, 2*B), (60*B, B), (70*B, 3*B)]:
    assert h.pread(n, off) == exp[off:off+n], "wrong data at block %d" % (off // B)
open(os.environ["EXP"], "wb").write(exp)
print("cold reads, writes, trims, zeroes ok")
' || fail "phase 1 I/O"
NOREAD=1 map_check "$uri" "$exp" 50 51 70
stop_nbdkit
reads1=$(ostat origin_reads)
echo "stats: origin_reads=$reads1 fills=$(ostat fills) fill_blocks=$(ostat fill_blocks)"
[ "$(sha256sum < "$img")" = "$sum0" ] || fail "overlay mode changed the origin file"
echo "origin file unchanged (sha256)"
"$PUNCHCACHE" info "$pool" | tee "$tmp/info.txt" | grep -F "origin: $ouri (overlay)" ||
    { cat "$tmp/info.txt"; fail "punchcache info does not show the origin"; }
grep -E "local [0-9.]+%:" "$tmp/info.txt" || fail "punchcache info does not show the local share"
[ "$(info uri)" = "$ouri" ] && [ "$(info mode)" = overlay ] || fail "info --json: origin uri/mode"
remote=$(info origin_blocks)
echo "info --json: $(info local_blocks) local, $(info punched_blocks) punched, $remote from the origin, $(info local_percent)% local"
[ "$remote" -gt 0 ] && [ "$remote" -lt "$NB" ] || fail "origin_blocks=$remote after a partial read"
[ $(( $(info local_blocks) + $(info punched_blocks) + remote )) = "$NB" ] ||
    fail "local + punched + remote != $NB"
expect_fail 1 "still reads $remote of its $NB blocks from origin" \
    "$PUNCHCACHE" volume detach "$pool" default
echo "detach refused: $(cat "$tmp/err")"
check_pool "after phase 1"

echo "== 2. restart without origin= (recorded): same content, full reads"
start_punchcache "$sock" pool="$pool" stats="$tmp/stats.json"
for i in 1 2; do
    nbdcopy "$uri" "$tmp/copy.img" || fail "nbdcopy $i"
    cmp "$exp" "$tmp/copy.img" || fail "nbdcopy $i differs from the expected image"
    echo "nbdcopy $i: equal to the expected image"
done
map_check "$uri" "$exp" 50 51 70
stop_nbdkit
reads2=$(ostat origin_reads) fetched=$(ostat bytes_fetched)
echo "stats: origin_reads=$reads2 bytes_fetched=$fetched fills=$(ostat fills) zero_blocks=$(ostat zero_blocks) local_reads=$(ostat local_reads)"
[ "$fetched" -le $((remote * B)) ] ||
    fail "fetched $fetched bytes for $remote remote blocks: some were fetched twice"
[ "$fetched" -gt 0 ] || fail "nothing was fetched for $remote remote blocks"
[ "$(ostat uri)" = "$ouri" ] || fail "stats: origin uri"
[ "$(info origin_blocks)" = 0 ] || fail "$(info origin_blocks) blocks still remote after a full read"
"$PUNCHCACHE" info "$pool" | grep -F "local 100.0%" || fail "info: not 100% local"
check_pool "after phase 2"

echo "== 3. a full read of a filled volume makes no origin read; detach"
start_punchcache "$sock" pool="$pool" stats="$tmp/stats.json"
nbdcopy "$uri" "$tmp/copy.img" || fail "nbdcopy"
cmp "$exp" "$tmp/copy.img" || fail "the filled volume differs from the expected image"
stop_nbdkit
echo "stats: origin_reads=$(ostat origin_reads) local_reads=$(ostat local_reads)"
[ "$(ostat origin_reads)" = 0 ] || fail "a full read of a filled volume read the origin"
"$PUNCHCACHE" volume detach "$pool" default || fail "detach refused after a full read"
"$PUNCHCACHE" info --json "$pool" | jq -e '.volumes[0] | has("origin") | not' >/dev/null ||
    fail "the volume still has an origin after detach"
check_pool "after detach"
stop_origin
ops=$(sed -n 's/^read: \([0-9]*\) ops.*/\1/p' "$tmp/origin.stats")
echo "origin stats filter: ${ops:-0} read requests in all (our stats: $reads1 + $reads2 + 0)"
[ "${ops:-0}" = $((reads1 + reads2)) ] ||
    fail "the origin saw ${ops:-no} reads, our stats count $reads1 + $reads2"
start_punchcache "$sock" pool="$pool"
nbdcopy "$uri" "$tmp/copy.img" || fail "nbdcopy without the origin"
cmp "$exp" "$tmp/copy.img" || fail "the detached volume differs"
map_check "$uri" "$exp" 50 51 70
stop_nbdkit
echo "detached volume served without its origin: equal"
check_pool "after phase 3"

echo "== 4. eight concurrent reads of one cold block: one origin request"
start_origin -r --filter=stats --filter=delay file "$img" \
    statsfile="$tmp/slow.stats" delay-read=500ms
rm -f "$pool"
start_punchcache "$sock" pool="$pool" size=64M block-size=64K \
    origin="$ouri" stats="$tmp/stats.json"
IMG=$img URI=$uri nbdsh -c '
import os, time
B = 65536
want = open(os.environ["IMG"], "rb").read()[5*B:6*B]
hs = []
for i in range(8):
    x = nbd.NBD(); x.connect_uri(os.environ["URI"]); hs.append(x)
bufs = [nbd.Buffer(B) for x in hs]
t0 = time.time()
cs = [x.aio_pread(b, 5*B) for x, b in zip(hs, bufs)]
for x, c in zip(hs, cs):
    while not x.aio_command_completed(c): x.poll(-1)
t = time.time() - t0
assert all(b.to_bytearray() == want for b in bufs), "a reader got other data"
print("8 readers of block 5: same data, %.2f s" % t)
' || fail "concurrent cold reads"
stop_nbdkit
stop_origin
ops=$(sed -n 's/^read: \([0-9]*\) ops.*/\1/p' "$tmp/slow.stats")
echo "origin reads: ${ops:-0} (stats filter); our stats: fills=$(ostat fills) origin_reads=$(ostat origin_reads)"
[ "${ops:-0}" = 1 ] && [ "$(ostat fills)" = 1 ] ||
    fail "8 concurrent readers of one cold block made ${ops:-0} origin reads, $(ostat fills) fills"
check_pool "after phase 4"

echo "== 5. writethrough: updates reach the origin file"
cp "$img" "$tmp/wt.img"
cp "$img" "$exp"
start_origin file "$tmp/wt.img"
rm -f "$pool"
start_punchcache "$sock" pool="$pool" size=64M block-size=64K \
    origin="$ouri" origin-mode=writethrough
EXP=$exp nbdsh -u "$uri" -c '
import os
B = 65536
exp = bytearray(open(os.environ["EXP"], "rb").read())
def write(buf, off):
    h.pwrite(buf, off); exp[off:off+len(buf)] = buf
def punch(n, off, f=None):
    if f is None: h.trim(n, off)
    else: h.zero(n, off, f)
    exp[off:off+n] = bytes(n)
assert h.pread(B, 3*B) == exp[3*B:4*B]
write(b"\x33" * B, 3*B)                  # a block already filled
write(b"\x44" * 2*B, 30*B)               # whole from-origin blocks
write(b"\x55" * 777, 33*B + 9)           # part of a from-origin block
punch(2*B, 50*B)                         # trim
punch(5000, 60*B + 7, 0)                 # zero, partial
punch(B, 70*B, nbd.CMD_FLAG_NO_HOLE)
h.flush()
open(os.environ["EXP"], "wb").write(exp)
' || fail "writethrough I/O"
cmp "$exp" "$tmp/wt.img" || fail "the origin file lacks writethrough updates after FLUSH"
echo "origin file after flush: equal to the expected image"
map_check "$uri" "$exp" 50 51
stop_nbdkit
"$PUNCHCACHE" info "$pool" | grep -F "origin: $ouri (writethrough)" ||
    fail "info: writethrough origin"
check_pool "after writethrough"
stop_origin

start_origin -r file "$img"
punchcache_refuses "read-only.*$osock|$osock.*read-only" pool="$tmp/pool-ro" \
    size=64M origin="$ouri" origin-mode=writethrough
stop_origin

echo "== -r: the origin's bytes; a read-only pool (punchcached -r) reads through"
start_origin file "$img"
start_punchcache "$sock" pool="$tmp/pool-ro2" size=64M origin="$ouri"
stop_nbdkit                                 # recorded (the start probe may read)
local0=$("$PUNCHCACHE" info "$tmp/pool-ro2" | grep -o "[0-9]* blocks with data")
start_punchcache "$sock" -r pool="$tmp/pool-ro2"
nbdcopy "$uri" "$tmp/ro-copy.img"
cmp "$img" "$tmp/ro-copy.img" || fail "a read-only pool does not read the origin's bytes"
stop_nbdkit
local1=$("$PUNCHCACHE" info "$tmp/pool-ro2" | grep -o "[0-9]* blocks with data")
# punchcached -r opens the pool read-only; under nbdkit -r only refuses
# clients' writes and the pool stays read-write (the plugin's man page), so
# the plugin keeps what it fetches there.
if [ "$PC_FRONTEND" = punchcached ]; then
    [ "$local0" = "$local1" ] ||
        fail "a read-only pool kept fetched blocks ($local0 before, $local1 after)"
    echo "read-only: the origin's bytes, nothing kept ($local1, as before)"
else
    echo "nbdkit -r: the origin's bytes ($local0 before, $local1 after: the pool is read-write)"
fi
stop_origin

echo "== an nbds:// origin (TLS with a PSK, as the URI names it)"
if psktool --version > /dev/null 2>&1; then
    psktool -u alice -p "$tmp/origin.psk" > /dev/null 2>&1 ||
        fail "psktool could not make a key file"
    start_origin --tls=require --tls-psk="$tmp/origin.psk" file "$img"
    # A plaintext URI to a TLS-only origin: refused, naming the URI.
    punchcache_refuses "$osock.*TLS|TLS.*$osock" pool="$tmp/pool-tls0" \
        size=64M origin="$ouri"
    turi="nbds+unix://alice@/?socket=$osock&tls-psk-file=$tmp/origin.psk"
    start_punchcache "$sock" pool="$tmp/pool-tls" size=64M origin="$turi"
    nbdcopy "$uri" "$tmp/tls-copy.img"
    cmp "$img" "$tmp/tls-copy.img" || fail "reading through an nbds:// origin"
    echo "nbds:// origin: the volume reads the origin's bytes"
    stop_nbdkit
    stop_origin
else
    echo "psktool not installed: nbds:// origin not tested"
fi
echo "origin test: OK"
