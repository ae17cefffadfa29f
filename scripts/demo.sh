#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job (crowdloss-count demo):
# L2 vs PML vs DM-Count training on synthetic crowds, results in build/demo (build/demo-quick for --quick and
# build/demo-seeds for --seeds N, so that no other run overwrites the full run's results).
# Extra arguments go to the demo (e.g. --quick, --seeds 5).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$("$root/scripts/configure.sh" | tail -n 1)
cmake --build "$build" --target crowdloss-count -j "$(nproc)"
out=$build/demo
for a in "$@"; do
  case $a in
    --seeds*) [ "$out" = "$build/demo-quick" ] || out=$build/demo-seeds ;;
    --quick) out=$build/demo-quick ;;
  esac
done
"$build/examples/crowdloss-count" demo --out "$out" "$@"
