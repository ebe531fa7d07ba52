# Helpers for the guest tests (SPEC §6), sourced after tests/functions.sh.
#
# A test boots the kit of tests/vm/build-kit.sh under qemu TCG with a
# scenario script from tests/vm/ appended to the initramfs as a second cpio
# archive (so a changed scenario does not rebuild the kit), and talks to
# the guest through two channels:
#   guest -> host: the serial console, in $tmp/NAME.console; lines the
#     host acts on start with "PCVM: " (vm_wait waits for one);
#   host -> guest: a virtio-serial port named ctl (a chardev pipe,
#     $tmp/NAME.ctl.in); the guest's `ckpt NAME` prints "PCVM: CKPT NAME"
#     and blocks until the host's vm_go.
# NBD connections are virtio-serial ports nbd0, nbd1, ... each a chardev
# socket to the server's Unix socket (reconnect=1: after the server
# restarts, the port connects again), bridged in the guest by pcvm-relay.
# Every wait is bounded; a failure prints the console.

: "${PC_VM_TIMEOUT:=600}"   # seconds one guest may run, at most

# vm_setup: find or build the kit (cached per machine); skip if a tool is
# missing, or fail if PC_VM_REQUIRE=1 (CI: .ci/run, where bootstrap
# installs every tool, so a skip would hide a broken kit).  Sets $vm_kit.
vm_setup () {
    local rc=0
    vm_kit=$("$top_srcdir/tests/vm/build-kit.sh" 2> "$tmp/build-kit.log") || rc=$?
    cat "$tmp/build-kit.log" >&2
    if [ "$rc" -eq 77 ]; then
        [ "${PC_VM_REQUIRE:-0}" != 1 ] ||
            fail "guest kit (PC_VM_REQUIRE=1): $(tail -n1 "$tmp/build-kit.log")"
        skip "guest kit: $(tail -n1 "$tmp/build-kit.log")"
    fi
    [ "$rc" -eq 0 ] || fail "building the guest kit failed"
    [ -f "$vm_kit/initrd.cpio" ] || fail "no initramfs in $vm_kit"
}

# vm_print NAME: show the guest's console and qemu's own messages.
vm_print () {
    echo "----- guest $1 console ($tmp/$1.console) -----" >&2
    tail -n 150 "$tmp/$1.console" >&2 2>/dev/null || :
    echo "----- qemu ($1) -----" >&2
    cat "$tmp/$1.qemu.log" >&2 2>/dev/null || :
    echo "----- server log -----" >&2
    tail -n 30 "$tmp/nbdkit.log" >&2 2>/dev/null || :
}

# vm_kill: stop the guest now.  Register it (cleanup_fn vm_kill) after
# starting a server while a guest runs: cleanups run last-registered
# first, and a server that the guest's ports are connected to does not
# stop gracefully while they are.
vm_kill () {
    [ -n "${vm_pid:-}" ] || return 0
    kill "$vm_pid" 2>/dev/null || :
    wait "$vm_pid" 2>/dev/null || :
}

# vm_fail NAME MESSAGE: show the logs, stop the guest, fail.
vm_fail () { vm_print "$1"; vm_kill; fail "$2"; }

# vm_start NAME SCRIPT SMP [qemu args...]: boot the guest NAME running
# tests/vm/SCRIPT; $tmp/NAME.env (if any) is its /pcvm/env, and
# $tmp/NAME.files/ (if any) is copied to /pcvm/.  Sets vm_pid.
vm_start () {
    local name=$1 script=$2 smp=$3 sc=$tmp/$1.sc; shift 3
    rm -rf "$sc"; mkdir -p "$sc/pcvm"
    cp "$top_srcdir/tests/vm/guest-lib.sh" "$sc/pcvm/lib.sh"
    cp "$top_srcdir/tests/vm/$script" "$sc/pcvm/scenario.sh"
    [ ! -f "$tmp/$name.env" ] || cp "$tmp/$name.env" "$sc/pcvm/env"
    [ ! -d "$tmp/$name.files" ] || cp "$tmp/$name.files"/* "$sc/pcvm/"
    (cd "$sc" && find . | /bin/busybox cpio -o -H newc -R 0:0 \
        > "$tmp/$name.sc.cpio" 2> /dev/null) || fail "cpio of $script"
    cat "$vm_kit/initrd.cpio" "$tmp/$name.sc.cpio" > "$tmp/$name.initrd"
    rm -f "$tmp/$name.ctl.in" "$tmp/$name.ctl.out" "$tmp/$name.console"
    mkfifo "$tmp/$name.ctl.in" "$tmp/$name.ctl.out"
    : > "$tmp/$name.console"
    # (qemu opens both fifos read-write, so neither open blocks.)
    timeout -k 5 "$PC_VM_TIMEOUT" qemu-system-x86_64 -accel tcg \
        -m 512 -smp "$smp" -nodefaults -no-user-config -display none \
        -no-reboot -kernel "$vm_kit/vmlinuz" -initrd "$tmp/$name.initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4" \
        -serial "file:$tmp/$name.console" \
        -device virtio-serial-pci,id=vser \
        -chardev "pipe,id=ctl,path=$tmp/$name.ctl" \
        -device virtserialport,chardev=ctl,name=ctl \
        "$@" > "$tmp/$name.qemu.log" 2>&1 &
    vm_pid=$!
    cleanup_fn "kill $vm_pid 2>/dev/null; wait $vm_pid 2>/dev/null"
    vm_name=$name
    vm_t0=$(date +%s)
}

# vm_nbd_port NAME SOCK [once]: qemu args for a virtio-serial port NAME
# that is an NBD connection to SOCK.  The chardev reconnects (every 1 s)
# whenever it is not connected, so it finds a server that starts after the
# guest; but a server with such a port idle-connected to it does not stop
# gracefully (nbdkit waits for the connection).  "once": connect at start
# only (the server must be up), one NBD session, then the port is dead.
vm_nbd_port () {
    local reconnect=,reconnect=1
    [ "${3:-}" != once ] || reconnect=
    printf '%s\n' -chardev "socket,id=c$1,path=$2$reconnect" \
        -device "virtserialport,bus=vser.0,chardev=c$1,name=$1"
}

# vm_wait PATTERN [SECONDS]: wait until a console line matches
# "^PCVM: PATTERN" (grep -E); fail if the guest fails, stops, or time
# runs out.
vm_wait () {
    local pat=$1 secs=${2:-300} i
    for ((i = 0; i < secs * 10; i++)); do
        grep -qE "^PCVM: $pat" "$tmp/$vm_name.console" && return 0
        grep -q "^PCVM: FAIL" "$tmp/$vm_name.console" &&
            vm_fail "$vm_name" "guest $vm_name: $(grep -m1 '^PCVM: FAIL' "$tmp/$vm_name.console")"
        kill -0 "$vm_pid" 2>/dev/null ||
            vm_fail "$vm_name" "guest $vm_name stopped before 'PCVM: $pat'"
        sleep 0.1
    done
    vm_fail "$vm_name" "guest $vm_name: no 'PCVM: $pat' within $secs s"
}

# vm_go: let the guest waiting in ckpt go on.
vm_go () {
    kill -0 "$vm_pid" 2>/dev/null || vm_fail "$vm_name" "guest $vm_name stopped"
    timeout 30 sh -c "echo go > '$tmp/$vm_name.ctl.in'" ||
        vm_fail "$vm_name" "cannot write to the guest's ctl port"
}

# vm_finish [SECONDS]: wait for the guest to power off; fail unless its
# scenario ended with rc 0.  Prints how long the guest ran.
vm_finish () {
    local secs=${1:-300} i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$vm_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$vm_pid" 2>/dev/null &&
        vm_fail "$vm_name" "guest $vm_name did not power off within $secs s"
    wait "$vm_pid" 2>/dev/null || :
    grep -q "^PCVM: DONE rc=0" "$tmp/$vm_name.console" ||
        vm_fail "$vm_name" "guest $vm_name did not end with 'PCVM: DONE rc=0'"
    echo "guest $vm_name: ran $(( $(date +%s) - vm_t0 )) s"
}

# vm_lines PATTERN: the console lines "PCVM: PATTERN..." without the prefix.
vm_lines () { sed -n "s/^PCVM: \\($1\\)/\\1/p" "$tmp/$vm_name.console" | tr -d '\r'; }

# The guest's ext4 cycle seen from the pool (info on the live pool), at
# the guest's checkpoints "empty", "full" and "trimmed":
# space_empty POOL: right after the guest synced an empty ext4 (a FLUSH
#   returned, so it is committed).  Sets space_empty.
space_empty () {
    space_empty=$(pool_used "$1")
    [ "$space_empty" -ge $((8 << 20)) ] ||
        vm_fail "$vm_name" "pool used $space_empty bytes after the guest synced an empty ext4 (its journal alone is 16 MiB)"
}
# space_full POOL BYTES: the guest synced BYTES of files.  Sets space_full.
space_full () {
    local want=$((space_empty + $2 * 9 / 10))
    space_full=$(pool_used "$1")
    [ "$space_full" -ge "$want" ] ||
        vm_fail "$vm_name" "pool used $space_full bytes with the files synced, want >= $want (empty fs: $space_empty)"
}
# space_trimmed POOL: the files were deleted and fstrim ran: back to the
# empty filesystem within 4 MiB (trims commit within a commit interval).
space_trimmed () {
    local want=$((space_empty + (4 << 20)))
    space_trimmed=$(wait_pool_used "$1" -le "$want") ||
        vm_fail "$vm_name" "pool used $space_trimmed bytes after rm + fstrim, want <= $want (empty fs: $space_empty, with files: $space_full)"
    echo "pool used: empty ext4 $space_empty, with files $space_full, after rm + fstrim $space_trimmed"
}

# pool_used POOL: bytes in use, from `punchcache info --json` (works on a
# live pool: the figures as of the server's last commit).
pool_used () {
    "$PUNCHCACHE" info --json "$1" | jq -e .used ||
        fail "punchcache info --json $1 failed"
}

# wait_pool_used POOL CMP BYTES [SECONDS]: wait until the pool's used
# bytes compare (-ge/-le) to BYTES, as commits land; echo the last figure.
wait_pool_used () {
    local pool=$1 cmp=$2 want=$3 secs=${4:-20} used i
    for ((i = 0; i < secs * 4; i++)); do
        used=$(pool_used "$pool")
        if [ "$used" "$cmp" "$want" ]; then echo "$used"; return 0; fi
        sleep 0.25
    done
    echo "$used"
    return 1
}
