#pragma once
// A multi-worker loader for point-annotated crowd images: decodes, augments (in torch ops),
// builds the ground-truth density at the model's output stride with crowdloss, and collates.
// Batch i of epoch e is augmented with a generator seeded from (seed, e, i), so batches are the
// same whatever the number of workers and however they are scheduled — which is what makes
// `--resume` reproduce an uninterrupted run.
#include "datasets.hpp"
#include "image_io.hpp"
#include "transforms.hpp"

#include <crowdloss/crowdloss.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

namespace crowdloss_examples {

struct LoaderOptions {
  int64_t batch = 8;
  int64_t crop = 0;           // side of the random square crop when augmenting (0: no crop)
  int64_t longest_side = 0;   // resize so that the longer side is this (0: keep the size)
  int64_t stride = 8;         // the model's output stride; maps are padded to a multiple of it
  bool augment = false;       // random crop, horizontal flip, colour jitter
  bool shuffle = false;
  int64_t workers = 2;
  uint64_t seed = 0;
  crowdloss::DensityOptions density;  // its stride is set to `stride`
};

struct Batch {
  at::Tensor images;   // B×3×H×W, normalised
  at::Tensor density;  // B×1×(H/stride)×(W/stride), one unit per head
  at::Tensor counts;   // B, the annotated counts of the (cropped) images
  std::vector<std::string> files;
};

class Loader {
 public:
  Loader(std::vector<CrowdSample> samples, LoaderOptions options) : samples_(std::move(samples)), o_(std::move(options)) {
    if (o_.batch < 1 || o_.workers < 1 || o_.stride < 1) throw std::invalid_argument("Loader: batch, workers and stride must be >= 1");
    o_.density.stride(static_cast<double>(o_.stride));
  }

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t batches() const { return (size() + o_.batch - 1) / o_.batch; }

  /// One sample, as the loader prepares it (`gen` drives the augmentation).
  Sample prepare(const CrowdSample& s, at::Generator& gen) const {
    Sample x{to_chw_float(load_image(s.image)), s.points};
    if (o_.longest_side > 0) x = resize_longest(x, o_.longest_side);
    if (o_.augment) {
      if (o_.crop > 0) x = random_crop(x, o_.crop, o_.crop, gen);
      if (torch::rand({1}, gen).item<float>() < 0.5) x = hflip(x);
      x = colour_jitter(x, 0.2, gen);
    }
    return pad_to_multiple(x, o_.stride);
  }

  /// Batch `index` of epoch `epoch`.
  Batch make_batch(int64_t epoch, int64_t index) const {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o_.seed * 1000003ULL + static_cast<uint64_t>(epoch) * 7919ULL +
                                                        static_cast<uint64_t>(index) + 1);
    const auto order = epoch_order(epoch);
    const int64_t begin = index * o_.batch, end = std::min(size(), begin + o_.batch);
    std::vector<Sample> xs;
    Batch b;
    int64_t H = 0, W = 0;
    for (int64_t k = begin; k < end; ++k) {
      const auto& s = samples_[static_cast<size_t>(order[static_cast<size_t>(k)])];
      xs.push_back(prepare(s, gen));
      b.files.push_back(s.image);
      H = std::max(H, xs.back().image.size(1));
      W = std::max(W, xs.back().image.size(2));
    }
    std::vector<at::Tensor> images, maps, counts;
    for (const auto& x : xs) {  // images of different sizes are padded to the largest
      images.push_back(normalize(torch::constant_pad_nd(x.image, {0, W - x.image.size(2), 0, H - x.image.size(1)}, 0)));
      maps.push_back(crowdloss::points_to_density(x.points, H / o_.stride, W / o_.stride, o_.density).unsqueeze(0));
      counts.push_back(torch::full({1}, static_cast<float>(x.points.size(0))));
    }
    b.images = torch::stack(images);
    b.density = torch::stack(maps);
    b.counts = torch::cat(counts);
    return b;
  }

  /// Runs `fn(index, batch)` for the batches of `epoch` in order, starting at `first`, with
  /// `workers` threads preparing up to two batches each ahead. A worker's exception (e.g. a
  /// corrupt image, named in the message) is rethrown here.
  void run_epoch(int64_t epoch, const std::function<void(int64_t, Batch&)>& fn, int64_t first = 0) const {
    const int64_t n = batches();
    std::mutex m;
    std::condition_variable ready, space;
    std::map<int64_t, Batch> done;
    std::exception_ptr error;
    int64_t next = first, consumed = first;
    const int64_t ahead = 2 * o_.workers;
    bool stop = false;
    std::vector<std::thread> workers;
    for (int64_t w = 0; w < o_.workers; ++w) {
      workers.emplace_back([&] {
        for (;;) {
          int64_t i;
          {
            std::unique_lock<std::mutex> lock(m);
            space.wait(lock, [&] { return stop || next >= n || next < consumed + ahead; });
            if (stop || next >= n) return;
            i = next++;
          }
          try {
            auto batch = make_batch(epoch, i);
            std::lock_guard<std::mutex> lock(m);
            done.emplace(i, std::move(batch));
          } catch (...) {
            std::lock_guard<std::mutex> lock(m);
            if (!error) error = std::current_exception();
            stop = true;
          }
          ready.notify_all();
        }
      });
    }
    const auto finish = [&] {
      {
        std::lock_guard<std::mutex> lock(m);
        stop = true;
      }
      space.notify_all();
      for (auto& t : workers) t.join();
    };
    try {
      for (int64_t i = first; i < n; ++i) {
        Batch batch;
        {
          std::unique_lock<std::mutex> lock(m);
          ready.wait(lock, [&] { return error || done.count(i); });
          if (error) std::rethrow_exception(error);
          batch = std::move(done.at(i));
          done.erase(i);
          consumed = i + 1;
        }
        space.notify_all();
        fn(i, batch);
      }
    } catch (...) {
      finish();
      throw;
    }
    finish();
  }

 private:
  std::vector<int64_t> epoch_order(int64_t epoch) const {
    std::vector<int64_t> order(samples_.size());
    std::iota(order.begin(), order.end(), 0);
    if (o_.shuffle) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o_.seed * 31ULL + static_cast<uint64_t>(epoch) + 17);
      const auto perm = torch::randperm(size(), gen, torch::kLong);
      std::copy(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + size(), order.begin());
    }
    return order;
  }

  std::vector<CrowdSample> samples_;
  LoaderOptions o_;
};

}  // namespace crowdloss_examples
