#!/usr/bin/env bash
# Install dependencies, build, and serve a demo thin volume over NBD:
# a 10 GiB thin pool file ./demo.pool (sparse: it costs nothing until
# written), served on nbd://127.0.0.1:10809 until you press ^C.
# Environment: POOL (path), SIZE (capacity when creating), PORT,
# FRONTEND (plugin: nbdkit punchcache, the default; or punchcached, the
# standalone server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
$sudo make install >/dev/null   # puts the plugin in nbdkit's plugindir
pool=${POOL:-$PWD/demo.pool}
size=${SIZE:-10G}
cat <<MSG

Serving volume 'default' of pool $pool ($size thin) on
  nbd://127.0.0.1:${PORT:-10809}
Try, in another terminal:
  nbdinfo nbd://127.0.0.1:10809
  qemu-img info nbd://127.0.0.1:10809
Press ^C to stop (the pool is committed and closed cleanly).

MSG
case ${FRONTEND:-plugin} in
  plugin)
    exec nbdkit --foreground -i 127.0.0.1 -p "${PORT:-10809}" \
      punchcache pool="$pool" size="$size" ;;
  punchcached)
    exec punchcached --foreground -i 127.0.0.1 -p "${PORT:-10809}" \
      pool="$pool" size="$size" ;;
  *) echo "FRONTEND=$FRONTEND: expected plugin or punchcached" >&2; exit 2 ;;
esac
