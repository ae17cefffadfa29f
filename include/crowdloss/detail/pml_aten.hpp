#pragma once
/// \file
/// PML's per-level terms as ATen ops, for any device: the path CUDA tensors and
/// `reference_order` take, and the reference the CPU kernel (detail/pml_cpu.hpp) is tested
/// against.

#include <crowdloss/detail/blocks.hpp>
#include <crowdloss/detail/pml_cpu.hpp>

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace crowdloss {
namespace detail {

/// Sums each of the d×d contiguous blocks of a B×C×H×W map (H, W divisible by d): B×C×d×d.
/// The same reshape-and-reduce as the authors' `einops.reduce(x, "B C (h1 h2) (w1 w2) -> B C h1 w1")`.
inline at::Tensor block_sums(const at::Tensor& map, int64_t d) {
  return sum_blocks(map, map.size(2) / d, map.size(3) / d);
}

/// S_d = Σ_{b,c,cells} (P⁽ᵈ⁾ − G⁽ᵈ⁾)² for every grid d, in grid order, as ATen ops (any device):
/// p, t B×C×H×W in the compute dtype, the finest grid dividing H and W. `reference_order`
/// follows the authors' code op for op; otherwise the one-pass algorithm.
inline std::vector<at::Tensor> pml_level_sums_aten(const at::Tensor& p, const at::Tensor& t,
                                                   const std::vector<int64_t>& grids, bool reference_order) {
  const int64_t finest = grids.back();
  std::vector<at::Tensor> sums(grids.size());
  if (reference_order) {
    for (size_t i = 0; i < grids.size(); ++i)
      sums[i] = at::mse_loss(block_sums(t, grids[i]), block_sums(p, grids[i]), at::Reduction::Sum);
  } else {
    // One pass over the pixels: the finest grid's block sums of the error; the coarser grids are
    // block sums of those cells. Autograd's backward of each block sum is a broadcast, so the
    // backward pass writes each input's gradient once. (On the CPU, PMLCpuFunction does the
    // same in one explicit loop with a closed-form backward.)
    const at::Tensor finest_cells = block_sums(p, finest) - block_sums(t, finest);
    for (size_t i = 0; i < grids.size(); ++i) {
      const int64_t k = finest / grids[i];
      sums[i] = sum_blocks(finest_cells, k, k).square().sum();
    }
  }
  return sums;
}

/// PML's terms (1-D, grid order) from M_d = S_d / B for every grid d, in grid order.
inline at::Tensor pml_terms_of(const std::vector<at::Tensor>& mse, const std::vector<int64_t>& grids) {
  std::vector<at::Tensor> terms;
  for (size_t i = 0; i < grids.size(); ++i) {
    if (i == 0) {
      terms.push_back(at::log(mse[0] + 1));
    } else {
      terms.push_back(at::log(at::relu(mse[i] - pml_level_ratio(grids, i) * mse[i - 1]) + 1));
    }
  }
  return at::stack(terms);
}

/// PML's per-level terms as ATen ops (any device: the CUDA path, and the reference order).
inline at::Tensor pml_terms_aten(const at::Tensor& p, const at::Tensor& t, const std::vector<int64_t>& grids,
                                 bool reference_order) {
  auto mse = pml_level_sums_aten(p, t, grids, reference_order);
  for (auto& m : mse) m = m / static_cast<double>(p.size(0));
  return pml_terms_of(mse, grids);
}

/// PML over all ranks' batches (PMLLossOptions::all_reduce): p, t as pml_terms_aten takes them
/// (pred, target: the unpadded maps, for the pixel term). The level sums S_d, the image count,
/// the pixel term's Σ(pred − target)² and pixel count and a 1 (which sums to the world size W) are
/// sum-reduced by one call of `all_reduce`; each reduced value v with local part l enters as
/// v + W·(l − detach(l)): the value v, the gradient W times the local one. Returns the terms, or
/// with `summed` their sum plus the pixel term when `pixel_mse_weight` > 0. ATen ops on every
/// device (so no float64 redo on the CPU: redoing on one rank would desynchronise the collective).
inline at::Tensor pml_all_reduced_aten(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                                       const at::Tensor& p, const at::Tensor& t, const std::vector<int64_t>& grids,
                                       bool reference_order, double pixel_mse_weight,
                                       const std::function<void(at::Tensor&)>& all_reduce, bool summed) {
  const auto sums = at::stack(pml_level_sums_aten(p, t, grids, reference_order));
  const int64_t L = sums.size(0);
  const bool pixel = summed && pixel_mse_weight > 0;
  const auto squared = pixel ? at::mse_loss(pred.to(p.scalar_type()), target.to(p.scalar_type()), at::Reduction::Sum)
                             : sums.new_zeros({});
  const auto counts = at::tensor({static_cast<double>(pred.size(0)), 0.0, static_cast<double>(pred.numel()), 1.0},
                                 at::TensorOptions(at::kDouble))
                          .to(pred.device());
  const auto f64 = sums.options().dtype(at::kDouble);
  const at::Tensor local = at::cat(
      {sums.detach().to(f64), counts.narrow(0, 0, 1), squared.detach().to(f64).view({1}), counts.narrow(0, 2, 2)});
  at::Tensor reduced = local.clone();
  all_reduce(reduced);
  TORCH_CHECK(reduced.defined() && reduced.sizes() == local.sizes() && reduced.scalar_type() == at::kDouble &&
                  reduced.device() == local.device(),
              fn, ": all_reduce must reduce its ", local.size(0), "-value float64 tensor in place, got ",
              reduced.defined() ? reduced.toString() : "an undefined tensor");
  const auto global = reduced.to(sums.scalar_type());
  const auto world = global[L + 3];
  const auto as_global = [&](const at::Tensor& mine, const at::Tensor& all) {
    return all + world * (mine - mine.detach());
  };
  const auto terms = pml_terms_of((as_global(sums, global.narrow(0, 0, L)) / global[L]).unbind(0), grids);
  if (!summed) return terms;
  auto loss = terms.sum();
  if (pixel) loss = pixel_mse_weight * as_global(squared, global[L + 1]) / global[L + 2] + loss;
  return loss;
}

}  // namespace detail
}  // namespace crowdloss
