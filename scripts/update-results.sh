#!/usr/bin/env bash
# Commits the demos' latest full runs to the docs: copies each demo's results.md from the build
# tree to docs/results/, then rewrites docs/results.md's copies of them (docs/includes.cmake).
# Run it after a demo whose table changed on purpose; CI compares the counting demo's table with
# docs/results/count-demo.md (test examples.count_demo.table).
#   build/demo/results.md         (scripts/demo.sh)                              -> count-demo.md
#   build/demo-seeds/results.md   (scripts/demo.sh --seeds 3)                    -> count-demo-seeds.md
#   build/detect-demo/results.md  (crowdloss-detect demo --out build/detect-demo) -> detect-demo.md
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CROWDLOSS_BUILD_DIR:-$root/build}
mkdir -p "$root/docs/results"
copy() {
  if [ -f "$build/$1/results.md" ]; then
    cp "$build/$1/results.md" "$root/docs/results/$2.md"
    echo "docs/results/$2.md <- $build/$1/results.md"
  fi
}
copy demo count-demo
copy demo-seeds count-demo-seeds
copy detect-demo detect-demo
cmake -DDOC="$root/docs/results.md" -DUPDATE=ON -P "$root/docs/includes.cmake"
