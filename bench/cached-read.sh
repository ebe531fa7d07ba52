#!/usr/bin/env bash
# bench/cached-read.sh - cached 4K random reads: punchcache's two front-ends
# (the nbdkit plugin and punchcached) vs nbdkit memory and nbdkit null, side
# by side, printed as a markdown table for the README.
# Run with --help for the full description.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

usage () {
  cat <<EOF
NAME
    $prog - benchmark cached 4K random reads of punchcache's two
    front-ends, the nbdkit plugin and punchcached, against the nbdkit
    memory and null plugins

SYNOPSIS
    bench/$prog [--runtime S] [--reps N] [--size SIZE] [--build DIR]
                         [--out FILE]
    bench/$prog --help

DESCRIPTION
    Starts four servers, each on its own Unix socket in a private
    temporary directory, the nbdkit ones with --threads $NBDKIT_THREADS:

      punchcache  the plugin, nbdkit punchcache: a fresh pool (capacity
                  2 x SIZE) holding one thin volume of SIZE bytes, served
                  with cache=2 x SIZE so the whole volume fits in the
                  block cache; "punchcache (plugin)" in the report;
      punchcached the standalone server (server/punchcached of the
                  build, no nbdkit) on a second pool made the same way,
                  with the same parameters, and its defaults otherwise
                  (event loop threads: one per CPU);
      memory      nbdkit memory SIZE (the data lives in nbdkit's RAM);
      null        nbdkit null SIZE (reads return zeros and touch no data:
                  the protocol's and nbdkit's own ceiling).

    The two punchcache volumes and the memory disk are first filled
    completely (fio, sequential 1M writes), so every read hits allocated
    data, then the block caches are warmed by one sequential 1M read pass
    over the whole volume.  The measured load is then, for each server:

      fio --ioengine=nbd --rw=randread --bs=4k --iodepth=32 --numjobs=2
          --group_reporting --time_based --runtime=S --size=SIZE

    (two NBD connections, 32 requests in flight on each).  This is repeated
    N times; within a repetition the four servers run one after another,
    and the order rotates from one repetition to the next so slow drift of
    the machine (thermal, background load) does not favour one server.

    Output (standard output, and FILE with --out) is markdown: a header
    naming the date, kernel, CPU, core count, fio and nbdkit versions and
    the exact command line, then a table with, per server, the median,
    minimum and maximum IOPS over the N repetitions, the peak resident set
    size of its process (VmHWM, read once all runs are done) and the
    ratios plugin median / that server's median and punchcached median /
    that server's median.  Below the table: the raw IOPS of every run and
    the block-cache hit rate of both front-ends during the timed runs,
    taken from their stats=PATH files (written when they exit on
    SIGTERM).  Every server must survive every run (checked after each:
    process running, NBD handshake answered).  Progress goes to standard
    error.

OPTIONS
    --runtime S   seconds per timed fio run (integer >= 1; default 10)
    --reps N      repetitions of the four runs (integer >= 1; default 3)
    --size SIZE   size of every export, with an optional suffix K, M, G or
                  T (powers of 1024, as fio and nbdkit read them); a whole
                  number of MiB, at least 16M (default 1G)
    --build DIR   build tree holding plugins/punchcache/.libs/
                  nbdkit-punchcache-plugin.so, tools/punchcache and
                  server/punchcached
                  (default: \$BUILD if set, else ../build next to the
                  source tree if it holds a build, else the source tree
                  itself, for in-tree builds)
    --out FILE    also write the markdown report to FILE
    -h, --help    show this help and exit

REQUIREMENTS
    nbdkit (with the memory and null plugins), fio with ioengine=nbd
    (fio --enghelp=nbd), nbdinfo (libnbd-bin: the readiness probe), and
    jq or python3.  Memory: about 3 x SIZE free
    (the memory disk plus the two filled block caches).  Disk: 2 x SIZE
    in the temporary directory (\$TMPDIR, default /tmp) for the pool files; a pool
    on tmpfs would make it a RAM disk, and punchcache then cannot use
    O_DIRECT, so keep \$TMPDIR on a real file system.

EXAMPLES
    bench/$prog                                   # 3 x 10 s, 1 GiB
    bench/$prog --runtime 3 --reps 1 --size 256M  # quick smoke run
    bench/$prog --out bench/cached-read.md

EXIT STATUS
    0 on success, 1 on a failure (a server that did not start or did not
    survive a run, a fio run that failed or moved no data), 2 on a usage
    error.
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
need_punchcached

# ------------------------------------------------------------ prerequisites

need_cmds nbdkit nbdinfo
need_fio_nbd
# Memory: the memory disk (SIZE) + two filled block caches (SIZE each) + slack.
need_ram $(( 3 * size + 256 * MIB )) "--size $size_arg"

# ------------------------------------------------------------ servers

make_workdir cached-read
need_real_fs "$dir"
# Disk for the pool files (SIZE of data gets written to each).
need_disk "$dir" $(( 2 * size + 64 * MIB )) "the pools"
pcs=(punchcache punchcached)
declare -A label=( [punchcache]="punchcache (plugin)" [punchcached]=punchcached
                   [memory]="nbdkit memory" [null]="nbdkit null" )

# fill NAME RW: one full sequential 1M pass (write or read) of the export.
fill () { pass "$1" "$2" "$size"; }

log "build: $build"
log "size $size_arg ($size bytes), runtime ${runtime}s, $reps rep(s), in $dir"

for name in "${pcs[@]}"; do
  "$tool" create "$dir/$name.pool" $(( 2 * size )) >/dev/null
  "$tool" volume add "$dir/$name.pool" bench "$size" >/dev/null
  export_of[$name]=bench
done
# The same parameters for both front-ends, each on its own pool.
start_nbdkit punchcache "$plugin" pool="$dir/punchcache.pool" \
  cache=$(( 2 * size )) stats="$dir/punchcache.stats.json"
start_punchcached punchcached pool="$dir/punchcached.pool" \
  cache=$(( 2 * size )) stats="$dir/punchcached.stats.json"
start_nbdkit memory memory "$size"
start_nbdkit null   null   "$size"

log "prefill: writing ${size_arg} to punchcache, punchcached and memory"
for name in "${pcs[@]}" memory; do fill "$name" write; done
log "warming the block caches: one sequential read pass each"
for name in "${pcs[@]}"; do
  fill "$name" read
  pc_stats_wait "$dir/$name.stats.json" "$dir/$name.stats.warm.json"
done

# ------------------------------------------------------------ timed runs

servers=(punchcache punchcached memory null)
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
    log "rep $(( r + 1 ))/$reps  $(printf '%-11s' "$name") $(commas "$v") IOPS"
  done
done

# Peak RSS, then stop the two front-ends so they write their final
# statistics.  A failed exit is a failure.
declare -A rss=()
for name in "${servers[@]}"; do rss[$name]=$(peak_rss "$name"); done
for name in "${pcs[@]}"; do
  stop_server "$name" || die "$name exited with status $? (see $dir/$name.log)"
done

# ------------------------------------------------------------ report

declare -A med=() lo=() hi=()
for name in "${servers[@]}"; do
  read -r "med[$name]" "lo[$name]" "hi[$name]" < <(summarize "${iops[$name]}")
done

# Per front-end: hits and misses of the timed runs (final - warm), hit rate
# over its whole life, direct_io.
declare -A t_hits=() t_miss=() t_rate=() f_rate=() direct=()
for name in "${pcs[@]}"; do
  st=$dir/$name.stats.json warm=$dir/$name.stats.warm.json
  t_hits[$name]=$(( $(jget "$st" cache.hits) - $(jget "$warm" cache.hits) ))
  t_miss[$name]=$(( $(jget "$st" cache.misses) - $(jget "$warm" cache.misses) ))
  t_rate[$name]=$(awk -v h="${t_hits[$name]}" -v m="${t_miss[$name]}" 'BEGIN {
    if (h + m == 0) print "n/a"; else printf "%.2f%%", 100 * h / (h + m) }')
  f_rate[$name]=$(awk -v r="$(jget "$st" cache.hit_rate)" 'BEGIN { printf "%.2f%%", 100 * r }')
  direct[$name]=$(jget "$st" pool.direct_io)
done

report=$dir/report.md
{
  echo "### Cached 4K random reads: punchcache (plugin) and punchcached vs nbdkit memory and null"
  echo
  machine_line
  echo
  echo "\`$cmdline\`"
  echo
  echo "fio ioengine=nbd, randread bs=4k, iodepth=32 × numjobs=2 connections," \
       "${runtime} s per run, $reps rep(s) in rotating order; exports of" \
       "$(( size / MIB )) MiB, fully written; nbdkit --threads $NBDKIT_THREADS;" \
       "punchcached with its default event loop threads (one per CPU);" \
       "both front-ends cache=$(( 2 * size / MIB ))M, direct_io" \
       "${direct[punchcache]} (plugin) and ${direct[punchcached]} (punchcached)," \
       "warmed by one sequential read pass."
  echo
  echo "| server | median IOPS | min | max | peak RSS | plugin ÷ server | punchcached ÷ server |"
  echo "|---|--:|--:|--:|--:|--:|--:|"
  for name in "${servers[@]}"; do
    r="—"; [ "$name" = punchcache ] || r=$(ratio "${med[punchcache]}" "${med[$name]}")
    rd="—"; [ "$name" = punchcached ] || rd=$(ratio "${med[punchcached]}" "${med[$name]}")
    echo "| ${label[$name]} | $(commas "${med[$name]}") | $(commas "${lo[$name]}")" \
         "| $(commas "${hi[$name]}") | ${rss[$name]} | $r | $rd |"
  done
  echo
  echo "Ratios of medians.  SPEC §7: plugin ≥ 1.0× nbdkit memory; punchcached" \
       "≥ 1.5× the plugin and ≥ 1.2× nbdkit null.  Raw IOPS per rep:" \
       "$(for n in "${servers[@]}"; do printf '%s%s; ' "$n" "${iops[$n]}"; done | sed 's/; $//')."
  for name in "${pcs[@]}"; do
    echo "${label[$name]} block cache during the timed runs: ${t_rate[$name]} hits" \
         "(${t_hits[$name]} hits, ${t_miss[$name]} misses); over its whole life," \
         "including the warm-up pass: ${f_rate[$name]}."
  done
} >"$report"

# Anything the front-ends logged (errors, warnings) is worth a look.
for name in "${pcs[@]}"; do
  if [ -s "$dir/$name.log" ]; then
    log "$name logged:"; sed 's/^/    /' "$dir/$name.log" >&2
  fi
  if awk -v h="${t_hits[$name]}" -v m="${t_miss[$name]}" \
       'BEGIN { exit !(h + m > 0 && h < 0.99 * (h + m)) }'; then
    log "warning: $name's cache hit rate during the timed runs is ${t_rate[$name]} (< 99%)"
  fi
done

cat "$report"
[ -z "$out" ] || cp "$report" "$out"
