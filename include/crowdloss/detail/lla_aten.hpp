#pragma once
/// \file
/// `lla_assign` as ATen ops, for any device: the reference path of the CPU kernel
/// (detail/lla_cpu.hpp), which CUDA tensors and other dtypes take.

#include <crowdloss/detail/detection_losses.hpp>
#include <crowdloss/detection/boxes.hpp>

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

/// The focal classification cost of a one-hot target, without a G×A×K temporary: per anchor
/// the all-negative cost (A) and, per class, positive − negative (A×K).
inline std::pair<at::Tensor, at::Tensor> lla_class_costs(const at::Tensor& cls_logits, const LLACost& o) {
  const std::optional<double> alpha = o.focal_alpha;
  const auto negative = focal_elementwise(cls_logits, at::zeros({}, cls_logits.options()), alpha, o.focal_gamma);
  const auto positive = focal_elementwise(cls_logits, at::ones({}, cls_logits.options()), alpha, o.focal_gamma);
  return {negative.sum(1), positive - negative};
}

/// `lla_assign` as ATen ops (any device; the reference of the CPU kernel): the G×A cost
/// matrix, each gt's `topk` lowest, the lowest cost per anchor.
inline at::Tensor lla_assign_aten(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                  const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLACost& o) {
  const auto [negative, difference] = lla_class_costs(cls_logits, o);
  const auto cls_cost = negative.unsqueeze(0) + difference.index_select(1, gt_classes.clamp_min(0)).t();
  const auto targets = ltrb_targets(points, gt_boxes);  // G×A×4
  const auto reg = ltrb_iou_loss(box_ltrb.unsqueeze(0), targets, kIoU);
  const auto inside = targets.amin(-1) > o.inside_eps;
  // The penalty where outside, else 0 (a product with the mask would give inf·0 = NaN for an
  // infinite penalty).
  const auto penalty =
      at::where(inside, at::zeros({}, cls_cost.options()), at::full({}, o.outside_penalty, cls_cost.options()));
  const auto cost = cls_cost + o.reg_cost * reg + penalty;
  const int64_t A = cost.size(1);
  const auto taken = std::get<1>(cost.topk(std::min(o.topk, A), 1, /*largest=*/false));
  const auto candidate = at::zeros_like(cost, cost.options().dtype(at::kBool)).scatter_(1, taken, true);
  const auto min = cost.masked_fill(candidate.logical_not(), std::numeric_limits<double>::infinity()).min(0);
  const at::Tensor &best = std::get<0>(min), &gt_index = std::get<1>(min);
  return at::where(at::isinf(best), at::full({}, -1, gt_index.options()), gt_index);
}

}  // namespace detail
}  // namespace crowdloss
