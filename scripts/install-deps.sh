#!/usr/bin/env bash
# Installs the Debian packages crowdloss needs that are not installed yet (idempotent: asks apt
# for nothing when everything is present). Debian 12; run as root, or with sudo available.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  libtorch-dev libeigen3-dev                     # the library's dependencies
  doctest-dev nlohmann-json3-dev                 # tests
  libbenchmark-dev                               # benchmarks
  libstb-dev libcli11-dev libmatio-dev           # examples: images, command lines, .mat annotations
  libgloo-dev                                    # examples: data-parallel training (c10d's Gloo)
  doxygen                                        # API reference (target crowdloss_docs, test api_docs)
  clang libclang-rt-14-dev                       # ASan/UBSan build and libFuzzer (test sanitizers)
  clang-format                                   # the sources' layout (test format)
  python3-scipy                                  # linear_sum_assignment against SciPy (test lsa.scipy)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "crowdloss: all ${#packages[@]} Debian packages already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "crowdloss: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "crowdloss: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "crowdloss: installed ${#missing[@]} package(s)"
