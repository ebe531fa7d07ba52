# Helpers for the guest scenarios (sourced by /pcvm/scenario.sh in the test
# guest; see tests/vm/functions-vm.sh for the host side).  Every line for
# the host starts with "PCVM: ".
say () { echo "PCVM: $*"; }
gfail () { say "FAIL: $*"; exit 1; }
[ ! -f /pcvm/env ] || . /pcvm/env

# port_dev NAME: the /dev/vportXpY of the virtio-serial port NAME.
port_dev () {
    local f
    for f in /sys/class/virtio-ports/*/name; do
        [ "$(cat "$f")" = "$1" ] && { echo "/dev/$(basename "$(dirname "$f")")"; return 0; }
    done
    gfail "no virtio-serial port named $1"
}

# ckpt NAME: tell the host, and wait until it says go.
ckpt () {
    local line=
    say "CKPT $1"
    read -r line < "$(port_dev ctl)" || gfail "ckpt $1: ctl port closed"
    [ "$line" = go ] || gfail "ckpt $1: host said '$line'"
}

# limits DEV: the queue limits the kernel chose for DEV.
limits () {
    local q=/sys/block/$1/queue
    say "LIMITS $1 logical_block_size=$(cat $q/logical_block_size)" \
        "physical_block_size=$(cat $q/physical_block_size)" \
        "minimum_io_size=$(cat $q/minimum_io_size)" \
        "optimal_io_size=$(cat $q/optimal_io_size)" \
        "max_sectors_kb=$(cat $q/max_sectors_kb)" \
        "max_hw_sectors_kb=$(cat $q/max_hw_sectors_kb)" \
        "discard_granularity=$(cat $q/discard_granularity)" \
        "discard_max_bytes=$(cat $q/discard_max_bytes)" \
        "write_zeroes_max_bytes=$(cat $q/write_zeroes_max_bytes)" \
        "rotational=$(cat $q/rotational) nr_hw_queues=$(ls /sys/block/$1/mq | wc -l)"
}

# nbd_attach PORT...: /dev/nbd0 with one connection per virtio-serial
# port named (pcvm-relay on 127.0.0.1:10809 bridges each to its port).
# nbd-client retries until the relay listens (it waits for the ports).
nbd_attach () {
    local try
    pcvm-relay 30 10809 "$@" &     # listens once every port is connected
    relay_pid=$!
    for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
        kill -0 "$relay_pid" || gfail "pcvm-relay $* failed"
        if nbd-client 127.0.0.1 10809 /dev/nbd0 -N default -C $# -t 60; then
            say "nbd0 attached with $# connections: $* (try $try)"
            return 0
        fi
        sleep 2
    done
    gfail "nbd-client could not attach /dev/nbd0"
}

# relay_counts: have the relay print each connection's bytes so far.
relay_counts () { kill -USR1 "$relay_pid"; sleep 1; }

# nbd_detach: disconnect /dev/nbd0 and stop the relay (each relay child
# prints its byte counts as its connection ends).
nbd_detach () {
    nbd-client -d /dev/nbd0 || gfail "nbd-client -d"
    sleep 1
    kill "$relay_pid" 2>/dev/null || :
    wait "$relay_pid" 2>/dev/null || :
    say "nbd0 detached"
}

# write_files DIR N MIB: N files of MIB MiB of random data; their sums in
# /tmp/sums, also printed as "PCVM: SUM <sha256>  <name>" for the host.
write_files () {
    local i
    for i in $(seq 1 "$2"); do
        dd if=/dev/urandom of="$1/f$i" bs=1M count="$3" 2>/dev/null ||
            gfail "writing $1/f$i"
    done
    (cd "$1" && sha256sum f*) > /tmp/sums
    sed 's/^/PCVM: SUM /' /tmp/sums
}

# verify_files DIR SUMS: every file reads back with its sum.
verify_files () {
    (cd "$1" && sha256sum -c "$2") || gfail "files in $1 read back wrong"
    say "verified $(wc -l < "$2") files in $1"
}

# fill_fs DEV: a new ext4 on DEV, mounted with discard (ckpt empty), then
# $FILES files of $MIB MiB written and synced (ckpt full); unmounted.
fill_fs () {
    make_fs "$1"
    mount -o discard "$1" /mnt || gfail "mount $1"
    sync
    ckpt empty
    write_files /mnt "$FILES" "$MIB"
    sync
    ckpt full
    umount /mnt || gfail "umount"
}

# verify_and_trim DEV: mount DEV (with discard) on /mnt, check the files
# of /tmp/sums, delete them, fstrim, and tell the host (ckpt trimmed).
verify_and_trim () {
    mount -o discard "$1" /mnt || gfail "mount $1"
    verify_files /mnt /tmp/sums
    rm -f /mnt/f*
    sync
    fstrim -v /mnt || gfail "fstrim"
    sync
    ckpt trimmed
}

# make_fs DEV: ext4 with everything initialised now (no lazy init, so the
# host's space baselines do not drift).
make_fs () {
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1" ||
        gfail "mkfs.ext4 $1"
}

# fsck_clean DEV
fsck_clean () { e2fsck -fn "$1" || gfail "e2fsck -fn $1 found errors"; say "e2fsck clean: $1"; }
