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

crowdloss::MSSSIMOptions oracle_options(const crowdloss_test::json& o) {
  return crowdloss::MSSSIMOptions()
      .window_size(o.at("window_size").get<int64_t>())
      .sigma(o.at("sigma").get<double>())
      .data_range(o.at("data_range").get<double>())
      .k1(o.at("k1").get<double>())
      .k2(o.at("k2").get<double>())
      .weights(o.at("weights").get<std::vector<double>>());
}

// Two correlated B×C×H×W maps in [0, 1] (float64).
std::pair<at::Tensor, at::Tensor> correlated(int64_t b, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  const auto x = torch::rand({b, c, h, w}, torch::kFloat64);
  return {x, (0.7 * x + 0.3 * torch::rand({b, c, h, w}, torch::kFloat64)).clamp(0, 1)};
}

}  // namespace

TEST_CASE("ms_ssim: matches pytorch-msssim's ms_ssim (value, per image, gradient) and refuses what it refuses") {
  // Tolerances stated in tests/data/README.md.
  const auto oracle = crowdloss_test::load_json("beyond.json");
  int checked = 0, errors = 0;
  for (const auto& c : oracle.at("ms_ssim")) {
    const auto name = c.at("name").get<std::string>();
    DOCTEST_CAPTURE(name);
    const auto opts = oracle_options(c.at("options"));
    const auto x = tensor_from_json(c.at("x")), y = tensor_from_json(c.at("y"));
    if (c.value("error", false)) {
      check_error([&] { crowdloss::ms_ssim(x, y, opts); }, {"ms_ssim", std::to_string(x.size(2)), "drop_levels"});
      ++errors;
      continue;
    }
    const auto& e = c.at("expected");
    const auto leaf = x.clone().requires_grad_(true);
    const auto value = crowdloss::ms_ssim(leaf, y, opts);
    DOCTEST_CHECK(std::abs(value.item<double>() - e.at("value").get<double>()) < 1e-9);
    const auto per_image = crowdloss::ms_ssim(x, y, crowdloss::MSSSIMOptions(opts).reduction(torch::kNone));
    const auto expected_per_image = e.at("per_image").get<std::vector<double>>();
    REQUIRE(per_image.numel() == static_cast<int64_t>(expected_per_image.size()));
    for (size_t b = 0; b < expected_per_image.size(); ++b)
      DOCTEST_CHECK(std::abs(per_image[static_cast<int64_t>(b)].item<double>() - expected_per_image[b]) < 1e-9);
    value.backward();
    const auto expected_grad = tensor_from_json(e.at("grad_x"));
    const double scale =
        std::max(expected_grad.abs().max().item<double>(), 1 / (static_cast<double>(x.numel()) * opts.data_range()));
    DOCTEST_CHECK((leaf.grad() - expected_grad).abs().max().item<double>() < 1e-9 * scale);
    ++checked;
  }
  DOCTEST_CHECK(checked >= 1);
  DOCTEST_CHECK(errors >= 1);
}

TEST_CASE("ms_ssim: a map against itself is 1, and kNone is each image's value") {
  const auto [x, y] = correlated(2, 3, 170, 180, 1);
  DOCTEST_CHECK(crowdloss::ms_ssim(x, x).item<double>() == doctest::Approx(1.0).epsilon(1e-12));
  const auto per_image = crowdloss::ms_ssim(x, y, crowdloss::MSSSIMOptions().reduction(torch::kNone));
  REQUIRE(per_image.sizes() == at::IntArrayRef({2}));
  for (int64_t b = 0; b < 2; ++b)
    DOCTEST_CHECK(
        per_image[b].item<double>() ==
        doctest::Approx(crowdloss::ms_ssim(x.narrow(0, b, 1), y.narrow(0, b, 1)).item<double>()).epsilon(1e-14));
  DOCTEST_CHECK(crowdloss::ms_ssim(x, y).item<double>() ==
                doctest::Approx(per_image.mean().item<double>()).epsilon(1e-14));
}

TEST_CASE("ms_ssim: drop_levels keeps the levels at least the window and rescales their weights") {
  const std::vector<double> w{0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
  // Large enough for all five levels (200, 100, 50, 25, 13): drop_levels changes nothing.
  const auto [x, y] = correlated(1, 2, 200, 210, 2);
  DOCTEST_CHECK(
      torch::equal(crowdloss::ms_ssim(x, y, crowdloss::MSSSIMOptions().drop_levels(true)), crowdloss::ms_ssim(x, y)));
  // 100 pixels: levels of 100, 50, 25 and 13 pixels fit an 11-pixel window, 7 does not. Four
  // levels with the first four weights rescaled to the five weights' sum.
  const auto [a, b] = correlated(1, 2, 100, 120, 3);
  const double sum = w[0] + w[1] + w[2] + w[3], all = sum + w[4];
  const std::vector<double> four{w[0] / sum * all, w[1] / sum * all, w[2] / sum * all, w[3] / sum * all};
  const auto dropped = crowdloss::ms_ssim(a, b, crowdloss::MSSSIMOptions().drop_levels(true));
  const auto explicit_four = crowdloss::ms_ssim(a, b, crowdloss::MSSSIMOptions().weights(four).drop_levels(true));
  DOCTEST_CHECK(dropped.item<double>() == doctest::Approx(explicit_four.item<double>()).epsilon(1e-15));
  // With three levels the value differs (the level count matters).
  const std::vector<double> three{w[0], w[1], w[2]};
  DOCTEST_CHECK(
      std::abs(crowdloss::ms_ssim(a, b, crowdloss::MSSSIMOptions().weights(three).drop_levels(true)).item<double>() -
               dropped.item<double>()) > 1e-6);
  // Without drop_levels the same maps are refused, naming the size and the way out.
  check_error([&, &a = a, &b = b] { crowdloss::ms_ssim(a, b); }, {"ms_ssim", "100", "160", "drop_levels"});
  // A 1/8-resolution map of a 96×96 crop (12×12): one level with a 11-pixel window.
  const auto [s, t] = correlated(1, 1, 12, 12, 4);
  const auto one = crowdloss::ms_ssim(s, t, crowdloss::MSSSIMOptions().drop_levels(true));
  DOCTEST_CHECK(one.item<double>() ==
                doctest::Approx(std::pow(crowdloss::ssim(s, t).item<double>(), all)).epsilon(1e-12));
}

TEST_CASE("ms_ssim: gradients in float64 match finite differences, in both arguments") {
  const auto [x, y] = correlated(2, 2, 40, 44, 5);
  const auto opts = crowdloss::MSSSIMOptions().window_size(5).drop_levels(true);  // levels 40, 20, 10, 5
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&, &y = y](const at::Tensor& p) { return crowdloss::ms_ssim(p, y, opts); }, x) < 1e-8);
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&, &x = x](const at::Tensor& p) { return crowdloss::ms_ssim(x, p, opts); }, y) < 1e-8);
}

TEST_CASE("ms_ssim: half precision is computed in float32 and returned in the input dtype") {
  const auto [x, y] = correlated(1, 1, 170, 170, 6);
  const auto full = crowdloss::ms_ssim(x.to(at::kFloat), y.to(at::kFloat));
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    const auto v = crowdloss::ms_ssim(x.to(dtype), y.to(dtype));
    DOCTEST_CHECK((v.scalar_type() == dtype));
    DOCTEST_CHECK(v.item<double>() == doctest::Approx(full.item<double>()).epsilon(1e-2));
  }
}

TEST_CASE("MSSSIMLoss prints every option and equals 1 - ms_ssim") {
  std::ostringstream text;
  text << *crowdloss::MSSSIMLoss(crowdloss::MSSSIMLossOptions().weights({0.5, 0.5}).drop_levels(true));
  DOCTEST_CHECK(text.str() ==
                "crowdloss::MSSSIMLoss(window_size=11, sigma=1.5, k1=0.01, k2=0.03, data_range=1, weights=[0.5, 0.5], "
                "drop_levels=true, reduction=kMean)");
  const auto [x, y] = correlated(2, 1, 64, 64, 7);
  const auto opts = crowdloss::MSSSIMLossOptions().drop_levels(true).reduction(torch::kNone);
  crowdloss::MSSSIMLoss loss(opts);
  DOCTEST_CHECK(torch::equal(loss(x, y), 1 - crowdloss::ms_ssim(x, y, opts)));
  auto copy = std::dynamic_pointer_cast<crowdloss::MSSSIMLossImpl>(loss->clone());
  DOCTEST_CHECK(torch::equal(copy->forward(x, y), loss(x, y)));
  check_error([] { crowdloss::MSSSIMLoss(crowdloss::MSSSIMLossOptions().weights({})); }, {"MSSSIMLoss", "weights"});
}

TEST_CASE("ms_ssim: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("ms_ssim CPU/CUDA parity")) return;
  const auto [x, y] = correlated(2, 3, 100, 90, 8);
  const auto opts = crowdloss::MSSSIMOptions().drop_levels(true).reduction(torch::kNone);
  DOCTEST_CHECK(torch::allclose(crowdloss::ms_ssim(x.cuda(), y.cuda(), opts).cpu(), crowdloss::ms_ssim(x, y, opts),
                                1e-10, 1e-12));
}

TEST_CASE("ms_ssim: every bad input throws c10::Error naming the function and the value") {
  const auto [x, y] = correlated(1, 1, 170, 170, 9);
  using O = crowdloss::MSSSIMOptions;
  check_error([&, &x = x] { crowdloss::ms_ssim(x, x.narrow(3, 0, 169)); }, {"ms_ssim", "169"});
  check_error([&, &x = x] { crowdloss::ms_ssim(x[0], x[0]); }, {"ms_ssim", "[1, 170, 170]"});
  check_error([&, &x = x] { crowdloss::ms_ssim(x, x.to(at::kFloat)); }, {"ms_ssim", "Float"});
  check_error([&, &x = x] { crowdloss::ms_ssim(x.to(at::kInt), x.to(at::kInt)); }, {"ms_ssim", "Int"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().reduction(torch::kSum)); }, {"ms_ssim", "kSum"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().window_size(4)); }, {"ms_ssim", "window_size", "4"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().sigma(0)); }, {"ms_ssim", "sigma", "0"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().data_range(-1)); }, {"ms_ssim", "data_range", "-1"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().weights({})); }, {"ms_ssim", "weights"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().weights({0.5, -0.5})); }, {"ms_ssim", "-0.5"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().weights({0.5, NAN})); }, {"ms_ssim", "nan"});
  check_error([&, &x = x, &y = y] { crowdloss::ms_ssim(x, y, O().weights({0.0, 0.0})); }, {"ms_ssim", "not all be 0"});
  // Six levels of a 170-pixel map: the sixth (6 pixels) is smaller than the window.
  check_error(
      [&, &x = x, &y = y] {
        crowdloss::ms_ssim(x, y, O().weights({1, 1, 1, 1, 1, 1}));
      },
      {"ms_ssim", "level 5 of 6", "drop_levels"});
  // drop_levels: smaller than the window, or only zero weights left.
  const auto [s, t] = correlated(1, 1, 10, 10, 10);
  check_error([&, &s = s, &t = t] { crowdloss::ms_ssim(s, t, O().drop_levels(true)); }, {"ms_ssim", "10", "11"});
  const auto [m, n] = correlated(1, 1, 30, 30, 11);
  check_error(
      [&, &m = m, &n = n] {
        crowdloss::ms_ssim(m, n, O().weights({0, 0, 1}).drop_levels(true));
      },
      {"ms_ssim", "all 0"});
}
