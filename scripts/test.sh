#!/usr/bin/env bash
# README command 2: install what is missing, build everything (library tests, examples,
# benchmarks) and run the whole test suite through ctest, whose summary line ends the output.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$("$root/scripts/configure.sh" | tail -n 1)
cmake --build "$build" -j "$(nproc)"
cd "$build"
# Tests run in parallel, each with LibTorch's OpenMP pool: waiting threads sleep instead of
# spinning on the cores the other tests need (results are unaffected). Measured 2026-12-08: beside
# the sanitizer build, the counting demo's first eight epochs took 30-67 s (six of them 57-67)
# with libgomp's default policy and 26-36 s with this one; alone they take 18 s with this one
# and 11-12 s with the default.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --output-on-failure -j "$(nproc)" "$@"
