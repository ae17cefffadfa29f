#pragma once
/// \file
/// Point-supervised counting's one-to-one matching: P2PNet's `HungarianMatcher_Crowd` (Song et
/// al., "Rethinking Counting and Localization in Crowds: A Purely Point-Based Framework", ICCV
/// 2021) with SciPy-exact indices, and the localisation metrics of points matched within a
/// distance (precision, recall, F1, as NWPU-Crowd's localisation track counts them).

#include <crowdloss/assign/linear_sum_assignment.hpp>
#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/head_points.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::point_match` (defaults: P2PNet's train.py).
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::PointMatchOptions().class_weight(1.0).point_weight(0.05);
/// ```
struct PointMatchOptions {
  /// Weight of the classification cost −softmax(score)[person]; finite, ≥ 0.
  TORCH_ARG(double, class_weight) = 1.0;
  /// Weight of the Euclidean distance ‖p − g‖₂ in pixels; finite, ≥ 0 (not both 0).
  TORCH_ARG(double, point_weight) = 0.05;
};

namespace detail {

/// The first non-finite entry's row of `host` (a CPU tensor), or -1.
inline int64_t first_non_finite_row(const at::Tensor& host) {
  if (host.numel() == 0) return -1;
  const auto bad = host.isfinite().logical_not().flatten(1).any(1);
  return bad.any().item<bool>() ? bad.nonzero()[0][0].item<int64_t>() : -1;
}

}  // namespace detail

/// P2PNet's Hungarian matching of predicted points to ground-truth points, per image:
///
///   C[q, n] = point_weight · ‖p_q − g_n‖₂ + class_weight · (−softmax(scores_q)[1]),
///
/// solved by `linear_sum_assignment` (minimum total cost, SciPy 1.10's tie breaking), so the
/// indices are those SciPy gives P2PNet's `HungarianMatcher_Crowd` for the same matrix. The
/// distance is `at::cdist` of the image's points (p = 2), as that matcher computes it, image by
/// image. Returns, per image, (prediction indices, gt indices): int64 CPU tensors of min(Q, N_b)
/// entries, prediction indices ascending; an image without points (or with no queries) gives two
/// empty tensors. The images' matrices are built on the inputs' device, copied to the CPU together
/// and solved in parallel (`at::parallel_for`). No gradient is recorded.
///
/// scores: B×Q×K logits (K ≥ 2, index 1 = person, as P2PNet's two classes); pred_points: B×Q×2
/// (x, y); gt_points: B tensors N_b×2 (x, y) in the same pixels; one floating dtype and device.
/// Throws c10::Error naming `point_match` and the value for other shapes, a batch size
/// mismatch, mixed dtypes or devices, integer dtypes, negative or non-finite weights (or both
/// 0), and a NaN or infinite score or coordinate (naming the image and the row).
///
/// Example:
/// ```cpp
/// auto matches = crowdloss::point_match(logits, points, gt_points);   // P2PNet's train.py weights
/// auto [query, target] = matches[0];                                  // image 0's pairs
/// ```
inline std::vector<std::tuple<at::Tensor, at::Tensor>> point_match(const at::Tensor& scores,
                                                                   const at::Tensor& pred_points,
                                                                   const std::vector<at::Tensor>& gt_points,
                                                                   const PointMatchOptions& options = {}) {
  const char* fn = "point_match";
  const double wc = options.class_weight(), wp = options.point_weight();
  TORCH_CHECK(wc >= 0 && std::isfinite(wc), fn, ": class_weight must be finite and >= 0, got ", wc);
  TORCH_CHECK(wp >= 0 && std::isfinite(wp), fn, ": point_weight must be finite and >= 0, got ", wp);
  TORCH_CHECK(wc > 0 || wp > 0, fn, ": class_weight and point_weight cannot both be 0");
  TORCH_CHECK(scores.defined() && scores.dim() == 3 && scores.size(2) >= 2, fn,
              ": expected scores of shape (B, Q, K) with K >= 2, got ",
              scores.defined() ? scores.sizes() : at::IntArrayRef{});
  TORCH_CHECK(pred_points.defined() && pred_points.dim() == 3 && pred_points.size(2) == 2 &&
                  pred_points.size(0) == scores.size(0) && pred_points.size(1) == scores.size(1),
              fn, ": expected pred_points of shape (", scores.size(0), ", ", scores.size(1), ", 2), got ",
              pred_points.defined() ? pred_points.sizes() : at::IntArrayRef{});
  TORCH_CHECK(scores.is_floating_point(), fn, ": expected floating-point scores, got ", scores.scalar_type());
  TORCH_CHECK(pred_points.scalar_type() == scores.scalar_type(), fn, ": pred_points dtype ", pred_points.scalar_type(),
              " differs from scores dtype ", scores.scalar_type());
  detail::check_same_device(fn, scores, "scores", pred_points, "pred_points");
  const int64_t batch = scores.size(0), queries = scores.size(1);
  TORCH_CHECK(static_cast<int64_t>(gt_points.size()) == batch, fn, ": expected ", batch,
              " gt_points tensors (one per image), got ", gt_points.size());
  for (int64_t b = 0; b < batch; ++b) {
    const auto name = "gt_points[" + std::to_string(b) + "]";
    const auto& g = gt_points[static_cast<size_t>(b)];
    detail::check_point_set(fn, name, g);
    TORCH_CHECK(g.scalar_type() == scores.scalar_type(), fn, ": ", name, " dtype ", g.scalar_type(),
                " differs from scores dtype ", scores.scalar_type());
    detail::check_same_device(fn, scores, "scores", g, name.c_str());
  }
  const at::NoGradGuard no_grad;
  // Every non-finite input is refused by name before any cost is built from it.
  const auto host_inputs = at::cat({scores.flatten(1), pred_points.flatten(1)}, 1).cpu();
  const int64_t bad_image = detail::first_non_finite_row(host_inputs);
  TORCH_CHECK(bad_image < 0, fn, ": image ", bad_image, " has a NaN or infinite score or predicted point");
  if (batch > 0) {  // every image's ground truth in one host read
    const int64_t bad_row = detail::first_non_finite_row(at::cat(gt_points).cpu());
    if (bad_row >= 0) {
      const auto [image, row] = detail::image_and_row(gt_points, bad_row);
      TORCH_CHECK(false, fn, ": gt_points[", image, "] row ", row, " is not finite");
    }
  }
  const auto person = scores.softmax(-1).select(-1, 1);  // B×Q
  std::vector<at::Tensor> costs;
  costs.reserve(gt_points.size());
  for (int64_t b = 0; b < batch; ++b) {
    const auto& g = gt_points[static_cast<size_t>(b)];
    const auto distance = at::cdist(pred_points[b], g, 2.0);
    costs.push_back(wp * distance + wc * (-person[b]).unsqueeze(1).expand({queries, g.size(0)}));
  }
  return linear_sum_assignment(costs);
}

/// The counts of a localisation evaluation (points matched one-to-one within a distance) and
/// the rates made of them, as NWPU-Crowd's localisation track reports them: precision
/// TP / (TP + FP), recall TP / (TP + FN), F1 their harmonic mean, each 0 where its denominator is
/// 0. Sum the counts over a data set with `+=` before reading the rates.
struct LocalizationMetrics {
  /// Predicted points matched to a ground-truth point within its threshold.
  int64_t true_positives = 0;
  /// Predicted points left unmatched.
  int64_t false_positives = 0;
  /// Ground-truth points left unmatched.
  int64_t false_negatives = 0;

  /// Adds another image's (or data set's) counts.
  LocalizationMetrics& operator+=(const LocalizationMetrics& other) {
    true_positives += other.true_positives;
    false_positives += other.false_positives;
    false_negatives += other.false_negatives;
    return *this;
  }
  /// TP / (TP + FP), or 0 without predictions.
  double precision() const { return ratio(true_positives, true_positives + false_positives); }
  /// TP / (TP + FN), or 0 without ground truth.
  double recall() const { return ratio(true_positives, true_positives + false_negatives); }
  /// 2·P·R / (P + R), or 0 when both are 0.
  double f1() const {
    const double p = precision(), r = recall();
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  }

 private:
  static double ratio(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }
};

/// Localisation counts of one image: the largest one-to-one matching of predicted points to
/// ground-truth points in which each pair is within the ground-truth point's threshold
/// (‖p − g_n‖₂ ≤ thresholds[n]), as NWPU-Crowd's localisation track defines it (per-point
/// thresholds from the head sizes there, σ_l or σ_s), or P2PNet's evaluation at a fixed number of
/// pixels (the scalar overload). TP is the matching's size, FP = P − TP, FN = N − TP. The
/// matching is found exactly: `linear_sum_assignment` on costs 0 (within) and 1 (beyond).
///
/// pred_points: P×2, gt_points: N×2 (x, y), thresholds: N (≥ 0), floating, one device (solved on
/// the CPU). Throws c10::Error naming `localization_metrics` for other shapes, mixed devices,
/// integer dtypes, negative or NaN thresholds, or non-finite coordinates.
///
/// Example:
/// ```cpp
/// crowdloss::LocalizationMetrics total;
/// total += crowdloss::localization_metrics(pred_xy, gt_xy, 8.0);   // within 8 pixels
/// double f1 = total.f1();
/// ```
inline LocalizationMetrics localization_metrics(const at::Tensor& pred_points, const at::Tensor& gt_points,
                                                const at::Tensor& thresholds) {
  const char* fn = "localization_metrics";
  detail::check_point_set(fn, "pred_points", pred_points);
  detail::check_point_set(fn, "gt_points", gt_points);
  TORCH_CHECK(thresholds.defined() && thresholds.dim() == 1 && thresholds.size(0) == gt_points.size(0), fn,
              ": expected thresholds of shape (", gt_points.size(0), "), got ",
              thresholds.defined() ? thresholds.sizes() : at::IntArrayRef{});
  TORCH_CHECK(thresholds.is_floating_point(), fn, ": expected floating-point thresholds, got ",
              thresholds.scalar_type());
  detail::check_same_device(fn, pred_points, "pred_points", gt_points, "gt_points");
  detail::check_same_device(fn, pred_points, "pred_points", thresholds, "thresholds");
  const at::NoGradGuard no_grad;
  const auto p = pred_points.to(at::kDouble).cpu(), g = gt_points.to(at::kDouble).cpu();
  const auto t = thresholds.to(at::kDouble).cpu();
  int64_t row = detail::first_non_finite_row(p);
  TORCH_CHECK(row < 0, fn, ": pred_points row ", row, " is not finite");
  row = detail::first_non_finite_row(g);
  TORCH_CHECK(row < 0, fn, ": gt_points row ", row, " is not finite");
  TORCH_CHECK(t.numel() == 0 || (t >= 0).all().item<bool>(), fn, ": thresholds must be >= 0 (and not NaN), got ",
              t.numel() ? t.min().item<double>() : 0.0);
  const int64_t P = p.size(0), N = g.size(0);
  int64_t tp = 0;
  if (P > 0 && N > 0) {
    const auto beyond = at::cdist(p, g, 2.0).gt(t.unsqueeze(0)).to(at::kDouble);  // 1: too far to match
    const auto [rows, cols] = linear_sum_assignment(beyond);
    tp = static_cast<int64_t>(rows.numel()) - static_cast<int64_t>(beyond.index({rows, cols}).sum().item<double>());
  }
  return {tp, P - tp, N - tp};
}

/// `localization_metrics` with one threshold (pixels, ≥ 0) for every ground-truth point.
inline LocalizationMetrics localization_metrics(const at::Tensor& pred_points, const at::Tensor& gt_points,
                                                double threshold) {
  TORCH_CHECK(threshold >= 0, "localization_metrics: the threshold must be >= 0, got ", threshold);
  return localization_metrics(pred_points, gt_points,
                              at::full({gt_points.defined() && gt_points.dim() == 2 ? gt_points.size(0) : 0}, threshold,
                                       gt_points.defined() ? gt_points.options() : at::TensorOptions()));
}

}  // namespace crowdloss
