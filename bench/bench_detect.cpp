// Detection post-processing: nms and batched_nms on dense, heavily overlapping boxes as a
// detector emits them before NMS (20–60 px boxes over a 400×400 image, uniform scores,
// threshold 0.5). Single-threaded, like torchvision's CPU kernel. Where CUDA is available, the
// same cases on the GPU: `BM_nms_cuda` by the ATen path, `BM_nms_kernels_cuda` by crowdloss's
// CUDA kernels (cuda_kernels.hpp), each iteration ending in a device synchronisation.
//
// `bench_detect --dump-boxes=DIR` writes each case's boxes (raw, row-major N×4, in the case's
// dtype), scores, classes (int64) and crowdloss's kept indices (int64) to DIR as
// `<name>_<n>_<classes>_<dtype>.{boxes,scores,classes,keep}` and exits, for
// bench/nms_vs_torchvision.py to time torchvision on the very same boxes.
#include <crowdloss/crowdloss.hpp>

#include "single_thread_main.hpp"

#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <fstream>
#include <string>

namespace {

struct Boxes {
  at::Tensor boxes, scores, classes;
};

// n boxes of `dtype` with uniform scores and `classes` classes (1: plain nms).
Boxes dense_boxes(int64_t n, int64_t classes, at::ScalarType dtype) {
  torch::manual_seed(0);
  const auto xy = torch::rand({n, 2}, dtype) * 400, wh = torch::rand({n, 2}, dtype) * 40 + 20;
  return {torch::cat({xy, xy + wh}, 1), torch::rand({n}, dtype), torch::randint(0, classes, {n}, torch::kLong)};
}

at::ScalarType dtype_of(int64_t bits) { return bits == 64 ? torch::kFloat64 : torch::kFloat32; }

constexpr double kThreshold = 0.5;

at::Tensor run(const Boxes& b, int64_t classes) {
  return classes == 1 ? crowdloss::nms(b.boxes, b.scores, kThreshold)
                      : crowdloss::batched_nms(b.boxes, b.scores, b.classes, kThreshold);
}

// A case's label: its arguments (boxes, classes, bits of the dtype) and the boxes kept.
std::string label(const benchmark::State& state, int64_t kept) {
  const int64_t classes = state.range(1);
  return std::to_string(state.range(0)) + " boxes, " + std::to_string(classes) +
         (classes == 1 ? " class, " : " classes, ") + "float" + std::to_string(state.range(2)) + ", " +
         std::to_string(kept) + " kept";
}

// Args: boxes, classes, bits of the dtype.
void BM_nms(benchmark::State& state) {
  const int64_t n = state.range(0), classes = state.range(1);
  const auto b = dense_boxes(n, classes, dtype_of(state.range(2)));
  int64_t kept = 0;
  for (auto _ : state) kept = run(b, classes).numel();
  state.SetLabel(label(state, kept));
}

// The cases: boxes, classes, bits of the dtype.
const int64_t kCases[][3] = {{1000, 1, 32}, {5000, 1, 32},  {20000, 1, 32},  {1000, 1, 64},
                             {5000, 1, 64}, {20000, 1, 64}, {20000, 80, 32}, {20000, 5000, 32}};

void register_cpu() {
  auto* b = benchmark::RegisterBenchmark("BM_nms", BM_nms)->Unit(benchmark::kMillisecond);
  for (const auto& c : kCases) b->Args({c[0], c[1], c[2]});
}

// Every case on the GPU, through the ATen path or (`kernels`) crowdloss's CUDA kernels.
void register_cuda() {
  if (!torch::cuda::is_available()) return;
  for (const bool kernels : {false, true}) {
    auto* b = benchmark::RegisterBenchmark(kernels ? "BM_nms_kernels_cuda" : "BM_nms_cuda",
                                           [kernels](benchmark::State& state) {
                                             const int64_t n = state.range(0), classes = state.range(1);
                                             const auto host = dense_boxes(n, classes, dtype_of(state.range(2)));
                                             const Boxes b{host.boxes.cuda(), host.scores.cuda(), host.classes.cuda()};
                                             const bool before = crowdloss::set_cuda_kernels_enabled(kernels);
                                             int64_t kept = 0;
                                             for (auto _ : state) {
                                               kept = run(b, classes).numel();
                                               torch::cuda::synchronize();
                                             }
                                             crowdloss::set_cuda_kernels_enabled(before);
                                             state.SetLabel(label(state, kept));
                                           });
    b->Unit(benchmark::kMillisecond)->UseRealTime();
    for (const auto& c : kCases) b->Args({c[0], c[1], c[2]});
  }
}

void write_raw(const std::string& path, const at::Tensor& t) {
  const auto c = t.contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
}

// Every case of BM_nms, and crowdloss's kept indices.
void dump_boxes(const std::string& dir) {
  for (const auto& c : kCases) {
    const auto b = dense_boxes(c[0], c[1], dtype_of(c[2]));
    const auto stem = dir + "/nms_" + std::to_string(c[0]) + "_" + std::to_string(c[1]) + "_f" + std::to_string(c[2]);
    write_raw(stem + ".boxes", b.boxes);
    write_raw(stem + ".scores", b.scores);
    write_raw(stem + ".classes", b.classes);
    write_raw(stem + ".keep", run(b, c[1]));
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_cpu();
  register_cuda();
  return single_thread_main(argc, argv, "--dump-boxes=", dump_boxes);
}
