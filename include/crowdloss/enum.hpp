#pragma once
/// \file
/// crowdloss's own option tags, in the style of torch's `torch::kMean`: an empty struct type in
/// `crowdloss::enumtype` and a constant of it in `crowdloss`.

namespace crowdloss {
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
}  // namespace enumtype

inline constexpr enumtype::kHungarian kHungarian{};
inline constexpr enumtype::kArgmax kArgmax{};
inline constexpr enumtype::kIoU kIoU{};
inline constexpr enumtype::kLinearIoU kLinearIoU{};
inline constexpr enumtype::kGIoU kGIoU{};

}  // namespace crowdloss
