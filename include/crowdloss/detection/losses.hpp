#pragma once
/// \file
/// The losses used with the dense-detection assignments: sigmoid focal loss and IoU losses on
/// ltrb distances (−log IoU, 1 − IoU, 1 − GIoU), with cvpods' / fvcore's numerics.

#include <crowdloss/detail/checks.hpp>
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
///   auto opts = crowdloss::FocalLossOptions().alpha(0.25).gamma(2.0).reduction(torch::kSum);
struct FocalLossOptions {
  /// Weight α ∈ [0, 1] of the positives (1 − α for the negatives); `std::nullopt` disables the
  /// weighting (fvcore's alpha = −1).
  TORCH_ARG(std::optional<double>, alpha) = 0.25;
  /// Focusing parameter γ ≥ 0.
  TORCH_ARG(double, gamma) = 2.0;
  /// `torch::kNone` (default, elementwise, as fvcore/torchvision), `torch::kMean` or `torch::kSum`.
  TORCH_ARG(Reduction, reduction) = torch::kNone;
};

/// `crowdloss::kIoU`, `crowdloss::kLinearIoU` or `crowdloss::kGIoU`.
using IoULossType = std::variant<enumtype::kIoU, enumtype::kLinearIoU, enumtype::kGIoU>;

/// Options for `crowdloss::iou_loss`.
///
/// Example:
///   auto opts = crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum);
struct IoULossOptions {
  /// `kIoU` (−log IoU, default), `kLinearIoU` (1 − IoU) or `kGIoU` (1 − GIoU).
  TORCH_ARG(IoULossType, loss_type) = kIoU;
  /// `torch::kNone` (default, as cvpods), `torch::kMean` or `torch::kSum`.
  TORCH_ARG(Reduction, reduction) = torch::kNone;
};

namespace detail {

/// float32 machine epsilon, the clamp cvpods uses in its IoU losses for every dtype.
inline constexpr double kIoUEps = std::numeric_limits<float>::epsilon();

inline void check_focal_options(const char* fn, const std::optional<double>& alpha, double gamma) {
  TORCH_CHECK(!alpha || (*alpha >= 0 && *alpha <= 1), fn, ": alpha must lie in [0, 1], got ", alpha.value_or(0));
  TORCH_CHECK(gamma >= 0 && std::isfinite(gamma), fn, ": gamma must be >= 0, got ", gamma);
}

/// Elementwise sigmoid focal loss (fvcore's `sigmoid_focal_loss`, unreduced); targets may be
/// any tensor broadcastable to the logits.
inline at::Tensor focal_elementwise(const at::Tensor& logits, const at::Tensor& targets,
                                    const std::optional<double>& alpha, double gamma) {
  const auto p = logits.sigmoid();
  const auto ce = at::binary_cross_entropy_with_logits(logits, targets.expand_as(logits), {}, {}, at::Reduction::None);
  const auto p_t = p * targets + (1 - p) * (1 - targets);
  auto loss = ce * (1 - p_t).pow(gamma);
  if (alpha) loss = (*alpha * targets + (1 - *alpha) * (1 - targets)) * loss;
  return loss;
}

/// IoU (and, for kGIoU, GIoU) of two sets of ltrb distances around the same points, broadcast
/// against each other, as cvpods' `iou_loss(box_mode="ltrb")` computes them; returns the loss.
inline at::Tensor ltrb_iou_loss(const at::Tensor& pred, const at::Tensor& target, const IoULossType& type) {
  const auto l = [](const at::Tensor& t, int64_t i) { return t.select(-1, i); };
  // As boxes around the origin: (−l, −t, r, b).
  const auto pred_area = (l(pred, 2) + l(pred, 0)).clamp_min(0) * (l(pred, 3) + l(pred, 1)).clamp_min(0);
  const auto target_area = (l(target, 2) + l(target, 0)).clamp_min(0) * (l(target, 3) + l(target, 1)).clamp_min(0);
  const auto w = (at::min(l(pred, 2), l(target, 2)) + at::min(l(pred, 0), l(target, 0))).clamp_min(0);
  const auto h = (at::min(l(pred, 3), l(target, 3)) + at::min(l(pred, 1), l(target, 1))).clamp_min(0);
  const auto inter = w * h;
  const auto uni = target_area + pred_area - inter;
  const auto iou = inter / uni.clamp_min(kIoUEps);
  switch (type.index()) {
    case 0:
      return -iou.clamp_min(kIoUEps).log();
    case 1:
      return 1 - iou;
    default: {
      const auto gw = at::max(l(pred, 2), l(target, 2)) + at::max(l(pred, 0), l(target, 0));
      const auto gh = at::max(l(pred, 3), l(target, 3)) + at::max(l(pred, 1), l(target, 1));
      const auto enclosing = gw * gh;
      return 1 - (iou - (enclosing - uni) / enclosing.clamp_min(kIoUEps));
    }
  }
}

}  // namespace detail

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
///   auto loss = crowdloss::sigmoid_focal_loss(cls_logits, onehot, crowdloss::FocalLossOptions().reduction(torch::kSum))
///               / std::max<int64_t>(1, num_foreground);
inline at::Tensor sigmoid_focal_loss(const at::Tensor& logits, const at::Tensor& targets,
                                     const FocalLossOptions& options = {}) {
  detail::check_pair("sigmoid_focal_loss", logits, "logits", targets, "targets");
  detail::check_focal_options("sigmoid_focal_loss", options.alpha(), options.gamma());
  return detail::reduce(detail::focal_elementwise(logits, targets, options.alpha(), options.gamma()),
                        options.reduction());
}

/// IoU losses between predicted and target boxes given as ltrb distances (left, top, right,
/// bottom) around the same points, as cvpods' `iou_loss(box_mode="ltrb")`:
///
///   IoU = |P ∩ T| / max(|P ∪ T|, ε),   kIoU: −log(max(IoU, ε)),   kLinearIoU: 1 − IoU,
///   kGIoU: 1 − (IoU − (|C| − |P ∪ T|) / max(|C|, ε)),   C the enclosing box,
///
/// ε = float32 machine epsilon; box sides are clamped at 0 for the areas. Reduced by
/// `reduction` (`kNone` default, `kMean`, `kSum`).
///
/// pred_ltrb, target_ltrb: …×4 floating tensors of the same shape, dtype and device.
/// Differentiable. Throws c10::Error naming `iou_loss` for other shapes, mismatched
/// dtype/device or integer dtypes.
///
/// Example:
///   auto reg = crowdloss::iou_loss(pred_ltrb.index({fg}), target_ltrb.index({fg}),
///                                  crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum));
inline at::Tensor iou_loss(const at::Tensor& pred_ltrb, const at::Tensor& target_ltrb,
                           const IoULossOptions& options = {}) {
  detail::check_pair("iou_loss", pred_ltrb, "pred_ltrb", target_ltrb, "target_ltrb");
  TORCH_CHECK(pred_ltrb.dim() >= 1 && pred_ltrb.size(-1) == 4,
              "iou_loss: expected ltrb tensors of shape (..., 4), got ", pred_ltrb.sizes());
  return detail::reduce(detail::ltrb_iou_loss(pred_ltrb, target_ltrb, options.loss_type()), options.reduction());
}

}  // namespace crowdloss
