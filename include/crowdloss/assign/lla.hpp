#pragma once
/// \file
/// LLA, loss-aware label assignment (Megvii-BaseDetection/LLA) for one image: each gt takes the
/// anchors where the detection loss of predicting it would be lowest.

#include <crowdloss/assign/poto.hpp>
#include <crowdloss/detection/boxes.hpp>
#include <crowdloss/detection/losses.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace crowdloss {

/// Options for `crowdloss::lla_assign`.
///
/// Example:
///   auto opts = crowdloss::LLAOptions().topk(10).reg_cost(1.5);
struct LLAOptions {
  /// Anchors each gt takes (capped at the anchor count), ≥ 1.
  TORCH_ARG(int64_t, topk) = 10;
  /// Weight (≥ 0) of the −log IoU term of the cost.
  TORCH_ARG(double, reg_cost) = 1.5;
  /// Cost (≥ 0) added where the anchor point is not inside the gt box by more than `inside_eps`.
  TORCH_ARG(double, outside_penalty) = 1000.0;
  /// Margin in pixels: "inside" means every ltrb distance to the gt box exceeds it.
  TORCH_ARG(double, inside_eps) = 0.01;
  /// α of the focal classification cost, in [0, 1].
  TORCH_ARG(double, focal_alpha) = 0.25;
  /// γ (≥ 0) of the focal classification cost.
  TORCH_ARG(double, focal_gamma) = 2.0;
};

namespace detail {

/// LLA's G×A cost matrix (see `lla_assign`), computed without a G×A×K temporary: the focal cost
/// of a one-hot target is the all-negative cost plus, at the gt's class, positive − negative.
inline at::Tensor lla_cost(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                           const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLAOptions& o) {
  const std::optional<double> alpha = o.focal_alpha();
  const auto negative = focal_elementwise(cls_logits, at::zeros({}, cls_logits.options()), alpha, o.focal_gamma());
  const auto positive = focal_elementwise(cls_logits, at::ones({}, cls_logits.options()), alpha, o.focal_gamma());
  const auto cls_cost = negative.sum(1).unsqueeze(0) + (positive - negative).index_select(1, gt_classes.clamp_min(0)).t();
  const auto targets = ltrb_targets(points, gt_boxes);  // G×A×4
  const auto reg = ltrb_iou_loss(box_ltrb.unsqueeze(0), targets, kIoU);
  const auto outside = (targets.amin(-1) > o.inside_eps()).logical_not();
  return cls_cost + o.reg_cost() * reg + o.outside_penalty() * outside.to(cls_cost.scalar_type());
}

}  // namespace detail

/// LLA (Ge et al., "LLA: Loss-aware Label Assignment for Dense Pedestrian Detection", 2021)
/// for one image. Returns for each anchor the index of its gt (A int64, −1 = background, on
/// the inputs' device).
///
/// cost[g, a] = Σ_k FL(cls_logits[a, k], onehot(max(class_g, 0))[k])
///            + reg_cost · (−log(max(IoU(box_ltrb[a], target_ltrb[g, a]), ε)))
///            + outside_penalty · [anchor a not inside gt g by more than inside_eps],
///
/// FL the sigmoid focal loss (`focal_alpha`, `focal_gamma`), the IoU that of two ltrb boxes
/// around the same point (`iou_loss` with kIoU), ε = float32 epsilon. Each gt takes its `topk`
/// lowest-cost anchors over all levels; an anchor taken by several gts goes to the one with the
/// lowest cost. 0 gts: all −1.
///
/// Ignore regions: gts of class −1 take part in the matching (scored as class 0), so they
/// claim the anchors that would otherwise become false positives there. Callers drop those
/// anchors from every loss: with `assigned = lla_assign(...)`, an anchor with
/// `assigned >= 0 && gt_classes[assigned] == -1` is neither positive nor negative for the
/// classification loss and gets no regression or IoU-branch loss.
///
/// cls_logits: A×K; box_ltrb: A×4 predicted distances; points: A×2; gt_boxes: G×4 xyxy;
/// gt_classes: G int64 in [−1, K). Throws c10::Error naming `lla_assign` and the value for shapes
/// that disagree, non-floating inputs, classes outside [−1, K), mixed devices, topk < 1,
/// negative reg_cost / outside_penalty / focal_gamma, or focal_alpha outside [0, 1].
///
/// Example:
///   auto assigned = crowdloss::lla_assign(cls_logits, box_ltrb, points, gt_boxes, gt_classes);
///   auto foreground = assigned >= 0;
inline at::Tensor lla_assign(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                             const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLAOptions& options = {}) {
  constexpr const char* fn = "lla_assign";
  at::NoGradGuard no_grad;
  detail::check_detection_inputs(fn, cls_logits, "cls_logits", box_ltrb, "box_ltrb", points, gt_boxes, gt_classes, -1);
  TORCH_CHECK(options.topk() >= 1, fn, ": topk must be >= 1, got ", options.topk());
  TORCH_CHECK(options.reg_cost() >= 0, fn, ": reg_cost must be >= 0, got ", options.reg_cost());
  TORCH_CHECK(options.outside_penalty() >= 0, fn, ": outside_penalty must be >= 0, got ", options.outside_penalty());
  detail::check_focal_options(fn, options.focal_alpha(), options.focal_gamma());
  const int64_t A = cls_logits.size(0), G = gt_boxes.size(0);
  if (G == 0 || A == 0) return at::full({A}, -1, cls_logits.options().dtype(at::kLong));
  const auto cost = detail::lla_cost(cls_logits, box_ltrb, points, gt_boxes, gt_classes, options);
  const auto taken = std::get<1>(cost.topk(std::min(options.topk(), A), 1, /*largest=*/false));
  const auto candidate = at::zeros_like(cost, cost.options().dtype(at::kBool)).scatter_(1, taken, true);
  const auto [best, gt_index] = cost.masked_fill(candidate.logical_not(), std::numeric_limits<double>::infinity()).min(0);
  return at::where(at::isinf(best), at::full({}, -1, gt_index.options()), gt_index);
}

}  // namespace crowdloss
