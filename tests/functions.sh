# punchcache test helpers, sourced by tests/test-*.sh.
#
# Conventions (automake): exit 0 = pass, 1 = fail, 77 = skip.  The harness
# exports top_srcdir, top_builddir, PLUGIN (path of the built plugin .so),
# PUNCHCACHE (the admin tool) and NBDKIT.  Every test works in its own
# temporary directory, removed on exit, and stops every server it started.

set -euo pipefail

: "${top_builddir:?run through make check (top_builddir unset)}"
: "${top_srcdir:?run through make check (top_srcdir unset)}"
: "${PLUGIN:=$top_builddir/plugins/punchcache/.libs/nbdkit-punchcache-plugin.so}"
: "${PUNCHCACHE:=$top_builddir/tools/punchcache}"
: "${NBDKIT:=nbdkit}"

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
trap _run_cleanup EXIT INT TERM

# A private scratch directory, removed at exit.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pctest.XXXXXX")
cleanup_fn "rm -rf '$tmp'"

skip () { echo "SKIP: $*" >&2; exit 77; }
fail () { echo "FAIL: $*" >&2; exit 1; }

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

# start_nbdkit SOCK [nbdkit args after the plugin...]
# Starts "nbdkit --foreground punchcache ..." on a Unix socket in the
# background, waits until the socket accepts, and registers the kill.
# Sets $nbdkit_pid.  Server stderr goes to $tmp/nbdkit.log.
start_nbdkit () {
    local sock=$1; shift
    rm -f "$sock"
    "$NBDKIT" --foreground --exit-with-parent -U "$sock" "$@" \
        2>>"$tmp/nbdkit.log" &
    nbdkit_pid=$!
    cleanup_fn "kill $nbdkit_pid 2>/dev/null; wait $nbdkit_pid 2>/dev/null"
    local i
    for ((i=0; i<300; i++)); do
        [ -S "$sock" ] && return 0
        kill -0 "$nbdkit_pid" 2>/dev/null || {
            cat "$tmp/nbdkit.log" >&2; fail "nbdkit exited during start"; }
        sleep 0.1
    done
    fail "nbdkit did not create $sock within 30 s"
}

# start_punchcache SOCK PARAMS...: start_nbdkit with our plugin.
start_punchcache () {
    local sock=$1; shift
    start_nbdkit "$sock" "$PLUGIN" "$@"
}

# stop_nbdkit: graceful stop (SIGTERM) and wait; the pool is committed.
stop_nbdkit () {
    kill "$nbdkit_pid" 2>/dev/null || :
    wait "$nbdkit_pid" 2>/dev/null || :
}

# nbd_uri SOCK [EXPORT]
nbd_uri () { echo "nbd+unix:///${2:-}?socket=$1"; }
