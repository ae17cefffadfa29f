#pragma once
// The settings both trainers share (RunConfig) and how a configuration becomes the JSON that
// checkpoints store: TrainConfig and DetectConfig derive from RunConfig and list their fields
// once, in NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT, so writing and reading cannot
// disagree, and a key a checkpoint lacks (one written before the setting existed) takes the
// program's default.
#include "amp.hpp"
#include "choices.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace crowdloss_examples {

/// The optimiser (make_optimizer).
enum class Optimizer { kAdamW, kAdam, kSGD };
template <>
struct Choices<Optimizer> {
  static constexpr const char* option = "--optimizer";
  static constexpr std::array<std::pair<Optimizer, const char*>, 3> names{
      {{Optimizer::kAdamW, "adamw"}, {Optimizer::kAdam, "adam"}, {Optimizer::kSGD, "sgd"}}};
};

/// Optimisation, data and device settings of a training run, common to crowdloss-count and
/// crowdloss-detect (each sets its own defaults in its constructor; check_common_config checks
/// them).
struct RunConfig {
  double width = 1.0;  // model channel multiplier, in (0, 1] (1 = the paper's / torchvision's model)
  Optimizer optimizer = Optimizer::kAdamW;
  double lr = 0, weight_decay = 0, min_lr = 0, clip = 0;  // clip: gradient-norm limit, 0 = none
  int64_t epochs = 1, batch = 1, crop = 0, longest_side = 0, workers = 2;
  uint64_t seed = 1;
  std::string device = "cpu";
  Amp amp = Amp::kOff;         // autocast for the model (fp16: CUDA only), loss in float32
  bool deterministic = false;  // deterministic algorithms only (apply_determinism)
};

// RunConfig's fields, for the JSON macros of the configurations that derive from it.
#define CROWDLOSS_RUN_CONFIG_FIELDS                                                                                \
  width, optimizer, lr, weight_decay, min_lr, clip, epochs, batch, crop, longest_side, workers, seed, device, amp, \
      deterministic

}  // namespace crowdloss_examples
