#pragma once
/// \file
/// `points_to_density_batch`'s renderer as ATen ops on the points' device (a GPU batch needs no
/// host round trip per image): the same maps as render_density (density_map_cpu.hpp), which the
/// tests hold it to — the mean distance to the k nearest points by exact pairwise distances in
/// row chunks, each point's truncated Gaussian as two 1-D weight lines whose outer product is
/// added into the batch's maps in chunks of points.

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {
namespace detail {

/// For each of the n points of one image (n×2 float64, x y, any device), the mean Euclidean
/// distance to its k nearest other points (k clamped to n − 1; zeros when that is 0), as
/// mean_knn_distance gives it, from exact distances (no matrix-product shortcut) in chunks of
/// rows, so that memory stays at most about 2²² distances.
inline at::Tensor mean_knn_distance_aten(const at::Tensor& xy, int64_t k) {
  const int64_t n = xy.size(0);
  k = std::min<int64_t>(k, n - 1);
  if (k <= 0) return at::zeros({n}, xy.options());
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / n);
  std::vector<at::Tensor> parts;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t rows = std::min(chunk, n - begin);
    auto d = at::cdist(xy.narrow(0, begin, rows), xy, 2.0, /*compute_mode: never the matrix product*/ 2);
    d.narrow(1, begin, rows).diagonal().fill_(std::numeric_limits<double>::infinity());  // not itself
    parts.push_back(std::get<0>(d.topk(k, 1, /*largest=*/false, /*sorted=*/true)).mean(1));
  }
  return at::cat(parts);
}

/// Adds n points' kernels into `maps` (B·H·W float64, flat, on the points' device): xy n×2 float64,
/// `image` n int64 (each point's map), `sigma` n float64 in output pixels (≤ 0: a raw count), as
/// render_density renders them; `radius_max` ≥ every point's truncation radius ⌊4σ + 0.5⌋. No
/// host round trip: raw counts and kernels are added for every point, with zero weights where
/// the other kind applies.
inline void add_density_kernels_aten(at::Tensor& maps, const at::Tensor& xy, const at::Tensor& image,
                                     const at::Tensor& sigma, int64_t height, int64_t width, double stride,
                                     bool preserve_count, int64_t radius_max) {
  const int64_t n = xy.size(0), K = 2 * radius_max + 1;
  if (n == 0) return;
  const auto row = at::clamp_max(at::floor(xy.select(1, 1) / stride), static_cast<double>(height - 1)).to(at::kLong);
  const auto col = at::clamp_max(at::floor(xy.select(1, 0) / stride), static_cast<double>(width - 1)).to(at::kLong);
  const auto raw = sigma <= 0;
  maps.index_put_({image * (height * width) + row * width + col}, raw.to(at::kDouble), true);
  const auto offsets = at::arange(-radius_max, radius_max + 1, xy.options().dtype(at::kLong));
  const auto offsets_f = offsets.to(at::kDouble).unsqueeze(0);  // 1×K
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / (K * K));
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t m = std::min(chunk, n - begin);
    const auto skip = raw.narrow(0, begin, m).unsqueeze(1);  // m×1
    const auto s = at::where(skip, at::ones_like(skip, xy.options()), sigma.narrow(0, begin, m).unsqueeze(1));
    const auto within = (offsets_f.abs() <= at::floor(4 * s + 0.5)).logical_and(skip.logical_not());
    const auto kernel = at::exp(-offsets_f.square() / (2 * s * s)) * within;            // the whole truncated line
    const auto line = [&](const at::Tensor& centre, int64_t size, at::Tensor& index) {  // its in-map part
      const auto at = centre.narrow(0, begin, m).unsqueeze(1) + offsets.unsqueeze(0);
      index = at.clamp(0, size - 1);
      return kernel * (at >= 0).logical_and(at < size);
    };
    at::Tensor rows, cols;
    const auto wy = line(row, height, rows), wx = line(col, width, cols);
    const auto total = kernel.sum(1, true);
    auto norm = preserve_count ? wy.sum(1, true) * wx.sum(1, true) : total * total;
    norm = at::where(skip, at::ones_like(norm), norm);                     // raw points: zero weights, no 0/0
    const auto contribution = (wy / norm).unsqueeze(2) * wx.unsqueeze(1);  // m×K×K
    const auto base = (image.narrow(0, begin, m) * (height * width)).view({-1, 1, 1});
    const auto index = base + rows.unsqueeze(2) * width + cols.unsqueeze(1);
    maps.index_put_({index.reshape(-1)}, contribution.reshape(-1), true);
  }
}

}  // namespace detail
}  // namespace crowdloss
