#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;

namespace {

// The largest number of one-to-one pairs within their gt's threshold, by trying every matching.
int64_t brute_force_matches(const at::Tensor& p, const at::Tensor& g, const at::Tensor& t) {
  const int64_t P = p.size(0), N = g.size(0);
  std::vector<bool> used(static_cast<size_t>(N), false);
  std::function<int64_t(int64_t)> best = [&](int64_t i) -> int64_t {
    if (i == P) return 0;
    int64_t most = best(i + 1);  // prediction i unmatched
    for (int64_t n = 0; n < N; ++n) {
      if (used[static_cast<size_t>(n)]) continue;
      if ((p[i] - g[n]).norm().item<double>() > t[n].item<double>()) continue;
      used[static_cast<size_t>(n)] = true;
      most = std::max(most, 1 + best(i + 1));
      used[static_cast<size_t>(n)] = false;
    }
    return most;
  };
  return best(0);
}

}  // namespace

TEST_CASE("point_match: equals P2PNet's HungarianMatcher_Crowd with SciPy's indices (oracle)") {
  const auto oracle = crowdloss_test::load_json("beyond.json");
  int checked = 0;
  for (const auto& c : oracle.at("point_match")) {
    const auto name = c.at("name").get<std::string>();
    DOCTEST_CAPTURE(name);
    std::vector<at::Tensor> gt;
    for (const auto& g : c.at("gt_points")) gt.push_back(tensor_from_json(g));
    const auto& o = c.at("options");
    const auto matches =
        crowdloss::point_match(tensor_from_json(c.at("scores")), tensor_from_json(c.at("pred_points")), gt,
                               crowdloss::PointMatchOptions()
                                   .class_weight(o.at("class_weight").get<double>())
                                   .point_weight(o.at("point_weight").get<double>()));
    const auto& e = c.at("expected");
    REQUIRE(matches.size() == e.at("pred_index").size());
    for (size_t b = 0; b < matches.size(); ++b) {
      DOCTEST_CHECK(torch::equal(std::get<0>(matches[b]), tensor_from_json(e.at("pred_index")[b])));
      DOCTEST_CHECK(torch::equal(std::get<1>(matches[b]), tensor_from_json(e.at("gt_index")[b])));
    }
    ++checked;
  }
  DOCTEST_CHECK(checked >= 2);
}

TEST_CASE("point_match: hand-derived matches, the cost's two terms, empty images") {
  // Two queries at (0, 0) and (10, 0); gts at (9, 0) and (1, 0). By distance: query 0 ↔ gt 1,
  // query 1 ↔ gt 0. A confident query 1 (person logit 5) does not change a one-to-one matching
  // whose class cost is the same for every gt of a query.
  const auto points = torch::tensor({0.0, 0.0, 10.0, 0.0}, torch::kFloat64).view({1, 2, 2});
  const auto scores = torch::tensor({0.0, 0.0, 0.0, 5.0}, torch::kFloat64).view({1, 2, 2});
  const std::vector<at::Tensor> gt = {torch::tensor({9.0, 0.0, 1.0, 0.0}, torch::kFloat64).view({2, 2})};
  const auto m = crowdloss::point_match(scores, points, gt);
  DOCTEST_CHECK(torch::equal(std::get<0>(m[0]), torch::tensor({0, 1}, torch::kLong)));
  DOCTEST_CHECK(torch::equal(std::get<1>(m[0]), torch::tensor({1, 0}, torch::kLong)));
  // One gt, two queries at the same distance (5): the more confident query wins it.
  const auto same = torch::tensor({0.0, 0.0, 0.0, 10.0}, torch::kFloat64).view({1, 2, 2});
  const std::vector<at::Tensor> middle = {torch::tensor({0.0, 5.0}, torch::kFloat64).view({1, 2})};
  const auto won = crowdloss::point_match(scores, same, middle);
  DOCTEST_CHECK(torch::equal(std::get<0>(won[0]), torch::tensor({1}, torch::kLong)));
  // Query 0 is 1 pixel nearer (4 vs 5 → 0.05 cheaper) but query 1 is surer (softmax of 5 vs 0:
  // 0.993 vs 0.5 → 0.49 cheaper): class weight 1 picks query 1, class weight 0 query 0.
  const auto nearer = torch::tensor({0.0, 1.0, 0.0, 10.0}, torch::kFloat64).view({1, 2, 2});
  DOCTEST_CHECK(std::get<0>(crowdloss::point_match(scores, nearer, middle)[0]).item<int64_t>() == 1);
  DOCTEST_CHECK(std::get<0>(crowdloss::point_match(scores, nearer, middle,
                                                   crowdloss::PointMatchOptions().class_weight(0).point_weight(1))[0])
                    .item<int64_t>() == 0);
  // A batch with an image without points: two empty int64 tensors for it.
  const auto batch_scores = torch::zeros({2, 3, 2}, torch::kFloat32), batch_points = torch::rand({2, 3, 2}) * 50;
  const auto mixed =
      crowdloss::point_match(batch_scores, batch_points, {torch::rand({2, 2}) * 50, torch::zeros({0, 2})});
  DOCTEST_CHECK(std::get<0>(mixed[0]).numel() == 2);
  DOCTEST_CHECK(std::get<0>(mixed[1]).numel() == 0);
  DOCTEST_CHECK((std::get<1>(mixed[1]).scalar_type() == at::kLong));
}

TEST_CASE("point_match: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("point_match CPU/CUDA parity")) return;
  torch::manual_seed(3);
  const auto scores = torch::randn({3, 40, 2}), points = torch::rand({3, 40, 2}) * 100;
  const std::vector<at::Tensor> gt = {torch::rand({30, 2}) * 100, torch::zeros({0, 2}), torch::rand({50, 2}) * 100};
  std::vector<at::Tensor> gt_cuda;
  for (const auto& g : gt) gt_cuda.push_back(g.cuda());
  const auto cpu = crowdloss::point_match(scores, points, gt),
             cuda = crowdloss::point_match(scores.cuda(), points.cuda(), gt_cuda);
  for (size_t b = 0; b < gt.size(); ++b) {
    DOCTEST_CHECK(torch::equal(std::get<0>(cpu[b]), std::get<0>(cuda[b])));
    DOCTEST_CHECK(torch::equal(std::get<1>(cpu[b]), std::get<1>(cuda[b])));
  }
}

TEST_CASE("point_match: every bad input throws c10::Error naming the function and the value") {
  const auto scores = torch::zeros({2, 3, 2}), points = torch::zeros({2, 3, 2});
  const std::vector<at::Tensor> gt = {torch::zeros({1, 2}), torch::zeros({2, 2})};
  using O = crowdloss::PointMatchOptions;
  check_error([&] { crowdloss::point_match(scores[0], points, gt); }, {"point_match", "scores", "[3, 2]"});
  check_error([&] { crowdloss::point_match(scores, points.narrow(1, 0, 2), gt); },
              {"point_match", "pred_points", "[2, 2, 2]"});
  check_error([&] { crowdloss::point_match(scores, points, {gt[0]}); }, {"point_match", "2 gt_points", "got 1"});
  check_error(
      [&] {
        crowdloss::point_match(scores, points, {gt[0], torch::zeros({2, 3})});
      },
      {"point_match", "gt_points[1]", "[2, 3]"});
  check_error([&] { crowdloss::point_match(scores, points.to(at::kDouble), gt); }, {"point_match", "Double"});
  check_error(
      [&] {
        crowdloss::point_match(scores, points, {gt[0], gt[1].to(at::kDouble)});
      },
      {"point_match", "gt_points[1]", "Double"});
  check_error([&] { crowdloss::point_match(scores.to(at::kLong), points.to(at::kLong), gt); }, {"point_match", "Long"});
  check_error([&] { crowdloss::point_match(scores, points, gt, O().class_weight(-1)); },
              {"point_match", "class_weight", "-1"});
  check_error([&] { crowdloss::point_match(scores, points, gt, O().point_weight(NAN)); },
              {"point_match", "point_weight", "nan"});
  check_error([&] { crowdloss::point_match(scores, points, gt, O().class_weight(0).point_weight(0)); },
              {"point_match", "both be 0"});
  auto nan_scores = scores.clone();
  nan_scores[1][2][0] = NAN;
  check_error([&] { crowdloss::point_match(nan_scores, points, gt); }, {"point_match", "image 1"});
  auto inf_gt = gt[1].clone();
  inf_gt[1][0] = INFINITY;
  check_error([&] { crowdloss::point_match(scores, points, {gt[0], inf_gt}); }, {"point_match", "gt_points[1] row 1"});
}

TEST_CASE("localization_metrics: hand-derived counts and rates, per-point thresholds, accumulation") {
  const auto pred = torch::tensor({0.0, 0.0, 10.0, 0.0, 30.0, 30.0}, torch::kFloat64).view({3, 2});
  const auto gt = torch::tensor({1.0, 0.0, 11.5, 0.0, 50.0, 50.0, 0.0, 1.0}, torch::kFloat64).view({4, 2});
  // Within 2 pixels: (0,0)–(1,0) or (0,0)–(0,1), and (10,0)–(11.5,0): TP 2, FP 1, FN 2.
  const auto m = crowdloss::localization_metrics(pred, gt, 2.0);
  DOCTEST_CHECK(m.true_positives == 2);
  DOCTEST_CHECK(m.false_positives == 1);
  DOCTEST_CHECK(m.false_negatives == 2);
  DOCTEST_CHECK(m.precision() == doctest::Approx(2.0 / 3));
  DOCTEST_CHECK(m.recall() == doctest::Approx(0.5));
  DOCTEST_CHECK(m.f1() == doctest::Approx(2 * (2.0 / 3) * 0.5 / (2.0 / 3 + 0.5)));
  // The threshold is inclusive; per-point thresholds: only gt 1's (1.5) admits (10, 0).
  DOCTEST_CHECK(crowdloss::localization_metrics(pred, gt, 1.0).true_positives == 1);
  const auto per_point = torch::tensor({0.5, 1.5, 0.0, 0.5}, torch::kFloat64);
  DOCTEST_CHECK(crowdloss::localization_metrics(pred, gt, per_point).true_positives == 1);
  // Empty sides: no predictions → precision 0 (not NaN), recall 0.
  crowdloss::LocalizationMetrics total = crowdloss::localization_metrics(torch::zeros({0, 2}), gt.to(at::kFloat), 5.0);
  DOCTEST_CHECK(total.false_negatives == 4);
  DOCTEST_CHECK(total.precision() == 0.0);
  DOCTEST_CHECK(total.f1() == 0.0);
  total += m;
  DOCTEST_CHECK(total.true_positives == 2);
  DOCTEST_CHECK(total.false_negatives == 6);
  DOCTEST_CHECK(total.recall() == doctest::Approx(0.25));
}

TEST_CASE("localization_metrics: the largest matching within the thresholds, as brute force finds it") {
  torch::manual_seed(7);
  for (int trial = 0; trial < 40; ++trial) {
    DOCTEST_CAPTURE(trial);
    const int64_t P = torch::randint(0, 6, {1}).item<int64_t>(), N = torch::randint(0, 6, {1}).item<int64_t>();
    const auto p = torch::rand({P, 2}, torch::kFloat64) * 10, g = torch::rand({N, 2}, torch::kFloat64) * 10;
    const auto t = torch::rand({N}, torch::kFloat64) * 6;
    const auto m = crowdloss::localization_metrics(p, g, t);
    DOCTEST_CHECK(m.true_positives == brute_force_matches(p, g, t));
    DOCTEST_CHECK(m.false_positives == P - m.true_positives);
    DOCTEST_CHECK(m.false_negatives == N - m.true_positives);
  }
}

TEST_CASE("localization_metrics: every bad input throws c10::Error naming the function and the value") {
  const auto p = torch::zeros({2, 2}), g = torch::zeros({3, 2});
  check_error([&] { crowdloss::localization_metrics(p.view({4}), g, 1.0); },
              {"localization_metrics", "pred_points", "[4]"});
  check_error(
      [&] {
        crowdloss::localization_metrics(p, g.view({2, 3}), 1.0);
      },
      {"localization_metrics", "gt_points", "[2, 3]"});
  check_error([&] { crowdloss::localization_metrics(p, g, -1.0); }, {"localization_metrics", "threshold", "-1"});
  check_error([&] { crowdloss::localization_metrics(p, g, torch::ones({2})); },
              {"localization_metrics", "thresholds", "[2]"});
  check_error([&] { crowdloss::localization_metrics(p, g, torch::full({3}, NAN)); }, {"localization_metrics", "nan"});
  check_error([&] { crowdloss::localization_metrics(p.to(at::kInt), g, 1.0); }, {"localization_metrics", "Int"});
  auto bad = g.clone();
  bad[2][1] = NAN;
  check_error([&] { crowdloss::localization_metrics(p, bad, 1.0); }, {"localization_metrics", "gt_points row 2"});
}
