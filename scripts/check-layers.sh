#!/usr/bin/env bash
# check-layers.sh: check that dependencies between lib/'s layer folders
# point one way (docs/design.md "Layers").
#
# Usage: scripts/check-layers.sh [--srcdir DIR] [--objdir DIR]
#
# 1. #include "..." lines: every file in lib/LAYER/ and include/punchcache/
#    may include only headers of the layers ALLOWED below for its layer;
#    front-ends (plugins/, server/, tools/) only include/punchcache/ headers
#    and their own folder's; a layer's private header (lib/LAYER/*.h) only
#    from its own folder, or where PRIVATE_OK lists it.
# 2. Calls, with --objdir (a build tree): the undefined symbols of each
#    object of lib/LAYER/ may be defined only by objects of layers ALLOWED
#    for LAYER, and never across a pair in FORBIDDEN_FILE_EDGES.
# Every problem is printed as "check-layers: FILE: ..."; exit 1 if any,
# 0 if none, 2 on a usage error.
set -u

usage () {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

src=. objdir=
while [ $# -gt 0 ]; do
    case "$1" in
        --srcdir) src=${2:?}; shift 2 ;;
        --objdir) objdir=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
cd "$src" || exit 2

# Bottom up: util < io, cache, origin < pool < stats < core.  A layer may use
# itself and the layers listed.
declare -A ALLOWED=(
    [util]="util"
    [origin]="util origin"
    [io]="util io"
    [cache]="util cache"
    [pool]="util io cache pool"
    [stats]="util io cache pool stats"
    [core]="util io cache pool stats core origin"
)
# The layer of each public header.  punchcache.h is the umbrella API
# (errors and sizes, which every layer uses, and the pool and volume API):
# any file may include it; the symbol check still sees what is called.
declare -A HEADER_LAYER=(
    [crc32c.h]=util [clock.h]=util
    [io.h]=io
    [cache.h]=cache [rangelock.h]=cache
    [format.h]=pool [journal.h]=pool [alloc.h]=pool [blockmap.h]=pool
    [counters.h]=pool
    [json.h]=stats [stats.h]=stats
    [request.h]=core [params.h]=core [overlay.h]=core
    [origin.h]=origin
    [punchcache.h]=any
)
# Private headers used from another (higher) layer's folder, on purpose.
PRIVATE_OK=" lib/core/volume.c:lib/pool/store-internal.h lib/core/overlay.c:lib/pool/store-internal.h "
# Calls that must not happen within a layer (cycles broken; issue 12).
FORBIDDEN_FILE_EDGES=" lib/io/io.c:lib/io/iobatch.c "

problems=0
problem () { echo "check-layers: $*" >&2; problems=$((problems + 1)); }

allowed () {                    # allowed FROM-LAYER TO-LAYER
    [ "$2" = any ] && return 0
    case " ${ALLOWED[$1]} " in *" $2 "*) return 0 ;; esac
    return 1
}

# The layer of a path relative to the top: a lib/ folder, a public
# header's table entry, "front", or "" (not ours).
layer_of () {
    case "$1" in
        lib/*/*) local l=${1#lib/}; echo "${l%%/*}" ;;
        include/punchcache/*) echo "${HEADER_LAYER[${1#include/punchcache/}]:-unknown}" ;;
        plugins/*|server/*|tools/*) echo front ;;
        *) echo "" ;;
    esac
}

# ---- the tree's shape ----
for f in lib/*.c lib/*.h; do
    [ -e "$f" ] && problem "$f: outside a layer folder (lib/LAYER/)"
done
for d in lib/*/; do
    l=${d#lib/}; l=${l%/}
    [ -n "${ALLOWED[$l]:-}" ] || problem "$d: not a layer (add it to ALLOWED)"
done
for h in include/punchcache/*.h; do
    [ -n "${HEADER_LAYER[${h#include/punchcache/}]:-}" ] ||
        problem "$h: no layer (add it to HEADER_LAYER)"
done

# ---- #include lines ----
check_include () {              # check_include FILE LINE TARGET
    local f=$1 line=$2 t=$3 fl tl
    fl=$(layer_of "$f")
    tl=$(layer_of "$t")
    [ -z "$tl" ] && return
    if [ "$fl" = front ]; then
        case "$t" in
            include/punchcache/*|"${f%%/*}"/*) ;;
            *) problem "$f:$line: includes $t: front-ends see only include/" ;;
        esac
        return
    fi
    if [ "$tl" = unknown ]; then
        problem "$f:$line: includes $t, which has no layer"
    elif ! allowed "$fl" "$tl"; then
        problem "$f:$line: includes $t: layer $fl may not depend on $tl"
    fi
    case "$t" in
        lib/*/*.h)
            if [ "$(dirname "$t")" != "$(dirname "$f")" ] &&
               [[ $PRIVATE_OK != *" $f:$t "* ]]; then
                problem "$f:$line: includes $t, private to $(dirname "$t")/"
            fi ;;
    esac
}

while IFS= read -r f; do
    while IFS=: read -r line inc; do
        case "$inc" in
            punchcache/*) t=include/$inc ;;
            *) t=$(realpath -m --relative-to=. "$(dirname "$f")/$inc") ;;
        esac
        check_include "$f" "$line" "$t"
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
             sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
done < <(find lib include/punchcache plugins server tools \
              -name '*.[ch]' -type f 2>/dev/null | sort)

# ---- calls (object files of a build tree) ----
if [ -n "$objdir" ]; then
    tmp=$(mktemp -d) || exit 2
    trap 'rm -rf "$tmp"' EXIT
    # OBJECT FILE: lib/LAYER/.libs/libpunchcache_la-NAME.o -> lib/LAYER/NAME.c
    find "$objdir/lib" -path '*/.libs/libpunchcache_la-*.o' -type f |
    while IFS= read -r o; do
        rel=${o#"$objdir"/}
        d=${rel%/.libs/*}; n=${rel##*/libpunchcache_la-}; n=${n%.o}
        file=$d/$n.c
        # Objects outside a layer folder (lib/.libs of a build tree from
        # before the layers) are not ours to judge.
        [ -n "$(layer_of "$file")" ] || continue
        nm --defined-only -g "$o" | awk -v f="$file" 'NF == 3 { print $3, f }' >> "$tmp/defs"
        nm -u "$o" | awk -v f="$file" '{ print f, $NF }' >> "$tmp/uses"
    done
    if [ ! -s "$tmp/defs" ]; then
        problem "$objdir: no objects of lib/ found (build first)"
    else
        sort -u "$tmp/defs" -o "$tmp/defs"
        # USER DEFINER SYMBOL, across files.
        awk 'NR == FNR { def[$1] = $2; next }
             ($2 in def) && def[$2] != $1 { print $1, def[$2], $2 }' \
            "$tmp/defs" "$tmp/uses" | sort -u > "$tmp/edges"
        while read -r user definer sym; do
            ul=$(layer_of "$user"); dl=$(layer_of "$definer")
            if ! allowed "$ul" "$dl"; then
                problem "$user: calls $sym (in $definer): layer $ul may not depend on $dl"
            elif [[ $FORBIDDEN_FILE_EDGES == *" $user:$definer "* ]]; then
                problem "$user: calls $sym (in $definer): $definer is built on $user, not the other way"
            fi
        done < "$tmp/edges"
    fi
fi

if [ "$problems" -gt 0 ]; then
    echo "check-layers: $problems problem(s); docs/design.md \"Layers\" has the rules" >&2
    exit 1
fi
exit 0
