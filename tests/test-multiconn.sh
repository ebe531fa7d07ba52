#!/usr/bin/env bash
# Description: SPEC §3 "One view": several connections to one volume.  A
# write, trim, zero or FUA write completed on one connection is seen at
# once (no FLUSH) by reads and block status on the others.  Then two
# connections write interleaved 4K pieces of the same 64K blocks at once
# (racing to allocate each block) while a third reads: every piece read is
# zeros or the right piece, never another's, each write acknowledged to a
# writer is visible to the reader as soon as it is told, and at the end
# every piece is there.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

start_punchcache "$tmp/sock" pool="$tmp/pool" size=64M block-size=64K
URI=$(nbd_uri "$tmp/sock")
export URI
timeout 120 nbdsh -c '
import os, queue, random, struct, threading, time
B = 65536
def conn():
    c = nbd.NBD()
    c.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    c.connect_uri(os.environ["URI"])
    return c
h1, h2, h3 = conn(), conn(), conn()
assert h1.can_multi_conn(), "server does not advertise multi-conn"
def ext(c, n, off):
    out = []
    c.block_status(n, off, lambda m, o, e, err: out.extend(e))
    return out

# Sequential: each change is seen on the other connections at once.
for i in range(50):
    off = i * B + 1000 * i
    data = os.urandom(3000)
    h1.pwrite(data, off)
    assert h2.pread(3000, off) == data, "write not seen by another connection"
    assert ext(h3, 1, off)[1] == 0, "block status on another connection: hole"
    h2.trim(3000, off)
    assert h1.pread(3000, off) == bytes(3000), "trim not seen"
    h3.pwrite(data, off, nbd.CMD_FLAG_FUA)
    assert h1.pread(3000, off) == data, "FUA write not seen"
    h1.zero(1000, off + 1000, nbd.CMD_FLAG_NO_HOLE)
    assert h2.pread(3000, off) == data[:1000] + bytes(1000) + data[2000:]
    h3.zero(B, (off // B) * B)
    assert h2.pread(3000, off) == bytes(3000), "zero not seen"
    assert ext(h1, B, (off // B) * B)[:2] == [B, 3], "block status after zero"
print("sequential one-view checks ok")

# Concurrent: two writers share blocks, a reader checks what it sees.
P = 4096
NPIECES = (16 << 20) // P
def piece(i, gen):
    return struct.pack("<QQ", i, gen) * (P // 16)
latest = [0] * NPIECES
lock = threading.Lock()
acked = queue.Queue()
errors = []
deadline = time.monotonic() + 30
def writer(c, parity, seed):
    try:
        r = random.Random(seed)
        mine = [i for i in range(NPIECES) if i % 2 == parity]
        r.shuffle(mine)
        for gen in (1, 2):
            for i in mine:
                if time.monotonic() > deadline: return
                c.pwrite(piece(i, gen), i * P)
                with lock: latest[i] = gen
                acked.put((i, gen))
    except Exception as e:
        errors.append(repr(e))
def check(data, i, least):
    if data == bytes(P):
        assert least == 0, "piece %d acknowledged (gen %d) but reads zeros" % (i, least)
        return
    j, gen = struct.unpack_from("<QQ", data)
    assert j == i and data == piece(j, gen), "piece %d holds foreign data (%d)" % (i, j)
    assert gen >= least, "piece %d: stale gen %d < %d" % (i, gen, least)
def reader(c):
    try:
        n = 0
        while not stop.is_set() or not acked.empty():
            try: i, gen = acked.get(timeout=0.1)
            except queue.Empty: continue
            check(c.pread(P, i * P), i, gen)    # acknowledged, so visible
            k = random.randrange(NPIECES)       # and a random piece
            with lock: least = latest[k]
            check(c.pread(P, k * P), k, least)
            n += 1
        print("reader checked", n, "acknowledged writes")
    except Exception as e:
        errors.append(repr(e))
stop = threading.Event()
ws = [threading.Thread(target=writer, args=(h1, 0, 1)),
      threading.Thread(target=writer, args=(h2, 1, 2))]
rd = threading.Thread(target=reader, args=(h3,))
for t in ws + [rd]: t.start()
for t in ws: t.join()
stop.set(); rd.join()
assert not errors, errors
assert time.monotonic() < deadline, "too slow: writers hit the deadline"
h4 = conn()
for i in range(NPIECES):
    assert h4.pread(P, i * P) == piece(i, 2), "piece %d lost" % i
print("concurrent one-view checks ok:", NPIECES, "pieces")
' || fail "multi-connection one-view"
stop_nbdkit
"$PUNCHCACHE" check "$tmp/pool"
