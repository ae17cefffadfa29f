#!/usr/bin/env bash
# README command 2: install what is missing, build everything (library tests, examples,
# benchmarks) and run the whole test suite through ctest, whose summary line ends the output.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$("$root/scripts/configure.sh" | tail -n 1)
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
