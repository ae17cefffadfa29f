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

crowdloss::DMCountOptions dm_count_options(const crowdloss_test::json& o) {
  return crowdloss::DMCountOptions()
      .stride(o.at("stride").get<int64_t>())
      .ot_weight(o.at("ot_weight").get<double>())
      .tv_weight(o.at("tv_weight").get<double>())
      .reg(o.at("reg").get<double>())
      .sinkhorn_iterations(o.at("sinkhorn_iterations").get<int64_t>())
      .norm_coordinates(o.at("norm_coordinates").get<bool>());
}

double rel(double actual, double expected) {
  return expected == 0 ? std::abs(actual) : std::abs(actual - expected) / std::abs(expected);
}

}  // namespace

TEST_CASE("dm_count_loss: matches DM-Count's training step (terms, Wasserstein distance, gradient, TV target)") {
  // Tolerances stated in tests/data/README.md.
  const auto oracle = crowdloss_test::load_json("beyond.json");
  int checked = 0;
  for (const auto& c : oracle.at("dm_count")) {
    const auto name = c.at("name").get<std::string>();
    DOCTEST_CAPTURE(name);
    const auto opts = dm_count_options(c.at("options"));
    const auto pred = tensor_from_json(c.at("pred")).requires_grad_(true);
    std::vector<at::Tensor> points;
    for (const auto& p : c.at("points")) points.push_back(tensor_from_json(p));
    const auto t = crowdloss::dm_count_loss_terms(pred, points, opts);
    const auto& e = c.at("expected");
    DOCTEST_CHECK(rel(t.count.item<double>(), e.at("count").get<double>()) < 1e-9);
    DOCTEST_CHECK(rel(t.tv.item<double>(), e.at("tv").get<double>()) < 1e-9);
    DOCTEST_CHECK(rel(t.total.item<double>(), e.at("total").get<double>()) < 1e-9);
    DOCTEST_CHECK(rel(t.wasserstein.item<double>(), e.at("wasserstein").get<double>()) < 1e-9);
    DOCTEST_CHECK(std::abs(t.ot.item<double>() - e.at("ot").get<double>()) <=
                  1e-9 * e.at("ot_abs_scale").get<double>());
    t.total.backward();
    DOCTEST_CHECK(crowdloss_test::scaled_error(pred.grad(), tensor_from_json(e.at("grad_pred"))) < 1e-9);
    const auto discrete = tensor_from_json(e.at("gt_discrete"));
    for (int64_t b = 0; b < pred.size(0); ++b)
      DOCTEST_CHECK(torch::equal(
          crowdloss::detail::dm_count_discrete_map(points[static_cast<size_t>(b)], pred.size(2), pred.size(3), 8),
          discrete[b][0]));
    DOCTEST_CHECK(torch::equal(crowdloss::dm_count_loss(pred, points, opts), t.total));
    ++checked;
  }
  DOCTEST_CHECK(checked >= 2);
}

TEST_CASE("dm_count_loss: hand-derived terms, the TV target's rounding, images without points") {
  using O = crowdloss::DMCountOptions;
  // One image, one head, a map holding 3 people in one cell: count |3 − 1|, TV 1·Σ|μ̂ − G/(1 + 1e-6)|.
  auto pred = torch::zeros({1, 1, 2, 2}, torch::kFloat64);
  pred[0][0][1][0] = 3.0;
  const std::vector<at::Tensor> one = {torch::tensor({4.0, 12.0}, torch::kFloat64).view({1, 2})};  // cell (1, 0)
  const auto t = crowdloss::dm_count_loss_terms(pred, one, O().stride(8));
  DOCTEST_CHECK(t.count.item<double>() == doctest::Approx(2.0).epsilon(1e-15));
  const double mu_hat = 3.0 / (3.0 + 1e-6), g = 1.0 / (1.0 + 1e-6);
  DOCTEST_CHECK(t.tv.item<double>() == doctest::Approx(0.01 * std::abs(mu_hat - g)).epsilon(1e-12));
  DOCTEST_CHECK(std::abs(t.ot.item<double>()) < 1e-9);
  // The TV target: NumPy's half-to-even rounding at full resolution, clamped to the image.
  const auto points = torch::tensor({7.6, 0.0, 4.5, 0.0, 16.0, 16.0, 12.5, 15.5}, torch::kFloat64).view({4, 2});
  const auto map = crowdloss::detail::dm_count_discrete_map(points, 2, 2, 8);
  // 7.6 → 8 (cell 1); 4.5 → 4 (cell 0); 16 → clamped to 15 (cell 1); 12.5 → 12, 15.5 → 16 → 15.
  DOCTEST_CHECK(torch::equal(map, torch::tensor({1.0, 1.0, 0.0, 2.0}, torch::kFloat64).view({2, 2})));
  // An image without points adds |S| / B only; a zero map with points stays finite.
  const auto two = torch::rand({2, 1, 4, 4}, torch::kFloat64);
  const std::vector<at::Tensor> mixed = {torch::rand({3, 2}, torch::kFloat64) * 32,
                                         torch::zeros({0, 2}, torch::kFloat64)};
  const auto alone = crowdloss::dm_count_loss_terms(two.narrow(0, 0, 1), {mixed[0]});
  const auto both = crowdloss::dm_count_loss_terms(two, mixed);
  DOCTEST_CHECK(both.count.item<double>() ==
                doctest::Approx((alone.count.item<double>() + two[1].sum().item<double>()) / 2).epsilon(1e-14));
  DOCTEST_CHECK(both.tv.item<double>() == doctest::Approx(alone.tv.item<double>() / 2).epsilon(1e-14));
  const auto zero = torch::zeros({1, 1, 6, 6}, torch::kFloat64).requires_grad_(true);
  const auto z = crowdloss::dm_count_loss_terms(zero, {torch::rand({5, 2}, torch::kFloat64) * 48});
  z.total.backward();
  DOCTEST_CHECK(std::isfinite(z.total.item<double>()));
  DOCTEST_CHECK(std::isfinite(z.wasserstein.item<double>()));
  DOCTEST_CHECK(zero.grad().isfinite().all().item<bool>());
}

TEST_CASE("dm_count_loss: the OT gradient is DM-Count's closed form, the rest autograd's") {
  torch::manual_seed(1);
  const auto pred = torch::rand({2, 1, 5, 5}, torch::kFloat64) + 0.1;
  const std::vector<at::Tensor> heads = {torch::rand({4, 2}, torch::kFloat64) * 40,
                                         torch::rand({2, 2}, torch::kFloat64) * 40};
  // Without the OT term the loss is an ordinary function of pred: finite differences agree.
  const auto no_ot = crowdloss::DMCountOptions().ot_weight(0);
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&](const at::Tensor& p) { return crowdloss::dm_count_loss(p, heads, no_ot); }, pred) < 1e-7);
  // The OT term's gradient is ot_weight · g with g = (S·β − ⟨μ, β⟩) / (S² + 1e-8): its sum
  // against μ is 0 (the value of the term), and it is unchanged by adding a constant to β.
  const auto only_ot = crowdloss::DMCountOptions().tv_weight(0);
  auto leaf = pred.clone().requires_grad_(true);
  auto t = crowdloss::dm_count_loss_terms(leaf, heads, only_ot);
  (t.ot).backward();
  for (int64_t b = 0; b < 2; ++b) DOCTEST_CHECK(std::abs((leaf.grad()[b] * pred[b]).sum().item<double>()) < 1e-10);
  // More Sinkhorn iterations change the plan (it has not converged after 1).
  const auto early = crowdloss::dm_count_loss_terms(pred, heads, crowdloss::DMCountOptions().sinkhorn_iterations(1));
  DOCTEST_CHECK(early.wasserstein.item<double>() != doctest::Approx(t.wasserstein.item<double>()));
}

TEST_CASE("dm_count_loss: the separable OT solves, batched or not, equal the reference in float64") {
  // Random scenes: images without points, sparse and zero maps, non-square maps, normalised
  // coordinates, a sharp kernel, and iteration limits around the error tests (every 10th).
  struct Scene {
    int64_t h, w;
    std::vector<int64_t> heads;  // per image
    double reg, sparsity;        // sparsity: the share of cells set to 0
    int64_t iterations;
    bool norm;
  };
  const std::vector<Scene> scenes = {
      {8, 8, {5, 0, 17, 1}, 10.0, 0.0, 100, false}, {6, 11, {3, 30, 2}, 10.0, 0.7, 100, false},
      {12, 7, {40, 9}, 1.0, 0.3, 100, false},       {9, 9, {6, 6, 6}, 10.0, 0.0, 15, false},
      {5, 5, {4, 2}, 10.0, 0.0, 1, false},          {10, 10, {12, 0, 3}, 0.05, 0.5, 100, true},
      {8, 8, {3, 20, 1}, 10.0, 0.0, 1000, false}};  // each stops on its own
  torch::manual_seed(7);
  const int64_t stride = 8;
  for (size_t k = 0; k < scenes.size(); ++k) {
    const auto& sc = scenes[k];
    DOCTEST_CAPTURE(k);
    const auto B = static_cast<int64_t>(sc.heads.size());
    auto mu = torch::rand({B, 1, sc.h, sc.w}, torch::kFloat64);
    mu = mu * (torch::rand_like(mu) >= sc.sparsity).to(torch::kFloat64);
    if (k == 1) mu[2].zero_();  // a zero map with points
    const auto normed = mu / (mu.flatten(1).sum(1).view({B, 1, 1, 1}) + 1e-6);
    auto cy = crowdloss::detail::cell_centres(sc.h, stride, torch::kFloat64);
    auto cx = crowdloss::detail::cell_centres(sc.w, stride, torch::kFloat64);
    const double W = static_cast<double>(sc.w * stride), H = static_cast<double>(sc.h * stride);
    if (sc.norm) cy = cy / H * 2 - 1, cx = cx / W * 2 - 1;
    std::vector<at::Tensor> heads;
    for (const int64_t n : sc.heads) {
      auto p = torch::rand({n, 2}, torch::kFloat64) * torch::tensor({W, H}, torch::kFloat64);
      if (sc.norm) p = p / torch::tensor({W, H}, torch::kFloat64) * 2 - 1;
      heads.push_back(p);
    }
    const auto ref = crowdloss::detail::dm_count_ot_reference(mu, normed, heads, cy, cx, sc.reg, sc.iterations);
    for (const bool batched : {true, false}) {
      const auto fast =
          crowdloss::detail::dm_count_ot_separable(mu, normed, heads, cy, cx, sc.reg, sc.iterations, batched);
      const double grad_error = crowdloss_test::scaled_error(fast.gradient, ref.gradient);
      const double w_error = rel(fast.wasserstein.item<double>(), ref.wasserstein.item<double>());
      MESSAGE("scene " << k << std::string(batched ? ", batched" : ", image by image") << ": gradient error "
                       << grad_error << ", Wasserstein error " << w_error);
      DOCTEST_CHECK(grad_error < 1e-12);
      DOCTEST_CHECK(w_error < 1e-12);
      for (int64_t b = 0; b < B; ++b)  // no points: no gradient
        if (sc.heads[static_cast<size_t>(b)] == 0) DOCTEST_CHECK(torch::all(fast.gradient[b] == 0).item<bool>());
    }
  }
}

TEST_CASE("DMCountLoss prints every option and equals dm_count_loss, with non-square maps and half precision") {
  std::ostringstream text;
  text << *crowdloss::DMCountLoss();
  DOCTEST_CHECK(text.str() ==
                "crowdloss::DMCountLoss(stride=8, ot_weight=0.1, tv_weight=0.01, reg=10, sinkhorn_iterations=100, "
                "norm_coordinates=false)");
  torch::manual_seed(2);
  const auto pred = torch::rand({2, 1, 6, 9});  // non-square: 48×72 pixels
  const std::vector<at::Tensor> heads = {torch::rand({5, 2}) * torch::tensor({72.0f, 48.0f}),
                                         torch::rand({3, 2}) * torch::tensor({72.0f, 48.0f})};
  crowdloss::DMCountLoss loss;
  DOCTEST_CHECK(torch::equal(loss(pred, heads), crowdloss::dm_count_loss(pred, heads)));
  DOCTEST_CHECK(std::isfinite(
      crowdloss::dm_count_loss(pred, heads, crowdloss::DMCountOptions().norm_coordinates(true)).item<double>()));
  const auto half = crowdloss::dm_count_loss(pred.to(at::kBFloat16), heads);
  DOCTEST_CHECK((half.scalar_type() == at::kBFloat16));
  check_error([] { crowdloss::DMCountLoss(crowdloss::DMCountOptions().reg(0)); }, {"DMCountLoss", "reg"});
}

TEST_CASE("dm_count_loss: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("dm_count_loss CPU/CUDA parity")) return;
  torch::manual_seed(3);
  const auto pred = torch::rand({2, 1, 8, 8}, torch::kFloat64);
  const std::vector<at::Tensor> heads = {torch::rand({6, 2}, torch::kFloat64) * 64,
                                         torch::zeros({0, 2}, torch::kFloat64)};
  const auto cpu = crowdloss::dm_count_loss_terms(pred, heads);
  const auto cuda = crowdloss::dm_count_loss_terms(pred.cuda(), {heads[0].cuda(), heads[1].cuda()});
  DOCTEST_CHECK(cuda.total.item<double>() == doctest::Approx(cpu.total.item<double>()).epsilon(1e-10));
  DOCTEST_CHECK(cuda.wasserstein.item<double>() == doctest::Approx(cpu.wasserstein.item<double>()).epsilon(1e-10));
}

TEST_CASE("dm_count_loss: every bad input throws c10::Error naming the function and the value") {
  const auto pred = torch::rand({2, 1, 4, 4});
  const std::vector<at::Tensor> heads = {torch::rand({3, 2}) * 32, torch::rand({1, 2}) * 32};
  using O = crowdloss::DMCountOptions;
  check_error([&] { crowdloss::dm_count_loss(pred.expand({2, 3, 4, 4}), heads); }, {"dm_count_loss", "[2, 3, 4, 4]"});
  check_error([&] { crowdloss::dm_count_loss(pred, {heads[0]}); }, {"dm_count_loss", "2 point tensors", "got 1"});
  check_error(
      [&] {
        crowdloss::dm_count_loss(pred, {heads[0], torch::tensor({{40.0f, 1.0f}})});
      },
      {"dm_count_loss", "points[1][0]", "40"});
  check_error(
      [&] {
        crowdloss::dm_count_loss(pred, {heads[0], torch::tensor({{NAN, 1.0f}})});
      },
      {"dm_count_loss", "points[1][0]", "nan"});
  auto negative = pred.clone();
  negative[1][0][2][2] = -0.5;
  check_error([&] { crowdloss::dm_count_loss(negative, heads); }, {"dm_count_loss", "pred[1]", "negative"});
  auto nan = pred.clone();
  nan[0][0][0][0] = NAN;
  check_error([&] { crowdloss::dm_count_loss(nan, heads); }, {"dm_count_loss", "pred[0]", "NaN"});
  // A negative density in an image without points is accepted, as DM-Count accepts it.
  DOCTEST_CHECK_NOTHROW(crowdloss::dm_count_loss(negative, {heads[0], torch::zeros({0, 2})}));
  check_error([&] { crowdloss::dm_count_loss(pred.to(at::kInt), heads); }, {"dm_count_loss", "Int"});
  check_error([&] { crowdloss::dm_count_loss(pred, heads, O().reg(-1)); }, {"dm_count_loss", "reg", "-1"});
  check_error([&] { crowdloss::dm_count_loss(pred, heads, O().ot_weight(-1)); }, {"dm_count_loss", "ot_weight"});
  check_error([&] { crowdloss::dm_count_loss(pred, heads, O().tv_weight(NAN)); }, {"dm_count_loss", "tv_weight"});
  check_error([&] { crowdloss::dm_count_loss(pred, heads, O().sinkhorn_iterations(-1)); },
              {"dm_count_loss", "sinkhorn_iterations", "-1"});
  check_error([&] { crowdloss::dm_count_loss(pred, heads, O().stride(0)); }, {"dm_count_loss", "stride", "0"});
}
