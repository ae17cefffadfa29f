#pragma once
// How fast a trainer trains against how fast it could (the programs' `bench` command): the bare
// training step on a batch already on the device, then the trainer's training phase over a data
// set, both with the same TrainStep, reported as images/s, their ratio, and JSON.
#include "report.hpp"
#include "training.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace crowdloss_examples {

/// What `bench` runs: `warmup` bare steps (not timed), `steps` timed bare steps, then one
/// training epoch over the data (steps × batch images in the generated set).
struct ThroughputOptions {
  int64_t steps = 20, warmup = 3;
};

/// The bare training step's images/s (the ceiling), the trainer's over an epoch, and their ratio.
struct Throughput {
  double bare_images_per_s = 0, trainer_images_per_s = 0;
  double ratio() const { return trainer_images_per_s / bare_images_per_s; }
};

/// Measures a trainer against its bare step. The bare step is `step` (the trainer's own) on
/// `batch`, whose tensors are already on the device: `o.warmup` untimed steps, then `o.steps`
/// timed ones, up to the device finishing the last. The trainer is train_epoch over `loader` (its
/// loader, workers and transfers included), timed the same way. Both update the model.
template <class Loader, class Batch>
Throughput measure_throughput(TrainStep<Batch>& step, const FitHooks<Batch>& hooks, const Loader& loader, Batch batch,
                              const ThroughputOptions& o) {
  const auto bare = [&](int64_t steps) {
    int64_t images = 0;
    for (int64_t i = 0; i < steps; ++i) images += step(hooks.learning_rate(0, i, steps), batch).images;
    wait_for_device(step.params());
    return images;
  };
  bare(o.warmup);
  const auto start = std::chrono::steady_clock::now();
  const auto images = bare(o.steps);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto t = train_epoch(loader, step, hooks, 0, 1, /*quiet=*/true, "in the benchmark");
  return {static_cast<double>(images) / seconds, static_cast<double>(t.images) / t.seconds};
}

/// The `bench` result as docs/data/train_throughput_*.json lists it: program, config (the
/// run's settings as its checkpoints store them), both rates, their ratio and the device.
inline nlohmann::json throughput_json(const std::string& program, const nlohmann::json& config, const Throughput& t,
                                      const std::string& device) {
  return {{"program", program},
          {"config", config},
          {"bare_images_per_s", t.bare_images_per_s},
          {"trainer_images_per_s", t.trainer_images_per_s},
          {"ratio", t.ratio()},
          {"device", device}};
}

/// Appends `entry` to the JSON list in `path` (created when absent), atomically; an error names
/// the file when it holds something other than a JSON list.
inline void append_to_json_list(const std::filesystem::path& path, const nlohmann::json& entry) {
  nlohmann::json list = nlohmann::json::array();
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    list = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (!list.is_array()) throw std::runtime_error(path.string() + " does not hold a JSON list to append to");
  }
  list.push_back(entry);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  write_text_atomically(path, list.dump(2) + "\n");
}

/// Prints a bench result: both rates and the ratio.
inline void print_throughput(const Throughput& t, const std::string& device) {
  std::printf("bare training step %.1f images/s, trainer %.1f images/s, ratio %.3f (%s)\n", t.bare_images_per_s,
              t.trainer_images_per_s, t.ratio(), device.c_str());
}

}  // namespace crowdloss_examples
