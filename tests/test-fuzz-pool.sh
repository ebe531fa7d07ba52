#!/usr/bin/env bash
# Description: the pool parsers (superblock, metadata pages, volume table,
# journal scanner) under AddressSanitizer + UBSan, fed 100000 mutated inputs
# (bounded to 20 s).  Any out-of-bounds access or undefined behaviour
# aborts the run and fails the test.
source "$top_srcdir/tests/functions.sh"
requires test -x "$top_builddir/tests/fuzz-pool-asan"
"$top_builddir/tests/fuzz-pool-asan" 100000 20
