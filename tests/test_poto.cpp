#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;

namespace {

// One image of the DeFCN oracle inputs, as poto_assign takes them.
struct Image {
  at::Tensor cls_prob, pred_boxes, points, gt_boxes, gt_classes;
};

Image oracle_image(const crowdloss_test::json& in, int64_t i) {
  const auto points = tensor_from_json(in.at("shifts_all"));
  const auto ltrb = tensor_from_json(in.at("box_delta_flat_NR4"))[i];
  return {tensor_from_json(in.at("box_cls_logits_flat_NRK"))[i].sigmoid(), crowdloss::ltrb_to_boxes(points, ltrb),
          points, tensor_from_json(in.at("gt_boxes_xyxy").at(static_cast<size_t>(i))),
          tensor_from_json(in.at("gt_classes").at(static_cast<size_t>(i)))};
}

// A random image: A anchor points on two levels, G boxes, K classes.
Image random_image(int64_t G, int64_t K, uint64_t seed) {
  torch::manual_seed(seed);
  const auto points = crowdloss::anchor_points({{12, 16}, {6, 8}}, {8, 16});
  const int64_t A = points.size(0);
  const auto ltrb = torch::rand({A, 4}) * 40 + 2;
  const auto xy = torch::rand({G, 2}) * torch::tensor({100.0, 70.0}), wh = torch::rand({G, 2}) * 60 + 8;
  return {torch::rand({A, K}), crowdloss::ltrb_to_boxes(points, ltrb), points, torch::cat({xy, xy + wh}, 1),
          torch::randint(0, K, {G})};
}

}  // namespace

TEST_CASE("poto_assign: DeFCN's quality matrix and matches (CrowdHuman POTO config)") {
  const auto oracle = crowdloss_test::load_json("assign.json");
  const auto& in = oracle.at("inputs");
  const auto& ref = oracle.at("results").at("poto_plain_crowdhuman");
  for (const auto& per_image : ref.at("per_image")) {
    const int64_t i = per_image.at("image").get<int64_t>();
    INFO("image " << i);
    const auto img = oracle_image(in, i);
    const auto opts = crowdloss::POTOAssignOptions().alpha(ref.at("alpha").get<double>());
    const auto quality =
        crowdloss::poto_quality(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
    const auto expected = tensor_from_json(per_image.at("lsap_input_quality_masked"));
    REQUIRE(quality.sizes() == expected.sizes());
    if (quality.numel() > 0) DOCTEST_CHECK((quality - expected).abs().max().item<double>() <= 1e-6);
    const auto matched =
        crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
    const auto expected_matches = per_image.at("matched_anchor_per_gt").get<std::vector<int64_t>>();
    REQUIRE(matched.numel() == static_cast<int64_t>(expected_matches.size()));
    for (size_t g = 0; g < expected_matches.size(); ++g)
      DOCTEST_CHECK(matched[static_cast<int64_t>(g)].item<int64_t>() == expected_matches[g]);
    if (matched.numel() > 0)
      DOCTEST_CHECK(quality.gather(1, matched.unsqueeze(1)).sum().item<double>() ==
                    doctest::Approx(per_image.at("lsap_total_quality").get<double>()).epsilon(1e-6));
  }
}

TEST_CASE("poto_assign: the argmax matcher, and a gt without anchors in its prior") {
  const auto oracle = crowdloss_test::load_json("assign.json");
  const auto img = oracle_image(oracle.at("inputs"), 0);
  const auto opts = crowdloss::POTOAssignOptions().matcher(crowdloss::kArgmax);
  const auto quality = crowdloss::poto_quality(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes);
  const auto matched =
      crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
  for (int64_t g = 0; g < 5; ++g) {
    const bool has_anchor = (quality[g] >= 0).any().item<bool>();
    const int64_t expected = has_anchor ? quality[g].argmax().item<int64_t>() : -1;
    DOCTEST_CHECK(matched[g].item<int64_t>() == expected);
  }
  DOCTEST_CHECK(matched[4].item<int64_t>() == -1);  // gt 4 contains no anchor point
}

TEST_CASE("poto_quality: centre sampling restricts the prior per level") {
  const auto img = random_image(6, 3, 3);
  const std::vector<double> strides{8, 16};
  const std::vector<int64_t> sizes{192, 48};
  const double radius = 1.5;
  const auto opts = crowdloss::POTOAssignOptions().center_sampling_radius(radius).strides(strides).level_sizes(sizes);
  const auto quality =
      crowdloss::poto_quality(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
  const auto plain = crowdloss::poto_quality(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes);
  // Re-derived with scalar loops: inside the box and within radius·stride of its centre, per axis.
  const auto b = img.gt_boxes.accessor<float, 2>();
  const auto p = img.points.accessor<float, 2>();
  int64_t inside_count = 0;
  for (int64_t g = 0; g < img.gt_boxes.size(0); ++g) {
    const float cx = (b[g][0] + b[g][2]) / 2, cy = (b[g][1] + b[g][3]) / 2;
    for (int64_t a = 0; a < img.points.size(0); ++a) {
      const float r = static_cast<float>((a < sizes[0] ? strides[0] : strides[1]) * radius);
      const float x0 = std::max(cx - r, b[g][0]), y0 = std::max(cy - r, b[g][1]);
      const float x1 = std::min(cx + r, b[g][2]), y1 = std::min(cy + r, b[g][3]);
      const bool inside = p[a][0] - x0 > 0 && p[a][1] - y0 > 0 && x1 - p[a][0] > 0 && y1 - p[a][1] > 0;
      inside_count += inside;
      const double q = quality[g][a].item<double>();
      INFO("gt " << g << " anchor " << a);
      // The same pair's quality in both (to ATen's vectorised-vs-scalar pow rounding, 1 ulp).
      if (inside)
        DOCTEST_CHECK(q == doctest::Approx(plain[g][a].item<double>()).epsilon(2e-7));
      else
        DOCTEST_CHECK(q == -1.0);
    }
  }
  DOCTEST_CHECK(inside_count > 0);
}

TEST_CASE("poto's prior pairs on the CPU are the nonzeros of the ATen prior mask") {
  // Points on a grid of multiples of 8 that the boxes' edges hit exactly (strict bounds), −0,
  // NaN and infinite coordinates, NaN and infinite box edges, empty boxes, float, double and
  // mixed dtypes, with and without centre sampling.
  const auto grid = crowdloss::anchor_points({{10, 12}, {5, 6}}, {8, 16}, 0.0);  // 150 points
  const std::vector<double> strides{8, 16};
  const std::vector<int64_t> sizes{120, 30};
  int nonempty = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    torch::manual_seed(seed);
    auto points = grid.clone();
    auto boxes = (torch::randint(0, 12, {7, 2}) * 8).to(at::kFloat);
    boxes = torch::cat({boxes, boxes + (torch::randint(0, 6, {7, 2}) * 8).to(at::kFloat)}, 1);  // some empty
    if (seed % 4 == 1) {
      const float inf = std::numeric_limits<float>::infinity();
      points[3][0] = std::numeric_limits<float>::quiet_NaN();
      points[7][1] = inf;
      points[9][0] = -0.0f;
      points[11][0] = inf;
      boxes[0][0] = 0.0f;  // x0 = +0 against the point at −0
      boxes[2][1] = std::numeric_limits<float>::quiet_NaN();
      boxes[4][2] = inf;
      boxes[5][0] = -inf;
    }
    if (seed % 4 == 2) boxes = boxes.to(at::kDouble) + 0.5;  // mixed dtypes: compared in double
    if (seed % 4 == 3) points = points.to(at::kDouble) - 0.25;
    const double radius = seed % 3 == 0 ? 1.5 : 0.0;
    INFO("seed " << seed << ", radius " << radius);
    const auto expected = crowdloss::detail::spatial_prior("t", points, boxes, radius, strides, sizes).nonzero();
    const auto pairs = crowdloss::detail::prior_pairs("t", points, boxes, radius, strides, sizes);
    DOCTEST_CHECK(at::equal(pairs, expected));
    nonempty += expected.size(0) > 0;
  }
  DOCTEST_CHECK(nonempty > 30);
  const auto none = crowdloss::detail::prior_pairs("t", grid, torch::zeros({0, 4}), 0.0, {}, {});
  DOCTEST_CHECK(none.sizes() == at::IntArrayRef({0, 2}));
}

TEST_CASE("poto_assign: its matching without the quality matrix is linear_sum_assignment's on it") {
  // poto_assign hands the prior's pairs to the LSA's sparse search; the reference builds
  // poto_quality's matrix and solves it. Random images, plain and with many ties (probabilities
  // on a coarse grid, every predicted box the same), with and without centre sampling.
  for (uint64_t seed = 0; seed < 60; ++seed) {
    auto img = random_image(1 + static_cast<int64_t>(seed % 30), 2, 100 + seed);
    if (seed % 2 == 1) {
      img.cls_prob = (img.cls_prob * 4).round() / 4;
      img.pred_boxes = img.pred_boxes[0].expand_as(img.pred_boxes).contiguous();
    }
    auto opts = crowdloss::POTOAssignOptions();
    if (seed % 3 == 2) opts.center_sampling_radius(2.5).strides({8, 16}).level_sizes({192, 48});
    if (seed % 5 == 4) {  // float64 inputs
      img.cls_prob = img.cls_prob.to(at::kDouble);
      img.pred_boxes = img.pred_boxes.to(at::kDouble);
      img.points = img.points.to(at::kDouble);
      img.gt_boxes = img.gt_boxes.to(at::kDouble);
    }
    INFO("seed " << seed);
    const auto matched =
        crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
    const auto quality =
        crowdloss::poto_quality(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
    const auto [rows, cols] = crowdloss::linear_sum_assignment(quality, /*maximize=*/true);
    REQUIRE(rows.numel() == matched.numel());
    DOCTEST_CHECK(at::equal(matched, cols));
  }
}

TEST_CASE("poto_assign: one-to-one, and more gts than anchors") {
  const auto img = random_image(25, 2, 4);
  const auto matched = crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes);
  const auto unique = std::get<0>(at::_unique(matched));
  DOCTEST_CHECK(unique.numel() == 25);  // no anchor serves two gts
  // Three anchors, five gts: three matched, two get −1.
  const auto few =
      crowdloss::poto_assign(img.cls_prob.narrow(0, 0, 3), img.pred_boxes.narrow(0, 0, 3), img.points.narrow(0, 0, 3),
                             img.gt_boxes.narrow(0, 0, 5), img.gt_classes.narrow(0, 0, 5));
  DOCTEST_CHECK((few >= 0).sum().item<int64_t>() == 3);
  DOCTEST_CHECK((few == -1).sum().item<int64_t>() == 2);
  const auto none = crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, torch::zeros({0, 4}),
                                           torch::zeros({0}, torch::kLong));
  DOCTEST_CHECK(none.numel() == 0);
}

TEST_CASE("poto_aux_assign: top-k per level, mean + std threshold, inside the box, best gt wins") {
  const auto img = random_image(7, 3, 5);
  const std::vector<int64_t> sizes{192, 48};
  const int64_t topk = 9;
  const double alpha = 0.8;
  const auto opts = crowdloss::POTOAuxAssignOptions().alpha(alpha).topk(topk).level_sizes(sizes);
  const auto assigned =
      crowdloss::poto_aux_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, opts);
  REQUIRE(assigned.sizes() == at::IntArrayRef({240}));
  // Re-derived per gt with sorting and scalar arithmetic.
  const int64_t G = img.gt_boxes.size(0), A = img.points.size(0);
  const auto iou = crowdloss::box_iou(img.gt_boxes, img.pred_boxes);
  const auto inside = crowdloss::ltrb_targets(img.points, img.gt_boxes).amin(-1) > 0;
  std::vector<double> best_q(static_cast<size_t>(A), -1.0);
  std::vector<int64_t> expected(static_cast<size_t>(A), -1);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<double> q(static_cast<size_t>(A));
    for (int64_t a = 0; a < A; ++a)
      q[static_cast<size_t>(a)] =
          std::pow(img.cls_prob[a][img.gt_classes[g].item<int64_t>()].item<double>(), 1 - alpha) *
          std::pow(iou[g][a].item<double>(), alpha);
    std::vector<int64_t> cand;
    int64_t start = 0;
    for (const int64_t n : sizes) {
      std::vector<int64_t> idx(static_cast<size_t>(n));
      std::iota(idx.begin(), idx.end(), start);
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t x, int64_t y) { return q[static_cast<size_t>(x)] > q[static_cast<size_t>(y)]; });
      cand.insert(cand.end(), idx.begin(), idx.begin() + std::min(topk, n));
      start += n;
    }
    double mean = 0, var = 0;
    for (const auto a : cand) mean += q[static_cast<size_t>(a)];
    mean /= static_cast<double>(cand.size());
    for (const auto a : cand) var += std::pow(q[static_cast<size_t>(a)] - mean, 2);
    const double thr = mean + std::sqrt(var / static_cast<double>(cand.size() - 1));
    for (const auto a : cand) {
      const auto s = static_cast<size_t>(a);
      if (q[s] >= thr && inside[g][a].item<bool>() && q[s] > best_q[s]) best_q[s] = q[s], expected[s] = g;
    }
  }
  int64_t positives = 0;
  for (int64_t a = 0; a < A; ++a) {
    INFO("anchor " << a);
    DOCTEST_CHECK(assigned[a].item<int64_t>() == expected[static_cast<size_t>(a)]);
    positives += expected[static_cast<size_t>(a)] >= 0;
  }
  DOCTEST_CHECK(positives > 0);
  const auto none = crowdloss::poto_aux_assign(img.cls_prob, img.pred_boxes, img.points, torch::zeros({0, 4}),
                                               torch::zeros({0}, torch::kLong), opts);
  DOCTEST_CHECK(torch::equal(none, torch::full({240}, -1, torch::kLong)));
}

TEST_CASE("poto_assign and poto_aux_assign: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("POTO CPU/CUDA parity")) return;
  const auto img = random_image(10, 3, 6);
  const auto aux = crowdloss::POTOAuxAssignOptions().level_sizes({192, 48});
  const auto cpu = crowdloss::poto_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes);
  const auto cuda = crowdloss::poto_assign(img.cls_prob.cuda(), img.pred_boxes.cuda(), img.points.cuda(),
                                           img.gt_boxes.cuda(), img.gt_classes.cuda());
  DOCTEST_CHECK(cuda.device().is_cuda());
  DOCTEST_CHECK(torch::equal(cuda.cpu(), cpu));
  DOCTEST_CHECK(torch::equal(
      crowdloss::poto_aux_assign(img.cls_prob.cuda(), img.pred_boxes.cuda(), img.points.cuda(), img.gt_boxes.cuda(),
                                 img.gt_classes.cuda(), aux)
          .cpu(),
      crowdloss::poto_aux_assign(img.cls_prob, img.pred_boxes, img.points, img.gt_boxes, img.gt_classes, aux)));
}

TEST_CASE("poto_assign, poto_quality, poto_aux_assign: bad inputs throw c10::Error naming the function and the value") {
  const auto img = random_image(4, 3, 7);
  // Named references, not a structured binding: lambdas cannot capture those before C++20.
  const auto &p = img.cls_prob, &b = img.pred_boxes, &pts = img.points, &gb = img.gt_boxes, &gc = img.gt_classes;
  check_error([&] { crowdloss::poto_assign(p.view({-1}), b, pts, gb, gc); }, {"poto_assign", "cls_prob", "[720]"});
  check_error([&] { crowdloss::poto_assign(p, b.narrow(0, 0, 10), pts, gb, gc); },
              {"poto_assign", "pred_boxes", "(240, 4)", "[10, 4]"});
  check_error([&] { crowdloss::poto_assign(p, b, pts.narrow(0, 0, 7), gb, gc); },
              {"poto_assign", "points has 7 anchors"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb.narrow(1, 0, 3), gc); },
              {"poto_assign", "gt_boxes", "[4, 3]"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc.narrow(0, 0, 2)); },
              {"poto_assign", "gt_classes", "(4)", "[2]"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc.to(at::kInt)); }, {"poto_assign", "int64", "Int"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc + 3); }, {"poto_assign", "[0, 3)"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc - 1 - gc); }, {"poto_assign", "-1"});
  check_error([&] { crowdloss::poto_assign(p.to(at::kInt), b, pts, gb, gc); }, {"poto_assign", "cls_prob", "Int"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb.to(at::kMeta), gc); }, {"poto_assign", "gt_boxes", "meta"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc, crowdloss::POTOAssignOptions().alpha(1.5)); },
              {"poto_assign", "alpha", "1.5"});
  check_error([&] { crowdloss::poto_assign(p, b, pts, gb, gc, crowdloss::POTOAssignOptions().alpha(-0.1)); },
              {"poto_assign", "alpha", "-0.1"});
  check_error(
      [&] { crowdloss::poto_assign(p, b, pts, gb, gc, crowdloss::POTOAssignOptions().center_sampling_radius(-1)); },
      {"poto_assign", "radius", "-1"});
  check_error(
      [&] { crowdloss::poto_assign(p, b, pts, gb, gc, crowdloss::POTOAssignOptions().center_sampling_radius(1.5)); },
      {"poto_assign", "level_sizes"});
  check_error(
      [&] {
        crowdloss::poto_assign(
            p, b, pts, gb, gc,
            crowdloss::POTOAssignOptions().center_sampling_radius(1.5).level_sizes({192, 48}).strides({8}));
      },
      {"poto_assign", "1 strides for 2 levels"});
  check_error(
      [&] {
        crowdloss::poto_assign(
            p, b, pts, gb, gc,
            crowdloss::POTOAssignOptions().center_sampling_radius(1.5).level_sizes({192, 40}).strides({8, 16}));
      },
      {"poto_assign", "232", "240"});
  check_error([&] { crowdloss::poto_quality(p, b, pts, gb, gc + 5); }, {"poto_quality", "[0, 3)"});
  const auto aux = crowdloss::POTOAuxAssignOptions().level_sizes({192, 48});
  check_error([&] { crowdloss::poto_aux_assign(p, b, pts, gb, gc, crowdloss::POTOAuxAssignOptions()); },
              {"poto_aux_assign", "level_sizes"});
  check_error([&] { crowdloss::poto_aux_assign(p, b, pts, gb, gc, crowdloss::POTOAuxAssignOptions(aux).topk(0)); },
              {"poto_aux_assign", "topk", "0"});
  check_error([&] { crowdloss::poto_aux_assign(p, b, pts, gb, gc, crowdloss::POTOAuxAssignOptions(aux).alpha(2)); },
              {"poto_aux_assign", "alpha", "2"});
  check_error(
      [&] { crowdloss::poto_aux_assign(p, b, pts, gb, gc, crowdloss::POTOAuxAssignOptions().level_sizes({100})); },
      {"poto_aux_assign", "100", "240"});
  // A gt box with a NaN or infinite coordinate: an error naming the function the user called
  // (it used to surface as linear_sum_assignment's) and the gt.
  auto nan_box = gb.clone();
  nan_box[2][3] = NAN;
  check_error([&] { crowdloss::poto_assign(p, b, pts, nan_box, gc); },
              {"poto_assign", "gt_boxes[2] is not finite", "nan"});
  check_error(
      [&] {
        crowdloss::poto_assign(p, b, pts, nan_box, gc, crowdloss::POTOAssignOptions().matcher(crowdloss::kArgmax));
      },
      {"poto_assign", "gt_boxes[2]"});
  check_error([&] { crowdloss::poto_quality(p, b, pts, nan_box, gc); }, {"poto_quality", "gt_boxes[2]"});
  check_error([&] { crowdloss::poto_aux_assign(p, b, pts, nan_box, gc, aux); }, {"poto_aux_assign", "gt_boxes[2]"});
  nan_box[2][3] = -INFINITY;
  check_error([&] { crowdloss::poto_assign(p, b, pts, nan_box, gc); }, {"poto_assign", "gt_boxes[2]", "-inf"});
}
