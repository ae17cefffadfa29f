#pragma once
/// \file
/// DeFCN's prediction-aware one-to-one assignment (POTO) and its auxiliary one-to-many
/// assignment, for one image or a batch. Quality, priors and thresholds are computed with ATen on
/// the inputs' device; only the Hungarian solve runs on the CPU.

#include <crowdloss/detail/assign_batch.hpp>
#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/poto_matching.hpp>
#include <crowdloss/detail/spatial_prior.hpp>
#include <crowdloss/detection/boxes.hpp>
#include <crowdloss/enum.hpp>

#include <ATen/Parallel.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <string>
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

/// Checks `poto_aux_assign`'s options against A anchors.
inline void check_poto_aux_options(const char* fn, int64_t A, const POTOAuxAssignOptions& options) {
  check_alpha(fn, options.alpha());
  TORCH_CHECK(options.topk() >= 1, fn, ": topk must be >= 1, got ", options.topk());
  check_levels(fn, options.level_sizes(), A);
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

/// POTO's matching of B images at once on a device: the prior pairs (b, g, a) of the whole batch
/// and their quality as ATen ops, one copy of them to the host, the images' matchings
/// (poto_match) in parallel host threads, and one copy of the anchors back. cls_prob B×A×K,
/// pred_boxes B×A×4, points A×2, `gts` padded (pad_gt_batch). Returns each image's G_b anchors.
inline std::vector<at::Tensor> poto_match_batch(const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                                                const at::Tensor& points, const GtBatch& gts,
                                                const POTOAssignOptions& options) {
  constexpr const char* fn = "poto_assign_batch";
  const int64_t B = cls_prob.size(0), A = cls_prob.size(1);
  auto prior =
      spatial_prior(fn, points, gts.boxes, options.center_sampling_radius(), options.strides(), options.level_sizes());
  const auto pairs = prior.logical_and_(gts.valid.unsqueeze(-1)).nonzero();  // P×3 (b, g, a), row-major
  const auto b = pairs.select(1, 0), g = pairs.select(1, 1), a = pairs.select(1, 2);
  const auto prob = cls_prob.index({b, a, gts.classes.index({b, g})});
  const auto [inter, uni] = broadcast_intersection_union(gts.boxes.index({b, g}), pred_boxes.index({b, a}));
  const auto quality = quality_of(prob, iou_from(inter, uni), options.alpha());
  // One read: indices and quality as doubles (exact for both).
  const auto host = at::cat({pairs.to(at::kDouble), quality.to(at::kDouble).unsqueeze(1)}, 1).cpu().contiguous();
  const double* h = host.data_ptr<double>();
  const int64_t P = host.size(0);
  std::vector<int64_t> first(static_cast<size_t>(B) + 1, 0), offset(static_cast<size_t>(B) + 1, 0);
  for (int64_t k = 0; k < P; ++k) ++first[static_cast<size_t>(h[4 * k]) + 1];
  for (int64_t i = 0; i < B; ++i) {
    first[static_cast<size_t>(i) + 1] += first[static_cast<size_t>(i)];
    offset[static_cast<size_t>(i) + 1] = offset[static_cast<size_t>(i)] + gts.counts[static_cast<size_t>(i)];
  }
  auto anchors = at::empty({offset.back()}, at::kLong);
  int64_t* out = anchors.data_ptr<int64_t>();
  const bool argmax = std::holds_alternative<enumtype::kArgmax>(options.matcher());
  std::vector<std::string> errors(static_cast<size_t>(B));
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t k0 = first[static_cast<size_t>(i)], n = first[static_cast<size_t>(i) + 1] - k0;
      std::vector<int64_t> gi(static_cast<size_t>(n)), ai(static_cast<size_t>(n));
      std::vector<double> vi(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) {
        gi[static_cast<size_t>(k)] = static_cast<int64_t>(h[4 * (k0 + k) + 1]);
        ai[static_cast<size_t>(k)] = static_cast<int64_t>(h[4 * (k0 + k) + 2]);
        vi[static_cast<size_t>(k)] = h[4 * (k0 + k) + 3];
      }
      try {
        const auto matched =
            poto_match(gi.data(), ai.data(), vi.data(), n, gts.counts[static_cast<size_t>(i)], A, argmax);
        std::copy(matched.begin(), matched.end(), out + offset[static_cast<size_t>(i)]);
      } catch (const c10::Error& e) {
        errors[static_cast<size_t>(i)] = e.what_without_backtrace();
      }
    }
  });
  for (int64_t i = 0; i < B; ++i)
    TORCH_CHECK(errors[static_cast<size_t>(i)].empty(), fn, ": image ", i, ": ", errors[static_cast<size_t>(i)]);
  const auto on_device = anchors.to(cls_prob.device());
  std::vector<at::Tensor> per_image;
  for (int64_t i = 0; i < B; ++i)
    per_image.push_back(on_device.narrow(0, offset[static_cast<size_t>(i)], gts.counts[static_cast<size_t>(i)]));
  return per_image;
}

/// DeFCN's auxiliary assignment of B images at once (any device): cls_prob B×A×K, pred_boxes
/// B×A×4, points A×2, gt_boxes B×G×4 and gt_classes B×G, of which `valid` (B×G bool; undefined:
/// all) are real. Returns B×A.
inline at::Tensor poto_aux_assign_aten(const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                                       const at::Tensor& points, const at::Tensor& gt_boxes,
                                       const at::Tensor& gt_classes, const at::Tensor& valid,
                                       const POTOAuxAssignOptions& options) {
  const int64_t B = cls_prob.size(0), A = cls_prob.size(1), G = gt_boxes.size(1);
  const auto prob = cls_prob.gather(2, gt_classes.unsqueeze(1).expand({B, A, G})).transpose(1, 2);  // B×G×A
  const auto [inter, uni] = broadcast_intersection_union(gt_boxes.unsqueeze(2), pred_boxes.unsqueeze(1));
  auto quality = quality_of(prob, iou_from(inter, uni), options.alpha());
  std::vector<at::Tensor> candidate, candidate_q;
  int64_t start = 0;
  for (const int64_t size : options.level_sizes()) {
    if (size > 0) {
      auto [mask, values] = k_extreme(quality.narrow(-1, start, size), std::min(options.topk(), size), true);
      candidate.push_back(mask);
      candidate_q.push_back(values);
    }
    start += size;
  }
  const auto q = at::cat(candidate_q, -1);
  const std::array<int64_t, 1> last{-1};
  const auto threshold = q.mean(last, /*keepdim=*/true) + q.std(last, /*unbiased=*/true, /*keepdim=*/true);
  auto positive =
      at::cat(candidate, -1).logical_and_(quality >= threshold).logical_and_(strictly_inside(points, gt_boxes));
  if (valid.defined()) positive.logical_and_(valid.unsqueeze(-1));
  quality.masked_fill_(positive.logical_not(), -1.0);
  const auto [best, gt_index] = quality.max(1);
  return at::where(best == -1, at::full({}, -1, gt_index.options()), gt_index);
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
  const bool argmax = std::holds_alternative<enumtype::kArgmax>(options.matcher());
  return detail::poto_match(pairs, gt_boxes.size(0), cls_prob.size(0), argmax, cls_prob.device());
}

/// POTO for a batch of B images that share their anchor points: image b's result is
/// `poto_assign(cls_prob[b], pred_boxes[b], points, gt_boxes[b], gt_classes[b], options)`.
/// Returns the B results (G_b int64 each, on the inputs' device). CPU tensors take the one-image
/// path per image. On other devices the prior pairs and their quality are found for the whole
/// batch at once, copied to the host in one read, matched there with one host thread per image
/// (ATen's intra-op pool), and the anchors copied back in one write.
///
/// cls_prob: B×A×K; pred_boxes: B×A×4; points: A×2; gt_boxes: B tensors G_b×4 xyxy; gt_classes:
/// B int64 tensors of G_b classes in [0, K). Errors as for the one-image form; a gt's error names
/// its image.
///
/// Example:
/// ```cpp
/// auto pred_boxes = crowdloss::ltrb_to_boxes(points, box_ltrb);
/// auto matched = crowdloss::poto_assign_batch(cls_logits.sigmoid().unsqueeze(0), pred_boxes.unsqueeze(0), points,
///                                       {gt_boxes}, {gt_classes});  // matched[0]: G
/// ```
inline std::vector<at::Tensor> poto_assign_batch(const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                                                 const at::Tensor& points, const std::vector<at::Tensor>& gt_boxes,
                                                 const std::vector<at::Tensor>& gt_classes,
                                                 const POTOAssignOptions& options = {}) {
  constexpr const char* fn = "poto_assign_batch";
  at::NoGradGuard no_grad;
  detail::check_batched_detection_inputs(fn, cls_prob, "cls_prob", pred_boxes, "pred_boxes", points, gt_boxes,
                                         gt_classes, 0);
  detail::check_alpha(fn, options.alpha());
  const int64_t B = cls_prob.size(0);
  if (cls_prob.is_cpu()) {
    std::vector<at::Tensor> each;
    for (int64_t b = 0; b < B; ++b)
      each.push_back(poto_assign(cls_prob[b], pred_boxes[b], points, gt_boxes[static_cast<size_t>(b)],
                                 gt_classes[static_cast<size_t>(b)], options));
    return each;
  }
  return detail::poto_match_batch(cls_prob, pred_boxes, points, detail::pad_gt_batch(gt_boxes, &gt_classes, pred_boxes),
                                  options);
}

/// DeFCN's auxiliary one-to-many assignment (the "aux" loss beside POTO) for one image. Returns
/// for each anchor the index of its gt (A int64, −1 = background, on the inputs' device).
///
/// With quality q[g, a] = cls_prob[a, class_g]^(1−α) · IoU(gt_g, pred_a)^α (no prior applied
/// yet): each gt's candidates are the `topk` highest-quality anchors of every level (capped at
/// the level's size); its threshold is the mean plus the sample standard deviation of its
/// candidates' qualities; its positives are candidates with q ≥ threshold whose anchor point lies
/// strictly inside the gt box. An anchor that is a positive of several gts goes to the one with
/// the highest quality (the lower gt index on ties). Among equal qualities the lower anchor index
/// enters a level's top k. With a single candidate the standard deviation is undefined (NaN) and
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
  const int64_t A = cls_prob.size(0), G = gt_boxes.size(0);
  detail::check_poto_aux_options(fn, A, options);
  if (G == 0 || A == 0) return at::full({A}, -1, cls_prob.options().dtype(at::kLong));
  return detail::poto_aux_assign_aten(cls_prob.unsqueeze(0), pred_boxes.unsqueeze(0), points, gt_boxes.unsqueeze(0),
                                      gt_classes.unsqueeze(0), {}, options)
      .squeeze(0);
}

/// DeFCN's auxiliary assignment for a batch of B images that share their anchor points: image
/// b's result is `poto_aux_assign(cls_prob[b], pred_boxes[b], points, gt_boxes[b],
/// gt_classes[b], options)`. Returns B×A int64 on the inputs' device. CPU tensors take the
/// one-image path per image; on other devices the whole batch is one pass of ATen ops over the
/// B×G×A qualities (G the largest image's count, the others padded), with no per-image kernels.
///
/// Inputs and errors as for the batched `poto_assign`; `level_sizes` is required.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::POTOAuxAssignOptions().level_sizes({10000, 2500, 625, 169, 49});
/// auto gt_of_anchor = crowdloss::poto_aux_assign_batch(cls_logits.sigmoid().unsqueeze(0), pred_boxes.unsqueeze(0),
///                                                points, {gt_boxes}, {gt_classes}, opts);  // 1×A
/// ```
inline at::Tensor poto_aux_assign_batch(const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                                        const at::Tensor& points, const std::vector<at::Tensor>& gt_boxes,
                                        const std::vector<at::Tensor>& gt_classes,
                                        const POTOAuxAssignOptions& options) {
  constexpr const char* fn = "poto_aux_assign_batch";
  at::NoGradGuard no_grad;
  detail::check_batched_detection_inputs(fn, cls_prob, "cls_prob", pred_boxes, "pred_boxes", points, gt_boxes,
                                         gt_classes, 0);
  const int64_t B = cls_prob.size(0), A = cls_prob.size(1);
  detail::check_poto_aux_options(fn, A, options);
  if (cls_prob.is_cpu())
    return detail::stack_per_image(B, A, cls_prob.options(), [&](int64_t b) {
      const auto i = static_cast<size_t>(b);
      return poto_aux_assign(cls_prob[b], pred_boxes[b], points, gt_boxes[i], gt_classes[i], options);
    });
  const auto gts = detail::pad_gt_batch(gt_boxes, &gt_classes, pred_boxes);
  if (gts.boxes.size(1) == 0 || A == 0) return at::full({B, A}, -1, cls_prob.options().dtype(at::kLong));
  return detail::poto_aux_assign_aten(cls_prob, pred_boxes, points, gts.boxes, gts.classes, gts.valid, options);
}

}  // namespace crowdloss
