#!/usr/bin/env bash
# Description: SPEC §4 I7 for dirty data: a range written into a hole and
# not yet written back (its block reserved, not mapped) reads as data, so
# block status (base:allocation) must report it as data -- never as a
# hole or zeros, which would let a client (qemu-img convert, nbdcopy)
# skip it.  64K blocks, cache large enough that nothing is written back
# before the FLUSH:
#  1. dirty writes into holes -- 4K inside a block, a whole block, 100
#     bytes across a block boundary, 1 MiB -- are data on this connection
#     and on another one; every other block is hole+zero; the data reads
#     back.
#  2. trims of whole dirty blocks (unflushed) make them hole+zero again;
#     partly trimmed and untouched dirty blocks stay data.
#  3. after FLUSH (now mapped) the same map; trimming everything leaves
#     one hole+zero extent; `punchcache check` is clean.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version

pool=$tmp/pool
sock=$tmp/sock
uri=$(nbd_uri "$sock")
start_punchcache "$sock" pool="$pool" size=16M block-size=64K volume=v:64M \
    cache=32M dirty=16M
URI=$(nbd_uri "$sock" v) timeout 120 nbdsh --base-allocation \
    -u "$(nbd_uri "$sock" v)" -c '
import os
B = 65536
SIZE = 64 << 20
h2 = nbd.NBD(); h2.add_meta_context("base:allocation")
h2.connect_uri(os.environ["URI"])

def block_flags(hd):
    """Flags of every block of the volume from block status, checking
    that each block is described by one flag value."""
    flags = {}
    off = 0
    while off < SIZE:
        ext = []
        hd.block_status(min(SIZE - off, 32 << 20), off,
                        lambda m, o, e, err: ext.extend(e))
        assert ext, "empty block status reply at %d" % off
        for i in range(0, len(ext), 2):
            n, f = ext[i], ext[i + 1]
            assert n > 0
            for b in range(off // B, (off + n - 1) // B + 1):
                assert flags.get(b, f) == f, \
                    "block %d reported with flags %d and %d" % (b, flags[b], f)
                flags[b] = f
            off += n
    return flags

def check(hd, data, what):
    fl = block_flags(hd)
    wrong = {b: f for b, f in fl.items() if f != (0 if b in data else 3)}
    assert not wrong, "%s: blocks with wrong flags (block: flags): %r" % (
        what, dict(list(wrong.items())[:10]))
    print("%s: %d data blocks, %d hole+zero blocks" % (
        what, len(data), len(fl) - len(data)))

writes = [(2 * B + 8192, 4096), (5 * B, B), (8 * B - 50, 100),
          (16 * B, 16 * B)]
for k, (o, n) in enumerate(writes):
    h.pwrite(bytes([0x51 + k]) * n, o)
data = {2, 5, 7, 8} | set(range(16, 32))
check(h, data, "dirty, this connection")
check(h2, data, "dirty, another connection")
for k, (o, n) in enumerate(writes):
    assert h2.pread(n, o) == bytes([0x51 + k]) * n, "write %d reads wrong" % k

h.trim(B, 5 * B)                       # whole dirty blocks
h.trim(2 * B, 7 * B)
h.trim(8 * B, 16 * B)
h.trim(4096, 2 * B)                    # part of dirty block 2: stays data
data = {2} | set(range(24, 32))
check(h2, data, "after trims of dirty blocks")
assert h2.pread(B, 5 * B) == bytes(B) and h2.pread(2 * B, 7 * B) == bytes(2 * B)
assert h2.pread(4096, 2 * B + 8192) == b"\x51" * 4096
h.flush()
check(h2, data, "after FLUSH")
h.trim(SIZE, 0)
h.flush()
check(h2, set(), "after trimming everything")
' || fail "block status misreported dirty data"
stop_nbdkit
"$PUNCHCACHE" check "$pool" || fail "pool damaged"
echo "write-back extents test: OK"
