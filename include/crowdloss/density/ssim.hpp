#pragma once
/// \file
/// SSIM (structural similarity) with a separable Gaussian window, and the SANet loss
/// mean((pred − target)²) + α·(1 − SSIM). Valid padding matches pytorch-msssim (and
/// scikit-image); zero "same" padding matches the SANet ports (C3-Framework's pytorch_ssim).

#include <crowdloss/cuda_kernels.hpp>
#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/ssim_aten.hpp>
#include <crowdloss/detail/ssim_cpu.hpp>
#include <crowdloss/detail/ssim_cuda.hpp>
#include <crowdloss/reduction.hpp>

#include <torch/arg.h>
#include <torch/enum.h>
#include <torch/types.h>

#include <array>
#include <cmath>
#include <variant>

namespace crowdloss {

/// Padding tags for SSIM: `crowdloss::kValid` (no padding; the SSIM map is
/// (H − window_size + 1)×(W − window_size + 1)) or `crowdloss::kSame` (zero padding; H×W).
using torch::kSame;
using torch::kValid;
/// `crowdloss::kValid` or `crowdloss::kSame`.
using SSIMPadding = std::variant<torch::enumtype::kValid, torch::enumtype::kSame>;

/// Options for `crowdloss::ssim`, `crowdloss::ssim_map` and the SSIM part of the SANet loss.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::SSIMOptions().data_range(255.0).padding(crowdloss::kSame);
/// ```
struct SSIMOptions {
  /// Side of the Gaussian window; odd and positive.
  TORCH_ARG(int64_t, window_size) = 11;
  /// Standard deviation of the Gaussian window, in pixels; > 0.
  TORCH_ARG(double, sigma) = 1.5;
  /// C1 = (k1·L)²; k1 ≥ 0.
  TORCH_ARG(double, k1) = 0.01;
  /// C2 = (k2·L)²; k2 ≥ 0.
  TORCH_ARG(double, k2) = 0.03;
  /// L, the dynamic range of the values; > 0.
  TORCH_ARG(double, data_range) = 1.0;
  /// `crowdloss::kValid` (default) or `crowdloss::kSame` (zero padding).
  TORCH_ARG(SSIMPadding, padding) = torch::kValid;
  /// `torch::kMean` (default: mean over positions, channels and batch) or `torch::kNone`
  /// (a B×C tensor: mean over positions per image and channel).
  TORCH_ARG(Reduction, reduction) = torch::kMean;
};

/// The options of the `SSIMLoss` module: those of `crowdloss::ssim`, which it computes 1 − of.
using SSIMLossOptions = SSIMOptions;

namespace detail {

inline void check_ssim_options(const char* fn, const SSIMOptions& o) {
  TORCH_CHECK(o.window_size() > 0 && o.window_size() % 2 == 1, fn, ": window_size must be odd and positive, got ",
              o.window_size());
  TORCH_CHECK(o.sigma() > 0 && std::isfinite(o.sigma()), fn, ": sigma must be positive, got ", o.sigma());
  TORCH_CHECK(o.k1() >= 0 && std::isfinite(o.k1()), fn, ": k1 must be >= 0, got ", o.k1());
  TORCH_CHECK(o.k2() >= 0 && std::isfinite(o.k2()), fn, ": k2 must be >= 0, got ", o.k2());
  TORCH_CHECK(o.data_range() > 0 && std::isfinite(o.data_range()), fn, ": data_range must be positive, got ",
              o.data_range());
  TORCH_CHECK(
      std::isfinite(std::pow(o.k1() * o.data_range(), 2)) && std::isfinite(std::pow(o.k2() * o.data_range(), 2)), fn,
      ": data_range ", o.data_range(), " with k1 ", o.k1(), " and k2 ", o.k2(),
      " makes C1 = (k1·L)² or C2 = (k2·L)² overflow float64");
}

/// Checks x, y and `o` and returns the setup: the maps in the compute dtype (with `keep_dtype`,
/// in their own), the window in the compute dtype on their device, the padding and constants.
inline SSIMSetup ssim_setup(const char* fn, const at::Tensor& x, const at::Tensor& y, const SSIMOptions& o,
                            bool keep_dtype = false) {
  check_map_pair(fn, x, y, "x", "y");
  check_ssim_options(fn, o);
  const bool same = std::holds_alternative<torch::enumtype::kSame>(o.padding());
  const int64_t w = o.window_size();
  TORCH_CHECK(same || (x.size(2) >= w && x.size(3) >= w), fn, ": map size ", x.size(2), "x", x.size(3),
              " is smaller than window_size ", w, " (valid padding)");
  const auto dtype = compute_dtype(x);
  return {keep_dtype ? x : x.to(dtype),
          keep_dtype ? y : y.to(dtype),
          gaussian_window(w, o.sigma(), dtype, x.device()),
          same ? w / 2 : 0,
          std::pow(o.k1() * o.data_range(), 2),
          std::pow(o.k2() * o.data_range(), 2)};
}

/// The per-channel SSIM's dispatch point: the CPU kernel of ssim_cpu.hpp on the CPU (redone in
/// float64 where float32 overflowed: `needs_float64`); on CUDA crowdloss's kernels
/// (ssim_cuda.hpp, on the maps in their own dtype, half precision included) where switched on
/// and able to take the maps; the ATen map elsewhere. On CUDA, setups whose constants exceed
/// float are taken in float64 (`ssim_constants_exceed_float`).
inline SSIMPerChannel ssim_per_channel_dispatch(const char* fn, const at::Tensor& x, const at::Tensor& y,
                                                const SSIMOptions& o, bool with_mse = false) {
  const bool kernels = cuda_kernels_enabled() && x.is_cuda();
  auto s = ssim_setup(fn, x, y, o, /*keep_dtype=*/kernels);
  if (s.x.is_cuda() && ssim_constants_exceed_float(s)) s = widened(s);
  if (s.x.is_cpu()) {
    const auto out = ssim_per_channel_cpu(s, with_mse);
    if (!needs_float64(fn, {out.ssim, out.mse}, s.x, "x", s.y, "y")) return out;
    return ssim_per_channel_cpu(widened(s), with_mse);
  }
  if (kernels) {
    const auto host_window = gaussian_window(o.window_size(), o.sigma(), s.window.scalar_type(), at::kCPU);
    if (ssim_cuda_params(s.x, host_window, s.pad, s.c1, s.c2).planes > 0 &&
        kSsimKernels.find(s.x.scalar_type(), s.x.device()) != nullptr)
      return ssim_per_channel_cuda(s, host_window, with_mse);
    s.x = s.x.to(s.window.scalar_type()), s.y = s.y.to(s.window.scalar_type());
  }
  return {ssim_map_aten(s).flatten(2).mean(-1), with_mse ? (s.x - s.y).square().flatten(2).mean(-1) : at::Tensor()};
}

/// ssim_map's dispatch: the ATen map, on the CPU redone in float64 where float32 overflowed,
/// on CUDA in float64 where the constants exceed float (`ssim_constants_exceed_float`).
inline at::Tensor ssim_map_dispatch(const char* fn, const at::Tensor& x, const at::Tensor& y, const SSIMOptions& o) {
  auto s = ssim_setup(fn, x, y, o);
  if (s.x.is_cuda() && ssim_constants_exceed_float(s)) s = widened(s);
  const auto map = ssim_map_aten(s);
  if (!s.x.is_cpu() || !needs_float64(fn, {map}, s.x, "x", s.y, "y")) return map;
  return ssim_map_aten(widened(s));
}

}  // namespace detail

/// The per-pixel SSIM map:
///
///   SSIM(p) = (2·μx·μy + C1)(2·σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),
///
/// with μ, σ², σxy the local means, population variances and covariance under a normalised
/// Gaussian window (`window_size`, `sigma`), applied separably; C1 = (k1·L)², C2 = (k2·L)²,
/// L = `data_range`; no epsilon.
///
/// x, y: B×C×H×W floating tensors of the same shape, dtype and device. Returns
/// B×C×(H − window_size + 1)×(W − window_size + 1) with `kValid` padding, B×C×H×W with `kSame`
/// (zero padding). float16/bfloat16 are computed in float32 and returned in the input dtype.
/// Differentiable in both arguments. `reduction` is not used.
///
/// Throws c10::Error (naming the function and the value) on a wrong rank, mismatched
/// shape/dtype/device, an integer dtype, an empty batch or map, an even or non-positive
/// window_size, sigma ≤ 0, k1 or k2 < 0, data_range ≤ 0 or so large that (k·data_range)²
/// overflows float64, or — with valid padding — a map smaller than the window. NaN in the inputs
/// propagates.
///
/// Range: finite wherever the exact value is. Float32 squares overflow beyond about ±9·10¹⁸ (or
/// with a data_range beyond about 10²⁰); on the CPU such inputs are recomputed in float64 and
/// the result returned in their dtype, while float64 inputs whose squares overflow (beyond about
/// ±10¹⁵⁴) throw c10::Error. On CUDA the ATen path gives NaN for them, never a finite wrong value;
/// through crowdloss's CUDA kernels (cuda_kernels.hpp) `ssim` stays finite, and `sanet_loss`
/// wherever its squared-error term fits the dtype (docs/ssim.md has the limits).
///
/// Example:
/// ```cpp
/// at::Tensor map = crowdloss::ssim_map(pred, target);   // B×C×(H−10)×(W−10)
/// ```
inline at::Tensor ssim_map(const at::Tensor& x, const at::Tensor& y, const SSIMOptions& options = {}) {
  return detail::ssim_map_dispatch("ssim_map", x, y, options).to(x.scalar_type());
}

/// SSIM of x against y: the mean of `ssim_map(x, y)` over positions, then over channels and
/// batch (`torch::kMean`, a 0-dim tensor; equal to pytorch-msssim's `ssim(..., size_average=True)`
/// with valid padding), or per image and channel (`torch::kNone`, a B×C tensor).
///
/// Shapes, dtypes, devices and errors as for `ssim_map`; `torch::kSum` is rejected.
///
/// Example:
/// ```cpp
/// double s = crowdloss::ssim(pred, target, crowdloss::SSIMOptions().data_range(255.0)).item<double>();
/// ```
inline at::Tensor ssim(const at::Tensor& x, const at::Tensor& y, const SSIMOptions& options = {}) {
  detail::check_reduction<torch::enumtype::kNone, torch::enumtype::kMean>(options.reduction(), "ssim");
  const auto per_channel = detail::ssim_per_channel_dispatch("ssim", x, y, options).ssim;
  return detail::reduce(per_channel, options.reduction()).to(x.scalar_type());
}

/// Options for `crowdloss::sanet_loss`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::SANetLossOptions().alpha(0.001).ssim(crowdloss::SSIMOptions().padding(crowdloss::kSame));
/// ```
struct SANetLossOptions {
  /// Weight α ≥ 0 of the SSIM term.
  TORCH_ARG(double, alpha) = 0.001;
  /// The SSIM part (window, constants, data_range, padding); its `reduction` is not used.
  TORCH_ARG(SSIMOptions, ssim) = {};
  /// `torch::kMean` (default), `torch::kSum` or `torch::kNone` (a B tensor) over the per-image
  /// losses.
  TORCH_ARG(Reduction, reduction) = torch::kMean;
};

namespace detail {
inline void check_sanet_options(const char* fn, const SANetLossOptions& o) {
  TORCH_CHECK(o.alpha() >= 0 && std::isfinite(o.alpha()), fn, ": alpha must be >= 0, got ", o.alpha());
  check_ssim_options(fn, o.ssim());
}
}  // namespace detail

/// The SANet loss (Cao et al., ECCV 2018): per image b,
///
///   L_b = mean_{c,h,w}((pred − target)²) + α·(1 − SSIM_b),
///
/// SSIM_b the image's SSIM averaged over its channels; reduced over the batch by `reduction`.
/// With kMean this is mean((pred − target)²) + α·(1 − ssim(pred, target)).
///
/// pred, target: B×C×H×W floating tensors of the same shape, dtype and device. Returns a 0-dim
/// tensor (kMean, kSum) or a B tensor (kNone), in the input dtype (half precision is computed in
/// float32). Errors as for `ssim`, plus α < 0.
///
/// Example:
/// ```cpp
/// auto loss = crowdloss::sanet_loss(pred, gt_density);   // α = 0.001, 11×11 window, valid
/// loss.backward();
/// ```
inline at::Tensor sanet_loss(const at::Tensor& pred, const at::Tensor& target, const SANetLossOptions& options = {}) {
  detail::check_sanet_options("sanet_loss", options);
  const auto terms = detail::ssim_per_channel_dispatch("sanet_loss", pred, target, options.ssim(), true);
  // Every channel has H×W pixels, so the mean of the per-channel MSEs is the image's MSE.
  const auto per_image = terms.mse.mean(1) + options.alpha() * (1 - terms.ssim.mean(1));
  return detail::reduce(per_image, options.reduction()).to(pred.scalar_type());
}

}  // namespace crowdloss
