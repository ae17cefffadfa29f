#pragma once
/// \file
/// The input checks shared by the box utilities, the assigners and NMS: boxes, points, one
/// image's detection inputs, α and the FPN levels, the focal loss's α and γ. Each failure is a c10::Error naming the
/// function, the argument and the value.

#include <crowdloss/detail/checks.hpp>

#include <torch/types.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

namespace crowdloss {
namespace detail {

inline void check_boxes(const char* fn, const char* name, const at::Tensor& boxes) {
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, fn, ": expected ", name,
              " of shape (N, 4), got ", boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(boxes.is_floating_point(), fn, ": expected floating-point ", name, ", got ", boxes.scalar_type());
}

/// The index of the first box of `boxes` (N×4) with a NaN or infinite coordinate, or −1 (one
/// host read; always −1 for meta tensors, which hold no values).
inline int64_t first_nonfinite_box(const at::Tensor& boxes) {
  if (boxes.numel() == 0 || boxes.is_meta()) return -1;
  const auto bad = boxes.isfinite().all(1).logical_not();
  // argmax finds the first true; where none is, it points at a finite box.
  const auto first = bad.to(at::kByte).argmax();
  const auto found = at::stack({first, bad.index({first}).to(at::kLong)}).cpu();
  return found[1].item<int64_t>() ? found[0].item<int64_t>() : -1;
}

/// Throws c10::Error naming `fn`, `name` and the first box of `boxes` (N×4, checked by
/// `check_boxes`, on the inputs' device) that has a NaN or infinite coordinate: the rule of every assigner for its
/// ground-truth boxes, whose cost or prior means nothing for such a box.
inline void check_finite_boxes(const char* fn, const char* name, const at::Tensor& boxes) {
  const int64_t g = first_nonfinite_box(boxes);
  if (g < 0) return;
  const auto box = boxes[g].to(at::kDouble).cpu();
  const double* b = box.data_ptr<double>();
  TORCH_CHECK(false, fn, ": ", name, "[", g, "] is not finite: (", b[0], ", ", b[1], ", ", b[2], ", ", b[3], ")");
}

inline void check_points(const char* fn, const at::Tensor& points) {
  TORCH_CHECK(points.defined() && points.dim() == 2 && points.size(1) == 2, fn,
              ": expected points of shape (A, 2), got ", points.defined() ? points.sizes() : at::IntArrayRef{});
  TORCH_CHECK(points.is_floating_point(), fn, ": expected floating-point points, got ", points.scalar_type());
}

/// Validates one image's detection inputs: cls_prob A×K, pred_boxes A×4, points A×2 (floating),
/// gt_boxes G×4 (floating, finite), gt_classes G int64 in [min_class, K), all on one device.
inline void check_detection_inputs(const char* fn, const at::Tensor& cls, const char* cls_name, const at::Tensor& boxes,
                                   const char* boxes_name, const at::Tensor& points, const at::Tensor& gt_boxes,
                                   const at::Tensor& gt_classes, int64_t min_class) {
  TORCH_CHECK(cls.defined() && cls.dim() == 2, fn, ": expected ", cls_name, " of shape (A, K), got ",
              cls.defined() ? cls.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cls.is_floating_point(), fn, ": expected floating-point ", cls_name, ", got ", cls.scalar_type());
  const int64_t A = cls.size(0), K = cls.size(1);
  TORCH_CHECK(K >= 1, fn, ": expected at least one class in ", cls_name, ", got shape ", cls.sizes());
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(0) == A && boxes.size(1) == 4, fn, ": expected ",
              boxes_name, " of shape (", A, ", 4), got ", boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(boxes.is_floating_point(), fn, ": expected floating-point ", boxes_name, ", got ", boxes.scalar_type());
  check_points(fn, points);
  TORCH_CHECK(points.size(0) == A, fn, ": points has ", points.size(0), " anchors but ", cls_name, " has ", A);
  check_boxes(fn, "gt_boxes", gt_boxes);
  TORCH_CHECK(gt_classes.defined() && gt_classes.dim() == 1 && gt_classes.size(0) == gt_boxes.size(0), fn,
              ": expected gt_classes of shape (", gt_boxes.size(0), "), got ",
              gt_classes.defined() ? gt_classes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(gt_classes.scalar_type() == at::kLong, fn, ": expected int64 gt_classes, got ", gt_classes.scalar_type());
  check_same_device(fn, cls, cls_name, boxes, boxes_name);
  check_same_device(fn, cls, cls_name, points, "points");
  check_same_device(fn, cls, cls_name, gt_boxes, "gt_boxes");
  check_same_device(fn, cls, cls_name, gt_classes, "gt_classes");
  check_finite_boxes(fn, "gt_boxes", gt_boxes);
  if (gt_classes.numel() > 0) {
    const auto lo = gt_classes.min().item<int64_t>(), hi = gt_classes.max().item<int64_t>();
    TORCH_CHECK(lo >= min_class && hi < K, fn, ": gt_classes must lie in [", min_class, ", ", K, "), got values from ",
                lo, " to ", hi);
  }
}

inline void check_alpha(const char* fn, double alpha) {
  TORCH_CHECK(alpha >= 0 && alpha <= 1, fn, ": alpha must lie in [0, 1], got ", alpha);
}

/// Checks `level_sizes` against the anchor count A (and `strides`, when given, against it).
inline void check_levels(const char* fn, const std::vector<int64_t>& level_sizes, int64_t A,
                         const std::vector<double>* strides = nullptr) {
  TORCH_CHECK(!level_sizes.empty(), fn, ": level_sizes (anchors per level) must be given");
  if (strides) {
    TORCH_CHECK(strides->size() == level_sizes.size(), fn, ": expected one stride per level, got ", strides->size(),
                " strides for ", level_sizes.size(), " levels");
    for (size_t l = 0; l < strides->size(); ++l)
      TORCH_CHECK((*strides)[l] > 0, fn, ": strides[", l, "] must be positive, got ", (*strides)[l]);
  }
  for (size_t l = 0; l < level_sizes.size(); ++l)
    TORCH_CHECK(level_sizes[l] >= 0, fn, ": level_sizes[", l, "] is negative: ", level_sizes[l]);
  const int64_t total = std::accumulate(level_sizes.begin(), level_sizes.end(), int64_t{0});
  TORCH_CHECK(total == A, fn, ": level_sizes add up to ", total, " anchors but there are ", A);
}

/// Checks the focal loss's α (in [0, 1], or none) and γ (≥ 0, finite).
inline void check_focal_options(const char* fn, const std::optional<double>& alpha, double gamma) {
  TORCH_CHECK(!alpha || (*alpha >= 0 && *alpha <= 1), fn, ": alpha must lie in [0, 1], got ", alpha.value_or(0));
  TORCH_CHECK(gamma >= 0 && std::isfinite(gamma), fn, ": gamma must be >= 0, got ", gamma);
}

}  // namespace detail
}  // namespace crowdloss
