#pragma once
/// \file
/// NMS as ATen ops, for any device: the reference path of the CPU kernel (detail/nms_cpu.hpp),
/// which CUDA tensors take, and the threshold both paths compare with.

#include <crowdloss/detail/box_geometry.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {
namespace detail {

/// The largest value of `dtype` (float or double) at most t, as a double (NaN for NaN). For an
/// IoU u of that dtype, `u > t` compared as torchvision's CPU kernel does — u converted to
/// double — holds exactly when u > threshold_below(t, dtype): no value of the dtype lies
/// strictly between the two. So the threshold is never rounded up (float32(0.6) > 0.6: an IoU
/// equal to float32(0.6) is above 0.6), and both NMS paths can compare in the boxes' dtype.
inline double threshold_below(double t, at::ScalarType dtype) {
  if (dtype == at::kDouble || std::isnan(t)) return t;
  constexpr float inf = std::numeric_limits<float>::infinity(), high = std::numeric_limits<float>::max();
  if (t > static_cast<double>(high)) return t == std::numeric_limits<double>::infinity() ? inf : high;
  if (t < -static_cast<double>(high)) return -inf;
  const float r = static_cast<float>(t);
  return static_cast<double>(r) > t ? std::nextafter(r, -inf) : r;
}

/// The ATen path of nms_dispatch, for any device: `sorted` (N×4, float or double) are the boxes in
/// the order of visit, `sorted_classes` their classes (or undefined), `threshold` a value of
/// sorted's dtype (threshold_below). Returns the positions of the kept boxes in that order,
/// ascending, as an int64 tensor on the boxes' device.
inline at::Tensor nms_aten(const at::Tensor& sorted, const at::Tensor& sorted_classes, double threshold) {
  const int64_t n = sorted.size(0);
  // Rows of the suppression mask are computed a tile at a time (at most ~4M entries), only for
  // the rows still alive when the tile starts, and only against the columns after the tile's start.
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 22) / std::max<int64_t>(n, 1)));
  std::vector<uint8_t> removed(static_cast<size_t>(n), 0);
  std::vector<int64_t> keep;
  for (int64_t r0 = 0; r0 < n; r0 += tile) {
    const int64_t r1 = std::min(n, r0 + tile);
    std::vector<int64_t> rows;
    for (int64_t i = r0; i < r1; ++i)
      if (!removed[static_cast<size_t>(i)]) rows.push_back(i);
    if (rows.empty()) continue;
    const auto row_index = at::tensor(rows, at::TensorOptions(at::kLong)).to(sorted.device());
    const auto cols = sorted.slice(0, r0);
    const auto [inter, uni] = intersection_union(sorted.index_select(0, row_index), cols);
    // threshold is exact in sorted's dtype, so ATen's scalar comparison does not round it.
    auto mask = inter / uni > threshold;
    if (sorted_classes.defined())
      mask = mask.logical_and(sorted_classes.index_select(0, row_index).unsqueeze(1) == sorted_classes.slice(0, r0));
    const auto host = mask.to(at::kCPU).contiguous();
    const bool* m = host.data_ptr<bool>();
    const int64_t width = n - r0;
    for (size_t k = 0; k < rows.size(); ++k) {
      const int64_t i = rows[k];
      if (removed[static_cast<size_t>(i)]) continue;
      keep.push_back(i);
      const bool* row = m + static_cast<int64_t>(k) * width;
      for (int64_t j = i + 1 - r0; j < width; ++j) removed[static_cast<size_t>(r0 + j)] |= static_cast<uint8_t>(row[j]);
    }
  }
  return at::tensor(keep, at::TensorOptions(at::kLong)).to(sorted.device());
}

}  // namespace detail
}  // namespace crowdloss
