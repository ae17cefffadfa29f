#!/usr/bin/env bash
# Shared by demo.sh and test.sh: installs what is missing and configures the build tree
# (default <repo>/build, or $CROWDLOSS_BUILD_DIR), Release, warnings as errors.
# Prints the build directory on its last line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CROWDLOSS_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh" >&2
if [ ! -f "$build/CMakeCache.txt" ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCROWDLOSS_WERROR=ON >&2
fi
echo "$build"
