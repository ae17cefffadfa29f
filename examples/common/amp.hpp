#pragma once
// Mixed precision for the example trainers: `--amp off|bf16|fp16` runs the model's forward pass
// under autocast (AutocastGuard, the C++ torch.autocast) and, for fp16, scales
// the loss dynamically as torch.cuda.amp.GradScaler does. Losses are computed in float32 outside
// the autocast region.
#include "choices.hpp"

#include <crowdloss/crowdloss.hpp>
#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

inline void check_autocast_device(c10::DeviceType device) {
  TORCH_CHECK(device == c10::kCPU || device == c10::kCUDA, "autocast: expected a CPU or CUDA device, got ", device);
}

/// Whether autocast is on for `device` (kCPU or kCUDA) in this thread.
inline bool autocast_enabled(c10::DeviceType device) {
  check_autocast_device(device);
#if CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

/// The lower-precision dtype autocast uses for `device` (kCPU or kCUDA) in this thread.
inline c10::ScalarType autocast_dtype(c10::DeviceType device) {
  check_autocast_device(device);
#if CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

/// Turns autocast on or off for `device` (kCPU or kCUDA) in this thread, with `dtype`. (The API
/// changed in LibTorch 2.4 from per-device functions to ones taking the device.)
inline void set_autocast(c10::DeviceType device, bool enabled, c10::ScalarType dtype) {
  check_autocast_device(device);
#if CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

/// The C++ counterpart of Python's `torch.autocast(device_type, dtype, enabled)`: mixed precision
/// for the ops run in this thread while the guard lives, the previous state restored (and the
/// cast cache cleared on leaving the outermost region) when it goes. With `enabled` false it
/// turns autocast off for its scope, like `torch.autocast(..., enabled=False)`.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype, bool enabled = true)
      : device_(device), was_enabled_(autocast_enabled(device)), previous_dtype_(autocast_dtype(device)) {
    set_autocast(device_, enabled, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_autocast(device_, was_enabled_, previous_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool was_enabled_;
  c10::ScalarType previous_dtype_;
};

/// Mixed precision (`--amp`): off, bfloat16 autocast, or float16 autocast with loss scaling.
enum class Amp { kOff, kBF16, kFP16 };
template <>
struct Choices<Amp> {
  static constexpr const char* option = "--amp";
  static constexpr std::array<std::pair<Amp, const char*>, 3> names{
      {{Amp::kOff, "off"}, {Amp::kBF16, "bf16"}, {Amp::kFP16, "fp16"}}};
};

/// The autocast dtype for `amp` on `device`, nullopt for kOff. fp16 needs CUDA (CPU autocast
/// computes in bf16 only).
inline std::optional<at::ScalarType> amp_dtype(Amp amp, const torch::Device& device) {
  switch (amp) {
    case Amp::kOff:
      return std::nullopt;
    case Amp::kBF16:
      return at::kBFloat16;
    case Amp::kFP16:
      if (!device.is_cuda()) throw std::runtime_error("--amp fp16 needs --device cuda (on the CPU use --amp bf16)");
      return at::kHalf;
  }
  throw std::logic_error("--amp: a value without a name");
}

/// Autocast to `dtype` on `device` for the guard's lifetime; nothing when dtype is nullopt.
class AmpScope {
 public:
  AmpScope(const torch::Device& device, std::optional<at::ScalarType> dtype) {
    if (dtype) guard_.emplace(device.type(), *dtype);
  }

 private:
  std::optional<AutocastGuard> guard_;
};

/// Dynamic loss scaling for fp16 training (the GradScaler algorithm): the loss is multiplied by
/// `scale` before backward; before the step the gradients are unscaled and checked; a step with
/// an inf/NaN gradient is skipped and the scale halved; after `growth_interval` good steps in a
/// row the scale doubles. Disabled (scale 1, every step taken) for bf16 and fp32.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double init_scale = 65536.0, int64_t growth_interval = 2000)
      : enabled_(enabled), scale_(enabled ? init_scale : 1.0), growth_interval_(growth_interval) {}

  at::Tensor scale(const at::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

  /// Unscales the gradients of `params` in place; returns false (and backs off) when one is
  /// not finite, in which case the caller skips the optimiser step.
  bool unscale_and_check(const std::vector<at::Tensor>& params) {
    if (!enabled_) return true;
    at::Tensor bad;
    for (const auto& p : params) {
      if (!p.grad().defined()) continue;
      auto g = p.mutable_grad();
      g.mul_(1.0 / scale_);
      const auto nonfinite = g.isfinite().all().logical_not();
      bad = bad.defined() ? bad.logical_or(nonfinite) : nonfinite;
    }
    const bool ok = !bad.defined() || !bad.item<bool>();  // one host sync per step
    if (!ok) {
      scale_ *= 0.5, good_steps_ = 0;
    } else if (++good_steps_ == growth_interval_) {
      scale_ *= 2.0, good_steps_ = 0;
    }
    return ok;
  }

  double current_scale() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  /// Restores the state saved with current_scale() and good_steps() (for --resume).
  void restore(double scale, int64_t good_steps) { scale_ = scale, good_steps_ = good_steps; }

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_, good_steps_ = 0;
};

}  // namespace crowdloss_examples
