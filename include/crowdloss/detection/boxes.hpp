#pragma once
/// \file
/// Box and anchor-point utilities for dense detection: pairwise IoU and GIoU of xyxy boxes,
/// FPN anchor points, and conversions between boxes and ltrb distances around points. All are
/// ATen code for CPU and CUDA tensors, differentiable where it makes sense.

#include <crowdloss/detail/checks.hpp>

#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace crowdloss {

namespace detail {

inline void check_boxes(const char* fn, const char* name, const at::Tensor& boxes) {
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, fn, ": expected ", name,
              " of shape (N, 4), got ", boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(boxes.is_floating_point(), fn, ": expected floating-point ", name, ", got ", boxes.scalar_type());
}

/// Throws c10::Error naming `fn`, `name` and the first box of `boxes` (N×4, checked by
/// `check_boxes`, on the inputs' device) that has a NaN or infinite coordinate: the rule of every assigner for its
/// ground-truth boxes, whose cost or prior means nothing for such a box.
inline void check_finite_boxes(const char* fn, const char* name, const at::Tensor& boxes) {
  if (boxes.numel() == 0 || boxes.is_meta()) return;  // meta tensors hold no values
  const auto bad = boxes.isfinite().all(1).logical_not();
  if (!bad.any().item<bool>()) return;
  const int64_t g = bad.nonzero()[0][0].item<int64_t>();
  const auto box = boxes[g].to(at::kDouble).cpu();
  const double* b = box.data_ptr<double>();
  TORCH_CHECK(false, fn, ": ", name, "[", g, "] is not finite: (", b[0], ", ", b[1], ", ", b[2], ", ", b[3], ")");
}

inline void check_points(const char* fn, const at::Tensor& points) {
  TORCH_CHECK(points.defined() && points.dim() == 2 && points.size(1) == 2, fn,
              ": expected points of shape (A, 2), got ", points.defined() ? points.sizes() : at::IntArrayRef{});
  TORCH_CHECK(points.is_floating_point(), fn, ": expected floating-point points, got ", points.scalar_type());
}

inline at::Tensor box_area(const at::Tensor& b) {
  return (b.select(-1, 2) - b.select(-1, 0)) * (b.select(-1, 3) - b.select(-1, 1));
}

/// Intersection and union of xyxy boxes a and b (…×4, broadcast against each other), as cvpods
/// computes them.
inline std::array<at::Tensor, 2> broadcast_intersection_union(const at::Tensor& a, const at::Tensor& b) {
  const auto wh =
      (at::min(a.slice(-1, 2, 4), b.slice(-1, 2, 4)) - at::max(a.slice(-1, 0, 2), b.slice(-1, 0, 2))).clamp_min(0);
  const auto inter = wh.prod(-1);
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

/// G×A bool: point a lies strictly inside box g — the same as `ltrb_targets(points,
/// boxes).amin(-1) > 0` (x − x0 > 0 ⇔ x > x0 in floating point), without the G×A×4 tensor.
inline at::Tensor strictly_inside(const at::Tensor& points, const at::Tensor& boxes) {
  const auto x = points.select(1, 0).unsqueeze(0), y = points.select(1, 1).unsqueeze(0);
  const auto side = [&](int64_t k) { return boxes.select(1, k).unsqueeze(1); };
  return x.gt(side(0)).logical_and_(y.gt(side(1))).logical_and_(x.lt(side(2))).logical_and_(y.lt(side(3)));
}

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

}  // namespace detail

/// Pairwise IoU of xyxy boxes: IoU[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|, and exactly 0 where the
/// boxes do not intersect (cvpods' `pairwise_iou`, used by DeFCN).
///
/// a: N×4, b: M×4 floating tensors (x0, y0, x1, y1), same dtype and device. Returns N×M.
/// Throws c10::Error naming `box_iou` for other shapes, integer dtypes or mixed devices.
///
/// Example:
///   auto iou = crowdloss::box_iou(gt_boxes, pred_boxes);   // G×A
inline at::Tensor box_iou(const at::Tensor& a, const at::Tensor& b) {
  detail::check_boxes("box_iou", "a", a);
  detail::check_boxes("box_iou", "b", b);
  detail::check_same_device("box_iou", a, "a", b, "b");
  const auto [inter, uni] = detail::intersection_union(a, b);
  return detail::iou_from(inter, uni);
}

/// Pairwise generalized IoU: GIoU = IoU − (|C| − |a ∪ b|)/|C|, C the smallest box enclosing both
/// (torchvision's `generalized_box_iou`). Values in [−1, 1].
///
/// a: N×4, b: M×4 floating xyxy boxes, same dtype and device. Returns N×M; degenerate boxes (zero
/// area on both sides) give NaN, as in torchvision. Errors as for `box_iou`.
///
/// Example:
///   auto giou = crowdloss::generalized_box_iou(pred_boxes, gt_boxes);
inline at::Tensor generalized_box_iou(const at::Tensor& a, const at::Tensor& b) {
  detail::check_boxes("generalized_box_iou", "a", a);
  detail::check_boxes("generalized_box_iou", "b", b);
  detail::check_same_device("generalized_box_iou", a, "a", b, "b");
  const auto [inter, uni] = detail::intersection_union(a, b);
  const auto wh = (at::max(a.unsqueeze(1).slice(-1, 2, 4), b.slice(-1, 2, 4)) -
                   at::min(a.unsqueeze(1).slice(-1, 0, 2), b.slice(-1, 0, 2)))
                      .clamp_min(0);
  const auto enclosing = wh.prod(-1);
  return inter / uni - (enclosing - uni) / enclosing;
}

/// Anchor points of an FPN: for each level l with a grid of level_hw[l] = {h, w} cells and
/// stride strides[l], the points ((x + offset)·stride, (y + offset)·stride), x < w, y < h, in
/// row-major order (y outer); levels concatenated. offset 0.5 puts them at the cell centres.
///
/// Returns an A×2 tensor (A = Σ h·w) with `options` (default float32 on the CPU).
/// Throws c10::Error naming `anchor_points` when the two lists differ in length or are empty, a
/// level size is negative, or a stride is not positive.
///
/// Example:
///   auto points = crowdloss::anchor_points({{100, 168}, {50, 84}}, {8, 16});   // P3, P4 of 800×1344
inline at::Tensor anchor_points(const std::vector<std::array<int64_t, 2>>& level_hw, const std::vector<double>& strides,
                                double offset = 0.5, at::TensorOptions options = at::kFloat) {
  TORCH_CHECK(!level_hw.empty() && level_hw.size() == strides.size(),
              "anchor_points: expected as many strides as levels, got ", strides.size(), " strides for ",
              level_hw.size(), " levels");
  std::vector<at::Tensor> levels;
  for (size_t l = 0; l < level_hw.size(); ++l) {
    const auto [h, w] = level_hw[l];
    TORCH_CHECK(h >= 0 && w >= 0, "anchor_points: level ", l, " has size ", h, "x", w);
    TORCH_CHECK(strides[l] > 0, "anchor_points: strides[", l, "] must be positive, got ", strides[l]);
    const auto dbl = options.dtype(at::kDouble);
    const auto x = (at::arange(w, dbl) + offset) * strides[l];
    const auto y = (at::arange(h, dbl) + offset) * strides[l];
    levels.push_back(at::stack({x.unsqueeze(0).expand({h, w}), y.unsqueeze(1).expand({h, w})}, -1).reshape({h * w, 2}));
  }
  return at::cat(levels).to(options);
}

/// Distances from each point to the four sides of each box: out[g, a] = (x − x0, y − y0,
/// x1 − x, y1 − y) for point a = (x, y) and box g. All four are > 0 exactly when the point lies
/// strictly inside the box.
///
/// points: A×2, boxes: G×4 xyxy, floating, same dtype and device. Returns G×A×4, stored side by
/// side (a permuted 4×G×A tensor): each side is a contiguous G×A plane, so elementwise work on
/// the sides (IoU losses, comparisons) runs on contiguous loops.
/// Throws c10::Error naming `ltrb_targets` for other shapes, integer dtypes or mixed devices.
///
/// Example:
///   auto inside = crowdloss::ltrb_targets(points, gt_boxes).amin(-1) > 0;   // G×A
inline at::Tensor ltrb_targets(const at::Tensor& points, const at::Tensor& boxes) {
  detail::check_points("ltrb_targets", points);
  detail::check_boxes("ltrb_targets", "boxes", boxes);
  detail::check_same_device("ltrb_targets", points, "points", boxes, "boxes");
  const auto x = points.select(1, 0).unsqueeze(0), y = points.select(1, 1).unsqueeze(0);  // 1×A
  const auto side = [&](int64_t k) { return boxes.select(1, k).unsqueeze(1); };           // G×1
  return at::stack({x - side(0), y - side(1), side(2) - x, side(3) - y}).permute({1, 2, 0});
}

/// Boxes from ltrb distances around points: (x − l, y − t, x + r, y + b).
///
/// points: A×2; ltrb: …×A×4 (any leading dimensions broadcast against the points), floating,
/// same device. Returns …×A×4 xyxy boxes. Differentiable.
/// Throws c10::Error naming `ltrb_to_boxes` for other shapes, integer dtypes or mixed devices.
///
/// Example:
///   auto pred_boxes = crowdloss::ltrb_to_boxes(points, box_ltrb);   // A×4
inline at::Tensor ltrb_to_boxes(const at::Tensor& points, const at::Tensor& ltrb) {
  detail::check_points("ltrb_to_boxes", points);
  TORCH_CHECK(ltrb.defined() && ltrb.dim() >= 2 && ltrb.size(-1) == 4 && ltrb.size(-2) == points.size(0),
              "ltrb_to_boxes: expected ltrb of shape (..., ", points.size(0), ", 4) for ", points.size(0),
              " points, got ", ltrb.defined() ? ltrb.sizes() : at::IntArrayRef{});
  TORCH_CHECK(ltrb.is_floating_point(), "ltrb_to_boxes: expected floating-point ltrb, got ", ltrb.scalar_type());
  detail::check_same_device("ltrb_to_boxes", points, "points", ltrb, "ltrb");
  return at::cat({points - ltrb.slice(-1, 0, 2), points + ltrb.slice(-1, 2, 4)}, -1);
}

}  // namespace crowdloss
