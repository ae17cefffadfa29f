#pragma once
/// \file
/// Non-maximum suppression with torchvision's semantics (`torchvision.ops.nms` and
/// `batched_nms`), for the detection modes that need it (one-to-many assignments such as FCOS
/// and LLA). One dispatch point (nms_dispatch): on the CPU a vectorised greedy scan
/// (detail/nms_cpu.hpp); on CUDA, where `cuda_kernels_enabled`, crowdloss's two kernels (an IoU
/// bit mask and a one-block scan, detail/nms_cuda.hpp) for up to 65,536 boxes; elsewhere ATen ops
/// (detail/nms_aten.hpp) on the boxes' device, a tile of rows of the IoU mask at a time, with the
/// greedy scan on the host over the tile's mask — the reference that both kernels are tested
/// against.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/nms_aten.hpp>
#include <crowdloss/detail/nms_cpu.hpp>
#include <crowdloss/detail/nms_cuda.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {

namespace detail {

/// Checks NMS's inputs: boxes N×4, scores N, floating, on one device; `classes` (or undefined)
/// N integers there too; the threshold in [0, 1].
inline void check_nms_inputs(const char* fn, const at::Tensor& boxes, const at::Tensor& scores,
                             const at::Tensor& classes, double iou_threshold) {
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
}

/// The one dispatch point of `nms` and `batched_nms` (inputs checked): greedy NMS of boxes (N×4)
/// by scores (N); with `classes` (N integers, or undefined) a box only suppresses boxes of its own
/// class. The IoU is computed in the boxes' compute dtype (float32 for half precision) and
/// compared with the double threshold, as torchvision's CPU kernel does: the CPU kernel on the
/// CPU, the CUDA kernels where nms_cuda_takes the boxes, the ATen path elsewhere.
inline at::Tensor nms_dispatch(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                               double iou_threshold) {
  const int64_t n = boxes.size(0);
  const auto index_options = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, index_options);

  // Highest score first; equal scores keep their input order.
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).to(compute_dtype(boxes));
  const auto sorted_classes = classes.defined() ? classes.index_select(0, order) : at::Tensor();
  const double threshold = threshold_below(iou_threshold, sorted.scalar_type());
  const auto keep = boxes.is_cpu()           ? at::tensor(nms_cpu(sorted, sorted_classes, threshold), index_options)
                    : nms_cuda_takes(sorted) ? nms_cuda(sorted, sorted_classes, threshold)
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
/// CUDA a tile of the live rows' IoUs at a time — or, with `crowdloss::cuda_kernels_enabled()`
/// and at most 65,536 boxes, every pair's IoU in one launch (a mask of N²/8 bytes) and the scan
/// in another, with one host read at the end; filter by score / top-k first, as detectors do.
///
/// Throws c10::Error naming `nms` for boxes not N×4, scores not of shape (N), integer dtypes,
/// mixed devices, or an `iou_threshold` outside [0, 1] (NaN included: it would keep every box).
///
/// Example:
/// ```cpp
/// auto keep = crowdloss::nms(boxes, scores, 0.6);
/// auto kept_boxes = boxes.index_select(0, keep);
/// ```
inline at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  detail::check_nms_inputs("nms", boxes, scores, at::Tensor(), iou_threshold);
  return detail::nms_dispatch(boxes, scores, at::Tensor(), iou_threshold);
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
/// ```cpp
/// auto keep = crowdloss::batched_nms(boxes, scores, labels, 0.5);
/// ```
inline at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                              double iou_threshold) {
  TORCH_CHECK(idxs.defined(), "batched_nms: idxs must be a defined tensor");
  detail::check_nms_inputs("batched_nms", boxes, scores, idxs, iou_threshold);
  return detail::nms_dispatch(boxes, scores, idxs, iou_threshold);
}

}  // namespace crowdloss
