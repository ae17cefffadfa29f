#pragma once
/// \file
/// The losses used with the dense-detection assignments: sigmoid focal loss and IoU losses on
/// ltrb distances (−log IoU, 1 − IoU, 1 − GIoU with cvpods' / fvcore's numerics; 1 − DIoU,
/// 1 − CIoU with torchvision's).

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/detection_losses.hpp>
#include <crowdloss/enum.hpp>
#include <crowdloss/reduction.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <limits>
#include <optional>
#include <variant>

namespace crowdloss {

/// Options for `crowdloss::sigmoid_focal_loss`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::SigmoidFocalLossOptions().alpha(0.25).gamma(2.0).reduction(torch::kSum);
/// ```
struct SigmoidFocalLossOptions {
  /// Weight α ∈ [0, 1] of the positives (1 − α for the negatives); `std::nullopt` disables the
  /// weighting (fvcore's alpha = −1).
  TORCH_ARG(std::optional<double>, alpha) = 0.25;
  /// Focusing parameter γ ≥ 0.
  TORCH_ARG(double, gamma) = 2.0;
  /// `torch::kNone` (default, elementwise, as fvcore/torchvision), `torch::kMean` or `torch::kSum`.
  TORCH_ARG(Reduction, reduction) = torch::kNone;
};

/// Deprecated: the name of `SigmoidFocalLossOptions` in crowdloss 0.1, kept through 0.2 and removed in 0.3.
using FocalLossOptions [[deprecated("crowdloss: use SigmoidFocalLossOptions")]] = SigmoidFocalLossOptions;

/// Options for `crowdloss::iou_loss`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum);
/// ```
struct IoULossOptions {
  /// `kIoU` (−log IoU, default), `kLinearIoU` (1 − IoU), `kGIoU` (1 − GIoU), `kDIoU` (1 − DIoU)
  /// or `kCIoU` (1 − CIoU).
  TORCH_ARG(IoULossType, loss_type) = kIoU;
  /// `torch::kNone` (default, as cvpods), `torch::kMean` (0 over no boxes, as torchvision) or
  /// `torch::kSum`.
  TORCH_ARG(Reduction, reduction) = torch::kNone;
};

/// Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), elementwise:
///
///   FL(x, t) = α_t · (1 − p_t)^γ · BCE(x, t),  p = σ(x),  p_t = p·t + (1 − p)(1 − t),
///   α_t = α·t + (1 − α)(1 − t)   (omitted when alpha is nullopt),
///
/// then reduced (`kNone` default, `kMean`, `kSum`). Equal to fvcore's / cvpods'
/// `sigmoid_focal_loss` and torchvision's `sigmoid_focal_loss`.
///
/// logits, targets: floating tensors of the same shape, dtype and device (targets in [0, 1],
/// usually one-hot). Differentiable in the logits. Throws c10::Error naming
/// `sigmoid_focal_loss` for mismatched shape/dtype/device, integer dtypes, alpha outside
/// [0, 1] or gamma < 0.
///
/// Example:
/// ```cpp
/// auto loss = crowdloss::sigmoid_focal_loss(cls_logits, onehot, crowdloss::SigmoidFocalLossOptions().reduction(torch::kSum))
///             / std::max<int64_t>(1, num_foreground);
/// ```
inline at::Tensor sigmoid_focal_loss(const at::Tensor& logits, const at::Tensor& targets,
                                     const SigmoidFocalLossOptions& options = {}) {
  detail::check_pair("sigmoid_focal_loss", logits, "logits", targets, "targets");
  detail::check_focal_options("sigmoid_focal_loss", options.alpha(), options.gamma());
  return detail::reduce(detail::focal_elementwise(logits, targets, options.alpha(), options.gamma()),
                        options.reduction());
}

/// IoU losses between predicted and target boxes given as ltrb distances (left, top, right,
/// bottom) around the same points. kIoU, kLinearIoU and kGIoU as cvpods'
/// `iou_loss(box_mode="ltrb")`:
///
///   IoU = |P ∩ T| / max(|P ∪ T|, ε),   kIoU: −log(max(IoU, ε)),   kLinearIoU: 1 − IoU,
///   kGIoU: 1 − (IoU − (|C| − |P ∪ T|) / max(|C|, ε)),   C the enclosing box,
///
/// ε = float32 machine epsilon, box sides clamped at 0 for the areas. kDIoU and kCIoU as
/// torchvision's `distance_box_iou_loss` and `complete_box_iou_loss` on the boxes (−l, −t, r, b):
///
///   IoU = |P ∩ T| / (|P ∪ T| + ε),   kDIoU: 1 − IoU + ρ² / (c² + ε),
///   kCIoU: kDIoU + α·v,   v = 4/π² · (atan(w_T / h_T) − atan(w_P / h_P))²,   α = v / (1 − IoU + v + ε),
///
/// ε = 1e-7, ρ the distance between the boxes' centres, c the enclosing box's diagonal, the
/// intersection 0 (without gradient) unless both of its sides are positive, α without gradient.
/// Reduced by `reduction` (`kNone` default, `kMean`, `kSum`); as in torchvision, the mean of no
/// boxes is 0 (with zero gradients), not NaN, for every type, so that a batch without foreground
/// does not turn a training loss into NaN.
///
/// pred_ltrb, target_ltrb: …×4 floating tensors of the same shape, dtype and device.
/// Differentiable. Throws c10::Error naming `iou_loss` for other shapes, mismatched
/// dtype/device or integer dtypes.
///
/// Example:
/// ```cpp
/// auto reg = crowdloss::iou_loss(pred_ltrb.index({fg}), target_ltrb.index({fg}),
///                                crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum));
/// auto ciou = crowdloss::iou_loss(pred_ltrb, target_ltrb,
///                                 crowdloss::IoULossOptions().loss_type(crowdloss::kCIoU).reduction(torch::kMean));
/// ```
inline at::Tensor iou_loss(const at::Tensor& pred_ltrb, const at::Tensor& target_ltrb,
                           const IoULossOptions& options = {}) {
  detail::check_pair("iou_loss", pred_ltrb, "pred_ltrb", target_ltrb, "target_ltrb");
  TORCH_CHECK(pred_ltrb.dim() >= 1 && pred_ltrb.size(-1) == 4,
              "iou_loss: expected ltrb tensors of shape (..., 4), got ", pred_ltrb.sizes());
  const auto loss = detail::ltrb_iou_loss(pred_ltrb, target_ltrb, options.loss_type());
  if (std::holds_alternative<torch::enumtype::kMean>(options.reduction()) && loss.numel() == 0) return loss.sum() * 0;
  return detail::reduce(loss, options.reduction());
}

}  // namespace crowdloss
