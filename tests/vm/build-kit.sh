#!/usr/bin/env bash
# Build the test guest kit (SPEC §6) once per machine and print its
# directory.  tests/vm/functions-vm.sh calls this; so can a person:
#   tests/vm/build-kit.sh            build if needed, print the kit dir
# The kit: the Debian 12 kernel (the version apt's linux-image-amd64 points
# at, fetched with apt-get download and unpacked with dpkg-deb -x), the
# modules nbd, virtio_console, virtio_blk, virtio_pci, ext4 (+ crc32c, its
# soft dependency) with every dependency from modules.dep in load order,
# and an uncompressed busybox initramfs (uncompressed: the kernel unpacks
# it in no time under TCG) with nbd-client, mke2fs/e2fsck, fstrim, fio,
# their shared libraries and dynamic loader (from ldd), and pcvm-relay.
#
# Cache: ${PC_VM_CACHE:-/var/cache/punchcache-vm}/KEY (~/.cache/punchcache-vm
# if that cannot be made), KEY a hash of this
# script, init, pcvm-relay.c and the kernel version, so a changed kit
# rebuilds.  Concurrent callers serialise on a lock file.  Exit 77 (with
# the reason on stderr) when a tool the kit needs is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PC_VM_CACHE:-/var/cache/punchcache-vm}
if [ -z "${PC_VM_CACHE:-}" ] && ! mkdir -p "$cache" 2>/dev/null; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/punchcache-vm   # not root
fi
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

skip () { echo "build-kit: $*" >&2; exit 77; }
die () { echo "build-kit: $*" >&2; exit 1; }

for t in qemu-system-x86_64 nbd-client mke2fs e2fsck fstrim fio apt-get \
         apt-cache dpkg-deb depmod gcc ldd flock sha256sum; do
    command -v "$t" >/dev/null || skip "missing tool: $t"
done
[ -x /bin/busybox ] && { ldd /bin/busybox 2>&1 || :; } | grep -q "not a dynamic" ||
    skip "missing a static /bin/busybox (Debian busybox-static)"

# The kernel apt offers: what the linux-image-amd64 metapackage depends on.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || skip "apt offers no linux-image-amd64 (run apt-get update)"
kver=${kpkg#linux-image-}

key=$(cat "$0" "$here/init" "$here/pcvm-relay.c" <(echo "$kpkg") |
      sha256sum | cut -c1-16)
kit=$cache/$key
if [ -f "$kit/done" ]; then echo "$kit"; exit 0; fi

mkdir -p "$cache"
exec 9> "$cache/lock"
timeout 600 flock 9 || die "timed out waiting for $cache/lock"
if [ -f "$kit/done" ]; then echo "$kit"; exit 0; fi

start=$(date +%s)
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-kit: building $kit ($kpkg)" >&2

# Kernel and modules.
(cd "$work" && timeout 600 apt-get download -q "$kpkg" >/dev/null 2>&1) ||
    skip "cannot download $kpkg with apt-get"
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
depmod -b "$work/k" "$kver"
mdir=$work/k/lib/modules/$kver
root=$work/root
mkdir -p "$root"/{bin,usr/bin,usr/sbin,etc,lib/modules/pcvm,proc,sys,dev,tmp,mnt,pcvm}
cp "$work/k/boot/vmlinuz-$kver" "$work/vmlinuz"

# Load order: for each wanted module its modules.dep dependencies, last
# listed first (as modprobe does), then the module; each module once.
declare -A loaded=()
: > "$root/etc/pcvm-modules"
add_module () {
    local rel=$1 base
    base=$(basename "$rel")
    [ -z "${loaded[$base]:-}" ] || return 0
    loaded[$base]=1
    cp "$mdir/$rel" "$root/lib/modules/pcvm/$base"
    echo "$base" >> "$root/etc/pcvm-modules"
}
for m in crc32c_generic virtio_pci virtio_console virtio_blk nbd ext4; do
    line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$mdir/modules.dep") ||
        die "module $m is not in $kpkg"
    rel=${line%%:*}
    read -r -a deps <<< "${line#*:}"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_module "${deps[$i]}"; done
    add_module "$rel"
done
if grep -q '\.ko\.' "$root/etc/pcvm-modules"; then
    die "compressed modules are not supported by busybox insmod here"
fi

# Userland: busybox, the tools, their libraries with the loader.
cp /bin/busybox "$root/bin/busybox"
copy_with_libs () {
    local bin=$1 dest=$2 lib
    cp -L "$bin" "$root$dest"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_with_libs "$(command -v nbd-client)" /usr/sbin/nbd-client
copy_with_libs "$(command -v mke2fs)" /usr/sbin/mke2fs
ln -s mke2fs "$root/usr/sbin/mkfs.ext4"
copy_with_libs "$(command -v e2fsck)" /usr/sbin/e2fsck
copy_with_libs "$(command -v fstrim)" /usr/sbin/fstrim
copy_with_libs "$(command -v fio)" /usr/bin/fio
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
gcc -static -O2 -Wall -o "$root/usr/bin/pcvm-relay" "$here/pcvm-relay.c"
install -m 755 "$here/init" "$root/init"

(cd "$root" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc -R 0:0 \
    > "$work/initrd.cpio" 2>/dev/null)
mkdir -p "$kit"
mv "$work/vmlinuz" "$work/initrd.cpio" "$kit/"
echo "$kpkg" > "$kit/kernel"
touch "$kit/done"
echo "build-kit: built $kit in $(( $(date +%s) - start )) s" \
     "($(du -sh "$kit/initrd.cpio" | cut -f1) initramfs)" >&2
echo "$kit"
