#pragma once
/// \file
/// Ground-truth density maps from point annotations (raw counts as the PML authors rasterise
/// them, fixed Gaussian kernels, or CSRNet's geometry-adaptive kernels), and count-preserving
/// down-sampling of density maps.

#include <crowdloss/detail/blocks.hpp>
#include <crowdloss/detail/density_map_aten.hpp>
#include <crowdloss/detail/density_map_cpu.hpp>

#include <ATen/Parallel.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::points_to_density`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::PointsToDensityOptions().stride(8).adaptive(true);
/// ```
struct PointsToDensityOptions {
  /// Input-image pixels per output pixel (> 0): a point at (x, y) lands in output pixel
  /// (min(⌊y/stride⌋, height − 1), min(⌊x/stride⌋, width − 1)).
  TORCH_ARG(double, stride) = 1.0;
  /// Standard deviation of a fixed Gaussian kernel per point, in input pixels (≥ 0); 0 gives raw
  /// counts. With `adaptive`, the fallback for a point without neighbours (0: CSRNet's fallback).
  TORCH_ARG(double, sigma) = 0.0;
  /// Geometry-adaptive kernels: σᵢ = beta × mean distance from point i to its k nearest others.
  TORCH_ARG(bool, adaptive) = false;
  /// Scale of the adaptive σ (> 0); 0.3 as in CSRNet.
  TORCH_ARG(double, beta) = 0.3;
  /// Neighbours averaged for the adaptive σ (≥ 1); 3 as in CSRNet.
  TORCH_ARG(int64_t, k) = 3;
  /// Renormalise each point's kernel over the map so the map sums to exactly N. When false, the
  /// part of a kernel that falls outside the map is lost (as SciPy's constant-mode filtering does).
  TORCH_ARG(bool, preserve_count) = true;
};

/// Deprecated: the name of `PointsToDensityOptions` in crowdloss 0.1, kept through 0.2 and removed in 0.3.
using DensityOptions [[deprecated("crowdloss: use PointsToDensityOptions")]] = PointsToDensityOptions;

namespace detail {

inline void check_density_options(const char* fn, int64_t height, int64_t width,
                                  const PointsToDensityOptions& options) {
  TORCH_CHECK(height >= 1 && width >= 1, fn, ": height and width must be >= 1, got ", height, "x", width);
  TORCH_CHECK(options.stride() > 0 && std::isfinite(options.stride()), fn, ": stride must be positive, got ",
              options.stride());
  TORCH_CHECK(options.sigma() >= 0 && std::isfinite(options.sigma()), fn, ": sigma must be >= 0, got ",
              options.sigma());
  TORCH_CHECK(options.beta() > 0 && std::isfinite(options.beta()), fn, ": beta must be positive, got ", options.beta());
  TORCH_CHECK(options.k() >= 1, fn, ": k must be >= 1, got ", options.k());
}

}  // namespace detail

/// A height×width density map from N points.
///
/// points_xy: N×2 (x, y) in input-image pixels, any real or integer dtype, CPU or CUDA; N may be
/// 0. Each point is assigned to output pixel (r, c) = (min(⌊y/stride⌋, height − 1),
/// min(⌊x/stride⌋, width − 1)) — the PML authors' rasteriser — and contributes:
/// - `sigma` 0, not adaptive: a count of 1 at (r, c) (the authors' raw-count map);
/// - `sigma` > 0: a Gaussian of standard deviation sigma/stride output pixels centred on (r, c)
///   (CSRNet's convention: the point's pixel, filtered), truncated at 4σ;
/// - `adaptive(true)`: the same with σᵢ = beta · (mean distance to the k nearest other points)
///   (CSRNet: β = 0.3, k = 3; fewer than k others: all of them). A lone point uses `sigma` if it
///   is > 0, else CSRNet's fallback (height·stride + width·stride)/4 input pixels.
/// With `preserve_count` (default) each point's kernel is renormalised over the map, so the map
/// sums to exactly N (up to rounding); otherwise kernel mass outside the map is lost.
///
/// Returns a height×width tensor on the points' device, float64 for float64 points and float32
/// otherwise. The map is built on the CPU (this is data preparation; neighbours are found with
/// a uniform grid, O(N) memory) and moved to the points' device.
///
/// Throws c10::Error naming `points_to_density` and the value for: points not N×2, negative or
/// non-finite coordinates, height or width < 1, stride ≤ 0, sigma < 0, beta ≤ 0, k < 1.
///
/// Example:
/// ```cpp
/// auto pts = torch::tensor({{10.0, 20.0}, {30.5, 4.0}});            // (x, y) per head
/// auto raw = crowdloss::points_to_density(pts, 64, 64, crowdloss::PointsToDensityOptions().stride(8));
/// auto smooth = crowdloss::points_to_density(pts, 512, 512, crowdloss::PointsToDensityOptions().adaptive(true));
/// ```
inline at::Tensor points_to_density(const at::Tensor& points_xy, int64_t height, int64_t width,
                                    const PointsToDensityOptions& options = {}) {
  constexpr const char* fn = "points_to_density";
  TORCH_CHECK(points_xy.defined() && points_xy.dim() == 2 && points_xy.size(1) == 2, fn,
              ": expected points_xy of shape (N, 2), got ",
              points_xy.defined() ? points_xy.sizes() : at::IntArrayRef{});
  detail::check_density_options(fn, height, width, options);
  const auto out_dtype = points_xy.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto pts = points_xy.to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = pts.size(0);
  const double* xy = pts.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(std::isfinite(xy[2 * i]) && std::isfinite(xy[2 * i + 1]), fn, ": point ", i, " is not finite: (",
                xy[2 * i], ", ", xy[2 * i + 1], ")");
    TORCH_CHECK(xy[2 * i] >= 0 && xy[2 * i + 1] >= 0, fn, ": point ", i, " has a negative coordinate: (", xy[2 * i],
                ", ", xy[2 * i + 1], ")");
  }
  auto map = at::zeros({height, width}, at::kDouble);
  detail::render_density(xy, n, height, width, options.stride(), options.sigma(), options.adaptive(), options.beta(),
                         options.k(), options.preserve_count(), map.data_ptr<double>());
  return map.to(points_xy.device(), out_dtype);
}

/// `points_to_density` for a batch of images, on the points' device: B×1×height×width, map b the
/// one `points_to_density(points[b], height, width, options)` gives (to rounding), computed with
/// ATen ops where the points are. On a GPU the whole batch runs there without a host round trip
/// per image: one check of every coordinate per call and, for adaptive kernels, one read of the
/// largest kernel's radius. Adaptive σ uses exact pairwise distances within each image (memory
/// about 2²² distances at a time); each kernel is added as the outer product of its two 1-D
/// lines, in chunks of points. On CUDA the additions' order, hence the last bits, may vary from
/// run to run.
///
/// points: B ≥ 1 tensors, each N_b×2 (x, y) in input pixels, any real or integer dtype, all on
/// one device; N_b may be 0. Returns float64 when every points tensor is float64, else float32.
///
/// Throws c10::Error naming `points_to_density_batch` and the value for: an empty list, a points
/// tensor not N×2 or on another device than points[0], a negative or non-finite coordinate (naming
/// the image and the point), and the option errors of `points_to_density`.
///
/// Example:
/// ```cpp
/// std::vector<at::Tensor> heads = {torch::tensor({{10.0, 20.0}}), torch::zeros({0, 2})};
/// auto maps = crowdloss::points_to_density_batch(heads, 64, 64, crowdloss::PointsToDensityOptions().sigma(4.0));
/// // maps: 2×1×64×64; maps[0] sums to 1, maps[1] to 0
/// ```
inline at::Tensor points_to_density_batch(const std::vector<at::Tensor>& points, int64_t height, int64_t width,
                                          const PointsToDensityOptions& options = {}) {
  constexpr const char* fn = "points_to_density_batch";
  TORCH_CHECK(!points.empty(), fn, ": expected the points of at least one image, got an empty list");
  detail::check_density_options(fn, height, width, options);
  const auto B = static_cast<int64_t>(points.size());
  const auto device = points[0].defined() ? points[0].device() : at::Device(at::kCPU);
  bool all_double = true;
  std::vector<at::Tensor> xy_list;
  std::vector<int64_t> sizes;
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = points[static_cast<size_t>(b)];
    TORCH_CHECK(p.defined() && p.dim() == 2 && p.size(1) == 2, fn, ": expected points[", b, "] of shape (N, 2), got ",
                p.defined() ? p.sizes() : at::IntArrayRef{});
    TORCH_CHECK(p.device() == device, fn, ": points[", b, "] is on ", p.device(), ", points[0] on ", device);
    all_double = all_double && p.scalar_type() == at::kDouble;
    xy_list.push_back(p.to(at::kDouble));
    sizes.push_back(p.size(0));
  }
  const auto xy = at::cat(xy_list);
  const auto f64 = at::TensorOptions(at::kDouble).device(device);
  const auto bad = at::isfinite(xy).logical_not().logical_or(xy < 0).any(1);
  if (bad.any().item<bool>()) {  // the error path alone looks for which point
    int64_t i = bad.nonzero()[0][0].item<int64_t>(), b = 0;
    while (i >= sizes[static_cast<size_t>(b)]) i -= sizes[static_cast<size_t>(b++)];
    const auto v = points[static_cast<size_t>(b)][i].to(at::kCPU, at::kDouble);
    const double x = v[0].item<double>(), y = v[1].item<double>();
    TORCH_CHECK(false, fn, ": points[", b, "] point ", i,
                (std::isfinite(x) && std::isfinite(y) ? " has a negative coordinate: (" : " is not finite: ("), x, ", ",
                y, ")");
  }
  const auto image = at::repeat_interleave(at::tensor(sizes, at::TensorOptions(at::kLong)).to(device));
  // Each point's σ in input pixels, as render_density chooses it.
  at::Tensor sigma = at::full({xy.size(0)}, options.sigma(), f64);
  if (options.adaptive()) {
    std::vector<at::Tensor> parts;
    const double fallback =
        options.sigma() > 0
            ? options.sigma()
            : (static_cast<double>(height) * options.stride() + static_cast<double>(width) * options.stride()) / 4.0;
    int64_t first = 0;
    for (const int64_t n : sizes) {
      const auto own = xy.narrow(0, first, n);
      parts.push_back(n > 1 ? detail::mean_knn_distance_aten(own, options.k()) * options.beta()
                            : at::full({n}, fallback, f64));
      first += n;
    }
    sigma = at::cat(parts);
  }
  sigma = sigma / options.stride();  // in output pixels
  const double largest = xy.size(0) == 0      ? 0.0
                         : options.adaptive() ? sigma.max().item<double>()
                                              : options.sigma() / options.stride();
  auto maps = at::zeros({B * height * width}, f64);
  detail::add_density_kernels_aten(maps, xy, image, sigma, height, width, options.stride(), options.preserve_count(),
                                   static_cast<int64_t>(4 * largest + 0.5));
  return maps.view({B, 1, height, width}).to(all_double ? at::kDouble : at::kFloat);
}

/// Count-preserving down-sampling: sums each factor×factor block of the last two dimensions.
///
/// map: a floating tensor of at least 2 dimensions (…×H×W, e.g. B×C×H×W), CPU or CUDA. The result
/// is …×⌈H/factor⌉×⌈W/factor⌉ with the same total over the last two dimensions: a remainder at the
/// bottom/right is treated as zero-padded. Differentiable.
///
/// Throws c10::Error naming `sum_pool` and the value for: fewer than 2 dimensions, a
/// non-floating dtype, an empty map, factor < 1.
///
/// Example:
/// ```cpp
/// auto coarse = crowdloss::sum_pool(density, 8);   // B×1×H×W → B×1×⌈H/8⌉×⌈W/8⌉, same counts
/// ```
inline at::Tensor sum_pool(const at::Tensor& map, int64_t factor) {
  TORCH_CHECK(map.defined() && map.dim() >= 2, "sum_pool: expected a map with at least 2 dimensions, got ",
              map.defined() ? map.sizes() : at::IntArrayRef{});
  TORCH_CHECK(map.is_floating_point(), "sum_pool: expected a floating-point map, got ", map.scalar_type());
  TORCH_CHECK(map.numel() > 0, "sum_pool: expected a non-empty map, got shape ", map.sizes());
  TORCH_CHECK(factor >= 1, "sum_pool: factor must be >= 1, got ", factor);
  const int64_t pad_h = (factor - map.size(-2) % factor) % factor, pad_w = (factor - map.size(-1) % factor) % factor;
  const auto padded = (pad_h || pad_w) ? at::constant_pad_nd(map, {0, pad_w, 0, pad_h}, 0) : map;
  return detail::sum_blocks(padded, factor, factor);
}

}  // namespace crowdloss
