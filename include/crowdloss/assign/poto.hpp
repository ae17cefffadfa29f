#pragma once
/// \file
/// DeFCN's prediction-aware one-to-one assignment (POTO) and its auxiliary one-to-many
/// assignment, for one image at a time. Quality, priors and thresholds are computed with ATen on
/// the inputs' device; only the Hungarian solve runs on the CPU.

#include <crowdloss/assign/linear_sum_assignment.hpp>
#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/poto_matching.hpp>
#include <crowdloss/detail/spatial_prior.hpp>
#include <crowdloss/detection/boxes.hpp>
#include <crowdloss/enum.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <variant>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::poto_assign` and `crowdloss::poto_quality`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::POTOAssignOptions().center_sampling_radius(1.5).strides({8, 16, 32, 64, 128})
///                 .level_sizes({10000, 2500, 625, 169, 49});
/// ```
struct POTOAssignOptions {
  /// α in quality = prob^(1−α)·IoU^α, in [0, 1].
  TORCH_ARG(double, alpha) = 0.8;
  /// 0: the anchor point must lie strictly inside the gt box. r > 0: strictly inside the box ∩
  /// the square of half-side r·stride around the box centre (needs `strides`, `level_sizes`).
  TORCH_ARG(double, center_sampling_radius) = 0.0;
  /// FPN stride of each level, for centre sampling.
  TORCH_ARG(std::vector<double>, strides) = {};
  /// Anchors per level (in the order of the anchors), for centre sampling.
  TORCH_ARG(std::vector<int64_t>, level_sizes) = {};
  /// `crowdloss::kHungarian` (default) or `crowdloss::kArgmax`.
  TORCH_ARG(POTOMatcher, matcher) = kHungarian;
};

/// Deprecated: the name of `POTOAssignOptions` in crowdloss 0.1, kept through 0.2 and removed in 0.3.
using POTOOptions [[deprecated("crowdloss: use POTOAssignOptions")]] = POTOAssignOptions;

/// Options for `crowdloss::poto_aux_assign`.
struct POTOAuxAssignOptions {
  /// α of the quality, as in POTO, in [0, 1].
  TORCH_ARG(double, alpha) = 0.8;
  /// Candidates per gt and level (capped at the level's size), ≥ 1.
  TORCH_ARG(int64_t, topk) = 9;
  /// Anchors per level, in the order of the anchors (required).
  TORCH_ARG(std::vector<int64_t>, level_sizes) = {};
};

/// Deprecated: the name of `POTOAuxAssignOptions` in crowdloss 0.1, kept through 0.2 and removed in 0.3.
using AuxAssignOptions [[deprecated("crowdloss: use POTOAuxAssignOptions")]] = POTOAuxAssignOptions;

namespace detail {

/// The quality of every (gt, anchor): G×A, prob = cls_prob[a, class_g].
inline at::Tensor raw_quality(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& gt_boxes,
                              const at::Tensor& gt_classes, double alpha) {
  return quality_of(cls_prob.index_select(1, gt_classes).t(), box_iou(gt_boxes, pred_boxes), alpha);
}

/// POTO's prior pairs and their quality; see `crowdloss::poto_quality`. `fn` names the caller in
/// errors.
inline POTOPairs poto_pairs(const char* fn, const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                            const at::Tensor& points, const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                            const POTOAssignOptions& options) {
  check_detection_inputs(fn, cls_prob, "cls_prob", pred_boxes, "pred_boxes", points, gt_boxes, gt_classes, 0);
  check_alpha(fn, options.alpha());
  // The quality is computed only inside the prior (the pairs are few), from the pairs'
  // probabilities and aligned boxes.
  const auto pairs =
      prior_pairs(fn, points, gt_boxes, options.center_sampling_radius(), options.strides(), options.level_sizes());
  const auto g = pairs.select(1, 0), a = pairs.select(1, 1);
  const auto prob = cls_prob.index({a, gt_classes.index_select(0, g)});
  const auto [inter, uni] = broadcast_intersection_union(gt_boxes.index_select(0, g), pred_boxes.index_select(0, a));
  return {g, a, quality_of(prob, iou_from(inter, uni), options.alpha())};
}

}  // namespace detail

/// POTO's masked quality matrix (G×A): quality[g, a] = cls_prob[a, class_g]^(1−α) ·
/// IoU(gt_g, pred_a)^α inside the spatial prior of gt g (see `POTOAssignOptions`), −1 outside it. This
/// is the matrix `poto_assign` matches on; it is exposed for inspection and logging.
///
/// Shapes, devices and errors as for `poto_assign`.
///
/// Example:
/// ```cpp
/// auto q = crowdloss::poto_quality(cls_prob, pred_boxes, points, gt_boxes, gt_classes);
/// ```
inline at::Tensor poto_quality(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                               const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                               const POTOAssignOptions& options = {}) {
  const auto pairs = detail::poto_pairs("poto_quality", cls_prob, pred_boxes, points, gt_boxes, gt_classes, options);
  return detail::quality_matrix(pairs, gt_boxes.size(0), cls_prob.size(0));
}

/// POTO (DeFCN, "End-to-End Object Detection with Fully Convolutional Network", CVPR 2021):
/// prediction-aware one-to-one label assignment for one image. Returns, for each gt, the index
/// of the anchor it is matched to (G int64, on the inputs' device).
///
/// - cls_prob: A×K class probabilities (for 3DMF pass sigmoid(cls)·sigmoid(filter));
///   pred_boxes: A×4 xyxy predicted boxes; points: A×2 anchor points; gt_boxes: G×4 xyxy;
///   gt_classes: G int64 in [0, K). One floating dtype family, one device.
/// - The quality matrix is `poto_quality` (−1 outside each gt's spatial prior).
/// - `kHungarian` (default): `linear_sum_assignment(quality, maximize = true)`, SciPy-exact, so a
///   gt with no anchor in its prior still gets one, as in DeFCN (and, with more gts than anchors,
///   the unmatched gts get −1). Solved on the CPU from the prior's pairs alone (the LSA's sparse
///   search on the matrix's rows), without building the G×A matrix. `kArgmax`: each gt independently takes its
///   best-quality anchor (two gts may share one); a gt with no anchor in its prior gets −1.
/// - 0 gts: an empty result.
///
/// Throws c10::Error naming `poto_assign` and the value for: shapes that disagree (A, G, 4, 2),
/// a gt box with a NaN or infinite coordinate (naming its index, as every assigner does),
/// non-int64 classes or classes outside [0, K), non-floating tensors, mixed devices, alpha
/// outside [0, 1], a negative radius, and — with centre sampling — missing or inconsistent
/// `strides` / `level_sizes`.
///
/// Example:
/// ```cpp
/// auto pred_boxes = crowdloss::ltrb_to_boxes(points, box_ltrb);
/// auto matched = crowdloss::poto_assign(cls_logits.sigmoid(), pred_boxes, points, gt_boxes, gt_classes);
/// ```
inline at::Tensor poto_assign(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                              const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                              const POTOAssignOptions& options = {}) {
  at::NoGradGuard no_grad;
  const auto pairs = detail::poto_pairs("poto_assign", cls_prob, pred_boxes, points, gt_boxes, gt_classes, options);
  const int64_t G = gt_boxes.size(0), A = cls_prob.size(0);
  const bool argmax = std::holds_alternative<enumtype::kArgmax>(options.matcher());
  if (!argmax && G <= A) {
    const auto anchors = detail::poto_sparse_matching(pairs, G, A);
    auto matched = at::empty({G}, at::kLong);
    std::copy(anchors.begin(), anchors.end(), matched.data_ptr<int64_t>());
    return matched.to(cls_prob.device());
  }
  const auto quality = detail::quality_matrix(pairs, G, A);
  if (argmax) {
    const auto [best, index] = quality.max(1);
    return at::where(best < 0, at::full({}, -1, index.options()), index);
  }
  // (in double, which holds every floating dtype's values exactly, as poto_sparse_matching reads them)
  const auto [gt_index, anchor_index] = linear_sum_assignment(quality.to(at::kDouble), /*maximize=*/true);
  auto matched = at::full({G}, -1, at::kLong);
  matched.index_put_({gt_index}, anchor_index);
  return matched.to(quality.device());
}

/// DeFCN's auxiliary one-to-many assignment (the "aux" loss beside POTO) for one image. Returns
/// for each anchor the index of its gt (A int64, −1 = background, on the inputs' device).
///
/// With quality q[g, a] = cls_prob[a, class_g]^(1−α) · IoU(gt_g, pred_a)^α (no prior applied
/// yet): each gt's candidates are the `topk` highest-quality anchors of every level (capped at
/// the level's size); its threshold is the mean plus the sample standard deviation of its
/// candidates' qualities; its positives are candidates with q ≥ threshold whose anchor point lies
/// strictly inside the gt box. An anchor that is a positive of several gts goes to the one with
/// the highest quality. With a single candidate the standard deviation is undefined (NaN) and
/// that gt has no positives. 0 gts: all −1 (DeFCN itself fails there).
///
/// Inputs as for `poto_assign`; `level_sizes` is required. Throws c10::Error naming
/// `poto_aux_assign` for the errors `poto_assign` reports and for topk < 1 or level sizes that do
/// not add up to A.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::POTOAuxAssignOptions().level_sizes({10000, 2500, 625, 169, 49});
/// auto gt_of_anchor = crowdloss::poto_aux_assign(cls_logits.sigmoid(), pred_boxes, points, gt_boxes,
///                                                gt_classes, opts);
/// ```
inline at::Tensor poto_aux_assign(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                                  const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                                  const POTOAuxAssignOptions& options) {
  constexpr const char* fn = "poto_aux_assign";
  at::NoGradGuard no_grad;
  detail::check_detection_inputs(fn, cls_prob, "cls_prob", pred_boxes, "pred_boxes", points, gt_boxes, gt_classes, 0);
  detail::check_alpha(fn, options.alpha());
  TORCH_CHECK(options.topk() >= 1, fn, ": topk must be >= 1, got ", options.topk());
  const int64_t A = cls_prob.size(0), G = gt_boxes.size(0);
  detail::check_levels(fn, options.level_sizes(), A);
  if (G == 0) return at::full({A}, -1, cls_prob.options().dtype(at::kLong));
  auto quality = detail::raw_quality(cls_prob, pred_boxes, gt_boxes, gt_classes, options.alpha());
  std::vector<at::Tensor> candidates;
  int64_t start = 0;
  for (const int64_t size : options.level_sizes()) {
    if (size > 0)
      candidates.push_back(std::get<1>(quality.narrow(1, start, size).topk(std::min(options.topk(), size), 1)) + start);
    start += size;
  }
  const auto candidate_idx = at::cat(candidates, 1);
  const auto candidate_q = quality.gather(1, candidate_idx);
  const std::array<int64_t, 1> dim{1};
  const auto threshold =
      candidate_q.mean(dim, /*keepdim=*/true) + candidate_q.std(dim, /*unbiased=*/true, /*keepdim=*/true);
  const auto is_candidate =
      at::zeros_like(quality, quality.options().dtype(at::kBool)).scatter_(1, candidate_idx, true);
  const auto positive = is_candidate & (quality >= threshold) & detail::strictly_inside(points, gt_boxes);
  quality.masked_fill_(positive.logical_not(), -1.0);
  const auto [best, gt_index] = quality.max(0);
  return at::where(best == -1, at::full({}, -1, gt_index.options()), gt_index);
}

}  // namespace crowdloss
