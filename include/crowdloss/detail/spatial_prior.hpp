#pragma once
/// \file
/// The spatial prior of DeFCN and FCOS: which anchor points lie strictly inside each gt box (or
/// its centre-sampling square), as a G×A mask (ATen, any device) or as the list of its pairs
/// (on the CPU without the mask: inside_pairs_cpu).

#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/detection_checks.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace crowdloss {
namespace detail {

/// For CPU tensors: appends to anchors[g] each anchor start + a whose point lies strictly inside
/// boxes[g] — strictly_inside's pairs (x0 < x < x1, y0 < y < y1, compared in double, which is exact for every floating
/// dtype, as ATen's comparison after type promotion). The points are sorted by x once, and each
/// box tests y only on its x-range, found by binary search; a NaN coordinate is never inside.
inline void inside_pairs_cpu(const at::Tensor& points, const at::Tensor& boxes, int64_t start,
                             std::vector<std::vector<int64_t>>& anchors) {
  const auto p = points.to(at::kDouble).contiguous(), b = boxes.to(at::kDouble).contiguous();
  const double* pp = p.data_ptr<double>();
  const double* bp = b.data_ptr<double>();
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(p.size(0)));
  for (int64_t a = 0; a < p.size(0); ++a)
    if (!std::isnan(pp[2 * a]) && !std::isnan(pp[2 * a + 1])) order.push_back(a);
  std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return pp[2 * i] < pp[2 * j]; });
  std::vector<double> xs(order.size()), ys(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    xs[k] = pp[2 * order[k]];
    ys[k] = pp[2 * order[k] + 1];
  }
  for (int64_t g = 0; g < b.size(0); ++g) {
    const double x0 = bp[4 * g], y0 = bp[4 * g + 1], x1 = bp[4 * g + 2], y1 = bp[4 * g + 3];
    if (std::isnan(x0) || std::isnan(x1)) continue;
    const auto lo = std::upper_bound(xs.begin(), xs.end(), x0) - xs.begin();  // first x > x0
    const auto hi = std::lower_bound(xs.begin(), xs.end(), x1) - xs.begin();  // first x ≥ x1
    for (auto k = lo; k < hi; ++k)
      if (ys[static_cast<size_t>(k)] > y0 && ys[static_cast<size_t>(k)] < y1)
        anchors[static_cast<size_t>(g)].push_back(start + order[static_cast<size_t>(k)]);
  }
}

/// The boxes a spatial prior tests one run of anchors [start, start + size) against (…×G×4).
struct PriorLevel {
  int64_t start, size;
  at::Tensor boxes;
};

/// The spatial prior of DeFCN and FCOS, as the boxes each level's anchor points must lie strictly
/// inside: the gt boxes, or with radius > 0 each gt box ∩ the square of half-side
/// radius·stride(level) around its centre. `level_sizes` and `strides` are only needed with
/// radius > 0 (one run of all anchors otherwise).
inline std::vector<PriorLevel> prior_levels(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes,
                                            double radius, const std::vector<double>& strides,
                                            const std::vector<int64_t>& level_sizes) {
  TORCH_CHECK(radius >= 0, fn, ": center_sampling_radius must be >= 0, got ", radius);
  if (radius == 0) return {{0, points.size(0), gt_boxes}};
  check_levels(fn, level_sizes, points.size(0), &strides);
  const auto corner0 = gt_boxes.slice(-1, 0, 2), corner1 = gt_boxes.slice(-1, 2, 4);
  const auto centres = (corner0 + corner1) / 2;
  std::vector<PriorLevel> levels;
  int64_t start = 0;
  for (size_t l = 0; l < level_sizes.size(); ++l) {
    const double r = strides[l] * radius;
    levels.push_back(
        {start, level_sizes[l], at::cat({at::max(centres - r, corner0), at::min(centres + r, corner1)}, -1)});
    start += level_sizes[l];
  }
  return levels;
}

/// The spatial prior as a …×G×A bool mask (gt_boxes …×G×4, e.g. a batch's B×G×4): anchor point
/// a lies strictly inside its level's box of gt g (prior_levels).
inline at::Tensor spatial_prior(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes, double radius,
                                const std::vector<double>& strides, const std::vector<int64_t>& level_sizes) {
  std::vector<at::Tensor> per_level;
  for (const auto& level : prior_levels(fn, points, gt_boxes, radius, strides, level_sizes))
    per_level.push_back(strictly_inside(points.narrow(0, level.start, level.size), level.boxes));
  return per_level.size() == 1 ? per_level[0] : at::cat(per_level, -1);
}

/// The spatial prior's pairs (g, a) in row-major order (P×2 int64): `spatial_prior(…).nonzero()`,
/// as CUDA computes it; on the CPU found without the G×A mask (inside_pairs_cpu).
inline at::Tensor prior_pairs(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes, double radius,
                              const std::vector<double>& strides, const std::vector<int64_t>& level_sizes) {
  if (!points.is_cpu()) return spatial_prior(fn, points, gt_boxes, radius, strides, level_sizes).nonzero();
  std::vector<std::vector<int64_t>> anchors(static_cast<size_t>(gt_boxes.size(0)));
  for (const auto& level : prior_levels(fn, points, gt_boxes, radius, strides, level_sizes))
    inside_pairs_cpu(points.narrow(0, level.start, level.size), level.boxes, level.start, anchors);
  int64_t count = 0;
  for (auto& row : anchors) {
    std::sort(row.begin(), row.end());
    count += static_cast<int64_t>(row.size());
  }
  auto pairs = at::empty({count, 2}, at::kLong);
  int64_t* out = pairs.data_ptr<int64_t>();
  for (size_t g = 0; g < anchors.size(); ++g)
    for (const int64_t a : anchors[g]) {
      *out++ = static_cast<int64_t>(g);
      *out++ = a;
    }
  return pairs;
}

}  // namespace detail
}  // namespace crowdloss
