#!/usr/bin/env bash
# Description: hostile clients (SPEC §8, issue 12 item 6).  Raw-socket
# clients (tests/nbdraw.py) send what libnbd never would, while a
# well-behaved libnbd client (nbdraw.py verify) writes and verifies its own
# 8 MiB region on its own connection throughout:
#   garbage      random bytes instead of the client flags, and instead of a
#                request: the server hangs up within 10 s
#   bad magic    in an option and in a request: the server hangs up
#   4 GiB option an option (GO, and an unknown one) announcing 2^32-1 bytes
#                of data: an error reply or a hang-up within 10 s, never a
#                wait for 4 GiB
#   past the end READ, WRITE (with its payload), TRIM and WRITE_ZEROES at
#                and across the end, and with offset + length overflowing
#                64 bits: each gets an error reply, and the connection
#                stays in step (a READ in range then succeeds)
#   big writes   a WRITE of 64 MiB + 4 KiB with its whole payload, and one
#                of 4 GiB - 4 KiB with none: an error reply or a hang-up,
#                never success; the server's RSS, sampled after each MiB
#                sent, never grows by 32 MiB (it did not buffer it)
#   truncated    a 1 MiB WRITE whose payload stops after 300 KiB (then
#                close, or reset): none of it is written (the region still
#                reads as before)
#   mid-request  hang-ups after the greeting, in the middle of an option
#                header, of option data, of a request header (close and
#                reset)
#   1000 idle    500 connections that never send a byte and 500 that
#                negotiated and then sit idle, held for 3 s: the server's fd
#                count shows them (so the step is real), a new libnbd client
#                is served meanwhile and the verifier keeps going
# At the end the server still serves a new connection, the verifier found
# every block as written, the server's fd count is back to its baseline
# (+2 at most, within 20 s) and its RSS is within the baseline + the
# cache budget (16 MiB) + 32 MiB; after a graceful stop `punchcache check`
# finds the pool clean.  The RSS baseline is taken after the verifier ran
# for a while, with its connection open; the fd baseline before it, and
# the final fd count after it closed (see below).
#
# Teeth (while writing it): run against a throw-away raw NBD server as
# PUNCHCACHED, the test failed when that server accepted writes over
# 64 MiB (RSS grew 64 MiB, no refusal, the 4 GiB write hung), answered a
# READ past the end with data, or wrote the first 300 KiB of a truncated
# payload; with the plugin changed to leak an fd, or 256 KiB, per
# connection it failed on the fd count (528 vs 14) and on RSS (+159 MiB).
# Measured on the plugin (nbdkit 1.32.5): baseline 13 fds, 22-28 MiB RSS;
# 3000 more fds with the 1000 idle connections; at the end 13 fds and
# +11-14 MiB RSS (cache fill); 7 s in all.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires python3 -c 'import nbd'

pool=$tmp/pool
sock=$tmp/sock
cache=$((16 << 20))
ulimit -c 0
# 1000 idle connections plus ours: the server and the clients need the fds.
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] ||
    ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 2100 ] ||
    skip "needs 2100 file descriptors (ulimit -Hn is $(ulimit -Hn))"

start_punchcache "$sock" pool="$pool" size=512M cache="$cache"
fds () { ls "/proc/$nbdkit_pid/fd" | wc -l; }
rss () { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$nbdkit_pid/status"; }
# The fd baseline before any client: threads that live as long as a
# connection (nbdkit's) create their io_uring ring when they first batch
# I/O, so the verifier's connection gains fds as the test goes on; it is
# closed before the final count.
base_fds=$(fds)
start_verifier "$sock" 500
base_rss=$(rss)
echo "baseline: $base_fds fds, RSS $((base_rss >> 10)) KiB"

rc=0
timeout -k 5 300 python3 - "$sock" "$nbdkit_pid" "$tmp/verify.progress" <<'PY' || rc=$?
import os, random, resource, socket, struct, sys, time
sys.path.insert(0, os.environ["top_srcdir"] + "/tests")
import nbdraw
from nbdraw import request, CMD_READ, CMD_WRITE, CMD_TRIM, CMD_DISC, Closed

sock, server, progressfile = sys.argv[1], nbdraw.Proc(sys.argv[2]), sys.argv[3]
KiB, MiB = 1 << 10, 1 << 20
CMD_WRITE_ZEROES = 6
EINVAL, ENOSPC = 22, 28
failures = []

def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)
    if not server.alive():
        print("FAIL  the server died (after: %s)" % what)
        sys.exit(3)

def progress():
    with open(progressfile) as f:
        return int(f.read())

def refused_or_closed(s, timeout=10):
    """An error reply (option or simple) or a hang-up within TIMEOUT s."""
    s.settimeout(timeout)
    try:
        head = nbdraw.recv_exact(s, 4)
    except Closed:
        return "hung up"
    except socket.timeout:
        return None
    try:
        if head == struct.pack(">Q", nbdraw.OPT_REPLY_MAGIC)[:4]:   # option reply
            rest = nbdraw.recv_exact(s, 16)
            rtype = struct.unpack(">I", rest[8:12])[0]
            return "option error %#x" % rtype if rtype & 0x80000000 else None
        if struct.unpack(">I", head)[0] == nbdraw.SIMPLE_REPLY_MAGIC:
            err = struct.unpack(">I", nbdraw.recv_exact(s, 4))[0]
            return "error reply %d" % err if err else None
        return None
    except (Closed, socket.timeout):
        return "hung up"

# ---- garbage and bad magic ----
s = nbdraw.connect(sock); nbdraw.recv_exact(s, 18)
s.sendall(os.urandom(4096))
check(nbdraw.wait_closed(s, 10), "garbage instead of the client flags: hung up"); s.close()

s, size = nbdraw.handshake(sock)
s.sendall(b"\x00\x01\x02\x03" + os.urandom(4092))
check(nbdraw.wait_closed(s, 10), "garbage instead of a request: hung up"); s.close()

s = nbdraw.connect(sock); nbdraw.greet(s)
s.sendall(b"IHAVEOPX" + struct.pack(">II", nbdraw.OPT_GO, 0))
check(nbdraw.wait_closed(s, 10), "bad option magic: hung up"); s.close()

s, _ = nbdraw.handshake(sock)
s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 4096))
check(nbdraw.wait_closed(s, 10), "bad request magic: hung up"); s.close()

# ---- 4 GiB option lengths ----
for opt, name in ((nbdraw.OPT_GO, "NBD_OPT_GO"), (0x7777, "an unknown option")):
    s = nbdraw.connect(sock); nbdraw.greet(s)
    s.sendall(nbdraw.option_header(opt, 0xFFFFFFFF) + os.urandom(4096))
    r = refused_or_closed(s)
    check(r is not None, "%s with 4 GiB of data announced: %s" % (name, r or "no answer in 10 s"))
    s.close()

# ---- requests past the end: error replies, connection in step ----
s, size = nbdraw.handshake(sock)
cases = [
    ("READ at the end", request(CMD_READ, 1, size, 4096)),
    ("READ across the end", request(CMD_READ, 2, size - 4096, 8192)),
    ("READ with offset+length past 2^64", request(CMD_READ, 3, 2**64 - 4096, 8192)),
    ("WRITE across the end", request(CMD_WRITE, 4, size - 4096, 8192) + b"\x77" * 8192),
    ("WRITE with offset+length past 2^64", request(CMD_WRITE, 5, 2**64 - 4096, 8192) + b"\x77" * 8192),
    ("TRIM across the end", request(CMD_TRIM, 6, size - 4096, 8192)),
    ("WRITE_ZEROES past the end", request(CMD_WRITE_ZEROES, 7, size, 65536)),
]
for handle, (what, data) in enumerate(cases, 1):
    s.sendall(data)
    try:
        err, h, _ = nbdraw.recv_reply(s)
        check(err != 0 and h == handle, "%s: error %d" % (what, err))
    except (Closed, socket.timeout, AssertionError) as e:
        check(False, "%s: no proper reply (%s)" % (what, e))
        s, size = nbdraw.handshake(sock)
s.sendall(request(CMD_READ, 99, 0, 4096))
err, h, data = nbdraw.recv_reply(s, 4096)
check(err == 0 and h == 99 and len(data) == 4096, "READ in range after them: served")
s.sendall(request(CMD_DISC, 100, 0, 0)); s.close()

# ---- writes over 64 MiB ----
base = server.rss()
s, _ = nbdraw.handshake(sock)
s.sendall(request(CMD_WRITE, 1, 64 * MiB, 64 * MiB + 4096))
chunk, sent, peak, how = os.urandom(MiB), 0, base, None
try:
    while sent < 64 * MiB + 4096:
        n = min(MiB, 64 * MiB + 4096 - sent)
        s.sendall(chunk[:n]); sent += n
        peak = max(peak, server.rss())
    how = refused_or_closed(s)
except (BrokenPipeError, ConnectionResetError, socket.timeout):
    how = "hung up after %d MiB of payload" % (sent >> 20)
s.close()
check(how is not None, "WRITE of 64 MiB + 4 KiB: %s" % (how or "accepted, or no answer in 10 s"))
check(peak - base < 32 * MiB, "WRITE of 64 MiB + 4 KiB: RSS grew %d KiB at most while it was sent"
      % ((peak - base) >> 10))

s, _ = nbdraw.handshake(sock)
s.sendall(request(CMD_WRITE, 1, 0, 0xFFFFF000) + os.urandom(65536))
r = refused_or_closed(s)
check(r is not None, "WRITE of 4 GiB - 4 KiB, no payload: %s" % (r or "no answer in 10 s"))
s.close()

# ---- truncated payloads ----
region = 80 * MiB
before = b"\xa5" * MiB
s, _ = nbdraw.handshake(sock)
s.sendall(request(CMD_WRITE, 1, region, MiB) + before)
err, _, _ = nbdraw.recv_reply(s)
check(err == 0, "setup: 1 MiB written at 80 MiB")
s.sendall(request(CMD_DISC, 2, 0, 0)); s.close()
for how in ("close", "reset"):
    s, _ = nbdraw.handshake(sock)
    s.sendall(request(CMD_WRITE, 1, region, MiB) + b"\x5a" * (300 * KiB))
    time.sleep(0.2)
    nbdraw.close_hard(s) if how == "reset" else s.close()
    time.sleep(0.2)
    s, _ = nbdraw.handshake(sock)
    s.sendall(request(CMD_READ, 1, region, MiB))
    err, _, data = nbdraw.recv_reply(s, MiB)
    check(err == 0 and data == before,
          "1 MiB WRITE cut after 300 KiB (%s): nothing of it written" % how)
    s.close()

# ---- hang-ups in the middle ----
mids = [
    ("after the greeting", lambda s: nbdraw.recv_exact(s, 18)),
    ("in an option header", lambda s: (nbdraw.greet(s), s.sendall(b"IHAVEOPT\x00\x00"))),
    ("in option data", lambda s: (nbdraw.greet(s),
                                  s.sendall(nbdraw.option_header(nbdraw.OPT_GO, 20) + b"\x00" * 5))),
    ("in a request header", lambda s: (nbdraw.greet(s), nbdraw.go(s),
                                       s.sendall(request(CMD_READ, 1, 0, 4096)[:10]))),
]
for what, fn in mids:
    for how in ("close", "reset"):
        s = nbdraw.connect(sock)
        fn(s)
        time.sleep(0.05)
        nbdraw.close_hard(s) if how == "reset" else s.close()
        time.sleep(0.05)
        check(True, "hang-up %s (%s): the server runs" % (what, how))

# ---- 1000 idle connections ----
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
fds0 = server.fds()
idle = []
t0 = time.monotonic()
for i in range(500):
    idle.append(nbdraw.connect(sock))             # never sends a byte
for i in range(500):
    idle.append(nbdraw.handshake(sock, timeout=30)[0])   # negotiated, then idle
opened = time.monotonic() - t0
p0 = progress()
import nbd
h = nbd.NBD(); h.connect_uri("nbd+unix:///?socket=" + sock)
h.pwrite(b"\x3c" * 65536, 96 * MiB)
served = h.pread(65536, 96 * MiB) == b"\x3c" * 65536
h.shutdown()
time.sleep(3)
fds1 = server.fds()
check(fds1 - fds0 >= 1000, "1000 idle connections opened in %.1f s: the server holds %d more fds"
      % (opened, fds1 - fds0))
check(served, "a new libnbd client is served while 1000 connections sit idle")
p1 = progress()
check(p1 > p0, "the verifier made %d operations meanwhile" % (p1 - p0))
for s in idle:
    s.close()
print("%d checks failed" % len(failures))
sys.exit(1 if failures else 0)
PY
server_alive || { tail -n 20 "$server_log" >&2; fail "the server died under hostile clients"; }
[ "$rc" = 0 ] || fail "hostile clients: some check failed (exit $rc)"

echo "== after them: the server serves, and leaks nothing"
timeout -k 5 60 nbdsh -u "$(nbd_uri "$sock")" -c '
h.pwrite(b"\xc3" * 65536, 100 << 20)
assert h.pread(65536, 100 << 20) == b"\xc3" * 65536' || fail "a new client was not served"
stop_verifier > "$tmp/verify.final" || { cat "$tmp/verify.final"; fail "the verifier failed"; }
for ((i = 0; i < 200; i++)); do
    [ "$(fds)" -le $((base_fds + 2)) ] && break
    sleep 0.1
done
end_fds=$(fds)
end_rss=$(rss)
echo "end: $end_fds fds (baseline $base_fds), RSS $((end_rss >> 10)) KiB" \
     "(baseline $((base_rss >> 10)) KiB, bound +$(((cache + (32 << 20)) >> 10)) KiB)"
[ "$end_fds" -le $((base_fds + 2)) ] || fail "fds: $end_fds, baseline $base_fds: leaked"
[ "$end_rss" -le $((base_rss + cache + (32 << 20))) ] ||
    fail "RSS $end_rss over the baseline $base_rss + cache + 32 MiB"
cat "$tmp/verify.final"
server_alive || fail "the server died"
stop_nbdkit
"$PUNCHCACHE" check "$pool" > "$tmp/check.out" ||
    { cat "$tmp/check.out"; fail "punchcache check after the hostile clients"; }
echo "hostile clients: every one refused or survived, nothing leaked"
