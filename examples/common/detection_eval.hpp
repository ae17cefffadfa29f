#pragma once
// Evaluation of pedestrian detectors as on CrowdHuman: AP50, log-average miss rate (mMR) and
// recall, with ignore regions, following the CrowdHuman evaluation toolkit (APMRToolkits).
#include <nlohmann/json.hpp>

#include <crowdloss/detection/boxes.hpp>
#include <torch/types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

/// The detections of one image: boxes N×4 (x0, y0, x1, y1), scores N.
struct Detections {
  at::Tensor boxes;
  at::Tensor scores;
};

struct DetectionMetrics {
  double ap50 = 0;            // average precision at the IoU threshold (0.5 by default)
  double mmr = 1;             // log-average miss rate over FPPI in [1e-2, 1]
  double recall = 0;          // TP / ground_truths, all detections counted
  int64_t ground_truths = 0;  // ground-truth boxes of all images (ignore regions not included)
  int64_t detections = 0;     // detections scored as TP or FP (those dropped on ignore regions not included)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DetectionMetrics, ap50, mmr, recall, ground_truths, detections)

namespace eval_detail {

/// The toolkit's CALTECH_-2 reference FPPIs: np.logspace(-2, 0, 9) rounded as in its source.
inline constexpr std::array<double, 9> kMissRateReferenceFppi{0.0100, 0.0178, 0.0316, 0.0562, 0.1000,
                                                              0.1778, 0.3162, 0.5623, 1.000};

inline std::string shape_of(const at::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : "an undefined tensor"; }

inline void check_boxes(const at::Tensor& t, const std::string& name) {
  if (!t.defined() || t.dim() != 2 || t.size(1) != 4)
    throw std::invalid_argument("evaluate_detections: expected " + name + " of shape (N, 4), got " + shape_of(t));
  if (!t.is_floating_point())
    throw std::invalid_argument("evaluate_detections: expected floating-point " + name + ", got " +
                                std::string(c10::toString(t.scalar_type())));
}

/// CPU float64 copy, so that matching is decided in double precision whatever the input dtype.
inline at::Tensor to_cpu_double(const at::Tensor& t) { return t.to(at::kCPU, at::kDouble).contiguous(); }

/// Pairwise |a_i ∩ b_j| / |a_i| for N×4 and M×4 xyxy boxes (N×M); 0 where a_i has no area.
inline at::Tensor intersection_over_first_area(const at::Tensor& a, const at::Tensor& b) {
  const auto inter = crowdloss::detail::intersection_union(a, b)[0];
  const auto area =
      ((a.select(1, 2) - a.select(1, 0)).clamp_min(0) * (a.select(1, 3) - a.select(1, 1)).clamp_min(0)).unsqueeze(1);
  return at::where(area > 0, inter / area, at::zeros({}, inter.options()));
}

struct ScoredDetection {
  double score;
  bool true_positive;
};

}  // namespace eval_detail

/// AP50, mMR and recall of pedestrian detections, as the CrowdHuman evaluation toolkit computes
/// them (CrowdDet's lib/evaluate/APMRToolkits, the same code as cvpods' crowdhumantools.py that
/// DeFCN/POTO report with, and mmdet's CrowdHumanMetric): "Caltech" matching per image, then one
/// precision–recall and one miss-rate–FPPI curve over the pooled detections of all images.
///
/// detections[i], gt_boxes[i] and ignore_regions[i] belong to image i: detection boxes N×4 with
/// N scores, ground-truth boxes G×4, ignore regions M×4 (CrowdHuman's "mask" boxes), all xyxy,
/// floating point, any device (N, G, M may be 0). Nothing is clipped here; the toolkit clips
/// detections and ground truths to the image, so clip both beforehand to compare with it.
///
/// Matching, per image: detections in descending score order each take the unmatched ground
/// truth of highest IoU ≥ iou_threshold (ties: the lower index) and count as true positives
/// (TP). One that matches no ground truth is dropped — neither TP nor FP — when it overlaps an
/// ignore region by |det ∩ region| / |det| ≥ iou_threshold, and is a false positive (FP)
/// otherwise. Ignore regions are no ground truths: never matched, not counted in G, and any
/// number of detections may be dropped on one. A second detection of a matched person is an FP.
///
/// Curves: the K scored detections of all images in descending score order, k = 1..K, with
/// TP_k, FP_k the counts among the first k, G = Σ G_i ground truths and I images:
///   recall_k = TP_k / G,   precision_k = TP_k / k,   fppi_k = FP_k / I,   mr_k = 1 − recall_k
///   ap50   = recall_1 · precision_1 + Σ_{k=2..K} (recall_k − recall_{k−1}) · (precision_k + precision_{k−1}) / 2
///   mmr    = exp( (1/9) Σ_r ln max(mr_{k(r)}, 1e-10) ),  r ∈ {0.01, 0.0178, 0.0316, 0.0562, 0.1, 0.1778,
///            0.3162, 0.5623, 1} (np.logspace(-2, 0, 9) as the toolkit rounds it), k(r) the first k with
///            fppi_k ≥ r, or K when the FPPI never reaches r (the toolkit's `_find_gt`; P. Dollár's
///            Caltech code takes the last k with fppi_k ≤ r, which differs only where some fppi_k = r:
///            then TPs ranked after the FP that reaches r at the same FPPI are not counted here)
///   recall = TP_K / G
/// Each detection is one point of the curves (tied scores are not merged): ties keep the order
/// of the images, then the order within an image's detections, as the toolkit's stable sorts do,
/// so with ties the result can depend on that order.
///
/// Where this differs from the toolkit: (1) the ap50 sum has the first term recall_1 ·
/// precision_1 (the toolkit's `_calculate_map` starts at k = 2 and so loses up to 1/G: a perfect
/// detector scores 1 here, 1 − 1/G there); (2) IoU and overlap at exactly iou_threshold count
/// (the toolkit needs >, and adds 1e-6 to the denominators); (3) miss rates are floored at 1e-10
/// before the log, as in P. Dollár's Caltech code, so a detector with no miss gets mMR 1e-10
/// (the toolkit: 0). Boxes are compared in float64 with crowdloss::box_iou.
///
/// Edge cases: no scored detection (none given, or all dropped on ignore regions) gives ap50 0,
/// mmr 1, recall 0. No ground truth in any image leaves recall and miss rate undefined: ap50 0,
/// recall 0 and mmr 1 are reported (the worst values). Images without detections or ground
/// truths still count in I. No image at all gives the defaults {0, 1, 0, 0, 0}.
///
/// Throws std::invalid_argument naming the argument (e.g. "detections[3].scores") when the three
/// vectors differ in length, a box tensor is undefined, not (N, 4) or not floating point, scores
/// are not a floating 1-D tensor of one score per box or contain NaN, or iou_threshold is not
/// in (0, 1].
///
/// Example:
///   std::vector<Detections> dets;           // per image, after NMS (or none, for POTO)
///   std::vector<at::Tensor> gts, ignores;   // per image
///   ...
///   const auto m = evaluate_detections(dets, gts, ignores);
///   std::printf("AP50 %.4f  mMR %.4f  recall %.4f\n", m.ap50, m.mmr, m.recall);
inline DetectionMetrics evaluate_detections(const std::vector<Detections>& detections,
                                            const std::vector<at::Tensor>& gt_boxes,
                                            const std::vector<at::Tensor>& ignore_regions, double iou_threshold = 0.5) {
  using eval_detail::check_boxes;
  using eval_detail::to_cpu_double;
  if (gt_boxes.size() != detections.size() || ignore_regions.size() != detections.size())
    throw std::invalid_argument(
        "evaluate_detections: expected one entry per image in detections, gt_boxes and "
        "ignore_regions, got " +
        std::to_string(detections.size()) + ", " + std::to_string(gt_boxes.size()) + " and " +
        std::to_string(ignore_regions.size()));
  if (!(iou_threshold > 0 && iou_threshold <= 1))
    throw std::invalid_argument("evaluate_detections: iou_threshold must be in (0, 1], got " +
                                std::to_string(iou_threshold));

  DetectionMetrics m;
  std::vector<eval_detail::ScoredDetection> scored;
  for (size_t i = 0; i < detections.size(); ++i) {
    const std::string idx = "[" + std::to_string(i) + "]";
    check_boxes(detections[i].boxes, "detections" + idx + ".boxes");
    check_boxes(gt_boxes[i], "gt_boxes" + idx);
    check_boxes(ignore_regions[i], "ignore_regions" + idx);
    const auto& s = detections[i].scores;
    const int64_t n = detections[i].boxes.size(0);
    if (!s.defined() || s.dim() != 1 || s.size(0) != n || !s.is_floating_point())
      throw std::invalid_argument("evaluate_detections: expected detections" + idx +
                                  ".scores to be a floating 1-D tensor "
                                  "of " +
                                  std::to_string(n) + " scores, one per box, got " +
                                  (s.defined() ? std::string(c10::toString(s.scalar_type())) + " of shape " : "") +
                                  eval_detail::shape_of(s));
    const auto scores = to_cpu_double(s);
    if (n > 0 && scores.isnan().any().item<bool>())
      throw std::invalid_argument("evaluate_detections: detections" + idx + ".scores contains NaN");

    const auto boxes = to_cpu_double(detections[i].boxes), gts = to_cpu_double(gt_boxes[i]);
    const auto ignores = to_cpu_double(ignore_regions[i]);
    const int64_t g = gts.size(0), r = ignores.size(0);
    m.ground_truths += g;
    if (n == 0) continue;
    // N×G IoU with the ground truths, N×M overlap (over the detection's area) with ignore regions.
    const auto iou = g > 0 ? crowdloss::box_iou(boxes, gts) : at::zeros({n, 0}, boxes.options());
    const auto ioa =
        r > 0 ? eval_detail::intersection_over_first_area(boxes, ignores) : at::zeros({n, 0}, boxes.options());
    const auto iou_a = iou.accessor<double, 2>();
    const auto ioa_a = ioa.accessor<double, 2>();
    const auto score_a = scores.accessor<double, 1>();

    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score_a[a] > score_a[b]; });
    std::vector<char> matched(static_cast<size_t>(g), 0);
    for (const int64_t d : order) {
      int64_t best = -1;
      for (int64_t j = 0; j < g; ++j) {
        if (matched[static_cast<size_t>(j)] || !(iou_a[d][j] >= iou_threshold)) continue;
        if (best < 0 || iou_a[d][j] > iou_a[d][best]) best = j;
      }
      if (best >= 0) {
        matched[static_cast<size_t>(best)] = 1;
        scored.push_back({score_a[d], true});
        continue;
      }
      bool ignored = false;
      for (int64_t j = 0; j < r && !ignored; ++j) ignored = ioa_a[d][j] >= iou_threshold;
      if (!ignored) scored.push_back({score_a[d], false});
    }
  }

  m.detections = static_cast<int64_t>(scored.size());
  if (scored.empty() || m.ground_truths == 0) return m;
  // Pool: one stable sort by descending score keeps image order, then in-image order, on ties.
  std::stable_sort(
      scored.begin(), scored.end(),
      [](const eval_detail::ScoredDetection& a, const eval_detail::ScoredDetection& b) { return a.score > b.score; });
  const double gt_count = static_cast<double>(m.ground_truths), images = static_cast<double>(detections.size());
  std::vector<double> fppi, miss_rate;
  fppi.reserve(scored.size());
  miss_rate.reserve(scored.size());
  double tp = 0, fp = 0, prev_recall = 0, prev_precision = 0;
  for (size_t k = 0; k < scored.size(); ++k) {
    (scored[k].true_positive ? tp : fp) += 1;
    const double recall = tp / gt_count, precision = tp / (tp + fp);
    m.ap50 += k == 0 ? recall * precision : (recall - prev_recall) * (precision + prev_precision) / 2;
    prev_recall = recall, prev_precision = precision;
    fppi.push_back(fp / images);
    miss_rate.push_back(1 - recall);
  }
  m.recall = prev_recall;
  double log_sum = 0;
  for (const double ref : eval_detail::kMissRateReferenceFppi) {
    const auto it = std::lower_bound(fppi.begin(), fppi.end(), ref);  // fppi is non-decreasing
    const size_t k = it == fppi.end() ? fppi.size() - 1 : static_cast<size_t>(it - fppi.begin());
    log_sum += std::log(std::max(miss_rate[k], 1e-10));
  }
  m.mmr = std::exp(log_sum / static_cast<double>(eval_detail::kMissRateReferenceFppi.size()));
  return m;
}

}  // namespace crowdloss_examples
