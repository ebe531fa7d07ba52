#!/usr/bin/env bash
# Description: punchcached's NBD protocol parsers (server/protocol.c:
# client flags, option headers, INFO/GO, LIST/SET_META_CONTEXT, export
# names, requests and pcd_check_request) under AddressSanitizer + UBSan,
# fed 100000 mutated client sessions (bounded to 5 s) made from three
# valid seeds with protocol-aware mutations.  Any out-of-bounds access,
# undefined behaviour or wrong answer (fuzz/fuzz-nbdproto.c lists its four
# oracles) aborts the run and fails the test.
#
# Shown to fail by deliberate mutations of server/protocol.c, each caught
# within the 5 s: the payload cursor's bound off by one (ASan: heap-buffer-
# overflow), INFO/GO or META_CONTEXT accepting a payload one byte long,
# each limit (PCD_MAX_STRING, PCD_MAX_INFO_REQUESTS, PCD_MAX_META_QUERIES,
# PCD_MAX_REQUEST_SIZE) one too high, the NUL check removed, offset +
# count allowed to wrap at 2^64, count 0 accepted, DF without structured
# replies, DF allowed on BLOCK_STATUS, an unknown command type accepted,
# and -INT_MIN in pcd_nbd_error (UBSan).
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

run_fuzzer nbdproto 100000 5
