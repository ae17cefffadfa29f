#pragma once
/// \file
/// What the batched assigners share: the checks of a batch's inputs, its ground truth padded to
/// B×G tensors on the device (one copy), and the k lowest or highest entries along the last
/// dimension with ties going to the lower index.

#include <crowdloss/detail/detection_checks.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss {
namespace detail {

/// A batch's ground truth padded to its largest image: boxes B×G×4 and classes B×G (zeros where
/// padded), `valid` B×G marks the real ones, `counts` holds each image's number.
struct GtBatch {
  at::Tensor boxes, classes, valid;
  std::vector<int64_t> counts;
};

/// Checks a batch of per-image ground truth against B images on `device`: B tensors of boxes
/// (G_b×4, floating) and, when `classes` is given, B int64 tensors of G_b classes in [min_class,
/// num_classes). The values (finite boxes, the classes' range) are checked on their
/// concatenation, with one host read each; an error names the image and the row.
inline void check_gt_batch(const char* fn, int64_t B, const at::Device& device, const std::vector<at::Tensor>& boxes,
                           const std::vector<at::Tensor>* classes, int64_t min_class = 0, int64_t num_classes = 0) {
  TORCH_CHECK(static_cast<int64_t>(boxes.size()) == B, fn, ": expected gt_boxes for ", B, " images, got ",
              boxes.size());
  if (classes)
    TORCH_CHECK(static_cast<int64_t>(classes->size()) == B, fn, ": expected gt_classes for ", B, " images, got ",
                classes->size());
  for (size_t b = 0; b < boxes.size(); ++b) {
    const std::string name = "gt_boxes[" + std::to_string(b) + "]";
    check_boxes(fn, name.c_str(), boxes[b]);
    TORCH_CHECK(boxes[b].device() == device, fn, ": ", name, " is on ", boxes[b].device(), ", the inputs on ", device);
    if (!classes) continue;
    const auto& c = (*classes)[b];
    TORCH_CHECK(c.defined() && c.dim() == 1 && c.size(0) == boxes[b].size(0), fn, ": expected gt_classes[", b,
                "] of shape (", boxes[b].size(0), "), got ", c.defined() ? c.sizes() : at::IntArrayRef{});
    TORCH_CHECK(c.scalar_type() == at::kLong, fn, ": expected int64 gt_classes[", b, "], got ", c.scalar_type());
    TORCH_CHECK(c.device() == device, fn, ": gt_classes[", b, "] is on ", c.device(), ", the inputs on ", device);
  }
  if (boxes.empty()) return;
  const auto all = at::cat(boxes);
  const int64_t bad = first_nonfinite_box(all);
  if (bad >= 0) {
    int64_t b = 0, g = bad;
    while (g >= boxes[static_cast<size_t>(b)].size(0)) g -= boxes[static_cast<size_t>(b++)].size(0);
    check_finite_boxes(fn, ("gt_boxes[" + std::to_string(b) + "]").c_str(), boxes[static_cast<size_t>(b)]);
  }
  if (!classes || all.size(0) == 0) return;
  const auto c = at::cat(*classes);
  const auto range = at::stack({c.min(), c.max()}).cpu();
  const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
  TORCH_CHECK(lo >= min_class && hi < num_classes, fn, ": gt_classes must lie in [", min_class, ", ", num_classes,
              "), got values from ", lo, " to ", hi);
}

/// Validates a batch's detection inputs: `cls` B×A×K, `boxes` B×A×4 and `points` A×2 (floating,
/// on one device), and B images of gts (check_gt_batch) with classes in [min_class, K).
inline void check_batched_detection_inputs(const char* fn, const at::Tensor& cls, const char* cls_name,
                                           const at::Tensor& boxes, const char* boxes_name, const at::Tensor& points,
                                           const std::vector<at::Tensor>& gt_boxes,
                                           const std::vector<at::Tensor>& gt_classes, int64_t min_class) {
  TORCH_CHECK(cls.defined() && cls.dim() == 3 && cls.size(2) >= 1, fn, ": expected ", cls_name,
              " of shape (B, A, K) with K >= 1, got ", cls.defined() ? cls.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cls.is_floating_point(), fn, ": expected floating-point ", cls_name, ", got ", cls.scalar_type());
  const int64_t B = cls.size(0), A = cls.size(1);
  TORCH_CHECK(boxes.defined() && boxes.dim() == 3 && boxes.size(0) == B && boxes.size(1) == A && boxes.size(2) == 4, fn,
              ": expected ", boxes_name, " of shape (", B, ", ", A, ", 4), got ",
              boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(boxes.is_floating_point(), fn, ": expected floating-point ", boxes_name, ", got ", boxes.scalar_type());
  check_points(fn, points);
  TORCH_CHECK(points.size(0) == A, fn, ": points has ", points.size(0), " anchors but ", cls_name, " has ", A);
  check_same_device(fn, cls, cls_name, boxes, boxes_name);
  check_same_device(fn, cls, cls_name, points, "points");
  check_gt_batch(fn, B, cls.device(), gt_boxes, &gt_classes, min_class, cls.size(2));
}

/// Pads a batch's ground truth (checked by check_gt_batch) to B×G tensors on the device of
/// `like`, with one copy of each kind to it; without `classes` they are zeros. The boxes take the
/// dtype that `like`'s and theirs promote to, as the one-image ops compute in.
inline GtBatch pad_gt_batch(const std::vector<at::Tensor>& boxes, const std::vector<at::Tensor>* classes,
                            const at::Tensor& like) {
  const auto B = static_cast<int64_t>(boxes.size());
  GtBatch out;
  int64_t G = 0;
  auto dtype = like.scalar_type();
  for (const auto& b : boxes) {
    out.counts.push_back(b.size(0));
    G = std::max(G, b.size(0));
    dtype = at::promote_types(dtype, b.scalar_type());
  }
  const auto device = like.device();
  const auto box_options = like.options().dtype(dtype);
  auto rows = at::empty({B * G}, at::kLong), valid = at::zeros({B, G}, at::kBool);
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < out.counts[static_cast<size_t>(b)]; ++g) rows.data_ptr<int64_t>()[n++] = b * G + g;
    valid[b].narrow(0, 0, out.counts[static_cast<size_t>(b)]).fill_(true);
  }
  const auto index = rows.narrow(0, 0, n).to(device);
  out.valid = valid.to(device);
  out.boxes = at::zeros({B * G, 4}, box_options);
  out.classes = at::zeros({B * G}, box_options.dtype(at::kLong));
  if (n > 0) {
    std::vector<at::Tensor> same_dtype;
    for (const auto& b : boxes) same_dtype.push_back(b.to(dtype));
    out.boxes.index_copy_(0, index, at::cat(same_dtype));
    if (classes) out.classes.index_copy_(0, index, at::cat(*classes));
  }
  out.boxes = out.boxes.view({B, G, 4});
  out.classes = out.classes.view({B, G});
  return out;
}

/// A CPU batch's result one image at a time (the CPU paths work per image, and a padded
/// B×G×A pass costs more than it saves there): `one(b)` (A int64 each) stacked to B×A.
template <typename Fn>
at::Tensor stack_per_image(int64_t B, int64_t A, const at::TensorOptions& options, Fn&& one) {
  std::vector<at::Tensor> each;
  for (int64_t b = 0; b < B; ++b) each.push_back(one(b));
  return B == 0 ? at::empty({0, A}, options.dtype(at::kLong)) : at::stack(each);
}

/// A bool mask of the k lowest (or, with `largest`, highest) entries along the last dimension,
/// among equal values the lower indices first (a stable sort's first k), and those entries'
/// values in order (topk's, which do not depend on the ties). NaN counts as the highest value.
/// 1 ≤ k ≤ the last dimension's size. On the CPU, where reading a flag costs nothing, the NaN
/// terms and the ordering of ties run only where they change the answer; on other devices always.
inline std::pair<at::Tensor, at::Tensor> k_extreme(const at::Tensor& v, int64_t k, bool largest) {
  const auto values = std::get<0>(v.topk(k, -1, largest, /*sorted=*/true));
  const auto kth = values.narrow(-1, k - 1, 1), kth_nan = kth.isnan();
  // A NaN matters only where one is among topk's values (the highest when largest, the last
  // taken otherwise).
  const bool host = v.is_cpu(), nan = !host || values.isnan().any().item<bool>();
  const auto beyond_of = [&](const at::Tensor& t) {
    auto b = largest ? t.gt(kth) : t.lt(kth);
    if (nan)
      b.logical_or_(largest ? t.isnan().logical_and_(kth_nan.logical_not())
                            : t.isnan().logical_not_().logical_and_(kth_nan));
    return b;
  };
  const auto tie_of = [&](const at::Tensor& t) {
    auto e = t.eq(kth);
    if (nan) e.logical_or_(t.isnan().logical_and_(kth_nan));
    return e;
  };
  auto beyond = beyond_of(v);
  const auto tie = tie_of(v);
  const auto room = tie_of(values).sum(-1, /*keepdim=*/true);  // the ties among topk's k values
  // Where no row has more ties than room, every tie is taken: the same as the ordered mask below.
  if (host && !tie.sum(-1, /*keepdim=*/true).gt(room).any().item<bool>()) return {beyond.logical_or_(tie), values};
  return {beyond.logical_or_(tie.logical_and(tie.cumsum(-1) <= room)), values};
}

}  // namespace detail
}  // namespace crowdloss
