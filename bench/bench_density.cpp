// Density-map losses, forward + backward, beside torch::mse_loss as the baseline, on
// B×1×S×S float32 maps (B = 8, S = 128 and 512 on the CPU; 128 to 2048 on a GPU). CPU runs are
// single-threaded by default so that ratios are comparable across machines (pass --threads=N
// first to change it); where CUDA is available the same cases also run on the GPU, timed with a
// device synchronisation, and `…_kernels/cuda` runs PML, SSIM and the SANet loss through
// crowdloss's own CUDA kernels (cuda_kernels.hpp) beside their ATen paths, and `…_bf16…/cuda` the
// same on bfloat16 maps (`mse_loss`, the PML and SANet training objectives); the context then
// records the card's device-to-device copy bandwidth (`copy_bandwidth_GB_per_s`), which
// `GB_per_s` is to be compared with. Each case also reports the peak memory its forward +
// backward allocates beyond the inputs (`extra_MiB`, and `extra_x_input` as a multiple of pred +
// target): on the CPU counted by an allocator that wraps LibTorch's CPU allocator for one untimed
// run, on CUDA from the caching allocator's peak statistics (where the build sees CUDA's headers).
//
// Freed memory stays in the process (glibc's mmap and trim thresholds raised), as a caching
// allocator keeps it: with glibc's defaults the heap top may be trimmed (brk) when an iteration
// frees its tensors and grown again by the next, which then page-faults its multi-MiB outputs in
// again; whether a run falls into that depends on its heap layout, and on a VM it costs as much
// as the losses themselves. `--return-memory` (first or after --threads) keeps glibc's defaults.
#include <crowdloss/crowdloss.hpp>

#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define CROWDLOSS_BENCH_CUDA_MEMORY 1
#endif

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

using LossFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

/// An at::Allocator written once for every LibTorch: subclasses implement `allocate_bytes`.
/// (`allocate` is const up to 2.2 and not from 2.3 on, where `copy_data` also became required.)
struct AllocatorAdapter : at::Allocator {
  virtual at::DataPtr allocate_bytes(size_t n) const = 0;
#if CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 3)
  at::DataPtr allocate(size_t n) override { return allocate_bytes(n); }
  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }
#else
  at::DataPtr allocate(size_t n) const override { return allocate_bytes(n); }
#endif
};

/// Wraps LibTorch's CPU allocator while it lives, counting the bytes in use and their peak. Its
/// data pointers are their own context (the bookkeeping is in a table keyed by them), as
/// `raw_allocate` requires: some CPU kernels (e.g. convolutions on small maps) take their
/// buffers that way.
class CountingAllocator final : public AllocatorAdapter {
 public:
  CountingAllocator() : base_(c10::GetAllocator(at::kCPU)) {
    table().active = this;
    c10::SetAllocator(at::kCPU, this, kPriority);
  }
  ~CountingAllocator() override {
    c10::SetAllocator(at::kCPU, base_, kPriority);
    std::lock_guard<std::mutex> lock(table().mutex);
    table().active = nullptr;
  }
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;

  at::DataPtr allocate_bytes(size_t n) const override {
    at::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    std::lock_guard<std::mutex> lock(table().mutex);
    live_ += n;
    peak_ = std::max(peak_, live_);
    table().blocks[data] = {std::move(inner), n};
    return {data, data, &release, at::Device(at::kCPU)};
  }
  at::DeleterFnPtr raw_deleter() const override { return &release; }
  /// The most bytes in use at once since the last call, beyond those in use at that call.
  size_t take_peak() const {
    std::lock_guard<std::mutex> lock(table().mutex);
    const size_t extra = peak_ - start_;
    start_ = peak_ = live_;
    return extra;
  }

 private:
  static constexpr uint8_t kPriority = 200;
  struct Block {
    at::DataPtr inner;
    size_t bytes;
  };
  /// Every block allocated through a CountingAllocator, until freed (possibly after it is gone).
  struct Table {
    std::mutex mutex;
    std::unordered_map<void*, Block> blocks;
    const CountingAllocator* active = nullptr;
  };
  static Table& table() {
    static Table t;
    return t;
  }
  static void release(void* data) {
    Block block;
    {
      std::lock_guard<std::mutex> lock(table().mutex);
      auto it = table().blocks.find(data);
      if (it == table().blocks.end()) {  // raw-allocated before this allocator was installed
        c10::GetDefaultCPUAllocator()->raw_deallocate(data);
        return;
      }
      block = std::move(it->second);
      table().blocks.erase(it);
      if (table().active != nullptr) table().active->live_ -= block.bytes;
    }
  }  // block.inner frees the memory here, outside the lock
  at::Allocator* base_;
  mutable size_t live_ = 0, peak_ = 0, start_ = 0;
};

void forward_backward(benchmark::State& state, const LossFn& loss, at::Device device,
                      at::ScalarType dtype = at::kFloat) {
  const int64_t side = state.range(0);
  torch::manual_seed(0);
  const auto target32 = torch::rand({8, 1, side, side}).to(device);
  const auto target = target32.to(dtype);
  auto pred = (target32 + 0.1 * torch::randn({8, 1, side, side}).to(device)).to(dtype).requires_grad_(true);
  double seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    pred.mutable_grad() = at::Tensor();
    loss(pred, target).backward();
    if (device.is_cuda()) torch::cuda::synchronize();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(elapsed);
    seconds += elapsed;
  }
  state.SetItemsProcessed(state.iterations() * pred.numel());
  // The least memory traffic any forward + backward needs (pred and target read, the gradient
  // written: three maps) over the measured time; its ratio to the memory's bandwidth is the
  // fraction of the bandwidth achieved.
  const double least_bytes = 3.0 * static_cast<double>(pred.nbytes());
  state.counters["GB_per_s"] = least_bytes * static_cast<double>(state.iterations()) / seconds / 1e9;
  state.SetLabel("8x1x" + std::to_string(side) + "x" + std::to_string(side));
  pred.mutable_grad() = at::Tensor();
  double extra = -1;
  if (device.is_cpu()) {
    const CountingAllocator counting;
    counting.take_peak();
    loss(pred, target).backward();
    extra = static_cast<double>(counting.take_peak());
  } else {
#if CROWDLOSS_BENCH_CUDA_MEMORY
    namespace allocator = c10::cuda::CUDACachingAllocator;
    torch::cuda::synchronize();
    const auto index = static_cast<c10::DeviceIndex>(device.index() < 0 ? 0 : device.index());
    allocator::resetPeakStats(index);
    constexpr size_t aggregate = 0;  // StatType::AGGREGATE, whichever namespace this LibTorch puts it in
    const auto before = allocator::getDeviceStats(index).allocated_bytes[aggregate].current;
    loss(pred, target).backward();
    torch::cuda::synchronize();
    extra = static_cast<double>(allocator::getDeviceStats(index).allocated_bytes[aggregate].peak - before);
#endif
  }
  pred.mutable_grad() = at::Tensor();
  if (extra >= 0) {
    state.counters["extra_MiB"] = extra / (1 << 20);
    state.counters["extra_x_input"] = extra / static_cast<double>(pred.nbytes() + target.nbytes());
  }
}

/// A loss run with crowdloss's CUDA kernels switched on (cuda_kernels.hpp), as a loss.
LossFn with_cuda_kernels(LossFn fn) {
  return [fn = std::move(fn)](const at::Tensor& p, const at::Tensor& t) {
    const bool before = crowdloss::set_cuda_kernels_enabled(true);
    auto loss = fn(p, t);
    crowdloss::set_cuda_kernels_enabled(before);
    return loss;  // its backward runs the kernels the forward chose
  };
}

/// What a device-to-device copy of 1 GiB moves per second on `device` (read + write), the
/// bandwidth the CUDA cases' GB_per_s is measured against.
double copy_bandwidth_GB_per_s(at::Device device) {
  const auto src = torch::empty({int64_t{1} << 28}, torch::TensorOptions(torch::kFloat32).device(device));
  auto dst = torch::empty_like(src);
  for (int i = 0; i < 3; ++i) dst.copy_(src);
  torch::cuda::synchronize();
  constexpr int repeats = 20;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) dst.copy_(src);
  torch::cuda::synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * static_cast<double>(src.nbytes()) * repeats / seconds / 1e9;
}

void register_all() {
  const auto pml_full = crowdloss::PMLLossOptions().pixel_mse_weight(1.0);
  const auto pml_reference = crowdloss::PMLLossOptions().reference_order(true);
  const auto ms_ssim_opts = crowdloss::MSSSIMOptions().drop_levels(true);  // 128²: four levels
  const std::vector<std::pair<std::string, LossFn>> losses = {
      {"mse_loss", [](const at::Tensor& p, const at::Tensor& t) { return at::mse_loss(p, t); }},
      {"pml_loss", [](const at::Tensor& p, const at::Tensor& t) { return crowdloss::pml_loss(p, t); }},
      {"pml_loss_reference_order",
       [pml_reference](const at::Tensor& p, const at::Tensor& t) { return crowdloss::pml_loss(p, t, pml_reference); }},
      {"pml_loss_with_pixel_mse",
       [pml_full](const at::Tensor& p, const at::Tensor& t) { return crowdloss::pml_loss(p, t, pml_full); }},
      {"ssim", [](const at::Tensor& p, const at::Tensor& t) { return crowdloss::ssim(p, t); }},
      {"sanet_loss", [](const at::Tensor& p, const at::Tensor& t) { return crowdloss::sanet_loss(p, t); }},
      {"ms_ssim",
       [ms_ssim_opts](const at::Tensor& p, const at::Tensor& t) { return crowdloss::ms_ssim(p, t, ms_ssim_opts); }},
  };
  const auto add = [](const std::string& name, const LossFn& fn, at::Device device, at::ScalarType dtype = at::kFloat) {
    auto* b = benchmark::RegisterBenchmark(
        (name + "/" + (device.is_cuda() ? "cuda" : "cpu")).c_str(),
        [fn, device, dtype](benchmark::State& s) { forward_backward(s, fn, device, dtype); });
    b->Arg(128)->Arg(512)->UseManualTime()->Unit(benchmark::kMicrosecond);
    if (device.is_cuda()) b->Arg(1024)->Arg(2048);
  };
  for (const auto& [name, fn] : losses) add(name, fn, at::kCPU);
  if (!torch::cuda::is_available()) return;
  for (const auto& [name, fn] : losses) add(name, fn, at::kCUDA);
  for (const auto& [name, fn] : losses)
    if (name == "pml_loss" || name == "pml_loss_with_pixel_mse" || name == "ssim" || name == "sanet_loss")
      add(name + "_kernels", with_cuda_kernels(fn), at::kCUDA);
  // bfloat16 maps (what a bf16 model hands the loss): the baseline, the ATen paths (which convert
  // to float32) and the kernels (which read them as they are).
  for (const auto& [name, fn] : losses) {
    if (name == "mse_loss") add(name + "_bf16", fn, at::kCUDA, at::kBFloat16);
    if (name != "pml_loss_with_pixel_mse" && name != "sanet_loss") continue;
    add(name + "_bf16", fn, at::kCUDA, at::kBFloat16);
    add(name + "_bf16_kernels", with_cuda_kernels(fn), at::kCUDA, at::kBFloat16);
  }
}

// A point-supervised loss, forward + backward, on 8×1×S×S maps at stride 8 (crops of 8S pixels)
// with 200 heads per image (float32), made on the CPU and moved to `device` (a GPU run is timed
// with a device synchronisation).
using PointLossFn = std::function<at::Tensor(const at::Tensor&, const std::vector<at::Tensor>&)>;
void point_loss_forward_backward(benchmark::State& state, const PointLossFn& loss, at::Device device = at::kCPU) {
  const int64_t side = state.range(0);
  torch::manual_seed(0);
  auto pred = torch::rand({8, 1, side, side}).to(device).requires_grad_(true);
  std::vector<at::Tensor> heads;
  for (int i = 0; i < 8; ++i) heads.push_back((torch::rand({200, 2}) * static_cast<double>(8 * side)).to(device));
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    pred.mutable_grad() = at::Tensor();
    loss(pred, heads).backward();
    if (device.is_cuda()) torch::cuda::synchronize();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.SetItemsProcessed(state.iterations() * pred.numel());
  state.SetLabel("8x1x" + std::to_string(side) + "x" + std::to_string(side) + ", 200 heads per image");
}

// The Bayesian loss with its background term.
void BM_bayesian_loss(benchmark::State& state) {
  point_loss_forward_backward(
      state, [](const at::Tensor& p, const std::vector<at::Tensor>& h) { return crowdloss::bayesian_loss(p, h); });
}
BENCHMARK(BM_bayesian_loss)->Arg(64)->Arg(128)->UseManualTime()->Unit(benchmark::kMillisecond);

// DM-Count's loss: count + OT through up to 100 Sinkhorn iterations + TV.
void BM_dm_count_loss(benchmark::State& state) {
  point_loss_forward_backward(
      state, [](const at::Tensor& p, const std::vector<at::Tensor>& h) { return crowdloss::dm_count_loss(p, h); });
}
BENCHMARK(BM_dm_count_loss)->Arg(64)->Arg(128)->UseManualTime()->Unit(benchmark::kMillisecond);

// Both point losses on a GPU, where one is available.
void register_point_losses_cuda() {
  if (!torch::cuda::is_available()) return;
  const std::vector<std::pair<std::string, PointLossFn>> losses = {
      {"BM_bayesian_loss_cuda",
       [](const at::Tensor& p, const std::vector<at::Tensor>& h) { return crowdloss::bayesian_loss(p, h); }},
      {"BM_dm_count_loss_cuda",
       [](const at::Tensor& p, const std::vector<at::Tensor>& h) { return crowdloss::dm_count_loss(p, h); }}};
  for (const auto& [name, fn] : losses)
    benchmark::RegisterBenchmark(name.c_str(),
                                 [fn = fn](benchmark::State& s) { point_loss_forward_backward(s, fn, at::kCUDA); })
        ->Arg(64)
        ->Arg(128)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

// Ground-truth maps: N uniformly scattered points on a 768×1024 map, adaptive kernels (CPU).
void BM_points_to_density_adaptive(benchmark::State& state) {
  torch::manual_seed(0);
  const auto points =
      torch::rand({state.range(0), 2}, torch::kFloat64) * torch::tensor({1024.0, 768.0}, torch::kFloat64);
  const auto opts = crowdloss::PointsToDensityOptions().adaptive(true);
  for (auto _ : state) benchmark::DoNotOptimize(crowdloss::points_to_density(points, 768, 1024, opts).data_ptr());
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel("768x1024");
}
BENCHMARK(BM_points_to_density_adaptive)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// The same ground truth for a batch of 8 such maps on a GPU (points_to_density_batch, one call;
// fixed σ 4 and adaptive kernels), where one is available: what a training step would pay to
// render its targets on the device instead of on the CPU, image by image.
void register_density_batch_cuda() {
  if (!torch::cuda::is_available()) return;
  for (const bool adaptive : {false, true}) {
    const std::string name = std::string("BM_points_to_density_batch_") + (adaptive ? "adaptive" : "fixed") + "_cuda";
    benchmark::RegisterBenchmark(
        name.c_str(),
        [adaptive](benchmark::State& state) {
          torch::manual_seed(0);
          std::vector<at::Tensor> points;
          for (int b = 0; b < 8; ++b)
            points.push_back(
                (torch::rand({state.range(0), 2}, torch::kFloat64) * torch::tensor({1024.0, 768.0}, torch::kFloat64))
                    .cuda());
          auto opts = crowdloss::PointsToDensityOptions().adaptive(adaptive);
          if (!adaptive) opts.sigma(4.0);
          for (auto _ : state) {
            const auto start = std::chrono::steady_clock::now();
            const auto maps = crowdloss::points_to_density_batch(points, 768, 1024, opts);
            torch::cuda::synchronize();
            state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
          }
          state.SetItemsProcessed(state.iterations() * 8 * state.range(0));
          state.SetLabel("8 maps of 768x1024");
        })
        ->Arg(1000)
        ->Arg(10000)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags come first; Google Benchmark parses the rest. A flag ending in '=' takes the
  // rest of its argument as its value; others must match whole.
  const auto take_flag = [&](const char* flag) -> const char* {
    const size_t length = std::strlen(flag);
    const bool valued = length > 0 && flag[length - 1] == '=';
    if (argc < 2 || std::strncmp(argv[1], flag, length) != 0 || (!valued && argv[1][length] != '\0')) return nullptr;
    const char* value = argv[1] + length;
    argv[1] = argv[0];
    ++argv;
    --argc;
    return value;
  };
  int threads = 1;
  if (const char* value = take_flag("--threads=")) threads = std::stoi(value);
  const bool return_memory = take_flag("--return-memory") != nullptr;
  std::string freed_memory = "allocator default";
  static_cast<void>(return_memory);  // glibc only
#if defined(__GLIBC__)
  if (return_memory)
    freed_memory = "returned to the system (glibc default)";
  else if (mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1)
    freed_memory = "kept in the process";
#endif
  benchmark::AddCustomContext("freed_memory", freed_memory);
  at::set_num_threads(threads);
  benchmark::AddCustomContext("torch_threads", std::to_string(threads));
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  benchmark::AddCustomContext("cuda", torch::cuda::is_available() ? "available" : "not available");
  if (torch::cuda::is_available())
    benchmark::AddCustomContext("copy_bandwidth_GB_per_s", std::to_string(copy_bandwidth_GB_per_s(at::kCUDA)));
  register_all();
  register_point_losses_cuda();
  register_density_batch_cuda();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
