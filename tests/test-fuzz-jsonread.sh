#!/usr/bin/env bash
# Description: the JSON reader (lib/json.c) and the statistics file reader
# (lib/statsfile.c) under AddressSanitizer + UBSan, fed 100000 mutated
# inputs (bounded to 20 s) made from valid seeds (a statistics file, every
# kind of value, deep nesting) with JSON-aware mutations.  Any
# out-of-bounds access, undefined behaviour or wrong answer (fuzz/
# fuzz-jsonread.c lists its four oracles) aborts the run and fails the test.
#
# Shown to fail by deliberate mutations of lib/json.c: utf8_len's bound on
# the bytes left removed (ASan: heap-buffer-overflow read in utf8_len,
# within a second); the depth check disabled (oracle 1 aborts: a document
# nested deeper than 64 levels was accepted); the duplicate-key check
# skipped (oracle 1 aborts: a member that pc_json_lookup does not find).
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

run_fuzzer jsonread 100000 20
