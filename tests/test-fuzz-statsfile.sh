#!/usr/bin/env bash
# Description: the statistics file reader (lib/stats/statsfile.c) and what
# lib/stats/json.c adds to json-c, under AddressSanitizer + UBSan, fed 100000
# mutated inputs (bounded to 20 s) made from valid seeds (a statistics
# file, every kind of value, deep nesting) with JSON-aware mutations.  Any
# out-of-bounds access, undefined behaviour or wrong answer (fuzz/
# fuzz-statsfile.c lists its four oracles) aborts the run and fails the
# test.  About 200 of the inputs are statistics files the reader accepts.
#
# Shown to fail by deliberate mutations of lib/stats/json.c: pc_json_new_string
# handing invalid UTF-8 to json-c unchanged (oracle 3 aborts: the output
# is not UTF-8); the message for a broken document reading the byte at
# the end of the text ("at > len" for "at >= len": ASan
# heap-buffer-overflow in syntax_error, on the first truncated input).
# Not caught in 100000 inputs: the UTF-8 check of strings in
# lib/stats/statsfile.c removed (tests/unit-stats.c catches that).
set -euo pipefail
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99

run_fuzzer statsfile 100000 20
