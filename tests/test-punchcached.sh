#!/usr/bin/env bash
# Description: punchcached's own command line and life cycle (the parts
# nbdkit has and the plugin does not; the data path is tested by every
# other integration test against both front-ends):
#  - --help names every option and every plugin key; --version; bad
#    options, -t values, --tls without credentials, -U with -p, unknown
#    -D switches: exit 1 with a message, no pool created;
#  - TCP on 127.0.0.1 with -p/-i; -e selects the default export; -r serves
#    read-only (writes refused with EPERM, data readable);
#  - daemon mode: without -f it forks, writes -P PIDFILE (absolute even if
#    given relative), serves, and on SIGTERM removes the PID file and the
#    socket and leaves a clean pool;
#  - systemd socket activation: LISTEN_PID/LISTEN_FDS with the socket on
#    fd 3 (passed by a python3 launcher);
#  - graceful stop: SIGTERM while 64 writes are in flight on a connection
#    (pool writes slowed with -D punchcache.race_delay_us): every write the
#    client saw acknowledged reads back after a restart, and the exit
#    status is 0.
# punchcached's own features: always that front-end (start_punchcache below).
PC_FRONTEND=punchcached
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires python3 -c 'import socket, os'
[ -x "$PUNCHCACHED" ] || skip "punchcached not built ($PUNCHCACHED)"
pcd=$PUNCHCACHED

# ---- help, version, refusals ----
"$pcd" --help > "$tmp/help"
for w in --foreground --exit-with-parent --unix --port --ipaddr --pidfile \
         --readonly --threads --exportname --verbose --debug --tls= \
         --tls-certificates --tls-psk --tls-verify-peer --version \
         pool= size= block-size= volume= cache= direct= io= stats= \
         unsafe_no_invalidate_lock race_delay_us LISTEN_FDS SIGTERM; do
    grep -q -- "$w" "$tmp/help" || fail "--help does not mention $w"
done
"$pcd" --version | grep -q "^punchcached [0-9]" || fail "--version"

refuses () {   # refuses PATTERN ARGS...
    local pat=$1 rc=0; shift
    timeout 30 "$pcd" -f -U "$tmp/r.sock" "$@" > "$tmp/r.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] ||
        { cat "$tmp/r.out"; fail "'$*' exited $rc, expected a refusal"; }
    grep -qiE -- "$pat" "$tmp/r.out" ||
        { cat "$tmp/r.out"; fail "'$*' did not say '$pat'"; }
    [ ! -e "$tmp/r.pool" ] || fail "'$*' created the pool"
}
refuses "unrecognized option|invalid option" --bogus pool="$tmp/r.pool" size=8M
refuses "threads" -t 0 pool="$tmp/r.pool" size=8M
refuses "threads" -t many pool="$tmp/r.pool" size=8M
refuses "tls-certificates|tls-psk" --tls=require pool="$tmp/r.pool" size=8M
refuses "tls=maybe" --tls=maybe pool="$tmp/r.pool" size=8M
refuses "punchcache.NAME=VALUE|unknown" -D punchcache.no_such_switch=1 \
    pool="$tmp/r.pool" size=8M
refuses "-U cannot be combined" -p 10809 pool="$tmp/r.pool" size=8M
refuses "pool=PATH parameter is required|required" size=8M
refuses "cache=" pool="$tmp/r.pool" size=8M cache=12

pool=$tmp/pool
"$PUNCHCACHE" create "$pool" 64M
"$PUNCHCACHE" volume add "$pool" default 16M
"$PUNCHCACHE" volume add "$pool" second 8M

# ---- TCP, -e, -r ----
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$pcd" -f --exit-with-parent -p "$port" -i 127.0.0.1 -e second \
    pool="$pool" 2>>"$tmp/tcp.log" &
tcp_pid=$!
cleanup_fn "kill $tcp_pid 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    nbdinfo --size "nbd://127.0.0.1:$port" > "$tmp/size" 2>/dev/null && break
    sleep 0.1
done
[ "$(cat "$tmp/size")" = 8388608 ] || fail "-e second: default export is not 'second'"
nbdsh -u "nbd://127.0.0.1:$port/default" -c 'h.pwrite(b"T" * 4096, 0)'
kill "$tcp_pid"; wait "$tcp_pid" || fail "SIGTERM: exit status $?"

"$pcd" -f --exit-with-parent -r -U "$tmp/ro.sock" pool="$pool" 2>>"$tmp/ro.log" &
ro_pid=$!
cleanup_fn "kill $ro_pid 2>/dev/null"
for ((i = 0; i < 100; i++)); do [ -S "$tmp/ro.sock" ] && break; sleep 0.1; done
nbdsh -u "$(nbd_uri "$tmp/ro.sock")" -c '
import errno
assert h.is_read_only()
assert h.pread(4096, 0) == b"T" * 4096
h.set_strict_mode(0)
try:
    h.pwrite(b"x", 0)
    raise AssertionError("write accepted on -r")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
' || fail "-r"
kill "$ro_pid"; wait "$ro_pid" || :

# ---- daemon mode and PID file ----
( cd "$tmp" && "$pcd" -P pidfile -U "$tmp/d.sock" pool="$pool" 2>>"$tmp/d.log" )
[ -s "$tmp/pidfile" ] || fail "no PID file after daemonising"
dpid=$(cat "$tmp/pidfile")
cleanup_fn "kill $dpid 2>/dev/null"
kill -0 "$dpid" || fail "daemon $dpid not running"
[ "$(readlink "/proc/$dpid/cwd")" = / ] || fail "daemon did not chdir /"
nbdsh -u "$(nbd_uri "$tmp/d.sock")" -c 'assert h.pread(4096, 0) == b"T" * 4096'
kill "$dpid"
for ((i = 0; i < 100; i++)); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$dpid" 2>/dev/null || fail "daemon ignored SIGTERM"
[ ! -e "$tmp/pidfile" ] || fail "PID file left behind"
[ ! -e "$tmp/d.sock" ] || fail "socket left behind"
"$PUNCHCACHE" check "$pool" || fail "pool not clean after the daemon stopped"

# ---- systemd socket activation ----
python3 - "$pcd" "$pool" "$tmp/act.sock" <<'EOF' &
import os, socket, sys
pcd, pool, path = sys.argv[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path); s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(pcd, [pcd, "-f", "--exit-with-parent", "pool=" + pool])
EOF
act_pid=$!
cleanup_fn "kill $act_pid 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    nbdinfo --size "$(nbd_uri "$tmp/act.sock")" > "$tmp/size" 2>/dev/null && break
    sleep 0.1
done
[ "$(cat "$tmp/size")" = 16777216 ] || fail "socket activation: no server on fd 3"
kill "$act_pid"; wait "$act_pid" || fail "socket-activated server: exit $?"

# ---- graceful stop with writes in flight ----
start_punchcache "$tmp/g.sock" -D punchcache.race_delay_us=20000 pool="$pool"
URI=$(nbd_uri "$tmp/g.sock") PID=$nbdkit_pid ACKED=$tmp/acked nbdsh -c '
import os, signal
h = nbd.NBD(); h.connect_uri(os.environ["URI"])
cookies = {h.aio_pwrite(bytes([i + 1]) * 4096, i * 4096): i for i in range(64)}
h.poll(0)
os.kill(int(os.environ["PID"]), signal.SIGTERM)
acked, failed = set(), 0
try:
    while len(acked) + failed < 64:
        h.poll(1)
        for c, i in list(cookies.items()):
            try:
                if h.aio_command_completed(c):
                    acked.add(i); del cookies[c]
            except nbd.Error:
                failed += 1; del cookies[c]
except nbd.Error:
    pass                                  # the server closed after draining
open(os.environ["ACKED"], "w").write(" ".join(map(str, sorted(acked))))
print("acknowledged before the stop completed:", len(acked))
' 2>&1 || :
wait "$nbdkit_pid"; rc=$?
[ "$rc" -eq 0 ] || fail "graceful stop: exit status $rc"
[ -s "$tmp/acked" ] || fail "no write was acknowledged during the graceful stop"
"$PUNCHCACHE" check "$pool" || fail "pool not clean after the graceful stop"
start_punchcache "$tmp/g.sock" pool="$pool"
ACKED=$(cat "$tmp/acked") nbdsh -u "$(nbd_uri "$tmp/g.sock")" -c '
import os
for i in map(int, os.environ["ACKED"].split()):
    assert h.pread(4096, i * 4096) == bytes([i + 1]) * 4096, i
print("every acknowledged write survived the graceful stop")
' || fail "an acknowledged write was lost in the graceful stop"
stop_nbdkit
echo "punchcached ok"
