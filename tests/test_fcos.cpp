#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <vector>

using crowdloss_test::check_error;

namespace {

// A 32×32 image: P3 (stride 8, 4×4 points at 4, 12, 20, 28) and P4 (stride 16, 2×2 points at 8, 24).
at::Tensor two_level_points() { return crowdloss::anchor_points({{4, 4}, {2, 2}}, {8, 16}, 0.5, torch::kFloat64); }

crowdloss::FCOSAssignOptions two_level_options(double radius) {
  return crowdloss::FCOSAssignOptions().strides({8, 16}).level_sizes({16, 4}).size_bounds({16}).center_sampling_radius(
      radius);
}

at::Tensor boxes(std::vector<double> xyxy) { return torch::tensor(xyxy, torch::kFloat64).view({-1, 4}); }

std::vector<int64_t> assigned_of(const at::Tensor& t) {
  const auto c = t.cpu().contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

}  // namespace

TEST_CASE("fcos_assign: regression ranges send each gt to its level (hand-derived)") {
  // gt 0 covers the image: every P3 point reaches at least 20 px to a side (> 16, P3's upper bound),
  // every P4 point at most 24 (>= 16): all four P4 points, no P3 point. gt 1 = (0, 0, 14, 14): the
  // four P3 points inside reach at most 12 (P3), P4's (8, 8) reaches 8 < 16 (not P4).
  const auto a = crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 32, 32, 0, 0, 14, 14}), two_level_options(0));
  const std::vector<int64_t> expected = {1, 1, -1, -1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0};
  DOCTEST_CHECK(assigned_of(a) == expected);
  DOCTEST_CHECK((a.scalar_type() == torch::kLong));
}

TEST_CASE("fcos_assign: the smallest candidate gt wins, ties go to the first") {
  // gt 2 = (2, 2, 13, 13) lies inside gt 1 and contains the same four P3 points: smaller area, it wins.
  const auto nested =
      crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 14, 14, 2, 2, 13, 13}), two_level_options(0));
  DOCTEST_CHECK(assigned_of(nested).at(0) == 1);
  DOCTEST_CHECK(assigned_of(nested).at(5) == 1);
  const auto twins =
      crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 14, 14, 0, 0, 14, 14}), two_level_options(0));
  DOCTEST_CHECK(assigned_of(twins).at(0) == 0);
  DOCTEST_CHECK(assigned_of(twins).at(5) == 0);
}

TEST_CASE("fcos_assign: centre sampling keeps the points near the box centre") {
  // gt (0, 0, 14, 14), centre (7, 7); radius 0.5 on P3 → the square [3, 11]²: only (4, 4) is inside.
  const auto a = crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 14, 14}), two_level_options(0.5));
  std::vector<int64_t> expected(20, -1);
  expected[0] = 0;
  DOCTEST_CHECK(assigned_of(a) == expected);
  // Radius 1.5 → [−5, 19] clipped to the box: the same four points as without sampling.
  DOCTEST_CHECK(torch::equal(crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 14, 14}), two_level_options(1.5)),
                             crowdloss::fcos_assign(two_level_points(), boxes({0, 0, 14, 14}), two_level_options(0))));
  // No gts, or a gt with no point inside: all background.
  DOCTEST_CHECK(
      (crowdloss::fcos_assign(two_level_points(), torch::zeros({0, 4}, torch::kFloat64), two_level_options(1.5)) == -1)
          .all()
          .item<bool>());
  DOCTEST_CHECK((crowdloss::fcos_assign(two_level_points(), boxes({13, 13, 15, 15}), two_level_options(1.5)) == -1)
                    .all()
                    .item<bool>());
}

TEST_CASE("fcos_assign: agrees with a scalar re-derivation on random scenes") {
  torch::manual_seed(5);
  const auto points = crowdloss::anchor_points({{16, 16}, {8, 8}, {4, 4}}, {8, 16, 32}, 0.5, torch::kFloat64);
  const auto opts =
      crowdloss::FCOSAssignOptions().strides({8, 16, 32}).level_sizes({256, 64, 16}).size_bounds({32, 64});
  const auto xy = torch::rand({12, 2}, torch::kFloat64) * 100, wh = torch::rand({12, 2}, torch::kFloat64) * 90 + 4;
  const auto gts = torch::cat({xy, xy + wh}, 1);
  const auto got = assigned_of(crowdloss::fcos_assign(points, gts, opts));
  const auto P = points.accessor<double, 2>(), B = gts.accessor<double, 2>();
  int64_t foreground = 0;
  for (int64_t a = 0; a < 336; ++a) {
    const int level = a < 256 ? 0 : a < 320 ? 1 : 2;
    const double stride = 8 << level,
                 lo = level == 0   ? -1
                      : level == 1 ? 32
                                   : 64,
                 hi = level == 0   ? 32
                      : level == 1 ? 64
                                   : 1e300;
    int64_t best = -1;
    double best_area = 1e300;
    for (int64_t g = 0; g < 12; ++g) {
      const double x = P[a][0], y = P[a][1], cx = (B[g][0] + B[g][2]) / 2, cy = (B[g][1] + B[g][3]) / 2,
                   r = 1.5 * stride;
      const double x0 = std::max(cx - r, B[g][0]), y0 = std::max(cy - r, B[g][1]), x1 = std::min(cx + r, B[g][2]),
                   y1 = std::min(cy + r, B[g][3]);
      const bool in_centre = x > x0 && y > y0 && x < x1 && y < y1;
      const double reach = std::max({x - B[g][0], y - B[g][1], B[g][2] - x, B[g][3] - y});
      const double area = (B[g][2] - B[g][0]) * (B[g][3] - B[g][1]);
      if (in_centre && reach >= lo && reach <= hi && area < best_area) best = g, best_area = area;
    }
    DOCTEST_CHECK(got[static_cast<size_t>(a)] == best);
    foreground += best >= 0;
  }
  DOCTEST_CHECK(foreground > 20);  // the scene exercises the rule
}

TEST_CASE("fcos_assign: every bad input throws c10::Error naming the function and the value") {
  const auto points = two_level_points();
  const auto gt = boxes({0, 0, 14, 14});
  check_error([&] { crowdloss::fcos_assign(points.view({-1}), gt, two_level_options(1.5)); },
              {"fcos_assign", "points", "[40]"});
  check_error(
      [&] {
        crowdloss::fcos_assign(points, gt.view({2, 2}), two_level_options(1.5));
      },
      {"fcos_assign", "gt_boxes", "[2, 2]"});
  check_error([&] { crowdloss::fcos_assign(points, gt.to(torch::kLong), two_level_options(1.5)); },
              {"fcos_assign", "gt_boxes", "Long"});
  check_error([&] { crowdloss::fcos_assign(points, gt.to(at::kMeta), two_level_options(1.5)); },
              {"fcos_assign", "gt_boxes", "meta"});
  check_error([&] { crowdloss::fcos_assign(points, gt, two_level_options(-1)); },
              {"fcos_assign", "center_sampling_radius", "-1"});
  check_error([&] { crowdloss::fcos_assign(points, gt); }, {"fcos_assign", "level_sizes"});
  check_error(
      [&] {
        crowdloss::fcos_assign(points, gt, two_level_options(1.5).level_sizes({16, 5}));
      },
      {"fcos_assign", "21", "20"});
  check_error([&] { crowdloss::fcos_assign(points, gt, two_level_options(1.5).strides({8})); },
              {"fcos_assign", "stride", "1"});
  check_error(
      [&] {
        crowdloss::fcos_assign(points, gt, two_level_options(1.5).size_bounds({16, 32}));
      },
      {"fcos_assign", "size_bounds", "2"});
  check_error(
      [&] {
        crowdloss::fcos_assign(points, boxes({0, 0, 14, 14, 2, NAN, 9, 9}), two_level_options(1.5));
      },
      {"fcos_assign", "gt_boxes[1] is not finite", "nan"});
}

TEST_CASE("fcos_assign: CPU/CUDA parity") {
  if (!crowdloss_test::cuda_or_skip("fcos_assign CPU/CUDA parity")) return;
  torch::manual_seed(9);
  const auto points = crowdloss::anchor_points({{16, 16}, {8, 8}, {4, 4}}, {8, 16, 32}, 0.5, torch::kFloat32);
  const auto opts =
      crowdloss::FCOSAssignOptions().strides({8, 16, 32}).level_sizes({256, 64, 16}).size_bounds({32, 64});
  const auto xy = torch::rand({30, 2}) * 100, wh = torch::rand({30, 2}) * 90 + 4;
  const auto gts = torch::cat({xy, xy + wh}, 1);
  DOCTEST_CHECK(torch::equal(crowdloss::fcos_assign(points.cuda(), gts.cuda(), opts).cpu(),
                             crowdloss::fcos_assign(points, gts, opts)));
}
