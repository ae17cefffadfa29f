#pragma once
/// \file
/// The one place for differences between the LibTorch versions crowdloss supports
/// (Debian's 1.13 and the 2.x that ships inside Python torch). Nothing outside this header
/// tests `TORCH_VERSION_*`; code that needs a version-dependent spelling gets a helper here.
///
/// It also carries `detail::AutocastGuard`, the C++ `torch.autocast`, whose API changed in 2.4,
/// and `detail::AllocatorAdapter`, for allocators whose interface changed in 2.3 (the
/// benchmarks count memory with one).
///
/// Differences handled elsewhere by design rather than by a shim:
/// - torch's `reduction_t` is a `c10::variant` on 1.13 and a `std::variant` on 2.x, so crowdloss
///   has its own `crowdloss::Reduction` (reduction.hpp) built from torch's tag types.

#include <torch/version.h>

/// True when the LibTorch being compiled against is at least `major.minor`.
#define CROWDLOSS_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

static_assert(CROWDLOSS_TORCH_VERSION_AT_LEAST(1, 13), "crowdloss needs LibTorch 1.13 or newer");

#include <ATen/autocast_mode.h>
#include <c10/core/Allocator.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

namespace crowdloss {
namespace detail {

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

/// Turns autocast on or off for `device` (kCPU or kCUDA) in this thread, with `dtype`.
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

/// An at::Allocator written once for every LibTorch: subclasses implement `allocate_bytes`.
/// (`allocate` is const up to 2.2 and not from 2.3 on, where `copy_data` also became required.)
struct AllocatorAdapter : at::Allocator {
  virtual at::DataPtr allocate_bytes(size_t n) const = 0;
#if CROWDLOSS_TORCH_VERSION_AT_LEAST(2, 3)
  at::DataPtr allocate(size_t n) override { return allocate_bytes(n); }
  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }
#else
  at::DataPtr allocate(size_t n) const override { return allocate_bytes(n); }
#endif
};

}  // namespace detail
}  // namespace crowdloss
