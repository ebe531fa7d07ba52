#!/usr/bin/env bash
# bench/cached-read.sh - cached 4K random reads: punchcache vs nbdkit memory
# and nbdkit null, side by side, printed as a markdown table for the README.
# Run with --help for the full description.
set -euo pipefail

# Debian's python3 (needed by nbdsh, used here when jq is missing) must win
# over a pyenv shim earlier in PATH.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"
export LC_ALL=C

prog=${0##*/}
repo=$(cd "$(dirname "$0")/.." && pwd)

usage () {
  cat <<EOF
NAME
    $prog - benchmark cached 4K random reads of punchcache against the
    nbdkit memory and null plugins

SYNOPSIS
    bench/$prog [--runtime S] [--reps N] [--size SIZE] [--build DIR]
                         [--out FILE]
    bench/$prog --help

DESCRIPTION
    Starts three nbdkit servers, each on its own Unix socket in a private
    temporary directory, all with --threads 16:

      punchcache  a fresh pool (capacity 2 x SIZE) holding one thin volume
                  of SIZE bytes, served with cache=2 x SIZE so the whole
                  volume fits in the block cache;
      memory      nbdkit memory SIZE (the data lives in nbdkit's RAM);
      null        nbdkit null SIZE (reads return zeros and touch no data:
                  the protocol's and nbdkit's own ceiling).

    The punchcache volume and the memory disk are first filled completely
    (fio, sequential 1M writes), so every read hits allocated data, then
    punchcache's cache is warmed by one sequential 1M read pass over the
    whole volume.  The measured load is then, for each server:

      fio --ioengine=nbd --rw=randread --bs=4k --iodepth=32 --numjobs=2
          --group_reporting --time_based --runtime=S --size=SIZE

    (two NBD connections, 32 requests in flight on each).  This is repeated
    N times; within a repetition the three servers run one after another,
    and the order rotates from one repetition to the next so slow drift of
    the machine (thermal, background load) does not favour one server.

    Output (standard output, and FILE with --out) is markdown: a header
    naming the date, kernel, CPU, core count, fio and nbdkit versions and
    the exact command line, then a table with, per server, the median,
    minimum and maximum IOPS over the N repetitions, the peak resident set
    size of its nbdkit process (VmHWM, read once all runs are done) and the
    ratio punchcache median / that server's median.  Below the table: the
    raw IOPS of every run and punchcache's block-cache hit rate during the
    timed runs, taken from the plugin's stats=PATH file (written when
    nbdkit exits on SIGTERM).  Progress goes to standard error.

OPTIONS
    --runtime S   seconds per timed fio run (integer >= 1; default 10)
    --reps N      repetitions of the three runs (integer >= 1; default 3)
    --size SIZE   size of every export, with an optional suffix K, M, G or
                  T (powers of 1024, as fio and nbdkit read them); a whole
                  number of MiB, at least 16M (default 1G)
    --build DIR   build tree holding plugins/punchcache/.libs/
                  nbdkit-punchcache-plugin.so and tools/punchcache
                  (default: \$BUILD if set, else ../build next to the
                  source tree if it holds a build, else the source tree
                  itself, for in-tree builds)
    --out FILE    also write the markdown report to FILE
    -h, --help    show this help and exit

REQUIREMENTS
    nbdkit (with the memory and null plugins), fio with ioengine=nbd
    (fio --enghelp=nbd), and jq or python3.  Memory: about 2 x SIZE free
    (the memory disk plus punchcache's filled cache).  Disk: SIZE in the
    temporary directory (\$TMPDIR, default /tmp) for the pool file; a pool
    on tmpfs would make it a RAM disk, and punchcache then cannot use
    O_DIRECT, so keep \$TMPDIR on a real file system.

EXAMPLES
    bench/$prog                                   # 3 x 10 s, 1 GiB
    bench/$prog --runtime 3 --reps 1 --size 256M  # quick smoke run
    bench/$prog --out bench/cached-read.md

EXIT STATUS
    0 on success, 1 on a failure (a server that did not start, a fio run
    that failed or moved no data), 2 on a usage error.
EOF
}

die ()   { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
usage_error () {
  printf '%s: %s\nTry "%s --help".\n' "$prog" "$*" "$prog" >&2; exit 2
}
log ()   { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- options

# The exact command line, shell-quoted, for the report header.
cmdline=$(printf '%q ' "$0" "$@"); cmdline=${cmdline% }

runtime=10
reps=3
size_arg=1G
build=""
out=""

while [ $# -gt 0 ]; do
  opt=$1
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --runtime=*|--reps=*|--size=*|--build=*|--out=*)
      val=${opt#*=}; opt=${opt%%=*} ;;
    --runtime|--reps|--size|--build|--out)
      [ $# -ge 2 ] || usage_error "option $opt needs a value"
      val=$2; shift ;;
    *) usage_error "unknown argument: $opt" ;;
  esac
  shift
  case "$opt" in
    --runtime) runtime=$val ;;
    --reps)    reps=$val ;;
    --size)    size_arg=$val ;;
    --build)   build=$val ;;
    --out)     out=$val ;;
  esac
done

[[ $runtime =~ ^[1-9][0-9]{0,4}$ ]] ||
  usage_error "--runtime: want a whole number of seconds >= 1, got '$runtime'"
[[ $reps =~ ^[1-9][0-9]{0,2}$ ]] ||
  usage_error "--reps: want a whole number >= 1, got '$reps'"

# SIZE -> bytes.  K/M/G/T are powers of 1024, as in fio and nbdkit.
[[ $size_arg =~ ^([0-9]{1,15})([KkMmGgTt]?)$ ]] ||
  usage_error "--size: want a number with an optional K, M, G or T suffix, got '$size_arg'"
case "${BASH_REMATCH[2]}" in
  "")  shift_bits=0 ;;  [Kk]) shift_bits=10 ;; [Mm]) shift_bits=20 ;;
  [Gg]) shift_bits=30 ;; [Tt]) shift_bits=40 ;;
esac
size=$(( 10#${BASH_REMATCH[1]} << shift_bits ))
mib=$(( 1 << 20 ))
(( size >= 16 * mib )) || usage_error "--size: at least 16M, got '$size_arg'"
(( size % mib == 0 )) || usage_error "--size: must be a whole number of MiB, got '$size_arg'"

if [ -n "$out" ]; then
  out_dir=$(dirname -- "$out")
  { [ -d "$out_dir" ] && [ -w "$out_dir" ]; } ||
    usage_error "--out: directory '$out_dir' does not exist or is not writable"
fi

# Build tree: --build, else $BUILD, else ../build, else the source tree.
plugin_rel=plugins/punchcache/.libs/nbdkit-punchcache-plugin.so
tool_rel=tools/punchcache
if [ -z "$build" ]; then
  if [ -n "${BUILD:-}" ]; then build=$BUILD
  elif [ -f "$repo/../build/$plugin_rel" ]; then build=$repo/../build
  else build=$repo
  fi
fi
[ -d "$build" ] || die "build directory '$build' does not exist"
build=$(cd "$build" && pwd)
plugin=$build/$plugin_rel
tool=$build/$tool_rel
{ [ -f "$plugin" ] && [ -x "$tool" ]; } ||
  die "no punchcache build in '$build' (want $plugin_rel and $tool_rel):
  build first (autoreconf -fi && ./configure && make), or point --build
  (or \$BUILD) at the build directory"

# ------------------------------------------------------------ prerequisites

for cmd in nbdkit fio timeout awk; do
  command -v "$cmd" >/dev/null || die "'$cmd' not found in PATH"
done
fio --enghelp=nbd 2>/dev/null | grep -q uri ||
  die "this fio ($(fio --version)) has no ioengine=nbd (fio --enghelp=nbd)"
if command -v jq >/dev/null; then json_tool=jq
elif command -v python3 >/dev/null; then json_tool=python3
else die "need jq or python3 to read fio's and punchcache's JSON"
fi

# Memory: the memory disk (SIZE) + punchcache's filled cache (SIZE) + slack.
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
need_kb=$(( (2 * size + 256 * mib) / 1024 ))
(( avail_kb >= need_kb )) ||
  die "--size $size_arg needs about $(( need_kb / 1024 ))M of free RAM, only $(( avail_kb / 1024 ))M available; use a smaller --size"

# ------------------------------------------------------------ helpers

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

# human BYTES -> "123.4 MiB"
human () { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# commas 1234567 -> 1,234,567
commas () {
  local n=$1 s=""
  while (( ${#n} > 3 )); do s=,${n: -3}$s; n=${n:0:${#n}-3}; done
  printf '%s%s' "$n" "$s"
}

# ------------------------------------------------------------ servers

dir=$(mktemp -d "${TMPDIR:-/tmp}/cached-read.XXXXXX")
declare -A pid=()

cleanup () {
  local name p
  for name in "${!pid[@]}"; do
    p=${pid[$name]}
    kill -0 "$p" 2>/dev/null || continue
    kill -TERM "$p" 2>/dev/null || :
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || :
  done
  wait 2>/dev/null || :
  rm -rf -- "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Disk for the pool file (SIZE of data gets written).
avail_disk_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
(( avail_disk_kb >= (size + 64 * mib) / 1024 )) ||
  die "the pool needs $(( size / mib ))M in $(dirname "$dir"), only $(( avail_disk_kb / 1024 ))M free; set TMPDIR"

# start NAME ARGS...: nbdkit in the foreground (so its pid is ours and its
# log goes to $dir/NAME.log), in the background; wait until it listens (it
# writes the pid file once the socket is ready).
start () {
  local name=$1; shift
  nbdkit -f --exit-with-parent --log=stderr --threads 16 \
    -U "$dir/$name.sock" -P "$dir/$name.pid" "$@" \
    </dev/null >"$dir/$name.log" 2>&1 &
  pid[$name]=$!
  for _ in $(seq 300); do                    # at most 30 s
    [ -s "$dir/$name.pid" ] && return 0
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/$name.log" >&2
  die "nbdkit $name did not start"
}

# uri NAME: fio's URI for server NAME (punchcache serves volume "bench").
uri () {
  local export=""
  [ "$1" = punchcache ] && export=bench
  printf 'nbd+unix:///%s?socket=%s' "$export" "$dir/$1.sock"
}

# runfio NAME TAG FIO-ARGS...: one fio run against server NAME, JSON to
# $dir/NAME.TAG.json; fails on a fio error.  Bounded by --runtime and by
# timeout(1) 60 s past it.
runfio () {
  local name=$1 tag=$2; shift 2
  local json=$dir/$name.$tag.json rt=$runtime arg
  for arg in "$@"; do case "$arg" in --runtime=*) rt=${arg#--runtime=} ;; esac; done
  if ! timeout -k 5 $(( rt + 60 )) \
       fio --name="$tag" --ioengine=nbd --uri="$(uri "$name")" \
           --size="$size" --output-format=json --output="$json" "$@" \
       >"$dir/fio.$name.$tag.log" 2>&1; then
    cat "$dir/fio.$name.$tag.log" >&2
    die "fio $tag on $name failed"
  fi
  [ "$(jget "$json" jobs.0.error)" = 0 ] || die "fio $tag on $name: job error (see $json)"
}

# fill NAME RW: one full sequential 1M pass (write or read) that must move
# all SIZE bytes.
fill () {
  local name=$1 rw=$2 moved
  runfio "$name" "$rw" --rw="$rw" --bs=1M --iodepth=8 --runtime=600
  moved=$(jget "$dir/$name.$rw.json" "jobs.0.$rw.io_bytes")
  [ "$moved" = "$size" ] || die "$rw pass on $name moved $moved of $size bytes"
}

# stats_wait: punchcache rewrites its stats file every 2 s.  Wait for one
# rewrite that starts after now, so the snapshot covers all I/O so far.
stats_wait () {
  local file=$dir/stats.json before now
  before=$(jget "$file" uptime_ms 2>/dev/null || echo none)
  for _ in $(seq 100); do                    # at most 10 s
    sleep 0.1
    now=$(jget "$file" uptime_ms 2>/dev/null) || continue
    if [ "$now" != "$before" ]; then
      cp "$file" "$dir/stats.warm.json"
      jget "$dir/stats.warm.json" cache.hits >/dev/null && return 0
    fi
  done
  die "punchcache did not rewrite $file within 10 s"
}

log "build: $build"
log "size $size_arg ($size bytes), runtime ${runtime}s, $reps rep(s), in $dir"

"$tool" create "$dir/pool" $(( 2 * size )) >/dev/null
"$tool" volume add "$dir/pool" bench "$size" >/dev/null

start punchcache "$plugin" pool="$dir/pool" cache=$(( 2 * size )) \
  stats="$dir/stats.json"
start memory memory "$size"
start null   null   "$size"

log "prefill: writing ${size_arg} to punchcache and memory"
fill punchcache write
fill memory write
log "warming punchcache's cache: one sequential read pass"
fill punchcache read
stats_wait

# ------------------------------------------------------------ timed runs

servers=(punchcache memory null)
declare -A iops=()                           # name -> "v1 v2 ..."
for (( r = 0; r < reps; r++ )); do
  for (( k = 0; k < ${#servers[@]}; k++ )); do
    name=${servers[(r + k) % ${#servers[@]}]}
    runfio "$name" "rand$r" --rw=randread --bs=4k --iodepth=32 --numjobs=2 \
      --group_reporting --time_based --runtime="$runtime"
    v=$(jget "$dir/$name.rand$r.json" jobs.0.read.iops)
    v=$(printf '%.0f' "$v")
    (( v > 0 )) || die "randread on $name: 0 IOPS"
    iops[$name]="${iops[$name]:-} $v"
    log "rep $(( r + 1 ))/$reps  $(printf '%-10s' "$name") $(commas "$v") IOPS"
  done
done

# Peak RSS, then stop punchcache so it writes its final statistics.
declare -A rss=()
for name in "${servers[@]}"; do
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/${pid[$name]}/status")
  rss[$name]=$(human $(( kb * 1024 )))
done
kill -TERM "${pid[punchcache]}"
for _ in $(seq 300); do                      # at most 30 s
  kill -0 "${pid[punchcache]}" 2>/dev/null || break; sleep 0.1
done
kill -0 "${pid[punchcache]}" 2>/dev/null && die "punchcache did not exit on SIGTERM"
wait "${pid[punchcache]}" || log "warning: nbdkit punchcache exited with status $?"
unset 'pid[punchcache]'

# ------------------------------------------------------------ report

# stats SERVER -> "median min max" of its IOPS.
stats () {
  tr ' ' '\n' <<<"${iops[$1]}" | awk 'NF' | sort -n | awk '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.0f %d %d\n", m, v[1], v[NR] }'
}
declare -A med=() lo=() hi=()
for name in "${servers[@]}"; do
  read -r "med[$name]" "lo[$name]" "hi[$name]" < <(stats "$name")
done

w_hits=$(jget "$dir/stats.warm.json" cache.hits)
w_miss=$(jget "$dir/stats.warm.json" cache.misses)
f_hits=$(jget "$dir/stats.json" cache.hits)
f_miss=$(jget "$dir/stats.json" cache.misses)
f_rate=$(jget "$dir/stats.json" cache.hit_rate)
t_hits=$(( f_hits - w_hits )); t_miss=$(( f_miss - w_miss ))
t_rate=$(awk -v h=$t_hits -v m=$t_miss 'BEGIN {
  if (h + m == 0) print "n/a"; else printf "%.2f%%", 100 * h / (h + m) }')
direct=$(jget "$dir/stats.json" pool.direct_io)

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
report=$dir/report.md
{
  echo "### Cached 4K random reads: punchcache vs nbdkit memory and null"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · Linux $(uname -r) · ${cpu:-unknown CPU}" \
       "· $(nproc) CPU(s) · $(fio --version) · $(nbdkit --version)"
  echo
  echo "\`$cmdline\`"
  echo
  echo "fio ioengine=nbd, randread bs=4k, iodepth=32 × numjobs=2 connections," \
       "${runtime} s per run, $reps rep(s) in rotating order; exports of" \
       "$(( size / mib )) MiB, fully written; nbdkit --threads 16;" \
       "punchcache cache=$(( 2 * size / mib ))M, direct_io=$direct, warmed" \
       "by one sequential read pass."
  echo
  echo "| server | median IOPS | min | max | peak RSS | punchcache ratio |"
  echo "|---|--:|--:|--:|--:|--:|"
  for name in "${servers[@]}"; do
    if [ "$name" = punchcache ]; then ratio="—"; label="punchcache"
    else
      ratio=$(awk -v a="${med[punchcache]}" -v b="${med[$name]}" \
                'BEGIN { printf "%.2f×", a / b }')
      label="nbdkit $name"
    fi
    echo "| $label | $(commas "${med[$name]}") | $(commas "${lo[$name]}")" \
         "| $(commas "${hi[$name]}") | ${rss[$name]} | $ratio |"
  done
  echo
  echo "Ratio = punchcache median / that server's median.  Raw IOPS per rep:" \
       "$(for n in "${servers[@]}"; do printf '%s%s; ' "$n" "${iops[$n]}"; done | sed 's/; $//')."
  echo "punchcache block cache during the timed runs: $t_rate hits" \
       "($t_hits hits, $t_miss misses); over its whole life, including the" \
       "warm-up pass: $(awk -v r="$f_rate" 'BEGIN { printf "%.2f%%", 100 * r }')."
} >"$report"

# Anything the plugin logged (errors, warnings) is worth a look.
if [ -s "$dir/punchcache.log" ]; then
  log "nbdkit punchcache logged:"; sed 's/^/    /' "$dir/punchcache.log" >&2
fi
if awk -v h=$t_hits -v m=$t_miss 'BEGIN { exit !(h + m > 0 && h < 0.99 * (h + m)) }'
then
  log "warning: cache hit rate during the timed runs is $t_rate (< 99%)"
fi

cat "$report"
[ -z "$out" ] || cp "$report" "$out"
