// Label assignment: linear_sum_assignment on dense random matrices and on POTO-shaped quality
// matrices (G gts × 20,000 anchors, quality −1 outside each gt's box prior, maximised).
// Also the four assigners on a batch of 8 images, on the CPU and (where present) CUDA.
// Single-threaded on the CPU.
//
// `bench_assign --dump-matrices=DIR` writes the linear-sum-assignment matrices (raw float64,
// row-major, `<name>_<rows>x<cols>.f64`) and crowdloss's column for each row (`.cols.i64`) to DIR
// and exits, for bench/lsa_vs_scipy.py to time SciPy on the very same matrices.
#include <crowdloss/crowdloss.hpp>

#include "single_thread_main.hpp"

#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <array>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

at::Tensor dense_cost(int64_t n) {
  torch::manual_seed(0);
  return torch::rand({n, n}, torch::kFloat64);
}

void BM_lsap_dense(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto cost = dense_cost(n);
  for (auto _ : state) benchmark::DoNotOptimize(std::get<1>(crowdloss::linear_sum_assignment(cost)).data_ptr());
  state.SetLabel(std::to_string(n) + "x" + std::to_string(n) + " uniform float64");
}

// A POTO-like quality matrix: anchor points scattered over a 1333×800 image, gt boxes of 16 to
// 160 pixels; quality in (0, 1) where the point lies inside the box, −1 elsewhere.
at::Tensor poto_shaped_quality(int64_t gts, int64_t anchors) {
  torch::manual_seed(1);
  const auto points = torch::rand({anchors, 2}, torch::kFloat64) * torch::tensor({1333.0, 800.0}, torch::kFloat64);
  const auto centre = torch::rand({gts, 2}, torch::kFloat64) * torch::tensor({1333.0, 800.0}, torch::kFloat64);
  const auto half = 8 + torch::rand({gts, 2}, torch::kFloat64) * 72;
  const auto boxes = torch::cat({centre - half, centre + half}, 1);
  const auto x = points.select(1, 0).unsqueeze(0), y = points.select(1, 1).unsqueeze(0);
  const auto inside = (x > boxes.select(1, 0).unsqueeze(1)) & (x < boxes.select(1, 2).unsqueeze(1)) &
                      (y > boxes.select(1, 1).unsqueeze(1)) & (y < boxes.select(1, 3).unsqueeze(1));
  return torch::where(inside, torch::rand({gts, anchors}, torch::kFloat64), torch::full({}, -1.0, torch::kFloat64));
}

void BM_lsap_poto_shaped(benchmark::State& state) {
  const int64_t gts = state.range(0), anchors = state.range(1);
  const auto quality = poto_shaped_quality(gts, anchors);
  for (auto _ : state)
    benchmark::DoNotOptimize(std::get<1>(crowdloss::linear_sum_assignment(quality, /*maximize=*/true)).data_ptr());
  state.SetLabel(std::to_string(gts) + "x" + std::to_string(anchors) + " quality, -1 outside box priors");
}

// A batch of 8 images, each with `gts` gt boxes and 20,000 anchors on 5 FPN levels (K = 1), on
// `device`: each assigner's batched form on the whole batch, as a training step runs it (on the
// CPU one image at a time for POTO and LLA, whose CPU kernels work per image; on CUDA in one
// pass over the batch). CUDA cases are registered where a GPU is present; their timings wait for
// the device after each batch.
struct DetectionBatch {
  at::Tensor logits, ltrb, points;
  std::vector<at::Tensor> boxes, classes;
  std::vector<int64_t> level_sizes;
  std::vector<double> strides{8, 16, 32, 64, 128};
};

DetectionBatch detection_batch(int64_t gts, const at::Device& device) {
  torch::manual_seed(2);
  DetectionBatch b;
  // 5 levels, 20,000 anchors in all: 120×125 (stride 8), 60×62, 30×31, 15×16, 8×8.
  const std::vector<std::array<int64_t, 2>> hw = {{120, 125}, {60, 62}, {30, 31}, {15, 16}, {8, 8}};
  b.points = crowdloss::anchor_points(hw, b.strides).to(device);
  for (const auto& [h, w] : hw) b.level_sizes.push_back(h * w);
  const int64_t A = b.points.size(0);
  std::vector<at::Tensor> logits, ltrb;
  for (int i = 0; i < 8; ++i) {
    logits.push_back(torch::randn({A, 1}) - 4);
    ltrb.push_back(torch::rand({A, 4}) * 60 + 4);
    const auto xy = torch::rand({gts, 2}) * torch::tensor({900.0, 900.0}), wh = torch::rand({gts, 2}) * 90 + 10;
    b.boxes.push_back(torch::cat({xy, xy + wh}, 1).to(device));
    b.classes.push_back(torch::zeros({gts}, torch::kLong).to(device));
  }
  b.logits = torch::stack(logits).to(device);
  b.ltrb = torch::stack(ltrb).to(device);
  return b;
}

using BatchAssigner = void (*)(const DetectionBatch&);

void poto_batch(const DetectionBatch& b) {
  const auto pred = crowdloss::ltrb_to_boxes(b.points, b.ltrb);
  benchmark::DoNotOptimize(
      crowdloss::poto_assign_batch(b.logits.sigmoid(), pred, b.points, b.boxes, b.classes).back().data_ptr());
}

void poto_aux_batch(const DetectionBatch& b) {
  const auto pred = crowdloss::ltrb_to_boxes(b.points, b.ltrb);
  benchmark::DoNotOptimize(
      crowdloss::poto_aux_assign_batch(b.logits.sigmoid(), pred, b.points, b.boxes, b.classes,
                                       crowdloss::POTOAuxAssignOptions().level_sizes(b.level_sizes))
          .data_ptr());
}

void lla_batch(const DetectionBatch& b) {
  benchmark::DoNotOptimize(crowdloss::lla_assign_batch(b.logits, b.ltrb, b.points, b.boxes, b.classes).data_ptr());
}

void fcos_batch(const DetectionBatch& b) {
  benchmark::DoNotOptimize(
      crowdloss::fcos_assign_batch(b.points, b.boxes,
                                   crowdloss::FCOSAssignOptions().strides(b.strides).level_sizes(b.level_sizes))
          .data_ptr());
}

void run_batch(benchmark::State& state, BatchAssigner assign, const at::Device& device) {
  const auto b = detection_batch(state.range(0), device);
  for (auto _ : state) {
    assign(b);
    if (device.is_cuda()) torch::cuda::synchronize();
  }
  state.SetLabel("8 images x " + std::to_string(state.range(0)) + " gts x " + std::to_string(b.points.size(0)) +
                 " anchors");
}

void register_batch_benchmarks() {
  const std::vector<std::pair<std::string, BatchAssigner>> assigners = {{"poto_assign_batch", poto_batch},
                                                                        {"lla_assign_batch", lla_batch},
                                                                        {"poto_aux_assign_batch", poto_aux_batch},
                                                                        {"fcos_assign_batch", fcos_batch}};
  std::vector<at::Device> devices = {at::kCPU};
  if (torch::cuda::is_available()) devices.emplace_back(at::kCUDA);
  for (const auto& device : devices)
    for (const auto& [name, assign] : assigners) {
      const std::string full = name + "/" + (device.is_cuda() ? "cuda" : "cpu");
      benchmark::RegisterBenchmark(full.c_str(),
                                   [assign = assign, device](benchmark::State& s) { run_batch(s, assign, device); })
          ->Arg(100)
          ->Unit(benchmark::kMillisecond);
    }
}

BENCHMARK(BM_lsap_dense)->Arg(100)->Arg(500)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsap_poto_shaped)->Args({50, 20000})->Args({300, 20000})->Unit(benchmark::kMillisecond);

void write_raw(const std::string& path, const at::Tensor& t) {
  const auto c = t.contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
}

// The matrices of BM_lsap_dense and BM_lsap_poto_shaped, and crowdloss's solutions.
void dump_matrices(const std::string& dir) {
  const auto dump = [&](const std::string& name, const at::Tensor& m, bool maximize) {
    const auto stem = dir + "/" + name + "_" + std::to_string(m.size(0)) + "x" + std::to_string(m.size(1));
    write_raw(stem + ".f64", m);
    write_raw(stem + ".cols.i64", std::get<1>(crowdloss::linear_sum_assignment(m, maximize)));
  };
  for (const int64_t n : {100, 500, 1000}) dump("dense", dense_cost(n), false);
  for (const int64_t g : {50, 300}) dump("poto", poto_shaped_quality(g, 20000), true);
}

}  // namespace

int main(int argc, char** argv) {
  register_batch_benchmarks();
  return single_thread_main(argc, argv, "--dump-matrices=", dump_matrices);
}
