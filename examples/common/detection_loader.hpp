#pragma once
// The detection example's multi-worker loader: the counting Loader's schedule and guarantees
// (loader.hpp's LoaderBase), with box-aware augmentation and images padded to the model's
// largest stride.
#include "box_transforms.hpp"
#include "detection_datasets.hpp"
#include "image_io.hpp"
#include "loader.hpp"

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

struct DetectionLoaderOptions {
  int64_t batch = 8;
  int64_t longest_side = 0;  // resize so that the longer side is this (0: keep the size)
  int64_t crop = 0;          // side of the random square crop when augmenting (0: no crop)
  int64_t multiple = 32;     // images are zero-padded to a multiple of this (the model's largest stride)
  bool augment = false;      // random crop, horizontal flip, colour jitter
  bool shuffle = false;
  int64_t workers = 2;
  uint64_t seed = 0;
  Shard shard;                // this rank's part of each epoch (data-parallel runs)
  BadSamples* bad = nullptr;  // an image that cannot be read: stop (null) or as `bad` says
  bool pin_memory = false;    // page-locked images (training on a GPU: see `pinned`)
};

struct DetectionBatch {
  at::Tensor images;                      // B×3×H×W, normalised, zero-padded to the largest (a multiple)
  std::vector<at::Tensor> boxes, ignore;  // per image: N×4 people, M×4 ignore regions, xyxy pixels
  std::vector<std::string> files;
  std::vector<std::array<int64_t, 2>> sizes;  // each image's {h, w} before padding

  /// The batch with its tensors on `device` (to_device: no wait for a GPU).
  DetectionBatch to(const torch::Device& device) const {
    DetectionBatch b = *this;
    b.images = to_device(images, device);
    for (auto& t : b.boxes) t = to_device(t, device);
    for (auto& t : b.ignore) t = to_device(t, device);
    return b;
  }

  /// Moves the images to page-locked memory (`pinned`).
  void pin_memory() { images = pinned(images); }
};

/// The detection counterpart of Loader, with the same guarantees: the sample at position p of
/// epoch e's order is augmented from a generator seeded by (seed, e, p), so batches do not depend
/// on the number of workers, and an epoch can be resumed at any batch.
class DetectionLoader
    : public LoaderBase<DetectionLoader, DetectionSample, BoxSample, DetectionBatch, DetectionLoaderOptions> {
 public:
  DetectionLoader(std::vector<DetectionSample> samples, DetectionLoaderOptions options)
      : LoaderBase(std::move(samples), checked(std::move(options))) {}

  /// One sample, as the loader prepares it before padding (`gen` drives the augmentation).
  BoxSample prepare(const DetectionSample& s, at::Generator& gen) const {
    BoxSample x{to_chw_float(load_image(s.image)), s.boxes, s.ignore};
    if (o_.longest_side > 0) x = resize_longest(x, o_.longest_side);
    if (o_.augment) x = random_augment(x, o_.crop, gen);
    return x;
  }

  /// The batch of prepared samples `xs`: images zero-padded to the largest, rounded up to the
  /// multiple; each image's size before padding, boxes and ignore regions.
  DetectionBatch collate(std::vector<BoxSample> xs, std::vector<std::string> files) const {
    DetectionBatch b;
    int64_t H = 0, W = 0;
    for (const auto& x : xs) {
      b.sizes.push_back({x.image.size(1), x.image.size(2)});
      b.boxes.push_back(x.boxes.contiguous());
      b.ignore.push_back(x.ignore.contiguous());
      H = std::max(H, x.image.size(1)), W = std::max(W, x.image.size(2));
    }
    H = (H + o_.multiple - 1) / o_.multiple * o_.multiple;
    W = (W + o_.multiple - 1) / o_.multiple * o_.multiple;
    std::vector<at::Tensor> images;
    for (const auto& x : xs)
      images.push_back(normalize(torch::constant_pad_nd(x.image, {0, W - x.image.size(2), 0, H - x.image.size(1)}, 0)));
    b.images = torch::stack(images);
    b.files = std::move(files);
    return b;
  }

 private:
  static DetectionLoaderOptions checked(DetectionLoaderOptions o) {
    if (o.batch < 1 || o.workers < 1 || o.multiple < 1)
      throw std::invalid_argument("DetectionLoader: batch, workers and multiple must be >= 1");
    return o;
  }
};

}  // namespace crowdloss_examples
