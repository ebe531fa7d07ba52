#!/usr/bin/env bash
# Description: punchcached's NBD protocol parsers (server/protocol.c:
# client flags, option headers, INFO/GO, LIST/SET_META_CONTEXT, export
# names, requests and pcd_check_request) under AddressSanitizer + UBSan,
# fed 100000 mutated client sessions (bounded to 5 s) made from three
# valid seeds with protocol-aware mutations.  Any out-of-bounds access,
# undefined behaviour or wrong answer (fuzz/fuzz-nbdproto.c lists its four
# oracles) aborts the run and fails the test.
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

run_fuzzer nbdproto 100000 5
