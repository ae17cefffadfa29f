#pragma once
// A multi-worker loader for point-annotated crowd images: decodes, augments (in torch ops),
// builds the ground-truth density at the model's output stride with crowdloss, and collates.
// The sample at position p of epoch e's order is augmented with a generator seeded from
// (seed, e, p), so batches are the same whatever the number of workers and however they are
// scheduled — which is what makes `--resume` reproduce an uninterrupted run — and a sample is
// augmented alike whichever rank of a data-parallel run loads it.
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

/// Which part of each epoch a loader serves: all of it, or rank `rank`'s shard of a data-parallel
/// run of `world` ranks, as PyTorch's DistributedSampler cuts it — positions rank, rank + world, …
/// of the epoch order; with `pad`, the order is first extended by its own beginning to a
/// multiple of `world`, so that every rank has as many batches (training); without, the shards
/// differ by at most one sample (validation).
struct Shard {
  int64_t rank = 0, world = 1;
  bool pad = true;
};

/// Makes the calling loader thread run its tensor ops on one intra-op thread, as PyTorch's
/// DataLoader workers do. Otherwise every loader thread starts an OpenMP team as large as the
/// training step's, and where cores are few the teams take them from the step: with the CPU
/// demo's settings on 2 cores the trainer ran at 0.77–0.84 of the bare step's rate before and
/// 0.86–0.97 after. ATen also makes this count the default of every thread that has not yet
/// started its team, so the thread that starts the loader threads starts its own first
/// (BatchSchedule::run): the training step keeps its threads.
inline void use_one_intraop_thread() { at::set_num_threads(1); }

/// `t` (undefined stays undefined) on `device`. A copy from the host to a GPU does not wait: it is
/// queued on the current stream, and from page-locked memory (`pinned`) the host goes on at once.
inline at::Tensor to_device(const at::Tensor& t, const torch::Device& device) {
  return t.defined() ? t.to(device, /*non_blocking=*/device.is_cuda() && t.is_cpu()) : t;
}

/// `t` (undefined stays undefined) in page-locked host memory, which a GPU copies from while the
/// host goes on (LibTorch's caching host allocator keeps it until that copy is done).
inline at::Tensor pinned(const at::Tensor& t) { return t.defined() ? t.pin_memory() : t; }

/// The part of a loader that does not depend on what it loads: the epoch order (shuffled from
/// (seed, epoch) or in order), this shard's positions in it, the samples of each batch, the
/// generator that augments the sample at position p of epoch e (seeded from (seed, e, p)), and
/// the worker threads that prepare batches ahead of the consumer. Loader and DetectionLoader are
/// this plus their own make_batch.
class BatchSchedule {
 public:
  BatchSchedule(int64_t size, int64_t batch, bool shuffle, int64_t workers, uint64_t seed, Shard shard = {})
      : size_(size), batch_(batch), shuffle_(shuffle), workers_(workers), seed_(seed), shard_(shard) {
    if (batch_ < 1 || workers_ < 1) throw std::invalid_argument("BatchSchedule: batch and workers must be >= 1");
    if (shard_.world < 1 || shard_.rank < 0 || shard_.rank >= shard_.world)
      throw std::invalid_argument("BatchSchedule: the shard's rank must be in [0, world)");
  }

  /// The samples in the data set.
  int64_t size() const { return size_; }
  /// The positions this shard serves in each epoch.
  int64_t shard_size() const {
    const int64_t w = shard_.world, r = shard_.rank;
    return shard_.pad ? (size_ + w - 1) / w : (size_ > r ? (size_ - r + w - 1) / w : 0);
  }
  int64_t batches() const { return (shard_size() + batch_ - 1) / batch_; }

  /// The positions in epoch order of batch `index`'s samples (those of this shard).
  std::vector<int64_t> positions(int64_t index) const {
    const int64_t begin = index * batch_, end = std::min(shard_size(), begin + batch_);
    std::vector<int64_t> p;
    for (int64_t q = begin; q < end; ++q) p.push_back(q * shard_.world + shard_.rank);
    return p;
  }

  /// The sample at `position` of an epoch whose order is `order` (a padded position wraps around).
  int64_t sample_at(const std::vector<int64_t>& order, int64_t position) const {
    return order[static_cast<size_t>(position % size_)];
  }

  /// The generator that drives the augmentation of the sample at `position` of epoch `epoch`.
  at::Generator generator(int64_t epoch, int64_t position) const {
    const auto mix = [](uint64_t x) {  // splitmix64's finaliser: nearby inputs, unrelated seeds
      x += 0x9e3779b97f4a7c15ULL;
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      return x ^ (x >> 31);
    };
    return at::make_generator<at::CPUGeneratorImpl>(
        mix(mix(mix(seed_) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(position)));
  }

  /// Epoch `epoch`'s order of the samples: shuffled from (seed, epoch), or in order.
  std::vector<int64_t> epoch_order(int64_t epoch) const {
    std::vector<int64_t> order(static_cast<size_t>(size_));
    std::iota(order.begin(), order.end(), 0);
    if (shuffle_) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 31ULL + static_cast<uint64_t>(epoch) + 17);
      const auto perm = torch::randperm(size_, gen, torch::kLong);
      std::copy(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + size_, order.begin());
    }
    return order;
  }

  /// Runs `fn(index, batch)` for the batches of an epoch in order, starting at `first`, where
  /// `make(index)` builds batch `index` on one of `workers` threads, each preparing up to two
  /// batches ahead. A worker's exception (e.g. a corrupt image, named in the message) is
  /// rethrown here.
  template <typename BatchT, typename Make>
  void run(const Make& make, const std::function<void(int64_t, BatchT&)>& fn, int64_t first = 0) const {
    const int64_t n = batches();
    std::mutex m;
    std::condition_variable ready, space;
    std::map<int64_t, BatchT> done;
    std::exception_ptr error;
    int64_t next = first, consumed = first;
    const int64_t ahead = 2 * workers_;
    bool stop = false;
    std::vector<std::thread> workers;
    at::get_num_threads();  // sets up this thread's intra-op team before the workers change the default
    for (int64_t w = 0; w < workers_; ++w) {
      workers.emplace_back([&] {
        use_one_intraop_thread();
        for (;;) {
          int64_t i;
          {
            std::unique_lock<std::mutex> lock(m);
            space.wait(lock, [&] { return stop || next >= n || next < consumed + ahead; });
            if (stop || next >= n) return;
            i = next++;
          }
          try {
            BatchT batch = make(i);
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
        BatchT batch;
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
  int64_t size_, batch_;
  bool shuffle_;
  int64_t workers_;
  uint64_t seed_;
  Shard shard_;
};

/// What Loader and DetectionLoader share: the BatchSchedule over their samples, the loop that
/// prepares the samples of a batch (a sample that cannot be read goes to `options.bad`: without
/// one an error naming the file; skipped, it is left out) and run_epoch. `Derived` supplies
/// `prepare(sample, gen)` (one sample, decoded and augmented) and `collate(prepared, files)` (the
/// batch from the samples that could be read, at least one); Options has batch, shuffle, workers,
/// seed, bad and pin_memory (the batch's `pin_memory()` is called in the worker thread).
template <class Derived, class Sample, class Prepared, class BatchT, class Options>
class LoaderBase {
 public:
  int64_t size() const { return schedule_.size(); }
  int64_t batches() const { return schedule_.batches(); }

  /// Batch `index` of epoch `epoch`; a batch of skipped samples only has no `images`.
  BatchT make_batch(int64_t epoch, int64_t index) const {
    const auto order = schedule_.epoch_order(epoch);
    std::vector<Prepared> prepared;
    std::vector<std::string> files;
    for (const int64_t position : schedule_.positions(index)) {
      auto gen = schedule_.generator(epoch, position);
      const auto& s = samples_[static_cast<size_t>(schedule_.sample_at(order, position))];
      if (!data_detail::read_sample(o_.bad, s.image,
                                    [&] { prepared.push_back(static_cast<const Derived&>(*this).prepare(s, gen)); }))
        continue;
      files.push_back(s.image);
    }
    if (prepared.empty()) return BatchT{};
    auto batch = static_cast<const Derived&>(*this).collate(std::move(prepared), std::move(files));
    if (o_.pin_memory) batch.pin_memory();
    return batch;
  }

  /// Runs `fn(index, batch)` for the batches of `epoch` in order, starting at `first`, with
  /// `workers` threads preparing up to two batches each ahead. A worker's exception (e.g. a
  /// corrupt image, named in the message) is rethrown here. A batch whose samples were all
  /// skipped as bad is passed on (without `images`) only by a padded shard of several ranks: a
  /// data-parallel training step, which every rank must take.
  void run_epoch(int64_t epoch, const std::function<void(int64_t, BatchT&)>& fn, int64_t first = 0) const {
    const bool keep_empty = o_.shard.world > 1 && o_.shard.pad;
    schedule_.run<BatchT>([&](int64_t i) { return make_batch(epoch, i); },
                          [&](int64_t i, BatchT& b) {
                            if (keep_empty || b.images.defined()) fn(i, b);
                          },
                          first);
  }

 protected:
  LoaderBase(std::vector<Sample> samples, Options options)
      : samples_(std::move(samples)), o_(std::move(options)),
        schedule_(static_cast<int64_t>(samples_.size()), o_.batch, o_.shuffle, o_.workers, o_.seed, o_.shard) {}

  std::vector<Sample> samples_;
  Options o_;
  BatchSchedule schedule_;
};

struct LoaderOptions {
  int64_t batch = 8;
  int64_t crop = 0;          // side of the random square crop when augmenting (0: no crop)
  int64_t longest_side = 0;  // resize so that the longer side is this (0: keep the size)
  int64_t stride = 8;        // the model's output stride; maps are padded to a multiple of it
  bool augment = false;      // random crop, horizontal flip, colour jitter
  bool shuffle = false;
  int64_t workers = 2;
  uint64_t seed = 0;
  Shard shard;                                // this rank's part of each epoch (data-parallel runs)
  crowdloss::PointsToDensityOptions density;  // its stride is set to `stride`
  BadSamples* bad = nullptr;                  // an image that cannot be read: stop (null) or as `bad` says
  bool pin_memory = false;                    // page-locked batches (training on a GPU: see `pinned`)
};

struct Batch {
  at::Tensor images;               // B×3×H×W, normalised
  at::Tensor density;              // B×1×(H/stride)×(W/stride), one unit per head
  at::Tensor counts;               // B, the annotated counts of the (cropped) images
  std::vector<at::Tensor> points;  // B tensors N_b×2, the heads (x, y) in the batch's image pixels
  std::vector<std::string> files;

  /// The batch with its tensors (points included) on `device` (to_device: no wait for a GPU).
  Batch to(const torch::Device& device) const {
    Batch b = *this;
    b.images = to_device(images, device), b.density = to_device(density, device);
    for (auto& p : b.points) p = to_device(p, device);
    return b;
  }

  /// Moves the images and densities to page-locked memory (`pinned`).
  void pin_memory() { images = pinned(images), density = pinned(density); }
};

class Loader : public LoaderBase<Loader, CrowdSample, Sample, Batch, LoaderOptions> {
 public:
  Loader(std::vector<CrowdSample> samples, LoaderOptions options)
      : LoaderBase(std::move(samples), checked(std::move(options))) {
    o_.density.stride(static_cast<double>(o_.stride));
  }

  /// One sample, as the loader prepares it (`gen` drives the augmentation).
  Sample prepare(const CrowdSample& s, at::Generator& gen) const {
    Sample x{to_chw_float(load_image(s.image)), s.points};
    if (o_.longest_side > 0) x = resize_longest(x, o_.longest_side);
    if (o_.augment) x = random_augment(x, o_.crop, gen);
    return pad_to_multiple(x, o_.stride);
  }

  /// The batch of prepared samples `xs` (images of different sizes padded to the largest) with
  /// their densities at the stride, their counts and their head points.
  Batch collate(std::vector<Sample> xs, std::vector<std::string> files) const {
    int64_t H = 0, W = 0;
    for (const auto& x : xs) H = std::max(H, x.image.size(1)), W = std::max(W, x.image.size(2));
    std::vector<at::Tensor> images, maps, counts;
    Batch b;
    for (const auto& x : xs) {
      images.push_back(normalize(torch::constant_pad_nd(x.image, {0, W - x.image.size(2), 0, H - x.image.size(1)}, 0)));
      maps.push_back(crowdloss::points_to_density(x.points, H / o_.stride, W / o_.stride, o_.density).unsqueeze(0));
      counts.push_back(torch::full({1}, static_cast<float>(x.points.size(0))));
      b.points.push_back(x.points);
    }
    b.images = torch::stack(images);
    b.density = torch::stack(maps);
    b.counts = torch::cat(counts);
    b.files = std::move(files);
    return b;
  }

 private:
  static LoaderOptions checked(LoaderOptions o) {
    if (o.batch < 1 || o.workers < 1 || o.stride < 1)
      throw std::invalid_argument("Loader: batch, workers and stride must be >= 1");
    return o;
  }
};

}  // namespace crowdloss_examples
