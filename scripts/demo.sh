#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job (crowdloss-demo).
# Extra arguments go to the demo (the first is the number of training steps).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$("$root/scripts/configure.sh" | tail -n 1)
cmake --build "$build" --target crowdloss-demo -j "$(nproc)"
"$build/examples/crowdloss-demo" "$@"
