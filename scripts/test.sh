#!/usr/bin/env bash
# test.sh - install dependencies, build with ASan+UBSan and libFuzzer, and run the whole
# test suite: unit, integration, end-to-end and fuzz-corpus replay. Needs root for the
# namespace tests (they fail rather than skip when CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/check-format.sh
scripts/build.sh test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build-test
ctest --output-on-failure -j2 "$@"
