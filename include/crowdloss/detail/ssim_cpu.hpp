#pragma once
/// \file
/// The CPU kernel of SSIM's per-channel mean: a custom autograd function that filters the four
/// local moments it needs separably, row by row in cache-sized buffers (no B×C×H×W moment tensor), and
/// whose backward applies the closed-form derivative of SSIM with respect to the moments and the
/// filter's adjoint. On CUDA (and for `ssim_map`) SSIM runs as ATen ops (ssim.hpp), which the
/// parity tests hold this kernel to.
///
/// SSIM needs only four filtered moments: μx = F(x), μy = F(y), m2 = F(x² + y²), mxy = F(xy)
/// (F the windowed filter), since the variances enter only as their sum. With
///   A1 = 2μxμy + C1, B1 = μx² + μy² + C1, A2 = 2(mxy − μxμy) + C2, B2 = m2 − μx² − μy² + C2,
/// SSIM = A1·A2 / (B1·B2) = S, and with D = B1·B2:
///   ∂S/∂μx = μy·P + μx·Q, ∂S/∂μy = μx·P + μy·Q, P = 2(A2 − A1)/D, Q = 2S(1/B2 − 1/B1),
///   ∂S/∂m2 = −S/B2, ∂S/∂mxy = 2A1/D.
/// So ∂ΣS/∂x = Fᵀ(∂S/∂μx) + 2x·Fᵀ(∂S/∂m2) + y·Fᵀ(∂S/∂mxy), and symmetrically for y. The Gaussian
/// window is symmetric, so Fᵀ is F with the padding of the adjoint (n − 1 − pad zeros a side).

#include <crowdloss/detail/accumulate.hpp>
#include <crowdloss/detail/lanes.hpp>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/types.h>

#include <algorithm>
#include <utility>
#include <cstdint>
#include <vector>

namespace crowdloss {
namespace detail {

// The filters read their taps through row pointers (zero rows stand in for padding), keep blocks
// of outputs in SIMD registers over all taps, fold the symmetric window's mirrored taps into one
// multiply, and finish a row's tail scalar.

/// A symmetric window of odd length: its weights, and the first half + 1 broadcast to vectors once.
template <typename T>
struct SSIMWindow {
  SSIMWindow(const T* weights, int64_t taps) : w(weights), taps(taps) {
    for (int64_t k = 0; k <= taps / 2; ++k) splat.push_back(Lanes<T>::broadcast(w[k]));
  }
  const T* w;
  int64_t taps;
  std::vector<typename Lanes<T>::type> splat;
};

/// out[j] = Σ_k w[k]·rows[k][j] for j < n, w the symmetric window (w[k] = w[taps − 1 − k]).
template <typename T>
void ssim_filter(const T* const* rows, const SSIMWindow<T>& win, int64_t n, T* out) {
  using L = Lanes<T>;
  using V = typename L::type;
  constexpr int64_t v = L::size;
  const int64_t taps = win.taps, h = taps / 2;
  const T* w = win.w;
  const V* wv = win.splat.data();
  int64_t j = 0;
  for (; j + 4 * v <= n; j += 4 * v) {
    const V wc = wv[h];
    const T* c = rows[h] + j;
    V a0 = wc * L::load(c), a1 = wc * L::load(c + v), a2 = wc * L::load(c + 2 * v), a3 = wc * L::load(c + 3 * v);
    for (int64_t k = 0; k < h; ++k) {
      const V wk = wv[k];
      const T* p = rows[k] + j;
      const T* q = rows[taps - 1 - k] + j;
      a0 += wk * (L::load(p) + L::load(q)), a1 += wk * (L::load(p + v) + L::load(q + v)),
          a2 += wk * (L::load(p + 2 * v) + L::load(q + 2 * v)), a3 += wk * (L::load(p + 3 * v) + L::load(q + 3 * v));
    }
    L::store(out + j, a0), L::store(out + j + v, a1), L::store(out + j + 2 * v, a2), L::store(out + j + 3 * v, a3);
  }
  for (; j < n; ++j) {
    T acc = w[h] * rows[h][j];
    for (int64_t k = 0; k < h; ++k) acc += w[k] * (rows[k][j] + rows[taps - 1 - k][j]);
    out[j] = acc;
  }
}

/// Row pointers for the taps of a window whose first row is r0 in a plane of H rows of width W
/// (`zeros`, at least W zeros, for the rows outside).
template <typename T>
void ssim_tap_rows(const T* plane, int64_t H, int64_t W, int64_t r0, const T* zeros, std::vector<const T*>& rows) {
  for (size_t k = 0; k < rows.size(); ++k) {
    const int64_t r = r0 + static_cast<int64_t>(k);
    rows[k] = r >= 0 && r < H ? plane + r * W : zeros;
  }
}

/// Pointers to `taps` consecutive shifts of one row: a filter along the row.
template <typename T>
void ssim_tap_shifts(const T* row, std::vector<const T*>& rows) {
  for (size_t k = 0; k < rows.size(); ++k) rows[k] = row + k;
}

/// The products one input row contributes to the moments: sq = a² + b², xy = a·b.
template <typename T>
void ssim_products(const T* __restrict a, const T* __restrict b, int64_t W, T* __restrict sq, T* __restrict xy) {
  for (int64_t c = 0; c < W; ++c) sq[c] = a[c] * a[c] + b[c] * b[c], xy[c] = a[c] * b[c];
}

/// SSIM from the four filtered moments at n positions, and with `grad` its derivatives with
/// respect to them (the file comment's formulas).
template <bool grad, typename T>
void ssim_pointwise(const T* __restrict mx, const T* __restrict my, const T* __restrict m2, const T* __restrict mxy,
                    int64_t n, T C1, T C2, T* __restrict out, T* __restrict d_mx, T* __restrict d_my,
                    T* __restrict d_m2, T* __restrict d_mxy) {
  for (int64_t j = 0; j < n; ++j) {
    const T a1 = 2 * mx[j] * my[j] + C1, b1 = mx[j] * mx[j] + my[j] * my[j] + C1;
    const T a2 = 2 * (mxy[j] - mx[j] * my[j]) + C2, b2 = m2[j] - (mx[j] * mx[j] + my[j] * my[j]) + C2;
    const T inv_d = 1 / (b1 * b2), s = a1 * a2 * inv_d;
    out[j] = s;
    if (grad) {
      const T p = 2 * (a2 - a1) * inv_d, q = 2 * s * (b1 - b2) * inv_d;  // 1/B2 − 1/B1 = (B1 − B2)/D
      d_mx[j] = my[j] * p + mx[j] * q;
      d_my[j] = mx[j] * p + my[j] * q;
      d_m2[j] = -s * b1 * inv_d;
      d_mxy[j] = 2 * a1 * inv_d;
    }
  }
}

/// One row of an input's gradient: out = s·(f_mu + 2·own·f_m2 + other·f_mxy) + e·(own − other),
/// the f the derivative maps filtered back, e the squared error's coefficient.
template <typename T>
void ssim_gradient_row(const T* __restrict f_mu, const T* __restrict f_m2, const T* __restrict f_mxy,
                       const T* __restrict own, const T* __restrict other, T s, T e, int64_t W, T* __restrict out) {
  for (int64_t c = 0; c < W; ++c)
    out[c] = s * (f_mu[c] + 2 * own[c] * f_m2[c] + other[c] * f_mxy[c]) + e * (own[c] - other[c]);
}

/// On B×C×H×W CPU tensors x, y of one floating dtype: SSIM's per-channel mean over the map (the
/// symmetric 1-D `window` of x's dtype applied separably with `pad` zeros on each side: 0 valid, n/2 same)
/// and, with `with_mse`, the per-channel mean of (x − y)² (the SANet loss's pixel term, fused
/// into the same kernel); both B×C (the second zeros without `with_mse`). `need_x` /
/// `need_y` say which gradients backward will be asked for; the forward keeps the derivative
/// maps those need, and nothing without them.
struct SSIMCpuFunction : public torch::autograd::Function<SSIMCpuFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in,
                                                const at::Tensor& y_in, const at::Tensor& window, int64_t pad,
                                                double c1, double c2, bool with_mse, bool need_x, bool need_y) {
    TORCH_INTERNAL_ASSERT(window.numel() % 2 == 1 && window.equal(window.flip(0)), "ssim: the window must be symmetric");
    const auto x = x_in.contiguous(), y = y_in.contiguous();
    const int64_t B = x.size(0), C = x.size(1), P = B * C, H = x.size(2), W = x.size(3), n = window.numel();
    const int64_t Ho = H + 2 * pad - n + 1, Wo = W + 2 * pad - n + 1;
    // Derivative maps per plane, in slots: ∂S/∂m2, ∂S/∂mxy, then ∂S/∂μx if x's
    // gradient is wanted and ∂S/∂μy if y's is.
    const int64_t slots = (need_x || need_y) ? 2 + need_x + need_y : 0;
    const at::Tensor derivs = slots ? at::empty({P, slots, Ho, Wo}, x.options()) : at::Tensor();
    at::Tensor row_sums = at::empty({P, Ho}, at::TensorOptions(at::kDouble));
    at::Tensor sq_sums = with_mse ? at::empty({P, H}, at::TensorOptions(at::kDouble)) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      const scalar_t* w = window.contiguous().data_ptr<scalar_t>();
      scalar_t* dp = slots ? derivs.data_ptr<scalar_t>() : nullptr;
      double* sums = row_sums.data_ptr<double>();
      const auto C1 = static_cast<scalar_t>(c1), C2 = static_cast<scalar_t>(c2);
      at::parallel_for(0, P * Ho, 16, [&](int64_t begin, int64_t end) {
        // Four filtered-along-H rows with `pad` zeros on each side, four output rows, the SSIM
        // row, a scratch row for derivatives nobody wants, and a zero row.
        const int64_t padded = W + 2 * pad;
        std::vector<scalar_t> buffer(static_cast<size_t>(4 * padded + 6 * Wo + W), scalar_t(0));
        scalar_t* v[4];
        scalar_t* m[4];
        for (int q = 0; q < 4; ++q) v[q] = buffer.data() + q * padded + pad, m[q] = buffer.data() + 4 * padded + q * Wo;
        scalar_t* ssim_row = buffer.data() + 4 * padded + 4 * Wo;
        scalar_t* scratch = ssim_row + Wo;
        const scalar_t* zeros = scratch + Wo;
        // The product rows of the last n input rows, each computed once: row r in slot r mod n.
        std::vector<scalar_t> ring(static_cast<size_t>(2 * n * W));
        std::vector<int64_t> ring_row(static_cast<size_t>(n), -1);
        std::vector<const scalar_t*> xr(static_cast<size_t>(n)), yr(xr), sqr(xr), xyr(xr), taps(xr);
        const SSIMWindow<scalar_t> window_taps(w, n);
        for (int64_t idx = begin; idx < end; ++idx) {
          const int64_t plane = idx / Ho, i = idx % Ho;
          const scalar_t* xs = xp + plane * H * W;
          const scalar_t* ys = yp + plane * H * W;
          ssim_tap_rows(xs, H, W, i - pad, zeros, xr);
          ssim_tap_rows(ys, H, W, i - pad, zeros, yr);
          for (int64_t k = 0; k < n; ++k) {
            const int64_t r = i - pad + k, slot = (r % n + n) % n;
            if (xr[k] == zeros) {  // outside the plane (ssim_tap_rows decided)
              sqr[k] = xyr[k] = zeros;
              continue;
            }
            scalar_t* sq = ring.data() + slot * W;
            scalar_t* xy = ring.data() + (n + slot) * W;
            if (ring_row[slot] != plane * H + r) {
              ssim_products(xs + r * W, ys + r * W, W, sq, xy);
              ring_row[slot] = plane * H + r;
            }
            sqr[k] = sq;
            xyr[k] = xy;
          }
          const scalar_t* const* tap_rows[4] = {xr.data(), yr.data(), sqr.data(), xyr.data()};
          for (int q = 0; q < 4; ++q) ssim_filter(tap_rows[q], window_taps, W, v[q]);
          for (int q = 0; q < 4; ++q) {
            ssim_tap_shifts<scalar_t>(v[q] - pad, taps);
            ssim_filter(taps.data(), window_taps, Wo, m[q]);
          }
          if (slots) {
            scalar_t* d = dp + (plane * slots * Ho + i) * Wo;
            const int64_t map = Ho * Wo;
            ssim_pointwise<true>(m[0], m[1], m[2], m[3], Wo, C1, C2, ssim_row, need_x ? d + 2 * map : scratch,
                                 need_y ? d + (2 + need_x) * map : scratch, d, d + map);
          } else {
            ssim_pointwise<false, scalar_t>(m[0], m[1], m[2], m[3], Wo, C1, C2, ssim_row, nullptr, nullptr, nullptr,
                                            nullptr);
          }
          sums[idx] = sum4(ssim_row, Wo);
        }
      });
      if (with_mse) {
        double* sq = sq_sums.data_ptr<double>();
        at::parallel_for(0, P * H, 64, [&](int64_t begin, int64_t end) {
          std::vector<scalar_t> diff(static_cast<size_t>(W));
          for (int64_t r = begin; r < end; ++r) {
            for (int64_t c = 0; c < W; ++c) diff[c] = xp[r * W + c] - yp[r * W + c];
            sq[r] = sum4(diff.data(), W, [](scalar_t e) { return static_cast<double>(e) * e; });
          }
        });
      }
    });
    ctx->save_for_backward({x, y, window, derivs});
    ctx->saved_data["pad"] = pad;
    ctx->saved_data["need_x"] = need_x;
    ctx->saved_data["need_y"] = need_y;
    const auto per_channel = [&](const at::Tensor& row_totals, int64_t count) {
      return row_totals.sum(1).div_(static_cast<double>(count)).view({B, C}).to(x.scalar_type());
    };
    return {per_channel(row_sums, Ho * Wo), with_mse ? per_channel(sq_sums, H * W) : at::zeros({B, C}, x.options())};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1], &derivs = saved[3];
    const bool need_x = ctx->saved_data["need_x"].toBool(), need_y = ctx->saved_data["need_y"].toBool();
    const int64_t pad = ctx->saved_data["pad"].toInt();
    const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), n = saved[2].numel();
    const int64_t slots = derivs.size(1), Ho = derivs.size(2), Wo = derivs.size(3);
    const auto window = saved[2].contiguous();
    const int64_t apad = n - 1 - pad;  // the adjoint's padding (the window is symmetric)
    // Per plane: the SSIM mean's upstream gradient / positions, and the squared error's
    // 2 · upstream gradient / pixels (zero where an output's gradient is undefined).
    const auto coefficient = [&](const at::Tensor& g, double factor) {
      return g.defined() ? g.to(at::kCPU, at::kDouble).contiguous().view({P}).mul(factor)
                         : at::zeros({P}, at::TensorOptions(at::kDouble));
    };
    const auto ssim_coef = coefficient(grad_outputs[0], 1.0 / static_cast<double>(Ho * Wo));
    const auto mse_coef = coefficient(grad_outputs[1], 2.0 / static_cast<double>(H * W));
    at::Tensor grad_x = need_x ? at::empty_like(x) : at::Tensor();
    at::Tensor grad_y = need_y ? at::empty_like(y) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_backward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      const scalar_t* dp = derivs.data_ptr<scalar_t>();
      const scalar_t* w = window.data_ptr<scalar_t>();
      const double* sc = ssim_coef.data_ptr<double>();
      const double* ec = mse_coef.data_ptr<double>();
      scalar_t* gx = need_x ? grad_x.data_ptr<scalar_t>() : nullptr;
      scalar_t* gy = need_y ? grad_y.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, P * H, 16, [&](int64_t begin, int64_t end) {
        // Each slot's map filtered back along H (zero padded for the pass along W), then along W;
        // a zero row.
        const int64_t padded = Wo + 2 * apad;
        std::vector<scalar_t> buffer(static_cast<size_t>(slots * (padded + W) + Wo), scalar_t(0));
        std::vector<scalar_t*> a(static_cast<size_t>(slots));
        for (int64_t q = 0; q < slots; ++q) a[q] = buffer.data() + slots * padded + q * W;
        const scalar_t* zeros = buffer.data() + slots * (padded + W);
        std::vector<const scalar_t*> taps(static_cast<size_t>(n));
        const SSIMWindow<scalar_t> window_taps(w, n);
        for (int64_t idx = begin; idx < end; ++idx) {
          const int64_t plane = idx / H, r = idx % H;
          for (int64_t q = 0; q < slots; ++q) {
            scalar_t* u = buffer.data() + q * padded + apad;
            ssim_tap_rows(dp + (plane * slots + q) * Ho * Wo, Ho, Wo, r - apad, zeros, taps);
            ssim_filter(taps.data(), window_taps, Wo, u);
            ssim_tap_shifts<scalar_t>(u - apad, taps);
            ssim_filter(taps.data(), window_taps, W, a[q]);
          }
          const auto s = static_cast<scalar_t>(sc[plane]), e = static_cast<scalar_t>(ec[plane]);
          const int64_t offset = plane * H * W + r * W;
          const scalar_t* xr = xp + offset;
          const scalar_t* yr = yp + offset;
          if (need_x) ssim_gradient_row(a[2], a[0], a[1], xr, yr, s, e, W, gx + offset);
          if (need_y) ssim_gradient_row(a[2 + need_x], a[0], a[1], yr, xr, s, e, W, gy + offset);
        }
      });
    });
    return {grad_x, grad_y, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace detail
}  // namespace crowdloss
