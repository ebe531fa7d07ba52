#!/usr/bin/env bash
# Description: a real block device over an export (SPEC §6): nbdfuse
# exposes the volume as a file, losetup makes it a block device; mkfs.ext4,
# mount -o discard, write files, delete them, fstrim: the pool file's
# space comes back (freed blocks are punched out of it).  fsck.ext4 is
# clean after unmount, and the files read back intact after a remount.
# Needs root, /dev/fuse and loop devices.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires_root
requires nbdfuse --help
requires which mkfs.ext4 fsck.ext4 fstrim losetup fusermount3
[ -c /dev/fuse ] || skip "no /dev/fuse"
losetup -f >/dev/null 2>&1 || skip "no free loop device"
# Can this environment mount ext4 from a loop device at all?  Probe on a
# plain file, so that a mount failure later on is a real failure.
mkdir -p "$tmp/probe"
truncate -s 16M "$tmp/probe.img"
mkfs.ext4 -q -F "$tmp/probe.img"
mount -o loop "$tmp/probe.img" "$tmp/probe" 2>/dev/null || skip "cannot mount ext4 from a loop device here"
umount "$tmp/probe"
rm -f "$tmp/probe.img"

pool=$tmp/pool
mkdir -p "$tmp/fuse" "$tmp/mnt"
start_punchcache "$tmp/sock" pool="$pool" size=256M
nbdfuse "$tmp/fuse/disk" --unix "$tmp/sock" 2> "$tmp/nbdfuse.log" &
fuse_pid=$!
cleanup_fn "fusermount3 -u '$tmp/fuse' 2>/dev/null || kill $fuse_pid 2>/dev/null; wait $fuse_pid 2>/dev/null"
for ((i = 0; i < 100; i++)); do
    [ -f "$tmp/fuse/disk" ] && break
    kill -0 $fuse_pid 2>/dev/null || { cat "$tmp/nbdfuse.log" >&2; skip "nbdfuse cannot mount here"; }
    sleep 0.1
done
[ -f "$tmp/fuse/disk" ] || fail "nbdfuse did not expose the export"
loop=$(losetup --find --show "$tmp/fuse/disk") || skip "losetup failed"
cleanup_fn "losetup -d $loop"
mkfs.ext4 -q -F -E nodiscard "$loop" || fail "mkfs.ext4"
mount -o discard "$loop" "$tmp/mnt" || fail "cannot mount the new ext4"
cleanup_fn "umount '$tmp/mnt' 2>/dev/null"
for i in 1 2 3 4 5; do
    dd if=/dev/urandom of="$tmp/mnt/f$i" bs=1M count=20 status=none
done
(cd "$tmp/mnt" && sha256sum f*) > "$tmp/sums"
sync
du_full=$(du -k "$pool" | cut -f1)
# Read the files back through the whole stack, not from the page cache.
umount "$tmp/mnt"
blockdev --flushbufs "$loop" 2>/dev/null || :
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || :
mount -o discard "$loop" "$tmp/mnt" || fail "cannot mount the ext4 again"
(cd "$tmp/mnt" && sha256sum --quiet -c "$tmp/sums") || fail "files read back wrong"
rm -f "$tmp/mnt"/f*
sync
fstrim -v "$tmp/mnt" || fail "fstrim"
sync
du_trimmed=$(du -k "$pool" | cut -f1)
umount "$tmp/mnt"
fsck.ext4 -fn "$loop" || fail "fsck.ext4 found errors"
echo "pool file: ${du_full} KiB with 100 MiB of files, ${du_trimmed} KiB after rm + fstrim"
[ "$du_full" -gt 100000 ] || fail "files did not reach the pool"
[ "$du_trimmed" -lt $((du_full - 80000)) ] || fail "fstrim did not return the space"
