#pragma once
/// \file
/// The switch for crowdloss's own CUDA kernels (docs/gpu.md).

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace crowdloss {

namespace detail {
inline std::atomic<bool>& cuda_kernels_flag() {
  static std::atomic<bool> flag{[] {
    const char* value = std::getenv("CROWDLOSS_CUDA_KERNELS");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }()};
  return flag;
}
}  // namespace detail

/// Whether crowdloss runs its own CUDA kernels on CUDA tensors (today: `pml_loss`,
/// `pml_loss_terms`, `ssim`, `sanet_loss`, `nms` and `batched_nms`), compiled at run time by the
/// NVRTC that CUDA builds of LibTorch ship, instead of its ATen compositions. Off by default
/// until the kernels have passed the CUDA tests on a GPU (docs/gpu.md records which commit was
/// verified where); `CROWDLOSS_CUDA_KERNELS=1` in the environment turns them on at start. Where they cannot run (no NVRTC, a failed compile, a
/// LibTorch older than 2.2) one warning says why and the ATen path runs instead. The CPU paths
/// do not depend on it.
///
/// Example:
/// ```cpp
/// crowdloss::set_cuda_kernels_enabled(true);
/// bool on = crowdloss::cuda_kernels_enabled();   // true
/// ```
inline bool cuda_kernels_enabled() { return detail::cuda_kernels_flag().load(); }

/// Turns crowdloss's CUDA kernels on or off for the whole process (see `cuda_kernels_enabled`);
/// returns the previous setting.
inline bool set_cuda_kernels_enabled(bool enabled) { return detail::cuda_kernels_flag().exchange(enabled); }

}  // namespace crowdloss
