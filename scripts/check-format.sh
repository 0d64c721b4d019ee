#!/usr/bin/env bash
# check-format.sh - fail if a C file differs from .clang-format (scripts/check-format.sh
# --fix rewrites them).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
[ ${#files[@]} -gt 0 ] || exit 0
if [ "${1:-}" = "--fix" ]; then clang-format -i "${files[@]}"; exit 0; fi
bad=()
for f in "${files[@]}"; do clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f"); done
if [ ${#bad[@]} -gt 0 ]; then
	echo "check-format: not clang-formatted (run scripts/check-format.sh --fix): ${bad[*]}" >&2
	exit 1
fi
echo "check-format: ${#files[@]} files ok"
