#!/usr/bin/env bash
# bench/scale-fill.sh - random-write throughput of a pool from empty to 95%
# full, in 5% slices (SPEC §7 spirit: no cliff as the pool fills), and the
# ENOSPC / trim behaviour at 100% (SPEC §3).  --help for the description.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage () {
  cat <<EOF
NAME
    $prog - write throughput of a punchcache pool as it fills from empty
    to 95%, and what happens when it is full

SYNOPSIS
    bench/$prog [--size SIZE] [--bs LIST] [--reps N] [--jobs N]
                      [--iodepth N] [--timeout S] [--build DIR] [--out FILE]
    bench/$prog --help

DESCRIPTION
    For each write size BS in LIST, REPS times, each time on a fresh pool:

    1. A pool file of SIZE bytes of data capacity is created in a private
       temporary directory, with a block size (allocation unit) of BS, so
       that every write allocates exactly one fresh block and the bytes
       written are the pool's fill level.  It holds a volume "bench" of
       SIZE bytes (the whole pool) and a small overcommitted volume
       "spare" (1 MiB, or one block if larger) used in step 3.  nbdkit
       punchcache serves it with its defaults (cache=256M, O_DIRECT data
       I/O, --threads 16) on a Unix socket.

    2. One fio run writes 95% of the volume:
         fio --ioengine=nbd --rw=randwrite --bs=BS --iodepth=N
             --numjobs=J --size=SIZE/J --offset_increment=SIZE/J
             --io_size=95% of SIZE/J --write_lat_log --log_avg_msec=0
       J connections, each writing random blocks of its own J-th of the
       volume; fio's random map makes every block written at most once,
       so the pool fills by BS per completed write.  fio logs every write
       (completion time, latency, offset).  The script merges the logs in
       completion order and cuts them into slices of 5% of the pool: slice
       k holds the writes that took the pool from 5k% to 5(k+1)% full.
       Per slice it reports MB/s (bytes / time from the previous slice's
       last completion to this slice's last), IOPS, the median and 99th
       percentile write latency, and the server's CPU time per write
       (nbdkit's user + system time, sampled every 0.1 s from /proc): a
       figure that other jobs on the machine barely move, so a rise in it
       is the pool's own doing, while a dip in MB/s alone may be a
       neighbour's.  The curve is summarised as the ratio of the slowest
       slice to the first, the mean of the last three slices over the mean
       of the first three, for MB/s and for server CPU per write.  SPEC §7
       asks for "no cliff" without a number; this script calls a slice
       below 50% of the first slice's throughput a cliff (and says so in
       the report).
       It checks that fio wrote every expected byte and that no offset was
       written twice.

    3. Full pool (SPEC §3, "Out of space"), with python3-libnbd: block
       status (base:allocation) must report exactly the written bytes as
       data; every remaining hole of "bench" is then written (pipelined
       BS writes), filling the pool to 100%.  Then:
         - a write to "spare" (needs a new block) must fail with ENOSPC;
         - an overwrite of an allocated block of "bench" must succeed, and
           a read must return what was written (nothing else broke);
         - a TRIM of 1 MiB of "bench" must succeed, after which the same
           write to "spare" must succeed (the trim made room at once) and
           read back;
         - FLUSH must succeed, and the server must still be running.
       The server is stopped with SIGTERM; "punchcache check" must find the
       pool consistent and "punchcache info" must report the expected
       number of used blocks.  The result is one sanity line per BS.

    The report (standard output, and FILE with --out) is markdown: a header
    with date, kernel, CPU, core count, load average, fio, nbdkit and
    libnbd versions and the exact command line, then for each BS the
    slice table (per slice the median over the REPS runs of MB/s, IOPS and
    latencies, with the MB/s range), the summary ratios (of the medians)
    and the 100% sanity line (once if every run gave the same).  Progress goes
    to standard error.

OPTIONS
    --size SIZE   pool capacity = size of volume "bench", with an optional
                  suffix K, M, G or T (powers of 1024); a whole number of
                  MiB, at least 256M (default 4G)
    --bs LIST     comma-separated write sizes, each a power of two from 4K
                  to 1M, run one after the other on fresh pools (default
                  64K,4K)
    --reps N      runs per write size, each on a fresh pool; the table
                  shows the median of each figure (integer 1-20; default 3)
    --jobs N      fio jobs, i.e. NBD connections (integer 1-16; default 2)
    --iodepth N   writes in flight per connection (integer 1-256;
                  default 16)
    --timeout S   give up on a fio run or the 100% step after S seconds
                  (default 900)
    --build DIR   build tree holding plugins/punchcache/.libs/
                  nbdkit-punchcache-plugin.so and tools/punchcache
                  (default: \$BUILD if set, else the source tree)
    --out FILE    also write the markdown report to FILE
    -h, --help    show this help and exit

REQUIREMENTS
    nbdkit, fio with ioengine=nbd (fio --enghelp=nbd), python3 with the nbd
    module (Debian python3-libnbd), jq, timeout.  Disk: SIZE + 10% (the
    pool is really written) plus about 120 bytes per write for fio's logs,
    on the file system of the temporary directory (\$TMPDIR, default /tmp),
    which must be a real file system (not tmpfs: O_DIRECT); the script
    checks with df first and refuses if short.

EXAMPLES
    bench/$prog                               # 4 GiB, 64K then 4K, 3 reps
    bench/$prog --size 1G --bs 64K --reps 1   # quick run, under a minute
    bench/$prog --out bench/results/scale-fill.md

EXIT STATUS
    0 when every run completed (the report says whether there is a cliff);
    1 on a failure, including a failed 100% sanity check (wrong error, a
    write that should have worked and did not, a dead server, a damaged
    pool); 2 on a usage error.
EOF
}

# ---------------------------------------------------------------- options

cmdline=$(quote_cmdline "$0" "$@")

size_arg=4G bs_list=64K,4K reps=3 jobs=2 iodepth=16 timeout_s=900 build="" out=""
while [ $# -gt 0 ]; do
  take_opt "--size --bs --reps --jobs --iodepth --timeout --build --out" \
           "-h --help" "$@"
  shift "$nshift"
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --size) size_arg=$val ;;  --bs) bs_list=$val ;;  --reps) reps=$val ;;
    --jobs) jobs=$val ;;
    --iodepth) iodepth=$val ;;  --timeout) timeout_s=$val ;;
    --build) build=$val ;;  --out) out=$val ;;
  esac
done

mib=$(( 1 << 20 ))
want_bytes size --size "$size_arg"
(( size >= 256 * mib && size % mib == 0 )) ||
  usage_error "--size: want a whole number of MiB, at least 256M, got '$size_arg'"
[[ $reps =~ ^[1-9][0-9]?$ ]] && (( reps <= 20 )) ||
  usage_error "--reps: want a whole number from 1 to 20, got '$reps'"
[[ $jobs =~ ^[1-9][0-9]?$ ]] && (( jobs <= 16 )) ||
  usage_error "--jobs: want a whole number from 1 to 16, got '$jobs'"
[[ $iodepth =~ ^[1-9][0-9]{0,2}$ ]] && (( iodepth <= 256 )) ||
  usage_error "--iodepth: want a whole number from 1 to 256, got '$iodepth'"
[[ $timeout_s =~ ^[1-9][0-9]{0,5}$ ]] ||
  usage_error "--timeout: want a whole number of seconds >= 1, got '$timeout_s'"
bss=()
IFS=, read -r -a bs_args <<<"$bs_list"
(( ${#bs_args[@]} > 0 )) || usage_error "--bs: empty list"
for b in "${bs_args[@]}"; do
  want_bytes v --bs "$b"
  (( v >= 4096 && v <= mib && (v & (v - 1)) == 0 )) ||
    usage_error "--bs: want powers of two from 4K to 1M, got '$b'"
  (( size % (jobs * v) == 0 )) ||
    usage_error "--bs $b: SIZE must split into $jobs regions of whole blocks"
  bss+=("$v")
done
[ -z "$out" ] || want_out_file "$out"

# Default: $BUILD, else the source tree (not lib.sh's ../build guess).
find_build "${build:-${BUILD:-$repo}}"

need_cmds nbdkit fio python3 jq timeout awk sort
need_fio_nbd
python3 -c 'import nbd' 2>/dev/null ||
  die "python3 has no nbd module (Debian package python3-libnbd)"

# ------------------------------------------------------------ scratch

make_workdir scale-fill                      # pid[srv]: the running nbdkit
need_real_fs "$dir"
fstype=$(df -PT "$dir" | awk 'NR == 2 { print $2 }')        # for the report
smallest=${bss[0]}
for v in "${bss[@]}"; do (( v < smallest )) && smallest=$v; done
need_disk "$dir" $(( size + size / 10 + size / smallest * 120 + 64 * mib )) \
  "--size $size_arg (the pool is really written, plus fio's logs)"

# ------------------------------------------------------------ one run

# The 100% step (python3-libnbd): prints one JSON object.
cat >"$dir/full.py" <<'PY'
# full.py SOCKET BS EXPECTED_MAPPED: block status, fill the holes, ENOSPC,
# overwrite, trim, write again, flush.
import errno, json, nbd, sys
sock, bs, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}

def conn(export):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.set_export_name(export)
    h.connect_unix(sock)
    return h

def extents(h):
    """[(offset, length, is_hole)] over the whole export."""
    size, res, off = h.get_size(), [], 0
    while off < size:
        got = []
        def cb(ctx, o, entries, err):
            if ctx == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0
        h.block_status(min(size - off, 1 << 30), off, cb)
        for i in range(0, len(got), 2):
            n = min(got[i], size - off)
            res.append((off, n, bool(got[i + 1] & nbd.STATE_HOLE)))
            off += n
    return res

def pattern(off):
    return (b"%016x" % off) * (bs // 16)

b = conn("bench")
ext = extents(b)
out["mapped_before"] = sum(n for _, n, hole in ext if not hole)
holes = [(o + k, bs) for o, n, hole in ext if hole for k in range(0, n, bs)]
out["holes"] = len(holes)

# Fill every hole, up to 64 writes in flight.  Each buffer is kept until
# its command is retired (aio_command_completed raises on a failed write).
i, bufs = 0, {}
while i < len(holes) or bufs:
    while i < len(holes) and len(bufs) < 64:
        o, n = holes[i]
        buf = nbd.Buffer.from_bytearray(bytearray(pattern(o)))
        bufs[b.aio_pwrite(buf, o)] = buf
        i += 1
    b.poll(-1)
    while bufs:
        c = b.aio_peek_command_completed()
        if c == 0:
            break
        b.aio_command_completed(c)
        del bufs[c]
b.flush()
out["mapped_full"] = sum(n for _, n, hole in extents(b) if not hole)

s = conn("spare")
def try_spare():
    try:
        s.pwrite(pattern(0), 0)
        return "ok"
    except nbd.Error as e:
        return "ENOSPC" if e.errnum == errno.ENOSPC else \
            "%s (%s)" % (errno.errorcode.get(e.errnum, e.errnum), e.string)
out["spare_when_full"] = try_spare()

# Nothing else breaks: overwrite a mapped block and read it back.
b.pwrite(pattern(12345), 0)
out["overwrite_ok"] = b.pread(bs, 0) == pattern(12345)
hole0 = holes[0][0] if holes else None
out["fill_readback_ok"] = hole0 is None or b.pread(bs, hole0) == pattern(hole0)

trim = max(1 << 20, bs)
b.trim(trim, 0)
out["trimmed"] = trim
out["trim_reads_zero"] = b.pread(bs, 0) == bytes(bs)
out["spare_after_trim"] = try_spare()
out["spare_readback_ok"] = out["spare_after_trim"] == "ok" and \
    s.pread(bs, 0) == pattern(0)
b.flush(); s.flush()
b.shutdown(); s.shutdown()
print(json.dumps(out))
PY

# slices.py rep MERGED NBLOCKS BS OUT.json CPULOG CLK_TCK: cut one run's
# merged log into slices of 5% of the pool (MB/s, IOPS, latency p50/p99 and
# the server's CPU time per write, from CPULOG's "time ticks" samples).
# slices.py sum BS-LABEL OUT REP.json...: per slice, the median over the
# repetitions; markdown rows to OUT.table and "slowest/first slowest-index
# last3/first3 seconds cliff cpu-last3/first3" to OUT.summary.
cat >"$dir/slices.py" <<'PY'
import json, statistics, sys

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]

def cpu_at(samples, when):
    """Server CPU seconds at time when, interpolated between samples."""
    for (t1, c1), (t2, c2) in zip(samples, samples[1:]):
        if t1 <= when <= t2:
            return c1 + (c2 - c1) * (when - t1) / max(t2 - t1, 1e-9)
    return samples[0][1] if when < samples[0][0] else samples[-1][1]

def rep(path, nb, bs, out, cpulog, tck):
    samples = [(float(a), int(b) / tck) for a, b in
               (line.split() for line in open(cpulog))]
    t, lat = [], []
    for line in open(path):
        f = line.split()
        t.append(int(f[0]) / 1000.0)           # completion, s
        lat.append(int(f[1]) / 1e6)            # latency, ms
    t0 = min(ti - li / 1000.0 for ti, li in zip(t, lat))   # first submission
    r, prev = {"mbs": [], "iops": [], "p50": [], "p99": [], "cpu": []}, t0
    for k in range(19):
        lo, hi = round(k * nb / 20), min(round((k + 1) * nb / 20), len(t))
        if lo >= hi:
            break
        dt = max(t[hi - 1] - prev, 0.001)
        r["mbs"].append((hi - lo) * bs / dt / 1e6)
        r["iops"].append((hi - lo) / dt)
        r["p50"].append(pct(lat[lo:hi], 0.5))
        r["p99"].append(pct(lat[lo:hi], 0.99))
        r["cpu"].append((cpu_at(samples, t[hi - 1]) - cpu_at(samples, prev))
                        / (hi - lo) * 1e6)     # server CPU us per write
        prev = t[hi - 1]
    r["seconds"] = t[-1] - t0
    json.dump(r, open(out, "w"))

def summary(out, paths):
    reps = [json.load(open(p)) for p in paths]
    med = lambda key, k: statistics.median(r[key][k] for r in reps)
    n = min(len(r["mbs"]) for r in reps)
    mbs = [med("mbs", k) for k in range(n)]
    rows = []
    for k in range(n):
        all_k = sorted(r["mbs"][k] for r in reps)
        rows.append("| %d–%d%% | %.1f | %.1f–%.1f | %.0f | %.2f | %.2f | %.0f | %.2f |" % (
            5 * k, 5 * k + 5, mbs[k], all_k[0], all_k[-1], med("iops", k),
            med("p50", k), med("p99", k), med("cpu", k), mbs[k] / mbs[0]))
    slow = min(range(n), key=lambda k: mbs[k])
    open(out + ".table", "w").write("\n".join(rows) + "\n")
    cpu = [med("cpu", k) for k in range(n)]
    open(out + ".summary", "w").write("%.3f %d %.3f %.1f %d %.3f\n" % (
        mbs[slow] / mbs[0], slow, (sum(mbs[-3:]) / 3) / (sum(mbs[:3]) / 3),
        statistics.median(r["seconds"] for r in reps),
        1 if mbs[slow] < 0.5 * mbs[0] else 0,
        (sum(cpu[-3:]) / 3) / max(sum(cpu[:3]) / 3, 1e-9)))

if sys.argv[1] == "rep":
    rep(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
        sys.argv[6], int(sys.argv[7]))
else:
    summary(sys.argv[2], sys.argv[3:])
PY

# sample_cpu PID: "epoch-seconds cpu-ticks" of PID (user + system time,
# every thread) every 0.1 s, until killed.
sample_cpu () {
  local f
  while read -r -a f <"/proc/$1/stat" 2>/dev/null; do
    echo "$EPOCHREALTIME $(( f[13] + f[14] ))"
    sleep 0.1
  done
}

# run_bs BS REP: steps 1-3 for one write size; leaves $dir/BS.REP.json (the
# slices), $dir/BS.REP.sanity and $dir/BS.REP.commits.
run_bs () {
  local bs=$1 r=$2 kb=$(( $1 / 1024 ))K
  local pool=$dir/pool.$kb region=$(( size / jobs )) per_job n_total
  per_job=$(( region / 100 * 95 / bs * bs ))
  n_total=$(( jobs * per_job / bs ))
  rm -f "$dir"/pool.*                          # one pool on disk at a time
  "$tool" create "$pool" "$size" --block-size "$bs" >/dev/null
  "$tool" volume add "$pool" bench "$size" >/dev/null
  "$tool" volume add "$pool" spare $(( bs > mib ? bs : mib )) >/dev/null

  rm -f "$dir/srv.sock" "$dir/srv.pid"
  nbdkit -f --exit-with-parent --log=stderr --threads 16 \
    -U "$dir/srv.sock" -P "$dir/srv.pid" "$plugin" pool="$pool" \
    stats="$dir/stats.$kb.json" </dev/null >"$dir/srv.$kb.log" 2>&1 &
  pid[srv]=$!
  for _ in $(seq 300); do [ -s "$dir/srv.pid" ] && break; sleep 0.1; done
  [ -s "$dir/srv.pid" ] || die "nbdkit did not start: $(cat "$dir/srv.$kb.log")"

  log "bs $kb, rep $r/$reps: fio randwrite to 95% of $size_arg ($n_total" \
      "writes, $jobs jobs x iodepth $iodepth)"
  rm -f "$dir"/lat_*
  sample_cpu "${pid[srv]}" >"$dir/cpu.log" &
  sampler=$!
  timeout -k 5 "$timeout_s" fio --name=fill --ioengine=nbd \
    --uri="nbd+unix:///bench?socket=$dir/srv.sock" --rw=randwrite \
    --bs="$bs" --iodepth="$iodepth" --numjobs="$jobs" --size="$region" \
    --offset_increment="$region" --io_size="$per_job" --group_reporting \
    --write_lat_log="$dir/lat" --log_avg_msec=0 --log_offset=1 \
    --log_unix_epoch=1 --output-format=json --output="$dir/fio.$kb.json" \
    >"$dir/fio.$kb.log" 2>&1 ||
    die "fio (bs $kb) failed or timed out after $timeout_s s: $(tail -5 "$dir/fio.$kb.log")"
  kill "$sampler"; wait "$sampler" 2>/dev/null || :
  [ "$(jq -r '.jobs[0].error' "$dir/fio.$kb.json")" = 0 ] ||
    die "fio (bs $kb) reported an error (see its JSON)"
  [ "$(jq -r '.jobs[0].write.io_bytes' "$dir/fio.$kb.json")" = $(( jobs * per_job )) ] ||
    die "fio (bs $kb) wrote $(jq -r '.jobs[0].write.io_bytes' "$dir/fio.$kb.json") bytes, want $(( jobs * per_job ))"

  # Merge the per-job logs (time ms, latency ns, dir, bs, offset) in
  # completion order; start = earliest submission (time - latency).
  cat "$dir"/lat_lat.*.log | tr -d ',' | sort -n -k1,1 >"$dir/merged.$kb"
  (( $(wc -l <"$dir/merged.$kb") == n_total )) ||
    die "fio's logs hold $(wc -l <"$dir/merged.$kb") writes, want $n_total"
  dups=$(awk '{ print $5 }' "$dir/merged.$kb" | sort -n | uniq -d | wc -l)
  (( dups == 0 )) || log "warning: $dups offsets written more than once"

  python3 "$dir/slices.py" rep "$dir/merged.$kb" $(( size / bs )) "$bs" \
    "$dir/$kb.$r.json" "$dir/cpu.log" "$(getconf CLK_TCK)"

  log "bs $kb: filling the remaining 5% and checking ENOSPC, trim, flush"
  timeout -k 5 "$timeout_s" python3 "$dir/full.py" "$dir/srv.sock" "$bs" \
    $(( n_total * bs )) >"$dir/full.$kb.json" 2>"$dir/full.$kb.err" ||
    die "the 100% step (bs $kb) failed: $(cat "$dir/full.$kb.err")"
  kill -0 "${pid[srv]}" 2>/dev/null || die "nbdkit died during the 100% step (bs $kb)"
  stop_server srv 60 ||
    die "nbdkit exited with status $? (bs $kb): $(cat "$dir/srv.$kb.log")"

  "$tool" check "$pool" >"$dir/check.$kb" 2>&1 ||
    die "punchcache check (bs $kb) found damage: $(cat "$dir/check.$kb")"
  local f=$dir/full.$kb.json used want
  used=$("$tool" info --json "$pool" | jq -r .used_blocks)
  want=$(( size / bs - $(jq -r .trimmed "$f") / bs + 1 ))
  local ok=yes
  [ "$(jq -r .mapped_before "$f")" = $(( n_total * bs )) ] || ok=no
  [ "$(jq -r .mapped_full "$f")" = "$size" ] || ok=no
  [ "$(jq -r .spare_when_full "$f")" = ENOSPC ] || ok=no
  [ "$(jq -r '.overwrite_ok and .fill_readback_ok and .trim_reads_zero and .spare_readback_ok' "$f")" = true ] || ok=no
  [ "$(jq -r .spare_after_trim "$f")" = ok ] || ok=no
  [ "$used" = "$want" ] || ok=no
  printf '%s\n' "$(jq -r --arg used "$used" --arg want "$want" --arg bs "$kb" '
    "block status before: \(.mapped_before) bytes mapped; \(.holes) holes of \($bs) filled "
    + "→ \(.mapped_full) mapped (100%); write needing a new block: \(.spare_when_full); "
    + "overwrite + read-back: \(.overwrite_ok and .fill_readback_ok); "
    + "TRIM \(.trimmed) bytes (reads zeros: \(.trim_reads_zero)), then the same write: "
    + "\(.spare_after_trim) (read-back \(.spare_readback_ok)); FLUSH ok; server alive; "
    + "punchcache check clean; used blocks after stop \($used) (expected \($want))"' "$f")" \
    >"$dir/$kb.$r.sanity"
  enospc_log=$(grep -m1 -i 'full\|ENOSPC\|space' "$dir/srv.$kb.log" |
               sed 's/punchcache\.[0-9]*:/punchcache:/' || :)
  [ -z "$enospc_log" ] ||
    echo "Server log for the refused write: \`${enospc_log//$dir/\$TMP}\`" >>"$dir/$kb.$r.sanity"
  [ $ok = yes ] || { cat "$dir/$kb.$r.sanity" >&2; die "the 100% sanity check failed (bs $kb, rep $r)"; }
  jq -r '.pool.commits' "$dir/stats.$kb.json" >"$dir/$kb.$r.commits"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "build: $build; pools of $size_arg in $dir ($fstype)"
for bs in "${bss[@]}"; do
  for (( r = 1; r <= reps; r++ )); do run_bs "$bs" "$r"; done
  kb=$(( bs / 1024 ))K
  python3 "$dir/slices.py" sum "$dir/$kb" "$dir/$kb".*.json
done

# ------------------------------------------------------------ report

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
report=$dir/report.md
{
  echo "### Scale: write throughput as the pool fills (0 → 95%), and at 100%"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · Linux $(uname -r) · ${cpu:-unknown CPU}" \
       "· $(nproc) CPU(s) · $(fio --version) · $(nbdkit --version)" \
       "· libnbd $(python3 -c 'import nbd; print(nbd.NBD().get_version())')" \
       "· pool on $fstype ($(df -P "$dir" | awk 'NR == 2 { print $1 }'))"
  echo
  echo "\`$cmdline\`"
  echo
  echo "Load average (1, 5, 15 min) at the start: $load_start; at the end:" \
       "$(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other jobs slow" \
       "some slices down, which looks like a dip that is not the pool's)."
  echo
  echo "Pool of $(( size / mib )) MiB, block size = write size, one volume of" \
       "the pool's size; fio ioengine=nbd randwrite, $jobs jobs (connections)" \
       "× iodepth $iodepth, each job over its own 1/$jobs of the volume, every" \
       "block written once; nbdkit punchcache defaults (cache=256M, O_DIRECT," \
       "--threads 16). Slice = the writes that took the pool from one 5% mark" \
       "to the next, in completion order; latency per write (submission to" \
       "completion)."
  for bs in "${bss[@]}"; do
    kb=$(( bs / 1024 ))K
    read -r ratio sk trend total cliff cputrend <"$dir/$kb.summary"
    echo
    echo "#### ${kb} random writes, ${kb} blocks"
    echo
    echo "| pool fill | MB/s | MB/s range | IOPS | lat p50 ms | lat p99 ms | server CPU µs/write | vs first |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|"
    cat "$dir/$kb.table"
    echo
    echo "Medians over $reps rep(s) (range: min–max MB/s)." \
         "0 → 95% in $total s. Slowest slice / first: **$ratio** (slice" \
         "$(( 5 * sk ))–$(( 5 * sk + 5 ))%); mean of the last three / mean of" \
         "the first three: **$trend**; server CPU per write, last three /" \
         "first three: **$cputrend**. $( (( cliff )) &&
           echo "**Cliff**: a slice below 50% of the first." ||
           echo "No cliff (no slice below 50% of the first).")" \
         "Commits per run: $(cat "$dir/$kb".*.commits | tr '\n' ' ' | sed 's/ $//')."
    echo
    if (( $(sort -u "$dir/$kb".*.sanity | wc -l) == $(wc -l <"$dir/$kb.1.sanity") )); then
      echo "At 100% (the same in every rep): $(cat "$dir/$kb.1.sanity")"
    else
      for (( r = 1; r <= reps; r++ )); do echo "At 100%, rep $r: $(cat "$dir/$kb.$r.sanity")"; echo; done
    fi
  done
} >"$report"

cat "$report"
[ -z "$out" ] || cp "$report" "$out"
