#pragma once
/// \file
/// DM-Count (Wang et al., "Distribution Matching for Crowd Counting", NeurIPS 2020): the counting
/// loss, the optimal-transport loss through an entropic Sinkhorn solve with its closed-form
/// gradient, and the total-variation loss, as cvlab-stonybrook/DM-Count trains with them.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/head_points.hpp>
#include <crowdloss/detail/sinkhorn.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::dm_count_loss` and the `DMCountLoss` module (defaults: DM-Count's
/// train.py and train_helper.py).
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::DMCountOptions().ot_weight(0.1).tv_weight(0.01).sinkhorn_iterations(100);
/// ```
struct DMCountOptions {
  /// Image pixels per density cell (the model's output stride); ≥ 1.
  TORCH_ARG(int64_t, stride) = 8;
  /// Weight of the OT loss (their wot); finite, ≥ 0.
  TORCH_ARG(double, ot_weight) = 0.1;
  /// Weight of the TV loss (their wtv); finite, ≥ 0.
  TORCH_ARG(double, tv_weight) = 0.01;
  /// Entropic regularisation of the Sinkhorn solve; > 0.
  TORCH_ARG(double, reg) = 10.0;
  /// Most Sinkhorn iterations (it stops earlier once its marginal error is ≤ 1e-9); ≥ 0.
  TORCH_ARG(int64_t, sinkhorn_iterations) = 100;
  /// Maps cell centres and points to [−1, 1] (x / width · 2 − 1) before the distances.
  TORCH_ARG(bool, norm_coordinates) = false;
};

/// The options of the `DMCountLoss` module: those of `crowdloss::dm_count_loss`.
using DMCountLossOptions = DMCountOptions;

/// DM-Count's terms, each a 0-dim tensor in pred's dtype (see `dm_count_loss_terms`).
struct DMCountTerms {
  /// (1/B) Σ_b |S_b − N_b|.
  at::Tensor count;
  /// ot_weight · Σ_b ⟨μ_b, g_b⟩: 0 up to rounding, its gradient DM-Count's closed form.
  at::Tensor ot;
  /// tv_weight · (1/B) Σ_b N_b · ‖μ̂_b − G_b / (N_b + 1e-6)‖₁.
  at::Tensor tv;
  /// ot + count + tv: the training loss.
  at::Tensor total;
  /// Σ_b ⟨C_b, P_b⟩, the transport cost of the Sinkhorn plans (DM-Count's logged `wd`); no gradient.
  at::Tensor wasserstein;
};

namespace detail {

inline void check_dm_count_options(const char* fn, const DMCountOptions& o) {
  TORCH_CHECK(o.stride() >= 1, fn, ": stride must be >= 1, got ", o.stride());
  TORCH_CHECK(o.ot_weight() >= 0 && std::isfinite(o.ot_weight()), fn, ": ot_weight must be finite and >= 0, got ",
              o.ot_weight());
  TORCH_CHECK(o.tv_weight() >= 0 && std::isfinite(o.tv_weight()), fn, ": tv_weight must be finite and >= 0, got ",
              o.tv_weight());
  TORCH_CHECK(o.reg() > 0 && std::isfinite(o.reg()), fn, ": reg must be positive, got ", o.reg());
  TORCH_CHECK(o.sinkhorn_iterations() >= 0, fn, ": sinkhorn_iterations must be >= 0, got ", o.sinkhorn_iterations());
}

/// DM-Count's TV target for one image: each point's full-resolution pixel (coordinates rounded
/// half to even as NumPy rounds, clamped to the last pixel) counted in its stride cell; h×w.
inline at::Tensor dm_count_discrete_map(const at::Tensor& points, int64_t h, int64_t w, int64_t stride) {
  auto map = at::zeros({h, w}, at::kDouble);
  const auto xy = points.to(at::kDouble).cpu().contiguous();
  const double* p = xy.data_ptr<double>();
  double* m = map.data_ptr<double>();
  for (int64_t k = 0; k < xy.size(0); ++k) {
    const auto pixel = [](double v, int64_t last) {
      return std::min(static_cast<int64_t>(std::nearbyint(v)), last);  // the default rounding: half to even
    };
    const int64_t x = pixel(p[2 * k], w * stride - 1), y = pixel(p[2 * k + 1], h * stride - 1);
    m[(y / stride) * w + x / stride] += 1;
  }
  return map;
}

/// What the OT term takes from the Sinkhorn solves: `gradient` (B×1×h×w, no autograd: DM-Count's
/// closed form g per image, 0 for an image without points) and `wasserstein` (0-dim, Σ_b ⟨C_b,
/// P_b⟩).
struct DMCountOT {
  at::Tensor gradient, wasserstein;
};

/// The closed-form OT gradients of P images from their dual potentials β (P×h×w): (S·β − ⟨μ, β⟩) /
/// (S² + 1e-8) with S = Σμ per image, μ = `density` (P×h×w), as DM-Count's ot_loss.py.
inline at::Tensor dm_count_ot_gradient(const at::Tensor& density, const at::Tensor& beta) {
  const int64_t P = density.size(0);
  const auto total = density.flatten(1).sum(1).view({P, 1, 1}), denominator = total * total + 1e-8;
  return total / denominator * beta - (density * beta).flatten(1).sum(1).view({P, 1, 1}) / denominator;
}

/// DM-Count's OT solves as its ot_loss.py runs them, image by image: the N×(h·w) cost, its kernel
/// and sinkhorn_knopp. The reference `dm_count_ot_separable` is tested against. `mu`, `normed`: B×1×h×w
/// (no autograd needed); `heads[b]`: N_b×2 in the cost's coordinates; centres 1×h and 1×w.
inline DMCountOT dm_count_ot_reference(const at::Tensor& mu, const at::Tensor& normed,
                                       const std::vector<at::Tensor>& heads, const at::Tensor& centres_y,
                                       const at::Tensor& centres_x, double reg, int64_t iterations) {
  const at::NoGradGuard no_grad;
  const int64_t h = mu.size(2), w = mu.size(3);
  DMCountOT ot{at::zeros_like(mu), at::zeros({}, mu.options())};
  for (int64_t b = 0; b < mu.size(0); ++b) {
    const auto& p = heads[static_cast<size_t>(b)];
    if (p.size(0) == 0) continue;
    const auto cost = squared_distances(p, centres_y, centres_x);
    const auto target = at::ones({p.size(0)}, mu.options()) / static_cast<double>(p.size(0));
    const auto s = sinkhorn_knopp(target, normed[b][0].reshape({-1}), cost, reg, iterations);
    const auto beta = reg * at::log(s.v + 1e-16);
    ot.gradient[b][0].copy_(dm_count_ot_gradient(mu[b][0].view({1, h, w}), beta.view({1, h, w}))[0]);
    ot.wasserstein = ot.wasserstein + (cost * (s.u.view({-1, 1}) * s.K * s.v.view({1, -1}))).sum();
  }
  return ot;
}

/// The same solves through the cost's separability: C[i, (r, c)] = Cy[i, r] + Cx[i, c] (DM-Count's
/// own sum of the two axes' expanded squares), so K = exp(−C/reg) = Ky ⊗ Kx with Ky = exp(−Cy/reg),
/// Kx = exp(−Cx/reg), and sinkhorn_knopp_separable's batched matrix products replace the N×(h·w)
/// kernel: per iteration O(N·h·w) work in matrix products instead of matrix–vector products over
/// an N×(h·w) matrix, and O(N·(h + w) + h·w) memory. ⟨C, P⟩ likewise: Σ_i u_i Σ_r,c (Cy + Cx)·Ky·
/// Kx·v. Only rounding differs from the reference: exp(a)·exp(b) for exp(a + b). With `batched`
/// the images with points are solved together, their points padded to the most (one host read
/// per ten iterations for the batch, the work of the largest image for each); otherwise one
/// after the other (no padding). Arguments as for dm_count_ot_reference.
inline DMCountOT dm_count_ot_separable(const at::Tensor& mu, const at::Tensor& normed,
                                       const std::vector<at::Tensor>& heads, const at::Tensor& centres_y,
                                       const at::Tensor& centres_x, double reg, int64_t iterations, bool batched) {
  const at::NoGradGuard no_grad;
  const int64_t h = mu.size(2), w = mu.size(3);
  const auto opts = mu.options();
  DMCountOT ot{at::zeros_like(mu), at::zeros({}, opts)};
  const auto solve = [&](const std::vector<int64_t>& images) {
    const auto P = static_cast<int64_t>(images.size());
    const auto padded = pad_heads(heads, images, opts);
    const auto mask = padded.valid.to(opts.dtype());
    std::vector<double> counts;
    for (const int64_t b : images) counts.push_back(static_cast<double>(heads[static_cast<size_t>(b)].size(0)));
    const auto index = at::tensor(images, at::kLong).to(mu.device());
    const auto a = mask / at::tensor(counts, at::TensorOptions().dtype(at::kDouble)).to(opts).view({P, 1});
    const auto Cy = axis_squared_distances(padded.points.select(2, 1), centres_y);  // P×N×h
    const auto Cx = axis_squared_distances(padded.points.select(2, 0), centres_x);  // P×N×w
    const auto Ky = at::div(Cy, -reg).exp() * mask.unsqueeze(2), Kx = at::div(Cx, -reg).exp();
    const auto s = sinkhorn_knopp_separable(a, normed.index_select(0, index).view({P, h, w}), Ky, Kx, a, iterations);
    const auto beta = reg * at::log(s.v + 1e-16);  // P×h×w
    const auto gradient = dm_count_ot_gradient(mu.index_select(0, index).view({P, h, w}), beta);
    ot.gradient.index_copy_(0, index, gradient.view({P, 1, h, w}));
    const auto Kyv = at::bmm(Ky, s.v), Cy_Kyv = at::bmm(Ky * Cy, s.v);  // P×N×w
    ot.wasserstein = ot.wasserstein + (s.u * ((Cy_Kyv + Kyv * Cx) * Kx).sum(2)).sum();
  };
  std::vector<int64_t> images;  // those with points
  for (int64_t b = 0; b < mu.size(0); ++b)
    if (heads[static_cast<size_t>(b)].size(0) > 0) images.push_back(b);
  if (batched && !images.empty()) solve(images);
  if (!batched)
    for (const int64_t b : images) solve({b});
  return ot;
}

/// The OT solves of dm_count_loss_terms, separable on every device: on a GPU all images at once
/// (no per-image loop of small kernels), on the CPU one image after the other (no padding work).
inline DMCountOT dm_count_ot(const at::Tensor& mu, const at::Tensor& normed, const std::vector<at::Tensor>& heads,
                             const at::Tensor& centres_y, const at::Tensor& centres_x, double reg, int64_t iterations) {
  return dm_count_ot_separable(mu, normed, heads, centres_y, centres_x, reg, iterations, /*batched=*/!mu.is_cpu());
}

}  // namespace detail

/// DM-Count's loss and its terms, as its training step computes them (`losses/ot_loss.py`,
/// `losses/bregman_pytorch.py`, `train_helper.py`, `models.py`). For image b with prediction μ
/// (h×w), S = Σμ, μ̂ = μ / (S + 1e-6) and N head points:
///
///   count = (1/B) Σ_b |S_b − N_b|
///   ot    = ot_weight · Σ_b Σ_m μ_m · g_m   (images with points), g = (S·β − ⟨μ, β⟩) / (S² + 1e-8),
///   tv    = tv_weight · (1/B) Σ_b N_b · Σ_m |μ̂_m − G_m / (N_b + 1e-6)|,
///   total = ot + count + tv,
///
/// where β = reg·log(v + 1e-16) is the dual potential of the Sinkhorn solve (`reg`,
/// `sinkhorn_iterations`, stop at 1e-9) that moves μ̂ onto the uniform measure on the points, with
/// the squared distances between cell centres (i·stride + stride/2) and points as the cost; g
/// carries no gradient, so the OT term's value is 0 up to rounding and its gradient ot_weight·g
/// (DM-Count's closed form). G is the points' count per cell (pixel coordinates rounded half to
/// even, clamped to the image). An image without points contributes |S_b| / B only.
/// `wasserstein` = Σ_b ⟨C, P⟩ of the plans. The Sinkhorn solve keeps its last finite scaling (as
/// DM-Count), so every term is finite for finite inputs, zero maps included.
///
/// pred: B×1×h×w floating (float16/bfloat16 computed in float32, the terms in pred's dtype);
/// DM-Count supports square maps, crowdloss also non-square ones (cell rows along h, columns along
/// w; `norm_coordinates` then scales x by the width and y by the height). points: B tensors
/// N_b×2, (x, y) in image pixels, floating, on pred's device. Throws c10::Error naming
/// `dm_count_loss` and the value for other shapes, a batch mismatch, mixed devices, integer
/// dtypes, a point that is not finite or lies off the h·stride × w·stride image, a negative or
/// NaN density in an image with points (DM-Count's Sinkhorn refuses it), and bad options. The
/// Sinkhorn solves go through the separable kernel (detail::dm_count_ot: the same iterations up to
/// rounding); on a GPU the images' solves run together, with one host read per ten iterations
/// for the batch.
///
/// Example:
/// ```cpp
/// // density: B×1×64×64 at stride 8 (512×512 crops); heads[b]: N_b×2 crop pixels.
/// crowdloss::DMCountTerms t = crowdloss::dm_count_loss_terms(density, heads);
/// t.total.backward();
/// ```
inline DMCountTerms dm_count_loss_terms(const at::Tensor& pred, const std::vector<at::Tensor>& points,
                                        const DMCountOptions& options = {}) {
  const char* fn = "dm_count_loss";
  detail::check_dm_count_options(fn, options);
  detail::check_head_points(fn, pred, points, options.stride());
  const int64_t B = pred.size(0), h = pred.size(2), w = pred.size(3), stride = options.stride();
  const auto mu = pred.to(detail::compute_dtype(pred));
  const auto opts = mu.options().requires_grad(false);
  const auto sums = mu.sum(1).sum(1).sum(1);                                  // S_b, as their count loss sums
  const auto normed = mu / (mu.flatten(1).sum(1).view({B, 1, 1, 1}) + 1e-6);  // their models.py
  std::vector<double> counts;
  for (const auto& p : points) counts.push_back(static_cast<double>(p.size(0)));
  const auto n = at::tensor(counts, at::TensorOptions().dtype(at::kDouble)).to(opts);
  {
    std::vector<int64_t> with_points;
    for (int64_t b = 0; b < B; ++b)
      if (points[static_cast<size_t>(b)].size(0) > 0) with_points.push_back(b);
    if (!with_points.empty()) {
      const auto index = at::tensor(with_points, at::kLong).to(pred.device());
      const auto lowest = normed.detach().index_select(0, index).flatten(1).amin(1).cpu().to(at::kDouble);
      const auto bad = (lowest >= 0).logical_not();
      if (bad.any().item<bool>()) {
        const int64_t k = bad.nonzero()[0][0].item<int64_t>();
        TORCH_CHECK(false, fn, ": pred[", with_points[static_cast<size_t>(k)],
                    "] has a negative or NaN density (normalised minimum ", lowest[k].item<double>(),
                    "), which DM-Count's Sinkhorn solve refuses");
      }
    }
  }
  DMCountTerms t;
  t.count = (sums - n).abs().mean();  // nn.L1Loss()
  // The OT term: DM-Count's loop over the images, solved for the batch at once (dm_count_ot).
  const double c_w = static_cast<double>(w * stride), c_h = static_cast<double>(h * stride);
  auto centres_y = detail::cell_centres(h, stride, opts), centres_x = detail::cell_centres(w, stride, opts);
  if (options.norm_coordinates()) centres_y = centres_y / c_h * 2 - 1, centres_x = centres_x / c_w * 2 - 1;
  std::vector<at::Tensor> heads;
  for (const auto& p : points) {
    auto xy = p.detach().to(opts);
    if (options.norm_coordinates() && xy.size(0) > 0)
      xy = at::stack({xy.select(1, 0) / c_w * 2 - 1, xy.select(1, 1) / c_h * 2 - 1}, 1);
    heads.push_back(xy);
  }
  const auto solved = detail::dm_count_ot(mu.detach(), normed.detach(), heads, centres_y, centres_x, options.reg(),
                                          options.sinkhorn_iterations());
  const auto ot = (mu * solved.gradient).sum();
  const auto& wasserstein = solved.wasserstein;
  t.ot = ot * options.ot_weight();
  // The TV term against the normalised discrete map.
  std::vector<at::Tensor> maps;
  for (int64_t b = 0; b < B; ++b)
    maps.push_back(detail::dm_count_discrete_map(points[static_cast<size_t>(b)], h, w, stride));
  const auto discrete = at::stack(maps).unsqueeze(1).to(opts);
  const auto per_image = (normed - discrete / (n.view({B, 1, 1, 1}) + 1e-6)).abs().sum(1).sum(1).sum(1);
  t.tv = (per_image * n).mean(0) * options.tv_weight();
  t.total = t.ot + t.count + t.tv;
  t.wasserstein = wasserstein;
  const auto dtype = pred.scalar_type();
  t.count = t.count.to(dtype), t.ot = t.ot.to(dtype), t.tv = t.tv.to(dtype), t.total = t.total.to(dtype);
  t.wasserstein = t.wasserstein.to(dtype);
  return t;
}

/// DM-Count's training loss: `dm_count_loss_terms(pred, points, options).total` (count + OT + TV,
/// 0-dim, in pred's dtype). Shapes, rules and errors as for `dm_count_loss_terms`.
///
/// Example:
/// ```cpp
/// at::Tensor loss = crowdloss::dm_count_loss(density, heads);
/// ```
inline at::Tensor dm_count_loss(const at::Tensor& pred, const std::vector<at::Tensor>& points,
                                const DMCountOptions& options = {}) {
  return dm_count_loss_terms(pred, points, options).total;
}

}  // namespace crowdloss
