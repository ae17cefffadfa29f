#pragma once
/// \file
/// SSIM as ATen ops, for any device (differentiable to any order): the Gaussian window, the
/// separable filter, the per-pixel map, MS-SSIM, and the validated inputs they take. The path CUDA tensors
/// and `ssim_map` take, and the reference the CPU kernel (detail/ssim_cpu.hpp) is tested against.

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

namespace crowdloss {
namespace detail {

/// The normalised 1-D Gaussian window, built in float32 as pytorch-msssim builds it, then cast
/// to `dtype` (so float64 SSIM uses the same float32-rounded weights as the reference).
inline at::Tensor gaussian_window(int64_t size, double sigma, at::ScalarType dtype, at::Device device) {
  const auto coords = at::arange(size, at::TensorOptions().dtype(at::kFloat)) - static_cast<double>(size / 2);
  auto g = at::exp(-coords.square() / (2 * sigma * sigma));
  return (g / g.sum()).to(at::TensorOptions().dtype(dtype).device(device));
}

/// Filters every channel of a B×K×H×W tensor with the separable window `w` (1-D, length n):
/// first along H, then along W, each a grouped convolution; `pad` zero pixels on each side.
inline at::Tensor separable_filter(const at::Tensor& x, const at::Tensor& w, int64_t pad) {
  const int64_t k = x.size(1), n = w.numel();
  // Explicit IntArrayRefs: on LibTorch 2.x a braced {0, pad} could also select conv2d's
  // string_view padding overload.
  const std::array<int64_t, 2> unit{1, 1}, pad_h{pad, 0}, pad_w{0, pad};
  const auto along_h = at::conv2d(x, w.view({1, 1, n, 1}).expand({k, 1, n, 1}), at::Tensor(), at::IntArrayRef(unit),
                                  at::IntArrayRef(pad_h), at::IntArrayRef(unit), k);
  return at::conv2d(along_h, w.view({1, 1, 1, n}).expand({k, 1, 1, n}), at::Tensor(), at::IntArrayRef(unit),
                    at::IntArrayRef(pad_w), at::IntArrayRef(unit), k);
}

/// SSIM's inputs after validation: both maps (in the compute dtype; for crowdloss's CUDA kernels
/// in their own, `ssim_setup`'s keep_dtype), the window in the compute dtype, the zero padding on
/// each side and the constants.
struct SSIMSetup {
  at::Tensor x, y, window;
  int64_t pad;
  double c1, c2;
};

/// The two factors of the per-pixel SSIM map in the compute dtype, as ATen ops: luminance
/// (2·μx·μy + C1) / (μx² + μy² + C1) and contrast-structure (2·σxy + C2) / (σx² + σy² + C2), and
/// `guard`: 0, or NaN where a denominator overflowed (a quotient over an infinite denominator
/// would be a finite wrong value), to be added to what is made of them.
struct SSIMFactors {
  at::Tensor luminance, cs, guard;
};

inline SSIMFactors ssim_factors_aten(const SSIMSetup& s) {
  const int64_t C = s.x.size(1);
  // The five local moments in one grouped filtering pass.
  const auto moments = separable_filter(at::cat({s.x, s.y, s.x * s.x, s.y * s.y, s.x * s.y}, 1), s.window, s.pad);
  const auto mu1 = moments.narrow(1, 0, C), mu2 = moments.narrow(1, C, C);
  const auto mu1_sq = mu1.square(), mu2_sq = mu2.square(), mu1_mu2 = mu1 * mu2;
  const auto sigma1_sq = moments.narrow(1, 2 * C, C) - mu1_sq;
  const auto sigma2_sq = moments.narrow(1, 3 * C, C) - mu2_sq;
  const auto sigma12 = moments.narrow(1, 4 * C, C) - mu1_mu2;
  const auto b1 = mu1_sq + mu2_sq + s.c1, b2 = sigma1_sq + sigma2_sq + s.c2;
  const auto guard = b1 + b2;
  return {(2 * mu1_mu2 + s.c1) / b1, (2 * sigma12 + s.c2) / b2, guard - guard};
}

/// The per-pixel SSIM map in the compute dtype, as ATen ops (any device, differentiable to any
/// order): the reference the CPU kernel is tested against.
inline at::Tensor ssim_map_aten(const SSIMSetup& s) {
  const auto f = ssim_factors_aten(s);
  return f.luminance * f.cs + f.guard;
}

/// MS-SSIM per image and channel (B×C) in the compute dtype, as ATen ops (any device,
/// differentiable): pytorch-msssim's `ms_ssim` over `weights.size()` levels of `s` (valid
/// filtering). Level l < last contributes relu(mean cs), then both maps are 2×2 average-pooled
/// with one zero row / column before an odd side (counted in the average); the last level
/// contributes relu(mean SSIM); the result is Π_l term_l ^ weight_l. Every level must be at
/// least the window's size.
inline at::Tensor ms_ssim_aten(SSIMSetup s, const std::vector<double>& weights) {
  const auto levels = static_cast<int64_t>(weights.size());
  std::vector<at::Tensor> terms;
  for (int64_t l = 0; l < levels; ++l) {
    const auto f = ssim_factors_aten(s);
    if (l + 1 == levels) {
      terms.push_back(at::relu((f.luminance * f.cs + f.guard).flatten(2).mean(-1)));
      break;
    }
    terms.push_back(at::relu((f.cs + f.guard).flatten(2).mean(-1)));
    const std::array<int64_t, 2> two{2, 2}, pad{s.x.size(2) % 2, s.x.size(3) % 2};
    s.x = at::avg_pool2d(s.x, two, two, pad);
    s.y = at::avg_pool2d(s.y, two, two, pad);
  }
  const auto w = at::tensor(weights, at::TensorOptions().dtype(at::kDouble)).to(s.x.options()).view({levels, 1, 1});
  return at::prod(at::pow(at::stack(terms), w), 0);
}

/// Inputs widened to float64 (the constants and the window's float32-rounded taps are the same).
inline SSIMSetup widened(const SSIMSetup& s) {
  return {s.x.to(at::kDouble), s.y.to(at::kDouble), s.window.to(at::kDouble), s.pad, s.c1, s.c2};
}

/// The largest C1 or C2 that SSIM computes in float: 2¹²⁰ (a data_range up to about 4·10¹⁹ with
/// the default k2 = 0.03), beyond which float cannot hold SSIM's terms and derivatives.
constexpr double kSsimFloatConstantLimit = 0x1p120;

/// Whether `s` computes in float (float32 or half-precision maps) with a constant beyond
/// kSsimFloatConstantLimit. On CUDA, where the CPU's overflow check would cost a host round
/// trip, such setups are computed in float64: it is known from the options alone.
inline bool ssim_constants_exceed_float(const SSIMSetup& s) {
  return s.x.scalar_type() != at::kDouble && (s.c1 > kSsimFloatConstantLimit || s.c2 > kSsimFloatConstantLimit);
}

}  // namespace detail
}  // namespace crowdloss
