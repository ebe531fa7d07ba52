#!/usr/bin/env bash
# Description: the kernel's NBD client for real (SPEC §6, issue 14): a
# 2-vCPU qemu TCG guest attaches the export with `nbd-client -C 2`
# (each connection a virtio-serial port to the server's Unix socket); fio
# crc32c verify with direct=1, and each connection must carry a real share
# of the bytes; then ext4 (mount -o discard): files written and synced
# grow the pool (punchcache info on the live pool), survive a server
# restart, and after rm + fstrim the space is back; e2fsck -fn clean in the
# guest and punchcache check clean once the server stops.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
source "$top_srcdir/tests/vm/functions-vm.sh" || exit 99
requires jq --version
vm_setup

pool=$tmp/pool
files=6 mib=8                  # 48 MiB of files
# The first server on sock1 (ports nbd0, nbd1: one session each), the
# restarted one on sock2 (nbd2, nbd3 connect once it is up).
start_punchcache "$tmp/sock1" pool="$pool" size=256M
echo "FILES=$files MIB=$mib FIO_MB=16" > "$tmp/a.env"
mapfile -t ports < <(vm_nbd_port nbd0 "$tmp/sock1" once
                     vm_nbd_port nbd1 "$tmp/sock1" once
                     vm_nbd_port nbd2 "$tmp/sock2"
                     vm_nbd_port nbd3 "$tmp/sock2")
vm_start a guest-nbd-client.sh 2 "${ports[@]}"

# Each connection's share of the fio traffic (pcvm-relay's counters).
vm_wait "CKPT fio-done" 400
vm_lines "LIMITS.*"
declare -A bytes=()
while read -r port n; do bytes[$port]=$n; done < <(
    sed -n 's/^pcvm-relay: \(nbd[0-9]\): \([0-9]*\) bytes to host.* so far/\1 \2/p' \
        "$tmp/a.console" | tr -d '\r')
total=$(( ${bytes[nbd0]:-0} + ${bytes[nbd1]:-0} ))
echo "fio: bytes to the server per connection: nbd0 ${bytes[nbd0]:-0}, nbd1 ${bytes[nbd1]:-0}"
[ "$total" -gt $((16 << 20)) ] || vm_fail a "fio sent only $total bytes"
for p in nbd0 nbd1; do
    [ "${bytes[$p]:-0}" -ge $((total / 5)) ] ||
        vm_fail a "connection $p carried ${bytes[$p]:-0} of $total bytes (< 20%)"
done
vm_go

vm_wait "CKPT empty" 300
space_empty "$pool"
vm_go
vm_wait "CKPT full" 300
space_full "$pool" $((files * mib << 20))
vm_go

vm_wait "CKPT restart" 300
stop_nbdkit
start_punchcache "$tmp/sock2" pool="$pool"
cleanup_fn vm_kill             # on failure: the guest first, then the server
vm_go

vm_wait "CKPT trimmed" 300
space_trimmed "$pool"
vm_go
vm_finish 300

stop_nbdkit
"$PUNCHCACHE" check "$pool" || fail "punchcache check after the guest"
