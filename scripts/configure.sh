#!/usr/bin/env bash
# Shared by demo.sh and test.sh: installs what is missing and configures the build tree
# (default <repo>/build, or $CROWDLOSS_BUILD_DIR), Release, warnings as errors.
# Prints the build directory on its last line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CROWDLOSS_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh" >&2
# A new tree is configured in full; an existing one again only where it was configured without
# the tests, examples or benchmarks (e.g. by hand for an install), which these scripts need.
settings=(-DCMAKE_BUILD_TYPE=Release -DCROWDLOSS_WERROR=ON -DCROWDLOSS_BUILD_TESTS=ON -DCROWDLOSS_BUILD_EXAMPLES=ON
          -DCROWDLOSS_BUILD_BENCHMARKS=ON)
if [ ! -f "$build/CMakeCache.txt" ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$root" -B "$build" "${generator[@]}" "${settings[@]}" >&2
elif grep -Eq '^CROWDLOSS_BUILD_(TESTS|EXAMPLES|BENCHMARKS):BOOL=OFF$' "$build/CMakeCache.txt"; then
  cmake -S "$root" -B "$build" "${settings[@]}" >&2
fi
echo "$build"
