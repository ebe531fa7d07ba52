#!/usr/bin/env bash
# Install punchcache's build and test dependencies (Debian 12 packages) and
# build the tree.  Idempotent; used by the README quick start and by CI.
#   scripts/bootstrap.sh [--no-install] [configure args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin nbdfuse python3-libnbd
  liburing-dev libev-dev libcmocka-dev libgnutls28-dev gnutls-bin libjson-c-dev
  qemu-utils fio e2fsprogs fuse3 util-linux procps valgrind jq
  # the guest tests (tests/vm/build-kit.sh also runs apt-get download of
  # the kernel linux-image-amd64 points at)
  qemu-system-x86 busybox-static nbd-client kmod
)

install=yes
if [ "${1:-}" = "--no-install" ]; then install=no; shift; fi

if [ "$install" = yes ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # tests/vm/build-kit.sh downloads the kernel linux-image-amd64 points at:
  # apt must know it (an image may ship without package lists).
  if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    $sudo apt-get update -qq
  fi
fi

[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-werror "$@"
make -j"$(nproc)"
