// Label assignment: linear_sum_assignment on dense random matrices and on POTO-shaped quality
// matrices (G gts × 20,000 anchors, quality −1 outside each gt's box prior, maximised).
// Single-threaded: the solver itself is sequential per matrix.
#include <crowdloss/crowdloss.hpp>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

namespace {

void BM_lsap_dense(benchmark::State& state) {
  const int64_t n = state.range(0);
  torch::manual_seed(0);
  const auto cost = torch::rand({n, n}, torch::kFloat64);
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

BENCHMARK(BM_lsap_dense)->Arg(100)->Arg(500)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lsap_poto_shaped)->Args({50, 20000})->Args({300, 20000})->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  benchmark::AddCustomContext("torch_threads", "1");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
