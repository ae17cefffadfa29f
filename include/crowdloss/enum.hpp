#pragma once
/// \file
/// crowdloss's own option tags, in the style of torch's `torch::kMean`: an empty struct type in
/// `crowdloss::enumtype` and a constant of it in `crowdloss`, and the variants of them that
/// options hold.

#include <variant>

namespace crowdloss {
/// The tag types behind crowdloss's option constants (`crowdloss::kHungarian`, …). Options hold
/// them in a `std::variant` (`POTOMatcher`, `IoULossType`); pass the constants, not the types.
namespace enumtype {
/// POTO matcher: one-to-one by `linear_sum_assignment` (maximize).
struct kHungarian {};
/// POTO matcher: each gt takes its best anchor independently.
struct kArgmax {};
/// IoU loss: −log(IoU).
struct kIoU {};
/// IoU loss: 1 − IoU.
struct kLinearIoU {};
/// IoU loss: 1 − GIoU.
struct kGIoU {};
/// IoU loss: 1 − DIoU (torchvision's `distance_box_iou_loss`).
struct kDIoU {};
/// IoU loss: 1 − CIoU (torchvision's `complete_box_iou_loss`).
struct kCIoU {};
}  // namespace enumtype

/// POTO matcher (default): one-to-one by `linear_sum_assignment` (maximize), e.g.
/// `POTOAssignOptions().matcher(crowdloss::kHungarian)`.
inline constexpr enumtype::kHungarian kHungarian{};
/// POTO matcher: each gt takes its best anchor independently (not one-to-one), e.g.
/// `POTOAssignOptions().matcher(crowdloss::kArgmax)`.
inline constexpr enumtype::kArgmax kArgmax{};
/// IoU loss type (default): −log(IoU), e.g. `IoULossOptions().loss_type(crowdloss::kIoU)`.
inline constexpr enumtype::kIoU kIoU{};
/// IoU loss type: 1 − IoU, e.g. `IoULossOptions().loss_type(crowdloss::kLinearIoU)`.
inline constexpr enumtype::kLinearIoU kLinearIoU{};
/// IoU loss type: 1 − GIoU, e.g. `IoULossOptions().loss_type(crowdloss::kGIoU)`.
inline constexpr enumtype::kGIoU kGIoU{};
/// IoU loss type: 1 − DIoU, e.g. `IoULossOptions().loss_type(crowdloss::kDIoU)`.
inline constexpr enumtype::kDIoU kDIoU{};
/// IoU loss type: 1 − CIoU, e.g. `IoULossOptions().loss_type(crowdloss::kCIoU)`.
inline constexpr enumtype::kCIoU kCIoU{};

/// `crowdloss::kHungarian` or `crowdloss::kArgmax` (`POTOAssignOptions::matcher`).
using POTOMatcher = std::variant<enumtype::kHungarian, enumtype::kArgmax>;

/// `crowdloss::kIoU`, `crowdloss::kLinearIoU`, `crowdloss::kGIoU`, `crowdloss::kDIoU` or
/// `crowdloss::kCIoU` (`IoULossOptions::loss_type`).
using IoULossType =
    std::variant<enumtype::kIoU, enumtype::kLinearIoU, enumtype::kGIoU, enumtype::kDIoU, enumtype::kCIoU>;

}  // namespace crowdloss
