#!/usr/bin/env bash
# build.sh [release|test] - configure and build into build/ or build-test/.
#   release: optimised, hardened (the demo and install)
#   test:    clang, ASan+UBSan, libFuzzer targets, cellsd's test hooks (the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case $kind in
release) dir=build; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
test) dir=build-test; args=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCELLS_SANITIZE=ON -DCELLS_FUZZ=ON -DCELLS_TEST_HOOKS=ON) ;;
*) echo "usage: scripts/build.sh [release|test]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
