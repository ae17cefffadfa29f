#pragma once
/// \file
/// The CPU helpers of `points_to_density`: the mean distance to the k nearest points (a uniform
/// grid search, O(n) memory) and SciPy's truncated Gaussian along one line.

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {
namespace detail {

/// For each of the n points (x, y interleaved, input pixels), the mean Euclidean distance to its
/// k nearest other points (k clamped to n − 1). A uniform grid of about one point per cell keeps
/// memory O(n) and the search local; rows are processed in parallel.
inline std::vector<double> mean_knn_distance(const double* xy, int64_t n, int64_t k) {
  k = std::min<int64_t>(k, n - 1);
  std::vector<double> result(static_cast<size_t>(n), 0.0);
  if (k <= 0) return result;
  double x0 = xy[0], x1 = xy[0], y0 = xy[1], y1 = xy[1];
  for (int64_t i = 0; i < n; ++i) {
    x0 = std::min(x0, xy[2 * i]), x1 = std::max(x1, xy[2 * i]);
    y0 = std::min(y0, xy[2 * i + 1]), y1 = std::max(y1, xy[2 * i + 1]);
  }
  // About one point per cell; never smaller than extent/n, so that collinear points cannot
  // blow the grid up (it has at most about 3n cells).
  const double extent = std::max({x1 - x0, y1 - y0, 1e-9});
  const double cell =
      std::max(std::sqrt((x1 - x0) * (y1 - y0) / static_cast<double>(n)), extent / static_cast<double>(n));
  const int64_t gx = static_cast<int64_t>((x1 - x0) / cell) + 1, gy = static_cast<int64_t>((y1 - y0) / cell) + 1;
  const auto cell_of = [&](int64_t i) {
    return std::array<int64_t, 2>{std::min(gx - 1, static_cast<int64_t>((xy[2 * i] - x0) / cell)),
                                  std::min(gy - 1, static_cast<int64_t>((xy[2 * i + 1] - y0) / cell))};
  };
  // Counting sort of the points into cells: start[c] .. start[c + 1] indexes `order`.
  std::vector<int64_t> start(static_cast<size_t>(gx * gy + 1), 0), order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto c = cell_of(i);
    ++start[static_cast<size_t>(c[1] * gx + c[0] + 1)];
  }
  for (size_t c = 1; c < start.size(); ++c) start[c] += start[c - 1];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const auto c = cell_of(i);
    order[static_cast<size_t>(fill[static_cast<size_t>(c[1] * gx + c[0])]++)] = i;
  }
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    std::vector<double> best;  // the k smallest squared distances so far, ascending
    for (int64_t i = begin; i < end; ++i) {
      best.assign(static_cast<size_t>(k), std::numeric_limits<double>::infinity());
      const auto c = cell_of(i);
      const double px = xy[2 * i], py = xy[2 * i + 1];
      for (int64_t ring = 0;; ++ring) {
        for (int64_t cy = c[1] - ring; cy <= c[1] + ring; ++cy) {
          if (cy < 0 || cy >= gy) continue;
          const bool edge_row = cy == c[1] - ring || cy == c[1] + ring;
          for (int64_t cx = c[0] - ring; cx <= c[0] + ring; cx += (edge_row || ring == 0) ? 1 : 2 * ring) {
            if (cx < 0 || cx >= gx) continue;
            const size_t cell_index = static_cast<size_t>(cy * gx + cx);
            for (int64_t s = start[cell_index]; s < start[cell_index + 1]; ++s) {
              const int64_t j = order[static_cast<size_t>(s)];
              if (j == i) continue;
              const double dx = xy[2 * j] - px, dy = xy[2 * j + 1] - py, d2 = dx * dx + dy * dy;
              if (d2 < best.back()) {
                best.back() = d2;
                std::sort(best.begin(), best.end());
              }
            }
          }
        }
        // Every point in ring r + 1 or beyond is at least r·cell away.
        const double reach = static_cast<double>(ring) * cell;
        if (best.back() <= reach * reach || (ring >= gx && ring >= gy)) break;
      }
      double sum = 0;
      for (const double d2 : best) sum += std::sqrt(d2);
      result[static_cast<size_t>(i)] = sum / static_cast<double>(k);
    }
  });
  return result;
}

/// The 1-D kernel of a Gaussian (σ in output pixels) centred on pixel `centre` of a line of
/// `size` pixels, truncated at radius ⌊4σ + 0.5⌋ as SciPy's gaussian_filter truncates. Writes the
/// weights of the in-map part to `w` (from pixel `first`) and returns the sum of the whole
/// truncated kernel, inside and outside the map.
inline double gaussian_line(double sigma, int64_t centre, int64_t size, std::vector<double>& w, int64_t& first) {
  const int64_t radius = static_cast<int64_t>(4 * sigma + 0.5);
  first = std::max<int64_t>(0, centre - radius);
  const int64_t last = std::min<int64_t>(size - 1, centre + radius);
  w.resize(static_cast<size_t>(last - first + 1));
  for (int64_t p = first; p <= last; ++p) {
    const double d = static_cast<double>(p - centre);
    w[static_cast<size_t>(p - first)] = std::exp(-d * d / (2 * sigma * sigma));
  }
  double total = 1.0;  // the centre weight
  for (int64_t d = 1; d <= radius; ++d) total += 2 * std::exp(-static_cast<double>(d * d) / (2 * sigma * sigma));
  return total;
}

/// Renders n points (x, y interleaved, input pixels; checked finite and ≥ 0) into the zeroed
/// height×width float64 `map`, as points_to_density documents: a raw count per cell where the
/// Gaussian's σ is 0, otherwise a Gaussian of σ = sigma (fixed) or beta × the mean distance to the
/// k nearest other points (adaptive), in input pixels, truncated as gaussian_line does and, with
/// `preserve_count`, renormalised over the map.
inline void render_density(const double* xy, int64_t n, int64_t height, int64_t width, double stride, double sigma,
                           bool adaptive, double beta, int64_t k, bool preserve_count, double* map) {
  std::vector<double> sigmas(static_cast<size_t>(n), sigma);
  if (adaptive && n > 1) {
    sigmas = mean_knn_distance(xy, n, k);
    for (double& s : sigmas) s *= beta;
  } else if (adaptive) {  // a lone point: the fixed σ, else CSRNet's fallback
    std::fill(sigmas.begin(), sigmas.end(),
              sigma > 0 ? sigma : (static_cast<double>(height) * stride + static_cast<double>(width) * stride) / 4.0);
  }
  std::vector<double> wy, wx;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = std::min(static_cast<int64_t>(xy[2 * i + 1] / stride), height - 1);
    const int64_t c = std::min(static_cast<int64_t>(xy[2 * i] / stride), width - 1);
    const double s = sigmas.data()[i] / stride;
    if (s <= 0) {  // raw count (also two points at the same place under adaptive σ)
      map[r * width + c] += 1.0;
      continue;
    }
    int64_t r0 = 0, c0 = 0;
    const double ty = gaussian_line(s, r, height, wy, r0);
    const double tx = gaussian_line(s, c, width, wx, c0);
    double norm = tx * ty;
    if (preserve_count) {
      double sy = 0, sx = 0;
      for (const double v : wy) sy += v;
      for (const double v : wx) sx += v;
      norm = sx * sy;
    }
    for (size_t a = 0; a < wy.size(); ++a) {
      double* row = map + (r0 + static_cast<int64_t>(a)) * width + c0;
      const double wa = wy[a] / norm;
      for (size_t b = 0; b < wx.size(); ++b) row[b] += wa * wx[b];
    }
  }
}

}  // namespace detail
}  // namespace crowdloss
