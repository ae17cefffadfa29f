#pragma once
// Box-aware transforms for the detection example: the boxes travel as their corner points through
// the point transforms of transforms.hpp; only what is specific to boxes (x0/x1 after a flip,
// clipping) is done here.
#include "transforms.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>

namespace crowdloss_examples {

/// An image (3×H×W float in [0, 1]) with its people and ignore regions, in its own pixels.
struct BoxSample {
  at::Tensor image;
  at::Tensor boxes;
  at::Tensor ignore;
};

namespace detection_detail {

/// People then ignore regions as the corner points (x0, y0), (x1, y1) of one Sample.
inline Sample corners(const BoxSample& s) {
  return {s.image, torch::cat({s.boxes.reshape({-1, 4}), s.ignore.reshape({-1, 4})}).reshape({-1, 2})};
}

/// The inverse of `corners`, `people` being the number of people.
inline BoxSample from_corners(const Sample& x, int64_t people) {
  const auto b = x.points.reshape({-1, 4});
  return {x.image, b.narrow(0, 0, people), b.narrow(0, people, b.size(0) - people)};
}

inline at::Tensor box_area(const at::Tensor& b) {
  return (b.select(1, 2) - b.select(1, 0)).clamp_min(0) * (b.select(1, 3) - b.select(1, 1)).clamp_min(0);
}

}  // namespace detection_detail

/// Resizes so that the longer side is `side`; boxes scale with each axis.
inline BoxSample resize_longest(const BoxSample& s, int64_t side) {
  return detection_detail::from_corners(resize_longest(detection_detail::corners(s), side), s.boxes.size(0));
}

/// Zero-pads at the bottom/right to multiples of `multiple`; boxes are unchanged.
inline BoxSample pad_to_multiple(const BoxSample& s, int64_t multiple) {
  return {pad_to_multiple(Sample{s.image, {}}, multiple).image, s.boxes, s.ignore};
}

/// Mirrors left-right: x → W − x, the two x of each box swapped.
inline BoxSample hflip(const BoxSample& s) {
  auto f = detection_detail::from_corners(hflip(detection_detail::corners(s)), s.boxes.size(0));
  const auto order = torch::tensor({2, 1, 0, 3}, torch::kLong);
  return {f.image, f.boxes.index_select(1, order), f.ignore.index_select(1, order)};
}

/// The h×w window at (y0, x0) (as `crop` of transforms.hpp). Boxes shift into the window and are
/// clipped to it; a person stays if the clipped box keeps at least `min_kept` of its area and is
/// at least `min_side` pixels wide and high, an ignore region if anything of it is left.
inline BoxSample crop(const BoxSample& s, int64_t y0, int64_t x0, int64_t h, int64_t w, double min_kept = 0.25,
                      double min_side = 2) {
  const auto image = crop(Sample{s.image, torch::zeros({0, 2})}, y0, x0, h, w).image;
  const auto shift =
      torch::tensor({static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x0), static_cast<float>(y0)});
  const auto limit =
      torch::tensor({static_cast<float>(w), static_cast<float>(h), static_cast<float>(w), static_cast<float>(h)});
  const auto moved = s.boxes.reshape({-1, 4}) - shift, clipped = torch::minimum(moved.clamp_min(0), limit);
  const auto people = (detection_detail::box_area(clipped) >= min_kept * detection_detail::box_area(moved)) &
                      (clipped.select(1, 2) - clipped.select(1, 0) >= min_side) &
                      (clipped.select(1, 3) - clipped.select(1, 1) >= min_side);
  const auto regions = torch::minimum((s.ignore.reshape({-1, 4}) - shift).clamp_min(0), limit);
  return {image, clipped.index({people}), regions.index({detection_detail::box_area(regions) > 0})};
}

/// An h×w window at a random position (as `random_crop` of transforms.hpp), boxes as in `crop`.
inline BoxSample random_crop(const BoxSample& s, int64_t h, int64_t w, at::Generator& gen) {
  const auto [y0, x0] = random_window(s.image.size(1), s.image.size(2), h, w, gen);
  return crop(s, y0, x0, h, w);
}

/// Random brightness, contrast and saturation (as in transforms.hpp); boxes are unchanged.
inline BoxSample colour_jitter(const BoxSample& s, double strength, at::Generator& gen) {
  return {colour_jitter(Sample{s.image, {}}, strength, gen).image, s.boxes, s.ignore};
}

}  // namespace crowdloss_examples
