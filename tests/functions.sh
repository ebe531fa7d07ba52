# punchcache test helpers, sourced by tests/test-*.sh.
#
# Conventions (automake): exit 0 = pass, 1 = fail, 77 = skip, 99 = hard
# error.  The harness exports top_srcdir, top_builddir, PLUGIN (path of the
# built plugin .so), PUNCHCACHED (the standalone server, server/punchcached),
# PUNCHCACHE (the admin tool) and NBDKIT.  Every test works in its own
# temporary directory, removed on exit, and stops every server it started.
#
# Front-ends (issue 12): every integration test body runs against either
# front-end, chosen by PC_FRONTEND:
#   plugin       nbdkit with our plugin (the default)
#   punchcached  the standalone server
# make check runs each integration test once per front-end (tests/NAME.sh
# with PC_FRONTEND=plugin, tests/NAME-punchcached.srv with punchcached; see
# Makefile.am).  Tests start OUR server only through the front-end-neutral
# helpers below (start_punchcache, punchcache_refuses, punchcache_starts,
# punchcache_help); start_nbdkit is for other nbdkit plugins (peers).

set -euo pipefail

: "${top_builddir:?run through make check (top_builddir unset)}"
: "${top_srcdir:?run through make check (top_srcdir unset)}"
: "${PLUGIN:=$top_builddir/plugins/punchcache/.libs/nbdkit-punchcache-plugin.so}"
: "${PUNCHCACHE:=$top_builddir/tools/punchcache}"
: "${NBDKIT:=nbdkit}"
: "${PUNCHCACHED:=$top_builddir/server/punchcached}"
: "${PC_FRONTEND:=plugin}"

# Debian's python3 (with python3-libnbd, used by nbdsh) must win over any
# other python3 on PATH (pyenv, virtualenvs).
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export PATH

_cleanup_fns=()
cleanup_fn () { _cleanup_fns+=("$*"); }
_run_cleanup () {
    local rc=$? i
    for ((i=${#_cleanup_fns[@]}-1; i>=0; i--)); do
        eval "${_cleanup_fns[$i]}" || :
    done
    exit $rc
}
# A test stopped by a signal (make's timeout, ^C) fails: in a signal trap
# $? is the last command's status, so running the cleanup there could exit
# 0 and turn a killed test into a pass.  Exit with the signal's status;
# the EXIT trap cleans up.
trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private scratch directory, removed at exit.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pctest.XXXXXX")
cleanup_fn "rm -rf '$tmp'"

# Every verdict names the front-end, so a failure in the log of either
# variant says which one ran.
skip () { echo "SKIP [$PC_FRONTEND]: $*" >&2; exit 77; }
fail () { echo "FAIL [$PC_FRONTEND]: $*" >&2; exit 1; }

case $PC_FRONTEND in
plugin)
    echo "front-end: plugin ($("$NBDKIT" --version 2>/dev/null || echo "$NBDKIT: not runnable"), $PLUGIN)" ;;
punchcached)
    # Skips only while the server is not built; once it is, every variant
    # runs (and fails if it cannot start).
    [ -x "$PUNCHCACHED" ] || skip "punchcached not built ($PUNCHCACHED)"
    echo "front-end: punchcached ($PUNCHCACHED)" ;;
*)
    echo "PC_FRONTEND=$PC_FRONTEND: expected plugin or punchcached" >&2; exit 99 ;;
esac

# requires CMD...: skip the test unless the command succeeds.
requires () { "$@" >/dev/null 2>&1 || skip "requires: $*"; }
requires_root () { [ "$(id -u)" = 0 ] || skip "requires root"; }

# expect_fail STATUS PATTERN CMD...: CMD (the admin tool) must exit with
# STATUS and say PATTERN (a grep -i basic regex) on stderr, in the form
# "punchcache: ...".  Leaves its output in $tmp/out and $tmp/err.
expect_fail () {
    local want=$1 pat=$2 rc=0; shift 2
    "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$tmp/out" "$tmp/err"; fail "'$*' exited $rc, not $want"; }
    grep -qi -- "$pat" "$tmp/err" || { cat "$tmp/err"; fail "'$*' did not say '$pat'"; }
    grep -q "^punchcache: " "$tmp/err" || { cat "$tmp/err"; fail "'$*': message not prefixed"; }
}

# run_fuzzer NAME ITERATIONS SECONDS: run tests/fuzz-NAME-asan (fuzz/,
# built by make check) for that many inputs or seconds, whichever ends
# first; fail unless it exits 0 having run at least one input.
run_fuzzer () {
    local name=$1 fuzz=$top_builddir/tests/fuzz-$1-asan out rc=0
    requires test -x "$fuzz"
    out=$("$fuzz" "$2" "$3" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || { echo "$out" >&2; fail "fuzz-$name-asan exited $rc"; }
    echo "$out"
    grep -q "^fuzz-$name: [1-9][0-9]* inputs" <<< "$out" ||
        fail "fuzz-$name-asan ran no input"
}

# _start_server SOCK CMD...: run CMD (a server in the foreground on the
# Unix socket SOCK) in the background, wait until the socket exists, and
# register the kill.  Sets $nbdkit_pid (and its alias $server_pid) to the
# server's own pid (no wrapper: tests read /proc/PID and kill -9 it).
# Server stderr goes to $tmp/nbdkit.log ($server_log), whichever server.
server_log=$tmp/nbdkit.log
_start_server () {
    local sock=$1 i; shift
    rm -f "$sock"
    "$@" 2>>"$server_log" &
    nbdkit_pid=$!
    server_pid=$nbdkit_pid
    cleanup_fn "kill $nbdkit_pid 2>/dev/null; wait $nbdkit_pid 2>/dev/null"
    for ((i=0; i<300; i++)); do
        [ -S "$sock" ] && return 0
        kill -0 "$nbdkit_pid" 2>/dev/null || {
            cat "$server_log" >&2; fail "${1##*/} exited during start"; }
        sleep 0.1
    done
    fail "${1##*/} did not create $sock within 30 s"
}

# start_nbdkit SOCK NBDKIT-ARGS...: "nbdkit --foreground --exit-with-parent
# -U SOCK NBDKIT-ARGS..." -- for other nbdkit plugins (peers); our own
# server goes through start_punchcache.
start_nbdkit () {
    local sock=$1; shift
    _start_server "$sock" "$NBDKIT" --foreground --exit-with-parent -U "$sock" "$@"
}

# punchcache_cmd SOCK [OPTIONS...] PARAMS...: print (NUL-separated, for
# mapfile -d '') the command line that serves PARAMS on the Unix socket
# SOCK in the foreground with the chosen front-end.  Leading OPTIONS are
# the server options both front-ends share (nbdkit's: -D punchcache.X=N,
# -r, -t N, -e NAME, -v, ...); they go before the plugin, as nbdkit
# requires.  SOCK "-" means no -U (for --help).
punchcache_cmd () {
    local sock=$1 opts=(); shift
    [ "$sock" = - ] || opts=(--foreground --exit-with-parent -U "$sock")
    while [ $# -gt 0 ]; do
        case $1 in
        -D|-t|-e|-P|-p|-i|--threads|--exportname|--pidfile|--port|--ipaddr|\
        --tls|--tls-certificates|--tls-psk|--debug)
            opts+=("$1" "$2"); shift 2 ;;
        -*) opts+=("$1"); shift ;;
        *) break ;;
        esac
    done
    case $PC_FRONTEND in
    plugin) printf '%s\0' "$NBDKIT" "${opts[@]}" "$PLUGIN" "$@" ;;
    punchcached) printf '%s\0' "$PUNCHCACHED" "${opts[@]}" "$@" ;;
    esac
}

# start_punchcache SOCK [OPTIONS...] PARAMS...: start our server (the
# chosen front-end) on SOCK; see punchcache_cmd and _start_server.
start_punchcache () {
    local cmd
    mapfile -d '' cmd < <(punchcache_cmd "$@")
    _start_server "$1" "${cmd[@]}"
}

# punchcache_refuses MESSAGE-REGEX [OPTIONS...] PARAMS...: the chosen
# front-end must refuse to start -- exit non-zero by itself, not by a
# signal, within 30 s, without serving -- and say MESSAGE-REGEX (grep -iE)
# on stderr.  Its output is left in $tmp/refused.out.
punchcache_refuses () {
    local want=$1 sock=$tmp/refused.sock cmd pid rc=0 i; shift
    mapfile -d '' cmd < <(punchcache_cmd "$sock" "$@")
    rm -f "$sock"
    "${cmd[@]}" > "$tmp/refused.out" 2>&1 &
    pid=$!
    # Alive with its socket for 2 s, or alive after 30 s: it is serving.
    for ((i=0; i<300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        if [ -S "$sock" ] && sleep 2 && kill -0 "$pid" 2>/dev/null; then i=300; break; fi
        sleep 0.1
    done
    if [ "$i" -ge 300 ]; then
        kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || :
        cat "$tmp/refused.out" >&2; fail "started with: $*"
    fi
    wait "$pid" || rc=$?
    if [ "$rc" = 0 ]; then cat "$tmp/refused.out" >&2; fail "exited 0 with: $*"; fi
    if [ "$rc" -ge 124 ]; then cat "$tmp/refused.out" >&2; fail "crashed (exit $rc) with: $*"; fi
    grep -qiE -- "$want" "$tmp/refused.out" ||
        { cat "$tmp/refused.out" >&2; fail "no message matching '$want' for: $*"; }
    echo "refused as expected: $* -> $(grep -iE -- "$want" "$tmp/refused.out" | head -n1)"
}

# punchcache_starts [OPTIONS...] PARAMS...: the chosen front-end starts
# with PARAMS (serves its socket), then stops gracefully.
punchcache_starts () {
    start_punchcache "$tmp/starts.sock" "$@"
    stop_nbdkit
}

# punchcache_help: the chosen front-end's --help (plugin: nbdkit PLUGIN
# --help) on stdout.
punchcache_help () {
    local cmd
    mapfile -d '' cmd < <(punchcache_cmd - --help)
    "${cmd[@]}"
}

# start_verifier SOCK MIN_OPS: run the well-behaved libnbd client
# (tests/nbdraw.py verify) in the background on SOCK's default export: it
# writes and verifies random 64 KiB blocks of [0, 8 MiB) until
# stop_verifier.  Returns once it has done MIN_OPS operations (fails after
# 30 s).  verifier_progress prints its operation count so far.
start_verifier () {
    local i
    rm -f "$tmp/verify.stop" "$tmp/verify.progress"
    python3 "$top_srcdir/tests/nbdraw.py" verify "$1" 0 $((8 << 20)) \
        "$tmp/verify.stop" "$tmp/verify.progress" > "$tmp/verify.out" 2>&1 &
    verifier_pid=$!
    cleanup_fn "touch '$tmp/verify.stop'; kill $verifier_pid 2>/dev/null; wait $verifier_pid 2>/dev/null"
    for ((i = 0; i < 300; i++)); do
        [ "$(verifier_progress)" -ge "$2" ] && return 0
        kill -0 "$verifier_pid" 2>/dev/null || { cat "$tmp/verify.out" >&2; fail "the verifier did not start"; }
        sleep 0.1
    done
    fail "the verifier did not make $2 operations in 30 s"
}
verifier_progress () { cat "$tmp/verify.progress" 2>/dev/null || echo 0; }

# stop_verifier: stop the verifier and wait for it; print its report;
# return its status (0: every operation succeeded and every read matched).
stop_verifier () {
    local rc=0
    touch "$tmp/verify.stop"
    wait "$verifier_pid" || rc=$?
    cat "$tmp/verify.out"
    return $rc
}

# server_alive: true while the server started last runs (a zombie, which
# kill -0 still finds, counts as dead).
server_alive () {
    local st
    st=$(sed 's/.*) //' "/proc/$nbdkit_pid/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st%% *}" != Z ] && [ "${st%% *}" != X ]
}

# stop_nbdkit: graceful stop (SIGTERM) of the server started last (either
# front-end or a peer) and wait; the pool is committed and closed.
stop_nbdkit () {
    kill "$nbdkit_pid" 2>/dev/null || :
    wait "$nbdkit_pid" 2>/dev/null || :
}

# nbd_uri SOCK [EXPORT]
nbd_uri () { echo "nbd+unix:///${2:-}?socket=$1"; }

# ---- origins (issue 15) ----
# origin_vars: the names every origin test uses -- our server on $sock
# ($uri) with its pool $pool, the origin on $osock ($ouri) serving $img.
origin_vars () {
    pool=$tmp/pool sock=$tmp/sock osock=$tmp/origin.sock img=$tmp/origin.img
    uri=$(nbd_uri "$sock") ouri=$(nbd_uri "$osock")
}

# start_origin NBDKIT-ARGS...: an nbdkit origin on $osock; its pid is
# $origin_pid, and nbdkit_pid stays our server's (for stop_nbdkit),
# whichever started last.  stop_origin [SIGNAL]: stop it (SIGTERM makes
# nbdkit wait for its clients: stop our server first) and remove $osock.
start_origin () {
    local ours=${nbdkit_pid:-}
    start_nbdkit "$osock" "$@"
    origin_pid=$nbdkit_pid
    nbdkit_pid=$ours server_pid=$ours
}
stop_origin () {
    kill "-${1:-TERM}" "$origin_pid" 2>/dev/null || :
    wait "$origin_pid" 2>/dev/null || :
    rm -f "$osock"
}

# check_pool LABEL: `punchcache check` finds $pool clean.
check_pool () {
    "$PUNCHCACHE" check "$pool" > "$tmp/check.out" 2>&1 ||
        { cat "$tmp/check.out"; fail "punchcache check $pool ($1)"; }
    echo "punchcache check: clean ($1)"
}
