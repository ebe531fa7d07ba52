#!/usr/bin/env bash
# bench/run.sh - the benchmark suite of SPEC §7: punchcache's two
# front-ends (the nbdkit plugin and the standalone punchcached) against
# nbdkit null, memory, file, file + cache filter and qemu-nbd (qcow2, with
# cache=none and in its default cache mode), eight fio workloads over NBD
# on Unix sockets, one markdown report with ratios and the §7 targets met
# or missed.  Run with --help for the full description.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

usage () {
  cat <<EOF
NAME
    $prog - punchcache's benchmark suite: nine workloads against
    punchcache's two front-ends (the nbdkit plugin and punchcached, with
    write-back on and off) and six peer servers, ratios and the SPEC §7
    targets

SYNOPSIS
    bench/$prog [--quick] [--runtime S] [--reps N] [--size SIZE]
                [--workloads LIST] [--servers LIST] [--punch-rate N]
                [--perf DIR] [--pc-block-size SIZE] [--pc-param KEY=VALUE]
                [--build DIR] [--out FILE]
    bench/$prog --help

DESCRIPTION
    Starts each server on its own Unix socket in a private temporary
    directory (\$TMPDIR, default /tmp; it must be a disk file system, not
    tmpfs: punchcache does its pool I/O with O_DIRECT), drives it with
    fio --ioengine=nbd (and, for workload i, nbdsh), and prints a
    markdown report.  Servers (names for --servers):

      null        nbdkit null SIZE: no data at all, the protocol's and
                  nbdkit's own ceiling (used in workload a only)
      memory      nbdkit memory SIZE (sparse allocator, data in RAM)
      file        nbdkit file on a sparse file (kernel page cache)
      filecache   nbdkit --filter=cache file on a sparse file (writeback
                  cache in a temporary file in the work directory)
      qemu        qemu-nbd on a qcow2 image (64 KiB clusters, no
                  preallocation), cache=none: -f qcow2 --cache=none
                  --aio=native --discard=unmap -e 4 -t
      qemu-default
                  qemu-nbd on a qcow2 image as its users run it by
                  default: -f qcow2 --discard=unmap -e 4 -t, nothing
                  else (cache=writeback through the host page cache,
                  aio=threads); -e 4 only so fio's two connections may
                  share it (the default, 1, refuses the second)
      punchcache  the plugin, nbdkit punchcache: a pool of 2 x SIZE
                  (default 64 KiB blocks) holding a thin volume "bench"
                  of SIZE bytes, cache=2 x SIZE so the whole volume fits
                  in the cache; "punchcache (plugin)" in the report.
                  Its defaults otherwise: writeback=on (a write completes
                  once its data is in the cache), dirty= half of cache=,
                  dirty-expire=30
      punchcached the standalone server (server/punchcached of the build:
                  its own event loops and io_uring, no nbdkit) on a pool
                  made exactly as the plugin's (same size, block size,
                  volume, cache=, stats=), started with its defaults
                  otherwise: punchcached -f --exit-with-parent -U SOCKET
                  pool=... cache=... stats=... (event loop threads: one
                  per CPU)
      punchcache-wt, punchcached-wt
                  the same two with writeback=off (every write goes to
                  the pool before it completes: the write-through
                  behaviour before write-back); not run unless named in
                  --servers (or --servers all): "writeback=off" in the
                  report, and in the ratio tables the gain of write-back
                  (punchcache ÷ punchcache-wt)

    Every nbdkit runs with --threads $NBDKIT_THREADS.  qemu-nbd has no thread
    pool option: its one main-loop thread runs every request as a
    coroutine; with --aio=native (qemu) it submits the I/O through Linux
    AIO (no worker threads), by default (qemu-default) through a pool of
    worker threads.  cache=none (O_DIRECT on the image, qcow2 metadata
    cached in qemu's RAM until a flush) is punchcache's own data path:
    neither gets help from the kernel's page cache, so that qcow2
    comparison (workload c) measures allocation, not caching;
    qemu-default writes into the page cache, as nbdkit file and the
    cache filter do by default.

    Workloads (letters for --workloads).  "QD32 x 2" means
    --iodepth=32 --numjobs=2: two NBD connections, 32 requests in
    flight on each; reported as the sum.

      a  4K random read, QD32 x 2, cached: the export is fully written,
         then every server gets one sequential 1M read pass (it fills
         the block caches of punchcache and punchcached and the page
         cache of the file peers and of qemu-default).
      b  4K random read, QD32 x 2, cold.  punchcache and punchcached are
         restarted on the same pool with cache=0 (pool reads with
         O_DIRECT).  The page-cache peers (file, filecache, qemu-default)
         are "as they are" but with their data out of the page cache:
         before every run their files (and the cache filter's temporary
         file, through /proc/PID/fd) are synced and dropped with
         POSIX_FADV_DONTNEED (dd iflag=nocache), which touches no other
         file on the machine.  qemu-nbd with cache=none has no data cache
         to drop.  null and memory: n/a (no cold state).
      c  4K random write into a fresh thin export (allocating): for
         every repetition each server gets a new export of 4 x SIZE (a
         new pool, sparse file, qcow2 image, memory disk) and a new
         process.  Every write lands in its own never-written 64 KiB unit
         (punchcache's block, qcow2's cluster) in random order (fio
         replays a shuffled iolog, one per connection, QD32 x 2), so
         every write allocates.  The run ends after --runtime or when
         every unit got its write.  null: n/a.
      d  4K random overwrite, QD32 x 2, of the fully written export,
         starting settled: the files of the file peers and of
         qemu-default written back and out of the page cache before
         every run, as in b, so the start does not depend on the
         workloads before (and it is the faster start for nbdkit file on
         this kernel).
      e  1 MiB sequential read (cached, as in a) and 1 MiB sequential
         write (overwrite, starting settled as d), one connection, QD8,
         in MiB/s.
      f  64K random trim, QD32 x 2, of the fully written export: one pass
         in random order, every 64K unit trimmed once (the export is
         written again before every repetition).  null, memory: n/a.
      g  Reads while another connection writes and punches a disjoint
         range.  Job 1: 4K random reads, QD32, on one half of the
         (cached) export; job 2: fio randtrimwrite, 64K, QD8, on the
         other half: trim a block, write it again, over and over.  One
         fio run of five phases of P = max(2, 3/5 x --runtime) seconds:
         job 1 reads throughout; job 2 runs in phase 2 limited to
         --punch-rate trims/s and as many writes/s (the same punch load
         for every server) and in phase 4 unlimited (as fast as the
         server punches).  From job 1's IOPS log (250 ms windows, 0.5 s
         left out at each phase edge): kept share = the "with" phase /
         the mean of the two alone phases around it, so the drift of a
         noisy machine cancels out.  Median, min, max over the
         repetitions, and job 2's achieved rates.  fio 3.33's
         randtrimwrite ignores offset=, so job 2 takes the first half
         and job 1 the second.
      h  70/30 random read/write mix, 4K, QD32 x 2, on the cached export,
         while a third connection trims random 64K ranges at a fixed
         500 trims/s (the same trim load for every server); reported as
         read + write IOPS of the mix.
      i  FLUSH after a burst of 4K random writes: for every repetition
         each server gets a new export of SIZE (as in c: new pool, sparse
         file, qcow2 image, process), fio writes SIZE bytes into it, 4K
         random, QD32 x 2, each 4K block once, with no flush; the moment
         fio has exited, a third connection (nbdsh, connected before the
         burst and idle through it) sends one FLUSH, timed alone.  The
         reference, once per repetition in the same run: the device's
         O_DIRECT sequential write of SIZE bytes into a file in the work
         directory (dd bs=1M oflag=direct conv=fsync, timed).  Reported:
         the burst's IOPS, the FLUSH in seconds and FLUSH ÷ device (SPEC
         §7: at most 1.2 for the default 1 GiB).  The peers that write
         into the page cache (file, filecache, qemu-default) flush it the
         same way (fdatasync); qemu (cache=none) flushes its qcow2
         metadata and the disk's cache.  null, memory: n/a.

    Repetitions: each workload runs --reps times; within a repetition
    the servers run one after another, and the order rotates from one
    repetition to the next, so slow drift of the machine does not favour
    one server.  Before a run the export is brought to the state the
    workload needs (fully written; warm) with untimed sequential passes;
    only the timed runs are measured.

    Output (standard output, and FILE with --out): markdown.  A header
    with the date, kernel, CPU, core count, tool versions, the exact
    command line, the settings, the file system and the load average
    (before, after, and sampled before every run);
    an overview of the medians per workload and server (and each
    server's peak RSS, VmHWM, over all its processes); the ratios
    plugin median / peer median and punchcached median / peer median
    (the plugin among the peers); the SPEC §7 targets with the measured
    figure and met or missed; per workload, median, min, max, spread
    ((max - min) / median) and both ratios per server; setup notes; the
    raw value of every run.  Progress goes to standard error.

    Every server must survive every run: after each fio run (in i,
    after the FLUSH that follows it) the script checks that the
    server's process still runs and answers an NBD handshake, and
    otherwise stops with an error naming the server, the run, its exit
    status or signal and the end of its log (nbdkit before 1.33.10
    aborts, "Assertion 'sock >= 0' failed", when a client hangs up
    with requests queued; fio ends its runs without doing that).

    The default run takes about 26 minutes on 2 cores (15:38 for
    latest.md, before punchcached and qemu-default were added; i adds
    about 5), --quick about 6 (g alone, five phases per server, takes
    1.5 minutes); the two writeback=off servers add about a quarter.
    Numbers from a shared, noisy machine: read the ratios and the
    spread, not the absolute values.

OPTIONS
    --quick          smoke run: --runtime 2 --reps 1 --size 128M (each
                     can still be given explicitly)
    --runtime S      seconds per timed fio run (integer >= 1; default 5)
    --reps N         repetitions of every workload (default 3)
    --size SIZE      size of every export, with an optional suffix K, M,
                     G or T (powers of 1024); a whole number of MiB, at
                     least 64M (default 1G)
    --workloads LIST comma-separated subset of a,b,c,d,e,f,g,h,i
                     (default all); they run in alphabetical order
    --servers LIST   comma-separated subset of null, memory, file,
                     filecache, qemu, qemu-default, punchcache,
                     punchcached, punchcache-wt, punchcached-wt, or all
                     (default: all but the two -wt servers; the ratios
                     need punchcache or punchcached)
    --punch-rate N   workload g: the rate of the limited job 2, N trims/s
                     and N writes/s (integer >= 1; default 1000)
    --perf DIR       profile: attach perf record (cpu-clock, DWARF call
                     graphs) to the punchcache and punchcached processes
                     for each of their timed runs, one
                     DIR/SERVER.TAG.perf.data per run (see perf report
                     -i); their numbers then carry perf's overhead
    --pc-block-size SIZE
                     what-if runs: create the pools of punchcache and
                     punchcached with this block size (4K..1M; default
                     the tool's, 64K)
    --pc-param KEY=VALUE
                     what-if runs: pass this parameter to every
                     punchcache and punchcached (also the -wt ones); KEY
                     one of direct=auto|on|off (direct=off: buffered pool
                     I/O, the page cache next to the block cache),
                     dirty=SIZE, dirty-expire=SECONDS; repeatable.
                     writeback= is chosen by the server names (-wt)
    --build DIR      build tree holding plugins/punchcache/.libs/
                     nbdkit-punchcache-plugin.so, tools/punchcache and
                     server/punchcached
                     (default: \$BUILD if set, else ../build next to the
                     source tree if it holds a build, else the source
                     tree itself)
    --out FILE       also write the markdown report to FILE
    -h, --help       show this help and exit

REQUIREMENTS
    nbdkit with the null, memory and file plugins and the cache filter;
    qemu-nbd and qemu-img (qemu-utils); fio with ioengine=nbd (fio
    --enghelp=nbd) and randtrimwrite; nbdinfo (libnbd-bin); nbdsh
    (python3-libnbd) for workload i; jq or
    python3; dd, sync, findmnt, awk.  Memory: about 4 x SIZE + 512M free
    (the memory disk, punchcache's cache, the fresh memory disk of c).
    Disk: about 5 x SIZE in \$TMPDIR (sparse files: only what is written
    takes space).

ENVIRONMENT
    TMPDIR      where the work directory goes (default /tmp)
    BUILD       default for --build
    BENCH_KEEP  if set, keep the work directory (logs, fio JSON, server
                statistics) instead of removing it at exit

EXAMPLES
    bench/$prog --quick                        # smoke run, ~6 minutes
    bench/$prog --out bench/results/latest.md  # the README's numbers
    bench/$prog --workloads a --servers null,punchcache,punchcached --reps 5
    bench/$prog --workloads a,g --servers file,punchcache --reps 5
    bench/$prog --workloads c,d --servers punchcache --reps 1 --perf /tmp/p
    bench/$prog --servers all --out /tmp/wb.md  # write-back on and off
    bench/$prog --workloads c,d,i --servers file,qemu-default,punchcache,punchcache-wt

SEE ALSO
    bench/origin.sh --help: the origin benchmark (issue 15), a volume
    reading through a slow remote NBD export (origin=URI) against nbdkit's
    cow and cache filters and qemu-nbd's qcow2 overlay; its report is
    bench/results/origin-latest.md.  bench/cached-read.sh, scale-fill.sh,
    scale-open.sh: single questions, each with its own --help.

EXIT STATUS
    0 on success, 1 on a failure (a server that did not start or did not
    survive a run, a fio run that failed or moved no data), 2 on a usage
    error.
EOF
}

# ---------------------------------------------------------------- options

cmdline=$(quote_cmdline "$0" "$@")

all_workloads=(a b c d e f g h i)
all_servers=(null memory file filecache qemu qemu-default punchcache punchcached
             punchcache-wt punchcached-wt)
default_servers=(null memory file filecache qemu qemu-default punchcache punchcached)
quick=no runtime="" reps="" size_arg="" build="" out=""
workloads_arg="" servers_arg="" punch_rate=1000 perf_dir=""
pc_block_size="" pc_params=() pc_what_if=""

while [ $# -gt 0 ]; do
  take_opt "--runtime --reps --size --workloads --servers --punch-rate --perf --pc-block-size --pc-param --build --out" \
           "--quick -h --help" "$@"
  shift "$nshift"
  case "$opt" in
    -h|--help)    usage; exit 0 ;;
    --quick)      quick=yes ;;
    --runtime)    runtime=$val ;;
    --reps)       reps=$val ;;
    --size)       size_arg=$val ;;
    --workloads)  workloads_arg=$val ;;
    --servers)    servers_arg=$val ;;
    --punch-rate) punch_rate=$val ;;
    --perf)       perf_dir=$val ;;
    --pc-block-size) pc_block_size=$val ;;
    --pc-param)   # The servers check the values; these are the keys a
                  # what-if run may change.
                  [[ $val =~ ^(direct=(auto|on|off)|dirty=[0-9]+[KkMmGg]?|dirty-expire=[0-9]+)$ ]] ||
                    usage_error "--pc-param: want direct=auto|on|off, dirty=SIZE or dirty-expire=SECONDS, got '$val'"
                  pc_params+=("$val"); pc_what_if=yes ;;
    --build)      build=$val ;;
    --out)        out=$val ;;
  esac
done

if [ "$quick" = yes ]; then
  : "${runtime:=2}" "${reps:=1}" "${size_arg:=128M}"
else
  : "${runtime:=5}" "${reps:=3}" "${size_arg:=1G}"
fi
want_uint --runtime "$runtime" 4
want_uint --reps "$reps" 2
want_size size --size "$size_arg" $(( 64 * MIB ))
want_uint --punch-rate "$punch_rate" 7
[ -z "$out" ] || want_out_file "$out"
[ -z "$pc_block_size" ] || [[ $pc_block_size =~ ^((4|8|16|32|64|128|256|512)K|1M)$ ]] ||
  usage_error "--pc-block-size: want a power of two from 4K to 1M (4K, 8K, ... 512K, 1M), got '$pc_block_size'"
if [ -n "$perf_dir" ]; then
  { [ -d "$perf_dir" ] && [ -w "$perf_dir" ]; } ||
    usage_error "--perf: '$perf_dir' is not a writable directory"
  perf_dir=$(cd "$perf_dir" && pwd)
fi

# pick_list OPTION VALUE KNOWN...: VALUE, a comma-separated subset of
# KNOWN, printed in KNOWN's order (duplicates folded).
pick_list () {
  local option=$1 value=$2 item k; shift 2
  local -A want=()
  [[ $value =~ ^[a-z-]+(,[a-z-]+)*$ ]] ||
    usage_error "$option: want a comma-separated list, got '$value'"
  for item in ${value//,/ }; do
    [[ " $* " == *" $item "* ]] ||
      usage_error "$option: unknown '$item' (known: $(IFS=,; echo "$*"))"
    want[$item]=1
  done
  for k in "$@"; do [ -z "${want[$k]:-}" ] || printf '%s ' "$k"; done
}
list=$(pick_list --workloads "${workloads_arg:-$(IFS=,; echo "${all_workloads[*]}")}" \
         "${all_workloads[@]}") || exit $?
read -r -a workloads <<<"$list"
case "${servers_arg:-}" in
  "")  servers_arg=$(IFS=,; echo "${default_servers[*]}") ;;
  all) servers_arg=$(IFS=,; echo "${all_servers[*]}") ;;
esac
list=$(pick_list --servers "$servers_arg" "${all_servers[@]}") || exit $?
read -r -a servers <<<"$list"

has () { local x=$1; shift; [[ " $* " == *" $x "* ]]; }
# The punchcache servers (the plugin, the standalone server, with
# write-back on and, -wt, off) among them.
is_pc () { [[ $1 =~ ^punchcached?(-wt)?$ ]]; }
# is_fresh W: workloads that get a new export and process per run.
is_fresh () { [ "$1" = c ] || [ "$1" = i ]; }
pcs=()
for s in "${servers[@]}"; do is_pc "$s" && pcs+=("$s"); done
(( ${#pcs[@]} == 0 )) || find_build "$build"
{ has punchcached "${servers[@]}" || has punchcached-wt "${servers[@]}"; } &&
  need_punchcached

# ---------------------------------------------------------------- setup

need_cmds nbdkit nbdinfo dd sync
! has i "${workloads[@]}" || need_cmds nbdsh
need_fio_nbd
fio --cmdhelp=rw 2>/dev/null | grep -q randtrimwrite ||
  die "this fio ($(fio --version)) has no rw=randtrimwrite (workload g)"
{ has qemu "${servers[@]}" || has qemu-default "${servers[@]}"; } &&
  need_cmds qemu-nbd qemu-img
[ -z "$perf_dir" ] || need_cmds perf
need_ram $(( 4 * size + 512 * MIB )) "--size $size_arg"

make_workdir bench-run
need_real_fs "$dir"
need_disk "$dir" $(( 5 * size )) "the exports"

half=$(( size / 2 ))
unit=$(( 64 * 1024 ))                 # c: allocation unit, one write each
c_size=$(( 4 * size ))
c_units=$(( c_size / unit ))          # units of c's export: one write each
i_bytes=$size                         # i: the burst, and its fresh export
pc_cache=$(( 2 * size ))

declare -A label=(
  [null]="nbdkit null" [memory]="nbdkit memory" [file]="nbdkit file"
  [filecache]="nbdkit file + cache filter" [qemu]="qemu-nbd qcow2 cache=none"
  [qemu-default]="qemu-nbd qcow2 default cache" [punchcache]="punchcache (plugin)"
  [punchcached]="punchcached" [punchcache-wt]="punchcache (plugin) writeback=off"
  [punchcached-wt]="punchcached writeback=off"
)
# The servers a workload does not apply to (n/a), and why; every other
# server runs it.
declare -A not_for=( [b]="null memory" [c]=null [d]=null [e]=null
                     [f]="null memory" [g]=null [h]=null [i]="null memory" )
declare -A na_why=( [b]="null and memory have no cold state"
                    [f]="null and memory have no storage to give back"
                    [i]="null and memory have nothing to make durable" )
declare -A eligible=()
for w in "${all_workloads[@]}"; do
  for s in "${all_servers[@]}"; do
    [[ " ${not_for[$w]:-} " == *" $s "* ]] || eligible[$w]+="$s "
  done
  [ -z "${not_for[$w]:-}" ] || : "${na_why[$w]:=null stores nothing}"
done

# Result rows: workload letter, or letter.part.
rows=()
declare -A row_title=( [a]="a. 4K random read, cached, QD32×2"
  [b]="b. 4K random read, cold, QD32×2"
  [c]="c. 4K random write, fresh export (allocating), QD32×2"
  [d]="d. 4K random overwrite, QD32×2"
  [e.read]="e. 1 MiB sequential read, QD8"
  [e.write]="e. 1 MiB sequential write, QD8"
  [f]="f. 64K random trim, QD32×2"
  [g.alone]="g. job 1 (4K random reads, QD32) alone"
  [g.with]="g. job 1 with job 2 at $punch_rate trims/s + $punch_rate writes/s"
  [g.kept]="g. kept share, job 2 at $punch_rate+$punch_rate/s"
  [g.withmax]="g. job 1 with job 2 unlimited"
  [g.keptmax]="g. kept share, job 2 unlimited"
  [h]="h. 70/30 4K random read/write + 500 trims/s, QD32×2"
  [i.burst]="i. burst of $(( i_bytes / MIB )) MiB of 4K random writes, fresh export, QD32×2"
  [i.flush]="i. FLUSH after the burst"
  [i.ratio]="i. FLUSH ÷ the device's O_DIRECT sequential write of $(( i_bytes / MIB )) MiB"
)
declare -A row_unit=( [e.read]="MiB/s" [e.write]="MiB/s" [g.kept]="share"
  [g.keptmax]="share" [i.flush]="s" [i.ratio]="×" )
# is_frac ROW: rows of fractions or seconds, not rates: three decimals,
# and no plugin ÷ peer ratios.
is_frac () { [[ $1 =~ ^(g\.kept|g\.keptmax|i\.flush|i\.ratio)$ ]]; }
declare -A vals=()                    # "row|server" -> "v1 v2 ..."
declare -A extra=()                   # "row|server" -> "note per rep ..."

record () { vals["$1|$2"]="${vals["$1|$2"]:-} $3"; }

# ---------------------------------------------------------------- servers

declare -A filled=() warm=()

# backing NAME KIND BYTES: create NAME's storage (none for null, memory).
backing () {
  local name=$1 kind=$2 bytes=$3
  case "$kind" in
    file|filecache)
      truncate -s "$bytes" "$dir/$name.img"
      [ "$kind" = file ] || mkdir -p "$dir/$name.tmp" ;;
    qemu|qemu-default)
      qemu-img create -q -f qcow2 "$dir/$name.qcow2" "$bytes" ;;
    punchcache*)
      "$tool" create "$dir/$name.pool" $(( bytes + pc_cache / 2 )) \
        ${pc_block_size:+--block-size "$pc_block_size"} >/dev/null
      "$tool" volume add "$dir/$name.pool" bench "$bytes" >/dev/null ;;
  esac
}

# Extra options of punchcache's and punchcached's command line (workload
# i: statistics every 100 ms, so a snapshot just before its FLUSH is fresh).
pc_debug=()

# serve NAME KIND BYTES [CACHE]: start NAME (punchcache or punchcached with
# cache=CACHE, default $pc_cache) on its backing.  The two punchcache
# front-ends get the same parameters; the -wt ones writeback=off too.
serve () {
  local name=$1 kind=$2 bytes=$3 cache=${4:-$pc_cache}
  case "$kind" in
    null|memory) start_nbdkit "$name" "$kind" "$bytes" ;;
    file)        start_nbdkit "$name" file "$dir/$name.img" ;;
    filecache)   start_nbdkit "$name" TMPDIR="$dir/$name.tmp" \
                   --filter=cache file "$dir/$name.img" ;;
    qemu)        start_qemu_nbd "$name" -f qcow2 --cache=none --aio=native \
                   --discard=unmap -e 4 "$dir/$name.qcow2" ;;
    qemu-default) start_qemu_nbd "$name" -f qcow2 --discard=unmap -e 4 \
                   "$dir/$name.qcow2" ;;
    punchcache*)
      local params=(pool="$dir/$name.pool" cache="$cache" "${pc_params[@]}")
      [[ $kind != *-wt ]] || params+=(writeback=off)
      params+=(stats="$dir/$name.stats.json")
      export_of[$name]=bench
      case "$kind" in
        punchcache|punchcache-wt)
          start_nbdkit "$name" "${pc_debug[@]}" "$plugin" "${params[@]}" ;;
        *) start_punchcached "$name" "${pc_debug[@]}" "${params[@]}" ;;
      esac ;;
  esac
}

# unserve NAME: stop NAME; a failed exit is a failure of the run.  The
# main punchcache's and punchcached's statistics at exit (written on
# SIGTERM) are kept in final_stats[NAME].
declare -A final_stats=()
unserve () {
  stop_server "$1" || die "$1 exited with status $? (see $dir/$1.log)"
  if is_pc "$1" && [ -f "$dir/$1.stats.json" ]; then
    final_stats[$1]=$dir/$1.stats.final.json
    cp "$dir/$1.stats.json" "${final_stats[$1]}"
  fi
}

# prep NAME STATE: bring the main export of NAME to STATE:
#   filled  every byte written since the last trim (one 1M write pass)
#   warm    filled, and one 1M read pass since the last write
#   cold    filled, and no server-side cache holds the data (see b)
#   settled filled, and the file peers' files written back and out of the
#           page cache, as for cold: where an overwrite starts must not
#           depend on which workloads ran before.  (On this machine's
#           kernel, nbdkit file's 4K overwrites of pages that the fill
#           left cached, in large folios, ran at ~30k IOPS, against ~80k
#           into uncached pages: settled is the faster state for it.)
prep () {
  local name=$1 state=$2
  [ "$name" != null ] || return 0    # no data to prepare
  if [ "${filled[$name]:-0}" = 0 ]; then
    pass "$name" write "$size"; filled[$name]=1; warm[$name]=0
  fi
  case "$state" in
    warm)
      # qemu-nbd with cache=none keeps no data, and the fill already
      # loaded its qcow2 metadata: a read pass would warm nothing.
      # (qemu-default reads through the page cache: warmed like file.)
      if [ "${warm[$name]:-0}" = 0 ] && [ "$name" != qemu ]; then
        pass "$name" read "$size"; warm[$name]=1
      fi ;;
    cold|settled) drop_cache "$name"; warm[$name]=0 ;;
  esac
}

# drop_file FILE: write back FILE's dirty pages, then drop its page cache
# (POSIX_FADV_DONTNEED through dd iflag=nocache): only this file.
drop_file () {
  sync -d "$1" && dd if="$1" iflag=nocache count=0 status=none ||
    die "could not drop the page cache of $1"
}

# drop_cache NAME: the cold state of workload b.  punchcache's and
# punchcached's cold instances have cache=0 and O_DIRECT; qemu-nbd runs
# with cache=none; qemu-default's image goes out of the page cache.
drop_cache () {
  local name=$1 fd target
  case "$name" in
    file) drop_file "$dir/file.img" ;;
    filecache)
      drop_file "$dir/filecache.img"
      for fd in /proc/"${pid[filecache]}"/fd/*; do
        target=$(readlink "$fd") || continue
        [[ $target == "$dir/filecache.tmp/"* ]] && drop_file "$fd"
      done ;;
    qemu-default) drop_file "$dir/qemu-default.qcow2" ;;
  esac
  return 0
}

# ---------------------------------------------------------------- fio

# metric FILE JOB DIRS...: the sum of JOB's IOPS in DIRS (read write trim).
metric () {
  local file=$1 job=$2 d s=0; shift 2
  for d in "$@"; do
    s=$(awk -v a="$s" -v b="$(jget "$file" "jobs.$job.$d.iops")" \
          'BEGIN { printf "%.0f", a + b }')
  done
  (( s > 0 )) || die "$(basename "$file"): 0 IOPS ($*)"
  echo "$s"
}

# mibs FILE DIR: bandwidth of job 0 in MiB/s.
mibs () {
  awk -v b="$(jget "$1" "jobs.0.$2.bw_bytes")" \
    'BEGIN { if (b <= 0) exit 1; printf "%.0f", b / 1048576 }' ||
    die "$(basename "$1"): 0 MiB/s"
}

timed=(--time_based --runtime="$runtime")
g_phase=$(( (3 * runtime + 2) / 5 )); (( g_phase >= 2 )) || g_phase=2
g_guard=500                           # ms ignored at each end of a phase

# phase_means LOG: job 1's mean IOPS in each of g's five phases, from a
# fio IOPS log averaged over 250 ms windows ("end_ms, iops, ..."); the
# first and last $g_guard ms of each phase are left out (jobs start and
# stop a few ms apart).
phase_means () {
  awk -F', *' -v p=$(( g_phase * 1000 )) -v g="$g_guard" '
    { k = int(($1 - 125) / p)
      t = $1 - 250 - k * p; if (t >= g && $1 - k * p <= p - g) { s[k] += $2; n[k]++ } }
    END { for (k = 0; k < 5; k++) {
            if (!n[k]) { print "phase " k ": no samples" > "/dev/stderr"; exit 1 }
            printf "%.0f ", s[k] / n[k] }
          print "" }' "$1" || die "$(basename "$1"): not enough samples for g"
}
qd32x2=(--iodepth=32 --numjobs=2 --group_reporting)

# c's iologs: for each of the two connections, one 4K write at the start
# of every 64K unit of its half of the fresh export, in a fixed shuffled
# order (the same for every server and repetition).
make_iologs () {
  local j n=$(( c_units / 2 ))
  for j in 0 1; do
    awk -v n="$n" -v base=$(( j * n )) -v unit="$unit" -v seed=$(( 42 + j )) '
      BEGIN {
        srand(seed)
        for (i = 0; i < n; i++) u[i] = base + i
        for (i = n - 1; i > 0; i--) {
          k = int(rand() * (i + 1)); t = u[i]; u[i] = u[k]; u[k] = t
        }
        print "fio version 2 iolog"; print "x add"; print "x open"
        # %.0f, not %d: mawk, the default awk of Debian, clamps %d at 2^31 - 1.
        for (i = 0; i < n; i++) printf "x write %.0f 4096\n", u[i] * unit
      }' >"$dir/c.$j.iolog"
  done
  # Every write 64K-aligned, inside the export, and no unit twice.
  cat "$dir"/c.[01].iolog | awk -v unit="$unit" -v size="$c_size" '
    $2 == "write" { n++; if ($3 % unit || $3 + $4 > size || seen[$3]++) bad++ }
    END { exit !(n == size / unit && !bad) }' ||
    die "internal error: the iologs of workload c are not one aligned write per unit"
}

# timed_fio NAME TAG FIO-ARGS...: runfio, and with --perf, perf record
# attached to NAME's process for the length of the run when NAME is a
# punchcache or punchcached (cpu-clock: this VM has no hardware counters;
# DWARF call graphs: both are built -O2 without frame pointers).
timed_fio () {
  local name=$1 tag=$2 perf_pid=""
  if [ -n "$perf_dir" ] && is_pc "${name#[ci][0-9]*-}"; then
    timeout -s INT -k 5 $(( 5 * runtime + 180 )) \
      perf record -q -e cpu-clock -F 999 --call-graph dwarf,8192 \
        -p "${pid[$name]}" -o "$perf_dir/$name.$tag.perf.data" \
        >"$perf_dir/$name.$tag.perf.log" 2>&1 &
    perf_pid=$!
    sleep 0.5                         # perf attaches before the load starts
  fi
  runfio "$@"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || :
    local rc=0; wait "$perf_pid" || rc=$?
    # 130: perf's exit on the SIGINT that ends it.
    (( rc == 0 || rc == 130 )) ||
      warn "perf record for $name $tag: status $rc (see $perf_dir/$name.$tag.perf.log)"
    log "  perf: $perf_dir/$name.$tag.perf.data"
  fi
}

# check_allocated INST: after c on a punchcache, every acknowledged write
# must have allocated its own block (a check of the workload itself).
check_allocated () {
  local st=$dir/$1.stats.json n used
  [ -f "$st" ] || return 0
  n=$(jget "$dir/$1.${1%%-*}.json" jobs.0.write.total_ios 2>/dev/null) || return 0
  used=$(jget "$st" pool.used_blocks)
  [ "$used" = "$n" ] ||
    warn "c on $1: $n writes but $used blocks allocated (each write should allocate one)"
}

# device_write: the reference of workload i, the device's O_DIRECT
# sequential write of $i_bytes bytes (dd bs=1M, fsync before it ends) into a
# new file in the work directory, on the file system of the pools; prints
# its seconds.
device_write () {
  local f=$dir/device.ref t0 t1
  t0=$EPOCHREALTIME
  timeout -k 5 600 dd if=/dev/zero of="$f" bs=1M count=$(( i_bytes / MIB )) \
    oflag=direct conv=fsync status=none ||
    die "dd of $(( i_bytes / MIB )) MiB with oflag=direct into $f failed (or took over 600 s)"
  t1=$EPOCHREALTIME
  rm -f -- "$f"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# flush_arm NAME: connect nbdsh to NAME now and have it wait, idle, for
# flush_fire; then it sends one FLUSH, timed alone, and writes "SECONDS
# START" (START: the wall clock when the FLUSH was sent) to NAME.flush.  So
# the FLUSH follows the burst by milliseconds, not by a new process's
# start-up and handshake.  Bounded by timeout(1); stopped with the servers
# at exit (pid[NAME.flush]).
flush_arm () {
  local name=$1 go=$dir/$1.go
  rm -f "$go" "$dir/$name.flush"; mkfifo "$go"
  GO=$go timeout -k 5 900 nbdsh -u "$(uri "$name")" -c '
import os, time
open(os.environ["GO"]).read()
t0 = time.time()
h.flush()
print("%.3f %.6f" % (time.time() - t0, t0))' >"$dir/$name.flush" 2>"$dir/$name.flush.log" &
  pid[$name.flush]=$!
}

# flush_fire NAME TAG (as runfio_then, right after the burst's fio run):
# keep punchcache's statistics of the moment (dirty data after the burst;
# rewritten every 100 ms in i), let flush_arm's FLUSH go and wait for it.
flush_fire () {
  local name=$1 rc=0
  [ ! -f "$dir/$name.stats.json" ] ||
    cp "$dir/$name.stats.json" "$dir/$name.stats.preflush.json"
  timeout 30 bash -c 'echo go >"$1"' _ "$dir/$name.go" || rc=$?
  (( rc != 0 )) || wait "${pid[$name.flush]}" || rc=$?
  if (( rc != 0 )); then
    cat "$dir/$name.flush.log" >&2
    check_alive "$name" "during the FLUSH of i"
    die "the FLUSH of i on $name failed (status $rc, or took over 900 s)"
  fi
  unset "pid[$name.flush]"
}

# pcstat FILE KEY: a value of punchcache's statistics, "?" when missing.
pcstat () { jget "$1" "$2" 2>/dev/null || echo "?"; }

# i_dirty INST SERVER: for a punchcache instance of i, after it exited:
# its dirty data just before the FLUSH and what was written back from
# then to its exit (the FLUSH), in MiB, into extra[i.dirty|SERVER].
i_dirty () {
  local pre=$dir/$1.stats.preflush.json post=$dir/$1.stats.json
  [ -f "$pre" ] && [ -f "$post" ] || return 0
  extra["i.dirty|$2"]="${extra["i.dirty|$2"]:-} $(awk \
    -v d="$(pcstat "$pre" writeback.dirty_bytes)" \
    -v a="$(pcstat "$pre" writeback.bytes_written)" \
    -v b="$(pcstat "$post" writeback.bytes_written)" \
    'BEGIN { printf "%.0f/%.0f", d / 1048576, (b - a) / 1048576 }')"
}

# run_one W NAME TAG: one timed run of workload W against server NAME
# (prepared first); records its value(s).
run_one () {
  local w=$1 name=$2 tag=$3 json=$dir/$2.$3.json a b
  case "$w" in
    a|b)
      prep "$name" "$([ "$w" = a ] && echo warm || echo cold)"
      timed_fio "$name" "$tag" --name="$w" --rw=randread --bs=4k "${qd32x2[@]}" \
        --size="$size" "${timed[@]}"
      record "$w" "$name" "$(metric "$json" 0 read)" ;;
    c)
      # fio 3.33 closes the connection with requests still in flight when
      # a replay reaches the end of its log, and nbdkit 1.32 can crash on
      # that (assertion in raw_send_socket); with number_ios= (the log's
      # length) fio ends the replay the normal way and reaps them first.
      # A v2 iolog has no timestamps, so the replay never stalls.
      timed_fio "$name" "$tag" --runtime="$runtime" \
        --number_ios=$(( c_units / 2 )) \
        --group_reporting --iodepth=32 \
        --name=c0 --read_iolog="$dir/c.0.iolog" \
        --name=c1 --read_iolog="$dir/c.1.iolog"
      record c "${name#c*-}" "$(metric "$json" 0 write)" ;;
    d)
      prep "$name" settled
      timed_fio "$name" "$tag" --name=d --rw=randwrite --bs=4k "${qd32x2[@]}" \
        --size="$size" "${timed[@]}"
      warm[$name]=0
      record d "$name" "$(metric "$json" 0 write)" ;;
    e.read)
      prep "$name" warm
      timed_fio "$name" "$tag" --name=e --rw=read --bs=1M --iodepth=8 \
        --size="$size" "${timed[@]}"
      record e.read "$name" "$(mibs "$json" read)" ;;
    e.write)
      prep "$name" settled
      timed_fio "$name" "$tag" --name=e --rw=write --bs=1M --iodepth=8 \
        --size="$size" "${timed[@]}"
      warm[$name]=0
      record e.write "$name" "$(mibs "$json" write)" ;;
    f)
      prep "$name" filled
      timed_fio "$name" "$tag" --name=f --rw=randtrim --bs=64k "${qd32x2[@]}" \
        --size="$half" --offset_increment="$half" --runtime="$runtime"
      filled[$name]=0; warm[$name]=0
      record f "$name" "$(metric "$json" 0 trim)" ;;
    g)
      # One fio run of five phases of $g_phase s: job 1 reads throughout;
      # job 2 punches in phase 2 (rate-limited) and phase 4 (unlimited).
      # Each "with" phase is compared with the two alone phases around it,
      # so drift of a noisy machine over the run cancels out.
      local puncher=(--rw=randtrimwrite --bs=64k --iodepth=8 --size="$half"
                     --time_based --runtime="$g_phase")
      local ph
      prep "$name" warm
      timed_fio "$name" "$tag" \
        --name=reader --rw=randread --bs=4k --iodepth=32 --offset="$half" \
        --size="$half" --time_based --runtime=$(( 5 * g_phase )) \
        --write_iops_log="$dir/$name.$tag" --log_avg_msec=250 \
        --name=punch-limited "${puncher[@]}" --startdelay="$g_phase" \
        --rate_iops=",$punch_rate,$punch_rate" \
        --name=punch-unlimited "${puncher[@]}" --startdelay=$(( 3 * g_phase ))
      # job 2 rewrites what it trims; a few in-flight trims may be left
      # as holes, in the half job 1 never reads.
      warm[$name]=0
      read -r -a ph < <(phase_means "$dir/${name}.${tag}_iops.1.log")
      record g.alone "$name" "$(awk -v a="${ph[0]}" -v b="${ph[2]}" -v c="${ph[4]}" \
                                  'BEGIN { printf "%.0f", (a + b + c) / 3 }')"
      record g.with "$name" "${ph[1]}"
      record g.withmax "$name" "${ph[3]}"
      record g.kept "$name" "$(awk -v a="${ph[0]}" -v w="${ph[1]}" -v b="${ph[2]}" \
                                 'BEGIN { printf "%.3f", 2 * w / (a + b) }')"
      record g.keptmax "$name" "$(awk -v a="${ph[2]}" -v w="${ph[3]}" -v b="${ph[4]}" \
                                    'BEGIN { printf "%.3f", 2 * w / (a + b) }')"
      extra["g.with|$name"]="${extra["g.with|$name"]:-} $(metric "$json" 1 write)+$(metric "$json" 1 trim)"
      extra["g.withmax|$name"]="${extra["g.withmax|$name"]:-} $(metric "$json" 2 write)+$(metric "$json" 2 trim)" ;;
    h)
      prep "$name" warm
      timed_fio "$name" "$tag" "${timed[@]}" --group_reporting \
        --name=mix --rw=randrw --rwmixread=70 --bs=4k --iodepth=32 \
        --numjobs=2 --size="$size" \
        --name=trim --new_group --rw=randtrim --bs=64k --iodepth=4 \
        --size="$size" --rate_iops=,,500
      filled[$name]=0; warm[$name]=0
      record h "$name" "$(metric "$json" 0 read write)"
      extra["h|$name"]="${extra["h|$name"]:-} $(metric "$json" 1 trim)" ;;
    i)
      # A fresh export of $i_bytes bytes, each 4K block written once in
      # random order (fio's random map), half per connection, no flush
      # (fio sends none without fsync=/end_fsync=); then one FLUSH, sent
      # by flush_fire inside runfio, before its check_alive.
      local base=${name#i*-} moved secs start gap
      flush_arm "$name"
      runfio_then=flush_fire
      timed_fio "$name" "$tag" --name=i --rw=randwrite --bs=4k "${qd32x2[@]}" \
        --size=$(( i_bytes / 2 )) --offset_increment=$(( i_bytes / 2 )) \
        --runtime=600
      runfio_then=""
      moved=$(jget "$json" jobs.0.write.io_bytes)
      [ "$moved" = "$i_bytes" ] ||
        die "i on $name: the burst wrote $moved of $i_bytes bytes"
      read -r secs start <"$dir/$name.flush"
      gap=$(awk -v a="$start" -v e="$(stat -c %.9Y "$json")" \
              'BEGIN { printf "%.3f", a - e }')
      record i.burst "$base" "$(metric "$json" 0 write)"
      record i.flush "$base" "$secs"
      record i.ratio "$base" "$(awk -v f="$secs" -v d="$i_device" \
                                  'BEGIN { printf "%.3f", f / d }')"
      extra["i.flush|$base"]="${extra["i.flush|$base"]:-} $gap" ;;
  esac
}

# ---------------------------------------------------------------- run

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
load_samples=""                       # 1-minute load average before each run
device_vals="" i_device=""            # i: the device's seconds per repetition
t_start=$(date +%s)
log "build: ${build:-none (no punchcache)}"
log "size $size_arg, runtime ${runtime}s, $reps rep(s), workloads ${workloads[*]}, servers ${servers[*]}, in $dir ($fs_type)"

# Servers that some selected workload other than c and i runs on.
main_servers=()
for s in "${servers[@]}"; do
  for w in "${workloads[@]}"; do
    if ! is_fresh "$w" && has "$s" ${eligible[$w]}; then main_servers+=("$s"); break; fi
  done
done
for s in "${main_servers[@]}"; do
  backing "$s" "$s" "$size"
  serve "$s" "$s" "$size"
done
log "started: ${main_servers[*]:-none}"
declare -A direct_io=()               # punchcache server -> pool.direct_io
for s in "${pcs[@]}"; do
  has "$s" "${main_servers[@]}" || continue
  pc_stats_wait "$dir/$s.stats.json" "$dir/$s.stats.start.json"
  direct_io[$s]=$(jget "$dir/$s.stats.start.json" pool.direct_io)
  [ "${direct_io[$s]}" = true ] ||
    warn "$s does not use O_DIRECT here: $(jget "$dir/$s.stats.start.json" pool.direct_io_note)"
done

for w in "${workloads[@]}"; do
  run_servers=()
  for s in "${servers[@]}"; do has "$s" ${eligible[$w]} && run_servers+=("$s"); done
  case "$w" in e) parts=(e.read e.write) ;; *) parts=("$w") ;; esac
  case "$w" in
    e) rows+=(e.read e.write) ;;
    g) rows+=(g.alone g.with g.kept g.withmax g.keptmax) ;;
    i) rows+=(i.burst i.flush i.ratio) ;;
    *) rows+=("$w") ;;
  esac
  (( ${#run_servers[@]} > 0 )) || { log "workload $w: no selected server"; continue; }
  log "workload $w: ${run_servers[*]}"
  run_pcs=()
  for s in "${pcs[@]}"; do has "$s" "${run_servers[@]}" && run_pcs+=("$s"); done
  if [ "$w" = b ]; then
    for s in "${run_pcs[@]}"; do
      log "restarting $s with cache=0 (cold: O_DIRECT pool reads)"
      unserve "$s"; serve "$s" "$s" "$size" 0
    done
  fi
  [ "$w" != c ] || make_iologs
  # Statistics of punchcache and punchcached over a and g (cache hits,
  # lock waits), from after their first preparation.
  snap=()
  if [[ $w == a || $w == g ]]; then
    for s in "${run_pcs[@]}"; do
      snap+=("$s")
      prep "$s" warm
      pc_stats_wait "$dir/$s.stats.json" "$dir/$s.stats.$w.0.json"
    done
  fi
  n=${#run_servers[@]}
  for (( r = 0; r < reps; r++ )); do
    if [ "$w" = i ]; then
      i_device=$(device_write)
      device_vals+=" $i_device"
      log "  i rep $(( r + 1 ))/$reps device: $(( i_bytes / MIB )) MiB O_DIRECT sequential in $i_device s"
    fi
    for (( k = 0; k < n; k++ )); do
      s=${run_servers[(r + k) % n]}
      for part in "${parts[@]}"; do
        load_samples+=" $(cut -d' ' -f1 /proc/loadavg)"
        if is_fresh "$w"; then
          inst=$w$r-$s
          bytes=$c_size; [ "$w" = c ] || bytes=$i_bytes
          backing "$inst" "$s" "$bytes"
          [ "$w" != i ] || pc_debug=(-D punchcache.stats_interval_ms=100)
          serve "$inst" "$s" "$bytes"
          pc_debug=()
          run_one "$w" "$inst" "$w$r"
          unserve "$inst"
          [ "$w" != i ] || i_dirty "$inst" "$s"
          if [ "$w" = c ]; then
            check_allocated "$inst"
            [ -z "${hwm_kb[$inst]:-}" ] || {
              (( hwm_kb[$inst] > ${hwm_kb[c-$s]:-0} )) && hwm_kb[c-$s]=${hwm_kb[$inst]}; :; }
          fi
          rm -rf -- "$dir/$inst".*
        else
          run_one "$part" "$s" "$part.$r"
        fi
        v=${vals["${part/#g/g.kept}|$s"]:-}; v=${v##* }
        [ "$w" != i ] || v="burst ${vals["i.burst|$s"]##* } IOPS, FLUSH ${vals["i.flush|$s"]##* } s (${vals["i.ratio|$s"]##* }× device; ${extra["i.flush|$s"]##* } s after the burst)"
        [ "$w" != g ] || v="alone ${vals["g.alone|$s"]##* } with ${vals["g.with|$s"]##* } kept $v, unlimited ${vals["g.withmax|$s"]##* } kept ${vals["g.keptmax|$s"]##* }"
        log "  $part rep $(( r + 1 ))/$reps $(printf '%-12s' "$s") $v"
      done
    done
  done
  for s in "${snap[@]}"; do
    pc_stats_wait "$dir/$s.stats.json" "$dir/$s.stats.$w.1.json"
  done
  if [ "$w" = b ]; then
    for s in "${run_pcs[@]}"; do
      log "restarting $s with cache=$(( pc_cache / MIB ))M"
      unserve "$s"; serve "$s" "$s" "$size"
      warm[$s]=0
    done
  fi
done

declare -A rss=()
for s in "${main_servers[@]}"; do rss[$s]=$(peak_rss "$s"); done
for s in "${servers[@]}"; do
  [ -z "${hwm_kb[c-$s]:-}" ] || rss[c-$s]=$(human $(( hwm_kb[c-$s] * 1024 )))
done
for s in "${main_servers[@]}"; do unserve "$s"; done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
load_during=$(summarize "$load_samples" %.1f 2>/dev/null || echo "? ? ?")
elapsed=$(( $(date +%s) - t_start ))

# ---------------------------------------------------------------- report

declare -A med=() lo=() hi=()
for row in "${rows[@]}"; do
  fmt=%.0f; ! is_frac "$row" || fmt=%.3f
  for s in "${servers[@]}"; do
    [ -n "${vals["$row|$s"]:-}" ] || continue
    read -r "med[$row|$s]" "lo[$row|$s]" "hi[$row|$s]" \
      < <(summarize "${vals["$row|$s"]}" "$fmt")
  done
done

# cell ROW SERVER: the median, formatted, or n/a / — (not run).
cell () {
  local w=${1%%.*}
  if [ -n "${med["$1|$2"]:-}" ]; then
    if is_frac "$1"; then printf '%.2f' "${med["$1|$2"]}"
    else commas "${med["$1|$2"]}"; fi
  elif ! has "$2" ${eligible[$w]}; then printf 'n/a'
  else printf '—'
  fi
}

# ratio_of SUBJECT ROW PEER: SUBJECT median / PEER median.
ratio_of () {
  if [ -n "${med["$2|$1"]:-}" ] && [ -n "${med["$2|$3"]:-}" ]; then
    ratio "${med["$2|$1"]}" "${med["$2|$3"]}"
  elif ! has "$3" ${eligible[${2%%.*}]}; then printf 'n/a'
  else printf '—'
  fi
}
# pc_ratio / pcd_ratio ROW PEER: the plugin's / punchcached's ratio.
pc_ratio () { ratio_of punchcache "$@"; }
pcd_ratio () { ratio_of punchcached "$@"; }

# rss_cell main|c SERVER: peak RSS of its main process / of c's processes.
rss_cell () {
  if [ "$1" = main ]; then printf '%s' "${rss[$2]:-—}"
  else printf '%s' "${rss[c-$2]:-n/a}"; fi
}

# table_header TITLE PREFIX SERVERS...: the header and rule of a table
# with one numeric column per server ("PREFIX label").
table_header () {
  local title=$1 prefix=$2 s; shift 2
  printf '| %s |' "$title"
  for s in "$@"; do printf ' %s%s |' "$prefix" "${label[$s]}"; done; echo
  printf '|---|'; for s in "$@"; do printf -- '--:|'; done; echo
}

# table_row FN ROW LEAD SERVERS...: "| LEAD | FN ROW SERVER | ... |".
table_row () {
  local fn=$1 row=$2 lead=$3 s; shift 3
  printf '| %s |' "$lead"
  for s in "$@"; do printf ' %s |' "$("$fn" "$row" "$s")"; done; echo
}

# verdict VALUE OP LIMIT: "met" / "missed" / "not run".
verdict () {
  [ -n "$1" ] && [ "$1" != n/a ] && [ "$1" != — ] || { echo "not run"; return; }
  awk -v v="${1%×}" -v l="$3" -v op="$2" 'BEGIN {
    ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 < l + 0)
    print ok ? "**met**" : "**missed**" }'
}

# The peers: every server but punchcache's (the two front-ends, with
# write-back on and off).
peers=()
for s in "${servers[@]}"; do is_pc "$s" || peers+=("$s"); done

# ratio_table SUBJECT FN PEERS...: SUBJECT median / each PEER median.
ratio_table () {
  local subject=$1 fn=$2 row; shift 2
  echo
  echo "### Ratios: ${label[$subject]} median / peer median"
  echo
  table_header workload "÷ " "$@"
  for row in "${rows[@]}"; do
    is_frac "$row" || table_row "$fn" "$row" "${row_title[$row]}" "$@"
  done
}


report=$dir/report.md
{
  echo "## punchcache benchmark suite (SPEC §7)"
  echo
  if has qemu "${servers[@]}" || has qemu-default "${servers[@]}"; then
    machine_line qemu
  else machine_line; fi
  echo
  echo "\`$cmdline\`"
  echo
  echo "fio ioengine=nbd over Unix sockets; exports of $(( size / MIB )) MiB" \
       "(c: fresh exports of $(( c_size / MIB )) MiB); ${runtime} s per timed" \
       "run; $reps repetition(s) per workload, server order rotating;" \
       "nbdkit --threads $NBDKIT_THREADS; qemu-nbd -f qcow2 --cache=none" \
       "--aio=native --discard=unmap (one main-loop thread, Linux AIO)" \
       "and qemu-nbd -f qcow2 --discard=unmap (its default cache=writeback" \
       "and aio=threads), both -e 4;" \
       "punchcache (plugin) and punchcached: cache=$(( pc_cache / MIB ))M, block ${pc_block_size:-64K}${pc_params[*]:+, ${pc_params[*]}}," \
       "writeback=on (their default; dirty= and dirty-expire= their defaults unless given above)$(
         ! has punchcache-wt "${servers[@]}" && ! has punchcached-wt "${servers[@]}" ||
           printf ', and the same with writeback=off (the -wt columns)')," \
       "direct_io $(for s in "${pcs[@]}"; do printf '%s=%s ' "$s" "${direct_io[$s]:-n/a}"; done)(punchcached" \
       "with its default event loop threads, one per CPU); work directory on $fs_type." \
       "Load average before: $load_before, after: $load_after;" \
       "1-minute load average before each timed run: median" \
       "$(cut -d' ' -f1 <<<"$load_during"), min $(cut -d' ' -f2 <<<"$load_during")," \
       "max $(cut -d' ' -f3 <<<"$load_during") ($(nproc) cores, shared: fio" \
       "and the server compete for them, and other engineers' builds and" \
       "tests ran at the same time). Whole run: $(( elapsed / 60 )) min $(( elapsed % 60 )) s."
  [ -z "$perf_dir" ] || echo "**perf record was attached to punchcache and" \
       "punchcached: their numbers carry perf's overhead; do not compare them.**"
  [ -z "$pc_block_size$pc_what_if" ] || echo "**What-if run: punchcache and" \
       "punchcached are not in their default configuration (see above).**"
  echo
  echo "### Overview: medians"
  echo
  table_header workload "" "${servers[@]}"
  for row in "${rows[@]}"; do
    table_row cell "$row" "${row_title[$row]} (${row_unit[$row]:-IOPS})" "${servers[@]}"
  done
  table_row rss_cell main "peak RSS (VmHWM)" "${servers[@]}"
  ! has c "${workloads[@]}" ||
    table_row rss_cell c "peak RSS, c (fresh export)" "${servers[@]}"
  echo
  echo "n/a: the workload does not apply to that server; —: not run."
  # Each front-end against the peers and its own writeback=off (the gain
  # of write-back); punchcached against the plugin too.
  pc_peers=("${peers[@]}")
  ! has punchcache-wt "${servers[@]}" || pc_peers+=(punchcache-wt)
  pcd_peers=("${peers[@]}")
  ! has punchcache "${servers[@]}" || pcd_peers+=(punchcache)
  ! has punchcached-wt "${servers[@]}" || pcd_peers+=(punchcached-wt)
  ratios=no
  if has punchcache "${servers[@]}" && (( ${#pc_peers[@]} > 0 )); then
    ratio_table punchcache pc_ratio "${pc_peers[@]}"; ratios=yes
  fi
  if has punchcached "${servers[@]}" && (( ${#pcd_peers[@]} > 0 )); then
    ratio_table punchcached pcd_ratio "${pcd_peers[@]}"; ratios=yes
  fi
  if [ "$ratios" = yes ]; then
    echo
    echo "For g the figure that matters is the kept share (next table), not" \
         "the raw IOPS ratio."
  fi

  echo
  echo "### SPEC §7 targets"
  echo
  echo "| target | measured | result |"
  echo "|---|--:|---|"
  t () { echo "| $1 | $2 | $(verdict "$2" "$3" "$4") |"; }
  t "Cached 4K random read (a): plugin ≥ 1.0× nbdkit memory" "$(pc_ratio a memory)" ">=" 1.0
  t "Cached 4K random read (a): plugin ≥ 0.9× nbdkit null" "$(pc_ratio a null)" ">=" 0.9
  t "Cached 4K random read (a): punchcached ≥ 1.5× the plugin" "$(pcd_ratio a punchcache)" ">=" 1.5
  t "Cached 4K random read (a): punchcached ≥ 1.2× nbdkit null" "$(pcd_ratio a null)" ">=" 1.2
  t "4K random write into a fresh thin volume (c): plugin ≥ 1.5× qemu-nbd qcow2 in its default cache mode" \
    "$(pc_ratio c qemu-default)" ">=" 1.5
  t "4K random write into a fresh thin volume (c): plugin ≥ 3× qemu-nbd qcow2 cache=none" \
    "$(pc_ratio c qemu)" ">=" 3
  t "4K random overwrite (d) ≥ 1.0× nbdkit file" "$(pc_ratio d file)" ">=" 1.0
  t "1 MiB sequential read (e) ≥ 1.0× nbdkit file" "$(pc_ratio e.read file)" ">=" 1.0
  t "1 MiB sequential write (e) ≥ 1.0× nbdkit file" "$(pc_ratio e.write file)" ">=" 1.0
  for v in kept keptmax; do
    how="job 2 at $punch_rate+$punch_rate/s"; [ "$v" = kept ] || how="job 2 unlimited"
    kept_pc=$(cell "g.$v" punchcache); kept_file=$(cell "g.$v" file)
    t "Reads under disjoint punches (g, $how): kept share ≥ 0.85" "$kept_pc" ">=" 0.85
    if [ -n "${med["g.$v|punchcache"]:-}" ] && [ -n "${med["g.$v|file"]:-}" ]; then
      t "Reads under disjoint punches (g, $how): kept share ≥ nbdkit file's ($kept_file)" \
        "$kept_pc" ">=" "$kept_file"
    else
      echo "| Reads under disjoint punches (g, $how): kept share ≥ nbdkit file's | — | not run |"
    fi
  done
  i_mib=$(( i_bytes / MIB )); i_spec=""
  (( i_bytes == 1 << 30 )) || i_spec=" (SPEC: 1 GiB; here --size)"
  for s in punchcache punchcached; do
    v=$(cell i.ratio "$s"); [[ $v != [0-9]* ]] || v+="×"
    t "FLUSH after a burst of $i_mib MiB of 4K random writes (i): ${label[$s]} ≤ 1.2× the device's O_DIRECT sequential write of $i_mib MiB$i_spec" \
      "$v" "<" 1.2001
  done
  if [ -n "${final_stats[punchcache]:-}" ]; then
    meta=$(pcstat "${final_stats[punchcache]}" pool.metadata_ram)
    used=$(pcstat "${final_stats[punchcache]}" pool.used)
    mshare=$(awk -v m="$meta" -v u="$used" 'BEGIN {
      if (u + 0 > 0) printf "%.3f%%", 100 * m / u; else print "n/a" }')
    echo "| Metadata RAM ≤ 0.1% of allocated data (at the default block size; here ${pc_block_size:-64K}) | $mshare ($(human "$meta") for $(human "$used")) |" \
         "$(verdict "${mshare%\%}" "<" 0.1001) |"
  fi
  echo "| Memory: RSS within cache budget + 5% + metadata | peak: plugin ${rss[punchcache]:-—}, punchcached ${rss[punchcached]:-—}; budget $(( pc_cache / MIB )) MiB | not stressed here (working set < budget): tests/test-memory.sh |"
  echo "| Open time of a pool with 1 TiB allocated < 1 s | — | not measured here |"

  echo
  echo "### Per workload: median, min, max over $reps repetition(s)"
  for row in "${rows[@]}"; do
    w=${row%%.*}
    case "$row" in g.alone|g.with|g.withmax|g.keptmax|i.burst|i.ratio) continue ;; esac  # in g.kept's, i.flush's tables
    echo
    if [ "$row" = i.flush ]; then
      read -r dmed dlo dhi < <(summarize "$device_vals" %.3f)
      echo "#### i. FLUSH after a burst of $i_mib MiB of 4K random writes into a fresh export"
      echo
      echo "Device reference (the same run, once per repetition): dd of" \
           "$i_mib MiB, bs=1M, oflag=direct conv=fsync, into a file of the" \
           "work directory: median $dmed s (min $dlo, max $dhi), $(awk \
             -v b="$i_mib" -v t="$dmed" 'BEGIN { printf "%.0f", b / t }') MiB/s." \
           "FLUSH ÷ device: per repetition, against that repetition's device" \
           "time.  Gap: seconds from the end of the burst (fio's report" \
           "written) to the FLUSH, per repetition (the FLUSH goes on a" \
           "connection opened before the burst): write-back that ran" \
           "in it is not in the FLUSH time.  Dirty before the FLUSH /" \
           "written back since: punchcache's and punchcached's own" \
           "statistics, per repetition: writeback.dirty_bytes in their last" \
           "statistics before the FLUSH (rewritten every 100 ms in i: -D" \
           "punchcache.stats_interval_ms=100, so up to ~0.1 s before the" \
           "end of the burst), and the growth of writeback.bytes_written from" \
           "then to the server's exit (whole cache pages: a 4K write dirties" \
           "its page; a page written back during the burst and dirtied again" \
           "counts twice); n/a for the peers (the page cache's dirty pages" \
           "are not per file)."
      echo
      echo "| server | burst (IOPS) | FLUSH (s) | FLUSH ÷ device | gap (s) | dirty before the FLUSH / written back since (MiB) |"
      echo "|---|--:|--:|--:|---|---|"
      for s in "${servers[@]}"; do
        has "$s" ${eligible[i]} || { echo "| ${label[$s]} | n/a | | | | |"; continue; }
        [ -n "${med["i.flush|$s"]:-}" ] || { echo "| ${label[$s]} | — | | | | |"; continue; }
        printf '| %s | %s | %.2f (%.2f–%.2f) | %.2f× (%.2f–%.2f) |%s |%s |\n' "${label[$s]}" \
          "$(commas "${med["i.burst|$s"]}")" \
          "${med["i.flush|$s"]}" "${lo["i.flush|$s"]}" "${hi["i.flush|$s"]}" \
          "${med["i.ratio|$s"]}" "${lo["i.ratio|$s"]}" "${hi["i.ratio|$s"]}" \
          "${extra["i.flush|$s"]:-}" "${extra["i.dirty|$s"]:- n/a}"
      done
      echo
      echo "n/a: ${na_why[i]}."
      continue
    fi
    if [ "$row" = g.kept ]; then
      echo "#### g. reads (job 1) while job 2 writes and punches a disjoint range (IOPS)"
      echo
      echo "Job 1's IOPS (medians; alone = mean of the three alone phases);" \
           "kept share = the with phase / the mean of the alone phases" \
           "before and after it, per repetition: median (min–max).  Job 2's" \
           "achieved writes+trims per second, per repetition."
      echo
      echo "| server | alone | with job 2 at $punch_rate+$punch_rate/s | kept | job 2 achieved | with job 2 unlimited | kept | job 2 achieved |"
      echo "|---|--:|--:|--:|---|--:|--:|---|"
      for s in "${servers[@]}"; do
        has "$s" ${eligible[g]} || { echo "| ${label[$s]} | n/a | | | | | | |"; continue; }
        [ -n "${med["g.kept|$s"]:-}" ] || { echo "| ${label[$s]} | — | | | | | | |"; continue; }
        printf '| %s | %s |' "${label[$s]}" "$(commas "${med["g.alone|$s"]}")"
        for v in with withmax; do
          k=${v/with/kept}
          printf ' %s | %.2f (%.2f–%.2f) |%s |' "$(commas "${med["g.$v|$s"]}")" \
            "${med["g.$k|$s"]}" "${lo["g.$k|$s"]}" "${hi["g.$k|$s"]}" \
            "${extra["g.$v|$s"]:-}"
        done
        echo
      done
      echo
      echo "n/a: ${na_why[g]}."
      continue
    fi
    echo "#### ${row_title[$row]} (${row_unit[$row]:-IOPS})"
    echo
    echo "| server | median | min | max | spread | plugin ÷ server | punchcached ÷ server |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    for s in "${servers[@]}"; do
      if [ -z "${med["$row|$s"]:-}" ]; then
        echo "| ${label[$s]} | $(cell "$row" "$s") | | | | | |"; continue
      fi
      spread=$(awk -v m="${med["$row|$s"]}" -v a="${lo["$row|$s"]}" -v b="${hi["$row|$s"]}" \
                 'BEGIN { printf "%.0f%%", (m > 0 ? 100 * (b - a) / m : 0) }')
      r="—"; [ "$s" = punchcache ] || r=$(pc_ratio "$row" "$s")
      rd="—"; [ "$s" = punchcached ] || rd=$(pcd_ratio "$row" "$s")
      echo "| ${label[$s]} | $(commas "${med["$row|$s"]}") | $(commas "${lo["$row|$s"]}")" \
           "| $(commas "${hi["$row|$s"]}") | $spread | $r | $rd |"
    done
    if [ -n "${na_why[$w]:-}" ]; then echo; echo "n/a: ${na_why[$w]}."; fi
    if [ "$row" = h ]; then
      echo
      printf 'Trims/s achieved per rep:'
      for s in "${servers[@]}"; do [ -z "${extra["h|$s"]:-}" ] || printf ' %s%s;' "$s" "${extra["h|$s"]}"; done
      echo
    fi
  done

  echo
  echo "### Setup notes"
  echo
  echo "- a, e.read, g, h run on warm exports: after the last write, one" \
       "sequential 1M read pass per server (the block cache of punchcache" \
       "and punchcached, the page cache of the file peers and of qemu-nbd" \
       "default cache; none for qemu-nbd cache=none: it keeps no data, and" \
       "its qcow2 metadata is cached since the fill)."
  echo "- qemu-nbd cache=none (O_DIRECT, as punchcache's pool I/O;" \
       "libvirt's usual setting for VM disks) has no data cache, so in a," \
       "e.read, g and h it reads from the disk, and its discards (fallocate" \
       "on the image) wait for its in-flight direct I/O.  qemu-nbd default" \
       "cache (cache=writeback, aio=threads: what a plain qemu-nbd -f qcow2" \
       "gives) uses the page cache like nbdkit file.  The cache of" \
       "punchcache and punchcached (2 × the export) holds the whole" \
       "export, as a cache sized for the working set would."
  echo "- punchcache (plugin) and punchcached serve pools made the same way" \
       "(same capacity, block size, volume) with the same parameters;" \
       "punchcached runs its default number of event loop threads (one per" \
       "CPU), the plugin nbdkit's --threads $NBDKIT_THREADS."
  if [[ $fs_type == *discard* ]]; then
    echo "- The work directory's file system is mounted with discard: every" \
         "punch that frees space (the trims of f, g and h) sends a" \
         "synchronous discard to the device while it holds the file's inode" \
         "lock, for every server that punches."
  fi
  echo "- b (cold): punchcache and punchcached restarted on the same pool" \
       "with cache=0 (O_DIRECT reads of the pool), then restarted again" \
       "with their cache for the later workloads; nbdkit file, the cache" \
       "filter and qemu-nbd default cache keep running, with their files'" \
       "page cache dropped before each run (fsync + POSIX_FADV_DONTNEED on" \
       "their own files only); qemu-nbd cache=none as it is."
  echo "- c: a new export and a new server process per repetition and" \
       "server; $c_units writes of 4K, one per 64 KiB unit, in a" \
       "fixed shuffled order, until done or ${runtime} s; IOPS = writes / time."
  if has i "${workloads[@]}"; then
    echo "- i: a new export of $i_mib MiB and a new server process per" \
         "repetition and server, as in c; fio writes every 4K block of it" \
         "once, in random order (QD32 × 2, each connection its half), and" \
         "sends no flush; as soon as fio has exited, a connection that nbdsh" \
         "opened before the burst sends one FLUSH (timed alone).  punchcache and punchcached with writeback=on hold the" \
         "burst as dirty pages (dirty= default: half of cache=, here" \
         "$(( pc_cache / 2 / MIB )) MiB) and write it back at the FLUSH;" \
         "nbdkit file, the cache filter and qemu-nbd default cache hold it" \
         "in the page cache (fdatasync at the FLUSH); qemu-nbd cache=none" \
         "and the writeback=off servers wrote it through, and their FLUSH" \
         "syncs metadata and the disk's cache only."
  fi
  echo "- d and e.write start settled: the files of the file peers and of" \
       "qemu-nbd default cache are written" \
       "back and dropped from the page cache before every run, as for b," \
       "so where an overwrite starts does not depend on which workloads" \
       "ran before; on this kernel that is the faster state for nbdkit" \
       "file (its 4K overwrites of pages left cached in large folios by" \
       "the sequential fill ran at ~30k IOPS against ~80k)."
  echo "- d, e.write overwrite the fully written export in place; f trims" \
       "it in one random pass, the export is rewritten before every" \
       "repetition of f and h."
  echo "- g: one fio run per server and repetition, five phases of" \
       "${g_phase} s (alone, limited, alone, unlimited, alone); job 1 = 4K" \
       "random reads QD32 on the second half, job 2 = fio randtrimwrite 64K" \
       "QD8 on the first half (fio 3.33's randtrimwrite ignores offset=," \
       "hence this order), limited to $punch_rate trims/s + $punch_rate" \
       "writes/s (the same punch load for every server: the figure for the" \
       "lock) or unlimited (as fast as each server punches: on 2 cores job 2" \
       "then mostly takes CPU from job 1, and a server that punches faster" \
       "loses more)."
  # delta S W KEY: KEY's growth in server S's statistics over workload W.
  delta () {
    echo $(( $(pcstat "$dir/$1.stats.$2.1.json" "$3") -
             $(pcstat "$dir/$1.stats.$2.0.json" "$3") ))
  }
  for s in "${pcs[@]}"; do
    if [ -f "$dir/$s.stats.a.1.json" ]; then
      hits=$(delta "$s" a cache.hits); miss=$(delta "$s" a cache.misses)
      echo "- ${label[$s]}'s block cache during a: $hits hits, $miss misses" \
           "($(awk -v h="$hits" -v m="$miss" 'BEGIN {
                if (h + m) printf "%.2f%%", 100 * h / (h + m); else print "n/a" }')" \
           "hits): the cached reads were served from RAM."
    fi
  done
  for s in "${pcs[@]}"; do
    if [ -f "$dir/$s.stats.g.1.json" ]; then
      echo "- ${label[$s]} during g: $(delta "$s" g invalidate_lock.exclusive_acquired)" \
           "exclusive invalidate-lock acquisitions (punches)," \
           "$(delta "$s" g invalidate_lock.exclusive_waits) of them waited;" \
           "$(delta "$s" g invalidate_lock.shared_waits) shared acquisitions waited."
    fi
  done
  if [ -n "${pcs[*]}" ] && has g "${workloads[@]}"; then
    echo "  Job 2 writes each block right after trimming it (QD8), so these" \
         "waits are job 2's writes queued behind its own trims; job 1's range" \
         "is disjoint, and disjoint ranges never wait for each other" \
         "(rangelock.c RL4, SPEC I8)."
  fi
  for s in "${pcs[@]}"; do
    f=${final_stats[$s]:-}
    [ -n "$f" ] || continue
    echo "- ${label[$s]} at exit: cache hit rate over its last life" \
         "$(awk -v r="$(pcstat "$f" cache.hit_rate)" 'BEGIN { printf "%.1f%%", 100 * r }')," \
         "$(pcstat "$f" pool.commits) commits, direct_io=$(pcstat "$f" pool.direct_io)."
  done
  echo "- Every server was checked alive (process running, NBD handshake" \
       "answered) after every fio run; none died (a death stops the run)."
  echo "- spread = (max − min) / median over the repetitions; above ~20% the" \
       "machine was noisy for that cell, read the ratio with care."
  echo
  echo "### Raw values (per repetition, in run order)"
  echo
  for row in "${rows[@]}"; do
    printf -- '- %s:' "$row"
    for s in "${servers[@]}"; do
      [ -z "${vals["$row|$s"]:-}" ] || printf ' %s%s;' "$s" "${vals["$row|$s"]}"
    done
    echo
  done
  [ -z "$device_vals" ] || echo "- i.device (s):$device_vals"
} >"$report"

for s in "${servers[@]}"; do
  if [ -s "$dir/$s.log" ] && grep -qiv '^$' "$dir/$s.log"; then
    log "$s logged:"; sed 's/^/    /' "$dir/$s.log" | head -20 >&2
  fi
done

cat "$report"
[ -z "$out" ] || cp "$report" "$out"
log "done in $(( elapsed / 60 )) min $(( elapsed % 60 )) s"
