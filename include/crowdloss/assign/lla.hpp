#pragma once
/// \file
/// LLA, loss-aware label assignment (Megvii-BaseDetection/LLA) for one image: each gt takes the
/// anchors where the detection loss of predicting it would be lowest.

#include <crowdloss/assign/poto.hpp>
#include <crowdloss/detail/lla_cpu.hpp>
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

/// The focal classification cost of a one-hot target, without a G×A×K temporary: per anchor
/// the all-negative cost (A) and, per class, positive − negative (A×K).
inline std::pair<at::Tensor, at::Tensor> lla_class_costs(const at::Tensor& cls_logits, const LLAOptions& o) {
  const std::optional<double> alpha = o.focal_alpha();
  const auto negative = focal_elementwise(cls_logits, at::zeros({}, cls_logits.options()), alpha, o.focal_gamma());
  const auto positive = focal_elementwise(cls_logits, at::ones({}, cls_logits.options()), alpha, o.focal_gamma());
  return {negative.sum(1), positive - negative};
}

/// `lla_assign` as ATen ops (any device; the reference of the CPU kernel): the G×A cost
/// matrix, each gt's `topk` lowest, the lowest cost per anchor.
inline at::Tensor lla_assign_aten(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                  const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLAOptions& o) {
  const auto [negative, difference] = lla_class_costs(cls_logits, o);
  const auto cls_cost = negative.unsqueeze(0) + difference.index_select(1, gt_classes.clamp_min(0)).t();
  const auto targets = ltrb_targets(points, gt_boxes);  // G×A×4
  const auto reg = ltrb_iou_loss(box_ltrb.unsqueeze(0), targets, kIoU);
  const auto inside = targets.amin(-1) > o.inside_eps();
  // The penalty where outside, else 0 (a product with the mask would give inf·0 = NaN for an
  // infinite penalty).
  const auto penalty =
      at::where(inside, at::zeros({}, cls_cost.options()), at::full({}, o.outside_penalty(), cls_cost.options()));
  const auto cost = cls_cost + o.reg_cost() * reg + penalty;
  const int64_t A = cost.size(1);
  const auto taken = std::get<1>(cost.topk(std::min(o.topk(), A), 1, /*largest=*/false));
  const auto candidate = at::zeros_like(cost, cost.options().dtype(at::kBool)).scatter_(1, taken, true);
  const auto min = cost.masked_fill(candidate.logical_not(), std::numeric_limits<double>::infinity()).min(0);
  const at::Tensor &best = std::get<0>(min), &gt_index = std::get<1>(min);
  return at::where(at::isinf(best), at::full({}, -1, gt_index.options()), gt_index);
}

/// `lla_assign` with the CPU kernel (detail/lla_cpu.hpp), float32 or float64 inputs.
inline at::Tensor lla_assign_cpu(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                 const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLAOptions& o) {
  const auto costs = lla_class_costs(cls_logits, o);
  const auto negative = costs.first.contiguous(), difference = costs.second.contiguous();
  const auto ltrb = box_ltrb.contiguous(), pts = points.contiguous(), boxes = gt_boxes.contiguous();
  const auto classes = gt_classes.clamp_min(0).contiguous();
  std::vector<std::vector<int64_t>> inside(static_cast<size_t>(gt_boxes.size(0)));
  if (o.inside_eps() >= 0) inside_pairs_cpu(pts, boxes, 0, inside);
  at::Tensor assigned;
  AT_DISPATCH_FLOATING_TYPES(cls_logits.scalar_type(), "lla_assign", [&] {
    const LLAInputs<scalar_t> in{negative.data_ptr<scalar_t>(),
                                 difference.data_ptr<scalar_t>(),
                                 ltrb.data_ptr<scalar_t>(),
                                 pts.data_ptr<scalar_t>(),
                                 boxes.data_ptr<scalar_t>(),
                                 classes.data_ptr<int64_t>(),
                                 cls_logits.size(0),
                                 cls_logits.size(1),
                                 gt_boxes.size(0),
                                 o.topk(),
                                 static_cast<scalar_t>(o.reg_cost()),
                                 static_cast<scalar_t>(o.outside_penalty()),
                                 static_cast<scalar_t>(o.inside_eps()),
                                 static_cast<scalar_t>(kIoUEps)};
    assigned = lla_assign_kernel(in, o.inside_eps() >= 0 ? &inside : nullptr);
  });
  return assigned;
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
/// lowest cost. 0 gts: all −1. On the CPU with float32 / float64 inputs of one dtype, a kernel
/// finds each gt's anchors without the G×A cost matrix (the anchors inside its box first), and
/// breaks ties the
/// documented way: among equal costs the lower anchor index enters a gt's top k, and the lower gt
/// index takes an anchor (elsewhere the ATen ops decide ties as their topk does).
///
/// Ignore regions: gts of class −1 take part in the matching (scored as class 0), so they
/// claim the anchors that would otherwise become false positives there. Callers drop those
/// anchors from every loss: with `assigned = lla_assign(...)`, an anchor with
/// `assigned >= 0 && gt_classes[assigned] == -1` is neither positive nor negative for the
/// classification loss and gets no regression or IoU-branch loss.
///
/// cls_logits: A×K; box_ltrb: A×4 predicted distances; points: A×2; gt_boxes: G×4 xyxy;
/// gt_classes: G int64 in [−1, K). Throws c10::Error naming `lla_assign` and the value for shapes
/// that disagree, a gt box with a NaN or infinite coordinate (naming its index), non-floating
/// inputs, classes outside [−1, K), mixed devices, topk < 1,
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
  const auto dtype = cls_logits.scalar_type();
  const bool kernel = cls_logits.is_cpu() && (dtype == at::kFloat || dtype == at::kDouble) &&
                      box_ltrb.scalar_type() == dtype && points.scalar_type() == dtype &&
                      gt_boxes.scalar_type() == dtype;
  return kernel ? detail::lla_assign_cpu(cls_logits, box_ltrb, points, gt_boxes, gt_classes, options)
                : detail::lla_assign_aten(cls_logits, box_ltrb, points, gt_boxes, gt_classes, options);
}

}  // namespace crowdloss
