#!/usr/bin/env bash
# Description: the pool parsers (superblock, metadata pages, volume table,
# journal scanner) under AddressSanitizer + UBSan, fed 100000 mutated
# inputs (bounded to 20 s) made from valid seeds, each parsed as it is and
# with its checksums fixed up.  Any out-of-bounds access or undefined
# behaviour aborts the run and fails the test.
#
# Shown to fail (with the mutation loop shared with fuzz-statsfile) by
# removing lib/pool/journal.c's J1 bound on a descriptor's page count: ASan
# reports a heap-buffer-overflow within seconds.
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

run_fuzzer pool 100000 20
