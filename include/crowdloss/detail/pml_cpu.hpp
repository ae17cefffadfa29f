#pragma once
/// \file
/// The CPU kernel of PML's one-pass path: a custom autograd function whose forward reads each
/// map once (the error's block sums at the finest grid, accumulated row by row), derives every
/// level from those cells, and whose backward writes each input's gradient once from the closed
/// form. On CUDA the same one-pass algorithm runs as ATen ops (pml.hpp).

#include <crowdloss/detail/accumulate.hpp>
#include <crowdloss/detail/simd.hpp>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace crowdloss {
namespace detail {

// The element loops in explicit vectors of the build's baseline instruction set (simd_ops.hpp),
// so that they run vectorised at the user's optimisation level whatever it is (GCC 12 at -O2
// vectorises no loop whose trip count is known only at run time). Each element is a lone
// subtraction, addition or copy, so the results are the same bits as scalar loops'.
namespace pml_baseline {
#define CROWDLOSS_SIMD_TARGET
#define CROWDLOSS_SIMD_BYTES CROWDLOSS_SIMD_BASELINE_BYTES
#include <crowdloss/detail/simd_ops.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
}  // namespace pml_baseline

/// Adds the error row a − b to `column` (the first row of a block row sets it).
template <typename scalar_t>
void pml_add_error_row(const scalar_t* __restrict a, const scalar_t* __restrict b, int64_t W, bool first,
                       scalar_t* __restrict column) {
  using namespace pml_baseline;
  constexpr int64_t v = Simd<scalar_t>::size;
  for (int64_t x = 0; x < W; x += v) {
    const int64_t m = std::min(v, W - x);
    const auto e = load_n(a + x, m) - load_n(b + x, m);
    store_n(column + x, first ? e : load_n(column + x, m) + e, m);
  }
}

/// out[0…n) = value.
template <typename scalar_t>
void pml_fill(scalar_t* out, int64_t n, scalar_t value) {
  using namespace pml_baseline;
  constexpr int64_t v = Simd<scalar_t>::size;
  const auto lanes = broadcast(value);
  for (int64_t x = 0; x < n; x += v) store_n(out + x, lanes, std::min(v, n - x));
}

/// For each of `planes` H×W planes, the sums of (p − t) over the f×f grid of (H/f)×(W/f) blocks,
/// in double: out is planes×f×f. Each block row's column sums are accumulated row after row
/// over the whole width (contiguous, vectorised), then each cell's columns summed in double.
template <typename scalar_t>
void pml_error_cell_sums(const scalar_t* p, const scalar_t* t, int64_t planes, int64_t H, int64_t W, int64_t f,
                         double* out) {
  const int64_t bh = H / f, bw = W / f;
  at::parallel_for(0, planes * f, 4, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> column(static_cast<size_t>(W));
    for (int64_t block_row = begin; block_row < end; ++block_row) {  // plane · f + cy: rows from block_row · bh
      const int64_t offset = block_row * bh * W;
      for (int64_t y = 0; y < bh; ++y)
        pml_add_error_row(p + offset + y * W, t + offset + y * W, W, y == 0, column.data());
      double* o = out + block_row * f;
      for (int64_t cx = 0; cx < f; ++cx) o[cx] = sum4(column.data() + cx * bw, bw);
    }
  });
}

/// Block sums of k×k cells: src planes×(g·k)×(g·k) → dst planes×g×g.
inline void pml_coarsen(const double* src, int64_t planes, int64_t g, int64_t k, double* dst) {
  const int64_t fs = g * k;
  std::fill(dst, dst + planes * g * g, 0.0);
  for (int64_t n = 0; n < planes; ++n)
    for (int64_t cy = 0; cy < g; ++cy)
      for (int64_t dy = 0; dy < k; ++dy) {
        const double* row = src + (n * fs + cy * k + dy) * fs;
        double* o = dst + (n * g + cy) * g;
        for (int64_t cx = 0; cx < g; ++cx) {
          double s = 0;
          for (int64_t dx = 0; dx < k; ++dx) s += row[cx * k + dx];
          o[cx] += s;
        }
      }
}

/// Where each level's planes×g×g cells start in one buffer (grid order), and last the total.
inline std::vector<int64_t> pml_level_offsets(const std::vector<int64_t>& grids, int64_t planes) {
  std::vector<int64_t> offsets{0};
  for (const int64_t g : grids) offsets.push_back(offsets.back() + planes * g * g);
  return offsets;
}

/// (grids[i−1] / grids[i])², the share of level i−1's error that PML's term i takes as already
/// explained (i ≥ 1); shared by the CPU kernel and the ATen path.
inline double pml_level_ratio(const std::vector<int64_t>& grids, size_t i) {
  return static_cast<double>(grids[i - 1] * grids[i - 1]) / static_cast<double>(grids[i] * grids[i]);
}

/// PML's per-level terms (see `pml_loss_terms`) on B×C×H×W CPU maps of one floating dtype whose
/// H and W the finest grid divides. Returns the terms (1-D, the maps' dtype), or with `summed`
/// their sum (0-dim), which saves the loss a separate reduction in each direction.
struct PMLCpuFunction : public torch::autograd::Function<PMLCpuFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& pred, const at::Tensor& target,
                            const std::vector<int64_t>& grids, bool summed) {
    const int64_t B = pred.size(0), planes = pred.size(0) * pred.size(1), H = pred.size(2), W = pred.size(3);
    const int64_t f = grids.back();
    const auto p = pred.contiguous(), t = target.contiguous();
    // The error's block sums at every level: the finest from the pixels, each coarser level
    // from the next finer one.
    const size_t L = grids.size();
    const auto offsets = pml_level_offsets(grids, planes);
    const at::Tensor cells = at::empty({offsets.back()}, at::TensorOptions(at::kDouble));
    double* level = cells.data_ptr<double>();  // level i at level + offsets[i]
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pml_loss", [&] {
      pml_error_cell_sums(p.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), planes, H, W, f, level + offsets[L - 1]);
    });
    for (size_t i = L - 1; i-- > 0;)
      pml_coarsen(level + offsets[i + 1], planes, grids[i], grids[i + 1] / grids[i], level + offsets[i]);
    // M_i, then the terms and each term's derivative with respect to its increment.
    std::vector<double> mse(L), slope(L), terms(L);
    for (size_t i = 0; i < L; ++i) {
      mse[i] = sum4(level + offsets[i], offsets[i + 1] - offsets[i], [](double v) { return v * v; }) /
               static_cast<double>(B);
      double increment = mse[i];
      if (i > 0) {
        increment = mse[i] - pml_level_ratio(grids, i) * mse[i - 1];
        if (!(increment > 0)) increment = std::isnan(increment) ? increment : 0.0;  // relu, NaN kept
      }
      terms[i] = std::log(increment + 1);
      // d term / d increment; a relu at or below its kink passes no gradient (as ATen's).
      slope[i] = (i == 0 || increment > 0) ? 1.0 / (increment + 1) : 0.0;
    }
    ctx->save_for_backward({cells});
    ctx->saved_data["slope"] = at::IValue(slope);
    ctx->saved_data["grids"] = at::IValue(grids);
    ctx->saved_data["shape"] = at::IValue(pred.sizes().vec());
    if (summed) {
      double total = 0;
      for (const double term : terms) total += term;
      return at::scalar_tensor(total, pred.options());
    }
    return at::tensor(terms, at::TensorOptions(at::kDouble)).to(pred.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const double* level = saved[0].data_ptr<double>();
    const auto slope = ctx->saved_data["slope"].toDoubleVector();
    const auto grids = ctx->saved_data["grids"].toIntVector();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const int64_t B = shape[0], planes = shape[0] * shape[1], H = shape[2], W = shape[3], f = grids.back();
    const size_t L = grids.size();
    const auto offsets = pml_level_offsets(grids, planes);
    // The upstream gradient of each term (all equal to the total's when summed).
    const auto upstream = grad_outputs[0].to(at::kCPU, at::kDouble).contiguous();
    const double* u = upstream.data_ptr<double>();
    std::vector<double> go(L);
    for (size_t i = 0; i < L; ++i) go[i] = upstream.numel() == 1 ? u[0] : u[i];
    // dLoss/dM_i: term i depends on M_i (+1) and term i+1 on M_i (−ratio).
    std::vector<double> dm(L);
    for (size_t i = 0; i < L; ++i) {
      dm[i] = go[i] * slope[i];
      if (i + 1 < L) dm[i] -= go[i + 1] * slope[i + 1] * pml_level_ratio(grids, i + 1);
    }
    // dLoss/d(finest cell sum) = Σ_i dm_i · 2 S_i(the cell's block at level i) / B, pushed down
    // level by level: coeff_i(cell) = coeff_{i−1}(parent) + 2 dm_i S_i(cell) / B.
    std::vector<double> coeff, finer;
    for (size_t i = 0; i < L; ++i) {
      const int64_t gi = grids[i], gp = i == 0 ? 1 : grids[i - 1], k = gi / gp;
      const double scale = 2.0 * dm[i] / static_cast<double>(B);
      const double* cells = level + offsets[i];
      finer.resize(static_cast<size_t>(planes * gi * gi));
      for (int64_t n = 0; n < planes; ++n)
        for (int64_t py = 0; py < gp; ++py)
          for (int64_t dy = 0; dy < k; ++dy) {
            const int64_t y = py * k + dy;
            double* row = finer.data() + (n * gi + y) * gi;
            const double* own = cells + (n * gi + y) * gi;
            const double* parent = i == 0 ? nullptr : coeff.data() + (n * gp + py) * gp;
            for (int64_t px = 0; px < gp; ++px) {
              const double inherited = parent ? parent[px] : 0.0;
              for (int64_t x = px * k; x < (px + 1) * k; ++x) row[x] = scale * own[x] + inherited;
            }
          }
      coeff.swap(finer);
    }
    // Each pixel's gradient is its finest cell's coefficient: one row pattern per block row,
    // copied to the block's rows.
    const auto dtype = grad_outputs[0].scalar_type();
    at::Tensor grad_pred = at::empty(shape, at::TensorOptions(dtype));
    const int64_t bh = H / f, bw = W / f;
    AT_DISPATCH_FLOATING_TYPES(dtype, "pml_loss_backward", [&] {
      scalar_t* out = grad_pred.data_ptr<scalar_t>();
      at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n)
          for (int64_t cy = 0; cy < f; ++cy) {
            scalar_t* first = out + (n * H + cy * bh) * W;
            const double* c = coeff.data() + (n * f + cy) * f;
            for (int64_t cx = 0; cx < f; ++cx) pml_fill(first + cx * bw, bw, static_cast<scalar_t>(c[cx]));
            for (int64_t y = 1; y < bh; ++y) std::copy(first, first + W, first + y * W);
          }
      });
    });
    const at::Tensor grad_target = ctx->needs_input_grad(1) ? grad_pred.neg() : at::Tensor();
    return {grad_pred, grad_target, at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail
}  // namespace crowdloss
