#pragma once
/// \file
/// The CPU kernel of SSIM's per-channel mean (`SSIMCpuFunction`, a custom autograd function):
/// - the forward streams the maps row by row through a few rows of buffers (no B×C×H×W tensor);
///   the rows are in ssim_rows.hpp, compiled once per instruction set (simd.hpp);
/// - four filtered moments suffice: μx = F(x), μy = F(y), m2 = F(x² + y²), mxy = F(xy);
/// - with A1 = 2μxμy + C1, B1 = μx² + μy² + C1, A2 = 2(mxy − μxμy) + C2, B2 = m2 − μx² − μy² + C2,
///   S = A1·A2 / (B1·B2) and D = B1·B2:
///   ∂S/∂μx = μy·P + μx·Q, ∂S/∂μy = μx·P + μy·Q, ∂S/∂m2 = −S/B2, ∂S/∂mxy = 2A1/D,
///   P = 2(c/B1 − l/B2), Q = 2S(1/B2 − 1/B1), l = A1/B1, c = A2/B2 (D itself overflows float32);
/// - ∂ΣS/∂x = Fᵀ(∂S/∂μx) + 2x·Fᵀ(∂S/∂m2) + y·Fᵀ(∂S/∂mxy) (y symmetrically); Fᵀ is F with the
///   adjoint's padding (n − 1 − pad), since the window is symmetric;
/// - the forward writes the gradient map without the upstream factor; the backward only scales it;
/// - results do not depend on the thread count (rows go in fixed pairs);
/// - the ATen path (ssim_aten.hpp) is the reference the parity tests hold this kernel to.
/// Why it is built this way, and what it costs: docs/performance.md, "SSIM and the SANet loss: how".

#include <crowdloss/detail/accumulate.hpp>
#include <crowdloss/detail/simd.hpp>
#include <crowdloss/detail/ssim_aten.hpp>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace crowdloss {
namespace detail {

/// What the kernel's rows read and write (see SSIMCpuFunction::forward).
template <typename T>
struct SSIMForwardArgs {
  const T *x, *y, *window;
  int64_t taps, pad, H, W, Ho, Wo;
  T C1, C2;
  double* row_sums;  // planes × Ho: each SSIM row's sum
  T *gx, *gy;        // planes × H × W: the unscaled gradient maps wanted (null otherwise)
  bool need_x() const { return gx != nullptr; }
  bool need_y() const { return gy != nullptr; }
};

// The kernel's rows, once per instruction set (simd.hpp).
namespace ssim_baseline {
#define CROWDLOSS_SIMD_TARGET
#define CROWDLOSS_SIMD_BYTES CROWDLOSS_SIMD_BASELINE_BYTES
#define CROWDLOSS_SIMD_SHUFFLES CROWDLOSS_SIMD_BASELINE_SHUFFLES
#include <crowdloss/detail/ssim_rows.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
#undef CROWDLOSS_SIMD_SHUFFLES
}  // namespace ssim_baseline
#if defined(CROWDLOSS_SIMD_AVX2)
namespace ssim_avx2 {
#define CROWDLOSS_SIMD_TARGET __attribute__((target("avx2,fma")))
#define CROWDLOSS_SIMD_BYTES 32
#define CROWDLOSS_SIMD_SHUFFLES CROWDLOSS_SIMD_AVX2_SHUFFLES
#include <crowdloss/detail/ssim_rows.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
#undef CROWDLOSS_SIMD_SHUFFLES
}  // namespace ssim_avx2
#endif

/// The kernel's entry points (ssim_rows.hpp) for the instruction set the CPU kernels use.
template <typename T>
struct SSIMKernels {
  /// SSIM rows [begin, end) without gradients.
  void (*rows)(const SSIMForwardArgs<T>&, int64_t begin, int64_t end);
  /// Gradient rows [begin, end) and the SSIM rows they own.
  void (*gradient_rows)(const SSIMForwardArgs<T>&, int64_t begin, int64_t end);
  /// Per-row sums of the squared error (x − y)².
  void (*squared_error_rows)(const T* x, const T* y, int64_t W, int64_t begin, int64_t end, double* sums);
  /// The backward's scaling: out = s·g + e·(own − other) over n values.
  void (*scale_gradient)(const T* g, const T* own, const T* other, T s, T e, int64_t n, T* out);
};

template <typename T>
SSIMKernels<T> ssim_kernels() {
#if defined(CROWDLOSS_SIMD_AVX2)
  if (cpu_capability() == CpuCapability::avx2)
    return {&ssim_avx2::ssim_rows<T>, &ssim_avx2::ssim_gradient_rows<T>, &ssim_avx2::squared_error_rows<T>,
            &ssim_avx2::scale_gradient<T>};
#endif
  return {&ssim_baseline::ssim_rows<T>, &ssim_baseline::ssim_gradient_rows<T>, &ssim_baseline::squared_error_rows<T>,
          &ssim_baseline::scale_gradient<T>};
}

/// On B×C×H×W CPU tensors x, y of one floating dtype: SSIM's per-channel mean over the map (the
/// symmetric 1-D `window` of x's dtype applied separably with `pad` zeros on each side: 0 valid,
/// n/2 same) and, with `with_mse`, the per-channel mean of (x − y)² (the SANet loss's pixel term);
/// both B×C (the second zeros without `with_mse`). `need_x` / `need_y` say which gradients
/// backward will be asked for. The forward computes them then, unscaled, in the same streaming
/// pass — SSIM's derivative maps do not depend on the upstream gradient, which only scales each
/// plane's map — so that the derivatives never leave the cache and the backward is one scaling
/// pass: grad_x = s·G_x + e·(x − y), s the upstream gradient over positions, e its squared
/// error's coefficient.
struct SSIMCpuFunction : public torch::autograd::Function<SSIMCpuFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in,
                                                const at::Tensor& y_in, const at::Tensor& window, int64_t pad,
                                                double c1, double c2, bool with_mse, bool need_x, bool need_y) {
    TORCH_INTERNAL_ASSERT(window.numel() % 2 == 1 && window.equal(window.flip(0)),
                          "ssim: the window must be symmetric");
    const auto x = x_in.contiguous(), y = y_in.contiguous();
    const int64_t B = x.size(0), C = x.size(1), P = B * C, H = x.size(2), W = x.size(3), n = window.numel();
    const int64_t Ho = H + 2 * pad - n + 1, Wo = W + 2 * pad - n + 1;
    const at::Tensor gx = need_x ? at::empty_like(x) : at::Tensor(), gy = need_y ? at::empty_like(y) : at::Tensor();
    at::Tensor row_sums = at::empty({P, Ho}, at::TensorOptions(at::kDouble));
    at::Tensor sq_sums = with_mse ? at::empty({P, H}, at::TensorOptions(at::kDouble)) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      const auto taps = window.contiguous();
      const SSIMForwardArgs<scalar_t> args{xp,
                                           yp,
                                           taps.data_ptr<scalar_t>(),
                                           n,
                                           pad,
                                           H,
                                           W,
                                           Ho,
                                           Wo,
                                           static_cast<scalar_t>(c1),
                                           static_cast<scalar_t>(c2),
                                           row_sums.data_ptr<double>(),
                                           need_x ? gx.data_ptr<scalar_t>() : nullptr,
                                           need_y ? gy.data_ptr<scalar_t>() : nullptr};
      const auto kernels = ssim_kernels<scalar_t>();
      if (need_x || need_y)  // ranges of at least 64 rows keep the recomputed halo rows few
        at::parallel_for(0, P * H, 64, [&](int64_t begin, int64_t end) { kernels.gradient_rows(args, begin, end); });
      else
        at::parallel_for(0, P * Ho, 16, [&](int64_t begin, int64_t end) { kernels.rows(args, begin, end); });
      if (with_mse) {
        double* sq = sq_sums.data_ptr<double>();
        at::parallel_for(0, P * H, 64,
                         [&](int64_t begin, int64_t end) { kernels.squared_error_rows(xp, yp, W, begin, end, sq); });
      }
    });
    ctx->save_for_backward({x, y, gx, gy});
    ctx->saved_data["positions"] = Ho * Wo;
    const auto per_channel = [&](const at::Tensor& row_totals, int64_t count) {
      return row_totals.sum(1).div_(static_cast<double>(count)).view({B, C}).to(x.scalar_type());
    };
    return {per_channel(row_sums, Ho * Wo), with_mse ? per_channel(sq_sums, H * W) : at::zeros({B, C}, x.options())};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1];
    const int64_t P = x.size(0) * x.size(1), HW = x.size(2) * x.size(3);
    // Per plane: the SSIM mean's upstream gradient / positions, and the squared error's
    // 2 · upstream gradient / pixels (zero where an output's gradient is undefined).
    const auto coefficient = [&](const at::Tensor& g, double factor) {
      return g.defined() ? g.to(at::kCPU, at::kDouble).contiguous().view({P}).mul(factor)
                         : at::zeros({P}, at::TensorOptions(at::kDouble));
    };
    const auto ssim_coef =
        coefficient(grad_outputs[0], 1.0 / static_cast<double>(ctx->saved_data["positions"].toInt()));
    const auto mse_coef = coefficient(grad_outputs[1], 2.0 / static_cast<double>(HW));
    // grad = s·G + e·(own − other) for each input whose map the forward made.
    const auto scaled = [&](const at::Tensor& map, const at::Tensor& own, const at::Tensor& other) {
      if (!map.defined()) return at::Tensor();
      at::Tensor grad = at::empty_like(map);
      AT_DISPATCH_FLOATING_TYPES(map.scalar_type(), "ssim_backward", [&] {
        const scalar_t* g = map.data_ptr<scalar_t>();
        const scalar_t* a = own.data_ptr<scalar_t>();
        const scalar_t* b = other.data_ptr<scalar_t>();
        scalar_t* out = grad.data_ptr<scalar_t>();
        const double* sc = ssim_coef.data_ptr<double>();
        const double* ec = mse_coef.data_ptr<double>();
        const auto scale = ssim_kernels<scalar_t>().scale_gradient;
        // Threads take whole blocks of a plane, each starting a multiple of kBlock elements from
        // the plane's start, so that which vector step computes an element (a full one or a
        // plane's partial last one, which a compiler may fuse differently) depends on its
        // position alone, not on the thread count.
        constexpr int64_t kBlock = 4096;
        const int64_t blocks = (HW + kBlock - 1) / kBlock;
        at::parallel_for(0, P * blocks, 1, [&](int64_t begin, int64_t end) {
          for (int64_t k = begin; k < end; ++k) {
            const int64_t plane = k / blocks, first = plane * HW + k % blocks * kBlock;
            scale(g + first, a + first, b + first, static_cast<scalar_t>(sc[plane]), static_cast<scalar_t>(ec[plane]),
                  std::min(kBlock, (plane + 1) * HW - first), out + first);
          }
        });
      });
      return grad;
    };
    return {scaled(saved[2], x, y), scaled(saved[3], y, x), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(),           at::Tensor(),           at::Tensor(), at::Tensor()};
  }
};

/// Per image and channel (B×C, compute dtype): SSIM (the map's mean over positions) and, when
/// asked for, the mean squared error.
struct SSIMPerChannel {
  at::Tensor ssim, mse;
};

/// The CPU kernel of ssim_cpu.hpp.
inline SSIMPerChannel ssim_per_channel_cpu(const SSIMSetup& s, bool with_mse) {
  const bool grad = at::GradMode::is_enabled();
  const auto out = SSIMCpuFunction::apply(s.x, s.y, s.window, s.pad, s.c1, s.c2, with_mse, grad && s.x.requires_grad(),
                                          grad && s.y.requires_grad());
  return {out[0], out[1]};
}

}  // namespace detail
}  // namespace crowdloss
