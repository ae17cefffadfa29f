#pragma once
/// \file
/// `lla_assign` as ATen ops, for any device: the reference path of the CPU kernel
/// (detail/lla_cpu.hpp), which CUDA tensors and other dtypes take.

#include <crowdloss/detail/assign_batch.hpp>
#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/detection_losses.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

namespace crowdloss {
namespace detail {

/// LLA's cost parameters: the values of `LLAAssignOptions`, as the ATen path and the CPU kernel take them.
struct LLACost {
  int64_t topk;
  double reg_cost, outside_penalty, inside_eps, focal_alpha, focal_gamma;
};

/// The focal classification cost of a one-hot target, without a …×G×A×K temporary: per anchor
/// the all-negative cost (…×A) and, per class, positive − negative (…×A×K).
inline std::pair<at::Tensor, at::Tensor> lla_class_costs(const at::Tensor& cls_logits, const LLACost& o) {
  const std::optional<double> alpha = o.focal_alpha;
  const auto negative = focal_elementwise(cls_logits, at::zeros({}, cls_logits.options()), alpha, o.focal_gamma);
  const auto positive = focal_elementwise(cls_logits, at::ones({}, cls_logits.options()), alpha, o.focal_gamma);
  return {negative.sum(-1), positive - negative};
}

/// `lla_assign` as ATen ops for B images at once (any device; the reference of the CPU kernel):
/// cls_logits B×A×K, box_ltrb B×A×4, points A×2, gt_boxes B×G×4, gt_classes B×G, of which
/// `valid` (B×G bool; undefined: all) are real. The B×G×A cost, each gt's `topk` lowest (ties to
/// the lower anchor), the lowest cost per anchor (ties to the lower gt). Returns B×A.
inline at::Tensor lla_assign_aten(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                  const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLACost& o,
                                  const at::Tensor& valid = {}) {
  const int64_t B = cls_logits.size(0), A = cls_logits.size(1), G = gt_boxes.size(1);
  const double inf = std::numeric_limits<double>::infinity();
  const auto [negative, difference] = lla_class_costs(cls_logits, o);
  const auto classes = gt_classes.clamp_min(0).unsqueeze(1).expand({B, A, G});
  const auto cls_cost = negative.unsqueeze(1) + difference.gather(2, classes).transpose(1, 2);  // B×G×A
  const auto targets = ltrb_distances(points, gt_boxes);                                        // B×G×A×4
  const auto reg = ltrb_iou_loss(box_ltrb.unsqueeze(1), targets, kIoU);
  const auto inside = targets.amin(-1) > o.inside_eps;
  // The penalty where outside, else 0 (a product with the mask would give inf·0 = NaN for an
  // infinite penalty).
  const auto penalty =
      at::where(inside, at::zeros({}, cls_cost.options()), at::full({}, o.outside_penalty, cls_cost.options()));
  auto cost = cls_cost + o.reg_cost * reg + penalty;
  if (valid.defined()) cost.masked_fill_(valid.logical_not().unsqueeze(-1), inf);
  const auto taken = k_extreme(cost, std::min(o.topk, A), /*largest=*/false).first;
  const auto [best, gt_index] = cost.masked_fill(taken.logical_not(), inf).min(1);
  return at::where(at::isinf(best), at::full({}, -1, gt_index.options()), gt_index);
}

}  // namespace detail
}  // namespace crowdloss
