#!/usr/bin/env bash
# bench/origin.sh - the origin benchmark (issue 15): a volume that reads
# through a slow remote NBD export and keeps what it read.  punchcache's two
# front-ends with origin= against nbdkit's cow and cache filters over the
# nbd plugin and qemu-nbd on a qcow2 overlay with the origin as its backing
# file; six fio workloads; what each server asks of the origin; one markdown
# report.  Run with --help for the full description.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

usage () {
  cat <<EOF
NAME
    $prog - the origin benchmark: punchcache's two front-ends reading
    through a slow remote NBD export (origin=URI, copy-on-read into the
    pool, overlay writes), against nbdkit's cow and cache filters and
    qemu-nbd's qcow2 overlay in front of the same origin

SYNOPSIS
    bench/$prog [--quick] [--size SIZE] [--runtime S] [--reps N]
                   [--origin-delay MS] [--servers LIST]
                   [--pc-param KEY=VALUE] [--build DIR] [--out FILE]
    bench/$prog --help

DESCRIPTION
    The origin: a file of SIZE bytes of random data (never zero, so no
    server can skip it as a hole) served by

        nbdkit --filter=log --filter=delay file ORIGIN.img
               delay-read=MSms delay-write=MSms logfile=...

    with --threads $NBDKIT_THREADS, on a Unix socket: every request waits MS
    milliseconds (a remote disk), and the log filter records every request
    that reaches it, which gives per workload the bytes and requests each
    server asked of the origin (its frugality).  Each server gets its own
    origin process over the same file (its own log); the origin lives
    across that server's restarts.  The file is read through the host's
    page cache: the origin's cost is the delay, not a disk.

    Servers in front of it (names for --servers), each on its own Unix
    socket in a private work directory under \$TMPDIR (a disk file
    system, not tmpfs), each run as its users run it by default:

      punchcache   the plugin: nbdkit punchcache pool=POOL size=2xSIZE
                   origin=nbd+unix:///?socket=ORIGIN.sock (a fresh pool
                   file; the volume "default" takes the origin's size;
                   origin-mode and origin-connections at their defaults)
      punchcached  the standalone server with the same parameters:
                   punchcached -f -U SOCK pool=... size=... origin=...
      cow          nbdkit --filter=cow nbd socket=ORIGIN.sock (the overlay
                   keeps writes only; it is a temporary file)
      cow-cor      the same with cow-on-read=true (reads are copied into
                   the overlay too); left out when this nbdkit's cow
                   filter has no cow-on-read
      cache        nbdkit --filter=cache nbd socket=ORIGIN.sock, the cache
                   filter's defaults (cache-mode=writeback,
                   cache-on-read=false: it caches writes, not reads; its
                   cache is a temporary file)
      cache-cor    the same with cache-on-read=true
      qemu         qemu-nbd on a qcow2 overlay whose backing file is the
                   origin: qemu-img create -f qcow2 -b
                   'nbd+unix:///?socket=ORIGIN.sock' -F raw OVERLAY, served
                   qemu-nbd -f qcow2 -t -e 4 --discard=unmap -k SOCK
                   OVERLAY (default cache; the overlay keeps writes only)
      qemu-cor     the same overlay through qemu's copy-on-read filter:
                   qemu-nbd --image-opts -t -e 4 --discard=unmap
                   driver=copy-on-read,file.driver=qcow2,
                   file.file.driver=file,file.file.filename=OVERLAY
                   (reads are copied into the overlay, which persists)

    The nbdkit servers run with --threads $NBDKIT_THREADS; their temporary
    files (cow overlay, cache) go to the work directory.

    Workloads (numbers as in the report), fio --ioengine=nbd, one
    connection:

      1  cold sequential read, 1M, QD8, of the whole volume: the first
         touch, everything comes from the origin.  Bounded by size (it must
         move every byte) and by 600 s.
      2  warm sequential read, 1M, QD8: the same pass again.
      3  cold 4K random read, QD16, for --runtime seconds, on a second,
         fresh instance of the server (a new pool, overlay or process), so
         that nothing the sequential passes read helps it.  fio records
         the offsets it read (an iolog).  A server that copies whole
         blocks on read (punchcache's 64K blocks, qcow2's clusters, the
         cow filter's blocks) warms up during the run: on a small volume
         the later reads of 3 hit what the earlier ones fetched (the
         origin columns show how much of the volume 3 fetched).
      4  warm 4K random read: exactly the reads of 3 again (fio replays
         3's iolog, same offsets, same order, QD16, no stalls): a region
         read once before.  Its read count must equal 3's.
      5  4K random write, QD16, for --runtime seconds, on that second
         instance (overlay writes: they should never reach the origin;
         the origin's write column shows whether they did).
      6  persistence: the first instance (after 1 and 2) is stopped and
         started again on the same storage, then the sequential pass of 1
         runs once more.  Only punchcache's pool and qemu's qcow2 overlay
         survive a restart; the cow and cache filters start empty, and
         qemu without copy-on-read kept no reads: their figure is another
         cold pass, and the report says so.

    For each workload and server: MiB/s (1, 2, 6) or IOPS (3, 4, 5); the
    bytes and requests that reached the origin (read and written) during
    it (counted from the origin's log between the start and the end of
    the run, plus 1 s for what a server does in the background just
    after); punchcache ÷ peer and punchcached ÷ peer ratios; whether the
    warm data survived the restart (6 asked the origin for less than 1%
    of what 1 asked); each server's local storage after 2 (du of its
    pool, overlay or temporary files) and peak RSS.

    Repetitions: every server runs its six workloads --reps times (each
    time on a new origin process and new local storage); within a
    repetition the servers run one after another, and their order rotates
    from one repetition to the next, so slow drift of the machine does not
    favour one server.  The report gives medians (throughput, origin
    traffic, ratios of medians) and the min-max of every throughput
    figure.  A shared, noisy machine: read the ratios, the spread, and the
    origin columns (which hardly depend on the noise), not the absolute
    values.

OPTIONS
    --quick            a fast run: --size 128M --runtime 3 --reps 1 (each
                       can still be given explicitly)
    --size SIZE        size of the origin, with an optional K, M, G or T
                       suffix (powers of 1024); a whole number of MiB, at
                       least 64M (default 1G)
    --runtime S        seconds of workloads 3 and 5 (and the bound of 4:
                       5 x S + 60); integer >= 1 (default 10)
    --reps N           repetitions of every server's six workloads
                       (integer >= 1; default 3)
    --origin-delay MS  the origin's delay per read and per write request in
                       milliseconds, 0 to 9999 (default 2); "2ms" also
                       accepted
    --servers LIST     comma-separated subset of punchcache, punchcached,
                       cow, cow-cor, cache, cache-cor, qemu, qemu-cor
                       (default all).  By default punchcache and
                       punchcached are left out, with a warning and a line
                       in the report, when the build has no origin=
                       support; named explicitly, they must have it
    --pc-param KEY=VALUE
                       what-if runs: pass this parameter to punchcache
                       and punchcached too (repeatable); KEY one of
                       cache=SIZE, origin-connections=N, block-size=SIZE
                       (the servers check the values); said in the report
    --build DIR        build tree holding plugins/punchcache/.libs/
                       nbdkit-punchcache-plugin.so, tools/punchcache and
                       server/punchcached (default: \$BUILD if set, else
                       ../build next to the source tree if it holds a
                       build, else the source tree itself)
    --out FILE         also write the markdown report to FILE (the
                       committed one: bench/results/origin-latest.md)
    -h, --help         show this help and exit

REQUIREMENTS
    nbdkit with the file and nbd plugins and the log, delay, cow and cache
    filters; qemu-img and qemu-nbd (qemu-utils); fio with ioengine=nbd;
    nbdinfo (libnbd-bin); jq or python3; du, findmnt, awk.  Disk: about
    4 x SIZE in \$TMPDIR (the origin, and the local copies of every
    server: one server's at a time, removed after it).  Memory: the
    origin file in the page cache, SIZE.

ENVIRONMENT
    TMPDIR      where the work directory goes (default /tmp)
    BUILD       default for --build
    BENCH_KEEP  if set, keep the work directory (server and origin logs,
                fio JSON, iologs) instead of removing it at exit

EXAMPLES
    bench/$prog --quick --servers cow,qemu-cor    # peers only, ~1 minute
    bench/$prog --size 512M --runtime 10 --out bench/results/origin-latest.md
                                                  # ~20 minutes on 2 cores
    bench/$prog --origin-delay 10 --servers punchcache,qemu-cor

SEE ALSO
    bench/run.sh --help (the main suite, no origin), SPEC §5 (origin=,
    origin-mode=, origin-connections=), nbdkit-cow-filter(1),
    nbdkit-cache-filter(1), nbdkit-delay-filter(1), nbdkit-log-filter(1),
    qemu-nbd(8)

EXIT STATUS
    0 on success, 1 on a failure (a server or origin that did not start or
    did not survive a run, a fio run that failed, a pass that did not move
    every byte), 2 on a usage error.
EOF
}

# ---------------------------------------------------------------- options

cmdline=$(quote_cmdline "$0" "$@")

all_servers=(punchcache punchcached cow cow-cor cache cache-cor qemu qemu-cor)
quick=no size_arg="" runtime="" reps="" delay_ms=2 pc_params=() servers_arg="" build="" out=""

while [ $# -gt 0 ]; do
  take_opt "--size --runtime --reps --origin-delay --servers --pc-param --build --out" \
           "--quick -h --help" "$@"
  shift "$nshift"
  case "$opt" in
    -h|--help)      usage; exit 0 ;;
    --quick)        quick=yes ;;
    --size)         size_arg=$val ;;
    --runtime)      runtime=$val ;;
    --reps)         reps=$val ;;
    --origin-delay) [[ $val =~ ^([0-9]{1,4})(ms)?$ ]] ||
                      usage_error "--origin-delay: want milliseconds, 0 to 9999 (e.g. 2 or 2ms), got '$val'"
                    delay_ms=$(( 10#${BASH_REMATCH[1]} )) ;;
    --servers)      servers_arg=$val ;;
    --pc-param)     [[ $val =~ ^(cache|origin-connections|block-size)=[0-9]+[KkMmGg]?$ ]] ||
                      usage_error "--pc-param: want cache=SIZE, origin-connections=N or block-size=SIZE, got '$val'"
                    pc_params+=("$val") ;;
    --build)        build=$val ;;
    --out)          out=$val ;;
  esac
done

if [ "$quick" = yes ]; then
  : "${size_arg:=128M}" "${runtime:=3}" "${reps:=1}"
else
  : "${size_arg:=1G}" "${runtime:=10}" "${reps:=3}"
fi
want_size size --size "$size_arg" $(( 64 * MIB ))
want_uint --runtime "$runtime" 4
want_uint --reps "$reps" 2
[ -z "$out" ] || want_out_file "$out"

explicit_servers=no
if [ -n "$servers_arg" ]; then
  explicit_servers=yes
  [[ $servers_arg =~ ^[a-z-]+(,[a-z-]+)*$ ]] ||
    usage_error "--servers: want a comma-separated list, got '$servers_arg'"
  declare -A want_server=()
  for s in ${servers_arg//,/ }; do
    [[ " ${all_servers[*]} " == *" $s "* ]] ||
      usage_error "--servers: unknown '$s' (known: $(IFS=,; echo "${all_servers[*]}"))"
    want_server[$s]=1
  done
  servers=()
  for s in "${all_servers[@]}"; do [ -z "${want_server[$s]:-}" ] || servers+=("$s"); done
else
  servers=("${all_servers[@]}")
fi

has () { local x=$1; shift; [[ " $* " == *" $x "* ]]; }
# mentions WORD CMD...: CMD's --help text (stdout and stderr) has WORD.
# Read whole, not piped into grep -q: with pipefail, grep quitting at the
# first match can fail the pipeline with SIGPIPE in the writer.
mentions () { local w=$1 text; shift; text=$("$@" 2>&1) || :; [[ $text == *"$w"* ]]; }
is_pc () { [[ $1 == punchcache || $1 == punchcached ]]; }

# ---------------------------------------------------------------- setup

need_cmds nbdkit nbdinfo du findmnt
need_fio_nbd
{ has qemu "${servers[@]}" || has qemu-cor "${servers[@]}"; } &&
  need_cmds qemu-nbd qemu-img

# Servers left out, and why (a line of the report each).
skipped=()
drop_server () {
  local s=$1 why=$2 kept=() x
  [ "$explicit_servers" = no ] || die "$s: $why"
  warn "leaving out $s: $why"
  skipped+=("$s: $why")
  for x in "${servers[@]}"; do [ "$x" = "$s" ] || kept+=("$x"); done
  servers=("${kept[@]}")
}

has cow-cor "${servers[@]}" &&
  ! mentions cow-on-read nbdkit --help --filter=cow nbd &&
  drop_server cow-cor "this nbdkit's cow filter has no cow-on-read (nbdkit --help --filter=cow nbd)"

# punchcache: the build, and origin= in it (the feature of issue 15).
if has punchcache "${servers[@]}" || has punchcached "${servers[@]}"; then
  if [ "$explicit_servers" = yes ]; then find_build "$build"
  elif ! (find_build "$build") 2>/dev/null; then
    drop_server punchcache "no punchcache build found (--build)"
    drop_server punchcached "no punchcache build found (--build)"
  else find_build "$build"
  fi
fi
if has punchcache "${servers[@]}" &&
   ! mentions origin= nbdkit "$plugin" --help; then
  drop_server punchcache "the plugin in '${build:-?}' has no origin= parameter (nbdkit PLUGIN --help): build a tree with issue 15's origin support"
fi
if has punchcached "${servers[@]}"; then
  if [ ! -x "${punchcached:-}" ]; then
    drop_server punchcached "no server/punchcached in '${build:-?}'"
  elif ! mentions origin= "$punchcached" --help; then
    drop_server punchcached "'$punchcached' has no origin= parameter (punchcached --help): build a tree with issue 15's origin support"
  fi
fi
(( ${#servers[@]} > 0 )) || die "no server left to run (see the warnings above)"

need_ram $(( size + 256 * MIB )) "--size $size_arg (the origin in the page cache)"
make_workdir bench-origin
need_real_fs "$dir"
need_disk "$dir" $(( 4 * size )) "the origin and the servers' local copies"

declare -A label=(
  [punchcache]="punchcache (plugin)" [punchcached]="punchcached"
  [cow]="nbdkit cow" [cow-cor]="nbdkit cow cow-on-read"
  [cache]="nbdkit cache" [cache-cor]="nbdkit cache cache-on-read"
  [qemu]="qemu-nbd qcow2 overlay" [qemu-cor]="qemu-nbd qcow2 copy-on-read"
)
workloads=(1 2 3 4 5 6)
declare -A w_title=(
  [1]="1. cold sequential read 1M, QD8, whole volume"
  [2]="2. warm sequential read 1M, QD8 (second pass)"
  [3]="3. cold 4K random read, QD16, ${runtime} s, fresh instance"
  [4]="4. warm 4K random read, QD16 (3's reads again)"
  [5]="5. 4K random write, QD16, ${runtime} s (overlay)"
  [6]="6. sequential read 1M after a restart (persistence)"
)
declare -A w_unit=( [1]="MiB/s" [2]="MiB/s" [3]="IOPS" [4]="IOPS" [5]="IOPS" [6]="MiB/s" )

# Figures, one per repetition, space-separated lists (rec appends):
declare -A val=()        # "W|server" -> MiB/s or IOPS
declare -A o_rd=() o_rn=() o_wr=() o_wn=()  # "W|server" -> origin bytes/requests
declare -A amp=()        # "W|server" -> origin bytes per byte read (3, 4)
declare -A local_kb=()   # server -> local storage after workload 2 (KiB)
declare -A kept_in=()    # server -> "kept" or "reset" (see run_server)
declare -A cmd_of=()     # server -> its command line, for the report
declare -A note=()       # "W|server" -> a remark for the report

# rec ARRAY KEY VALUE: append VALUE to the list ARRAY[KEY].
rec () { local -n a=$1; a[$2]="${a[$2]:-}${a[$2]:+ }$3"; }

# ---------------------------------------------------------------- origin

origin_img=$dir/origin.img

# make_origin: SIZE bytes of random data (no zero blocks: nothing can be
# skipped as a hole or detected as zeroes).
make_origin () {
  log "filling the origin ($(( size / MIB )) MiB of random data)"
  timeout -k 5 900 dd if=/dev/urandom of="$origin_img" bs=1M \
    count=$(( size / MIB )) iflag=fullblock status=none ||
    die "could not fill $origin_img with $(( size / MIB )) MiB of random data"
  [ "$(stat -c %s "$origin_img")" = "$size" ] ||
    die "$origin_img: $(stat -c %s "$origin_img") bytes, want $size"
}

# start_origin S: the origin of server S, o-S, logging to o-S.reqs.
start_origin () {
  start_nbdkit "o-$1" --filter=log --filter=delay file "$origin_img" \
    delay-read="${delay_ms}ms" delay-write="${delay_ms}ms" \
    logfile="$dir/o-$1.reqs"
}

origin_uri () { printf 'nbd+unix:///?socket=%s' "$dir/o-$1.sock"; }

# origin_mark S: the origin's request log of S so far, in lines.
origin_mark () { wc -l <"$dir/o-$1.reqs"; }

# origin_count S W FROM: the requests logged after line FROM, recorded in
# o_rd/o_rn (reads: bytes, requests) and o_wr/o_wn (writes, zeroes and
# trims: bytes, requests) of "W|S"; the bytes read also in o_last.  Each request is one line "DATE TIME
# connection=N Read id=N offset=0xHEX count=0xHEX ..."; its "...Read"
# reply line is not counted.  A count that is not hexadecimal is an error.
origin_count () {
  local s=$1 w=$2 from=$3 r
  r=$(tail -n +$(( from + 1 )) "$dir/o-$s.reqs" | awk '
    function hex(s,   i, c, v) {
      if (s !~ /^0x[0-9a-f]+$/) { bad = 1; return 0 }
      v = 0
      for (i = 3; i <= length(s); i++)
        v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return v
    }
    $4 == "Read" || $4 == "Write" || $4 == "Zero" || $4 == "Trim" {
      c = ""
      for (i = 5; i <= NF; i++) if ($i ~ /^count=/) c = substr($i, 7)
      n = hex(c)
      if ($4 == "Read") { rb += n; rn++ } else { wb += n; wn++ }
    }
    END { if (bad) exit 1; printf "%.0f %d %.0f %d\n", rb, rn, wb, wn }') ||
    die "the origin log $dir/o-$s.reqs has a request whose count is not hexadecimal"
  local rd rn wr wn
  read -r rd rn wr wn <<<"$r"
  rec o_rd "$w|$s" "$rd"; rec o_rn "$w|$s" "$rn"
  rec o_wr "$w|$s" "$wr"; rec o_wn "$w|$s" "$wn"
  o_last=$rd
}

# ---------------------------------------------------------------- servers

# fresh S INST: new local storage for instance INST (a or b) of server S.
fresh () {
  local s=$1 inst=$2
  rm -rf -- "$dir/$s.$inst"; mkdir -p "$dir/$s.$inst"
  case "$s" in
    qemu|qemu-cor)
      qemu-img create -q -f qcow2 -b "$(origin_uri "$s")" -F raw \
        "$dir/$s.$inst/overlay.qcow2" ||
        die "qemu-img create of the overlay of $s on $(origin_uri "$s") failed" ;;
  esac
}

# serve S INST: start server S on the storage of instance INST (the
# plugin creates its pool on first use, and opens it after).  The nbdkit
# peers keep their temporary files in that directory (TMPDIR).
serve () {
  local s=$1 inst=$2 st=$dir/$1.$2 ou
  ou=$(origin_uri "$s")
  local pcargs=(pool="$st/pool" size=$(( 2 * size )) origin="$ou" "${pc_params[@]}")
  local pcshown="pool=POOL size=$(( 2 * size )) origin=nbd+unix:///?socket=ORIGIN.sock${pc_params[*]:+ ${pc_params[*]}}"
  case "$s" in
    punchcache)
      cmd_of[$s]="nbdkit -U SOCK punchcache $pcshown"
      start_nbdkit "$s" "$plugin" "${pcargs[@]}" ;;
    punchcached)
      cmd_of[$s]="punchcached -f -U SOCK $pcshown"
      start_punchcached "$s" "${pcargs[@]}" ;;
    cow|cow-cor|cache|cache-cor)
      local f=${s%-cor} extra=()
      [ "$s" != cow-cor ] || extra=(cow-on-read=true)
      [ "$s" != cache-cor ] || extra=(cache-on-read=true)
      cmd_of[$s]="nbdkit -U SOCK --filter=$f nbd socket=ORIGIN.sock${extra[*]:+ ${extra[*]}}"
      start_nbdkit "$s" TMPDIR="$st" --filter="$f" nbd socket="$dir/o-$s.sock" \
        "${extra[@]}" ;;
    qemu)
      cmd_of[$s]="qemu-nbd -f qcow2 -t -e 4 --discard=unmap -k SOCK OVERLAY"
      start_qemu_nbd "$s" -f qcow2 -e 4 --discard=unmap "$st/overlay.qcow2" ;;
    qemu-cor)
      cmd_of[$s]="qemu-nbd --image-opts -t -e 4 --discard=unmap -k SOCK driver=copy-on-read,file.driver=qcow2,file.file.driver=file,file.file.filename=OVERLAY"
      start_qemu_nbd "$s" --image-opts -e 4 --discard=unmap \
        "driver=copy-on-read,file.driver=qcow2,file.file.driver=file,file.file.filename=$st/overlay.qcow2" ;;
  esac
  local got
  got=$(timeout 10 nbdinfo --size "$(uri "$s")") ||
    die "nbdinfo --size $(uri "$s") failed"
  [ "$got" = "$size" ] ||
    die "$s serves $got bytes, the origin has $size ($(uri "$s"))"
}

# local_usage S INST: the KiB that server S holds on disk for instance INST:
# the files in its directory (allocated blocks: pools and overlays are
# sparse) and the deleted temporary files it still has open there (the cow
# filter's overlay, the cache filter's cache: unlinked at creation).
local_usage () {
  local s=$1 st=$dir/$1.$2 kb fd t
  kb=$(du -sk "$st" | awk '{ print $1 }')
  for fd in /proc/"${pid[$s]}"/fd/*; do
    t=$(readlink "$fd") || continue
    [[ $t == "$st/"*" (deleted)" ]] || continue
    kb=$(( kb + $(stat -L -c '%b * %B / 1024' "$fd") ))
  done
  echo "$kb"
}

unserve () {
  stop_server "$1" || die "$1 exited with status $? (see $dir/$1.log)"
}

# ---------------------------------------------------------------- fio

# measure S W FIO-ARGS...: one run of workload W on server S, with the
# origin's requests counted from its start to 1 s after its end (for what a
# server finishes in the background), and the origin checked alive.
measure () {
  local s=$1 w=$2 m; shift 2
  m=$(origin_mark "$s")
  log "  $s: workload $w"
  runfio "$s" "w$w" --name="w$w" "$@"
  sleep 1
  check_alive "o-$s" "after workload $w of $s"
  origin_count "$s" "$w" "$m"
}

# seq_pass S W: workloads 1, 2, 6: a sequential 1M read of the whole
# volume that must move every byte; MiB/s.
seq_pass () {
  local s=$1 w=$2 json moved
  measure "$s" "$w" --rw=read --bs=1M --iodepth=8 --size="$size" --runtime=600
  json=$dir/$s.w$w.json
  moved=$(jget "$json" jobs.0.read.io_bytes)
  [ "$moved" = "$size" ] ||
    die "workload $w on $s moved $moved of $size bytes (600 s bound?)"
  rec val "$w|$s" "$(awk -v b="$(jget "$json" jobs.0.read.bw_bytes)" \
                        'BEGIN { printf "%.0f", b / 1048576 }')"
}

# iops S W DIR: the IOPS of workload W's job, a positive number.
iops () {
  local v
  v=$(jget "$dir/$1.w$2.json" "jobs.0.$3.iops")
  awk -v v="$v" 'BEGIN { exit !(v > 0) }' || die "workload $2 on $1: 0 IOPS"
  awk -v v="$v" 'BEGIN { printf "%.0f", v }'
}

# per_byte S W: origin bytes read per byte the client read in workload W
# (4K reads) of S, this repetition.
per_byte () {
  awk -v o="$o_last" -v n="$(jget "$dir/$1.w$2.json" jobs.0.read.total_ios)" \
    'BEGIN { if (n == 0) print "n/a"; else printf "%.2f", o / (n * 4096) }'
}

rand=(--bs=4k --iodepth=16 --size="$size" --randrepeat=1 --randseed=4215)

run_server () {
  local s=$1 n3 n4 o1
  log "$s (${label[$s]}), repetition $rep of $reps"
  start_origin "$s"
  # Instance a: 1, 2, restart, 6.
  fresh "$s" a
  serve "$s" a
  seq_pass "$s" 1
  o1=$o_last
  seq_pass "$s" 2
  rec local_kb "$s" "$(local_usage "$s" a)"
  unserve "$s"
  serve "$s" a
  seq_pass "$s" 6
  # Kept: 6 asked the origin for under 1% of what 1 asked.
  rec kept_in "$s" "$(awk -v a="$o1" -v b="$o_last" \
                      'BEGIN { print (b * 100 < a || a == 0 && b == 0) ? "kept" : "reset" }')"
  unserve "$s"
  rm -rf -- "$dir/$s.a"
  # Instance b: 3, 4 (3's offsets again, from its iolog), 5.
  fresh "$s" b
  serve "$s" b
  rm -f -- "$dir/$s.w3.iolog"           # fio appends to an iolog
  measure "$s" 3 --rw=randread "${rand[@]}" --time_based --runtime="$runtime" \
    --write_iolog="$dir/$s.w3.iolog"
  rec val "3|$s" "$(iops "$s" 3 read)"
  rec amp "3|$s" "$(per_byte "$s" 3)"
  n3=$(jget "$dir/$s.w3.json" jobs.0.read.total_ios)
  # The replay has no "close" entry (fio 3.33 acts on it with requests in
  # flight, hanging up on them, and nbdkit 1.32 aborts on that: assertion
  # in raw_send_socket), and ends at number_ios=, its last requests reaped
  # (as workload c of run.sh).
  grep -v ' close$' "$dir/$s.w3.iolog" >"$dir/$s.w4.iolog" ||
    die "$dir/$s.w3.iolog: fio wrote no iolog in workload 3"
  measure "$s" 4 --rw=randread "${rand[@]}" --read_iolog="$dir/$s.w4.iolog" \
    --replay_no_stall=1 --number_ios="$n3" --runtime=$(( 5 * runtime + 60 ))
  rec val "4|$s" "$(iops "$s" 4 read)"
  rec amp "4|$s" "$(per_byte "$s" 4)"
  n4=$(jget "$dir/$s.w4.json" jobs.0.read.total_ios)
  [ "$n4" = "$n3" ] ||
    rec note "4|$s" "replayed $n4 of 3's $n3 reads (bounded at $(( 5 * runtime + 60 )) s);"
  measure "$s" 5 --rw=randwrite "${rand[@]}" --time_based --runtime="$runtime"
  rec val "5|$s" "$(iops "$s" 5 write)"
  unserve "$s"
  rm -rf -- "$dir/$s.b"
  note_rss "o-$s"; stop_server "o-$s" || die "the origin of $s exited with status $?"
}

# ---------------------------------------------------------------- run

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$SECONDS
make_origin
nserv=${#servers[@]}
for (( rep = 1; rep <= reps; rep++ )); do
  for (( i = 0; i < nserv; i++ )); do
    run_server "${servers[(i + rep - 1) % nserv]}"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( SECONDS - t_start ))

# ---------------------------------------------------------------- report

mib1 () { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pcs=(); peers=()
for s in "${servers[@]}"; do if is_pc "$s"; then pcs+=("$s"); else peers+=("$s"); fi; done

# med LIST [FMT]: the median of a list of figures (see summarize).
med () { [ -n "$1" ] || return 0; summarize "$1" "${2:-%.0f}" | cut -d' ' -f1; }

# kept S: "kept" or "reset" when every repetition says so, else both with
# their counts.
kept () {
  local k=" ${kept_in[$1]} " nk nr
  nk=$(grep -o ' kept' <<<"$k" | wc -l); nr=$(grep -o ' reset' <<<"$k" | wc -l)
  if (( nr == 0 )); then echo kept; elif (( nk == 0 )); then echo reset
  else echo "kept $nk, reset $nr"; fi
}

# table HEAD CELL ROW... -- SERVER...: a markdown table with the header
# cells HEAD ('|'-separated, left-aligned), then a right-aligned column per
# SERVER (its label); one line per ROW: `CELL ROW` prints the row's own
# cells (as HEAD), `CELL ROW SERVER` the cell of SERVER.
table () {
  local head=$1 cell=$2 rows=() r s i bars=${1//[^|]/}; shift 2
  while [ "$1" != -- ]; do rows+=("$1"); shift; done; shift
  printf '| %s |' "${head//|/ | }"
  for s; do printf ' %s |' "${label[$s]}"; done; echo
  printf '|'; for (( i = 0; i <= ${#bars}; i++ )); do printf -- '---|'; done
  for s; do printf -- '---:|'; done; echo
  for r in "${rows[@]}"; do
    printf '| %s |' "$("$cell" "$r")"
    for s; do printf ' %s |' "$("$cell" "$r" "$s")"; done; echo
  done
  echo
}

# The cells of the report's tables (see table).
c_rate () {
  if [ $# = 1 ]; then echo "${w_title[$1]} | ${w_unit[$1]}"
  else commas "$(med "${val["$1|$2"]}")"; fi
}
c_spread () {
  if [ $# = 1 ]; then echo "${w_title[$1]} | ${w_unit[$1]}"; return; fi
  local a b
  read -r _ a b <<<"$(summarize "${val["$1|$2"]}")"
  echo "$(commas "$a")–$(commas "$b")"
}
c_misc () {
  if [ $# = 1 ]; then
    case "$1" in
      kept)  echo "warm data after a restart (6) | " ;;
      local) echo "local storage after 2 | MiB" ;;
      rss)   echo "peak RSS (server) | " ;;
    esac
  else
    case "$1" in
      kept)  kept "$2" ;;
      local) mib1 $(( $(med "${local_kb[$2]}") * 1024 )) ;;
      rss)   peak_rss "$2" ;;
    esac
  fi
}
ratio_of=""                           # c_ratio: the punchcache server
c_ratio () {
  if [ $# = 1 ]; then echo "${w_title[$1]}"
  else ratio "$(med "${val["$1|$ratio_of"]}")" "$(med "${val["$1|$2"]}")"; fi
}
c_oread () {
  if [ $# = 1 ]; then echo "${w_title[$1]}"
  else echo "$(mib1 "$(med "${o_rd["$1|$2"]}")") ($(commas "$(med "${o_rn["$1|$2"]}")"))"; fi
}
c_owrite () {
  if [ $# = 1 ]; then echo "$1"
  else echo "$(mib1 "$(med "${o_wr["$1|$2"]}")") ($(commas "$(med "${o_wn["$1|$2"]}")"))"; fi
}
c_amp () {
  if [ $# = 1 ]; then echo "$1"; else med "${amp["$1|$2"]}" %.2f; fi
}

report () {
  local s w row
  echo "# punchcache origin benchmark"
  echo
  echo "$(machine_line qemu)"
  echo
  echo "Command: \`$cmdline\`"
  echo
  echo "Origin: $(( size / MIB )) MiB of random data, nbdkit file + delay filter" \
       "(delay-read=${delay_ms}ms delay-write=${delay_ms}ms, --threads $NBDKIT_THREADS)" \
       "+ log filter (request counts), Unix socket; one origin process per server." \
       "Workloads 3 and 5: ${runtime} s. Medians of $reps repetition(s)," \
       "the servers' order rotating." \
       "Work directory file system: $fs_type. Load average before: $load_before," \
       "after: $load_after. Took $(( elapsed / 60 )) min $(( elapsed % 60 )) s."
  echo
  if (( ${#skipped[@]} > 0 )); then
    echo "Left out:"
    for row in "${skipped[@]}"; do echo "- $row"; done
    echo
  fi

  echo "## Throughput"
  echo
  table "workload|unit" c_rate "${workloads[@]}" -- "${servers[@]}"
  if (( reps > 1 )); then
    echo "Min–max over the repetitions:"
    echo
    table "workload|unit" c_spread "${workloads[@]}" -- "${servers[@]}"
  fi
  table " | " c_misc kept local rss -- "${servers[@]}"

  if (( ${#pcs[@]} == 0 )); then
    echo "No punchcache server in this run: no ratios."
    echo
  elif (( ${#peers[@]} > 0 )); then
    for ratio_of in "${pcs[@]}"; do
      echo "## ${label[$ratio_of]} ÷ peer"
      echo
      table workload c_ratio "${workloads[@]}" -- "${peers[@]}"
    done
  fi

  echo "## What reached the origin (frugality)"
  echo
  echo "MiB read from the origin (read requests) per workload, medians; the volume is" \
       "$(( size / MIB )) MiB. Workload 5's reads are what a server fetches to complete" \
       "a partly written block or cluster (copy-on-write from the origin); it runs" \
       "after 3 and 4 on the same instance, so what they fetched needs no fetch" \
       "(a server that fetched more in 3 fetches less in 5)."
  echo
  table workload c_oread "${workloads[@]}" -- "${servers[@]}"
  echo "Origin bytes read per byte the client read (workloads 3, 4: 4 KiB per read):"
  echo
  table workload c_amp 3 4 -- "${servers[@]}"
  echo "Writes (and zeroes, trims) that reached the origin, MiB (requests):"
  echo
  table workload c_owrite "${workloads[@]}" -- "${servers[@]}"

  echo "## Notes"
  echo
  for s in "${servers[@]}"; do
    echo "- ${label[$s]}: \`${cmd_of[$s]}\`"
  done
  for w in "${workloads[@]}"; do
    for s in "${servers[@]}"; do
      [ -z "${note["$w|$s"]:-}" ] || echo "- workload $w, ${label[$s]}: ${note["$w|$s"]}"
    done
  done
  echo "- Workload 6 restarts the server of 1 and 2 on the same storage." \
       "\"reset\": it asked the origin again (the cow and cache filters keep" \
       "their overlay or cache in a temporary file that dies with the process;" \
       "qemu without copy-on-read never copied the reads; the cow filter also" \
       "loses the writes, the cache filter writes back only on a flush)."
  echo "- The origin's page cache holds its file: its cost is the delay per" \
       "request and the round trip over a Unix socket, not a disk."
}

report_file=$dir/report.md
report >"$report_file"
cat "$report_file"
[ -z "$out" ] || cp "$report_file" "$out"
log "done in $elapsed s"
