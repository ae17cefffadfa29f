#pragma once
/// \file
/// FCOS's classic one-to-many label assignment (Tian et al., "FCOS: Fully Convolutional One-Stage
/// Object Detection", ICCV 2019, with the centre sampling of its later versions), for one
/// image: the baseline the prediction-aware assignments (POTO, LLA) are compared against.

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
  const auto& sizes = options.level_sizes();
  detail::check_levels(fn, sizes, A, &options.strides());
  const auto& bounds = options.size_bounds();
  TORCH_CHECK(bounds.size() + 1 == sizes.size(), fn, ": expected ", sizes.size() - 1, " size_bounds for ", sizes.size(),
              " levels, got ", bounds.size());
  auto assigned = at::full({A}, -1, points.options().dtype(at::kLong));
  if (G == 0 || A == 0) return assigned;

  const auto inside =
      detail::spatial_prior(fn, points, gt_boxes, options.center_sampling_radius(), options.strides(), sizes);
  const auto reach = ltrb_targets(points, gt_boxes).amax(-1);  // G×A, the largest ltrb distance
  std::vector<at::Tensor> lo, hi;
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t l = 0; l < sizes.size(); ++l) {
    lo.push_back(at::full({sizes[l]}, l == 0 ? -1.0 : bounds[l - 1], reach.options()));
    hi.push_back(at::full({sizes[l]}, l + 1 == sizes.size() ? inf : bounds[l], reach.options()));
  }
  const auto in_range = (reach >= at::cat(lo)).logical_and(reach <= at::cat(hi));
  const auto area = detail::box_area(gt_boxes).unsqueeze(1).expand({G, A});
  const auto candidate_area = area.masked_fill(inside.logical_and(in_range).logical_not(), inf);
  const auto [min_area, gt] = candidate_area.min(0);
  return gt.masked_fill(min_area == inf, -1);
}

}  // namespace crowdloss
