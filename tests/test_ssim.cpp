#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

using crowdloss_test::check_error;
using crowdloss_test::rel_error;
using crowdloss_test::tensor_from_list;

namespace {

struct SSIMCase {
  std::string name;
  at::Tensor pred, gt;
  double data_range;
  const crowdloss_test::json* json;
};

std::vector<SSIMCase> ssim_cases(const crowdloss_test::json& oracle) {
  std::vector<SSIMCase> cases;
  for (const auto& c : oracle.at("cases")) {
    const auto shape = c.at("shape_nchw").get<std::vector<int64_t>>();
    cases.push_back({c.at("name").get<std::string>(), tensor_from_list(c.at("pred"), shape, at::kDouble),
                     tensor_from_list(c.at("gt"), shape, at::kDouble), c.at("data_range").get<double>(), &c});
  }
  return cases;
}

}  // namespace

TEST_CASE("ssim: the Gaussian window is pytorch-msssim's float32 window") {
  const auto oracle = crowdloss_test::load_json("ssim.json");
  const auto expected = oracle.at("window_1d_float32_as_in_pytorch_msssim").get<std::vector<double>>();
  const auto w = crowdloss::detail::gaussian_window(11, 1.5, at::kDouble, at::kCPU);
  REQUIRE(w.numel() == 11);
  for (int64_t i = 0; i < 11; ++i) DOCTEST_CHECK(w[i].item<double>() == expected[static_cast<size_t>(i)]);
}

TEST_CASE("ssim and sanet_loss: match pytorch-msssim (SSIM, per image, map, loss, gradients)") {
  // Tolerances stated in tests/data/README.md: relative 1e-6 for values, absolute 1e-9 for gradients.
  const auto oracle = crowdloss_test::load_json("ssim.json");
  const double alpha = oracle.at("alpha_C").get<double>();
  const auto cases = ssim_cases(oracle);
  REQUIRE(cases.size() >= 2);
  for (const auto& c : cases) {
    INFO("case " << c.name);
    const auto& ref = *c.json;
    const auto opts = crowdloss::SSIMOptions().data_range(c.data_range);
    DOCTEST_CHECK(rel_error(crowdloss::ssim(c.pred, c.gt, opts).item<double>(), ref.at("ssim_mean").get<double>()) <=
                  1e-6);

    const auto per_image = crowdloss::ssim(c.pred, c.gt, crowdloss::SSIMOptions(opts).reduction(torch::kNone)).mean(1);
    const auto expected_per_image = ref.at("ssim_per_image").get<std::vector<double>>();
    for (size_t b = 0; b < expected_per_image.size(); ++b)
      DOCTEST_CHECK(rel_error(per_image[static_cast<int64_t>(b)].item<double>(), expected_per_image[b]) <= 1e-6);

    const auto map = crowdloss::ssim_map(c.pred, c.gt, opts);
    const auto expected_map = tensor_from_list(ref.at("ssim_map_valid"),
                                               ref.at("ssim_map_valid_shape").get<std::vector<int64_t>>(), at::kDouble);
    REQUIRE(map.sizes() == expected_map.sizes());
    DOCTEST_CHECK(((map - expected_map).abs() / expected_map.abs()).max().item<double>() <= 1e-6);

    auto pred = c.pred.clone().requires_grad_(true);
    const auto loss = crowdloss::sanet_loss(pred, c.gt, crowdloss::SANetLossOptions().alpha(alpha).ssim(opts));
    DOCTEST_CHECK(rel_error(loss.item<double>(), ref.at("loss").get<double>()) <= 1e-6);
    loss.backward();
    const auto expected_grad = tensor_from_list(ref.at("grad_loss_wrt_pred"), c.pred.sizes().vec(), at::kDouble);
    DOCTEST_CHECK((pred.grad() - expected_grad).abs().max().item<double>() <= 1e-9);

    auto pred2 = c.pred.clone().requires_grad_(true);
    crowdloss::ssim(pred2, c.gt, opts).backward();
    const auto expected_ssim_grad =
        tensor_from_list(ref.at("grad_ssim_mean_wrt_pred"), c.pred.sizes().vec(), at::kDouble);
    DOCTEST_CHECK((pred2.grad() - expected_ssim_grad).abs().max().item<double>() <= 1e-9);
  }
}

TEST_CASE("ssim: zero 'same' padding matches the SANet ports' SSIM") {
  const auto oracle = crowdloss_test::load_json("ssim.json");
  for (const auto& c : ssim_cases(oracle)) {
    INFO("case " << c.name);
    const auto expected = c.json->at("variants").at("same_zero_pad_ssim_mean(C3-Framework pytorch_ssim)").get<double>();
    const auto opts = crowdloss::SSIMOptions().data_range(c.data_range).padding(crowdloss::kSame);
    DOCTEST_CHECK(rel_error(crowdloss::ssim(c.pred, c.gt, opts).item<double>(), expected) <= 1e-6);
    DOCTEST_CHECK(crowdloss::ssim_map(c.pred, c.gt, opts).sizes() == c.pred.sizes());
  }
}

TEST_CASE("ssim: hand-derived cases") {
  torch::manual_seed(1);
  const auto x = torch::rand({2, 3, 20, 24}, torch::kFloat64);
  // Identical inputs: every position is exactly 1.
  DOCTEST_CHECK(torch::allclose(crowdloss::ssim_map(x, x), torch::ones({2, 3, 10, 14}, torch::kFloat64), 0, 1e-12));
  // Constant maps a and b: the variances vanish (up to the float32 window's rounding), leaving
  // the luminance term (2ab + C1) / (a² + b² + C1).
  const double a = 0.5, b = 0.2, c1 = 1e-4;
  const auto value =
      crowdloss::ssim(torch::full({1, 1, 16, 16}, a, torch::kFloat64), torch::full({1, 1, 16, 16}, b, torch::kFloat64))
          .item<double>();
  DOCTEST_CHECK(value == doctest::Approx((2 * a * b + c1) / (a * a + b * b + c1)).epsilon(1e-4));
  // Contrast reversal around a common mean: y = 2m − x has μy = μx, σxy = −σx², so SSIM < 0.
  const auto z = torch::rand({1, 1, 32, 32}, torch::kFloat64);
  DOCTEST_CHECK(crowdloss::ssim(z, 1 - z).item<double>() < 0);
}

TEST_CASE("ssim: reductions and map shapes") {
  torch::manual_seed(2);
  const auto x = torch::rand({3, 2, 16, 20}), y = torch::rand({3, 2, 16, 20});
  const auto per_channel = crowdloss::ssim(x, y, crowdloss::SSIMOptions().reduction(torch::kNone));
  DOCTEST_CHECK(per_channel.sizes() == at::IntArrayRef({3, 2}));
  DOCTEST_CHECK(crowdloss::ssim(x, y).item<double>() ==
                doctest::Approx(per_channel.mean().item<double>()).epsilon(1e-6));
  DOCTEST_CHECK(crowdloss::ssim_map(x, y).sizes() == at::IntArrayRef({3, 2, 6, 10}));
  DOCTEST_CHECK(crowdloss::ssim_map(x, y, crowdloss::SSIMOptions().window_size(5)).sizes() ==
                at::IntArrayRef({3, 2, 12, 16}));
  DOCTEST_CHECK(crowdloss::ssim_map(x, y, crowdloss::SSIMOptions().padding(crowdloss::kSame)).sizes() == x.sizes());
  // With "same" padding a map smaller than the window is fine.
  DOCTEST_CHECK(
      crowdloss::ssim(x.narrow(2, 0, 5), y.narrow(2, 0, 5), crowdloss::SSIMOptions().padding(crowdloss::kSame)).dim() ==
      0);
  const auto sanet = crowdloss::sanet_loss(x, y, crowdloss::SANetLossOptions().reduction(torch::kNone));
  DOCTEST_CHECK(sanet.sizes() == at::IntArrayRef({3}));
  const auto mean = crowdloss::sanet_loss(x, y);
  DOCTEST_CHECK(
      mean.item<double>() ==
      doctest::Approx((torch::mse_loss(x, y) + 0.001 * (1 - crowdloss::ssim(x, y))).item<double>()).epsilon(1e-6));
  DOCTEST_CHECK(crowdloss::sanet_loss(x, y, crowdloss::SANetLossOptions().reduction(torch::kSum)).item<double>() ==
                doctest::Approx(sanet.sum().item<double>()).epsilon(1e-6));
}

TEST_CASE("ssim and sanet_loss: gradient check in float64 against finite differences") {
  torch::manual_seed(3);
  const auto y = torch::rand({2, 2, 14, 13}, torch::kFloat64);
  const auto x = (y + 0.2 * torch::randn({2, 2, 14, 13}, torch::kFloat64)).clamp(0, 1);
  for (const crowdloss::SSIMPadding padding :
       {crowdloss::SSIMPadding(crowdloss::kValid), crowdloss::SSIMPadding(crowdloss::kSame)}) {
    const auto opts = crowdloss::SSIMOptions().window_size(7).sigma(1.2).padding(padding);
    DOCTEST_CHECK(crowdloss_test::gradcheck_max_error([&](const at::Tensor& p) { return crowdloss::ssim(p, y, opts); },
                                                      x) < 1e-7);
    DOCTEST_CHECK(crowdloss_test::gradcheck_max_error([&](const at::Tensor& t) { return crowdloss::ssim(x, t, opts); },
                                                      y) < 1e-7);
    const auto sopts = crowdloss::SANetLossOptions().alpha(0.5).ssim(opts);
    DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                      [&](const at::Tensor& p) { return crowdloss::sanet_loss(p, y, sopts); }, x) < 1e-7);
  }
}

TEST_CASE("ssim: half precision is computed in float32 and returned in the input dtype") {
  torch::manual_seed(4);
  const auto x = torch::rand({2, 1, 32, 32}), y = torch::rand({2, 1, 32, 32});
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    const auto xs = x.to(dtype), ys = y.to(dtype);
    const auto reference = crowdloss::ssim(xs.to(at::kFloat), ys.to(at::kFloat)).item<double>();
    DOCTEST_CHECK((crowdloss::ssim(xs, ys).scalar_type() == dtype));
    DOCTEST_CHECK((crowdloss::ssim_map(xs, ys).scalar_type() == dtype));
    DOCTEST_CHECK((crowdloss::sanet_loss(xs, ys).scalar_type() == dtype));
    DOCTEST_CHECK(crowdloss::ssim(xs, ys).item<double>() == doctest::Approx(reference).epsilon(1e-2));
  }
}

TEST_CASE("ssim: NaN in the input propagates") {
  auto x = torch::rand({1, 1, 16, 16});
  x[0][0][8][8] = std::nan("");
  DOCTEST_CHECK(std::isnan(crowdloss::ssim(x, torch::rand({1, 1, 16, 16})).item<double>()));
  DOCTEST_CHECK(std::isnan(crowdloss::sanet_loss(x, torch::rand({1, 1, 16, 16})).item<double>()));
}

TEST_CASE("ssim: an infinite input gives NaN, not an error") {
  auto x = torch::rand({1, 1, 16, 16});
  x[0][0][8][8] = std::numeric_limits<float>::infinity();
  DOCTEST_CHECK(std::isnan(crowdloss::ssim(x, torch::rand({1, 1, 16, 16})).item<double>()));
  DOCTEST_CHECK(std::isnan(crowdloss::ssim_map(x, torch::rand({1, 1, 16, 16})).sum().item<double>()));
}

TEST_CASE("ssim, ssim_map and sanet_loss: finite wherever the exact value is, at float32's extremes") {
  crowdloss_test::for_each_cpu_capability([] {
    torch::manual_seed(14);
    const auto u = torch::rand({2, 2, 24, 24});
    // The reported cases: a map against itself at 1e20 (squares beyond float32) and at 1e38,
    // constant and varying; SSIM is 1 and the SANet loss 0.
    for (const auto& p : {torch::full({1, 1, 16, 16}, 1e20), 1e20 * (1 + u), 1e38 * (1 + u)}) {
      DOCTEST_CHECK(crowdloss::ssim(p, p).item<double>() == doctest::Approx(1.0).epsilon(1e-6));
      DOCTEST_CHECK(crowdloss::sanet_loss(p, p).item<double>() == doctest::Approx(0.0));
      DOCTEST_CHECK((crowdloss::ssim_map(p, p) - 1).abs().max().item<double>() < 1e-6);
    }
    // 2^32 < |x| < 2^63: B1·B2 leaves float32's range, each B does not. And beyond 2^63, with y
    // small enough that A1 stays finite: a quotient over an infinite B would read 0 where SSIM
    // is above 0.01 (checked). Both agree with float64, values and gradients.
    for (const auto& [x0, y0] : {std::pair{1e12 * (1 + u), 1e12 * (1 + 0.5 * u + 0.2 * torch::rand_like(u))},
                                 std::pair{1e19 * (2 + u), 1e18 * (2 + u)}}) {
      auto x = x0.clone().requires_grad_(true), y = y0.clone().requires_grad_(true);
      auto xd = x0.to(torch::kFloat64).requires_grad_(true), yd = y0.to(torch::kFloat64).requires_grad_(true);
      const auto f32 = crowdloss::ssim(x, y, crowdloss::SSIMOptions().reduction(torch::kNone));
      const auto f64 = crowdloss::ssim(xd, yd, crowdloss::SSIMOptions().reduction(torch::kNone));
      INFO("float32 " << f32 << " float64 " << f64);
      DOCTEST_CHECK(f64.min().item<double>() > 0.01);
      DOCTEST_CHECK((f32.to(torch::kFloat64) - f64).abs().max().item<double>() < 1e-5 * f64.abs().max().item<double>());
      f32.sum().backward();
      f64.sum().backward();
      for (const auto& [g, gd] : {std::pair{x.grad(), xd.grad()}, std::pair{y.grad(), yd.grad()}}) {
        DOCTEST_CHECK(at::isfinite(g).all().item<bool>());
        DOCTEST_CHECK((g.to(torch::kFloat64) - gd).abs().max().item<double>() < 1e-4 * gd.abs().max().item<double>());
      }
      const auto map32 = crowdloss::ssim_map(x0, y0),
                 map64 = crowdloss::ssim_map(x0.to(torch::kFloat64), y0.to(torch::kFloat64));
      DOCTEST_CHECK((map32.to(torch::kFloat64) - map64).abs().max().item<double>() < 1e-4);  // σ² cancels per pixel
    }
    // float64 cannot widen: squares beyond its range throw, naming the function and the value.
    const auto huge = 1e200 * (1 + u.to(torch::kFloat64));
    check_error([&] { crowdloss::ssim(huge, huge); }, {"ssim: x and y overflow float64", "e+200"});
    check_error([&] { crowdloss::sanet_loss(huge, huge); }, {"sanet_loss: x and y overflow float64"});
    check_error([&] { crowdloss::ssim_map(huge, huge); }, {"ssim_map: x and y overflow float64"});
  });
}

TEST_CASE("SSIMLoss and SANetLoss print every option, as LibTorch's modules do") {
  std::ostringstream ssim, sanet;
  ssim << *crowdloss::SSIMLoss(crowdloss::SSIMLossOptions().window_size(7).padding(crowdloss::kSame));
  DOCTEST_CHECK(ssim.str() ==
                "crowdloss::SSIMLoss(window_size=7, sigma=1.5, k1=0.01, k2=0.03, data_range=1, padding=kSame, "
                "reduction=kMean)");
  sanet << *crowdloss::SANetLoss(
      crowdloss::SANetLossOptions().alpha(0.25).ssim(crowdloss::SSIMOptions().data_range(255)).reduction(torch::kSum));
  DOCTEST_CHECK(sanet.str() ==
                "crowdloss::SANetLoss(alpha=0.25, window_size=11, sigma=1.5, k1=0.01, k2=0.03, data_range=255, "
                "padding=kValid, reduction=kSum)");
}

TEST_CASE("SSIMLoss and SANetLoss modules equal the functional forms") {
  torch::manual_seed(5);
  const auto x = torch::rand({2, 1, 24, 24}), y = torch::rand({2, 1, 24, 24});
  const auto sopts = crowdloss::SSIMOptions().window_size(5).padding(crowdloss::kSame);
  crowdloss::SSIMLoss ssim_loss(sopts);
  DOCTEST_CHECK(torch::equal(ssim_loss(x, y), 1 - crowdloss::ssim(x, y, sopts)));
  const auto opts = crowdloss::SANetLossOptions().alpha(0.1).ssim(sopts);
  crowdloss::SANetLoss sanet(opts);
  DOCTEST_CHECK(torch::equal(sanet(x, y), crowdloss::sanet_loss(x, y, opts)));
  auto copy = std::dynamic_pointer_cast<crowdloss::SANetLossImpl>(sanet->clone());
  DOCTEST_CHECK(torch::equal(copy->forward(x, y), sanet(x, y)));
  check_error([] { crowdloss::SSIMLoss(crowdloss::SSIMOptions().window_size(4)); }, {"SSIMLoss", "window_size", "4"});
  check_error([] { crowdloss::SANetLoss(crowdloss::SANetLossOptions().alpha(-2)); }, {"SANetLoss", "alpha", "-2"});
}

TEST_CASE("ssim and sanet_loss: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("ssim CPU/CUDA parity")) return;
  torch::manual_seed(6);
  const auto x = torch::rand({2, 3, 40, 36}, torch::kFloat64), y = torch::rand({2, 3, 40, 36}, torch::kFloat64);
  for (const crowdloss::SSIMPadding padding :
       {crowdloss::SSIMPadding(crowdloss::kValid), crowdloss::SSIMPadding(crowdloss::kSame)}) {
    const auto opts = crowdloss::SANetLossOptions().alpha(0.3).ssim(crowdloss::SSIMOptions().padding(padding));
    auto xc = x.clone().requires_grad_(true), xg = x.cuda().requires_grad_(true);
    const auto cpu = crowdloss::sanet_loss(xc, y, opts), cuda = crowdloss::sanet_loss(xg, y.cuda(), opts);
    DOCTEST_CHECK(cuda.device().is_cuda());
    DOCTEST_CHECK(cuda.item<double>() == doctest::Approx(cpu.item<double>()).epsilon(1e-12));
    cpu.backward();
    cuda.backward();
    DOCTEST_CHECK((xg.grad().cpu() - xc.grad()).abs().max().item<double>() < 1e-12);
  }
  check_error([&] { crowdloss::ssim(x, y.cuda()); }, {"ssim", "cuda"});
}

TEST_CASE("ssim, ssim_map and sanet_loss: every bad input throws c10::Error naming the function and the value") {
  const auto ok = torch::rand({2, 1, 16, 16});
  using O = crowdloss::SSIMOptions;
  check_error([&] { crowdloss::ssim(ok[0], ok[0]); }, {"ssim", "[1, 16, 16]"});
  check_error([&] { crowdloss::ssim(ok, ok.narrow(3, 0, 12)); }, {"ssim", "[2, 1, 16, 12]"});
  check_error([&] { crowdloss::ssim(ok.to(at::kInt), ok.to(at::kInt)); }, {"ssim", "Int"});
  check_error([&] { crowdloss::ssim(ok, ok.to(at::kDouble)); }, {"ssim", "Double"});
  check_error([&] { crowdloss::ssim(ok.narrow(0, 0, 0), ok.narrow(0, 0, 0)); }, {"ssim", "[0, 1, 16, 16]"});
  check_error([&] { crowdloss::ssim(ok.narrow(3, 0, 0), ok.narrow(3, 0, 0), O().padding(crowdloss::kSame)); },
              {"ssim", "[2, 1, 16, 0]"});
  check_error([&] { crowdloss::ssim(ok, ok, O().window_size(10)); }, {"ssim", "window_size", "10"});
  check_error([&] { crowdloss::ssim(ok, ok, O().window_size(0)); }, {"ssim", "window_size", "0"});
  check_error([&] { crowdloss::ssim(ok, ok, O().window_size(-3)); }, {"ssim", "window_size", "-3"});
  check_error([&] { crowdloss::ssim(ok, ok, O().sigma(0)); }, {"ssim", "sigma", "0"});
  check_error([&] { crowdloss::ssim(ok, ok, O().sigma(-1.5)); }, {"ssim", "sigma", "-1.5"});
  check_error([&] { crowdloss::ssim(ok, ok, O().data_range(0)); }, {"ssim", "data_range", "0"});
  check_error([&] { crowdloss::ssim(ok, ok, O().data_range(-255)); }, {"ssim", "data_range", "-255"});
  // Constants beyond float64 (C2 = (0.03·10¹⁶⁰)²) are refused, whichever path would run.
  check_error([&] { crowdloss::ssim(ok, ok, O().data_range(1e160)); }, {"ssim", "data_range", "overflow float64"});
  check_error([&] { crowdloss::ssim(ok, ok, O().k1(-0.01)); }, {"ssim", "k1", "-0.01"});
  check_error([&] { crowdloss::ssim(ok, ok, O().k2(-0.03)); }, {"ssim", "k2", "-0.03"});
  check_error([&] { crowdloss::ssim(ok, ok, O().reduction(torch::kSum)); }, {"ssim", "kSum"});
  check_error([&] { crowdloss::ssim(ok, ok, O().window_size(17)); }, {"ssim", "16x16", "window_size 17"});
  check_error([&] { crowdloss::ssim_map(ok, ok.narrow(2, 0, 3)); }, {"ssim_map", "[2, 1, 3, 16]"});
  check_error([&] { crowdloss::sanet_loss(ok, ok, crowdloss::SANetLossOptions().alpha(-0.5)); },
              {"sanet_loss", "alpha", "-0.5"});
  check_error([&] { crowdloss::sanet_loss(ok, ok, crowdloss::SANetLossOptions().ssim(O().data_range(0))); },
              {"sanet_loss", "data_range"});
  check_error([&] { crowdloss::sanet_loss(ok, ok.to(at::kLong)); }, {"sanet_loss", "Long"});
  check_error([&] { crowdloss::ssim(ok, ok.to(at::kMeta)); }, {"ssim", "meta", "cpu"});
  check_error([&] { crowdloss::sanet_loss(ok.to(at::kMeta), ok); }, {"sanet_loss", "cpu", "meta"});
}

TEST_CASE("ssim: the CPU kernel equals the ATen reference in float64 (values and both gradients)") {
  struct Shape {
    int64_t b, c, h, w, window;
  };
  // Widths below, at and above the kernel's vector blocks; windows 1, 3, 5, 11; maps barely
  // larger than the window; odd heights (a last unpaired row).
  crowdloss_test::for_each_cpu_capability([] {
    torch::manual_seed(5);
    for (const auto shape : {Shape{2, 3, 20, 24, 11}, Shape{1, 1, 11, 11, 11}, Shape{3, 2, 9, 17, 3},
                             Shape{1, 2, 13, 7, 5}, Shape{2, 1, 6, 33, 1}, Shape{2, 1, 23, 75, 11}}) {
      for (const crowdloss::SSIMPadding padding :
           {crowdloss::SSIMPadding(crowdloss::kValid), crowdloss::SSIMPadding(crowdloss::kSame)}) {
        INFO("shape " << shape.b << "x" << shape.c << "x" << shape.h << "x" << shape.w << " window " << shape.window
                      << (std::holds_alternative<torch::enumtype::kSame>(padding) ? " same" : " valid"));
        const auto opts =
            crowdloss::SSIMOptions().window_size(shape.window).sigma(1.3).padding(padding).data_range(2.0);
        const auto y = torch::rand({shape.b, shape.c, shape.h, shape.w}, torch::kFloat64);
        const auto x0 = (y + 0.3 * torch::randn_like(y)).detach();
        const auto weights = torch::rand({shape.b, shape.c}, torch::kFloat64);  // a non-uniform upstream gradient
        auto x = x0.clone().requires_grad_(true), t = y.clone().requires_grad_(true);
        const auto fast = crowdloss::ssim(x, t, crowdloss::SSIMOptions(opts).reduction(torch::kNone));
        (fast * weights).sum().backward();
        auto xr = x0.clone().requires_grad_(true), tr = y.clone().requires_grad_(true);
        const auto reference =
            crowdloss::detail::ssim_map_aten(crowdloss::detail::ssim_setup("test", xr, tr, opts)).flatten(2).mean(-1);
        (reference * weights).sum().backward();
        DOCTEST_CHECK((fast - reference).abs().max().item<double>() < 1e-12);
        DOCTEST_CHECK((x.grad() - xr.grad()).abs().max().item<double>() < 1e-12);
        DOCTEST_CHECK((t.grad() - tr.grad()).abs().max().item<double>() < 1e-12);
        // Only one gradient wanted: the kernel skips the other's maps, and the wanted one is the same.
        auto x1 = x0.clone().requires_grad_(true);
        (crowdloss::ssim(x1, y, crowdloss::SSIMOptions(opts).reduction(torch::kNone)) * weights).sum().backward();
        DOCTEST_CHECK((x1.grad() - xr.grad()).abs().max().item<double>() < 1e-12);
        auto t1 = y.clone().requires_grad_(true);
        (crowdloss::ssim(x0, t1, crowdloss::SSIMOptions(opts).reduction(torch::kNone)) * weights).sum().backward();
        DOCTEST_CHECK((t1.grad() - tr.grad()).abs().max().item<double>() < 1e-12);
      }
    }
  });
}

namespace {

// The CPU kernel's SSIM row sums and gradient maps with its rows split at `cuts` (the ranges
// threads would get), through the gradient path, or through the no-gradient path (sums only).
template <typename T>
std::vector<torch::Tensor> ssim_kernel_split(const crowdloss::detail::SSIMSetup& s, const std::vector<int64_t>& cuts,
                                             bool gradients) {
  const int64_t P = s.x.size(0) * s.x.size(1), H = s.x.size(2), W = s.x.size(3), n = s.window.numel();
  const int64_t Ho = H + 2 * s.pad - n + 1, Wo = W + 2 * s.pad - n + 1, rows = gradients ? P * H : P * Ho;
  auto sums = torch::full({P, Ho}, -1.0, torch::kFloat64);
  auto gx = torch::zeros_like(s.x), gy = torch::zeros_like(s.y);
  const crowdloss::detail::SSIMForwardArgs<T> args{s.x.data_ptr<T>(),
                                                   s.y.data_ptr<T>(),
                                                   s.window.data_ptr<T>(),
                                                   n,
                                                   s.pad,
                                                   H,
                                                   W,
                                                   Ho,
                                                   Wo,
                                                   static_cast<T>(s.c1),
                                                   static_cast<T>(s.c2),
                                                   sums.data_ptr<double>(),
                                                   gradients ? gx.data_ptr<T>() : nullptr,
                                                   gradients ? gy.data_ptr<T>() : nullptr};
  const auto kernels = crowdloss::detail::ssim_kernels<T>();
  int64_t begin = 0;
  for (int64_t end : cuts) {
    end = std::min(end, rows);
    (gradients ? kernels.gradient_rows : kernels.rows)(args, begin, end);
    begin = end;
  }
  (gradients ? kernels.gradient_rows : kernels.rows)(args, begin, rows);
  return {sums, gx, gy};
}

}  // namespace

TEST_CASE("ssim: the CPU kernel gives the same sums and gradient maps however its rows are split among threads") {
  // A range of gradient rows recomputes the SSIM rows before it that it reads, and reports only
  // the SSIM rows it owns; rows are paired by position, not by range. Any split must give
  // exactly the values of one range, and the no-gradient path exactly the same sums.
  crowdloss_test::for_each_cpu_capability([] {
    torch::manual_seed(8);
    for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
      for (const int64_t window : {11, 7}) {
        for (const bool same : {false, true}) {
          INFO(dtype << ", window " << window << ", " << (same ? "same" : "valid") << " padding");
          const auto opts = crowdloss::SSIMOptions().window_size(window).padding(
              same ? crowdloss::SSIMPadding(crowdloss::kSame) : crowdloss::SSIMPadding(crowdloss::kValid));
          const auto y = torch::rand({3, 1, 29, 45}, dtype), x = y + 0.2 * torch::randn_like(y);
          const auto s = crowdloss::detail::ssim_setup("test", x, y, opts);
          const auto split = [&](const std::vector<int64_t>& cuts, bool gradients) {
            return dtype == torch::kFloat64 ? ssim_kernel_split<double>(s, cuts, gradients)
                                            : ssim_kernel_split<float>(s, cuts, gradients);
          };
          const auto whole = split({}, true);
          DOCTEST_CHECK(whole[0].min().item<double>() > 0);  // every SSIM row reported
          for (const std::vector<int64_t>& cuts : std::vector<std::vector<int64_t>>{
                   {1}, {5, 17}, {28, 29, 30}, {3, 4, 5, 6, 7, 8, 9, 58, 80}, {10, 20, 30, 40, 50, 60, 70, 80}}) {
            INFO("cuts " << torch::tensor(cuts));
            const auto with_gradients = split(cuts, true);
            for (size_t k = 0; k < whole.size(); ++k) DOCTEST_CHECK(torch::equal(with_gradients[k], whole[k]));
            DOCTEST_CHECK(torch::equal(split(cuts, false)[0], whole[0]));
          }
        }
      }
    }
  });
}

TEST_CASE("ssim: the backward's scaling is s·g + e·(own − other) at every width, and writes nothing past it") {
  // The scaling steps through a range in vectors, the last step partial.
  crowdloss_test::for_each_cpu_capability([] {
    const auto check = [](auto zero) {
      using T = decltype(zero);
      const auto dtype = std::is_same_v<T, float> ? torch::kFloat32 : torch::kFloat64;
      const auto scale = crowdloss::detail::ssim_kernels<T>().scale_gradient;
      torch::manual_seed(9);
      for (int64_t n = 1; n <= 40; ++n) {
        const at::Tensor g = torch::randn({n}, dtype), own = torch::randn({n}, dtype), other = torch::randn({n}, dtype);
        const at::Tensor sentinel = torch::full({16}, 7.0, dtype);
        for (const double e : {0.0, 0.3}) {
          INFO(dtype << ", width " << n << ", e = " << e);
          at::Tensor out = torch::cat({torch::zeros({n}, dtype), sentinel});
          scale(g.data_ptr<T>(), own.data_ptr<T>(), other.data_ptr<T>(), T(-1.7), static_cast<T>(e), n,
                out.data_ptr<T>());
          DOCTEST_CHECK(torch::equal(out.narrow(0, n, 16), sentinel));
          const at::Tensor expected = g * T(-1.7) + (own - other) * static_cast<T>(e);
          if (e == 0)
            DOCTEST_CHECK(torch::equal(out.narrow(0, 0, n), g * T(-1.7)));  // one rounding: exact
          else  // a fused multiply–add may round once less
            DOCTEST_CHECK((out.narrow(0, 0, n) - expected).abs().max().item<double>() <=
                          4 * std::numeric_limits<T>::epsilon() * expected.abs().max().item<double>());
        }
      }
    };
    check(0.0f);
    check(0.0);
  });
}

TEST_CASE("sanet_loss: the CPU kernel's gradients are the same bits with 1, 2 and 3 threads") {
  // Planes of 6,300 pixels: the backward's scaling splits them into blocks, the forward's rows
  // into ranges; neither may change which arithmetic an element gets.
  crowdloss_test::for_each_cpu_capability([] {
    const int threads = at::get_num_threads();
    torch::manual_seed(12);
    for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
      const auto y = torch::rand({2, 2, 70, 90}, dtype), x0 = y + 0.2 * torch::randn_like(y);
      std::vector<at::Tensor> grads;
      for (const int n : {1, 2, 3}) {
        at::set_num_threads(n);
        auto x = x0.clone().requires_grad_(true), t = y.clone().requires_grad_(true);
        crowdloss::sanet_loss(x, t).backward();
        grads.push_back(torch::cat({x.grad().flatten(), t.grad().flatten()}));
      }
      at::set_num_threads(threads);
      INFO(dtype);
      DOCTEST_CHECK(torch::equal(grads[0], grads[1]));
      DOCTEST_CHECK(torch::equal(grads[0], grads[2]));
    }
  });
}

TEST_CASE("ssim: the CPU kernel in float32 stays within float32 rounding of the float64 value") {
  crowdloss_test::for_each_cpu_capability([] {
    torch::manual_seed(6);
    const auto y = torch::rand({2, 1, 64, 80}), x = (y + 0.1 * torch::randn_like(y)).detach();
    auto xf = x.clone().requires_grad_(true);
    auto xd = x.to(torch::kFloat64).requires_grad_(true);
    const auto f32 = crowdloss::sanet_loss(xf, y, crowdloss::SANetLossOptions().alpha(1.0));
    const auto f64 = crowdloss::sanet_loss(xd, y.to(torch::kFloat64), crowdloss::SANetLossOptions().alpha(1.0));
    f32.backward();
    f64.backward();
    DOCTEST_CHECK(std::abs(f32.item<double>() - f64.item<double>()) < 1e-6);
    DOCTEST_CHECK((xf.grad().to(torch::kFloat64) - xd.grad()).abs().max().item<double>() <
                  1e-4 * xd.grad().abs().max().item<double>());
  });
}

TEST_CASE("ssim: without grad mode the value is the same and carries no graph") {
  torch::manual_seed(7);
  const auto y = torch::rand({1, 1, 24, 24}), x = torch::rand({1, 1, 24, 24}).requires_grad_(true);
  const auto with_grad = crowdloss::ssim(x, y);
  at::Tensor without;
  {
    torch::NoGradGuard no_grad;
    without = crowdloss::ssim(x, y);
  }
  DOCTEST_CHECK(!without.requires_grad());
  DOCTEST_CHECK(without.item<double>() == with_grad.item<double>());
}
