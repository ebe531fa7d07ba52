"""Raw NBD client pieces for the hostile and dying-client tests.

libnbd only sends well-formed traffic, so tests/test-hostile.sh and
tests/test-dying-client.sh speak the protocol by hand over a plain Unix
socket: the fixed newstyle handshake, NBD_OPT_GO, simple replies (no
structured replies are negotiated), requests with any header and any
(partial) payload.  Every socket has a timeout, so nothing here can hang a
test.  Also:

  python3 nbdraw.py verify SOCKET OFFSET LENGTH STOPFILE PROGRESSFILE
      the well-behaved client: with libnbd, writes random 64 KiB blocks in
      [OFFSET, OFFSET+LENGTH), reads blocks back and compares them with
      what it wrote, flushes now and then; until STOPFILE exists (at most
      600 s).  It rewrites PROGRESSFILE with its operation count after each
      round.  Exit 0 if every operation succeeded and every read matched;
      1 with a message otherwise (connection lost, mismatch, I/O error).

Protocol constants are from the NBD protocol document (doc/proto.md in
the NetworkBlockDevice/nbd repository).
"""

import os
import random
import socket
import struct
import sys
import time

IHAVEOPT = b"IHAVEOPT"
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2
OPT_ABORT = 2
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
INFO_EXPORT = 0
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4


class Closed(Exception):
    """The server closed (or reset) the connection."""


def connect(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(min(n - len(buf), 1 << 20))
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e))
        if not chunk:
            raise Closed("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def greet(s):
    """Read the server's greeting and send the client flags."""
    hello = recv_exact(s, 18)
    if hello[:16] != b"NBDMAGIC" + IHAVEOPT:
        raise AssertionError("not a newstyle NBD server: %r" % hello[:16])
    s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))


def option_header(opt, length):
    return IHAVEOPT + struct.pack(">II", opt, length)


def recv_option_reply(s):
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    if magic != OPT_REPLY_MAGIC:
        raise AssertionError("bad option reply magic %#x" % magic)
    return rtype, recv_exact(s, length)


def go(s, export=b""):
    """NBD_OPT_GO: return the export size once the server acknowledged."""
    data = struct.pack(">I", len(export)) + export + struct.pack(">H", 0)
    s.sendall(option_header(OPT_GO, len(data)) + data)
    size = None
    while True:
        rtype, payload = recv_option_reply(s)
        if rtype & 0x80000000:
            raise AssertionError("NBD_OPT_GO refused: reply type %#x %r"
                                 % (rtype, payload))
        if rtype == REP_INFO and struct.unpack_from(">H", payload)[0] == INFO_EXPORT:
            size = struct.unpack_from(">Q", payload, 2)[0]
        elif rtype == REP_ACK:
            if size is None:
                raise AssertionError("NBD_OPT_GO acknowledged without the export size")
            return size


def handshake(path, export=b"", timeout=10.0):
    """Connect and negotiate; return (socket, export size)."""
    s = connect(path, timeout)
    greet(s)
    return s, go(s, export)


def request(cmd, handle, offset, length, flags=0):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, handle, offset, length)


def recv_reply(s, read_length=0):
    """One simple reply: (error, handle, data); data only for a good read."""
    magic, error, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    if magic != SIMPLE_REPLY_MAGIC:
        raise AssertionError("bad reply magic %#x" % magic)
    data = recv_exact(s, read_length) if error == 0 and read_length else b""
    return error, handle, data


def wait_closed(s, timeout):
    """True if the server closes the connection within TIMEOUT seconds
    (whatever it sends first is discarded), False if it is still open."""
    s.settimeout(0.5)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if not s.recv(1 << 16):
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def close_hard(s):
    """Close with SO_LINGER 0: the server gets a reset, not an EOF."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class Proc:
    """Figures of a server process from /proc."""

    def __init__(self, pid):
        self.pid = int(pid)

    def alive(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state not in ("Z", "X")

    def status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss(self):
        return self.status("VmRSS")

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


def verify(sock, offset, length, stopfile, progressfile):
    import nbd
    bs = 65536
    blocks = length // bs
    rng = random.Random(os.getpid())
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///?socket=" + sock)
    shadow = {}
    ops = rounds = 0
    end = time.monotonic() + 600
    while not os.path.exists(stopfile):
        if time.monotonic() > end:
            raise AssertionError("verifier: still running after 600 s")
        for _ in range(16):
            b = rng.randrange(blocks)
            if rng.random() < 0.5 or b not in shadow:
                data = rng.randbytes(bs)
                h.pwrite(data, offset + b * bs)
                shadow[b] = data
            else:
                got = h.pread(bs, offset + b * bs)
                if got != shadow[b]:
                    raise AssertionError("verifier: block %d (offset %d) does not "
                                         "hold what was written" % (b, offset + b * bs))
            ops += 1
        h.flush()
        rounds += 1
        # Every 16 rounds, read back every block written so far.
        if rounds % 16 == 0:
            for b, data in shadow.items():
                if h.pread(bs, offset + b * bs) != data:
                    raise AssertionError("verifier: block %d changed" % b)
                ops += 1
        with open(progressfile + ".t", "w") as f:
            f.write("%d\n" % ops)
        os.replace(progressfile + ".t", progressfile)
    h.shutdown()
    print("verifier: %d operations, %d blocks checked, all good" % (ops, len(shadow)))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "verify":
        try:
            verify(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
        except Exception as e:  # any failure is the test's verdict
            print("verifier failed: %s: %s" % (type(e).__name__, e), file=sys.stderr)
            sys.exit(1)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
