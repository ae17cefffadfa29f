#pragma once
/// \file
/// The elementwise detection losses shared by the loss functions and LLA's cost: fvcore's sigmoid
/// focal loss, cvpods' IoU losses of ltrb distances and torchvision's DIoU / CIoU losses.

#include <crowdloss/enum.hpp>

#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <variant>

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

/// torchvision's eps in `distance_box_iou_loss` and `complete_box_iou_loss`.
inline constexpr double kDistanceIoUEps = 1e-7;

/// 1 − DIoU (kDIoU) or 1 − CIoU (kCIoU) of ltrb distances as the boxes (−l, −t, r, b), with
/// torchvision 0.14's `distance_box_iou_loss` / `complete_box_iou_loss` arithmetic: the
/// intersection only where both of its sides are positive (no gradient elsewhere), eps 1e-7 added
/// to the union and to the enclosing box's squared diagonal, and CIoU's trade-off α without a
/// gradient.
inline at::Tensor ltrb_distance_iou_loss(const at::Tensor& pred, const at::Tensor& target, bool complete) {
  const auto l = [](const at::Tensor& t, int64_t i) { return t.select(-1, i); };
  const auto x1 = -l(pred, 0), y1 = -l(pred, 1), x2 = l(pred, 2), y2 = l(pred, 3);
  const auto x1g = -l(target, 0), y1g = -l(target, 1), x2g = l(target, 2), y2g = l(target, 3);
  const auto xk1 = at::max(x1, x1g), yk1 = at::max(y1, y1g), xk2 = at::min(x2, x2g), yk2 = at::min(y2, y2g);
  const auto inter = at::where((yk2 > yk1) & (xk2 > xk1), (xk2 - xk1) * (yk2 - yk1), at::zeros_like(xk1));
  const auto uni = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter;
  const auto iou = inter / (uni + kDistanceIoUEps);
  const auto xc1 = at::min(x1, x1g), yc1 = at::min(y1, y1g), xc2 = at::max(x2, x2g), yc2 = at::max(y2, y2g);
  const auto diagonal = (xc2 - xc1).pow(2) + (yc2 - yc1).pow(2) + kDistanceIoUEps;
  const auto distance = ((x2 + x1) / 2 - (x2g + x1g) / 2).pow(2) + ((y2 + y1) / 2 - (y2g + y1g) / 2).pow(2);
  const auto diou = 1 - iou + distance / diagonal;
  if (!complete) return diou;
  constexpr double pi = 3.14159265358979323846;
  constexpr double four_over_pi2 = 4 / (pi * pi);  // torchvision's 4 / (math.pi ** 2)
  const auto v = four_over_pi2 * (at::atan((x2g - x1g) / (y2g - y1g)) - at::atan((x2 - x1) / (y2 - y1))).pow(2);
  const auto alpha = (v / (1 - iou + v + kDistanceIoUEps)).detach();
  return diou + alpha * v;
}

/// IoU (and, for kGIoU, GIoU) of two sets of ltrb distances around the same points, broadcast
/// against each other, as cvpods' `iou_loss(box_mode="ltrb")` computes them, or DIoU / CIoU as
/// torchvision computes them (ltrb_distance_iou_loss); returns the loss.
inline at::Tensor ltrb_iou_loss(const at::Tensor& pred, const at::Tensor& target, const IoULossType& type) {
  if (std::holds_alternative<enumtype::kDIoU>(type) || std::holds_alternative<enumtype::kCIoU>(type))
    return ltrb_distance_iou_loss(pred, target, std::holds_alternative<enumtype::kCIoU>(type));
  const auto l = [](const at::Tensor& t, int64_t i) { return t.select(-1, i); };
  // As boxes around the origin: (−l, −t, r, b).
  const auto pred_area = (l(pred, 2) + l(pred, 0)).clamp_min(0) * (l(pred, 3) + l(pred, 1)).clamp_min(0);
  const auto target_area = (l(target, 2) + l(target, 0)).clamp_min(0) * (l(target, 3) + l(target, 1)).clamp_min(0);
  const auto w = (at::min(l(pred, 2), l(target, 2)) + at::min(l(pred, 0), l(target, 0))).clamp_min(0);
  const auto h = (at::min(l(pred, 3), l(target, 3)) + at::min(l(pred, 1), l(target, 1))).clamp_min(0);
  const auto inter = w * h;
  const auto uni = target_area + pred_area - inter;
  const auto iou = inter / uni.clamp_min(kIoUEps);
  if (std::holds_alternative<enumtype::kIoU>(type)) return -iou.clamp_min(kIoUEps).log();
  if (std::holds_alternative<enumtype::kLinearIoU>(type)) return 1 - iou;
  const auto gw = at::max(l(pred, 2), l(target, 2)) + at::max(l(pred, 0), l(target, 0));
  const auto gh = at::max(l(pred, 3), l(target, 3)) + at::max(l(pred, 1), l(target, 1));
  const auto enclosing = gw * gh;
  return 1 - (iou - (enclosing - uni) / enclosing.clamp_min(kIoUEps));
}

}  // namespace detail
}  // namespace crowdloss
