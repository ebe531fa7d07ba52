#!/usr/bin/env bash
# Description: the pool parsers (superblock, metadata pages, volume table,
# journal scanner) under AddressSanitizer + UBSan, fed 100000 mutated
# inputs (bounded to 20 s) made from valid seeds, each parsed as it is and
# with its checksums fixed up.  Any out-of-bounds access or undefined
# behaviour aborts the run and fails the test.
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

fuzz=$top_builddir/tests/fuzz-pool-asan
requires test -x "$fuzz"

rc=0
out=$("$fuzz" 100000 20 2>&1) || rc=$?
[ "$rc" -eq 0 ] || { echo "$out" >&2; fail "fuzz-pool-asan exited $rc"; }
echo "$out"
grep -q '^fuzz-pool: [1-9][0-9]* inputs' <<< "$out" ||
    fail "fuzz-pool-asan ran no input"
