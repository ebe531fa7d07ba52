#!/usr/bin/env bash
# bench/cached-read.sh - cached 4K random reads: punchcache vs nbdkit memory
# and nbdkit null, side by side, printed as a markdown table for the README.
# Run with --help for the full description.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

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
    (fio --enghelp=nbd), nbdinfo (libnbd-bin: the readiness probe), and
    jq or python3.  Memory: about 2 x SIZE free
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

# ---------------------------------------------------------------- options

cmdline=$(quote_cmdline "$0" "$@")

runtime=10
reps=3
size_arg=1G
build=""
out=""

while [ $# -gt 0 ]; do
  take_opt "--runtime --reps --size --build --out" "-h --help" "$@"
  shift "$nshift"
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --runtime) runtime=$val ;;
    --reps)    reps=$val ;;
    --size)    size_arg=$val ;;
    --build)   build=$val ;;
    --out)     out=$val ;;
  esac
done

want_uint --runtime "$runtime" 5
want_uint --reps "$reps" 3
want_size size --size "$size_arg" $(( 16 * MIB ))
[ -z "$out" ] || want_out_file "$out"
find_build "$build"

# ------------------------------------------------------------ prerequisites

need_cmds nbdkit nbdinfo
need_fio_nbd
# Memory: the memory disk (SIZE) + punchcache's filled cache (SIZE) + slack.
need_ram $(( 2 * size + 256 * MIB )) "--size $size_arg"

# ------------------------------------------------------------ servers

make_workdir cached-read
need_real_fs "$dir"
# Disk for the pool file (SIZE of data gets written).
need_disk "$dir" $(( size + 64 * MIB )) "the pool"
export_of[punchcache]=bench

# fill NAME RW: one full sequential 1M pass (write or read) of the export.
fill () { pass "$1" "$2" "$size"; }

log "build: $build"
log "size $size_arg ($size bytes), runtime ${runtime}s, $reps rep(s), in $dir"

"$tool" create "$dir/pool" $(( 2 * size )) >/dev/null
"$tool" volume add "$dir/pool" bench "$size" >/dev/null

start_nbdkit punchcache "$plugin" pool="$dir/pool" cache=$(( 2 * size )) \
  stats="$dir/stats.json"
start_nbdkit memory memory "$size"
start_nbdkit null   null   "$size"

log "prefill: writing ${size_arg} to punchcache and memory"
fill punchcache write
fill memory write
log "warming punchcache's cache: one sequential read pass"
fill punchcache read
pc_stats_wait "$dir/stats.json" "$dir/stats.warm.json"

# ------------------------------------------------------------ timed runs

servers=(punchcache memory null)
declare -A iops=()                           # name -> "v1 v2 ..."
for (( r = 0; r < reps; r++ )); do
  for (( k = 0; k < ${#servers[@]}; k++ )); do
    name=${servers[(r + k) % ${#servers[@]}]}
    runfio "$name" "rand$r" --name="rand$r" --rw=randread --bs=4k \
      --iodepth=32 --numjobs=2 --group_reporting --size="$size" \
      --time_based --runtime="$runtime"
    v=$(jget "$dir/$name.rand$r.json" jobs.0.read.iops)
    v=$(printf '%.0f' "$v")
    (( v > 0 )) || die "randread on $name: 0 IOPS"
    iops[$name]="${iops[$name]:-} $v"
    log "rep $(( r + 1 ))/$reps  $(printf '%-10s' "$name") $(commas "$v") IOPS"
  done
done

# Peak RSS, then stop punchcache so it writes its final statistics.
declare -A rss=()
for name in "${servers[@]}"; do rss[$name]=$(peak_rss "$name"); done
stop_server punchcache || log "warning: nbdkit punchcache exited with status $?"

# ------------------------------------------------------------ report

declare -A med=() lo=() hi=()
for name in "${servers[@]}"; do
  read -r "med[$name]" "lo[$name]" "hi[$name]" < <(summarize "${iops[$name]}")
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

report=$dir/report.md
{
  echo "### Cached 4K random reads: punchcache vs nbdkit memory and null"
  echo
  machine_line
  echo
  echo "\`$cmdline\`"
  echo
  echo "fio ioengine=nbd, randread bs=4k, iodepth=32 × numjobs=2 connections," \
       "${runtime} s per run, $reps rep(s) in rotating order; exports of" \
       "$(( size / MIB )) MiB, fully written; nbdkit --threads $NBDKIT_THREADS;" \
       "punchcache cache=$(( 2 * size / MIB ))M, direct_io=$direct, warmed" \
       "by one sequential read pass."
  echo
  echo "| server | median IOPS | min | max | peak RSS | punchcache ratio |"
  echo "|---|--:|--:|--:|--:|--:|"
  for name in "${servers[@]}"; do
    if [ "$name" = punchcache ]; then ratio="—"; label="punchcache"
    else
      ratio=$(ratio "${med[punchcache]}" "${med[$name]}")
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
