#pragma once
/// \file
/// FCOS's classic one-to-many label assignment (Tian et al., "FCOS: Fully Convolutional One-Stage
/// Object Detection", ICCV 2019, with the centre sampling of its later versions), for one
/// image or a batch: the baseline the prediction-aware assignments (POTO, LLA) are compared against.

#include <crowdloss/detail/assign_batch.hpp>
#include <crowdloss/detail/box_geometry.hpp>
#include <crowdloss/detail/detection_checks.hpp>
#include <crowdloss/detail/spatial_prior.hpp>
#include <crowdloss/detection/boxes.hpp>

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {

/// Options for `crowdloss::fcos_assign`.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::FCOSAssignOptions().strides({8, 16, 32, 64, 128})
///                 .level_sizes({10000, 2500, 625, 169, 49});
/// ```
struct FCOSAssignOptions {
  /// Stride of each FPN level (required).
  TORCH_ARG(std::vector<double>, strides) = {};
  /// Anchors per level, in the order of the points (required).
  TORCH_ARG(std::vector<int64_t>, level_sizes) = {};
  /// Half-side of the centre region in strides (FCOS: 1.5); 0 = anywhere inside the box.
  TORCH_ARG(double, center_sampling_radius) = 1.5;
  /// Bounds between the levels' regression ranges (one fewer than levels): level l takes the
  /// (anchor, gt) pairs whose largest ltrb distance m lies in [bounds[l−1], bounds[l]], with
  /// −1 and +∞ at the ends. FCOS: {64, 128, 256, 512} for P3–P7.
  TORCH_ARG(std::vector<double>, size_bounds) = std::vector<double>{64, 128, 256, 512};
};

namespace detail {

/// Checks FCOS's levels against A anchors.
inline void check_fcos_options(const char* fn, int64_t A, const FCOSAssignOptions& options) {
  const auto& sizes = options.level_sizes();
  check_levels(fn, sizes, A, &options.strides());
  TORCH_CHECK(options.size_bounds().size() + 1 == sizes.size(), fn, ": expected ", sizes.size() - 1,
              " size_bounds for ", sizes.size(), " levels, got ", options.size_bounds().size());
}

/// FCOS's assignment of B images at once (any device): points A×2, gt_boxes B×G×4 (finite), of
/// which `valid` (B×G bool; undefined: all) are real. Returns B×A.
inline at::Tensor fcos_assign_aten(const char* fn, const at::Tensor& points, const at::Tensor& gt_boxes,
                                   const at::Tensor& valid, const FCOSAssignOptions& options) {
  const auto& sizes = options.level_sizes();
  const auto& bounds = options.size_bounds();
  const auto inside = spatial_prior(fn, points, gt_boxes, options.center_sampling_radius(), options.strides(), sizes);
  const auto reach = largest_ltrb_distance(points, gt_boxes);  // B×G×A
  std::vector<at::Tensor> lo, hi;
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t l = 0; l < sizes.size(); ++l) {
    lo.push_back(at::full({sizes[l]}, l == 0 ? -1.0 : bounds[l - 1], reach.options()));
    hi.push_back(at::full({sizes[l]}, l + 1 == sizes.size() ? inf : bounds[l], reach.options()));
  }
  auto candidate = inside.logical_and_(reach >= at::cat(lo)).logical_and_(reach <= at::cat(hi));
  if (valid.defined()) candidate.logical_and_(valid.unsqueeze(-1));
  const auto area = box_area(gt_boxes).unsqueeze(-1).expand_as(reach);
  const auto [min_area, gt] = area.masked_fill(candidate.logical_not(), inf).min(-2);
  return gt.masked_fill(min_area == inf, -1);
}

}  // namespace detail

/// FCOS label assignment for one image. Returns for each anchor the index of its gt (A int64,
/// −1 = background, on the inputs' device).
///
/// An anchor point a on level l is a candidate for gt g when it lies inside g's spatial prior
/// (strictly inside the box and, with centre sampling, inside the square of half-side
/// radius·stride_l around the box centre, clipped to the box) and the largest of its ltrb
/// distances to g lies in level l's regression range [lo_l, hi_l] (see `size_bounds`; both ends
/// inclusive, as AdelaiDet). Among its candidates an anchor takes the gt of smallest area (the
/// first one on ties). 0 gts: all −1.
///
/// points: A×2 (anchor points, e.g. from `anchor_points`); gt_boxes: G×4 xyxy; floating, one
/// device. Throws c10::Error naming `fcos_assign` for other shapes, a gt box with a NaN or
/// infinite coordinate (naming its index), integer dtypes, mixed devices, a negative radius,
/// missing or inconsistent `strides` / `level_sizes`, or a number of size bounds other than
/// levels − 1.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::FCOSAssignOptions().strides({8, 16}).level_sizes({100 * 168, 50 * 84});
/// auto points = crowdloss::anchor_points({{100, 168}, {50, 84}}, {8, 16});
/// auto gt_of_anchor = crowdloss::fcos_assign(points, gt_boxes, opts);
/// auto foreground = gt_of_anchor >= 0;
/// ```
inline at::Tensor fcos_assign(const at::Tensor& points, const at::Tensor& gt_boxes,
                              const FCOSAssignOptions& options = {}) {
  constexpr const char* fn = "fcos_assign";
  detail::check_points(fn, points);
  detail::check_boxes(fn, "gt_boxes", gt_boxes);
  detail::check_same_device(fn, points, "points", gt_boxes, "gt_boxes");
  detail::check_finite_boxes(fn, "gt_boxes", gt_boxes);
  const int64_t A = points.size(0), G = gt_boxes.size(0);
  detail::check_fcos_options(fn, A, options);
  if (G == 0 || A == 0) return at::full({A}, -1, points.options().dtype(at::kLong));
  return detail::fcos_assign_aten(fn, points, gt_boxes.unsqueeze(0), {}, options).squeeze(0);
}

/// FCOS label assignment for a batch of B images that share their anchor points: image b's
/// result is `fcos_assign(points, gt_boxes[b], options)`. Returns B×A int64 on the inputs'
/// device. CPU tensors take the one-image path per image; on other devices the whole batch is
/// one pass of ATen ops over B×G×A (G the largest image's count, the others padded), with no
/// per-image kernels and no host reads beyond the input checks.
///
/// points: A×2; gt_boxes: B tensors of G_b×4 xyxy boxes (any G_b, 0 included), floating, on the
/// points' device. Errors as for the one-image form; a box's error names its image
/// (`gt_boxes[b][g]`).
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::FCOSAssignOptions().strides({8, 16}).level_sizes({100 * 168, 50 * 84});
/// auto points = crowdloss::anchor_points({{100, 168}, {50, 84}}, {8, 16});
/// auto gt_of_anchor = crowdloss::fcos_assign_batch(points, {gt_boxes, gt_boxes.flip(0)}, opts);  // 2×A
/// ```
inline at::Tensor fcos_assign_batch(const at::Tensor& points, const std::vector<at::Tensor>& gt_boxes,
                                    const FCOSAssignOptions& options = {}) {
  constexpr const char* fn = "fcos_assign_batch";
  detail::check_points(fn, points);
  const auto B = static_cast<int64_t>(gt_boxes.size()), A = points.size(0);
  detail::check_gt_batch(fn, B, points.device(), gt_boxes, nullptr);
  detail::check_fcos_options(fn, A, options);
  if (points.is_cpu())
    return detail::stack_per_image(B, A, points.options(), [&](int64_t b) {
      return fcos_assign(points, gt_boxes[static_cast<size_t>(b)], options);
    });
  const auto gts = detail::pad_gt_batch(gt_boxes, nullptr, points);
  if (gts.boxes.size(1) == 0 || A == 0) return at::full({B, A}, -1, points.options().dtype(at::kLong));
  return detail::fcos_assign_aten(fn, points, gts.boxes, gts.valid, options);
}

}  // namespace crowdloss
