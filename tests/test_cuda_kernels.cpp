// crowdloss's own CUDA kernels (cuda_kernels.hpp, detail/cuda_jit.hpp, detail/pml_cuda.hpp): the
// switch, the runtime loader's failure path, the kernels' arithmetic run block by block on the
// CPU against the ATen path, and (on a CUDA machine) the kernels themselves against it.
#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

using crowdloss_test::check_error;
using crowdloss_test::scaled_error;

namespace {

// A tensor's elements as the kernels' storage type S (its bytes, copied), and back.
template <typename S>
std::vector<S> elements(const at::Tensor& t) {
  const auto c = t.contiguous();
  REQUIRE(c.element_size() == static_cast<int64_t>(sizeof(S)));
  std::vector<S> v(static_cast<size_t>(c.numel()));
  std::memcpy(v.data(), c.data_ptr(), v.size() * sizeof(S));
  return v;
}
template <typename S>
at::Tensor tensor_of(const std::vector<S>& v, at::IntArrayRef shape, at::ScalarType dtype) {
  auto t = at::empty(shape, dtype);
  REQUIRE(t.numel() * t.element_size() == static_cast<int64_t>(v.size() * sizeof(S)));
  std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(S));
  return t;
}

// Calls f with a value of the kernels' storage type for `dtype` (float, double, HalfBits or
// BFloat16Bits), whose compute type is ComputeOf's.
template <typename F>
void with_storage(at::ScalarType dtype, F&& f) {
  using namespace crowdloss::detail;
  if (dtype == at::kDouble) return f(double{});
  if (dtype == at::kFloat) return f(float{});
  if (dtype == at::kHalf) return f(HalfBits{});
  REQUIRE((dtype == at::kBFloat16));
  f(BFloat16Bits{});
}

// The emulated kernels on CPU maps (any floating dtype, read as the kernels read it; the finest
// grid dividing H and W): the terms (or their sum, with `pixel_weight`·Σe²/`pixels` when that
// is positive) in the compute dtype and, for `upstream` (L values, or 1 when summed), both
// gradients in the maps' dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor> emulated(const at::Tensor& pred, const at::Tensor& target,
                                                        const std::vector<int64_t>& grids, bool summed,
                                                        const at::Tensor& upstream, double pixel_weight = 0,
                                                        int64_t pixels = 0) {
  using namespace crowdloss::detail;
  const PmlParams q = pml_cuda_params(pred.sizes(), grids, summed, pixel_weight, pixels);
  REQUIRE(q.planes > 0);
  const auto dtype = pred.scalar_type(), compute = compute_dtype(dtype);
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result;
  with_storage(dtype, [&](auto storage) {
    using S = decltype(storage);
    using C = typename ComputeOf<S>::type;
    const auto p = elements<S>(pred), t = elements<S>(target);
    const auto u = elements<C>(upstream.to(compute));
    std::vector<double> levels(static_cast<size_t>(q.offsets[q.L])), slope(static_cast<size_t>(q.L));
    std::vector<double> squares(static_cast<size_t>(q.planes * q.f * q.f));
    std::vector<C> out(summed ? 1 : static_cast<size_t>(q.L));
    std::vector<S> grad_pred(p.size()), grad_target(p.size());
    pml_cuda_emulated_forward(p.data(), t.data(), q, levels.data(), squares.data(), slope.data(), out.data());
    pml_cuda_emulated_backward(q, levels.data(), slope.data(), u.data(), p.data(), t.data(), grad_pred.data(),
                               grad_target.data());
    result = {tensor_of(out, summed ? at::IntArrayRef{} : at::IntArrayRef{q.L}, compute),
              tensor_of(grad_pred, pred.sizes(), dtype), tensor_of(grad_target, pred.sizes(), dtype)};
  });
  return result;
}

}  // namespace

TEST_CASE("cuda_kernels: off unless CROWDLOSS_CUDA_KERNELS=1, and the setter returns the previous setting") {
  const char* env = std::getenv("CROWDLOSS_CUDA_KERNELS");
  const bool from_env = env != nullptr && std::strcmp(env, "1") == 0;
  DOCTEST_CHECK(crowdloss::cuda_kernels_enabled() == from_env);
  DOCTEST_CHECK(crowdloss::set_cuda_kernels_enabled(!from_env) == from_env);
  DOCTEST_CHECK(crowdloss::cuda_kernels_enabled() == !from_env);
  DOCTEST_CHECK(crowdloss::set_cuda_kernels_enabled(from_env) == !from_env);
  DOCTEST_CHECK(crowdloss::cuda_kernels_enabled() == from_env);
}

TEST_CASE("cuda_kernels: without the GPU driver the loader says why and no module is found") {
  const auto& api = crowdloss::detail::cuda_jit::api();
  if (api.ok) {
    std::cout << "CROWDLOSS_SKIPPED: a CUDA driver and NVRTC are here, the failure path is not run\n";
    return;
  }
  DOCTEST_CHECK(api.error.find("could not be loaded") != std::string::npos);
  // The module is not compiled (its source is never asked for) and null comes back, twice.
  int asked = 0;
  const auto source = [&] {
    ++asked;
    return std::string();
  };
  const at::Device device(at::kCUDA, 0);
  DOCTEST_CHECK(crowdloss::detail::cuda_jit::Module::find("crowdloss_test_module", source, device) == nullptr);
  DOCTEST_CHECK(crowdloss::detail::cuda_jit::Module::find("crowdloss_test_module", source, device) == nullptr);
  DOCTEST_CHECK(asked == 0);
}

TEST_CASE("cuda_kernels: the stream handle comes from c10::Stream::native_handle where LibTorch has it") {
  struct WithHandle {
    void* native_handle() const { return reinterpret_cast<void*>(0x40); }
  };
  struct WithoutHandle {};
  DOCTEST_CHECK(crowdloss::detail::native_handle(WithHandle{}) == reinterpret_cast<void*>(0x40));
  check_error([] { crowdloss::detail::native_handle(WithoutHandle{}); }, {"native_handle", "2.2"});
  // LibTorch 1.13's c10::Stream has none, 2.2 and newer have it.
  DOCTEST_CHECK(crowdloss::detail::HasNativeHandle<c10::Stream>::value == CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 2));
}

TEST_CASE("cuda kernels: PML and SSIM are compiled for half-precision maps too, NMS for float and double") {
  using crowdloss::detail::kNmsKernels;
  using crowdloss::detail::kPmlKernels;
  using crowdloss::detail::kSsimKernels;
  for (const auto& module : {kPmlKernels, kSsimKernels, kNmsKernels}) {
    INFO(module.stem);
    DOCTEST_CHECK(module.name(torch::kFloat32) == std::string(module.stem) + "_float");
    DOCTEST_CHECK(module.name(torch::kFloat64) == std::string(module.stem) + "_double");
    DOCTEST_CHECK(module.element(torch::kInt32) == nullptr);
    DOCTEST_CHECK_THROWS_AS(module.name(torch::kInt64), c10::Error);
  }
  for (const auto& module : {kPmlKernels, kSsimKernels}) {
    DOCTEST_CHECK(module.name(torch::kHalf) == std::string(module.stem) + "_half");
    DOCTEST_CHECK(std::string(module.element(torch::kBFloat16)->storage) == "BFloat16Bits");
  }
  // NMS's dispatch computes half boxes in float: no module may read them as float.
  DOCTEST_CHECK(kNmsKernels.element(torch::kHalf) == nullptr);
  DOCTEST_CHECK(kNmsKernels.element(torch::kBFloat16) == nullptr);
  DOCTEST_CHECK(kNmsKernels.find(torch::kHalf, torch::Device(torch::kCUDA, 0)) == nullptr);
}

TEST_CASE("cuda storage: float16 and bfloat16 widen and round as c10::Half and c10::BFloat16 do") {
  using crowdloss::detail::BFloat16Bits;
  using crowdloss::detail::bits_as_float;
  using crowdloss::detail::float_as_bits;
  using crowdloss::detail::HalfBits;
  const auto same_float = [](float a, float b) {
    return std::isnan(a) ? std::isnan(b) : float_as_bits(a) == float_as_bits(b);
  };
  // Widening: every one of the 65,536 patterns, bit for bit (NaN as NaN).
  int64_t widen_mismatches = 0;
  for (unsigned int bits = 0; bits < 0x10000u; ++bits) {
    const auto b16 = static_cast<uint16_t>(bits);
    widen_mismatches += !same_float(crowdloss::detail::loaded(HalfBits{b16}),
                                    static_cast<float>(c10::Half(b16, c10::Half::from_bits())));
    widen_mismatches += !same_float(crowdloss::detail::loaded(BFloat16Bits{b16}),
                                    static_cast<float>(c10::BFloat16(b16, c10::BFloat16::from_bits())));
  }
  DOCTEST_CHECK(widen_mismatches == 0);
  // Rounding: floats spread over every exponent, and around every value of each format — the
  // value, its float neighbours, and the midpoints to the next value (ties) with theirs.
  std::vector<float> probes;
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 65521)
    probes.push_back(bits_as_float(static_cast<unsigned int>(bits)));
  for (unsigned int bits = 0; bits < 0x7c00u; ++bits) {  // the finite non-negative halves
    const float v = static_cast<float>(c10::Half(static_cast<uint16_t>(bits), c10::Half::from_bits()));
    const float next = static_cast<float>(c10::Half(static_cast<uint16_t>(bits + 1), c10::Half::from_bits()));
    const float mid = static_cast<float>((static_cast<double>(v) + static_cast<double>(next)) / 2);  // exact
    for (const float x : {v, mid})
      for (const float y : {x, std::nextafter(x, 0.0f), std::nextafter(x, 1e30f)}) probes.insert(probes.end(), {y, -y});
  }
  for (unsigned int bits = 0; bits < 0x7f80u; ++bits) {  // the finite non-negative bfloat16 values
    const float v = bits_as_float(bits << 16), next = bits_as_float((bits + 1) << 16);
    const float mid = static_cast<float>((static_cast<double>(v) + static_cast<double>(next)) / 2);  // exact
    for (const float x : {v, mid})
      for (const float y : {x, std::nextafter(x, 0.0f), std::nextafter(x, 1e38f)}) probes.insert(probes.end(), {y, -y});
  }
  for (const float x : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(), 65504.0f, 65519.99f,
                        65520.0f, std::numeric_limits<float>::denorm_min()})
    probes.insert(probes.end(), {x, -x});
  int64_t half_mismatches = 0, bfloat16_mismatches = 0, nan_mismatches = 0;
  for (const float x : probes) {
    HalfBits h{};
    BFloat16Bits b{};
    crowdloss::detail::store(&h, x);
    crowdloss::detail::store(&b, x);
    half_mismatches += h.bits != c10::Half(x).x;
    bfloat16_mismatches += b.bits != c10::BFloat16(x).x;
  }
  for (const unsigned int nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fbfffffu, 0xffffffffu}) {
    HalfBits h{};
    BFloat16Bits b{};
    crowdloss::detail::store(&h, bits_as_float(nan));
    crowdloss::detail::store(&b, bits_as_float(nan));
    nan_mismatches += !std::isnan(crowdloss::detail::loaded(h)) + !std::isnan(crowdloss::detail::loaded(b));
  }
  INFO(probes.size() << " probes");
  DOCTEST_CHECK(probes.size() > 700000);
  DOCTEST_CHECK(half_mismatches == 0);
  DOCTEST_CHECK(bfloat16_mismatches == 0);
  DOCTEST_CHECK(nan_mismatches == 0);
}

TEST_CASE("pml device kernels: their arithmetic, run on the CPU, equals the ATen path in float64") {
  struct Case {
    std::vector<int64_t> shape, grids;
  };
  // Cells of 1 pixel, of fewer pixels than threads, of more (the walk's steps wrap rows or not),
  // non-square maps and cells, one grid, several planes per image.
  const std::vector<Case> cases = {
      {{1, 1, 16, 16}, {1, 2, 4, 8, 16}},
      {{2, 1, 24, 40}, {1, 2, 4, 8}},
      {{3, 2, 36, 60}, {1, 3, 6}},
      {{2, 1, 96, 96}, {1, 2, 4}},
      {{1, 1, 160, 48}, {2, 4}},
      {{4, 1, 64, 64}, {1, 2, 4, 8, 16, 32}},
      {{1, 1, 7, 5}, {1}},
      {{2, 1, 300, 17}, {1}},
  };
  for (const auto& c : cases) {
    for (const bool summed : {false, true}) {
      INFO("shape " << at::IntArrayRef(c.shape) << " grids " << at::IntArrayRef(c.grids) << " summed " << summed);
      torch::manual_seed(5);
      auto pred = torch::rand(c.shape, torch::kFloat64).requires_grad_(true);
      auto target = (torch::rand(c.shape, torch::kFloat64) * 1.3).requires_grad_(true);
      const auto L = static_cast<int64_t>(c.grids.size());
      const auto upstream = summed ? torch::randn({}, torch::kFloat64) : torch::randn({L}, torch::kFloat64);
      const auto terms = crowdloss::detail::pml_terms_aten(pred, target, c.grids, /*reference_order=*/true);
      const auto value = summed ? terms.sum() : terms;
      const auto grads = torch::autograd::grad({value}, {pred, target}, {upstream});
      const auto [out, grad_pred, grad_target] = emulated(pred.detach(), target.detach(), c.grids, summed, upstream);
      DOCTEST_CHECK(scaled_error(out, value.detach()) <= 1e-12);
      DOCTEST_CHECK(scaled_error(grad_pred, grads[0]) <= 1e-12);
      DOCTEST_CHECK(scaled_error(grad_target, grads[1]) <= 1e-12);
      DOCTEST_CHECK(torch::equal(grad_target, -grad_pred));
    }
  }
}

TEST_CASE("pml device kernels: the pixel term folded in equals the ATen path's, padded maps included") {
  // pml_loss's pixel_mse_weight·mean((pred − target)²) is summed by the same kernels; over maps
  // padded to the finest grid the mean still divides by the unpadded pixels.
  const std::vector<int64_t> grids = {1, 2, 4, 8};
  for (const bool pad : {false, true}) {
    INFO("padded " << pad);
    torch::manual_seed(12);
    const std::vector<int64_t> shape = pad ? std::vector<int64_t>{2, 1, 29, 35} : std::vector<int64_t>{2, 1, 32, 40};
    auto pred = torch::rand(shape, torch::kFloat64).requires_grad_(true);
    auto target = torch::rand(shape, torch::kFloat64).requires_grad_(true);
    const auto opts = crowdloss::PMLLossOptions().grids(grids).pixel_mse_weight(0.7).pad_to_multiple(pad);
    const auto loss = crowdloss::pml_loss(pred, target, opts);
    const auto upstream = torch::full({}, 1.9, torch::kFloat64);
    const auto grads = torch::autograd::grad({loss}, {pred, target}, {upstream});
    const auto [p, t] = crowdloss::detail::pml_prepared("test", pred.detach(), target.detach(), opts);
    const auto [out, grad_pred, grad_target] = emulated(p, t, grids, true, upstream, 0.7, pred.numel());
    DOCTEST_CHECK(scaled_error(out, loss.detach()) <= 1e-12);
    const auto unpadded = [&](const at::Tensor& g) { return g.narrow(2, 0, shape[2]).narrow(3, 0, shape[3]); };
    DOCTEST_CHECK(scaled_error(unpadded(grad_pred), grads[0]) <= 1e-12);
    DOCTEST_CHECK(scaled_error(unpadded(grad_target), grads[1]) <= 1e-12);
  }
}

TEST_CASE("pml device kernels: float32 on the CPU, and NaN, a perfect fit and the relu's kink as the ATen path") {
  torch::manual_seed(6);
  const std::vector<int64_t> grids = {1, 2, 4, 8, 16, 32};
  const auto pred = torch::rand({2, 1, 128, 96});
  const auto target = torch::rand({2, 1, 128, 96});
  const auto one = torch::ones({});
  {
    const auto [out, gp, gt] = emulated(pred, target, grids, true, one);
    const auto p64 = pred.to(torch::kFloat64).requires_grad_(true);
    const auto ref = crowdloss::detail::pml_terms_aten(p64, target.to(torch::kFloat64), grids, true).sum();
    const auto ref_grad = torch::autograd::grad({ref}, {p64})[0];
    DOCTEST_CHECK(out.item<double>() == doctest::Approx(ref.item<double>()).epsilon(1e-6));
    DOCTEST_CHECK(scaled_error(gp.to(torch::kFloat64), ref_grad) <= 1e-5);
    DOCTEST_CHECK((out.scalar_type() == torch::kFloat32));
  }
  {  // A perfect fit: zero terms and zero gradients; relus at their kink pass nothing.
    const auto [out, gp, gt] = emulated(pred, pred, grids, false, torch::ones({6}));
    DOCTEST_CHECK(torch::equal(out, torch::zeros({6})));
    DOCTEST_CHECK(torch::equal(gp, torch::zeros_like(pred)));
  }
  {  // NaN in one pixel reaches the value and every gradient, as in the ATen path.
    auto nan_pred = pred.clone();
    nan_pred[1][0][5][7] = std::numeric_limits<float>::quiet_NaN();
    const auto [out, gp, gt] = emulated(nan_pred, target, grids, true, one);
    const auto ref = crowdloss::detail::pml_terms_aten(nan_pred, target, grids, false).sum();
    DOCTEST_CHECK(std::isnan(out.item<float>()));
    DOCTEST_CHECK(std::isnan(ref.item<float>()));
    DOCTEST_CHECK(torch::isnan(gp).all().item<bool>());
  }
}

TEST_CASE("pml device kernels: float16 and bfloat16 maps are read as they are and computed in float32") {
  // The half-precision kernels compute exactly what the float32 kernels compute on the maps'
  // values, and round each gradient once, to nearest even, as ATen's conversion does.
  const std::vector<int64_t> grids = {1, 2, 4, 8};
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    for (const bool summed : {false, true}) {
      INFO("dtype " << dtype << " summed " << summed);
      torch::manual_seed(13);
      const auto pred = torch::rand({2, 1, 48, 40}).to(dtype), target = (torch::rand({2, 1, 48, 40}) * 1.2).to(dtype);
      const auto upstream = summed ? torch::randn({}) : torch::randn({4});
      const double weight = summed ? 0.6 : 0.0;
      const auto [out, grad_pred, grad_target] = emulated(pred, target, grids, summed, upstream, weight, pred.numel());
      const auto [out32, grad_pred32, grad_target32] =
          emulated(pred.to(torch::kFloat32), target.to(torch::kFloat32), grids, summed, upstream, weight, pred.numel());
      DOCTEST_CHECK((out.scalar_type() == torch::kFloat32));
      DOCTEST_CHECK(torch::equal(out, out32));
      DOCTEST_CHECK((grad_pred.scalar_type() == dtype));
      DOCTEST_CHECK(torch::equal(grad_pred, grad_pred32.to(dtype)));
      DOCTEST_CHECK(torch::equal(grad_target, grad_target32.to(dtype)));
      // And the values are PML's: the float64 ATen path on the same (rounded) maps.
      const auto p64 = pred.to(torch::kFloat64), t64 = target.to(torch::kFloat64);
      const auto terms = crowdloss::detail::pml_terms_aten(p64, t64, grids, true);
      const auto ref = summed ? terms.sum() + weight * (p64 - t64).square().mean() : terms;
      DOCTEST_CHECK(scaled_error(out.to(torch::kFloat64), ref) <= 1e-5);
    }
  }
}

TEST_CASE("pml device kernels: float32 maps near float32's largest give PML's finite terms and gradients") {
  // Issue 17: the ATen path's float32 block sums overflow for maps of 10³⁰ and beyond; the
  // kernels take each difference and every sum in double.
  torch::manual_seed(16);
  const std::vector<int64_t> grids = {1, 2, 4, 8};
  const auto upstream = torch::randn({4});
  for (const float magnitude : {1e30f, 3e38f}) {
    INFO("magnitude " << magnitude);
    const auto pred = torch::rand({2, 1, 32, 24}) * magnitude, target = torch::rand({2, 1, 32, 24}) * -magnitude;
    DOCTEST_CHECK(!torch::isfinite(crowdloss::detail::pml_terms_aten(pred, target, grids, true)).all().item<bool>());
    const auto [out, grad_pred, grad_target] = emulated(pred, target, grids, false, upstream);
    const auto p64 = pred.to(torch::kFloat64).requires_grad_(true);
    const auto terms = crowdloss::detail::pml_terms_aten(p64, target.to(torch::kFloat64), grids, true);
    const auto ref_grad = torch::autograd::grad({terms}, {p64}, {upstream.to(torch::kFloat64)})[0];
    DOCTEST_CHECK(scaled_error(out.to(torch::kFloat64), terms.detach()) <= 1e-6);
    DOCTEST_CHECK(torch::isfinite(grad_pred).all().item<bool>());
    // At 3·10³⁸ the gradients (about 10⁻⁴¹) are float32 subnormals: finite, but of few digits.
    if (magnitude < 1e31f) DOCTEST_CHECK(scaled_error(grad_pred.to(torch::kFloat64), ref_grad) <= 1e-5);
  }
}

TEST_CASE("pml device kernels: maps they cannot take are left to the ATen path") {
  using crowdloss::detail::pml_cuda_params;
  DOCTEST_CHECK(pml_cuda_params(std::vector<int64_t>{2, 1, 64, 64}, {1, 2, 4}, true).planes == 2);
  // More finest cells than a grid of blocks holds (2³¹ − 1), and a cell of 2³¹ pixels.
  DOCTEST_CHECK(pml_cuda_params(std::vector<int64_t>{int64_t{1} << 22, 1, 1024, 1024}, {1, 32}, true).planes == 0);
  DOCTEST_CHECK(pml_cuda_params(std::vector<int64_t>{1, 1, int64_t{1} << 16, int64_t{1} << 15}, {1}, true).planes == 0);
  // More than 32 grids.
  std::vector<int64_t> grids;
  for (int64_t g = 1; grids.size() < 33; g *= 2) grids.push_back(g);
  DOCTEST_CHECK(pml_cuda_params(std::vector<int64_t>{1, 1, int64_t{1} << 32, int64_t{1} << 32}, grids, true).planes ==
                0);
  // The switch does not move CPU maps off the CPU kernel.
  const bool before = crowdloss::set_cuda_kernels_enabled(true);
  const auto p = torch::rand({1, 1, 32, 32}, torch::kFloat64), t = torch::rand({1, 1, 32, 32}, torch::kFloat64);
  DOCTEST_CHECK(!crowdloss::detail::pml_cuda_takes(p, {1, 2, 4}, true));
  DOCTEST_CHECK(
      crowdloss::pml_loss(p, t).item<double>() ==
      doctest::Approx(crowdloss::detail::pml_terms_aten(p, t, {1, 2, 4, 8, 16, 32}, true).sum().item<double>())
          .epsilon(1e-12));
  crowdloss::set_cuda_kernels_enabled(before);
}

TEST_CASE("pml_loss: the CUDA kernels equal the ATen path on CUDA, and run deterministically") {
  if (!crowdloss_test::cuda_or_skip("pml CUDA kernels against the ATen path")) return;
  struct Case {
    std::vector<int64_t> shape;
    bool pad;
  };
  const std::vector<Case> cases = {{{1, 1, 16, 16}, true},    {{3, 2, 37, 53}, true},    {{64, 1, 64, 64}, false},
                                   {{8, 1, 512, 512}, false}, {{1, 1, 96, 1024}, false}, {{2, 1, 2048, 2048}, false}};
  const bool before = crowdloss::set_cuda_kernels_enabled(false);
  for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16, torch::kHalf}) {
    for (const auto& c : cases) {
      for (const bool strided : {false, true}) {
        INFO("dtype " << dtype << " shape " << at::IntArrayRef(c.shape) << " strided " << strided);
        torch::manual_seed(7);
        auto make = [&](double scale) {
          auto base = (torch::rand(c.shape, torch::kFloat64) * scale).to(dtype).cuda();
          return strided ? base.transpose(2, 3).contiguous().transpose(2, 3) : base;
        };
        const auto pred0 = make(1.0), target0 = make(1.2);
        const auto opts = crowdloss::PMLLossOptions().pad_to_multiple(c.pad).pixel_mse_weight(0.5);
        const auto run = [&](bool kernels, const at::Tensor& pred_in, const at::Tensor& target_in) {
          crowdloss::set_cuda_kernels_enabled(kernels);
          auto pred = pred_in.detach().clone().requires_grad_(true),
               target = target_in.detach().clone().requires_grad_(true);
          auto loss = crowdloss::pml_loss(pred, target, opts);
          const auto terms = crowdloss::pml_loss_terms(pred, target, opts);
          (loss + terms.sum()).backward();
          crowdloss::set_cuda_kernels_enabled(false);
          return std::make_tuple(loss.detach().to(torch::kFloat64).cpu(), terms.detach().to(torch::kFloat64).cpu(),
                                 pred.grad().to(torch::kFloat64).cpu(), target.grad().to(torch::kFloat64).cpu());
        };
        crowdloss::set_cuda_kernels_enabled(true);
        // The kernels take every dtype as it is (half precision too).
        DOCTEST_REQUIRE(
            crowdloss::detail::pml_cuda_takes(pred0.contiguous(), crowdloss::PMLLossOptions().grids(), true));
        const auto [loss, terms, gp, gt] = run(true, pred0, target0);
        // The reference: the ATen path in float64 on the same (rounded) values. PML's level
        // increments cancel heavily (at 2048², M₁ ≈ 4·10¹⁰ against an increment of 6·10⁵), so a
        // float32 ATen reference is itself off by up to 6·10⁻³ where the kernels, summing in
        // double, are not; in float64 the summation order alone moves the gradient by ~3·10⁻¹¹.
        const auto [ref_loss, ref_terms, ref_gp, ref_gt] =
            run(false, pred0.to(torch::kFloat64), target0.to(torch::kFloat64));
        const double tol = dtype == torch::kFloat64 ? 1e-9 : dtype == torch::kFloat32 ? 1e-5 : 2e-2;
        DOCTEST_CHECK(scaled_error(loss, ref_loss) <= tol);
        DOCTEST_CHECK(scaled_error(terms, ref_terms) <= tol);
        DOCTEST_CHECK(scaled_error(gp, ref_gp) <= tol);
        DOCTEST_CHECK(scaled_error(gt, ref_gt) <= tol);
        const auto [loss2, terms2, gp2, gt2] = run(true, pred0, target0);
        DOCTEST_CHECK(torch::equal(loss, loss2));
        DOCTEST_CHECK(torch::equal(terms, terms2));
        DOCTEST_CHECK(torch::equal(gp, gp2));
        DOCTEST_CHECK(torch::equal(gt, gt2));
      }
    }
  }
  {  // NaN propagates as in the ATen path.
    crowdloss::set_cuda_kernels_enabled(true);
    auto pred = torch::rand({2, 1, 64, 64}, torch::kFloat32).cuda();
    pred[1][0][3][9] = std::numeric_limits<float>::quiet_NaN();
    DOCTEST_CHECK(std::isnan(crowdloss::pml_loss(pred, torch::rand_like(pred)).item<float>()));
  }
  crowdloss::set_cuda_kernels_enabled(before);
}

namespace {

// The emulated SSIM kernels on CPU maps (any floating dtype, read as the kernels read it):
// per-channel SSIM and squared error in the compute dtype, and the gradients in the maps' dtype
// for the upstream gradients gs, gm (B×C; gm may be undefined).
struct SsimEmulated {
  at::Tensor ssim, mse, grad_x, grad_y;
};
SsimEmulated ssim_emulated(const at::Tensor& x, const at::Tensor& y, int64_t taps, bool same, bool with_mse,
                           const at::Tensor& gs, const at::Tensor& gm, double data_range = 1.0) {
  using namespace crowdloss::detail;
  const auto dtype = x.scalar_type(), compute = compute_dtype(dtype);
  const auto window = gaussian_window(taps, 1.5, compute, at::kCPU);
  SsimParams q =
      ssim_cuda_params(x, window, same ? taps / 2 : 0, std::pow(0.01 * data_range, 2), std::pow(0.03 * data_range, 2));
  REQUIRE(q.planes > 0);
  q.with_mse = with_mse ? 1 : 0;
  SsimEmulated out;
  with_storage(dtype, [&](auto storage) {
    using S = decltype(storage);
    using C = typename ComputeOf<S>::type;
    const auto xs = elements<S>(x), ys = elements<S>(y);
    const auto s = elements<C>(gs.to(compute));
    const auto m = gm.defined() ? elements<C>(gm.to(compute)) : std::vector<C>();
    std::vector<C> ssim(static_cast<size_t>(q.planes)), mse(ssim.size());
    std::vector<S> grad_x(xs.size()), grad_y(xs.size());
    ssim_cuda_emulated_forward(xs.data(), ys.data(), q, ssim.data(), mse.data());
    ssim_cuda_emulated_backward(xs.data(), ys.data(), q, s.data(), gm.defined() ? m.data() : nullptr, grad_x.data(),
                                grad_y.data());
    const std::vector<int64_t> planes = {x.size(0), x.size(1)};
    out = {tensor_of(ssim, planes, compute), tensor_of(mse, planes, compute), tensor_of(grad_x, x.sizes(), dtype),
           tensor_of(grad_y, x.sizes(), dtype)};
  });
  return out;
}

}  // namespace

TEST_CASE("ssim device kernels: their arithmetic, run on the CPU, equals the ATen path in float64") {
  struct Case {
    std::vector<int64_t> shape;
    int64_t taps;
    bool same;
  };
  // One output position, tiles cut by the map's edge, several planes, small and large windows,
  // valid and same padding.
  const std::vector<Case> cases = {{{1, 1, 11, 11}, 11, false}, {{2, 1, 37, 53}, 11, false}, {{2, 1, 37, 53}, 11, true},
                                   {{1, 2, 20, 70}, 7, true},   {{3, 1, 16, 16}, 5, false},  {{1, 1, 40, 33}, 9, true}};
  for (const auto& c : cases) {
    for (const bool with_mse : {false, true}) {
      INFO("shape " << at::IntArrayRef(c.shape) << " taps " << c.taps << " same " << c.same << " mse " << with_mse);
      torch::manual_seed(8);
      auto x = torch::rand(c.shape, torch::kFloat64).requires_grad_(true);
      auto y = (torch::rand(c.shape, torch::kFloat64) * 0.8 + 0.1).requires_grad_(true);
      const crowdloss::detail::SSIMSetup s{x,
                                           y,
                                           crowdloss::detail::gaussian_window(c.taps, 1.5, torch::kFloat64, at::kCPU),
                                           c.same ? c.taps / 2 : 0,
                                           1e-4,
                                           9e-4};
      const auto ssim = crowdloss::detail::ssim_map_aten(s).flatten(2).mean(-1);
      const auto mse = (x - y).square().flatten(2).mean(-1);
      const auto gs = torch::randn(ssim.sizes(), torch::kFloat64), gm = torch::randn(ssim.sizes(), torch::kFloat64);
      const auto objective = (ssim * gs).sum() + (with_mse ? (mse * gm).sum() : torch::zeros({}, torch::kFloat64));
      const auto grads = torch::autograd::grad({objective}, {x, y});
      const auto out =
          ssim_emulated(x.detach(), y.detach(), c.taps, c.same, with_mse, gs, with_mse ? gm : at::Tensor());
      DOCTEST_CHECK(scaled_error(out.ssim, ssim.detach()) <= 1e-12);
      if (with_mse) DOCTEST_CHECK(scaled_error(out.mse, mse.detach()) <= 1e-12);
      DOCTEST_CHECK(scaled_error(out.grad_x, grads[0]) <= 1e-12);
      DOCTEST_CHECK(scaled_error(out.grad_y, grads[1]) <= 1e-12);
    }
  }
}

TEST_CASE("ssim device kernels: float32 on the CPU as the float64 ATen path, and the windows they take") {
  torch::manual_seed(9);
  const auto x = torch::rand({2, 1, 70, 45}), y = torch::rand({2, 1, 70, 45});
  const auto gs = torch::ones({2, 1}), gm = torch::full({2, 1}, 0.5);
  const auto out = ssim_emulated(x, y, 11, false, true, gs, gm);
  auto x64 = x.to(torch::kFloat64).requires_grad_(true);
  const crowdloss::detail::SSIMSetup s{
      x64, y.to(torch::kFloat64), crowdloss::detail::gaussian_window(11, 1.5, torch::kFloat64, at::kCPU), 0, 1e-4,
      9e-4};
  const auto ssim = crowdloss::detail::ssim_map_aten(s).flatten(2).mean(-1);
  const auto mse = (s.x - s.y).square().flatten(2).mean(-1);
  const auto grad = torch::autograd::grad({ssim.sum() + 0.5 * mse.sum()}, {x64})[0];
  DOCTEST_CHECK(scaled_error(out.ssim.to(torch::kFloat64), ssim.detach()) <= 1e-5);
  DOCTEST_CHECK(scaled_error(out.mse.to(torch::kFloat64), mse.detach()) <= 1e-5);
  DOCTEST_CHECK(scaled_error(out.grad_x.to(torch::kFloat64), grad) <= 1e-4);
  // Shared memory bounds the window: 13 taps in float32, 11 in float64 (48 KiB a block).
  using crowdloss::detail::ssim_cuda_params;
  const auto window = [](int64_t taps, at::ScalarType dtype) {
    return crowdloss::detail::gaussian_window(taps, 1.5, dtype, at::kCPU);
  };
  const auto x64_map = torch::zeros({1, 1, 64, 64}, torch::kFloat64);
  DOCTEST_CHECK(ssim_cuda_params(x, window(13, torch::kFloat32), 0, 1e-4, 9e-4).planes == 2);
  DOCTEST_CHECK(ssim_cuda_params(x, window(15, torch::kFloat32), 0, 1e-4, 9e-4).planes == 0);
  DOCTEST_CHECK(ssim_cuda_params(x64_map, window(11, torch::kFloat64), 0, 1e-4, 9e-4).planes == 1);
  DOCTEST_CHECK(ssim_cuda_params(x64_map, window(13, torch::kFloat64), 0, 1e-4, 9e-4).planes == 0);
}

TEST_CASE("ssim device kernels: float16 and bfloat16 maps are read as they are and computed in float32") {
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    for (const bool same : {false, true}) {
      INFO("dtype " << dtype << " same " << same);
      torch::manual_seed(14);
      const auto x = torch::rand({2, 1, 37, 53}).to(dtype), y = (torch::rand({2, 1, 37, 53}) * 0.8 + 0.1).to(dtype);
      const auto gs = torch::randn({2, 1}), gm = torch::randn({2, 1});
      const auto out = ssim_emulated(x, y, 11, same, true, gs, gm);
      const auto out32 = ssim_emulated(x.to(torch::kFloat32), y.to(torch::kFloat32), 11, same, true, gs, gm);
      DOCTEST_CHECK((out.ssim.scalar_type() == torch::kFloat32));
      DOCTEST_CHECK(torch::equal(out.ssim, out32.ssim));
      DOCTEST_CHECK(torch::equal(out.mse, out32.mse));
      DOCTEST_CHECK((out.grad_x.scalar_type() == dtype));
      DOCTEST_CHECK(torch::equal(out.grad_x, out32.grad_x.to(dtype)));
      DOCTEST_CHECK(torch::equal(out.grad_y, out32.grad_y.to(dtype)));
      // And the values are SSIM's: the float64 ATen path on the same (rounded) maps.
      const crowdloss::detail::SSIMSetup s{x.to(torch::kFloat64),
                                           y.to(torch::kFloat64),
                                           crowdloss::detail::gaussian_window(11, 1.5, torch::kFloat64, at::kCPU),
                                           same ? 5 : 0,
                                           1e-4,
                                           9e-4};
      const auto ref = crowdloss::detail::ssim_map_aten(s).flatten(2).mean(-1);
      DOCTEST_CHECK(scaled_error(out.ssim.to(torch::kFloat64), ref) <= 1e-5);
    }
  }
  // The regions are held in float: the longest window in float16 is float32's.
  const auto window = [](int64_t taps) {
    return crowdloss::detail::gaussian_window(taps, 1.5, torch::kFloat32, at::kCPU);
  };
  const auto map = torch::zeros({1, 1, 64, 64}, torch::kHalf);
  DOCTEST_CHECK(crowdloss::detail::ssim_cuda_params(map, window(13), 0, 1e-4, 9e-4).planes == 1);
  DOCTEST_CHECK(crowdloss::detail::ssim_cuda_params(map, window(15), 0, 1e-4, 9e-4).planes == 0);
}

TEST_CASE("ssim device kernels: maps whose squares overflow the compute type give SSIM's finite values") {
  // Issue 17: in float32 the ATen path gives NaN for ssim(p, p) with p of 10²⁰; a block whose
  // region holds magnitudes beyond 2⁶⁰ divides it by a power of two and takes SSIM in double.
  const auto reference = [](const at::Tensor& x, const at::Tensor& y, const at::Tensor& gs, const at::Tensor& gm,
                            double data_range = 1.0) {
    auto x64 = x.to(torch::kFloat64).requires_grad_(true), y64 = y.to(torch::kFloat64).requires_grad_(true);
    const crowdloss::detail::SSIMSetup s{x64,
                                         y64,
                                         crowdloss::detail::gaussian_window(11, 1.5, torch::kFloat64, at::kCPU),
                                         0,
                                         std::pow(0.01 * data_range, 2),
                                         std::pow(0.03 * data_range, 2)};
    const auto ssim = crowdloss::detail::ssim_map_aten(s).flatten(2).mean(-1);
    const auto mse = (x64 - y64).square().flatten(2).mean(-1);
    const auto grads = torch::autograd::grad(
        {(ssim * gs.to(torch::kFloat64)).sum() + (mse * gm.to(torch::kFloat64)).sum()}, {x64, y64});
    return std::make_tuple(ssim.detach(), mse.detach(), grads[0], grads[1]);
  };
  torch::manual_seed(15);
  const auto gs = torch::randn({2, 1}), gm = torch::randn({2, 1});
  for (const double magnitude : {1e19, 1e20, 1e30}) {
    INFO("magnitude " << magnitude);
    const auto x = torch::rand({2, 1, 40, 33}) * static_cast<float>(magnitude);
    const auto y = (torch::rand({2, 1, 40, 33}) * 0.8 + 0.1) * static_cast<float>(magnitude);
    if (magnitude >= 1e20) {  // where the float32 ATen path gives NaN
      const crowdloss::detail::SSIMSetup s32{
          x, y, crowdloss::detail::gaussian_window(11, 1.5, torch::kFloat32, at::kCPU), 0, 1e-4, 9e-4};
      DOCTEST_CHECK(torch::isnan(crowdloss::detail::ssim_map_aten(s32)).any().item<bool>());
    }
    const bool with_mse = magnitude < 1e20;  // beyond, the mean square itself exceeds float32
    const auto out = ssim_emulated(x, y, 11, false, with_mse, gs, with_mse ? gm : at::Tensor());
    const auto [ssim, mse, grad_x, grad_y] = reference(x, y, gs, with_mse ? gm : torch::zeros_like(gm));
    DOCTEST_CHECK(scaled_error(out.ssim.to(torch::kFloat64), ssim) <= 1e-5);
    if (with_mse) DOCTEST_CHECK(scaled_error(out.mse.to(torch::kFloat64), mse) <= 1e-5);
    DOCTEST_CHECK(scaled_error(out.grad_x.to(torch::kFloat64), grad_x) <= 1e-4);
    DOCTEST_CHECK(scaled_error(out.grad_y.to(torch::kFloat64), grad_y) <= 1e-4);
  }
  {  // ssim(p, p) = 1 up to float32's largest, with finite gradients.
    const auto p = torch::rand({1, 1, 30, 30}) * 3.4e38f;
    const auto out = ssim_emulated(p, p, 11, true, false, torch::ones({1, 1}), at::Tensor());
    DOCTEST_CHECK(out.ssim.item<double>() == doctest::Approx(1.0).epsilon(1e-6));
    DOCTEST_CHECK(torch::isfinite(out.grad_x).all().item<bool>());
  }
  {  // One huge pixel (row 20): the tiles whose regions hold it are divided (rows 0–31 forward and
     // backward), and the rest, in those tiles too, keeps its value.
    torch::manual_seed(17);
    auto x = torch::rand({1, 1, 48, 48});
    const auto y = torch::rand({1, 1, 48, 48});
    x[0][0][20][20] = 1e20f;
    const auto out = ssim_emulated(x, y, 11, false, true, torch::ones({1, 1}), torch::ones({1, 1}));
    const auto [ssim, mse, grad_x, grad_y] = reference(x, y, torch::ones({1, 1}), torch::ones({1, 1}));
    DOCTEST_CHECK(scaled_error(out.ssim.to(torch::kFloat64), ssim) <= 1e-5);
    DOCTEST_CHECK(scaled_error(out.mse.to(torch::kFloat64), mse) <= 1e-5);
    DOCTEST_CHECK(scaled_error(out.grad_x.to(torch::kFloat64), grad_x) <= 1e-4);  // the huge pixel's dominates
    // From row 31 on no output that reads the pixel reaches: the gradients of ordinary values,
    // row 31 from a divided block.
    const auto far = [](const at::Tensor& g) { return g.narrow(2, 31, 17).to(torch::kFloat64); };
    DOCTEST_CHECK(scaled_error(far(out.grad_x), far(grad_x)) <= 1e-4);
    DOCTEST_CHECK(scaled_error(far(out.grad_y), far(grad_y)) <= 1e-4);
  }
  {  // A density map of zeros with one pixel of 3·10³⁸: its blocks are divided by 2⁶⁸, where the
     // derivatives of flat windows with respect to the divided second moments (2|scale|·s²/C2,
     // about 10⁴¹ here) exceed float; they are stored divided by 2³⁶ (ssim_moment_divisor), while
     // blocks of 10²⁰ (s = 2⁷) keep them as they are.
    const double scale = 1.0 / (54 * 54);  // the plane's SSIM coefficient: 54×54 outputs
    DOCTEST_CHECK(crowdloss::detail::ssim_moment_divisor<float>(scale, 0x1p68, 9e-4) == 0x1p36);
    DOCTEST_CHECK(crowdloss::detail::ssim_moment_divisor<float>(scale, 0x1p7, 9e-4) == 1);
    DOCTEST_CHECK(crowdloss::detail::ssim_moment_divisor<double>(scale, 0x1p68, 9e-4) == 1);
    DOCTEST_CHECK(crowdloss::detail::ssim_moment_divisor<float>(scale, 0x1p68, 0) == 1);
    DOCTEST_CHECK(crowdloss::detail::ssim_moment_divisor<float>(scale, 1, 1e-40) == 1);  // undivided blocks
    auto x = torch::zeros({1, 1, 64, 64});
    x[0][0][30][30] = 3e38f;
    torch::manual_seed(19);
    const auto y = torch::rand({1, 1, 64, 64});
    const auto out = ssim_emulated(x, y, 11, false, false, torch::ones({1, 1}), at::Tensor());
    const auto [ssim, mse, grad_x, grad_y] = reference(x, y, torch::ones({1, 1}), torch::zeros({1, 1}));
    DOCTEST_CHECK(torch::isfinite(out.grad_x).all().item<bool>());
    DOCTEST_CHECK(torch::isfinite(out.grad_y).all().item<bool>());
    DOCTEST_CHECK(scaled_error(out.ssim.to(torch::kFloat64), ssim) <= 1e-5);
    // y's values, 2¹²⁹ below the pixel, have squares that are subnormal in the divided frame:
    // their gradients keep about three digits (measured: 1.0·10⁻³ of the largest).
    DOCTEST_CHECK(scaled_error(out.grad_x.to(torch::kFloat64), grad_x) <= 5e-3);
    DOCTEST_CHECK(scaled_error(out.grad_y.to(torch::kFloat64), grad_y) <= 5e-3);
  }
  {  // A data_range of 10²⁵, whose constants float cannot hold: the float kernels refuse it (the
     // dispatch takes it in float64), and the float64 kernels give the float64 path's values.
    torch::manual_seed(18);
    const auto x = torch::rand({1, 1, 30, 30}) * 1e15f, y = torch::rand({1, 1, 30, 30}) * 1e15f;
    const auto window = crowdloss::detail::gaussian_window(11, 1.5, torch::kFloat32, at::kCPU);
    const double c1 = std::pow(0.01 * 1e25, 2), c2 = std::pow(0.03 * 1e25, 2);
    DOCTEST_CHECK(crowdloss::detail::ssim_cuda_params(x, window, 0, c1, c2).planes == 0);
    DOCTEST_CHECK(crowdloss::detail::ssim_cuda_params(x, window, 0, 1e-4, c2 / 1e20).planes == 1);
    for (const double data_range : {1e25, 1e60}) {
      INFO("data_range " << data_range);
      const auto x64 = x.to(torch::kFloat64), y64 = y.to(torch::kFloat64);
      const auto out = ssim_emulated(x64, y64, 11, false, false, torch::ones({1, 1}), at::Tensor(), data_range);
      const auto [ssim, mse, grad_x, grad_y] = reference(x, y, torch::ones({1, 1}), torch::zeros({1, 1}), data_range);
      DOCTEST_CHECK(scaled_error(out.ssim, ssim) <= 1e-12);
      DOCTEST_CHECK(scaled_error(out.grad_x, grad_x) <= 1e-9);
      DOCTEST_CHECK(scaled_error(out.grad_y, grad_y) <= 1e-9);
    }
  }
  {  // float64 beyond 10¹⁵⁴, whose squares overflow float64: 2⁵⁰⁰ is the limit there.
    const auto p = torch::rand({1, 1, 24, 24}, torch::kFloat64) * 1e200;
    const auto out = ssim_emulated(p, p, 11, false, false, torch::ones({1, 1}), at::Tensor());
    DOCTEST_CHECK(out.ssim.item<double>() == doctest::Approx(1.0).epsilon(1e-12));
    DOCTEST_CHECK(torch::isfinite(out.grad_x).all().item<bool>());
  }
}

TEST_CASE("ssim and sanet_loss: the CUDA kernels equal the ATen path on CUDA, and run deterministically") {
  if (!crowdloss_test::cuda_or_skip("ssim CUDA kernels against the ATen path")) return;
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 16, 16},   {3, 2, 37, 53},   {64, 1, 64, 64},
                                                    {8, 1, 512, 512}, {1, 1, 96, 1024}, {2, 1, 2048, 2048}};
  const bool before = crowdloss::set_cuda_kernels_enabled(false);
  for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kBFloat16, torch::kHalf}) {
    for (const auto& shape : shapes) {
      for (const bool same : {false, true}) {
        INFO("dtype " << dtype << " shape " << at::IntArrayRef(shape) << " same " << same);
        torch::manual_seed(10);
        const auto x0 = torch::rand(shape, torch::kFloat64).to(dtype).cuda();
        const auto y0 =
            torch::rand(shape, torch::kFloat64).to(dtype).cuda().transpose(2, 3).contiguous().transpose(2, 3);
        auto ssim_opts = crowdloss::SSIMOptions();
        if (same) ssim_opts.padding(crowdloss::kSame);
        const auto run = [&](bool kernels) {
          crowdloss::set_cuda_kernels_enabled(kernels);
          auto x = x0.detach().clone().requires_grad_(true), y = y0.detach().clone().requires_grad_(true);
          const auto ssim = crowdloss::ssim(x, y, ssim_opts);
          const auto sanet = crowdloss::sanet_loss(x, y, crowdloss::SANetLossOptions().ssim(ssim_opts));
          (ssim + sanet).backward();
          crowdloss::set_cuda_kernels_enabled(false);
          return std::make_tuple(ssim.detach().to(torch::kFloat64).cpu(), sanet.detach().to(torch::kFloat64).cpu(),
                                 x.grad().to(torch::kFloat64).cpu(), y.grad().to(torch::kFloat64).cpu());
        };
        const auto [ssim, sanet, gx, gy] = run(true);
        const auto [ref_ssim, ref_sanet, ref_gx, ref_gy] = run(false);
        const double tol = dtype == torch::kFloat64 ? 1e-12 : dtype == torch::kFloat32 ? 1e-4 : 2e-2;
        DOCTEST_CHECK(scaled_error(ssim, ref_ssim) <= tol);
        DOCTEST_CHECK(scaled_error(sanet, ref_sanet) <= tol);
        DOCTEST_CHECK(scaled_error(gx, ref_gx) <= tol);
        DOCTEST_CHECK(scaled_error(gy, ref_gy) <= tol);
        const auto [ssim2, sanet2, gx2, gy2] = run(true);
        DOCTEST_CHECK(torch::equal(ssim, ssim2));
        DOCTEST_CHECK(torch::equal(sanet, sanet2));
        DOCTEST_CHECK(torch::equal(gx, gx2));
        DOCTEST_CHECK(torch::equal(gy, gy2));
      }
    }
  }
  {  // The kernels did run: their module is there, and NaN propagates.
    crowdloss::set_cuda_kernels_enabled(true);
    DOCTEST_CHECK(crowdloss::detail::kSsimKernels.find(torch::kFloat32, torch::Device(torch::kCUDA, 0)) != nullptr);
    auto x = torch::rand({2, 1, 64, 64}).cuda();
    x[1][0][30][30] = std::numeric_limits<float>::quiet_NaN();
    DOCTEST_CHECK(std::isnan(crowdloss::ssim(x, torch::rand_like(x)).item<float>()));
  }
  for (const bool kernels : {false, true}) {  // float32 with a data_range of 10²⁵: taken in float64
    INFO("kernels " << kernels);
    crowdloss::set_cuda_kernels_enabled(kernels);
    const auto x = torch::rand({2, 1, 64, 64}) * 1e15f, y = torch::rand({2, 1, 64, 64}) * 1e15f;
    const auto opts = crowdloss::SSIMOptions().data_range(1e25);
    auto xc = x.cuda().requires_grad_(true);
    const auto value = crowdloss::ssim(xc, y.cuda(), opts);
    value.backward();
    auto x64 = x.to(torch::kFloat64).requires_grad_(true);
    const auto ref = crowdloss::ssim(x64, y.to(torch::kFloat64), opts);
    ref.backward();
    DOCTEST_CHECK(value.item<double>() == doctest::Approx(ref.item<double>()).epsilon(1e-6));
    DOCTEST_CHECK(scaled_error(xc.grad().cpu().to(torch::kFloat64), x64.grad()) <= 1e-5);
  }
  crowdloss::set_cuda_kernels_enabled(before);
}
