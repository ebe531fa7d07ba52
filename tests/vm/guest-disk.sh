# Scenario B, in the guest (tests/test-vm-disk.sh is the host side): the
# export as a VM's virtio disk (/dev/vda, qemu's NBD client).
# PHASE=write: ext4 with discard, files through a remount, rm + fstrim,
#   then a second set of files synced, after which the host kill -9s the
#   server and this boot powers off without unmounting.
# PHASE=verify (second boot, server restarted): the synced files are
#   intact after the journal replay, and e2fsck -fn is clean.
. /pcvm/lib.sh
: "${FILES:=6}" "${MIB:=8}" "${PHASE:=write}"

if [ "$PHASE" = verify ]; then
    limits vda
    mount /dev/vda /mnt || gfail "mount /dev/vda after the crash"
    verify_files /mnt /pcvm/sums
    umount /mnt || gfail "umount"
    fsck_clean /dev/vda
    exit 0
fi

limits vda
fill_fs /dev/vda
echo 3 > /proc/sys/vm/drop_caches
verify_and_trim /dev/vda

# The crash: files synced, then the server is killed under the mounted fs.
mkdir /mnt/after
write_files /mnt/after "$FILES" "$MIB"
sync
ckpt synced            # the host kill -9s the server before saying go
say "powering off without unmounting"
