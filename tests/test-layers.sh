#!/usr/bin/env bash
# Description: dependencies between lib/'s layer folders point one way
# (docs/design.md "Layers"): scripts/check-layers.sh passes on the tree, by
# its #include lines and by the calls of the built objects.  Then its
# teeth, each on a scratch copy of the tree: a pool file including the
# statistics header, a util file including a private header, a front-end
# reaching into lib/, and objects that call upwards -- io.c calling
# iobatch.c again (the io <-> iobatch cycle), the pool calling the
# statistics writer (store <-> stats) and the data path (store <-> volume)
# -- are each reported, with the file and the symbol.
#
# Shown to fail on the tree itself by putting back, one at a time, the
# call of pc_io_probe_uring in lib/io/io.c and an #include of
# punchcache/stats.h in lib/pool/store.c (both reported, exit 1).
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nm --version
requires realpath --version
requires cc --version

check=$top_srcdir/scripts/check-layers.sh

"$check" --srcdir "$top_srcdir" --objdir "$top_builddir" ||
    fail "check-layers.sh reports dependencies against the layers"

# ---- teeth: #include lines ----
copy=$tmp/src
mkdir -p "$copy"
(cd "$top_srcdir" && cp -r --parents lib include plugins server tools "$copy/")

# expect_problem WHAT PATTERN: check-layers.sh on the copy must fail and say
# PATTERN; the copy is restored afterwards.
expect_problem () {
    local what=$1 pattern=$2
    if "$check" --srcdir "$copy" "${@:3}" > "$tmp/out" 2>&1; then
        fail "$what: not reported"
    fi
    grep -q -- "$pattern" "$tmp/out" ||
        { cat "$tmp/out"; fail "$what: no line matching '$pattern'"; }
}
restore () { cp "$top_srcdir/$1" "$copy/$1"; }

echo '#include "punchcache/stats.h"' >> "$copy/lib/pool/alloc.c"
expect_problem "pool includes stats.h" \
    "lib/pool/alloc.c:[0-9]*: includes include/punchcache/stats.h: layer pool may not depend on stats"
restore lib/pool/alloc.c

echo '#include "../pool/store-internal.h"' >> "$copy/lib/util/size.c"
expect_problem "util includes a private pool header" \
    "lib/util/size.c:[0-9]*: includes lib/pool/store-internal.h, private to lib/pool/"
restore lib/util/size.c

echo '#include "../lib/pool/store-internal.h"' >> "$copy/tools/punchcache.c"
expect_problem "a front-end includes lib/" \
    "tools/punchcache.c:[0-9]*: includes lib/pool/store-internal.h: front-ends see only include/"
restore tools/punchcache.c

touch "$copy/lib/loose.c"
expect_problem "a file outside the layer folders" "lib/loose.c: outside a layer folder"
rm "$copy/lib/loose.c"

"$check" --srcdir "$copy" || fail "the restored copy does not pass"

# ---- teeth: calls, with objects compiled to call upwards ----
objs=$tmp/obj
mkdir -p "$objs"
(cd "$top_builddir" && find lib -path '*/.libs/libpunchcache_la-*.o' \
     -exec cp --parents {} "$objs/" \;) || fail "copying the objects"

# call_from FILE SYMBOL: an extra object of FILE's folder calling SYMBOL.
call_from () {
    local dir=$objs/$(dirname "$1")/.libs name
    name=$(basename "$1" .c)
    printf 'int %s (void);\nint punchcache_test_%s (void) { return %s (); }\n' \
        "$2" "$name" "$2" > "$tmp/$name.c"
    cc -c -o "$dir/libpunchcache_la-$name.o" "$tmp/$name.c" ||
        fail "compiling $tmp/$name.c"
}
uncall () {
    rm -f "$objs/$(dirname "$1")/.libs/libpunchcache_la-$(basename "$1" .c).o"
}

# io.c calling iobatch.c (the cycle of issue 12), in io.c's own object.
cc -c -o "$tmp/probe.o" -x c - <<'EOF'
int pc_io_probe_uring (const char **why);
int punchcache_test_probe (void) { const char *w; return pc_io_probe_uring (&w); }
EOF
ld -r -o "$tmp/io.o" "$objs/lib/io/.libs/libpunchcache_la-io.o" "$tmp/probe.o" ||
    fail "linking the io.o mutant"
cp "$objs/lib/io/.libs/libpunchcache_la-io.o" "$tmp/io.o.orig"
cp "$tmp/io.o" "$objs/lib/io/.libs/libpunchcache_la-io.o"
expect_problem "io.c calls iobatch.c" \
    "lib/io/io.c: calls pc_io_probe_uring (in lib/io/iobatch.c): lib/io/iobatch.c is built on lib/io/io.c" \
    --objdir "$objs"
cp "$tmp/io.o.orig" "$objs/lib/io/.libs/libpunchcache_la-io.o"

call_from lib/pool/evil.c pc_stats_writer_open
expect_problem "the pool calls the statistics writer" \
    "lib/pool/evil.c: calls pc_stats_writer_open (in lib/stats/writer.c): layer pool may not depend on stats" \
    --objdir "$objs"
uncall lib/pool/evil.c

call_from lib/pool/evil.c pc_read
expect_problem "the pool calls the data path" \
    "lib/pool/evil.c: calls pc_read (in lib/core/volume.c): layer pool may not depend on core" \
    --objdir "$objs"
uncall lib/pool/evil.c

call_from lib/cache/evil.c pc_io_pread
expect_problem "the cache calls pool I/O" \
    "lib/cache/evil.c: calls pc_io_pread (in lib/io/io.c): layer cache may not depend on io" \
    --objdir "$objs"
uncall lib/cache/evil.c

"$check" --srcdir "$copy" --objdir "$objs" ||
    fail "the restored objects do not pass"
echo "check-layers.sh: the tree passes; 8 injected violations reported"
