#pragma once
/// \file
/// Multi-scale SSIM (Wang, Simoncelli and Bovik, 2003) with pytorch-msssim's `ms_ssim` semantics,
/// and the option to drop the coarsest levels of maps too small for all of them.

#include <crowdloss/density/ssim.hpp>
#include <crowdloss/detail/ssim_aten.hpp>
#include <crowdloss/reduction.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::ms_ssim` and the `MSSSIMLoss` module (defaults: pytorch-msssim's, but
/// data_range 1 as `SSIMOptions`; pytorch-msssim's default is 255).
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::MSSSIMOptions().data_range(255.0).drop_levels(true);
/// ```
struct MSSSIMOptions {
  /// Side of the Gaussian window; odd and positive.
  TORCH_ARG(int64_t, window_size) = 11;
  /// Standard deviation of the Gaussian window, in pixels; > 0.
  TORCH_ARG(double, sigma) = 1.5;
  /// L, the dynamic range of the values; > 0.
  TORCH_ARG(double, data_range) = 1.0;
  /// C1 = (k1·L)²; k1 ≥ 0.
  TORCH_ARG(double, k1) = 0.01;
  /// C2 = (k2·L)²; k2 ≥ 0.
  TORCH_ARG(double, k2) = 0.03;
  /// One exponent per level, finest first (one level per weight); finite, ≥ 0, not all 0.
  TORCH_ARG(std::vector<double>, weights) = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
  /// false (default): maps must be as large as pytorch-msssim requires (smaller side >
  /// (window_size − 1)·16) and every level at least window_size; true: the coarsest levels
  /// smaller than the window are dropped and the remaining weights rescaled to the same sum.
  TORCH_ARG(bool, drop_levels) = false;
  /// `torch::kMean` (default: mean over batch and channels, a 0-dim tensor) or `torch::kNone`
  /// (per image: mean over channels, a B tensor).
  TORCH_ARG(Reduction, reduction) = torch::kMean;
};

/// The options of the `MSSSIMLoss` module: those of `crowdloss::ms_ssim`, which it computes 1 − of.
using MSSSIMLossOptions = MSSSIMOptions;

namespace detail {

/// The window and constants of `o` as SSIMOptions (valid padding), for ssim_setup's checks.
inline SSIMOptions ms_ssim_window_options(const MSSSIMOptions& o) {
  return SSIMOptions().window_size(o.window_size()).sigma(o.sigma()).data_range(o.data_range()).k1(o.k1()).k2(o.k2());
}

inline void check_ms_ssim_options(const char* fn, const MSSSIMOptions& o) {
  check_ssim_options(fn, ms_ssim_window_options(o));
  TORCH_CHECK(!o.weights().empty(), fn, ": weights must not be empty");
  for (const double w : o.weights())
    TORCH_CHECK(w >= 0 && std::isfinite(w), fn, ": every weight must be finite and >= 0, got ", w);
  TORCH_CHECK(std::accumulate(o.weights().begin(), o.weights().end(), 0.0) > 0, fn, ": the weights must not all be 0");
}

/// The weights of the levels ms_ssim computes for maps whose smaller side is `side`: all of
/// o.weights() (checked against pytorch-msssim's size condition), or with drop_levels those of
/// the levels at least window_size, rescaled to the weights' sum.
inline std::vector<double> ms_ssim_level_weights(const char* fn, int64_t side, const MSSSIMOptions& o) {
  const int64_t window = o.window_size(), levels = static_cast<int64_t>(o.weights().size());
  int64_t fit = 0;  // the levels whose maps are at least the window (a level halves, rounding up)
  for (int64_t s = side; fit < levels && s >= window; s = (s + 1) / 2) ++fit;
  if (!o.drop_levels()) {
    TORCH_CHECK(side > (window - 1) * 16, fn,
                ": the maps' smaller side must be > (window_size - 1) * 16 = ", (window - 1) * 16,
                " (pytorch-msssim's condition), got ", side, "; drop_levels(true) drops the coarsest levels instead");
    TORCH_CHECK(fit == levels, fn, ": level ", fit, " of ", levels, " would be smaller than window_size ", window,
                " (maps' smaller side ", side, "); drop_levels(true) drops it");
    return o.weights();
  }
  TORCH_CHECK(fit >= 1, fn, ": the maps' smaller side ", side, " is smaller than window_size ", window);
  std::vector<double> kept(o.weights().begin(), o.weights().begin() + fit);
  if (fit == levels) return kept;
  const double all = std::accumulate(o.weights().begin(), o.weights().end(), 0.0);
  const double sum = std::accumulate(kept.begin(), kept.end(), 0.0);
  TORCH_CHECK(sum > 0, fn, ": the weights of the ", fit, " levels that fit the maps' smaller side ", side,
              " are all 0");
  for (double& w : kept) w = w / sum * all;
  return kept;
}

}  // namespace detail

/// Multi-scale SSIM of x against y, as pytorch-msssim's `ms_ssim`: with L = weights.size() levels,
///
///   MS-SSIM = Π_{l<L−1} relu(cs_l)^{w_l} · relu(ssim_{L−1})^{w_{L−1}},
///
/// where cs_l and ssim_l are the means over positions of SSIM's contrast-structure factor
/// (2·σxy + C2) / (σx² + σy² + C2) and of the SSIM map at level l (as `ssim_map`, valid padding,
/// the same Gaussian window), and level l + 1 is level l 2×2 average-pooled, an odd side first
/// padded with one zero row / column that counts in the average. Reduced over batch and channels
/// (`kMean`, 0-dim) or over channels (`kNone`, a B tensor).
///
/// Sizes: by default the maps' smaller side must exceed (window_size − 1)·16 (160 for the
/// default window), pytorch-msssim's condition, and every level must be at least the window.
/// Density maps at 1/8 of the image are often smaller: with `drop_levels(true)` the levels
/// smaller than the window are dropped and the remaining weights rescaled to the weights' sum
/// (e.g. a 100×100 map keeps levels of 100, 50, 25 and 13 pixels; the last one is then the SSIM
/// level).
///
/// x, y: B×C×H×W floating tensors of the same shape, dtype and device. float16/bfloat16 are
/// computed in float32 and returned in the input dtype. Differentiable in both (through relu,
/// whose gradient is 0 where a term is ≤ 0). Throws c10::Error naming `ms_ssim` on a wrong rank,
/// mismatched shape/dtype/device, an integer dtype, an empty batch or map, invalid window or
/// constants (as `ssim`), weights that are empty, negative, non-finite or all 0, maps too small
/// (above), or `torch::kSum`. A float32 square that overflows gives NaN, never a finite wrong value.
///
/// Example:
/// ```cpp
/// at::Tensor v = crowdloss::ms_ssim(pred, target, crowdloss::MSSSIMOptions().drop_levels(true));
/// ```
inline at::Tensor ms_ssim(const at::Tensor& x, const at::Tensor& y, const MSSSIMOptions& options = {}) {
  detail::check_reduction<torch::enumtype::kNone, torch::enumtype::kMean>(options.reduction(), "ms_ssim");
  detail::check_ms_ssim_options("ms_ssim", options);
  const auto s = detail::ssim_setup("ms_ssim", x, y, detail::ms_ssim_window_options(options));
  const auto weights = detail::ms_ssim_level_weights("ms_ssim", std::min(x.size(2), x.size(3)), options);
  const auto per_channel = detail::ms_ssim_aten(s, weights);
  const auto reduced =
      std::holds_alternative<torch::enumtype::kMean>(options.reduction()) ? per_channel.mean() : per_channel.mean(1);
  return reduced.to(x.scalar_type());
}

}  // namespace crowdloss
