#pragma once
/// \file
/// Non-maximum suppression with torchvision's semantics (`torchvision.ops.nms` and
/// `batched_nms`), for the detection modes that need it (one-to-many assignments such as FCOS
/// and LLA). One dispatch point (nms_impl): on the CPU a vectorised greedy scan
/// (detail/nms_cpu.hpp); elsewhere ATen ops on the boxes' device, a tile of rows of the IoU mask
/// at a time, with the greedy scan on the host over the tile's mask — the reference that the
/// CPU kernel is tested against.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/nms_cpu.hpp>
#include <crowdloss/detection/boxes.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {

namespace detail {

/// The largest value of `dtype` (float or double) at most t, as a double (NaN for NaN). For an
/// IoU u of that dtype, `u > t` compared as torchvision's CPU kernel does — u converted to
/// double — holds exactly when u > threshold_below(t, dtype): no value of the dtype lies
/// strictly between the two. So the threshold is never rounded up (float32(0.6) > 0.6: an IoU
/// equal to float32(0.6) is above 0.6), and both NMS paths can compare in the boxes' dtype.
inline double threshold_below(double t, at::ScalarType dtype) {
  if (dtype == at::kDouble || std::isnan(t)) return t;
  constexpr float inf = std::numeric_limits<float>::infinity(), high = std::numeric_limits<float>::max();
  if (t > static_cast<double>(high)) return t == std::numeric_limits<double>::infinity() ? inf : high;
  if (t < -static_cast<double>(high)) return -inf;
  const float r = static_cast<float>(t);
  return static_cast<double>(r) > t ? std::nextafter(r, -inf) : r;
}

/// The ATen path of nms_impl, for any device: `sorted` (N×4, float or double) are the boxes in
/// the order of visit, `sorted_classes` their classes (or undefined), `threshold` a value of
/// sorted's dtype (threshold_below). Returns the positions of the kept boxes in that order,
/// ascending, as an int64 tensor on the boxes' device.
inline at::Tensor nms_aten(const at::Tensor& sorted, const at::Tensor& sorted_classes, double threshold) {
  const int64_t n = sorted.size(0);
  // Rows of the suppression mask are computed a tile at a time (at most ~4M entries), only for
  // the rows still alive when the tile starts, and only against the columns after the tile's start.
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 22) / std::max<int64_t>(n, 1)));
  std::vector<uint8_t> removed(static_cast<size_t>(n), 0);
  std::vector<int64_t> keep;
  for (int64_t r0 = 0; r0 < n; r0 += tile) {
    const int64_t r1 = std::min(n, r0 + tile);
    std::vector<int64_t> rows;
    for (int64_t i = r0; i < r1; ++i)
      if (!removed[static_cast<size_t>(i)]) rows.push_back(i);
    if (rows.empty()) continue;
    const auto row_index = at::tensor(rows, at::TensorOptions(at::kLong)).to(sorted.device());
    const auto cols = sorted.slice(0, r0);
    const auto [inter, uni] = intersection_union(sorted.index_select(0, row_index), cols);
    // threshold is exact in sorted's dtype, so ATen's scalar comparison does not round it.
    auto mask = inter / uni > threshold;
    if (sorted_classes.defined())
      mask = mask.logical_and(sorted_classes.index_select(0, row_index).unsqueeze(1) == sorted_classes.slice(0, r0));
    const auto host = mask.to(at::kCPU).contiguous();
    const bool* m = host.data_ptr<bool>();
    const int64_t width = n - r0;
    for (size_t k = 0; k < rows.size(); ++k) {
      const int64_t i = rows[k];
      if (removed[static_cast<size_t>(i)]) continue;
      keep.push_back(i);
      const bool* row = m + static_cast<int64_t>(k) * width;
      for (int64_t j = i + 1 - r0; j < width; ++j) removed[static_cast<size_t>(r0 + j)] |= static_cast<uint8_t>(row[j]);
    }
  }
  return at::tensor(keep, at::TensorOptions(at::kLong)).to(sorted.device());
}

/// Greedy NMS of boxes (N×4) by scores (N); with `classes` (N int64, or undefined) a box only
/// suppresses boxes of its own class. `fn` names the caller in errors. The IoU is computed in
/// the boxes' compute dtype (float32 for half precision) and compared with the double
/// threshold, as torchvision's CPU kernel does.
inline at::Tensor nms_impl(const char* fn, const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                           double iou_threshold) {
  check_boxes(fn, "boxes", boxes);
  TORCH_CHECK(scores.defined() && scores.dim() == 1 && scores.size(0) == boxes.size(0), fn,
              ": expected scores of shape (", boxes.size(0), "), got ",
              scores.defined() ? scores.sizes() : at::IntArrayRef{});
  TORCH_CHECK(scores.is_floating_point(), fn, ": expected floating-point scores, got ", scores.scalar_type());
  check_same_device(fn, boxes, "boxes", scores, "scores");
  TORCH_CHECK(iou_threshold >= 0 && iou_threshold <= 1, fn, ": iou_threshold must lie in [0, 1], got ", iou_threshold);
  if (classes.defined()) {
    TORCH_CHECK(classes.dim() == 1 && classes.size(0) == boxes.size(0), fn, ": expected idxs of shape (", boxes.size(0),
                "), got ", classes.sizes());
    TORCH_CHECK(!classes.is_floating_point() && !classes.is_complex() && classes.scalar_type() != at::kBool, fn,
                ": expected integer idxs, got ", classes.scalar_type());
    check_same_device(fn, boxes, "boxes", classes, "idxs");
  }
  const int64_t n = boxes.size(0);
  const auto index_options = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, index_options);

  // Highest score first; equal scores keep their input order.
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).to(compute_dtype(boxes));
  const auto sorted_classes = classes.defined() ? classes.index_select(0, order) : at::Tensor();
  const double threshold = threshold_below(iou_threshold, sorted.scalar_type());
  const auto keep = boxes.is_cpu() ? at::tensor(nms_cpu(sorted, sorted_classes, threshold), index_options)
                                   : nms_aten(sorted, sorted_classes, threshold);
  return order.index_select(0, keep);
}

}  // namespace detail

/// Non-maximum suppression, as `torchvision.ops.nms`: visits the boxes by decreasing score and
/// keeps a box unless its IoU with an already kept box is greater than `iou_threshold`
/// (IoU = |a ∩ b| / (|a| + |b| − |a ∩ b|), areas without the +1 of older conventions). The IoU
/// is computed in the boxes' dtype (float32 for half precision) with torchvision's CPU
/// arithmetic and compared with the threshold as a double, never with the threshold rounded to
/// the boxes' dtype: with float32 boxes an IoU of float32(0.6) is above 0.6 and suppresses.
///
/// boxes: N×4 xyxy, scores: N, floating, same device (CPU or CUDA). Returns the int64 indices
/// of the kept boxes, highest score first, on the boxes' device. Equal scores are visited in
/// input order (a stable sort); NaN scores sort first, as `torch.sort` orders them. The work is
/// about (kept boxes) × (boxes) IoUs: on the CPU a vectorised scan over the boxes still alive, on
/// CUDA a tile of the live rows' IoUs at a time; filter by score / top-k first, as detectors do.
///
/// Throws c10::Error naming `nms` for boxes not N×4, scores not of shape (N), integer dtypes,
/// mixed devices, or an `iou_threshold` outside [0, 1] (NaN included: it would keep every box).
///
/// Example:
///   auto keep = crowdloss::nms(boxes, scores, 0.6);
///   auto kept_boxes = boxes.index_select(0, keep);
inline at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return detail::nms_impl("nms", boxes, scores, at::Tensor(), iou_threshold);
}

/// Class-aware non-maximum suppression, as `torchvision.ops.batched_nms`: `nms` in which a box
/// only suppresses boxes with the same `idxs` value (class, or image in a batch). Computed
/// exactly (no coordinate-offset trick), so the result equals running `nms` per class and
/// merging the kept indices by decreasing score.
///
/// boxes: N×4, scores: N floating; idxs: N integer; one device. Returns the kept indices (int64,
/// highest score first). Throws c10::Error naming `batched_nms` for the shape, dtype, device and
/// threshold errors of `nms` and for idxs that are not an integer tensor of shape (N).
///
/// Example:
///   auto keep = crowdloss::batched_nms(boxes, scores, labels, 0.5);
inline at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                              double iou_threshold) {
  TORCH_CHECK(idxs.defined(), "batched_nms: idxs must be a defined tensor");
  return detail::nms_impl("batched_nms", boxes, scores, idxs, iou_threshold);
}

}  // namespace crowdloss
