#pragma once
/// \file
/// DeFCN's prediction-aware one-to-one assignment (POTO) and its auxiliary one-to-many
/// assignment, for one image at a time. Quality, priors and thresholds are computed with ATen on
/// the inputs' device; only the Hungarian solve runs on the CPU.

#include <crowdloss/assign/linear_sum_assignment.hpp>
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

/// `crowdloss::kHungarian` or `crowdloss::kArgmax`.
using POTOMatcher = std::variant<enumtype::kHungarian, enumtype::kArgmax>;

/// Options for `crowdloss::poto_assign` and `crowdloss::poto_quality`.
///
/// Example:
///   auto opts = crowdloss::POTOOptions().center_sampling_radius(1.5).strides({8, 16, 32, 64, 128})
///                   .level_sizes({10000, 2500, 625, 169, 49});
struct POTOOptions {
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

/// Options for `crowdloss::poto_aux_assign`.
struct AuxAssignOptions {
  /// α of the quality, as in POTO, in [0, 1].
  TORCH_ARG(double, alpha) = 0.8;
  /// Candidates per gt and level (capped at the level's size), ≥ 1.
  TORCH_ARG(int64_t, topk) = 9;
  /// Anchors per level, in the order of the anchors (required).
  TORCH_ARG(std::vector<int64_t>, level_sizes) = {};
};

namespace detail {

/// Validates one image's detection inputs: cls_prob A×K, pred_boxes A×4, points A×2 (floating),
/// gt_boxes G×4 (floating, finite), gt_classes G int64 in [min_class, K), all on one device.
inline void check_detection_inputs(const char* fn, const at::Tensor& cls, const char* cls_name, const at::Tensor& boxes,
                                   const char* boxes_name, const at::Tensor& points, const at::Tensor& gt_boxes,
                                   const at::Tensor& gt_classes, int64_t min_class) {
  TORCH_CHECK(cls.defined() && cls.dim() == 2, fn, ": expected ", cls_name, " of shape (A, K), got ",
              cls.defined() ? cls.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cls.is_floating_point(), fn, ": expected floating-point ", cls_name, ", got ", cls.scalar_type());
  const int64_t A = cls.size(0), K = cls.size(1);
  TORCH_CHECK(K >= 1, fn, ": expected at least one class in ", cls_name, ", got shape ", cls.sizes());
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(0) == A && boxes.size(1) == 4, fn, ": expected ",
              boxes_name, " of shape (", A, ", 4), got ", boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(boxes.is_floating_point(), fn, ": expected floating-point ", boxes_name, ", got ", boxes.scalar_type());
  check_points(fn, points);
  TORCH_CHECK(points.size(0) == A, fn, ": points has ", points.size(0), " anchors but ", cls_name, " has ", A);
  check_boxes(fn, "gt_boxes", gt_boxes);
  TORCH_CHECK(gt_classes.defined() && gt_classes.dim() == 1 && gt_classes.size(0) == gt_boxes.size(0), fn,
              ": expected gt_classes of shape (", gt_boxes.size(0), "), got ",
              gt_classes.defined() ? gt_classes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(gt_classes.scalar_type() == at::kLong, fn, ": expected int64 gt_classes, got ", gt_classes.scalar_type());
  check_same_device(fn, cls, cls_name, boxes, boxes_name);
  check_same_device(fn, cls, cls_name, points, "points");
  check_same_device(fn, cls, cls_name, gt_boxes, "gt_boxes");
  check_same_device(fn, cls, cls_name, gt_classes, "gt_classes");
  check_finite_boxes(fn, "gt_boxes", gt_boxes);
  if (gt_classes.numel() > 0) {
    const auto lo = gt_classes.min().item<int64_t>(), hi = gt_classes.max().item<int64_t>();
    TORCH_CHECK(lo >= min_class && hi < K, fn, ": gt_classes must lie in [", min_class, ", ", K, "), got values from ",
                lo, " to ", hi);
  }
}

inline void check_alpha(const char* fn, double alpha) {
  TORCH_CHECK(alpha >= 0 && alpha <= 1, fn, ": alpha must lie in [0, 1], got ", alpha);
}

/// Checks `level_sizes` against the anchor count A (and `strides`, when given, against it).
inline void check_levels(const char* fn, const std::vector<int64_t>& level_sizes, int64_t A,
                         const std::vector<double>* strides = nullptr) {
  TORCH_CHECK(!level_sizes.empty(), fn, ": level_sizes (anchors per level) must be given");
  if (strides) {
    TORCH_CHECK(strides->size() == level_sizes.size(), fn, ": expected one stride per level, got ", strides->size(),
                " strides for ", level_sizes.size(), " levels");
    for (size_t l = 0; l < strides->size(); ++l)
      TORCH_CHECK((*strides)[l] > 0, fn, ": strides[", l, "] must be positive, got ", (*strides)[l]);
  }
  for (size_t l = 0; l < level_sizes.size(); ++l)
    TORCH_CHECK(level_sizes[l] >= 0, fn, ": level_sizes[", l, "] is negative: ", level_sizes[l]);
  const int64_t total = std::accumulate(level_sizes.begin(), level_sizes.end(), int64_t{0});
  TORCH_CHECK(total == A, fn, ": level_sizes add up to ", total, " anchors but there are ", A);
}

/// DeFCN's quality prob^(1−α)·IoU^α, elementwise.
inline at::Tensor quality_of(const at::Tensor& prob, const at::Tensor& iou, double alpha) {
  return prob.pow(1 - alpha) * iou.pow(alpha);
}

/// The quality of every (gt, anchor): G×A, prob = cls_prob[a, class_g].
inline at::Tensor raw_quality(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& gt_boxes,
                              const at::Tensor& gt_classes, double alpha) {
  return quality_of(cls_prob.index_select(1, gt_classes).t(), box_iou(gt_boxes, pred_boxes), alpha);
}

/// The boxes a spatial prior tests one run of anchors [start, start + size) against (G×4).
struct PriorLevel {
  int64_t start, size;
  at::Tensor boxes;
};

/// The spatial prior of DeFCN and FCOS, as the boxes each level's anchor points must lie strictly
/// inside: the gt boxes, or with radius > 0 each gt box ∩ the square of half-side
/// radius·stride(level) around its centre. `level_sizes` and `strides` are only needed with
/// radius > 0 (one run of all anchors otherwise).
inline std::vector<PriorLevel> prior_levels(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes,
                                            double radius, const std::vector<double>& strides,
                                            const std::vector<int64_t>& level_sizes) {
  TORCH_CHECK(radius >= 0, fn, ": center_sampling_radius must be >= 0, got ", radius);
  if (radius == 0) return {{0, points.size(0), gt_boxes}};
  check_levels(fn, level_sizes, points.size(0), &strides);
  const auto centres = (gt_boxes.slice(1, 0, 2) + gt_boxes.slice(1, 2, 4)) / 2;
  std::vector<PriorLevel> levels;
  int64_t start = 0;
  for (size_t l = 0; l < level_sizes.size(); ++l) {
    const double r = strides[l] * radius;
    levels.push_back(
        {start, level_sizes[l],
         at::cat({at::max(centres - r, gt_boxes.slice(1, 0, 2)), at::min(centres + r, gt_boxes.slice(1, 2, 4))}, 1)});
    start += level_sizes[l];
  }
  return levels;
}

/// The spatial prior as a G×A bool mask: anchor point a lies strictly inside its level's box of
/// gt g (prior_levels).
inline at::Tensor spatial_prior(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes, double radius,
                                const std::vector<double>& strides, const std::vector<int64_t>& level_sizes) {
  std::vector<at::Tensor> per_level;
  for (const auto& level : prior_levels(fn, points, gt_boxes, radius, strides, level_sizes))
    per_level.push_back(strictly_inside(points.narrow(0, level.start, level.size), level.boxes));
  return per_level.size() == 1 ? per_level[0] : at::cat(per_level, 1);
}

/// The spatial prior's pairs (g, a) in row-major order (P×2 int64): `spatial_prior(…).nonzero()`,
/// as CUDA computes it; on the CPU found without the G×A mask (inside_pairs_cpu).
inline at::Tensor prior_pairs(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes, double radius,
                              const std::vector<double>& strides, const std::vector<int64_t>& level_sizes) {
  if (!points.is_cpu()) return spatial_prior(fn, points, gt_boxes, radius, strides, level_sizes).nonzero();
  std::vector<std::vector<int64_t>> anchors(static_cast<size_t>(gt_boxes.size(0)));
  for (const auto& level : prior_levels(fn, points, gt_boxes, radius, strides, level_sizes))
    inside_pairs_cpu(points.narrow(0, level.start, level.size), level.boxes, level.start, anchors);
  int64_t count = 0;
  for (auto& row : anchors) {
    std::sort(row.begin(), row.end());
    count += static_cast<int64_t>(row.size());
  }
  auto pairs = at::empty({count, 2}, at::kLong);
  int64_t* out = pairs.data_ptr<int64_t>();
  for (size_t g = 0; g < anchors.size(); ++g)
    for (const int64_t a : anchors[g]) {
      *out++ = static_cast<int64_t>(g);
      *out++ = a;
    }
  return pairs;
}

/// The pairs (g, a) of POTO's spatial prior, in row-major order, and their quality: the entries
/// of POTO's quality matrix that are not −1.
struct POTOPairs {
  at::Tensor g, a, values;
};

/// POTO's prior pairs and their quality; see `crowdloss::poto_quality`. `fn` names the caller in
/// errors.
inline POTOPairs poto_pairs(const char* fn, const at::Tensor& cls_prob, const at::Tensor& pred_boxes,
                            const at::Tensor& points, const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                            const POTOOptions& options) {
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

/// POTO's G×A quality matrix from its pairs: −1 elsewhere.
inline at::Tensor quality_matrix(const POTOPairs& p, int64_t G, int64_t A) {
  auto quality = at::full({G, A}, -1.0, p.values.options());
  return quality.index_put_({p.g, p.a}, p.values);
}

/// POTO's Hungarian matching (G ≤ A) without the G×A quality matrix: its working rows (maximised,
/// so negated: +1 but at the prior's pairs) go to the LSA's sparse search as they are. The
/// answer is `linear_sum_assignment(quality_matrix(p, G, A), true)`'s, SciPy's. Returns the anchor
/// of each gt.
inline std::vector<int64_t> poto_sparse_matching(const POTOPairs& p, int64_t G, int64_t A) {
  const auto g = p.g.to(at::kCPU).contiguous(), a = p.a.to(at::kCPU).contiguous();
  const auto values = p.values.to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = g.numel();
  const int64_t* gp = g.data_ptr<int64_t>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const double* vp = values.data_ptr<double>();
  SparseRows rows;
  rows.common.assign(static_cast<size_t>(G), 1.0);
  rows.start.assign(static_cast<size_t>(G) + 1, 0);
  rows.cols.assign(ap, ap + n);
  rows.values.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    ++rows.start[static_cast<size_t>(gp[k]) + 1];
    rows.values[static_cast<size_t>(k)] = -vp[k];
    check_lsap_entry(rows.values[static_cast<size_t>(k)], "poto_assign");
  }
  std::partial_sum(rows.start.begin(), rows.start.end(), rows.start.begin());
  return sparse_matching(rows, G, A, "poto_assign");
}
}  // namespace detail

/// POTO's masked quality matrix (G×A): quality[g, a] = cls_prob[a, class_g]^(1−α) ·
/// IoU(gt_g, pred_a)^α inside the spatial prior of gt g (see `POTOOptions`), −1 outside it. This
/// is the matrix `poto_assign` matches on; it is exposed for inspection and logging.
///
/// Shapes, devices and errors as for `poto_assign`.
///
/// Example:
///   auto q = crowdloss::poto_quality(cls_prob, pred_boxes, points, gt_boxes, gt_classes);
inline at::Tensor poto_quality(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                               const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                               const POTOOptions& options = {}) {
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
///   auto pred_boxes = crowdloss::ltrb_to_boxes(points, box_ltrb);
///   auto matched = crowdloss::poto_assign(cls_logits.sigmoid(), pred_boxes, points, gt_boxes, gt_classes);
inline at::Tensor poto_assign(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                              const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                              const POTOOptions& options = {}) {
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
///   auto opts = crowdloss::AuxAssignOptions().level_sizes({10000, 2500, 625, 169, 49});
///   auto gt_of_anchor = crowdloss::poto_aux_assign(cls_logits.sigmoid(), pred_boxes, points, gt_boxes,
///                                                  gt_classes, opts);
inline at::Tensor poto_aux_assign(const at::Tensor& cls_prob, const at::Tensor& pred_boxes, const at::Tensor& points,
                                  const at::Tensor& gt_boxes, const at::Tensor& gt_classes,
                                  const AuxAssignOptions& options) {
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
