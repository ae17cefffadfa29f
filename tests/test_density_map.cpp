#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;

namespace {

// Brute-force mean distance to the k nearest other points, for checking the grid search.
std::vector<double> brute_knn(const at::Tensor& pts, int64_t k) {
  // Direct differences (torch::cdist switches to a less precise matrix-product form for large n).
  const auto d = (pts.unsqueeze(1) - pts.unsqueeze(0)).square().sum(-1).sqrt();
  const int64_t n = pts.size(0), kk = std::min<int64_t>(k, n - 1);
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) {
    const auto sorted = std::get<0>(d[i].sort());
    out.push_back(kk > 0 ? sorted.narrow(0, 1, kk).mean().item<double>() : 0.0);
  }
  return out;
}

std::vector<double> flat(const at::Tensor& pts) {
  const auto c = pts.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

TEST_CASE("points_to_density: raw counts equal the PML authors' rasteriser (oracle case A)") {
  const auto oracle = crowdloss_test::load_json("pml.json");
  const auto& c = oracle.at("cases").at(0);
  const auto& ref = c.at("densemap_loss");
  const auto points = tensor_from_json(c.at("points_xy"));
  const auto num = c.at("num").get<std::vector<int64_t>>();
  const auto gt = tensor_from_json(ref.at("gt_density"));
  const double stride = ref.at("scale_passed").get<double>();
  for (int64_t b = 0; b < gt.size(0); ++b) {
    const auto map = crowdloss::points_to_density(points[b].narrow(0, 0, num[static_cast<size_t>(b)]), gt.size(2),
                                                  gt.size(3), crowdloss::PointsToDensityOptions().stride(stride));
    DOCTEST_CHECK((map.scalar_type() == at::kFloat));
    DOCTEST_CHECK(torch::equal(map, gt[b][0]));
  }
}

TEST_CASE("points_to_density: raw counts, clamping at the border, no points") {
  const auto pts =
      torch::tensor({0.0, 0.0, 7.9, 3.99, 8.0, 4.0, 100.0, 100.0, 31.99, 0.5}, torch::kFloat64).view({5, 2});
  const auto map = crowdloss::points_to_density(pts, 4, 4, crowdloss::PointsToDensityOptions().stride(8));
  DOCTEST_CHECK((map.scalar_type() == at::kDouble));
  DOCTEST_CHECK(map[0][0].item<double>() == 2.0);  // (0, 0) and (7.9, 3.99)
  DOCTEST_CHECK(map[0][1].item<double>() == 1.0);  // (8, 4)
  DOCTEST_CHECK(map[3][3].item<double>() == 1.0);  // (100, 100) clamped to the last pixel
  DOCTEST_CHECK(map[0][3].item<double>() == 1.0);  // x = 31.99 → column 3
  DOCTEST_CHECK(map.sum().item<double>() == 5.0);
  const auto none =
      crowdloss::points_to_density(torch::zeros({0, 2}), 6, 5, crowdloss::PointsToDensityOptions().adaptive(true));
  DOCTEST_CHECK(none.sizes() == at::IntArrayRef({6, 5}));
  DOCTEST_CHECK(none.abs().sum().item<double>() == 0.0);
  // Integer coordinates are accepted and give a float32 map.
  DOCTEST_CHECK((crowdloss::points_to_density(torch::tensor({{1, 2}}), 4, 4).scalar_type() == at::kFloat));
}

TEST_CASE("points_to_density: a fixed Gaussian kernel, truncated at 4 sigma") {
  // One point in the middle of a 21×21 map, σ = 1 (stride 1): the kernel is exp(−d²/2) on a
  // 9×9 support normalised to sum 1 — SciPy's gaussian_filter of a unit impulse.
  const auto pts = torch::tensor({{10.5, 10.5}}, torch::kFloat64);
  const auto map =
      crowdloss::points_to_density(pts, 21, 21, crowdloss::PointsToDensityOptions().sigma(1.0).preserve_count(false));
  double z = 0;
  for (int d = -4; d <= 4; ++d) z += std::exp(-d * d / 2.0);
  DOCTEST_CHECK(map[10][10].item<double>() == doctest::Approx(1 / (z * z)).epsilon(1e-14));
  DOCTEST_CHECK(map[10][12].item<double>() == doctest::Approx(std::exp(-2.0) / (z * z)).epsilon(1e-14));
  DOCTEST_CHECK(map[10][14].item<double>() > 0);
  DOCTEST_CHECK(map[10][15].item<double>() == 0);  // beyond the truncation radius
  DOCTEST_CHECK(map.sum().item<double>() == doctest::Approx(1.0).epsilon(1e-14));
  DOCTEST_CHECK(torch::allclose(map, map.t()));
  // σ is in input pixels: stride 4 and σ = 4 is σ = 1 on the output grid.
  const auto strided = crowdloss::points_to_density(
      pts * 4, 21, 21, crowdloss::PointsToDensityOptions().sigma(4.0).stride(4).preserve_count(false));
  DOCTEST_CHECK(torch::allclose(strided, map, 0, 1e-15));
  // A point in the corner loses three quarters of its kernel unless the count is preserved.
  const auto corner = torch::tensor({{0.0, 0.0}}, torch::kFloat64);
  const double lost =
      crowdloss::points_to_density(corner, 21, 21, crowdloss::PointsToDensityOptions().sigma(1.0).preserve_count(false))
          .sum()
          .item<double>();
  DOCTEST_CHECK(lost < 0.5);
  DOCTEST_CHECK(lost > 0.25);
  DOCTEST_CHECK(crowdloss::points_to_density(corner, 21, 21, crowdloss::PointsToDensityOptions().sigma(1.0))
                    .sum()
                    .item<double>() == doctest::Approx(1.0).epsilon(1e-14));
}

TEST_CASE("points_to_density: preserve_count makes the map sum to N") {
  torch::manual_seed(1);
  const auto pts = torch::rand({300, 2}, torch::kFloat64) * torch::tensor({640.0, 480.0}, torch::kFloat64);
  for (const auto& opts :
       {crowdloss::PointsToDensityOptions().sigma(15.0).stride(4),
        crowdloss::PointsToDensityOptions().adaptive(true).stride(4), crowdloss::PointsToDensityOptions().sigma(3.0)}) {
    const auto map = crowdloss::points_to_density(pts, 120, 160, opts);
    DOCTEST_CHECK(map.sum().item<double>() == doctest::Approx(300.0).epsilon(1e-12));
    DOCTEST_CHECK(map.min().item<double>() >= 0);
  }
}

TEST_CASE("points_to_density: geometry-adaptive kernels (CSRNet)") {
  // A regular lattice with spacing 10: the 3 nearest neighbours are at 10, 10, 10, except at the
  // corners (10, 10, 10·√2). Kernels are per point and linear, so the map is the sum of
  // single-point maps with those σ.
  std::vector<double> coords;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 6; ++j) coords.insert(coords.end(), {20.5 + 10 * i, 20.5 + 10 * j});
  const auto lattice = torch::tensor(coords, torch::kFloat64).view({-1, 2});
  const auto adaptive =
      crowdloss::points_to_density(lattice, 100, 120, crowdloss::PointsToDensityOptions().adaptive(true));
  auto expected = torch::zeros({100, 120}, torch::kFloat64);
  for (int64_t i = 0; i < lattice.size(0); ++i) {
    const bool corner = (i == 0 || i == 5 || i == 42 || i == 47);
    const double sigma = 0.3 * (corner ? (20 + 10 * std::sqrt(2.0)) / 3 : 10.0);
    expected += crowdloss::points_to_density(lattice.narrow(0, i, 1), 100, 120,
                                             crowdloss::PointsToDensityOptions().sigma(sigma));
  }
  DOCTEST_CHECK(torch::allclose(adaptive, expected, 0, 1e-12));
  const auto fixed = crowdloss::points_to_density(lattice, 100, 120, crowdloss::PointsToDensityOptions().sigma(3.0));
  DOCTEST_CHECK_FALSE(torch::allclose(adaptive, fixed, 0, 1e-6));  // the corners really differ
  const auto beta = crowdloss::points_to_density(lattice, 100, 120,
                                                 crowdloss::PointsToDensityOptions().adaptive(true).beta(0.5).k(1));
  DOCTEST_CHECK(torch::allclose(
      beta, crowdloss::points_to_density(lattice, 100, 120, crowdloss::PointsToDensityOptions().sigma(5.0)), 0, 1e-12));
  // A lone point: CSRNet's fallback (height + width)·stride/4, or `sigma` when given.
  const auto one = torch::tensor({{30.0, 40.0}}, torch::kFloat64);
  DOCTEST_CHECK(torch::allclose(
      crowdloss::points_to_density(one, 64, 96, crowdloss::PointsToDensityOptions().adaptive(true)),
      crowdloss::points_to_density(one, 64, 96, crowdloss::PointsToDensityOptions().sigma(40.0)), 0, 1e-14));
  DOCTEST_CHECK(torch::allclose(
      crowdloss::points_to_density(one, 64, 96, crowdloss::PointsToDensityOptions().adaptive(true).sigma(2.0)),
      crowdloss::points_to_density(one, 64, 96, crowdloss::PointsToDensityOptions().sigma(2.0)), 0, 1e-14));
  // Two points at the same place: zero distance, so raw counts.
  const auto twin = torch::tensor({{5.0, 5.0}, {5.0, 5.0}}, torch::kFloat64);
  DOCTEST_CHECK(crowdloss::points_to_density(twin, 10, 10, crowdloss::PointsToDensityOptions().adaptive(true))[5][5]
                    .item<double>() == 2.0);
}

TEST_CASE("points_to_density: the grid neighbour search equals brute force") {
  torch::manual_seed(2);
  std::vector<at::Tensor> sets = {
      torch::rand({500, 2}, torch::kFloat64) * 300,  // uniform
      torch::cat(
          {torch::rand({200, 2}, torch::kFloat64) * 5, torch::rand({50, 2}, torch::kFloat64) * 1000}),  // clustered
      torch::stack({torch::rand({300}, torch::kFloat64) * 800, torch::full({300}, 7.0, torch::kFloat64)},
                   1),                                                                        // collinear
      torch::tensor({1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 2.0}, torch::kFloat64).view({4, 2}),  // duplicates
      torch::tensor({3.0, 4.0, 0.0, 0.0}, torch::kFloat64).view({2, 2}),                      // fewer than k others
  };
  for (const auto& pts : sets) {
    for (const int64_t k : {1, 3, 8}) {
      const auto grid = crowdloss::detail::mean_knn_distance(flat(pts).data(), pts.size(0), k);
      const auto brute = brute_knn(pts, k);
      double worst = 0;
      for (size_t i = 0; i < grid.size(); ++i) worst = std::max(worst, std::abs(grid[i] - brute[i]));
      INFO("n = " << pts.size(0) << ", k = " << k);
      DOCTEST_CHECK(worst < 1e-9);
    }
  }
}

TEST_CASE("points_to_density: 10,000 adaptive kernels on a 768x1024 map keep the total count") {
  // The time this takes is bench_density's BM_points_to_density_adaptive/10000.
  torch::manual_seed(3);
  const auto pts = torch::rand({10000, 2}, torch::kFloat64) * torch::tensor({1024.0, 768.0}, torch::kFloat64);
  const auto map = crowdloss::points_to_density(pts, 768, 1024, crowdloss::PointsToDensityOptions().adaptive(true));
  DOCTEST_CHECK(map.sum().item<double>() == doctest::Approx(10000.0).epsilon(1e-10));
}

TEST_CASE("points_to_density: CUDA points give the same map on the GPU") {
  if (!crowdloss_test::cuda_or_skip("points_to_density CPU/CUDA parity")) return;
  torch::manual_seed(4);
  const auto pts = torch::rand({200, 2}) * 256;
  const auto opts = crowdloss::PointsToDensityOptions().adaptive(true).stride(2);
  const auto cpu = crowdloss::points_to_density(pts, 128, 128, opts);
  const auto cuda = crowdloss::points_to_density(pts.cuda(), 128, 128, opts);
  DOCTEST_CHECK(cuda.device().is_cuda());
  DOCTEST_CHECK(torch::equal(cuda.cpu(), cpu));
}

TEST_CASE("points_to_density: every bad input throws c10::Error naming the function and the value") {
  const auto ok = torch::tensor({{1.0, 2.0}});
  using O = crowdloss::PointsToDensityOptions;
  check_error([&] { crowdloss::points_to_density(torch::zeros({3, 3}), 8, 8); }, {"points_to_density", "[3, 3]"});
  check_error([&] { crowdloss::points_to_density(torch::zeros({4}), 8, 8); }, {"points_to_density", "[4]"});
  check_error(
      [&] {
        crowdloss::points_to_density(torch::tensor({{-1.0, 2.0}}), 8, 8);
      },
      {"points_to_density", "negative", "-1"});
  check_error(
      [&] {
        crowdloss::points_to_density(torch::tensor({{1.0, std::nan("")}}), 8, 8);
      },
      {"points_to_density", "not finite"});
  check_error([&] { crowdloss::points_to_density(ok, 0, 8); }, {"points_to_density", "0x8"});
  check_error([&] { crowdloss::points_to_density(ok, 8, -2); }, {"points_to_density", "8x-2"});
  check_error([&] { crowdloss::points_to_density(ok, 8, 8, O().stride(0)); }, {"points_to_density", "stride", "0"});
  check_error([&] { crowdloss::points_to_density(ok, 8, 8, O().sigma(-1)); }, {"points_to_density", "sigma", "-1"});
  check_error([&] { crowdloss::points_to_density(ok, 8, 8, O().beta(0)); }, {"points_to_density", "beta", "0"});
  check_error([&] { crowdloss::points_to_density(ok, 8, 8, O().k(0)); }, {"points_to_density", "k must", "0"});
}

TEST_CASE("points_to_density_batch: each map is points_to_density's, raw, fixed and adaptive") {
  // Images with scattered points, none, one, duplicates and points on the last row and column.
  torch::manual_seed(14);
  const int64_t H = 24, W = 40;
  using O = crowdloss::PointsToDensityOptions;
  const std::vector<O> options = {O().stride(8), O().sigma(4.0), O().sigma(15.0).stride(4).preserve_count(false),
                                  O().adaptive(true).stride(2),
                                  O().adaptive(true).sigma(6.0).k(5).beta(0.5).preserve_count(false)};
  for (const auto& o : options) {
    const double s = o.stride();
    const std::vector<at::Tensor> points = {
        torch::rand({30, 2}, torch::kFloat64) * torch::tensor({W * s, H * s}, torch::kFloat64),
        torch::zeros({0, 2}, torch::kFloat64), torch::tensor({{3.0 * s, 5.0 * s}}, torch::kFloat64),
        torch::tensor({{8.0, 8.0}, {8.0, 8.0}, {8.0, 8.0}, {40.0, 30.0}, {41.0, 33.5}}, torch::kFloat64),
        torch::tensor({{W * s - 0.5, 0.0}, {0.0, H * s - 0.5}, {W * s + 50, H * s + 7}}, torch::kFloat64)};
    INFO("stride " << o.stride() << " sigma " << o.sigma() << " adaptive " << o.adaptive() << " preserve "
                   << o.preserve_count());
    const auto maps = crowdloss::points_to_density_batch(points, H, W, o);
    DOCTEST_REQUIRE(maps.sizes() == at::IntArrayRef({5, 1, H, W}));
    DOCTEST_CHECK((maps.scalar_type() == torch::kFloat64));
    for (size_t b = 0; b < points.size(); ++b) {
      INFO("image " << b);
      const auto one = crowdloss::points_to_density(points[b], H, W, o);
      const auto error = (maps[static_cast<int64_t>(b)][0] - one).abs().max().item<double>();
      DOCTEST_CHECK(error <= 1e-12 * std::max(1.0, one.abs().max().item<double>()));
    }
  }
  // float32 maps unless every points tensor is float64.
  const std::vector<at::Tensor> mixed = {torch::tensor({{1.0, 2.0}}), torch::tensor({{3.0, 4.0}}, torch::kFloat64)};
  DOCTEST_CHECK((crowdloss::points_to_density_batch(mixed, 8, 8).scalar_type() == torch::kFloat32));
}

TEST_CASE("points_to_density_batch: every bad input throws c10::Error naming the function, the image and the value") {
  const auto ok = torch::tensor({{1.0, 2.0}});
  check_error([] { crowdloss::points_to_density_batch({}, 8, 8); }, {"points_to_density_batch", "empty"});
  check_error(
      [&] {
        crowdloss::points_to_density_batch({ok, torch::zeros({3, 3})}, 8, 8);
      },
      {"points_to_density_batch", "points[1]", "[3, 3]"});
  check_error(
      [&] {
        crowdloss::points_to_density_batch({ok, torch::tensor({{1.0, 2.0}, {3.0, -4.0}})}, 8, 8);
      },
      {"points_to_density_batch", "points[1] point 1", "negative", "-4"});
  check_error(
      [&] {
        crowdloss::points_to_density_batch({ok, torch::tensor({{std::nan(""), 2.0}})}, 8, 8);
      },
      {"points_to_density_batch", "points[1] point 0", "not finite"});
  check_error([&] { crowdloss::points_to_density_batch({ok}, 8, 0); }, {"points_to_density_batch", "8x0"});
  check_error([&] { crowdloss::points_to_density_batch({ok}, 8, 8, crowdloss::PointsToDensityOptions().k(0)); },
              {"points_to_density_batch", "k must", "0"});
}

TEST_CASE("points_to_density_batch: CUDA points give the CPU's maps, on the GPU") {
  if (!crowdloss_test::cuda_or_skip("points_to_density_batch CPU/CUDA parity")) return;
  torch::manual_seed(15);
  std::vector<at::Tensor> cpu_points, cuda_points;
  for (const int64_t n : {0, 1, 200, 1500}) {
    cpu_points.push_back(torch::rand({n, 2}, torch::kFloat64) * 512);
    cuda_points.push_back(cpu_points.back().cuda());
  }
  for (const auto& o : {crowdloss::PointsToDensityOptions().sigma(4.0).stride(2),
                        crowdloss::PointsToDensityOptions().adaptive(true).stride(2)}) {
    const auto cpu = crowdloss::points_to_density_batch(cpu_points, 256, 256, o);
    const auto cuda = crowdloss::points_to_density_batch(cuda_points, 256, 256, o);
    DOCTEST_CHECK(cuda.device().is_cuda());
    DOCTEST_CHECK(((cuda.cpu() - cpu).abs().max().item<double>() <= 1e-12 * cpu.abs().max().item<double>()));
    check_error(
        [&] {
          crowdloss::points_to_density_batch({cuda_points[1], cpu_points[1]}, 8, 8, o);
        },
        {"points_to_density_batch", "points[1]", "cpu"});
  }
}

TEST_CASE("sum_pool: count-preserving down-sampling") {
  const auto map = torch::arange(1.0, 13.0, torch::kFloat64).view({1, 1, 3, 4});
  const auto pooled = crowdloss::sum_pool(map, 2);
  // [[1 2 3 4],[5 6 7 8],[9 10 11 12]] → [[1+2+5+6, 3+4+7+8], [9+10, 11+12]]
  DOCTEST_CHECK(torch::equal(pooled, torch::tensor({14.0, 22.0, 19.0, 23.0}, torch::kFloat64).view({1, 1, 2, 2})));
  DOCTEST_CHECK(crowdloss::sum_pool(map[0][0], 3).sizes() == at::IntArrayRef({1, 2}));
  DOCTEST_CHECK(crowdloss::sum_pool(map, 1).equal(map));
  torch::manual_seed(5);
  auto density = torch::rand({2, 3, 37, 50}, torch::kFloat64).requires_grad_(true);
  const auto coarse = crowdloss::sum_pool(density, 8);
  DOCTEST_CHECK(coarse.sizes() == at::IntArrayRef({2, 3, 5, 7}));
  DOCTEST_CHECK(torch::allclose(coarse.sum({2, 3}), density.sum({2, 3}), 1e-12));
  coarse.sum().backward();
  DOCTEST_CHECK(torch::equal(density.grad(), torch::ones_like(density)));
  check_error([] { crowdloss::sum_pool(torch::rand({5}), 2); }, {"sum_pool", "[5]"});
  check_error([] { crowdloss::sum_pool(torch::ones({4, 4}, torch::kLong), 2); }, {"sum_pool", "Long"});
  check_error([] { crowdloss::sum_pool(torch::rand({4, 0}), 2); }, {"sum_pool", "[4, 0]"});
  check_error([] { crowdloss::sum_pool(torch::rand({4, 4}), 0); }, {"sum_pool", "factor", "0"});
}
