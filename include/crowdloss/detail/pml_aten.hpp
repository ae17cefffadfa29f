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
#include <vector>

namespace crowdloss {
namespace detail {

/// Sums each of the d×d contiguous blocks of a B×C×H×W map (H, W divisible by d): B×C×d×d.
/// The same reshape-and-reduce as the authors' `einops.reduce(x, "B C (h1 h2) (w1 w2) -> B C h1 w1")`.
inline at::Tensor block_sums(const at::Tensor& map, int64_t d) {
  return sum_blocks(map, map.size(2) / d, map.size(3) / d);
}

/// PML's per-level terms as ATen ops (any device: the CUDA path, and the reference order): p, t
/// B×C×H×W in the compute dtype, the finest grid dividing H and W. `reference_order` follows the
/// authors' code op for op; otherwise the one-pass algorithm.
inline at::Tensor pml_terms_aten(const at::Tensor& p, const at::Tensor& t, const std::vector<int64_t>& grids,
                                 bool reference_order) {
  const int64_t finest = grids.back();
  const double batch = static_cast<double>(p.size(0));
  // M_d for every grid d, in grid order.
  std::vector<at::Tensor> mse(grids.size());
  if (reference_order) {
    for (size_t i = 0; i < grids.size(); ++i)
      mse[i] = at::mse_loss(block_sums(t, grids[i]), block_sums(p, grids[i]), at::Reduction::Sum) / batch;
  } else {
    // One pass over the pixels: the finest grid's block sums of the error; the coarser grids are
    // block sums of those cells. Autograd's backward of each block sum is a broadcast, so the
    // backward pass writes each input's gradient once. (On the CPU, PMLCpuFunction does the
    // same in one explicit loop with a closed-form backward.)
    const at::Tensor finest_cells = block_sums(p, finest) - block_sums(t, finest);
    for (size_t i = 0; i < grids.size(); ++i) {
      const int64_t k = finest / grids[i];
      mse[i] = sum_blocks(finest_cells, k, k).square().sum() / batch;
    }
  }
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

}  // namespace detail
}  // namespace crowdloss
