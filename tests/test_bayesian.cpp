#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;

namespace {

// The Bayesian loss of one image without the background, by loops in double: cell centres
// i·s + s/2, posteriors softmax_k(−‖z_k − c_m‖² / 2σ²), |1 − Σ_m pred_m·p(k | m)| per head.
double loop_loss(const at::Tensor& pred, const at::Tensor& heads, int64_t s, double sigma) {
  const int64_t h = pred.size(2), w = pred.size(3), n = heads.size(0);
  std::vector<double> count(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) {
      const double cy = static_cast<double>(i * s) + s / 2.0, cx = static_cast<double>(j * s) + s / 2.0;
      std::vector<double> e(static_cast<size_t>(n));
      double total = 0;
      for (int64_t k = 0; k < n; ++k) {
        const double dx = heads[k][0].item<double>() - cx, dy = heads[k][1].item<double>() - cy;
        e[static_cast<size_t>(k)] = std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
        total += e[static_cast<size_t>(k)];
      }
      for (int64_t k = 0; k < n; ++k)
        count[static_cast<size_t>(k)] += pred[0][0][i][j].item<double>() * e[static_cast<size_t>(k)] / total;
    }
  double loss = 0;
  for (const double c : count) loss += std::abs(1 - c);
  return loss;
}

}  // namespace

TEST_CASE("bayesian_loss: matches the authors' Post_Prob + Bay_Loss (values, gradients)") {
  const auto oracle = crowdloss_test::load_json("beyond.json");
  int checked = 0;
  for (const auto& c : oracle.at("bayesian")) {
    const auto name = c.at("name").get<std::string>();
    DOCTEST_CAPTURE(name);
    const auto& o = c.at("options");
    const auto opts = crowdloss::BayesianLossOptions()
                          .stride(o.at("stride").get<int64_t>())
                          .sigma(o.at("sigma").get<double>())
                          .use_background(o.at("use_background").get<bool>())
                          .background_ratio(o.at("background_ratio").get<double>())
                          .shorter_sides(o.at("shorter_sides").get<std::vector<double>>());
    const auto pred = tensor_from_json(c.at("pred")).requires_grad_(true);
    std::vector<at::Tensor> points;
    for (const auto& p : c.at("points")) points.push_back(tensor_from_json(p));
    const auto loss = crowdloss::bayesian_loss(pred, points, opts);
    const auto& e = c.at("expected");
    const double expected = e.at("loss").get<double>();
    DOCTEST_CHECK(std::abs(loss.item<double>() - expected) <= 1e-9 * std::abs(expected));
    loss.backward();
    DOCTEST_CHECK(crowdloss_test::scaled_error(pred.grad(), tensor_from_json(e.at("grad_pred"))) < 1e-9);
    ++checked;
  }
  DOCTEST_CHECK(checked >= 2);
}

TEST_CASE("bayesian_loss: hand-derived values, non-square maps, the batch mean") {
  torch::manual_seed(1);
  const auto pred = torch::rand({1, 1, 3, 5}, torch::kFloat64);
  using O = crowdloss::BayesianLossOptions;
  // One head and no background: the posterior is 1 everywhere, the loss |1 − Σ pred|.
  const std::vector<at::Tensor> one = {torch::tensor({7.0, 3.0}, torch::kFloat64).view({1, 2})};
  DOCTEST_CHECK(crowdloss::bayesian_loss(pred, one, O().use_background(false)).item<double>() ==
                doctest::Approx(std::abs(1 - pred.sum().item<double>())).epsilon(1e-14));
  // Three heads on a 3×5 map (24×40 pixels), no background: the loop's value.
  const auto heads = torch::tensor({2.0, 3.0, 30.0, 20.0, 17.5, 9.0}, torch::kFloat64).view({3, 2});
  DOCTEST_CHECK(crowdloss::bayesian_loss(pred, {heads}, O().use_background(false).sigma(6)).item<double>() ==
                doctest::Approx(loop_loss(pred, heads, 8, 6)).epsilon(1e-12));
  // An image without heads adds |Σ pred|; the loss is the mean over the batch.
  const auto two = torch::rand({2, 1, 3, 5}, torch::kFloat64);
  const std::vector<at::Tensor> with_empty = {heads, torch::zeros({0, 2}, torch::kFloat64)};
  const double first = crowdloss::bayesian_loss(two.narrow(0, 0, 1), {heads}).item<double>();
  DOCTEST_CHECK(crowdloss::bayesian_loss(two, with_empty).item<double>() ==
                doctest::Approx((first + two[1].sum().item<double>()) / 2).epsilon(1e-14));
  // The background row takes what lies far from every head: the loss changes with its ratio.
  DOCTEST_CHECK(crowdloss::bayesian_loss(pred, {heads}).item<double>() !=
                doctest::Approx(crowdloss::bayesian_loss(pred, {heads}, O().background_ratio(0.1)).item<double>()));
}

TEST_CASE("bayesian_loss: gradients in float64 match finite differences") {
  torch::manual_seed(2);
  const auto pred = torch::rand({2, 1, 6, 7}, torch::kFloat64);
  const std::vector<at::Tensor> heads = {torch::rand({5, 2}, torch::kFloat64) * 48,
                                         torch::rand({2, 2}, torch::kFloat64) * 48};
  const auto opts = crowdloss::BayesianLossOptions().shorter_sides({300.0, 200.0});
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&](const at::Tensor& p) { return crowdloss::bayesian_loss(p, heads, opts); }, pred) < 1e-8);
}

TEST_CASE("BayesianLoss prints every option and equals bayesian_loss, also in half precision") {
  std::ostringstream text;
  text << *crowdloss::BayesianLoss(crowdloss::BayesianLossOptions().shorter_sides({512, 300}));
  DOCTEST_CHECK(text.str() ==
                "crowdloss::BayesianLoss(stride=8, sigma=8, use_background=true, background_ratio=1, "
                "shorter_sides=[512, 300])");
  torch::manual_seed(3);
  const auto pred = torch::rand({2, 1, 8, 8});
  const std::vector<at::Tensor> heads = {torch::rand({4, 2}) * 64, torch::rand({9, 2}) * 64};
  crowdloss::BayesianLoss loss;
  DOCTEST_CHECK(torch::equal(loss(pred, heads), crowdloss::bayesian_loss(pred, heads)));
  const auto half = crowdloss::bayesian_loss(pred.to(at::kHalf), heads);
  DOCTEST_CHECK((half.scalar_type() == at::kHalf));
  DOCTEST_CHECK(
      half.item<double>() ==
      doctest::Approx(crowdloss::bayesian_loss(pred.to(at::kHalf).to(at::kFloat), heads).item<double>()).epsilon(1e-3));
  check_error([] { crowdloss::BayesianLoss(crowdloss::BayesianLossOptions().sigma(0)); }, {"BayesianLoss", "sigma"});
}

TEST_CASE("bayesian_loss: the padded batch path equals the image-by-image reference in float64") {
  // Images without heads, very different head counts, with and without the background row, given
  // shorter sides, non-square maps.
  struct Scene {
    int64_t h, w;
    std::vector<int64_t> heads;
    bool background;
    std::vector<double> sides;
  };
  const std::vector<Scene> scenes = {{8, 8, {5, 0, 17, 1}, true, {}},
                                     {6, 11, {3, 30, 2}, false, {}},
                                     {12, 7, {40, 9}, true, {300.0, 80.0}},
                                     {5, 5, {0, 0}, true, {}}};
  torch::manual_seed(3);
  for (size_t k = 0; k < scenes.size(); ++k) {
    const auto& sc = scenes[k];
    DOCTEST_CAPTURE(k);
    const auto B = static_cast<int64_t>(sc.heads.size());
    const auto pred = torch::rand({B, 1, sc.h, sc.w}, torch::kFloat64);
    std::vector<at::Tensor> heads;
    for (const int64_t n : sc.heads)
      heads.push_back(torch::rand({n, 2}, torch::kFloat64) *
                      torch::tensor({static_cast<double>(sc.w * 8), static_cast<double>(sc.h * 8)}, torch::kFloat64));
    const auto opts = crowdloss::BayesianLossOptions().use_background(sc.background);
    std::vector<double> sides = sc.sides;
    if (sides.empty()) sides.assign(static_cast<size_t>(B), static_cast<double>(std::min(sc.h, sc.w) * 8));
    std::vector<at::Tensor> values, grads;
    for (const bool batched : {false, true}) {
      const auto density = pred.flatten(1).clone().requires_grad_(true);
      const crowdloss::detail::BayesianInputs in{density, heads, sc.h, sc.w, opts, sides};
      const auto sum =
          batched ? crowdloss::detail::bayesian_sum_batched(in) : crowdloss::detail::bayesian_sum_reference(in);
      sum.backward();
      values.push_back(sum.detach()), grads.push_back(density.grad());
    }
    const double value_error = std::abs(values[1].item<double>() - values[0].item<double>()) /
                               std::max(1.0, std::abs(values[0].item<double>()));
    const double grad_error = crowdloss_test::scaled_error(grads[1], grads[0]);
    MESSAGE("scene " << k << ": value error " << value_error << ", gradient error " << grad_error);
    DOCTEST_CHECK(value_error < 1e-13);
    DOCTEST_CHECK(grad_error < 1e-13);
  }
}

TEST_CASE("bayesian_loss: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("bayesian_loss CPU/CUDA parity")) return;
  torch::manual_seed(4);
  const auto pred = torch::rand({3, 1, 16, 12}, torch::kFloat64);
  const std::vector<at::Tensor> heads = {torch::rand({20, 2}, torch::kFloat64) * 96,
                                         torch::zeros({0, 2}, torch::kFloat64),
                                         torch::rand({7, 2}, torch::kFloat64) * 96};
  std::vector<at::Tensor> on_gpu;
  for (const auto& p : heads) on_gpu.push_back(p.cuda());
  DOCTEST_CHECK(crowdloss::bayesian_loss(pred.cuda(), on_gpu).item<double>() ==
                doctest::Approx(crowdloss::bayesian_loss(pred, heads).item<double>()).epsilon(1e-12));
}

TEST_CASE("bayesian_loss: every bad input throws c10::Error naming the function and the value") {
  const auto pred = torch::rand({2, 1, 4, 4});
  const std::vector<at::Tensor> heads = {torch::rand({3, 2}) * 32, torch::rand({1, 2}) * 32};
  using O = crowdloss::BayesianLossOptions;
  check_error([&] { crowdloss::bayesian_loss(pred.expand({2, 2, 4, 4}), heads); }, {"bayesian_loss", "[2, 2, 4, 4]"});
  check_error([&] { crowdloss::bayesian_loss(pred, {heads[0]}); }, {"bayesian_loss", "2 point tensors", "got 1"});
  check_error(
      [&] {
        crowdloss::bayesian_loss(pred, {heads[0], torch::rand({2, 3})});
      },
      {"bayesian_loss", "points[1]", "[2, 3]"});
  check_error([&] { crowdloss::bayesian_loss(pred.to(at::kInt), heads); }, {"bayesian_loss", "Int"});
  check_error(
      [&] {
        crowdloss::bayesian_loss(pred, {heads[0], torch::tensor({{33.0f, 1.0f}})});
      },
      {"bayesian_loss", "points[1][0]", "33", "32x32"});
  check_error(
      [&] {
        crowdloss::bayesian_loss(pred, {heads[0], torch::tensor({{1.0f, NAN}})});
      },
      {"bayesian_loss", "points[1][0]", "nan"});
  check_error(
      [&] {
        crowdloss::bayesian_loss(pred, {torch::tensor({{1.0f, -0.5f}}), heads[1]});
      },
      {"bayesian_loss", "points[0][0]", "-0.5"});
  check_error([&] { crowdloss::bayesian_loss(pred, heads, O().shorter_sides({100.0})); },
              {"bayesian_loss", "shorter_sides", "got 1"});
  check_error(
      [&] {
        crowdloss::bayesian_loss(pred, heads, O().shorter_sides({100.0, -1.0}));
      },
      {"bayesian_loss", "-1"});
  check_error([&] { crowdloss::bayesian_loss(pred, heads, O().stride(0)); }, {"bayesian_loss", "stride", "0"});
  check_error([&] { crowdloss::bayesian_loss(pred, heads, O().sigma(-2)); }, {"bayesian_loss", "sigma", "-2"});
  check_error([&] { crowdloss::bayesian_loss(pred, heads, O().background_ratio(0)); },
              {"bayesian_loss", "background_ratio"});
}
