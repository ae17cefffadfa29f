#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using crowdloss_test::check_error;

namespace {

struct LLAImage {
  at::Tensor logits, ltrb, points, gt_boxes, gt_classes;
};

LLAImage random_lla_image(int64_t G, int64_t K, uint64_t seed) {
  torch::manual_seed(seed);
  const auto points = crowdloss::anchor_points({{12, 16}, {6, 8}}, {8, 16}, 0.5, torch::kFloat64);
  const int64_t A = points.size(0);
  const auto xy = torch::rand({G, 2}, torch::kFloat64) * torch::tensor({100.0, 70.0}, torch::kFloat64);
  const auto wh = torch::rand({G, 2}, torch::kFloat64) * 50 + 10;
  return {torch::randn({A, K}, torch::kFloat64), torch::rand({A, 4}, torch::kFloat64) * 30 + 1, points,
          torch::cat({xy, xy + wh}, 1), torch::randint(-1, K, {G})};
}

double focal(double x, double t, double alpha, double gamma) {
  const double p = 1 / (1 + std::exp(-x)), pt = t ? p : 1 - p;
  return (t ? alpha : 1 - alpha) * std::pow(1 - pt, gamma) * -std::log(pt);
}

// LLA's cost and matching re-derived with scalar loops and sorting.
std::vector<int64_t> lla_by_hand(const LLAImage& im, const crowdloss::LLAAssignOptions& o) {
  const int64_t A = im.points.size(0), G = im.gt_boxes.size(0), K = im.logits.size(1);
  const auto L = im.logits.accessor<double, 2>(), D = im.ltrb.accessor<double, 2>(),
             P = im.points.accessor<double, 2>();
  const auto B = im.gt_boxes.accessor<double, 2>();
  const auto C = im.gt_classes.accessor<int64_t, 1>();
  std::vector<std::vector<double>> cost(static_cast<size_t>(G), std::vector<double>(static_cast<size_t>(A)));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t a = 0; a < A; ++a) {
      double c = 0;
      for (int64_t k = 0; k < K; ++k)
        c += focal(L[a][k], k == std::max<int64_t>(C[g], 0), o.focal_alpha(), o.focal_gamma());
      const double t[4] = {P[a][0] - B[g][0], P[a][1] - B[g][1], B[g][2] - P[a][0], B[g][3] - P[a][1]};
      const double pa = (D[a][0] + D[a][2]) * (D[a][1] + D[a][3]);
      const double ta = std::max(0.0, t[0] + t[2]) * std::max(0.0, t[1] + t[3]);
      const double w = std::max(0.0, std::min(D[a][0], t[0]) + std::min(D[a][2], t[2]));
      const double h = std::max(0.0, std::min(D[a][1], t[1]) + std::min(D[a][3], t[3]));
      const double eps = std::numeric_limits<float>::epsilon();
      const double iou = w * h / std::max(pa + ta - w * h, eps);
      c += o.reg_cost() * -std::log(std::max(iou, eps));
      if (std::min({t[0], t[1], t[2], t[3]}) <= o.inside_eps()) c += o.outside_penalty();
      cost[static_cast<size_t>(g)][static_cast<size_t>(a)] = c;
    }
  }
  std::vector<int64_t> assigned(static_cast<size_t>(A), -1);
  std::vector<double> best(static_cast<size_t>(A), std::numeric_limits<double>::infinity());
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int64_t> order(static_cast<size_t>(A));
    std::iota(order.begin(), order.end(), 0);
    const auto& row = cost[static_cast<size_t>(g)];
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return row[static_cast<size_t>(x)] < row[static_cast<size_t>(y)]; });
    for (int64_t i = 0; i < std::min(o.topk(), A); ++i) {
      const auto a = static_cast<size_t>(order[static_cast<size_t>(i)]);
      if (row[a] < best[a]) best[a] = row[a], assigned[a] = g;
    }
  }
  return assigned;
}

}  // namespace

TEST_CASE("lla_assign: focal + IoU + outside-penalty cost, top-k per gt, lowest cost wins") {
  for (const uint64_t seed : {1, 2, 3}) {
    const auto im = random_lla_image(8, 3, seed);
    for (const auto& opts :
         {crowdloss::LLAAssignOptions(), crowdloss::LLAAssignOptions().topk(25).reg_cost(0.5).inside_eps(2.0)}) {
      const auto assigned = crowdloss::lla_assign(im.logits, im.ltrb, im.points, im.gt_boxes, im.gt_classes, opts);
      const auto expected = lla_by_hand(im, opts);
      REQUIRE(assigned.numel() == static_cast<int64_t>(expected.size()));
      int64_t mismatches = 0, positives = 0;
      for (size_t a = 0; a < expected.size(); ++a) {
        mismatches += assigned[static_cast<int64_t>(a)].item<int64_t>() != expected[a];
        positives += expected[a] >= 0;
      }
      INFO("seed " << seed << ", topk " << opts.topk());
      DOCTEST_CHECK(mismatches == 0);
      DOCTEST_CHECK(positives > 0);
      DOCTEST_CHECK(positives <= 8 * opts.topk());
    }
  }
}

TEST_CASE("lla_assign: equal costs go to the lower anchor index and then to the lower gt") {
  // Every anchor twice (same point, prediction and logits) and every gt twice: all costs tie in
  // pairs. A gt's top k takes tied anchors in index order (as a stable sort), and the first copy
  // of each gt wins.
  const auto im = random_lla_image(5, 2, 6);
  const LLAImage twice{torch::cat({im.logits, im.logits}), torch::cat({im.ltrb, im.ltrb}),
                       torch::cat({im.points, im.points}), torch::cat({im.gt_boxes, im.gt_boxes}),
                       torch::cat({im.gt_classes, im.gt_classes})};
  const auto opts = crowdloss::LLAAssignOptions().topk(4);
  const auto assigned =
      crowdloss::lla_assign(twice.logits, twice.ltrb, twice.points, twice.gt_boxes, twice.gt_classes, opts);
  const auto expected = lla_by_hand(twice, opts);
  DOCTEST_CHECK(torch::equal(assigned, torch::tensor(expected)));
  DOCTEST_CHECK((assigned < 5).all().item<bool>());
  // Every cost equal (no penalty, no IoU term, one logit): each gt's top k is anchors 0 … k − 1,
  // though the kernel visits the anchors inside its box first, and gt 0 takes them all.
  const LLAImage flat{torch::zeros_like(im.logits), im.ltrb, im.points, im.gt_boxes, im.gt_classes};
  const auto tie = crowdloss::LLAAssignOptions().topk(4).outside_penalty(0.0).reg_cost(0.0);
  const auto tied = crowdloss::lla_assign(flat.logits, flat.ltrb, flat.points, flat.gt_boxes, flat.gt_classes, tie);
  DOCTEST_CHECK(torch::equal(tied, torch::tensor(lla_by_hand(flat, tie))));
  DOCTEST_CHECK((tied.narrow(0, 0, 4) == 0).all().item<bool>());
  DOCTEST_CHECK((tied.narrow(0, 4, tied.size(0) - 4) == -1).all().item<bool>());
}

TEST_CASE("lla_assign: the CPU kernel gives the ATen path's assignments (float32 and float64)") {
  // Five FPN levels over a 320×256 image, 40 gts, 2 classes with ignore regions.
  torch::manual_seed(9);
  const auto points = crowdloss::anchor_points({{32, 40}, {16, 20}, {8, 10}, {4, 5}, {2, 3}}, {8, 16, 32, 64, 128}, 0.5,
                                               torch::kFloat64);
  const int64_t A = points.size(0), G = 40;
  const auto xy = torch::rand({G, 2}, torch::kFloat64) * torch::tensor({300.0, 240.0}, torch::kFloat64);
  const auto wh = torch::rand({G, 2}, torch::kFloat64) * 80 + 4;
  const auto gt_boxes = torch::cat({xy, xy + wh}, 1), gt_classes = torch::randint(-1, 2, {G});
  const auto logits = torch::randn({A, 2}, torch::kFloat64), ltrb = torch::rand({A, 4}, torch::kFloat64) * 60;
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    // (topk 1: most gts fill their top k inside the box and skip the outside anchors; a negative
    // inside_eps makes the kernel visit every anchor.)
    for (const auto& opts : {crowdloss::LLAAssignOptions(), crowdloss::LLAAssignOptions().topk(30).reg_cost(0.0),
                             crowdloss::LLAAssignOptions().outside_penalty(0.0).inside_eps(3.0),
                             crowdloss::LLAAssignOptions().topk(1), crowdloss::LLAAssignOptions().inside_eps(-2.0)}) {
      INFO(dtype << ", topk " << opts.topk() << ", reg_cost " << opts.reg_cost() << ", penalty "
                 << opts.outside_penalty() << ", inside_eps " << opts.inside_eps());
      const auto l = logits.to(dtype), d = ltrb.to(dtype), p = points.to(dtype), b = gt_boxes.to(dtype);
      const auto kernel = crowdloss::detail::lla_assign_cpu(l, d, p, b, gt_classes, crowdloss::detail::lla_cost(opts));
      const auto aten = crowdloss::detail::lla_assign_aten(l.unsqueeze(0), d.unsqueeze(0), p, b.unsqueeze(0),
                                                           gt_classes.unsqueeze(0), crowdloss::detail::lla_cost(opts))
                            .squeeze(0);
      DOCTEST_CHECK((kernel >= 0).sum().item<int64_t>() > (opts.topk() == 1 ? G / 2 : G));  // not vacuous
      DOCTEST_CHECK(torch::equal(kernel, aten));
    }
  }
}

TEST_CASE("lla_assign: ignore gts take part, topk is capped, no gts gives background") {
  auto im = random_lla_image(4, 2, 4);
  im.gt_classes = torch::tensor({0, -1, 1, -1});
  const auto assigned = crowdloss::lla_assign(im.logits, im.ltrb, im.points, im.gt_boxes, im.gt_classes);
  DOCTEST_CHECK((assigned == 1).any().item<bool>());  // an ignore gt claims anchors
  // Eight anchors, topk 10: every gt takes all eight, each anchor goes to its cheapest gt.
  const auto few = crowdloss::lla_assign(im.logits.narrow(0, 0, 8), im.ltrb.narrow(0, 0, 8), im.points.narrow(0, 0, 8),
                                         im.gt_boxes, im.gt_classes);
  DOCTEST_CHECK((few >= 0).all().item<bool>());
  const auto none = crowdloss::lla_assign(im.logits, im.ltrb, im.points, torch::zeros({0, 4}, torch::kFloat64),
                                          torch::zeros({0}, torch::kLong));
  DOCTEST_CHECK(torch::equal(none, torch::full({240}, -1, torch::kLong)));
}

TEST_CASE("lla_assign: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("lla_assign CPU/CUDA parity")) return;
  const auto im = random_lla_image(10, 3, 5);
  DOCTEST_CHECK(torch::equal(crowdloss::lla_assign(im.logits.cuda(), im.ltrb.cuda(), im.points.cuda(),
                                                   im.gt_boxes.cuda(), im.gt_classes.cuda())
                                 .cpu(),
                             crowdloss::lla_assign(im.logits, im.ltrb, im.points, im.gt_boxes, im.gt_classes)));
}

TEST_CASE("lla_assign: bad inputs throw c10::Error naming the function and the value") {
  const auto im = random_lla_image(3, 2, 6);
  // Named references, not a structured binding: lambdas cannot capture those before C++20.
  const auto &l = im.logits, &d = im.ltrb, &p = im.points, &b = im.gt_boxes, &c = im.gt_classes;
  check_error([&] { crowdloss::lla_assign(l, d.narrow(0, 0, 5), p, b, c); }, {"lla_assign", "box_ltrb", "[5, 4]"});
  check_error([&] { crowdloss::lla_assign(l, d, p.narrow(0, 0, 5), b, c); }, {"lla_assign", "points has 5 anchors"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b.view({-1}), c); }, {"lla_assign", "gt_boxes", "[12]"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, torch::tensor({0, 2, 1})); }, {"lla_assign", "[-1, 2)", "2"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, torch::tensor({0, -2, 1})); }, {"lla_assign", "-2"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c.to(at::kMeta)); }, {"lla_assign", "gt_classes", "meta"});
  // No classes at all (only ignore gts would pass the class range check).
  check_error([&] { crowdloss::lla_assign(l.narrow(1, 0, 0), d, p, b, torch::full({3}, -1, torch::kLong)); },
              {"lla_assign", "at least one class", "[240, 0]"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c, crowdloss::LLAAssignOptions().topk(0)); },
              {"lla_assign", "topk", "0"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c, crowdloss::LLAAssignOptions().reg_cost(-1)); },
              {"lla_assign", "reg_cost", "-1"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c, crowdloss::LLAAssignOptions().outside_penalty(-5)); },
              {"lla_assign", "outside_penalty", "-5"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c, crowdloss::LLAAssignOptions().focal_alpha(1.2)); },
              {"lla_assign", "alpha", "1.2"});
  check_error([&] { crowdloss::lla_assign(l, d, p, b, c, crowdloss::LLAAssignOptions().focal_gamma(-2)); },
              {"lla_assign", "gamma", "-2"});
  // A gt box with a NaN or infinite coordinate is an error naming it, as in every assigner (it
  // used to take every anchor, however far).
  for (const double bad : {static_cast<double>(NAN), static_cast<double>(INFINITY), -static_cast<double>(INFINITY)}) {
    auto nan_box = b.clone();
    nan_box[1][0] = bad;
    check_error([&] { crowdloss::lla_assign(l, d, p, nan_box, c); }, {"lla_assign", "gt_boxes[1] is not finite"});
    check_error(
        [&] {
          crowdloss::lla_assign(l.to(torch::kDouble), d.to(torch::kDouble), p.to(torch::kDouble),
                                nan_box.to(torch::kDouble), c);
        },
        {"lla_assign", "gt_boxes[1]"});
  }
}
