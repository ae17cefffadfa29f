#!/usr/bin/env bash
# The GPU build path: configure, build and test crowdloss against the CUDA LibTorch inside a
# machine's Python torch (2.x), where no Debian -dev package can be installed, and produce the GPU
# proof files that docs/ commit.
#
#   scripts/gpu.sh stage   on a Debian 12 machine with apt: downloads the header/library packages
#                          the build needs into .device-deps/ (git-ignored) with an activate.sh.
#   scripts/gpu.sh run     on the GPU machine, from the repo root with .device-deps/ copied along:
#                          the whole verification and measurement of issue 18 in one command
#                          (about 7 minutes on 16 cores): unpacks the packages, builds into
#                          build-gpu/, runs ctest (without the slow and demo tests), the CUDA test
#                          cases again with crowdloss's CUDA kernels switched on, bench_density's
#                          and bench_detect's CUDA cases and bench/density_reference.py.
#   scripts/gpu.sh build   only the configure and build steps of `run`.
#   scripts/gpu.sh proof [bench] [demos]
#                          after `build`: the training-throughput benches (bare step vs trainer)
#                          and bench_assign's CUDA cases, then both GPU demos (`demo --device
#                          cuda`), written as the files docs/data/ commits (default: both parts):
#                          train_throughput_cuda.json, bench_assign_cuda.json,
#                          demo_count_cuda.json, demo_detect_cuda.json, and each demo's results.md.
# Everything is logged under build-gpu/logs; where $OUT is set (the device tool's folder, which
# returns at most 8 files), the files docs/ commit are copied there and the rest is packed into
# $OUT/logs.tar.gz.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

stage() {
  local pkgs=(libeigen3-dev doctest-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libstb-dev libstb0
              libcli11-dev libfmt-dev libfmt9)
  rm -rf .device-deps && mkdir -p .device-deps
  (cd .device-deps && apt-get download "${pkgs[@]}" >/dev/null 2>&1) ||
    { apt-get update -qq && (cd .device-deps && apt-get download "${pkgs[@]}"); }
  cat > .device-deps/activate.sh <<'ACT'
# Sourced on the GPU machine from the repo root: unpack the staged packages under /opt/deps and
# point CMake at them and at the CUDA LibTorch inside Python torch. The environment variable
# CMAKE_PREFIX_PATH is ':'-separated on Linux (';' only inside a -D option).
mkdir -p /opt/deps
for f in .device-deps/*.deb; do dpkg -x "$f" /opt/deps; done
export PATH=/usr/local/cuda/bin:$PATH
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export CMAKE_PREFIX_PATH="$TORCH_PREFIX:/opt/deps/usr"
export LD_LIBRARY_PATH="/opt/deps/usr/lib/x86_64-linux-gnu:$TORCH_LIB:${LD_LIBRARY_PATH:-}"
ACT
  du -sh .device-deps
  echo "staged: ${pkgs[*]}; copy .device-deps/ to the GPU machine and run scripts/gpu.sh run"
}

logs=$root/build-gpu/logs

# Copies `files` (names under $logs) to $OUT and packs the rest of $logs into $OUT/logs.tar.gz.
deliver() {
  [ -n "${OUT:-}" ] || return 0
  local f
  for f in "$@"; do [ -f "$logs/$f" ] && cp "$logs/$f" "$OUT/"; done
  tar -czf "$OUT/logs.tar.gz" -C "$logs" .
}

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
  # One object per test file: on 16 cores that builds sooner than the few unity groups, and it is
  # the layout last verified there with GCC 13 and -Werror.
  cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCROWDLOSS_WERROR=ON -DCROWDLOSS_UNITY_TESTS=OFF \
    2>&1 | tee "$logs/configure.log"
  # The tests and programs must build; the benchmarks are built after them, so that a benchmark
  # that does not compile here still leaves the tests to run.
  local targets=(crowdloss_tests crowdloss-count crowdloss-detect)
  cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" 2>&1 | tee "$logs/build.log"
  cmake --build build-gpu -j "$(nproc)" 2>&1 | tee -a "$logs/build.log" ||
    echo "gpu.sh: the full build failed (see build.log); the tests run anyway" | tee -a "$logs/build.log"
}

run() {
  local start=$SECONDS
  build
  echo "build: $((SECONDS - start)) s" | tee "$logs/timing.txt"
  (cd build-gpu && ctest -LE "slow|demo" -j "$(nproc)" --timeout 600 --output-on-failure 2>&1) | tee "$logs/ctest.log" || true
  echo "ctest: $((SECONDS - start)) s" | tee -a "$logs/timing.txt"
  # Every CUDA test case of the library again, with crowdloss's CUDA kernels on, each launch
  # synchronised so that a fault names the kernel that caused it.
  CROWDLOSS_CUDA_KERNELS=1 CROWDLOSS_CUDA_SYNC=1 build-gpu/tests/crowdloss_tests -tc='*CUDA*' 2>&1 |
    tee "$logs/cuda-kernels-tests.log" || true
  echo "kernel tests: $((SECONDS - start)) s" | tee -a "$logs/timing.txt"
  if [ -x build-gpu/bench/bench_density ]; then
    # Every GPU case: the density losses' …/cuda, the point losses' and the batched ground truth's …_cuda.
    build-gpu/bench/bench_density --benchmark_filter=cuda --benchmark_min_time=0.3 \
      --benchmark_out="$logs/bench_density_cuda.json" --benchmark_out_format=json 2>&1 | tee "$logs/bench_density_cuda.txt" || true
    cmake -DOUT="$logs/results.md" -P bench/to_markdown.cmake "$logs/bench_density_cuda.json" || true
  fi
  echo "bench_density: $((SECONDS - start)) s" | tee -a "$logs/timing.txt"
  if [ -x build-gpu/bench/bench_detect ]; then
    # NMS on the GPU (issue 16): the ATen path (BM_nms_cuda) beside the CUDA kernels (BM_nms_kernels_cuda).
    build-gpu/bench/bench_detect --benchmark_filter=cuda --benchmark_min_time=0.3 \
      --benchmark_out="$logs/bench_detect_cuda.json" --benchmark_out_format=json 2>&1 | tee "$logs/bench_detect_cuda.txt" || true
  fi
  echo "bench_detect: $((SECONDS - start)) s" | tee -a "$logs/timing.txt"
  python3 bench/density_reference.py "$logs/density_reference_cuda.json" --min-time 0.3 2>&1 |
    tee "$logs/density_reference_cuda.txt" || true
  echo "density_reference: $((SECONDS - start)) s" | tee -a "$logs/timing.txt"
  deliver bench_density_cuda.json density_reference_cuda.json bench_detect_cuda.json results.md ctest.log \
    cuda-kernels-tests.log timing.txt
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
  deliver train_throughput_cuda.json bench_assign_cuda.json demo_count_cuda.json demo_detect_cuda.json \
    count-demo-cuda.md detect-demo-cuda.md
}

case "${1:-}" in
  stage) stage ;;
  build) build ;;
  run) run ;;
  proof) shift; proof "$@" ;;
  *) echo "usage: scripts/gpu.sh stage|build|run|proof [bench] [demos]" >&2; exit 2 ;;
esac
