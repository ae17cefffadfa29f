#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

using crowdloss_test::check_error;
using crowdloss_test::rel_error;
using crowdloss_test::scaled_error;
using crowdloss_test::tensor_from_json;

namespace {

// Tolerances stated in tests/data/README.md for pml.json.
double tolerance(at::ScalarType dtype) { return dtype == at::kFloat ? 1e-5 : 1e-9; }

at::Tensor gt_of(const crowdloss_test::json& c) {
  return tensor_from_json(c.contains("gt_density") ? c.at("gt_density") : c.at("densemap_loss").at("gt_density"));
}

}  // namespace

TEST_CASE("pml_loss: matches the authors' Cascade_MSE_Loss (values, per-level terms, gradients)") {
  const auto oracle = crowdloss_test::load_json("pml.json");
  int checked = 0;
  for (const auto& c : oracle.at("cases")) {
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      for (const bool reference : {false, true}) {
        // The authors' float32 results carry the rounding of their op order, which only the
        // reference order reproduces; the one-pass path (block sums of the error, less cancellation)
        // is held to their float64 results where the oracle has them.
        const char* key = dtype == at::kFloat && (reference || !c.contains("cascade_mse_loss_f64"))
                              ? "cascade_mse_loss_f32"
                              : "cascade_mse_loss_f64";
        if (!c.contains(key)) continue;
        const auto& ref = c.at(key);
        ++checked;
        INFO("case " << c.at("name").get<std::string>() << ", " << dtype
                     << (reference ? ", reference order" : ", fast path"));
        const auto opts =
            crowdloss::PMLLossOptions().grids(ref.at("scales").get<std::vector<int64_t>>()).reference_order(reference);
        auto pred = tensor_from_json(c.at("pred")).to(dtype).requires_grad_(true);
        const auto gt = gt_of(c).to(dtype);

        const auto loss = crowdloss::pml_loss(pred, gt, opts);
        DOCTEST_CHECK((loss.scalar_type() == dtype));
        DOCTEST_CHECK(rel_error(loss.item<double>(), ref.at("loss").get<double>()) <= tolerance(dtype));

        const auto terms = crowdloss::pml_loss_terms(pred, gt, opts);
        const auto expected_terms = ref.at("term_per_level").get<std::vector<double>>();
        REQUIRE(terms.numel() == static_cast<int64_t>(expected_terms.size()));
        for (size_t i = 0; i < expected_terms.size(); ++i)
          DOCTEST_CHECK(rel_error(terms[i].item<double>(), expected_terms[i]) <= tolerance(dtype));

        loss.backward();
        const auto expected_grad = tensor_from_json(ref.at("grad_pred"));
        DOCTEST_CHECK(scaled_error(pred.grad(), expected_grad) <= tolerance(dtype));
        if (reference && dtype == at::kFloat)  // op for op as the authors: their float32 value to the last bit
          DOCTEST_CHECK(loss.item<float>() == static_cast<float>(ref.at("loss").get<double>()));
      }
    }
  }
  DOCTEST_CHECK(checked >= 10);
}

TEST_CASE("pml_loss: pixel_mse_weight(1) is the authors' full DenseMap_Loss objective") {
  const auto oracle = crowdloss_test::load_json("pml.json");
  int checked = 0;
  for (const auto& c : oracle.at("cases")) {
    if (!c.contains("densemap_loss")) continue;
    const auto& ref = c.at("densemap_loss");
    auto pred = tensor_from_json(c.at("pred")).requires_grad_(true);
    const auto gt = tensor_from_json(ref.at("gt_density"));
    const auto loss = crowdloss::pml_loss(pred, gt, crowdloss::PMLLossOptions().pixel_mse_weight(1.0));
    DOCTEST_CHECK(rel_error(loss.item<double>(), ref.at("loss_all").get<double>()) <= 1e-5);
    loss.backward();
    DOCTEST_CHECK(scaled_error(pred.grad(), tensor_from_json(ref.at("grad_pred"))) <= 1e-5);
    ++checked;
  }
  DOCTEST_CHECK(checked == 1);
}

TEST_CASE("pml_loss: the one-pass paths (CPU kernel, ATen ops) equal the reference order in float64") {
  torch::manual_seed(4);
  struct Case {
    std::vector<int64_t> shape, grids;
    bool pad;
  };
  const std::vector<Case> cases = {{{2, 1, 32, 32}, {1, 2, 4, 8, 16, 32}, false},
                                   {{3, 2, 48, 24}, {1, 2, 4, 8}, false},
                                   {{1, 1, 37, 50}, {2, 4, 8}, true},
                                   {{4, 1, 64, 96}, {1, 4, 16}, false}};
  for (const auto& c : cases) {
    INFO("shape " << at::IntArrayRef(c.shape) << " grids " << at::IntArrayRef(c.grids));
    const auto make = [&](bool reference) {
      auto opts =
          crowdloss::PMLLossOptions().grids(c.grids).pad_to_multiple(c.pad).pixel_mse_weight(0.5).reference_order(
              reference);
      torch::manual_seed(11);
      auto pred = torch::rand(c.shape, torch::kFloat64).requires_grad_(true);
      auto target = (torch::rand(c.shape, torch::kFloat64) * 1.2).requires_grad_(true);
      auto loss = crowdloss::pml_loss(pred, target, opts);
      loss.backward();
      return std::make_tuple(loss.detach(), crowdloss::pml_loss_terms(pred, target, opts).detach(), pred.grad(),
                             target.grad());
    };
    const auto [fast_loss, fast_terms, fast_gp, fast_gt] = make(false);
    const auto [ref_loss, ref_terms, ref_gp, ref_gt] = make(true);
    DOCTEST_CHECK(torch::allclose(fast_loss, ref_loss, 1e-12, 0));
    DOCTEST_CHECK(torch::allclose(fast_terms, ref_terms, 1e-12, 1e-15));
    DOCTEST_CHECK(scaled_error(fast_gp, ref_gp) <= 1e-12);
    DOCTEST_CHECK(scaled_error(fast_gt, ref_gt) <= 1e-12);
    // The one-pass ATen ops (the CUDA path), run here on the CPU, against the same reference.
    if (!c.pad) {
      torch::manual_seed(11);
      auto pred = torch::rand(c.shape, torch::kFloat64).requires_grad_(true);
      auto target = (torch::rand(c.shape, torch::kFloat64) * 1.2).requires_grad_(true);
      const auto terms = crowdloss::detail::pml_terms_aten(pred, target, c.grids, /*reference_order=*/false);
      DOCTEST_CHECK(torch::allclose(terms.detach(), ref_terms, 1e-12, 1e-15));
      const auto grads = torch::autograd::grad({terms.sum()}, {pred, target});
      const auto ref_terms_only = crowdloss::detail::pml_terms_aten(pred, target, c.grids, /*reference_order=*/true);
      const auto ref_grads = torch::autograd::grad({ref_terms_only.sum()}, {pred, target});
      DOCTEST_CHECK(scaled_error(grads[0], ref_grads[0]) <= 1e-12);
      DOCTEST_CHECK(scaled_error(grads[1], ref_grads[1]) <= 1e-12);
    }
  }
}

TEST_CASE(
    "pml_loss: the CPU kernel's vector rows give a scalar loop's bits at every width, and write nothing past it") {
  // pml_add_error_row and pml_fill step through a row in vectors, the last step partial: each
  // element must be the lone IEEE subtraction, addition or copy (ATen's elementwise ops here),
  // and the elements after the row must stay as they were.
  const auto check = [](auto zero) {
    using T = decltype(zero);
    const auto dtype = std::is_same_v<T, float> ? torch::kFloat32 : torch::kFloat64;
    torch::manual_seed(6);
    for (int64_t W = 1; W <= 40; ++W) {
      INFO(dtype << ", width " << W);
      const at::Tensor a = torch::randn({W}, dtype), b = torch::randn({W}, dtype), start = torch::randn({W}, dtype);
      const at::Tensor sentinel = torch::full({16}, 7.0, dtype);
      at::Tensor row = torch::cat({start, sentinel});
      crowdloss::detail::pml_add_error_row(a.data_ptr<T>(), b.data_ptr<T>(), W, /*first=*/false, row.data_ptr<T>());
      DOCTEST_CHECK(torch::equal(row.narrow(0, 0, W), start + (a - b)));
      DOCTEST_CHECK(torch::equal(row.narrow(0, W, 16), sentinel));
      crowdloss::detail::pml_add_error_row(a.data_ptr<T>(), b.data_ptr<T>(), W, /*first=*/true, row.data_ptr<T>());
      DOCTEST_CHECK(torch::equal(row.narrow(0, 0, W), a - b));
      DOCTEST_CHECK(torch::equal(row.narrow(0, W, 16), sentinel));
      crowdloss::detail::pml_fill(row.data_ptr<T>(), W, static_cast<T>(-0.25));
      DOCTEST_CHECK(torch::equal(row.narrow(0, 0, W), torch::full({W}, -0.25, dtype)));
      DOCTEST_CHECK(torch::equal(row.narrow(0, W, 16), sentinel));
    }
  };
  check(0.0f);
  check(0.0);
}

TEST_CASE("pml_loss: hand-derived two-level case") {
  // One unit of error in the top-left pixel of a 2×2 map, grids {1, 2}:
  // M₁ = 1 → ln 2;  M₂ = 1, increment 1 − (1/2)²·1 = 0.75 → ln 1.75.
  const auto pred = torch::tensor({1.0, 0.0, 0.0, 0.0}, torch::kFloat64).reshape({1, 1, 2, 2});
  const auto target = torch::zeros_like(pred);
  const auto opts = crowdloss::PMLLossOptions().grids({1, 2});
  const auto terms = crowdloss::pml_loss_terms(pred, target, opts);
  DOCTEST_CHECK(terms[0].item<double>() == doctest::Approx(std::log(2.0)).epsilon(1e-15));
  DOCTEST_CHECK(terms[1].item<double>() == doctest::Approx(std::log(1.75)).epsilon(1e-15));
  DOCTEST_CHECK(crowdloss::pml_loss(pred, target, opts).item<double>() ==
                doctest::Approx(std::log(2.0 * 1.75)).epsilon(1e-15));
  // The batch mean sits inside the log: two copies of the image, one with zero error, halve M.
  const auto pair = torch::cat({pred, target});
  DOCTEST_CHECK(crowdloss::pml_loss_terms(pair, torch::zeros_like(pair), opts)[0].item<double>() ==
                doctest::Approx(std::log(1.5)).epsilon(1e-15));
}

TEST_CASE("pml_loss: an error that cancels inside coarse blocks only shows at the fine level") {
  // +1 and −1 in the same 2×2 block: coarse sums agree, the fine level sees the error.
  const auto pred = torch::tensor({1.0, -1.0, 0.0, 0.0}, torch::kFloat64).reshape({1, 1, 2, 2});
  const auto terms =
      crowdloss::pml_loss_terms(pred, torch::zeros_like(pred), crowdloss::PMLLossOptions().grids({1, 2}));
  DOCTEST_CHECK(terms[0].item<double>() == 0.0);
  DOCTEST_CHECK(terms[1].item<double>() == doctest::Approx(std::log(3.0)).epsilon(1e-15));
}

TEST_CASE("pml_loss: a perfect prediction gives loss 0 and gradient 0") {
  auto pred = torch::rand({3, 2, 16, 16}, torch::kFloat64).requires_grad_(true);
  const auto loss =
      crowdloss::pml_loss(pred, pred.detach().clone(), crowdloss::PMLLossOptions().grids({1, 2, 4, 8, 16}));
  DOCTEST_CHECK(loss.item<double>() == 0.0);
  loss.backward();
  DOCTEST_CHECK(pred.grad().abs().max().item<double>() == 0.0);
}

TEST_CASE("pml_loss: gradient check in float64 against finite differences") {
  torch::manual_seed(7);
  const auto target = torch::rand({2, 1, 16, 16}, torch::kFloat64);
  const auto x = target + 0.2 * torch::randn({2, 1, 16, 16}, torch::kFloat64);
  const auto opts = crowdloss::PMLLossOptions().grids({1, 2, 4, 8}).pixel_mse_weight(0.5);
  const double err =
      crowdloss_test::gradcheck_max_error([&](const at::Tensor& p) { return crowdloss::pml_loss(p, target, opts); }, x);
  DOCTEST_CHECK(err < 1e-6);
  const double err_target =
      crowdloss_test::gradcheck_max_error([&](const at::Tensor& t) { return crowdloss::pml_loss(x, t, opts); }, target);
  DOCTEST_CHECK(err_target < 1e-6);
  // The terms with a different upstream gradient for each level (the kernel's per-term chain).
  const auto weights = torch::tensor({0.5, -1.0, 2.0, 0.25, 3.0, -0.75}, torch::kFloat64)
                           .slice(0, 0, static_cast<int64_t>(opts.grids().size()));
  const double err_terms = crowdloss_test::gradcheck_max_error(
      [&](const at::Tensor& p) { return (crowdloss::pml_loss_terms(p, target, opts) * weights).sum(); }, x);
  DOCTEST_CHECK(err_terms < 1e-6);
}

TEST_CASE("pml_loss: pad_to_multiple zero-pads bottom/right") {
  torch::manual_seed(3);
  const auto pred = torch::rand({2, 1, 30, 27}, torch::kFloat64);
  const auto target = torch::rand({2, 1, 30, 27}, torch::kFloat64);
  const auto opts = crowdloss::PMLLossOptions().grids({1, 2, 4, 8});
  check_error([&] { crowdloss::pml_loss(pred, target, opts); }, {"pml_loss", "30x27", "grid 8"});
  const auto padded = crowdloss::pml_loss(pred, target, crowdloss::PMLLossOptions(opts).pad_to_multiple(true));
  const auto manual =
      crowdloss::pml_loss(at::constant_pad_nd(pred, {0, 5, 0, 2}), at::constant_pad_nd(target, {0, 5, 0, 2}), opts);
  DOCTEST_CHECK(padded.item<double>() == manual.item<double>());
  // The coarsest block sums are the whole-map counts, unchanged by padding.
  const auto count_term = crowdloss::pml_loss_terms(pred, target, crowdloss::PMLLossOptions().grids({1}));
  const auto diff = (pred.sum({1, 2, 3}) - target.sum({1, 2, 3})).square().mean();
  DOCTEST_CHECK(count_term[0].item<double>() == doctest::Approx(std::log1p(diff.item<double>())).epsilon(1e-12));
}

TEST_CASE("pml_loss: half precision is computed in float32 and returned in the input dtype") {
  torch::manual_seed(5);
  const auto pred = torch::rand({2, 1, 32, 32});
  const auto target = torch::rand({2, 1, 32, 32});
  const auto reference = crowdloss::pml_loss(pred, target);
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    const auto loss = crowdloss::pml_loss(pred.to(dtype), target.to(dtype));
    DOCTEST_CHECK((loss.scalar_type() == dtype));
    DOCTEST_CHECK((crowdloss::pml_loss_terms(pred.to(dtype), target.to(dtype)).scalar_type() == dtype));
    // Only the inputs' rounding to half precision differs.
    DOCTEST_CHECK(loss.item<double>() == doctest::Approx(reference.item<double>()).epsilon(0.02));
  }
}

TEST_CASE("pml_loss: NaN in the input propagates") {
  auto pred = torch::rand({1, 1, 8, 8});
  pred[0][0][3][3] = std::nan("");
  DOCTEST_CHECK(std::isnan(
      crowdloss::pml_loss(pred, torch::rand({1, 1, 8, 8}), crowdloss::PMLLossOptions().grids({1, 2})).item<double>()));
}

TEST_CASE("pml_loss: finite for every finite input, at float32's extremes") {
  torch::manual_seed(15);
  // The reported case: 3e38 against 0 overflows float32's block sums; the loss and its gradient
  // are finite and agree with float64.
  const auto pred = 3e38 * (0.5 + 0.5 * torch::rand({2, 1, 64, 64})), target = torch::zeros({2, 1, 64, 64});
  for (const bool reference_order : {false, true}) {
    INFO("reference_order " << reference_order);
    const auto opts = crowdloss::PMLLossOptions().reference_order(reference_order);
    auto p = pred.clone().requires_grad_(true);
    auto pd = pred.to(torch::kFloat64).requires_grad_(true);
    const auto f32 = crowdloss::pml_loss(p, target, opts),
               f64 = crowdloss::pml_loss(pd, target.to(torch::kFloat64), opts);
    DOCTEST_CHECK((f32.scalar_type() == torch::kFloat));
    DOCTEST_CHECK(std::isfinite(f32.item<double>()));
    DOCTEST_CHECK(rel_error(f32.item<double>(), f64.item<double>()) < 1e-6);
    const auto terms = crowdloss::pml_loss_terms(pred, target, opts);
    DOCTEST_CHECK(at::isfinite(terms).all().item<bool>());
    f32.backward();
    f64.backward();
    DOCTEST_CHECK(at::isfinite(p.grad()).all().item<bool>());
    DOCTEST_CHECK((p.grad().to(torch::kFloat64) - pd.grad()).abs().max().item<double>() <
                  1e-5 * pd.grad().abs().max().item<double>());
  }
  // float64 cannot widen: squared block sums beyond its range throw, naming the function.
  const auto huge = 1e200 * torch::rand({1, 1, 32, 32}, torch::kFloat64);
  check_error([&] { crowdloss::pml_loss(huge, torch::zeros_like(huge)); },
              {"pml_loss: pred and target overflow float64"});
  check_error([&] { crowdloss::pml_loss_terms(huge, -huge); }, {"pml_loss_terms: pred and target overflow float64"});
  // An infinite input is not an overflow: it propagates.
  auto inf = torch::rand({1, 1, 32, 32});
  inf[0][0][1][1] = std::numeric_limits<float>::infinity();
  DOCTEST_CHECK(!std::isfinite(crowdloss::pml_loss(inf, torch::zeros_like(inf)).item<double>()));
}

TEST_CASE("PMLLoss prints every option, as LibTorch's modules do") {
  std::ostringstream os;
  os << *crowdloss::PMLLoss(crowdloss::PMLLossOptions().grids({1, 2, 4}).pixel_mse_weight(0.5).reference_order(true));
  DOCTEST_CHECK(
      os.str() ==
      "crowdloss::PMLLoss(grids=[1, 2, 4], pixel_mse_weight=0.5, pad_to_multiple=false, reference_order=true, "
      "all_reduce=none)");
}

TEST_CASE("PMLLoss module equals the functional form") {
  torch::manual_seed(11);
  const auto pred = torch::rand({2, 1, 32, 32});
  const auto target = torch::rand({2, 1, 32, 32});
  const auto opts = crowdloss::PMLLossOptions().grids({1, 4, 16}).pixel_mse_weight(2.0);
  crowdloss::PMLLoss module(opts);
  DOCTEST_CHECK(torch::equal(module(pred, target), crowdloss::pml_loss(pred, target, opts)));
  DOCTEST_CHECK(module->options.grids() == std::vector<int64_t>{1, 4, 16});
  auto copy = std::dynamic_pointer_cast<crowdloss::PMLLossImpl>(module->clone());
  DOCTEST_CHECK(torch::equal(copy->forward(pred, target), module(pred, target)));
  check_error([] { crowdloss::PMLLoss(crowdloss::PMLLossOptions().grids({2, 3})); }, {"PMLLoss", "grids[1] = 3"});
}

TEST_CASE("pml_loss: CPU and CUDA agree and mixed devices are rejected") {
  if (!crowdloss_test::cuda_or_skip("pml_loss CPU/CUDA parity")) return;
  torch::manual_seed(13);
  auto pred = torch::rand({4, 1, 64, 64}, torch::kFloat64).requires_grad_(true);
  const auto target = torch::rand({4, 1, 64, 64}, torch::kFloat64);
  auto pred_cuda = pred.detach().cuda().requires_grad_(true);
  const auto opts = crowdloss::PMLLossOptions().pixel_mse_weight(1.0);
  const auto cpu = crowdloss::pml_loss(pred, target, opts);
  const auto cuda = crowdloss::pml_loss(pred_cuda, target.cuda(), opts);
  DOCTEST_CHECK(cuda.device().is_cuda());
  DOCTEST_CHECK(cuda.item<double>() == doctest::Approx(cpu.item<double>()).epsilon(1e-12));
  cpu.backward();
  cuda.backward();
  DOCTEST_CHECK(scaled_error(pred_cuda.grad().cpu(), pred.grad()) < 1e-12);
  check_error([&] { crowdloss::pml_loss(pred, target.cuda(), opts); }, {"pml_loss", "cuda"});
}

TEST_CASE("pml_loss: every bad input throws c10::Error naming the function and the value") {
  const auto ok = torch::rand({2, 1, 8, 8});
  const auto grids = crowdloss::PMLLossOptions().grids({1, 2, 4});
  check_error([&] { crowdloss::pml_loss(ok.view({2, 8, 8}), ok.view({2, 8, 8}), grids); }, {"pml_loss", "[2, 8, 8]"});
  check_error([&] { crowdloss::pml_loss(ok, ok.narrow(3, 0, 4), grids); }, {"pml_loss", "[2, 1, 8, 4]"});
  check_error([&] { crowdloss::pml_loss(ok.to(at::kLong), ok.to(at::kLong), grids); }, {"pml_loss", "Long"});
  check_error([&] { crowdloss::pml_loss(ok, ok.to(at::kDouble), grids); }, {"pml_loss", "Double"});
  check_error([&] { crowdloss::pml_loss(ok.narrow(0, 0, 0), ok.narrow(0, 0, 0), grids); },
              {"pml_loss", "[0, 1, 8, 8]"});
  check_error([&] { crowdloss::pml_loss(ok.narrow(2, 0, 0), ok.narrow(2, 0, 0), grids); },
              {"pml_loss", "[2, 1, 0, 8]"});
  check_error([&] { crowdloss::pml_loss(ok, at::Tensor(), grids); }, {"pml_loss", "defined"});
  check_error([&] { crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({})); }, {"pml_loss", "empty"});
  check_error(
      [&] {
        crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({0, 2}));
      },
      {"pml_loss", "grids[0] = 0"});
  check_error(
      [&] {
        crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({2, 2}));
      },
      {"pml_loss", "strictly increasing", "grids[1] = 2"});
  check_error(
      [&] {
        crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({1, 2, 4, 3}));
      },
      {"pml_loss", "grids[3] = 3"});
  check_error(
      [&] {
        crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({4, 6}));
      },
      {"pml_loss", "divide", "grids[1] = 6"});
  check_error([&] { crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().pixel_mse_weight(-1)); },
              {"pml_loss", "pixel_mse_weight", "-1"});
  check_error(
      [&] {
        crowdloss::pml_loss(ok, ok, crowdloss::PMLLossOptions().grids({1, 16}));
      },
      {"pml_loss", "8x8", "grid 16"});
  check_error([&] { crowdloss::pml_loss_terms(ok, ok.narrow(2, 0, 4), grids); }, {"pml_loss_terms", "[2, 1, 4, 8]"});
  // Mixed devices, testable without a GPU through the meta device.
  check_error([&] { crowdloss::pml_loss(ok, ok.to(at::kMeta), grids); }, {"pml_loss", "meta", "cpu"});
}

namespace {

/// Runs `loss(pred_r, target_r, options)` for each rank r's shard as a data-parallel job would,
/// in one process: first each rank's all_reduce input is recorded, then each rank runs again with
/// an all_reduce that returns the sum over the ranks. Returns each rank's value and gradient
/// with respect to its pred shard.
template <class Loss>
std::vector<std::pair<at::Tensor, at::Tensor>> simulate_ranks(const std::vector<at::Tensor>& preds,
                                                              const std::vector<at::Tensor>& targets,
                                                              crowdloss::PMLLossOptions options, Loss loss) {
  std::vector<at::Tensor> sent;
  options.all_reduce([&](at::Tensor& t) { sent.push_back(t.clone()); });
  for (size_t r = 0; r < preds.size(); ++r) loss(preds[r], targets[r], options);
  at::Tensor total = sent.at(0).clone();
  for (size_t r = 1; r < sent.size(); ++r) total += sent[r];
  options.all_reduce([&](at::Tensor& t) { t.copy_(total); });
  std::vector<std::pair<at::Tensor, at::Tensor>> out;
  for (size_t r = 0; r < preds.size(); ++r) {
    const auto p = preds[r].detach().clone().requires_grad_(true);
    const auto value = loss(p, targets[r], options);
    value.sum().backward();
    out.emplace_back(value.detach(), p.grad());
  }
  return out;
}

}  // namespace

TEST_CASE("pml_loss: all_reduce gives every rank the global batch's PML, and averaged gradients its gradient") {
  torch::manual_seed(23);
  const auto pred = torch::rand({6, 1, 32, 32}, torch::kFloat64);
  const auto target = torch::rand({6, 1, 32, 32}, torch::kFloat64);
  for (const double pixel : {0.0, 1.5})
    for (const bool reference : {false, true}) {
      const auto opts =
          crowdloss::PMLLossOptions().grids({1, 2, 4, 8}).pixel_mse_weight(pixel).reference_order(reference);
      const auto p = pred.clone().requires_grad_(true);
      const auto global = crowdloss::pml_loss(p, target, opts);
      global.backward();
      // Unequal shards (3 + 2 + 1 images): the image and pixel counts are reduced too.
      const std::vector<int64_t> sizes = {3, 2, 1};
      std::vector<at::Tensor> preds, targets;
      for (const auto& piece : pred.split_with_sizes(sizes)) preds.push_back(piece);
      for (const auto& piece : target.split_with_sizes(sizes)) targets.push_back(piece);
      const auto ranks = simulate_ranks(
          preds, targets, opts, [](const at::Tensor& a, const at::Tensor& b, const crowdloss::PMLLossOptions& o) {
            return crowdloss::pml_loss(a, b, o);
          });
      INFO("pixel_mse_weight " << pixel << ", reference_order " << reference);
      std::vector<at::Tensor> averaged;
      for (const auto& [value, grad] : ranks) {
        DOCTEST_CHECK(value.item<double>() == doctest::Approx(global.item<double>()).epsilon(1e-12));
        averaged.push_back(grad / static_cast<double>(ranks.size()));  // what DDP's averaging makes of it
      }
      DOCTEST_CHECK(scaled_error(torch::cat(averaged), p.grad()) < 1e-12);
      // The per-level terms too.
      const auto terms = simulate_ranks(
          preds, targets, opts, [](const at::Tensor& a, const at::Tensor& b, const crowdloss::PMLLossOptions& o) {
            return crowdloss::pml_loss_terms(a, b, o);
          });
      for (const auto& rank : terms)
        DOCTEST_CHECK(scaled_error(rank.first, crowdloss::pml_loss_terms(pred, target, opts)) < 1e-12);
    }
}

TEST_CASE("pml_loss: all_reduce on one rank is the plain loss, and a broken all_reduce throws") {
  torch::manual_seed(29);
  const auto pred = torch::rand({2, 1, 16, 16}, torch::kFloat64), target = torch::rand({2, 1, 16, 16}, torch::kFloat64);
  auto opts = crowdloss::PMLLossOptions().grids({1, 4}).pixel_mse_weight(1.0);
  int calls = 0;
  opts.all_reduce([&](at::Tensor& t) {
    ++calls;
    DOCTEST_CHECK((t.scalar_type() == at::kDouble));
    DOCTEST_CHECK(t.numel() == 2 + 4);  // two levels, images, Σ(pred − target)², pixels, ranks
  });
  const auto p = pred.clone().requires_grad_(true), q = pred.clone().requires_grad_(true);
  const auto one = crowdloss::pml_loss(p, target, opts);
  const auto plain = crowdloss::pml_loss(q, target, opts.all_reduce({}));
  DOCTEST_CHECK(calls == 1);
  DOCTEST_CHECK(one.item<double>() == doctest::Approx(plain.item<double>()).epsilon(1e-12));
  one.backward();
  plain.backward();
  DOCTEST_CHECK(scaled_error(p.grad(), q.grad()) < 1e-12);
  check_error(
      [&] {
        crowdloss::pml_loss(pred, target, crowdloss::PMLLossOptions().grids({1, 4}).all_reduce([](at::Tensor& t) {
          t = t.view({2, -1});
        }));
      },
      {"pml_loss", "all_reduce", "in place"});
}
