#pragma once
/// \file
/// LLA, loss-aware label assignment (Megvii-BaseDetection/LLA) for one image or a batch: each gt takes the
/// anchors where the detection loss of predicting it would be lowest.

#include <crowdloss/detail/assign_batch.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/lla_aten.hpp>
#include <crowdloss/detail/lla_cpu.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::lla_assign`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::LLAAssignOptions().topk(10).reg_cost(1.5);
/// ```
struct LLAAssignOptions {
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

/// Deprecated: the name of `LLAAssignOptions` in crowdloss 0.1, kept through 0.2 and removed in 0.3.
using LLAOptions [[deprecated("crowdloss: use LLAAssignOptions")]] = LLAAssignOptions;

namespace detail {

/// The values of `options` as the LLA paths take them.
inline LLACost lla_cost(const LLAAssignOptions& o) {
  return {o.topk(), o.reg_cost(), o.outside_penalty(), o.inside_eps(), o.focal_alpha(), o.focal_gamma()};
}

/// The one dispatch point of `lla_assign`: the CPU kernel for CPU float32 / float64 inputs of
/// one dtype, the ATen path otherwise.
inline at::Tensor lla_assign_dispatch(const at::Tensor& cls_logits, const at::Tensor& box_ltrb,
                                      const at::Tensor& points, const at::Tensor& gt_boxes,
                                      const at::Tensor& gt_classes, const LLACost& cost) {
  const auto dtype = cls_logits.scalar_type();
  const bool kernel = cls_logits.is_cpu() && (dtype == at::kFloat || dtype == at::kDouble) &&
                      box_ltrb.scalar_type() == dtype && points.scalar_type() == dtype &&
                      gt_boxes.scalar_type() == dtype;
  return kernel ? lla_assign_cpu(cls_logits, box_ltrb, points, gt_boxes, gt_classes, cost)
                : lla_assign_aten(cls_logits.unsqueeze(0), box_ltrb.unsqueeze(0), points, gt_boxes.unsqueeze(0),
                                  gt_classes.unsqueeze(0), cost)
                      .squeeze(0);
}

/// Checks LLA's options.
inline void check_lla_options(const char* fn, const LLAAssignOptions& options) {
  TORCH_CHECK(options.topk() >= 1, fn, ": topk must be >= 1, got ", options.topk());
  TORCH_CHECK(options.reg_cost() >= 0, fn, ": reg_cost must be >= 0, got ", options.reg_cost());
  TORCH_CHECK(options.outside_penalty() >= 0, fn, ": outside_penalty must be >= 0, got ", options.outside_penalty());
  check_focal_options(fn, options.focal_alpha(), options.focal_gamma());
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
/// finds each gt's anchors without the G×A cost matrix (the anchors inside its box first); other
/// devices and dtypes take ATen ops. Both break ties the same way: among equal costs the lower
/// anchor index enters a gt's top k, and the lower gt index takes an anchor.
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
/// ```cpp
/// auto assigned = crowdloss::lla_assign(cls_logits, box_ltrb, points, gt_boxes, gt_classes);
/// auto foreground = assigned >= 0;
/// ```
inline at::Tensor lla_assign(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                             const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                             const LLAAssignOptions& options = {}) {
  constexpr const char* fn = "lla_assign";
  at::NoGradGuard no_grad;
  detail::check_detection_inputs(fn, cls_logits, "cls_logits", box_ltrb, "box_ltrb", points, gt_boxes, gt_classes, -1);
  detail::check_lla_options(fn, options);
  const int64_t A = cls_logits.size(0), G = gt_boxes.size(0);
  if (G == 0 || A == 0) return at::full({A}, -1, cls_logits.options().dtype(at::kLong));
  return detail::lla_assign_dispatch(cls_logits, box_ltrb, points, gt_boxes, gt_classes, detail::lla_cost(options));
}

/// LLA for a batch of B images that share their anchor points: image b's result is
/// `lla_assign(cls_logits[b], box_ltrb[b], points, gt_boxes[b], gt_classes[b], options)`.
/// Returns B×A int64 on the inputs' device. CPU tensors take the one-image path per image (its
/// kernel); on other devices the whole batch is one pass of ATen ops over the B×G×A costs (G the
/// largest image's count, the others padded), with no per-image kernels and no host reads beyond
/// the input checks.
///
/// cls_logits: B×A×K; box_ltrb: B×A×4; points: A×2; gt_boxes: B tensors G_b×4 xyxy; gt_classes:
/// B int64 tensors of G_b classes in [−1, K). Errors as for the one-image form; a gt's error names
/// its image.
///
/// Example:
/// ```cpp
/// auto assigned = crowdloss::lla_assign_batch(cls_logits.unsqueeze(0), box_ltrb.unsqueeze(0), points,
///                                       {gt_boxes}, {gt_classes});  // 1×A
/// ```
inline at::Tensor lla_assign_batch(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                   const std::vector<at::Tensor>& gt_boxes, const std::vector<at::Tensor>& gt_classes,
                                   const LLAAssignOptions& options = {}) {
  constexpr const char* fn = "lla_assign_batch";
  at::NoGradGuard no_grad;
  detail::check_batched_detection_inputs(fn, cls_logits, "cls_logits", box_ltrb, "box_ltrb", points, gt_boxes,
                                         gt_classes, -1);
  detail::check_lla_options(fn, options);
  const int64_t B = cls_logits.size(0), A = cls_logits.size(1);
  if (cls_logits.is_cpu())
    return detail::stack_per_image(B, A, cls_logits.options(), [&](int64_t b) {
      const auto i = static_cast<size_t>(b);
      return lla_assign(cls_logits[b], box_ltrb[b], points, gt_boxes[i], gt_classes[i], options);
    });
  const auto gts = detail::pad_gt_batch(gt_boxes, &gt_classes, box_ltrb);
  if (gts.boxes.size(1) == 0 || A == 0) return at::full({B, A}, -1, cls_logits.options().dtype(at::kLong));
  return detail::lla_assign_aten(cls_logits, box_ltrb, points, gts.boxes, gts.classes, detail::lla_cost(options),
                                 gts.valid);
}

}  // namespace crowdloss
