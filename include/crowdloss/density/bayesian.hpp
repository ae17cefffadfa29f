#pragma once
/// \file
/// The Bayesian loss for point-supervised counting (Ma et al., "Bayesian Loss for Crowd Count
/// Estimation with Point Supervision", ICCV 2019), with the background term of its Bayesian+
/// variant, as ZhihengCV/Bayesian-Crowd-Counting computes it.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/head_points.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::bayesian_loss` and the `BayesianLoss` module (defaults: the authors'
/// train.py).
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::BayesianLossOptions().sigma(8.0).shorter_sides({768.0, 1024.0});
/// ```
struct BayesianLossOptions {
  /// Image pixels per density cell (the model's output stride); ≥ 1.
  TORCH_ARG(int64_t, stride) = 8;
  /// σ of the Gaussian likelihood of a cell given a head, in image pixels; > 0.
  TORCH_ARG(double, sigma) = 8.0;
  /// Adds the background row (Bayesian+): a pseudo-head at distance (d·ratio)² / (nearest
  /// head's squared distance + 1e-5) from each cell, whose expected count is 0.
  TORCH_ARG(bool, use_background) = true;
  /// The ratio of the background distance; > 0.
  TORCH_ARG(double, background_ratio) = 1.0;
  /// d above: the shorter side, in pixels, of each original image before cropping (their
  /// `st_size`); one per image (> 0), or empty for min(h, w)·stride of the map.
  TORCH_ARG(std::vector<double>, shorter_sides) = {};
};

namespace detail {

inline void check_bayesian_options(const char* fn, const BayesianLossOptions& o) {
  TORCH_CHECK(o.stride() >= 1, fn, ": stride must be >= 1, got ", o.stride());
  TORCH_CHECK(o.sigma() > 0 && std::isfinite(o.sigma()), fn, ": sigma must be positive, got ", o.sigma());
  TORCH_CHECK(o.background_ratio() > 0 && std::isfinite(o.background_ratio()), fn,
              ": background_ratio must be positive, got ", o.background_ratio());
  for (const double s : o.shorter_sides())
    TORCH_CHECK(s > 0 && std::isfinite(s), fn, ": every shorter side must be positive, got ", s);
}

/// What both paths of bayesian_loss take: `density` B×(h·w) in the compute dtype (autograd
/// flows through it), `heads[b]` N_b×2 in that dtype without autograd, the map's h×w, the
/// options and `sides` (one background side per image, resolved).
struct BayesianInputs {
  at::Tensor density;
  std::vector<at::Tensor> heads;
  int64_t h, w;
  BayesianLossOptions options;
  std::vector<double> sides;
};

/// Σ_b loss_b (not yet divided by B) as the authors compute it: the distances of all heads at
/// once, then each image's posterior and term in turn. The reference `bayesian_sum_batched` is
/// tested against, and the CPU path (no padding work).
inline at::Tensor bayesian_sum_reference(const BayesianInputs& in) {
  const int64_t B = in.density.size(0), stride = in.options.stride();
  const auto opts = in.density.options().requires_grad(false);
  std::vector<int64_t> counts;
  for (const auto& p : in.heads) counts.push_back(p.size(0));
  std::vector<at::Tensor> posteriors(static_cast<size_t>(B));
  {
    const at::NoGradGuard no_grad;  // the posterior is a function of the points only
    const auto all = at::cat(in.heads);
    if (all.size(0) > 0) {
      const auto distance = squared_distances(all, cell_centres(in.h, stride, opts), cell_centres(in.w, stride, opts));
      const auto per_image = distance.split_with_sizes(counts);
      for (int64_t b = 0; b < B; ++b) {
        auto d = per_image[static_cast<size_t>(b)];
        if (d.size(0) == 0) continue;
        if (in.options.use_background()) {
          const auto nearest = std::get<0>(d.min(0, /*keepdim=*/true)).clamp_min(0.0);
          d = at::cat(
              {d, std::pow(in.sides[static_cast<size_t>(b)] * in.options.background_ratio(), 2) / (nearest + 1e-5)}, 0);
        }
        posteriors[static_cast<size_t>(b)] = (-d / (2.0 * in.options.sigma() * in.options.sigma())).softmax(0);
      }
    }
  }
  at::Tensor loss;  // summed image by image, as the authors' loop
  for (int64_t b = 0; b < B; ++b) {
    const auto& prob = posteriors[static_cast<size_t>(b)];
    at::Tensor term;
    if (!prob.defined()) {  // no heads: |0 − Σ pred|
      term = in.density[b].sum().abs();
    } else {
      auto target = at::ones({prob.size(0)}, opts);
      if (in.options.use_background()) target[prob.size(0) - 1] = 0;
      term = (target - (in.density[b].view({1, -1}) * prob).sum(1)).abs().sum();
    }
    loss = b == 0 ? term : loss + term;
  }
  return loss;
}

/// The same sum with the images' heads padded to the most: one P×(N + 1)×(h·w) posterior for the
/// P images with heads (padded rows at distance +∞, so their posterior is 0 and their term |0 −
/// 0|), the background row last, and a fixed number of kernels whatever the batch (the GPU path).
/// Only rounding differs from the reference.
inline at::Tensor bayesian_sum_batched(const BayesianInputs& in) {
  const int64_t B = in.density.size(0), n = in.density.size(1), stride = in.options.stride();
  const auto opts = in.density.options().requires_grad(false);
  std::vector<int64_t> with, without;
  for (int64_t b = 0; b < B; ++b) (in.heads[static_cast<size_t>(b)].size(0) > 0 ? with : without).push_back(b);
  auto loss = at::zeros({}, in.density.options());
  if (!without.empty())
    loss = in.density.index_select(0, at::tensor(without, at::kLong).to(opts.device())).sum(1).abs().sum();
  if (with.empty()) return loss;
  const auto P = static_cast<int64_t>(with.size());
  const auto index = at::tensor(with, at::kLong).to(opts.device());
  at::Tensor prob, target;
  {
    const at::NoGradGuard no_grad;
    const auto padded = pad_heads(in.heads, with, opts);
    const int64_t most = padded.points.size(1);
    const auto rows = axis_squared_distances(padded.points.select(2, 1), cell_centres(in.h, stride, opts));  // P×N×h
    const auto columns = axis_squared_distances(padded.points.select(2, 0), cell_centres(in.w, stride, opts));
    auto d = (rows.unsqueeze(3) + columns.unsqueeze(2)).view({P, most, n});
    d = d.masked_fill(padded.valid.logical_not().unsqueeze(2), std::numeric_limits<double>::infinity());
    target = padded.valid.to(opts.dtype());
    if (in.options.use_background()) {
      std::vector<double> squared_sides;  // (side·ratio)², in double as the reference
      for (const int64_t b : with)
        squared_sides.push_back(std::pow(in.sides[static_cast<size_t>(b)] * in.options.background_ratio(), 2));
      const auto nearest = std::get<0>(d.min(1, /*keepdim=*/true)).clamp_min(0.0);
      const auto side2 = at::tensor(squared_sides, at::TensorOptions().dtype(at::kDouble)).to(opts).view({P, 1, 1});
      d = at::cat({d, side2 / (nearest + 1e-5)}, 1);
      target = at::cat({target, at::zeros({P, 1}, opts)}, 1);
    }
    prob = (-d / (2.0 * in.options.sigma() * in.options.sigma())).softmax(1);
  }
  const auto counts = (in.density.index_select(0, index).view({P, 1, n}) * prob).sum(2);
  return loss + (target - counts).abs().sum();
}

}  // namespace detail

/// The Bayesian loss (Bayesian+ with `use_background`), as the authors' `Post_Prob` and
/// `Bay_Loss` compute it. For image b with heads z_1…z_N and cells m at centres c_m:
///
///   d_km = ‖z_k − c_m‖² (expanded as −2·z·c + z² + c² per axis),
///   background: d_{N+1,m} = (s_b·ratio)² / (max(min_k d_km, 0) + 1e-5),
///   p(k | m) = softmax_k(−d_km / (2σ²))   (over the N heads and the background),
///   loss_b = Σ_k |t_k − Σ_m pred_m·p(k | m)|,   t = 1 per head, 0 for the background,
///
/// an image without heads adding |Σ_m pred_m|; the loss is Σ_b loss_b / B. s_b is the image's
/// `shorter_sides` entry (default min(h, w)·stride). The posterior does not depend on pred: the
/// gradient is −(1/B) Σ_k sign(t_k − count_k)·p(k | m). On the CPU the distances of all heads are
/// computed at once (as the authors do), the posteriors per image; on a GPU the whole batch's
/// posteriors at once, the heads padded to the most (detail::bayesian_sum_batched). Cell centres are i·stride + stride/2
/// along each side (the authors' square crops; non-square maps take their own rows and columns).
///
/// pred: B×1×h×w floating (float16/bfloat16 computed in float32, result in pred's dtype);
/// points: B tensors N_b×2, (x, y) in image pixels, floating, on pred's device. Returns a 0-dim
/// tensor. Throws c10::Error naming `bayesian_loss` and the value for other shapes, a batch
/// mismatch, mixed devices, integer dtypes, a point that is not finite or lies off the h·stride ×
/// w·stride image, stride < 1, σ or ratio ≤ 0, or `shorter_sides` of another length than B or
/// not positive. Negative densities are accepted, as the authors' code accepts them.
///
/// Example:
/// ```cpp
/// // density: B×1×64×64 at stride 8 for 512×512 crops; heads[b]: N_b×2 crop pixels.
/// at::Tensor loss = crowdloss::bayesian_loss(density, heads);
/// ```
inline at::Tensor bayesian_loss(const at::Tensor& pred, const std::vector<at::Tensor>& points,
                                const BayesianLossOptions& options = {}) {
  const char* fn = "bayesian_loss";
  detail::check_bayesian_options(fn, options);
  detail::check_head_points(fn, pred, points, options.stride());
  const int64_t B = pred.size(0), h = pred.size(2), w = pred.size(3), stride = options.stride();
  const auto& sides = options.shorter_sides();
  TORCH_CHECK(sides.empty() || static_cast<int64_t>(sides.size()) == B, fn, ": expected ", B,
              " shorter_sides (one per image) or none, got ", sides.size());
  const auto dtype = detail::compute_dtype(pred);
  detail::BayesianInputs in{pred.to(dtype).flatten(1), {}, h, w, options, sides};
  for (const auto& p : points) in.heads.push_back(p.detach().to(dtype));
  if (in.sides.empty()) in.sides.assign(static_cast<size_t>(B), static_cast<double>(std::min(h, w) * stride));
  // The one dispatch point: image by image on the CPU, the padded batch elsewhere.
  const auto loss = pred.is_cpu() ? detail::bayesian_sum_reference(in) : detail::bayesian_sum_batched(in);
  return (loss / static_cast<double>(B)).to(pred.scalar_type());
}

}  // namespace crowdloss
