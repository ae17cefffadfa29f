#pragma once
/// \file
/// PML, the Progressive Multi-resolution Loss for density maps: a log-likelihood over block sums
/// of the prediction error at several grid resolutions, numerically identical to the authors'
/// `Cascade_MSE_Loss` (streamer-AP/PML_Loss) and, with `pixel_mse_weight(1)`, to their full
/// training objective `DenseMap_Loss`.

#include <crowdloss/cuda_kernels.hpp>
#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/pml_aten.hpp>
#include <crowdloss/detail/pml_cpu.hpp>
#include <crowdloss/detail/pml_cuda.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::pml_loss` and `crowdloss::pml_loss_terms`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::PMLLossOptions().grids({1, 2, 4, 8}).pixel_mse_weight(1.0);
/// ```
struct PMLLossOptions {
  /// Grid sizes in cells per side, strictly increasing, each dividing the next.
  TORCH_ARG(std::vector<int64_t>, grids) = {1, 2, 4, 8, 16, 32};
  /// Weight w ≥ 0 of an added pixel term w·mean((pred − target)²); 1 gives the authors' full
  /// training objective (`DenseMap_Loss` with its example config).
  TORCH_ARG(double, pixel_mse_weight) = 0.0;
  /// crowdloss extension: when H or W is not a multiple of the finest grid, zero-pad both maps
  /// at the bottom/right to the next multiple instead of throwing. The padding adds nothing to
  /// any block sum, but it does move the block boundaries.
  TORCH_ARG(bool, pad_to_multiple) = false;
  /// Compute op for op as the authors' code does — block sums of pred and target at every level,
  /// subtracted there — which reproduces their float32 results to the last bit (where those are
  /// finite) but reads the maps once per level. The default (false) block-sums the difference once at the finest grid and
  /// derives every coarser grid from it (block sums are linear), so forward and backward each
  /// touch the pixels once; the results agree to rounding (tested in float64 to 1e-12).
  TORCH_ARG(bool, reference_order) = false;
  /// Data-parallel training: a callable that sum-reduces a small 1-D float64 tensor in place
  /// across the ranks (the program binds it to its process group, e.g. c10d's `allreduce` with
  /// `ReduceOp::SUM`; on pred's device, so NCCL can take it). With it, every rank's value is the
  /// PML of the global batch (all ranks' images together), and its gradient is the world size
  /// times its share of the global batch's gradient, so that *averaging* the gradients over the
  /// ranks, as DistributedDataParallel does, gives exactly the gradient of one process on the
  /// global batch (summing them gives world size times that). The callable is called once per
  /// call, with L + 4 values (L = grids().size()); every rank must call the loss the same
  /// number of times, as with any collective. Empty (the default): this process's batch only.
  TORCH_ARG(std::function<void(at::Tensor&)>, all_reduce) = {};
};

namespace detail {

inline void check_pml_options(const char* fn, const PMLLossOptions& options) {
  const auto& g = options.grids();
  TORCH_CHECK(!g.empty(), fn, ": grids must not be empty");
  TORCH_CHECK(g[0] > 0, fn, ": grid sizes must be positive, got grids[0] = ", g[0]);
  for (size_t i = 1; i < g.size(); ++i) {
    TORCH_CHECK(g[i] > g[i - 1], fn, ": grids must be strictly increasing, got grids[", i - 1, "] = ", g[i - 1],
                " and grids[", i, "] = ", g[i]);
    TORCH_CHECK(g[i] % g[i - 1] == 0, fn, ": each grid must divide the next, got grids[", i - 1, "] = ", g[i - 1],
                " and grids[", i, "] = ", g[i]);
  }
  TORCH_CHECK(options.pixel_mse_weight() >= 0, fn, ": pixel_mse_weight must be >= 0, got ", options.pixel_mse_weight());
}

/// Checks `pred`, `target` and `options` and returns both maps in the compute dtype (with
/// `keep_dtype`, in their own), zero-padded to a multiple of the finest grid where
/// `pad_to_multiple` allows.
inline std::pair<at::Tensor, at::Tensor> pml_prepared(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                                                      const PMLLossOptions& options, bool keep_dtype = false) {
  check_map_pair(fn, pred, target);
  check_pml_options(fn, options);
  const auto dtype = keep_dtype ? pred.scalar_type() : compute_dtype(pred);
  at::Tensor p = pred.to(dtype), t = target.to(dtype);
  const int64_t finest = options.grids().back();
  const int64_t H = p.size(2), W = p.size(3);
  if (H % finest != 0 || W % finest != 0) {
    TORCH_CHECK(options.pad_to_multiple(), fn, ": map size ", H, "x", W, " is not divisible by grid ", finest,
                " (set pad_to_multiple(true) to zero-pad)");
    const int64_t pad_h = (finest - H % finest) % finest, pad_w = (finest - W % finest) % finest;
    p = at::constant_pad_nd(p, {0, pad_w, 0, pad_h}, 0);
    t = at::constant_pad_nd(t, {0, pad_w, 0, pad_h}, 0);
  }
  return {p, t};
}

/// Whether PMLCudaFunction takes these prepared CUDA maps (in their own dtype): the kernels are
/// enabled (`cuda_kernels_enabled`), the maps' sizes fit them and they compile here.
inline bool pml_cuda_takes(const at::Tensor& p, const std::vector<int64_t>& grids, bool summed) {
  return cuda_kernels_enabled() && p.is_cuda() && pml_cuda_params(p.sizes(), grids, summed).planes > 0 &&
         kPmlKernels.find(p.scalar_type(), p.device()) != nullptr;
}

/// The per-level PML terms of this process's batch (a 1-D tensor in the compute
/// dtype) in grid order: the summed squared block-sum error over the batch size, log(m + 1), and
/// a relu on the level increments; with `summed`, their sum (0-dim) instead. The one op's
/// dispatch point: on the CPU the one-pass path is `PMLCpuFunction`; on CUDA `PMLCudaFunction`
/// where `pml_cuda_takes` says so (on the maps in their own dtype, half precision included),
/// which with `summed` and `with_pixel` also folds in the pixel term (then `*pixel_done` is set);
/// elsewhere, and with `reference_order`, `pml_terms_aten` (summed in grid order one addition at
/// a time with `reference_order`, as the authors do).
inline at::Tensor pml_terms_as_given(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                                     const PMLLossOptions& options, bool summed, bool with_pixel = false,
                                     bool* pixel_done = nullptr) {
  const bool kernels = !options.reference_order() && pred.is_cuda() && cuda_kernels_enabled();
  auto [p, t] = pml_prepared(fn, pred, target, options, /*keep_dtype=*/kernels);
  if (!options.reference_order() && p.device().is_cpu()) return PMLCpuFunction::apply(p, t, options.grids(), summed);
  if (kernels && pml_cuda_takes(p, options.grids(), summed)) {
    const double weight = summed && with_pixel ? options.pixel_mse_weight() : 0.0;
    if (pixel_done != nullptr) *pixel_done = weight > 0;
    return PMLCudaFunction::apply(p, t, options.grids(), summed, weight, pred.numel());
  }
  p = p.to(compute_dtype(p)), t = t.to(compute_dtype(t));
  const auto terms = pml_terms_aten(p, t, options.grids(), options.reference_order());
  if (!summed) return terms;
  if (!options.reference_order()) return terms.sum();
  at::Tensor loss = terms[0];
  for (int64_t i = 1; i < terms.size(0); ++i) loss = loss + terms[i];
  return loss;
}

/// The PML terms' dispatch: `pml_all_reduced_aten` with `all_reduce`; else `pml_terms_as_given`, on
/// the CPU redone in float64 where float32 overflowed (`needs_float64`). With `with_pixel` (and
/// `summed`), the result also holds the pixel term pixel_mse_weight·mean((pred − target)²).
inline at::Tensor pml_terms_dispatch(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                                     const PMLLossOptions& options, bool summed = false, bool with_pixel = false) {
  if (options.all_reduce()) {
    const auto [p, t] = pml_prepared(fn, pred, target, options);
    return pml_all_reduced_aten(fn, pred, target, p, t, options.grids(), options.reference_order(),
                                with_pixel ? options.pixel_mse_weight() : 0.0, options.all_reduce(), summed);
  }
  bool pixel_done = false;
  auto terms = pml_terms_as_given(fn, pred, target, options, summed, with_pixel, &pixel_done);
  if (pred.is_cpu() && needs_float64(fn, {terms}, pred, "pred", target, "target"))
    terms = pml_terms_as_given(fn, pred.to(at::kDouble), target.to(at::kDouble), options, summed);
  if (with_pixel && !pixel_done && options.pixel_mse_weight() > 0) {
    const auto dtype = terms.scalar_type();
    terms = options.pixel_mse_weight() * at::mse_loss(pred.to(dtype), target.to(dtype), at::Reduction::Mean) + terms;
  }
  return terms;
}

}  // namespace detail

/// The per-level PML terms as a 1-D tensor of `grids().size()` values (their sum is the PML):
///
///   term₀ = ln(1 + M_{s₀}),  termᵢ = ln(1 + max(0, M_{sᵢ} − (sᵢ₋₁/sᵢ)²·M_{sᵢ₋₁})),
///   M_d = (1/B)·Σ_{b,c,cells} (P⁽ᵈ⁾ − G⁽ᵈ⁾)²,
///
/// where P⁽ᵈ⁾, G⁽ᵈ⁾ are the sums of pred and target over the d×d grid of (H/d)×(W/d) blocks.
///
/// pred, target: B×C×H×W floating tensors of the same shape, dtype and device (CPU or CUDA).
/// float16/bfloat16 are computed in float32; the result has the input dtype. Differentiable
/// with respect to both arguments. `pixel_mse_weight` is not part of the terms.
///
/// Throws c10::Error, naming the function and the offending value, on a wrong rank, mismatched
/// shape/dtype/device, an integer dtype, an empty batch or map, invalid grids, a negative
/// pixel_mse_weight, or (without pad_to_multiple) a map size the finest grid does not divide.
/// NaN in the inputs propagates to the result.
///
/// Range: finite for every finite input. On the CPU a float32 computation whose block sums
/// overflow (values near float32's largest) is redone in float64 and returned in the input
/// dtype, while float64 inputs whose squared block sums overflow (beyond about ±10¹⁵⁰) throw
/// c10::Error. On CUDA the ATen path gives inf or NaN for such float32 inputs; crowdloss's
/// CUDA kernels (cuda_kernels.hpp), which sum in float64, keep the terms finite.
///
/// Example:
/// ```cpp
/// at::Tensor terms = crowdloss::pml_loss_terms(pred, target);   // 6 values for the default grids
/// ```
inline at::Tensor pml_loss_terms(const at::Tensor& pred, const at::Tensor& target, const PMLLossOptions& options = {}) {
  return detail::pml_terms_dispatch("pml_loss_terms", pred, target, options).to(pred.scalar_type());
}

/// PML, the Progressive Multi-resolution Loss: the sum of `pml_loss_terms(pred, target)` plus
/// `pixel_mse_weight · mean((pred − target)²)`. The log is taken of batch-averaged values, so
/// the loss of a batch is not the sum of per-image losses. A perfect prediction gives 0 with a
/// zero gradient (the relu's subgradient at its kink is 0).
///
/// Shapes, dtypes, devices and errors as for `pml_loss_terms`. Returns a 0-dim tensor.
///
/// Example:
/// ```cpp
/// auto pred = model->forward(images);                       // B×1×H×W density
/// auto loss = crowdloss::pml_loss(pred, gt_density,
///                                 crowdloss::PMLLossOptions().pixel_mse_weight(1.0));
/// loss.backward();
/// ```
inline at::Tensor pml_loss(const at::Tensor& pred, const at::Tensor& target, const PMLLossOptions& options = {}) {
  return detail::pml_terms_dispatch("pml_loss", pred, target, options, /*summed=*/true, /*with_pixel=*/true)
      .to(pred.scalar_type());
}

}  // namespace crowdloss
