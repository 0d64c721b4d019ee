#!/usr/bin/env bash
# demo.sh - install dependencies, build, and run the end-to-end demo story on embedded
# defaults (sqlite, loopback, headless backends) in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
exec scripts/story.sh build
