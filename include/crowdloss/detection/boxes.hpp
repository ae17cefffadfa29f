#pragma once
/// \file
/// Box and anchor-point utilities for dense detection: pairwise IoU and GIoU of xyxy boxes,
/// FPN anchor points, and conversions between boxes and ltrb distances around points. All are
/// ATen code for CPU and CUDA tensors, differentiable where it makes sense.

#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/detection_checks.hpp>

#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace crowdloss {

/// Pairwise IoU of xyxy boxes: IoU[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|, and exactly 0 where the
/// boxes do not intersect (cvpods' `pairwise_iou`, used by DeFCN).
///
/// a: N×4, b: M×4 floating tensors (x0, y0, x1, y1), same dtype and device. Returns N×M.
/// Throws c10::Error naming `box_iou` for other shapes, integer dtypes or mixed devices.
///
/// Example:
/// ```cpp
/// auto iou = crowdloss::box_iou(gt_boxes, pred_boxes);   // G×A
/// ```
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
/// ```cpp
/// auto giou = crowdloss::generalized_box_iou(pred_boxes, gt_boxes);
/// ```
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
/// ```cpp
/// auto points = crowdloss::anchor_points({{100, 168}, {50, 84}}, {8, 16});   // P3, P4 of 800×1344
/// ```
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
/// ```cpp
/// auto inside = crowdloss::ltrb_targets(points, gt_boxes).amin(-1) > 0;   // G×A
/// ```
inline at::Tensor ltrb_targets(const at::Tensor& points, const at::Tensor& boxes) {
  detail::check_points("ltrb_targets", points);
  detail::check_boxes("ltrb_targets", "boxes", boxes);
  detail::check_same_device("ltrb_targets", points, "points", boxes, "boxes");
  return detail::ltrb_distances(points, boxes);
}

/// Boxes from ltrb distances around points: (x − l, y − t, x + r, y + b).
///
/// points: A×2; ltrb: …×A×4 (any leading dimensions broadcast against the points), floating,
/// same device. Returns …×A×4 xyxy boxes. Differentiable.
/// Throws c10::Error naming `ltrb_to_boxes` for other shapes, integer dtypes or mixed devices.
///
/// Example:
/// ```cpp
/// auto pred_boxes = crowdloss::ltrb_to_boxes(points, box_ltrb);   // A×4
/// ```
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
