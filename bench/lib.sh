# bench/lib.sh - helpers shared by the bench/*.sh benchmarks.  Sourced, not
# run: `. "$(dirname "$0")/lib.sh"` right after `set -euo pipefail`.
#
# What it gives a benchmark:
#   messages      die, usage_error, log, warn
#   options       take_opt (--opt VAL / --opt=VAL / flags), want_uint,
#                 want_bytes (K/M/G/T suffixes), want_size (the same, whole
#                 MiB and a minimum), want_out_file,
#                 find_build (the punchcache build tree: plugin, tool and
#                 the punchcached server)
#   checks        need_cmds, need_fio_nbd, need_ram, need_disk,
#                 need_real_fs (O_DIRECT needs a disk file system, not tmpfs)
#   scratch       make_workdir: a private directory, removed at exit along
#                 with every server still running (trap on EXIT/INT/TERM)
#   servers       start_nbdkit, start_qemu_nbd, start_punchcached,
#                 stop_server, uri; each server has its own Unix socket in
#                 the work directory; peak RSS (VmHWM) is recorded per
#                 server when it stops (peak_rss); check_alive dies loudly
#                 when a server has died or stopped answering
#   fio           runfio (bounded by timeout(1); checks the server is still
#                 alive after every run), pass (one full sequential 1M pass
#                 that must move every byte), jget (JSON values)
#   numbers       summarize (median min max), ratio, commas, human, mib
#   report        machine_line (date, kernel, CPU, cores, tool versions),
#                 pc_stats_wait (a fresh punchcache stats=PATH snapshot)
#
# Conventions: globals are lower case (prog, repo, dir, pid[], ...); a
# failure is fatal (die, exit 1), a bad command line exits 2.  Nothing here
# reads the caller's options: values come in as arguments.

# Debian's python3 (needed by nbdsh, used here when jq is missing) must win
# over a pyenv shim earlier in PATH.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"
export LC_ALL=C

prog=${0##*/}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NBDKIT_THREADS=16
MIB=$(( 1 << 20 ))

# The exact command line, shell-quoted, for a report header:
#   cmdline=$(quote_cmdline "$0" "$@")
quote_cmdline () { local s; s=$(printf '%q ' "$@"); printf '%s' "${s% }"; }

# ---------------------------------------------------------------- messages

die ()   { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
warn ()  { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
usage_error () {
  printf '%s: %s\nTry "%s --help".\n' "$prog" "$*" "$prog" >&2; exit 2
}
log ()   { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- options

# take_opt "VALUED" "FLAGS" ARGS...: look at the first of ARGS.  VALUED and
# FLAGS are space-separated option names (e.g. "--runtime --reps" and
# "--quick -h --help").  Sets opt (the name), val (the value, "" for a
# flag) and nshift (arguments used: 1 or 2).  Anything else is a usage
# error: an unknown argument, a missing value, a value given to a flag.
take_opt () {
  local valued=" $1 " flags=" $2 "; shift 2
  opt=$1 val="" nshift=1
  case "$opt" in
    --*=*)
      val=${opt#*=}; opt=${opt%%=*}
      [[ $valued == *" $opt "* ]] || {
        [[ $flags == *" $opt "* ]] && usage_error "option $opt takes no value"
        usage_error "unknown argument: $1"; } ;;
    *)
      if [[ $valued == *" $opt "* ]]; then
        [ $# -ge 2 ] || usage_error "option $opt needs a value"
        val=$2; nshift=2
      elif [[ $flags != *" $opt "* ]]; then
        usage_error "unknown argument: $opt"
      fi ;;
  esac
}

# want_uint OPTION VALUE MAX-DIGITS: VALUE must be a whole number >= 1.
want_uint () {
  [[ $2 =~ ^[1-9][0-9]{0,$(( $3 - 1 ))}$ ]] ||
    usage_error "$1: want a whole number >= 1 (at most $3 digits), got '$2'"
}

# want_bytes VAR OPTION VALUE: set VAR to VALUE in bytes, with no other
# constraint.  K/M/G/T are powers of 1024, as fio and nbdkit read them.
want_bytes () {
  local var=$1 option=$2 value=$3 shift_bits
  [[ $value =~ ^([0-9]{1,15})([KkMmGgTt]?)$ ]] ||
    usage_error "$option: want a number with an optional K, M, G or T suffix, got '$value'"
  case "${BASH_REMATCH[2]}" in
    "")   shift_bits=0 ;;  [Kk]) shift_bits=10 ;; [Mm]) shift_bits=20 ;;
    [Gg]) shift_bits=30 ;; [Tt]) shift_bits=40 ;;
  esac
  printf -v "$var" '%s' $(( 10#${BASH_REMATCH[1]} << shift_bits ))
}

# want_size VAR OPTION VALUE MIN-BYTES: want_bytes, and the result must be
# a whole number of MiB and at least MIN-BYTES.
want_size () {
  local var=$1 option=$2 value=$3 min=$4 bytes
  want_bytes bytes "$option" "$value"
  (( bytes >= min )) ||
    usage_error "$option: at least $(( min / MIB ))M, got '$value'"
  (( bytes % MIB == 0 )) ||
    usage_error "$option: must be a whole number of MiB, got '$value'"
  printf -v "$var" '%s' "$bytes"
}

# want_out_file FILE: FILE's directory must exist and be writable.
want_out_file () {
  local d
  d=$(dirname -- "$1")
  { [ -d "$d" ] && [ -w "$d" ]; } ||
    usage_error "--out: directory '$d' does not exist or is not writable"
}

# find_build [DIR]: the build tree holding the plugin and the admin tool:
# DIR, else $BUILD, else ../build next to the source tree if it holds a
# build, else the source tree itself (in-tree builds).  Sets build, plugin,
# tool and punchcached (absolute paths; the server is checked only by
# need_punchcached, for the benchmarks that run it).
find_build () {
  local b=${1:-} plugin_rel=plugins/punchcache/.libs/nbdkit-punchcache-plugin.so
  local tool_rel=tools/punchcache
  if [ -z "$b" ]; then
    if [ -n "${BUILD:-}" ]; then b=$BUILD
    elif [ -f "$repo/../build/$plugin_rel" ]; then b=$repo/../build
    else b=$repo
    fi
  fi
  [ -d "$b" ] || die "build directory '$b' does not exist"
  build=$(cd "$b" && pwd)
  plugin=$build/$plugin_rel
  tool=$build/$tool_rel
  punchcached=$build/server/punchcached
  { [ -f "$plugin" ] && [ -x "$tool" ]; } ||
    die "no punchcache build in '$build' (want $plugin_rel and $tool_rel):
  build first (scripts/bootstrap.sh --no-install, or autoreconf -fi &&
  ./configure && make), or point --build (or \$BUILD) at the build directory"
}

# need_punchcached: the standalone server of the build found by find_build.
need_punchcached () {
  [ -x "$punchcached" ] ||
    die "no punchcached in '$build' (want server/punchcached): build it (make), or leave punchcached out of --servers"
}

# ---------------------------------------------------------------- checks

need_cmds () {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found in PATH"
  done
}

# fio with ioengine=nbd, and a JSON reader (jq, else python3).
need_fio_nbd () {
  need_cmds fio timeout awk
  fio --enghelp=nbd 2>/dev/null | grep -q uri ||
    die "this fio ($(fio --version)) has no ioengine=nbd (fio --enghelp=nbd)"
  if command -v jq >/dev/null; then json_tool=jq
  elif command -v python3 >/dev/null; then json_tool=python3
  else die "need jq or python3 to read fio's and punchcache's JSON"
  fi
}

# need_ram BYTES WHY: MemAvailable must cover BYTES.
need_ram () {
  local avail_kb
  avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
  (( avail_kb >= $1 / 1024 )) ||
    die "$2 needs about $(( $1 / MIB ))M of free RAM, only $(( avail_kb / 1024 ))M available; use a smaller --size"
}

# need_disk DIR BYTES WHY: the file system of DIR must have BYTES free.
need_disk () {
  local avail_kb
  avail_kb=$(df -Pk "$1" | awk 'NR == 2 { print $4 }')
  (( avail_kb >= $2 / 1024 )) ||
    die "$3 needs $(( $2 / MIB ))M in $(dirname "$1"), only $(( avail_kb / 1024 ))M free; set TMPDIR"
}

# need_real_fs DIR: refuse RAM file systems.  punchcache reads and writes
# its pool with O_DIRECT; on tmpfs it falls back to buffered I/O and the
# "disk" is RAM, which would make every number meaningless.  Sets fs_type.
need_real_fs () {
  local t
  t=$(stat -f -c %T "$1")
  case "$t" in
    tmpfs|ramfs) die "$1 is on $t: set TMPDIR to a directory on a disk file system (ext4, xfs, ...)" ;;
  esac
  # For the report: type and mount options (stat -f calls ext4 "ext2/ext3";
  # options such as discard change what every punch costs).
  fs_type=$(findmnt -n -o FSTYPE,OPTIONS -T "$1" 2>/dev/null | awk '{ print $1 " (" $2 ")" }')
  [ -n "$fs_type" ] || fs_type=$t
}

# ---------------------------------------------------------------- scratch

declare -A pid=()         # server name -> pid, while it runs
declare -A export_of=()   # server name -> NBD export name (default "")
declare -A hwm_kb=()      # server name -> peak VmHWM (kB) over its lives
dir=""

cleanup () {
  local name
  for name in "${!pid[@]}"; do
    kill_server "${pid[$name]}"
  done
  wait 2>/dev/null || :
  [ -z "$dir" ] || {
    if [ -n "${BENCH_KEEP:-}" ]; then log "kept $dir (BENCH_KEEP)"
    else rm -rf -- "$dir"; fi; }
}

# make_workdir PREFIX: a private directory under $TMPDIR (default /tmp),
# removed at exit with every server still running (kept, for a post-mortem
# of the logs and fio JSON, when $BENCH_KEEP is set).
make_workdir () {
  dir=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# ---------------------------------------------------------------- servers

# kill_server PID: SIGTERM, up to 5 s to exit, then SIGKILL.
kill_server () {
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || :
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || :
}

# uri NAME: the NBD URI of server NAME.
uri () {
  printf 'nbd+unix:///%s?socket=%s' "${export_of[$1]:-}" "$dir/$1.sock"
}

# wait_ready NAME WHAT: until NAME's pid file exists and it answers an NBD
# handshake (nbdinfo), at most 30 s; dies with its log otherwise.
wait_ready () {
  local name=$1 what=$2
  for _ in $(seq 300); do
    if [ -s "$dir/$name.pid" ] &&
       timeout 5 nbdinfo --size "$(uri "$name")" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/$name.log" >&2
  die "$what $name did not start"
}

# start_nbdkit NAME [ENV=VALUE...] ARGS...: nbdkit in the foreground (so
# its pid is ours and its log goes to $dir/NAME.log), in the background,
# with --threads $NBDKIT_THREADS; returns once it serves.  Leading
# ENV=VALUE words go to its environment.
start_nbdkit () {
  local name=$1; shift
  local envs=()
  while [ $# -gt 0 ] && [[ $1 == [A-Z]*=* ]]; do envs+=("$1"); shift; done
  rm -f "$dir/$name.pid" "$dir/$name.sock"  # nbdkit leaves its socket behind
  env "${envs[@]}" nbdkit -f --exit-with-parent --log=stderr \
    --threads "$NBDKIT_THREADS" \
    -U "$dir/$name.sock" -P "$dir/$name.pid" "$@" \
    </dev/null >"$dir/$name.log" 2>&1 &
  pid[$name]=$!
  wait_ready "$name" nbdkit
}

# start_qemu_nbd NAME ARGS...: qemu-nbd in the foreground, persistent (-t),
# on its own socket; returns once it serves.  qemu-nbd has no
# --exit-with-parent: the EXIT trap stops it.
start_qemu_nbd () {
  local name=$1; shift
  rm -f "$dir/$name.pid" "$dir/$name.sock"  # nbdkit leaves its socket behind
  qemu-nbd -t -k "$dir/$name.sock" --pid-file="$dir/$name.pid" "$@" \
    </dev/null >"$dir/$name.log" 2>&1 &
  pid[$name]=$!
  wait_ready "$name" qemu-nbd
}

# start_punchcached NAME KEY=VALUE...: the standalone server in the
# foreground, with the plugin's parameters and its defaults otherwise (event
# loop threads: one per CPU), exiting with us; returns once it serves.
start_punchcached () {
  local name=$1; shift
  rm -f "$dir/$name.pid" "$dir/$name.sock"
  "$punchcached" -f --exit-with-parent -U "$dir/$name.sock" -P "$dir/$name.pid" \
    "$@" </dev/null >"$dir/$name.log" 2>&1 &
  pid[$name]=$!
  wait_ready "$name" punchcached
}

# check_alive NAME WHEN: NAME's process must still run (not exited, not a
# zombie) and answer an NBD handshake within 10 s.  Otherwise die, loudly,
# with how it ended, WHEN (e.g. "after fio a.0") and the end of its log, so
# that a crash is never folded into a figure or blamed on a later run.
check_alive () {
  local name=$1 when=$2 p=${pid[$1]} state rc=0 why
  state=$(awk '/^State:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || :
  if [ -n "$state" ] && [ "$state" != Z ]; then
    timeout 10 nbdinfo --size "$(uri "$name")" >/dev/null 2>&1 && return 0
    why="is running but did not answer an NBD handshake within 10 s"
  else
    wait "$p" || rc=$?
    unset "pid[$name]"
    why="DIED (exit status $rc"
    (( rc <= 128 )) || why+=", signal SIG$(kill -l $(( rc - 128 )) 2>/dev/null || echo $(( rc - 128 )))"
    why+=")"
  fi
  printf '%s: --- end of %s ---\n' "$prog" "$dir/$name.log" >&2
  tail -n 20 "$dir/$name.log" >&2
  if grep -q 'sock >= 0' "$dir/$name.log" 2>/dev/null; then
    printf '%s: that is the abort of nbdkit before 1.33.10 when a client hangs up with requests queued\n' "$prog" >&2
  fi
  die "server $name $why $when"
}

# note_rss NAME: fold NAME's current VmHWM into hwm_kb[NAME].
note_rss () {
  local kb
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/${pid[$1]}/status" 2>/dev/null) ||
    return 0
  [ -n "$kb" ] || return 0
  (( kb > ${hwm_kb[$1]:-0} )) && hwm_kb[$1]=$kb
  return 0
}

# peak_rss NAME: "123.4 MiB", the peak over NAME's lives so far (and now).
peak_rss () {
  [ -z "${pid[$1]:-}" ] || note_rss "$1"
  human $(( ${hwm_kb[$1]:-0} * 1024 ))
}

# stop_server NAME [SECONDS]: record its peak RSS, SIGTERM, wait (at most
# SECONDS, default 30); returns its exit status.  A server that must be
# killed is a failure.
stop_server () {
  local name=$1 p=${pid[$1]} secs=${2:-30} rc=0
  note_rss "$name"
  kill -TERM "$p" 2>/dev/null || :
  for _ in $(seq $(( secs * 10 ))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && die "$name did not exit within $secs s of SIGTERM"
  wait "$p" || rc=$?
  unset "pid[$name]"
  return "$rc"
}

# ---------------------------------------------------------------- fio

# jget FILE KEY.KEY.N...: one value out of a JSON file (numbers are indices).
jget () {
  local file=$1 path=$2
  if [ "$json_tool" = jq ]; then
    local arr
    arr=$(awk -v p="$path" 'BEGIN {
      n = split(p, k, "."); s = "["
      for (i = 1; i <= n; i++) {
        if (k[i] ~ /^[0-9]+$/) s = s k[i]; else s = s "\"" k[i] "\""
        if (i < n) s = s ","
      }
      print s "]" }')
    jq -r --argjson p "$arr" \
      'getpath($p) | if . == null then error("missing") else . end' "$file"
  else
    python3 - "$file" "$path" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if k.isdigit() else v[k]
if v is None:
    sys.exit(1)
print(v if isinstance(v, str) else json.dumps(v))
PY
  fi
}

# jlen FILE KEY.KEY...: the length of a JSON array (or object).
jlen () {
  if [ "$json_tool" = jq ]; then
    jq -r ".$2 | length" "$1"
  else
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if k.isdigit() else v[k]
print(len(v))' "$1" "$2"
  fi
}

# runfio NAME TAG FIO-ARGS...: one fio run against server NAME (the caller
# gives --name= for each job); JSON to $dir/NAME.TAG.json.  Fails on a fio
# error or a job error, and when the server did not survive the run
# (check_alive).  Bounded by the largest --runtime= among the arguments
# (600 s without one) plus 60 s, by timeout(1).  With runfio_then set to a
# command, that command runs with NAME and TAG right after fio succeeded,
# before anything else reaches the server (the FLUSH of a burst).
runfio_then=""
runfio () {
  local name=$1 tag=$2; shift 2
  local json=$dir/$name.$tag.json rt=0 arg njobs j
  for arg in "$@"; do
    case "$arg" in
      --runtime=*) (( ${arg#--runtime=} > rt )) && rt=${arg#--runtime=} ;;
    esac
  done
  (( rt > 0 )) || rt=600
  if ! timeout -k 5 $(( rt + 60 )) \
       fio --ioengine=nbd --uri="$(uri "$name")" \
           --output-format=json --output="$json" "$@" \
       >"$dir/fio.$name.$tag.log" 2>&1; then
    cat "$dir/fio.$name.$tag.log" >&2
    check_alive "$name" "during fio $tag"
    die "fio $tag on $name failed (or took over $(( rt + 60 )) s)"
  fi
  [ -z "$runfio_then" ] || "$runfio_then" "$name" "$tag"
  check_alive "$name" "after fio $tag (the figure of that run is not used)"
  njobs=$(jlen "$json" jobs)
  for (( j = 0; j < njobs; j++ )); do
    [ "$(jget "$json" "jobs.$j.error")" = 0 ] ||
      die "fio $tag on $name: job $j error (see $json)"
  done
}

# pass NAME RW BYTES [FIO-ARGS...]: one full sequential 1M pass (write or
# read) from offset 0 that must move exactly BYTES bytes.
pass () {
  local name=$1 rw=$2 bytes=$3 moved; shift 3
  runfio "$name" "pass-$rw" --name="pass-$rw" --rw="$rw" --bs=1M \
    --iodepth=8 --size="$bytes" --runtime=600 "$@"
  moved=$(jget "$dir/$name.pass-$rw.json" "jobs.0.$rw.io_bytes")
  [ "$moved" = "$bytes" ] || die "$rw pass on $name moved $moved of $bytes bytes"
}

# ---------------------------------------------------------------- numbers

# human BYTES -> "123.4 MiB"
human () { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# commas 1234567 -> 1,234,567
commas () {
  local n=$1 s=""
  while (( ${#n} > 3 )); do s=,${n: -3}$s; n=${n:0:${#n}-3}; done
  printf '%s%s' "$n" "$s"
}

# summarize "V1 V2 ..." -> "median min max" (with the precision of FMT,
# default %.0f; an even count takes the mean of the middle two).
summarize () {
  tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk -v f="${2:-%.0f}" '
    { v[NR] = $1 }
    END { if (NR == 0) exit 1
          m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf f " " f " " f "\n", m, v[1], v[NR] }'
}

# ratio A B -> "1.23×" (A / B), "n/a" when B is 0 or either is empty.
ratio () {
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
    if (a == "" || b == "" || b + 0 == 0) print "n/a"
    else printf "%.2f×\n", a / b }'
}

# ---------------------------------------------------------------- report

# machine_line: date, kernel, CPU, core count, fio and nbdkit versions
# (and qemu-nbd's with "qemu").
machine_line () {
  local cpu q=""
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  [ "${1:-}" != qemu ] || q=" · $(qemu-nbd --version | head -1)"
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · Linux $(uname -r) · ${cpu:-unknown CPU}" \
       "· $(nproc) CPU(s) · $(fio --version) · $(nbdkit --version)$q"
}

# pc_stats_wait FILE OUT: punchcache rewrites its stats file every 2 s.
# Wait for one rewrite that starts after now and copy it to OUT, so the
# snapshot covers all I/O so far (at most 10 s).
pc_stats_wait () {
  local file=$1 out=$2 before now
  before=$(jget "$file" uptime_ms 2>/dev/null || echo none)
  for _ in $(seq 100); do
    sleep 0.1
    now=$(jget "$file" uptime_ms 2>/dev/null) || continue
    if [ "$now" != "$before" ]; then
      cp "$file" "$out"
      jget "$out" cache.hits >/dev/null && return 0
    fi
  done
  die "punchcache did not rewrite $file within 10 s"
}
