#pragma once
/// \file
/// Geometry of xyxy boxes as ATen ops on any device: areas, intersections and unions (as cvpods
/// computes them), IoU, and which points lie strictly inside which boxes.

#include <torch/types.h>

#include <array>
#include <cstdint>

namespace crowdloss {
namespace detail {

inline at::Tensor box_area(const at::Tensor& b) {
  return (b.select(-1, 2) - b.select(-1, 0)) * (b.select(-1, 3) - b.select(-1, 1));
}

/// Intersection and union of xyxy boxes a and b (…×4, broadcast against each other), as cvpods
/// computes them.
inline std::array<at::Tensor, 2> broadcast_intersection_union(const at::Tensor& a, const at::Tensor& b) {
  // One coordinate at a time from contiguous copies: a trailing dimension of 2 would leave the
  // broadcast loops unvectorised (3× slower for 100 boxes × 20,000 anchors).
  const auto side = [](const at::Tensor& t, int64_t k) { return t.select(-1, k).contiguous(); };
  const auto extent = [&](int64_t lo, int64_t hi) {
    return (at::minimum(side(a, hi), side(b, hi)) - at::maximum(side(a, lo), side(b, lo))).clamp_min(0);
  };
  const auto inter = extent(0, 2) * extent(1, 3);  // (out of place: box_iou is differentiable)
  return {inter, box_area(a) + box_area(b) - inter};
}

/// Pairwise intersection and union of N×4 and M×4 boxes (N×M each).
inline std::array<at::Tensor, 2> intersection_union(const at::Tensor& a, const at::Tensor& b) {
  return broadcast_intersection_union(a.unsqueeze(1), b);
}

/// IoU from intersection and union, exactly 0 where the boxes do not intersect.
inline at::Tensor iou_from(const at::Tensor& inter, const at::Tensor& uni) {
  return at::where(inter > 0, inter / uni, at::zeros({}, inter.options()));
}

/// Anchor points (A×2) against boxes (…×G×4), as the point-in-box ops broadcast them: x and y as
/// contiguous A-vectors (faster loops than the strided columns), and each box side as …×G×1.
struct PointsAndBoxes {
  at::Tensor x, y, boxes;
  PointsAndBoxes(const at::Tensor& points, const at::Tensor& b)
      : x(points.select(1, 0).contiguous()), y(points.select(1, 1).contiguous()), boxes(b) {}
  /// Side k (x0, y0, x1, y1) of every box, …×G×1.
  at::Tensor side(int64_t k) const { return boxes.select(-1, k).unsqueeze(-1); }
};

/// …×G×A bool: point a (points A×2) lies strictly inside box g (boxes …×G×4) — the same as
/// `ltrb_distances(points, boxes).amin(-1) > 0` (x − x0 > 0 ⇔ x > x0 in floating point), without
/// the …×G×A×4 tensor.
inline at::Tensor strictly_inside(const at::Tensor& points, const at::Tensor& boxes) {
  const PointsAndBoxes p(points, boxes);
  return p.x.gt(p.side(0))
      .logical_and_(p.y.gt(p.side(1)))
      .logical_and_(p.x.lt(p.side(2)))
      .logical_and_(p.y.lt(p.side(3)));
}

/// Distances from each point (A×2) to the four sides of each box (…×G×4): …×G×A×4, (x − x0,
/// y − y0, x1 − x, y1 − y), stored side by side (a permuted 4×…×G×A tensor) so that elementwise
/// work on the sides runs on contiguous planes.
inline at::Tensor ltrb_distances(const at::Tensor& points, const at::Tensor& boxes) {
  const PointsAndBoxes p(points, boxes);
  return at::stack({p.x - p.side(0), p.y - p.side(1), p.side(2) - p.x, p.side(3) - p.y}).movedim(0, -1);
}

/// The largest of the four distances of ltrb_distances (…×G×A), without the …×G×A×4 tensor.
inline at::Tensor largest_ltrb_distance(const at::Tensor& points, const at::Tensor& boxes) {
  const PointsAndBoxes p(points, boxes);
  // Two …×G×A buffers, updated in place: each large temporary costs its page faults.
  auto largest = p.x - p.side(0), next = p.y - p.side(1);
  at::maximum_out(largest, largest, next);
  at::maximum_out(largest, largest, at::sub_out(next, p.side(2), p.x));
  return at::maximum_out(largest, largest, at::sub_out(next, p.side(3), p.y));
}

}  // namespace detail
}  // namespace crowdloss
