#pragma once
/// \file
/// The elementwise detection losses shared by the loss functions and LLA's cost: fvcore's sigmoid
/// focal loss and cvpods' IoU losses of ltrb distances.

#include <crowdloss/enum.hpp>

#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <optional>

namespace crowdloss {
namespace detail {

/// float32 machine epsilon, the clamp cvpods uses in its IoU losses for every dtype.
inline constexpr double kIoUEps = std::numeric_limits<float>::epsilon();

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
}  // namespace crowdloss
