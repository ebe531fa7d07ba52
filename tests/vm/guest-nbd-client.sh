# Scenario A, in the guest (tests/test-vm-nbd-client.sh is the host side):
# the kernel's NBD driver with two connections, fio verify, then ext4
# with discard through a server restart, fstrim and e2fsck.
# Ports nbd0 and nbd1 go to the first server (one session: qemu does not
# reconnect them), nbd2 and nbd3 to the restarted one.
. /pcvm/lib.sh
: "${FILES:=6}" "${MIB:=8}" "${FIO_MB:=16}"

nbd_attach nbd0 nbd1
limits nbd0
# One fio job per CPU (blk-mq queue, so connection), each in its own
# region: write with crc32c in every block, then read back and check.
fio --name=verify --filename=/dev/nbd0 --direct=1 --ioengine=libaio \
    --iodepth=8 --rw=randwrite --bsrange=4k-256k --size="${FIO_MB}M" \
    --offset_increment="${FIO_MB}M" --numjobs=2 --cpus_allowed=0-1 \
    --cpus_allowed_policy=split --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --group_reporting > /tmp/fio.out 2>&1 ||
    { cat /tmp/fio.out; gfail "fio verify"; }
grep -E "WRITE:|READ:" /tmp/fio.out
relay_counts
ckpt fio-done          # the host reads the relay's byte counts

fill_fs /dev/nbd0
nbd_detach
ckpt restart           # the host restarts the server

nbd_attach nbd2 nbd3
verify_and_trim /dev/nbd0
umount /mnt || gfail "umount"
fsck_clean /dev/nbd0
nbd_detach
