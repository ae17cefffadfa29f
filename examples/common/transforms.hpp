#pragma once
// Augmentation in torch ops, with the head points carried along: longest-side resize, padding to
// a multiple, random crop, horizontal flip, colour jitter and normalisation. Images are 3×H×W
// float tensors in [0, 1] until `normalize`.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

namespace crowdloss_examples {

/// An image and its head points (N×2, x then y, in this image's pixels).
struct Sample {
  at::Tensor image;
  at::Tensor points;
};

/// uint8 H×W×3 (as decoded) → float 3×H×W in [0, 1].
inline at::Tensor to_chw_float(const at::Tensor& hwc) { return hwc.permute({2, 0, 1}).to(torch::kFloat32).div(255); }

/// Resizes (bilinear) so that the longer side is `side`; points scale with each axis.
inline Sample resize_longest(const Sample& s, int64_t side) {
  const int64_t H = s.image.size(1), W = s.image.size(2);
  const double scale = static_cast<double>(side) / static_cast<double>(std::max(H, W));
  const int64_t h = std::max<int64_t>(1, std::llround(H * scale)), w = std::max<int64_t>(1, std::llround(W * scale));
  if (h == H && w == W) return s;
  const auto image =
      torch::nn::functional::interpolate(s.image.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                                                   .size(std::vector<int64_t>{h, w})
                                                                   .mode(torch::kBilinear)
                                                                   .align_corners(false));
  const auto factor =
      torch::tensor({static_cast<float>(w) / static_cast<float>(W), static_cast<float>(h) / static_cast<float>(H)});
  return {image[0], s.points * factor};
}

/// Zero-pads at the bottom/right to multiples of `multiple`; points are unchanged.
inline Sample pad_to_multiple(const Sample& s, int64_t multiple) {
  const int64_t H = s.image.size(1), W = s.image.size(2);
  const int64_t ph = (multiple - H % multiple) % multiple, pw = (multiple - W % multiple) % multiple;
  if (ph == 0 && pw == 0) return s;
  return {torch::constant_pad_nd(s.image, {0, pw, 0, ph}, 0), s.points};
}

/// The top-left corner {y0, x0} of an h×w window at a random position over an H×W image (0
/// along an axis where the image is smaller than the window).
inline std::array<int64_t, 2> random_window(int64_t H, int64_t W, int64_t h, int64_t w, at::Generator& gen) {
  const int64_t y0 = torch::randint(0, std::max<int64_t>(H, h) - h + 1, {1}, gen).item<int64_t>();
  const int64_t x0 = torch::randint(0, std::max<int64_t>(W, w) - w + 1, {1}, gen).item<int64_t>();
  return {y0, x0};
}

/// The h×w window whose top-left corner is (y0, x0) (the image zero-padded first at the
/// bottom/right where it is smaller); keeps the points inside the window, shifted into it.
inline Sample crop(const Sample& s, int64_t y0, int64_t x0, int64_t h, int64_t w) {
  const int64_t H = s.image.size(1), W = s.image.size(2);
  const auto padded =
      torch::constant_pad_nd(s.image, {0, std::max<int64_t>(0, x0 + w - W), 0, std::max<int64_t>(0, y0 + h - H)}, 0);
  const auto shifted = s.points - torch::tensor({static_cast<float>(x0), static_cast<float>(y0)});
  const auto inside = (shifted.select(1, 0) >= 0) & (shifted.select(1, 0) < w) & (shifted.select(1, 1) >= 0) &
                      (shifted.select(1, 1) < h);
  return {padded.narrow(1, y0, h).narrow(2, x0, w), shifted.index({inside})};
}

/// An h×w window at a random position (zero-padded first where the image is smaller); keeps
/// the points inside the window, shifted into it.
inline Sample random_crop(const Sample& s, int64_t h, int64_t w, at::Generator& gen) {
  const auto [y0, x0] = random_window(s.image.size(1), s.image.size(2), h, w, gen);
  return crop(s, y0, x0, h, w);
}

/// Mirrors left-right: x → W − x.
inline Sample hflip(const Sample& s) {
  const double W = static_cast<double>(s.image.size(2));
  auto points = s.points.clone();
  points.select(1, 0).mul_(-1).add_(W);
  return {s.image.flip({2}), points};
}

/// Random brightness, contrast and saturation factors in [1 − strength, 1 + strength].
inline Sample colour_jitter(const Sample& s, double strength, at::Generator& gen) {
  const auto f = 1 + strength * (2 * torch::rand({3}, gen) - 1);
  auto image = s.image * f[0].item<float>();
  const auto grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0);
  image = (image - grey.mean()) * f[1].item<float>() + grey.mean();
  image = (image - grey) * f[2].item<float>() + grey;
  return {image.clamp(0, 1), s.points};
}

/// The loaders' training augmentation, for any sample type with these transforms: a random
/// crop×crop window (when crop > 0), a horizontal flip with probability 1/2, colour jitter 0.2.
template <typename S>
S random_augment(const S& s, int64_t crop, at::Generator& gen) {
  S x = crop > 0 ? random_crop(s, crop, crop, gen) : s;
  if (torch::rand({1}, gen).item<float>() < 0.5) x = hflip(x);
  return colour_jitter(x, 0.2, gen);
}

/// ImageNet normalisation (the statistics the VGG front end was trained with).
inline at::Tensor normalize(const at::Tensor& image) {
  const auto mean = torch::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1});
  const auto std = torch::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1});
  return (image - mean) / std;
}

}  // namespace crowdloss_examples
