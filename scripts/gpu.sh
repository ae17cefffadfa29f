#!/usr/bin/env bash
# The GPU build path: configure, build and test crowdloss against the CUDA LibTorch inside a
# machine's Python torch (2.x), where no Debian -dev package can be installed, and produce the GPU
# proof files that docs/ commit.
#
#   scripts/gpu.sh stage   on a Debian 12 machine with apt: downloads the header/library packages
#                          the build needs into .device-deps/ (git-ignored) with an activate.sh.
#   scripts/gpu.sh run     on the GPU machine, from the repo root with .device-deps/ copied along:
#                          unpacks them, builds into build-gpu/, runs ctest and the benchmarks.
#   scripts/gpu.sh build   only the configure and build steps of `run`.
#   scripts/gpu.sh proof [bench] [demos]
#                          after `build`: the training-throughput benches (bare step vs trainer)
#                          and bench_assign's CUDA cases, then both GPU demos (`demo --device
#                          cuda`), written as the files docs/data/ commits (default: both parts):
#                          train_throughput_cuda.json, bench_assign_cuda.json,
#                          demo_count_cuda.json, demo_detect_cuda.json, and each demo's results.md.
# Logs and results go to $OUT (if set) or build-gpu/logs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

stage() {
  local pkgs=(libeigen3-dev doctest-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libstb-dev libstb0
              libcli11-dev)
  rm -rf .device-deps && mkdir -p .device-deps
  (cd .device-deps && apt-get download "${pkgs[@]}" >/dev/null 2>&1) ||
    { apt-get update -qq && (cd .device-deps && apt-get download "${pkgs[@]}"); }
  cat > .device-deps/activate.sh <<'ACT'
# Sourced on the GPU machine from the repo root: unpack the staged packages under /opt/deps and
# point CMake at them and at the CUDA LibTorch inside Python torch.
mkdir -p /opt/deps
for f in .device-deps/*.deb; do dpkg -x "$f" /opt/deps; done
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export CMAKE_PREFIX_PATH="$TORCH_PREFIX;/opt/deps/usr;/opt/deps/usr/lib/x86_64-linux-gnu/cmake;/opt/deps/usr/share/cmake"
export LD_LIBRARY_PATH="/opt/deps/usr/lib/x86_64-linux-gnu:$TORCH_LIB:${LD_LIBRARY_PATH:-}"
ACT
  du -sh .device-deps
  echo "staged: ${pkgs[*]}; copy .device-deps/ to the GPU machine and run scripts/gpu.sh run"
}

logs=${OUT:-$root/build-gpu/logs}

activate() {
  [ -f .device-deps/activate.sh ] || { echo "no .device-deps/: run 'scripts/gpu.sh stage' first" >&2; exit 1; }
  # shellcheck disable=SC1091
  source .device-deps/activate.sh
  mkdir -p "$logs"
}

build() {
  activate
  python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' |
    tee "$logs/environment.txt"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$logs/environment.txt" 2>&1 || true
  # What the card's memory can move in practice (a 1 GiB device-to-device copy, CUDA events): the
  # bandwidth bench_density's GB_per_s is measured against.
  python3 - <<'PY' 2>&1 | tee -a "$logs/environment.txt" || true
import torch
x = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
y = torch.empty_like(x)
for _ in range(3):
    y.copy_(x)
start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    y.copy_(x)
stop.record()
torch.cuda.synchronize()
print(f"copy bandwidth {2 * x.nbytes * 20 / (start.elapsed_time(stop) / 1e3) / 1e9:.0f} GB/s (read + write)")
PY
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCROWDLOSS_WERROR=ON 2>&1 | tee "$logs/configure.log"
  cmake --build build-gpu -j "$(nproc)" 2>&1 | tee "$logs/build.log"
}

run() {
  build
  (cd build-gpu && ctest --output-on-failure 2>&1) | tee "$logs/ctest.log"
  for b in build-gpu/bench/bench_*; do
    "$b" --benchmark_min_time=0.5 --benchmark_out="$logs/$(basename "$b").json" --benchmark_out_format=json 2>&1 |
      tee "$logs/$(basename "$b").txt"
  done
  cmake -DOUT="$logs/results.md" -P bench/to_markdown.cmake "$logs"/bench_*.json
}

# Issue 19's proof on the GPU, from a build-gpu/ that `build` made.
proof() {
  activate
  local parts=("$@") count=build-gpu/examples/crowdloss-count detect=build-gpu/examples/crowdloss-detect
  [ ${#parts[@]} -gt 0 ] || parts=(bench demos)
  [ -x "$count" ] || { echo "no $count: run 'scripts/gpu.sh build' first" >&2; exit 1; }
  local work=build-gpu/proof
  mkdir -p "$work"
  for part in "${parts[@]}"; do
    case "$part" in
      bench)
        # Bare step vs trainer (issue 19, item 2's configurations), appended to one JSON list.
        local json="$logs/train_throughput_cuda.json" common=(--device cuda --workers 8 --steps 40 --warmup-steps 10)
        rm -f "$json"
        "$count" bench --recipe pml --width 1 --crop 512 --batch 8 --amp bf16 "${common[@]}" --out "$work/count-pml" --json "$json"
        "$count" bench --recipe sanet --crop 256 "${common[@]}" --out "$work/count-sanet" --json "$json"
        for assign in poto-3dmf-aux lla; do
          "$detect" bench --assign "$assign" --backbone resnet50 --longest-side 512 --batch 8 --amp bf16 "${common[@]}" \
            --out "$work/detect-$assign" --json "$json"
        done
        build-gpu/bench/bench_assign --benchmark_filter='_batch/cuda' --benchmark_repetitions=3 \
          --benchmark_out="$logs/bench_assign_cuda.json" --benchmark_out_format=json
        ;;
      demos)
        local name program
        for name in count detect; do
          program=build-gpu/examples/crowdloss-$name
          local start=$SECONDS
          "$program" demo --device cuda --out "$work/demo-$name"
          echo "$name demo: wall time $((SECONDS - start)) s"
          python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["rows"], indent=2))' \
            "$work/demo-$name/results.json" > "$logs/demo_${name}_cuda.json"
          cp "$work/demo-$name/results.md" "$logs/$name-demo-cuda.md"
        done
        ;;
      *) echo "unknown proof part '$part' (bench, demos)" >&2; exit 2 ;;
    esac
  done
}

case "${1:-}" in
  stage) stage ;;
  build) build ;;
  run) run ;;
  proof) shift; proof "$@" ;;
  *) echo "usage: scripts/gpu.sh stage|build|run|proof [bench] [demos]" >&2; exit 2 ;;
esac
