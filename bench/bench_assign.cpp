// Label assignment: linear_sum_assignment on dense random matrices and on POTO-shaped quality
// matrices (G gts × 20,000 anchors, quality −1 outside each gt's box prior, maximised).
// Also POTO and LLA for a batch of 8 images. Single-threaded.
//
// `bench_assign --dump-matrices=DIR` writes the linear-sum-assignment matrices (raw float64,
// row-major, `<name>_<rows>x<cols>.f64`) and crowdloss's column for each row (`.cols.i64`) to DIR
// and exits, for bench/lsa_vs_scipy.py to time SciPy on the very same matrices.
#include <crowdloss/crowdloss.hpp>

#include "single_thread_main.hpp"

#include <benchmark/benchmark.h>

#include <array>
#include <fstream>
#include <string>
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

// A batch of 8 images, each with `gts` gt boxes and 20,000 anchors on 5 FPN levels (K = 1):
// assignment of the whole batch, one image at a time, as a training step runs it.
struct DetectionBatch {
  std::vector<at::Tensor> logits, ltrb, boxes, classes;
  at::Tensor points;
  std::vector<int64_t> level_sizes;
};

DetectionBatch detection_batch(int64_t gts) {
  torch::manual_seed(2);
  DetectionBatch b;
  // 5 levels, 20,000 anchors in all: 120×125 (stride 8), 60×62, 30×31, 15×16, 8×8.
  const std::vector<std::array<int64_t, 2>> hw = {{120, 125}, {60, 62}, {30, 31}, {15, 16}, {8, 8}};
  b.points = crowdloss::anchor_points(hw, {8, 16, 32, 64, 128});
  for (const auto& [h, w] : hw) b.level_sizes.push_back(h * w);
  const int64_t A = b.points.size(0);
  for (int i = 0; i < 8; ++i) {
    b.logits.push_back(torch::randn({A, 1}) - 4);
    b.ltrb.push_back(torch::rand({A, 4}) * 60 + 4);
    const auto xy = torch::rand({gts, 2}) * torch::tensor({900.0, 900.0}), wh = torch::rand({gts, 2}) * 90 + 10;
    b.boxes.push_back(torch::cat({xy, xy + wh}, 1));
    b.classes.push_back(torch::zeros({gts}, torch::kLong));
  }
  return b;
}

void BM_poto_assign_batch(benchmark::State& state) {
  const auto b = detection_batch(state.range(0));
  for (auto _ : state) {
    for (size_t i = 0; i < b.logits.size(); ++i) {
      const auto pred = crowdloss::ltrb_to_boxes(b.points, b.ltrb[i]);
      benchmark::DoNotOptimize(
          crowdloss::poto_assign(b.logits[i].sigmoid(), pred, b.points, b.boxes[i], b.classes[i]).data_ptr());
    }
  }
  state.SetLabel("8 images x " + std::to_string(state.range(0)) + " gts x " + std::to_string(b.points.size(0)) +
                 " anchors");
}

void BM_lla_assign_batch(benchmark::State& state) {
  const auto b = detection_batch(state.range(0));
  for (auto _ : state)
    for (size_t i = 0; i < b.logits.size(); ++i)
      benchmark::DoNotOptimize(
          crowdloss::lla_assign(b.logits[i], b.ltrb[i], b.points, b.boxes[i], b.classes[i]).data_ptr());
  state.SetLabel("8 images x " + std::to_string(state.range(0)) + " gts x " + std::to_string(b.points.size(0)) +
                 " anchors");
}

BENCHMARK(BM_poto_assign_batch)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lla_assign_batch)->Arg(100)->Unit(benchmark::kMillisecond);
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

int main(int argc, char** argv) { return single_thread_main(argc, argv, "--dump-matrices=", dump_matrices); }
