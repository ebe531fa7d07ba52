#!/usr/bin/env bash
# Description: the kill -9 crash test (tests/test-crash.sh) with write-back
# under pressure: cache=16M with a 4M dirty limit and dirty-expire=1, and
# 4 connections on 512 blocks of 4K each (8M of live data, twice the dirty
# limit), so writers are throttled and pages are written back by age, by
# the limit and by FLUSH/FUA while the server is killed at random instants.
# Everything durable before the kill (completed before the last completed
# FLUSH began, or FUA) must read back after the restart, nothing else may
# be foreign or garbage, and `punchcache check` must be clean.
CRASH_PARAMS="cache=16M dirty=4M dirty-expire=1"
CRASH_BLOCKS=512
source "${top_srcdir:?run through make check}/tests/test-crash.sh"
