#!/usr/bin/env bash
# Description: the export as a VM's disk (SPEC §6, issue 14): qemu TCG with
# -drive file=nbd:unix:SOCK,format=raw,if=virtio,discard=unmap,cache=none.
# In the guest, ext4 on /dev/vda (mount -o discard): files written and
# synced grow the pool (punchcache info on the live pool), read back after
# a remount, and after rm + fstrim the space is back.  Then a second set
# of files is synced and the server is killed with SIGKILL right after the
# guest's sync returns; after a restart a second boot replays the journal,
# finds every synced file intact and e2fsck -fn clean, and punchcache
# check is clean once the server stops.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
source "$top_srcdir/tests/vm/functions-vm.sh" || exit 99
requires jq --version
vm_setup

pool=$tmp/pool sock=$tmp/sock
files=6 mib=8                  # 48 MiB of files
disk=(-drive "file=nbd:unix:$sock,format=raw,if=virtio,discard=unmap,cache=none")
start_punchcache "$sock" pool="$pool" size=256M
echo "FILES=$files MIB=$mib PHASE=write" > "$tmp/b1.env"
vm_start b1 guest-disk.sh 1 "${disk[@]}"

vm_wait "CKPT empty" 300
vm_lines "LIMITS.*"
space_empty "$pool"
vm_go
vm_wait "CKPT full" 300
space_full "$pool" $((files * mib << 20))
vm_go
vm_wait "CKPT trimmed" 300
space_trimmed "$pool"
vm_go

vm_wait "CKPT synced" 300
kill -9 "$nbdkit_pid"
wait "$nbdkit_pid" 2>/dev/null || :
vm_go
vm_finish 120

# What the guest synced before the kill must all be there.
mkdir -p "$tmp/b2.files"
vm_lines "SUM " | sed 's/^SUM //; s/  f/  after\/f/' > "$tmp/b2.files/sums"
[ "$(wc -l < "$tmp/b2.files/sums")" -eq $((2 * files)) ] ||
    vm_fail b1 "expected $((2 * files)) file sums from the guest"
tail -n "$files" "$tmp/b2.files/sums" > "$tmp/sums" && mv "$tmp/sums" "$tmp/b2.files/sums"
start_punchcache "$sock" pool="$pool"
echo "FILES=$files MIB=$mib PHASE=verify" > "$tmp/b2.env"
vm_start b2 guest-disk.sh 1 "${disk[@]}"
vm_finish 300
vm_lines "verified.*"

stop_nbdkit
"$PUNCHCACHE" check "$pool" || fail "punchcache check after the crash"
