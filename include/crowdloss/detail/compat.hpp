#pragma once
/// \file
/// The one place for differences between the LibTorch versions crowdloss supports (Debian's 1.13
/// and the 2.x inside Python torch):
/// - nothing else branches on `TORCH_VERSION_*`; code that needs a version-dependent spelling
///   branches on `CROWDLOSS_TORCH_VERSION_AT_LEAST` (the examples' autocast guard, the bench's
///   counting allocator do);
/// - by design rather than by a shim: torch's `reduction_t` is a `c10::variant` on 1.13 and a
///   `std::variant` on 2.x, so crowdloss has its own `crowdloss::Reduction` (reduction.hpp);
/// - `c10::Stream::native_handle()`, the driver's stream handle that crowdloss's CUDA kernels
///   launch on, exists from 2.2: `native_handle` below (detected, not version-gated).

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <type_traits>
#include <utility>

/// True when the LibTorch being compiled against is at least `major.minor`.
#define CROWDLOSS_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

static_assert(CROWDLOSS_TORCH_VERSION_AT_LEAST(1, 13), "crowdloss needs LibTorch 1.13 or newer");

namespace crowdloss {
namespace detail {

/// Whether this LibTorch's c10::Stream has native_handle() (2.2 and newer), the driver's handle
/// of a stream.
template <typename Stream, typename = void>
struct HasNativeHandle : std::false_type {};
template <typename Stream>
struct HasNativeHandle<Stream, std::void_t<decltype(std::declval<const Stream&>().native_handle())>> : std::true_type {
};

/// `stream.native_handle()`, or where c10::Stream lacks it a c10::Error saying so (which makes the
/// kernels unavailable: Module::find checks it first).
template <typename Stream>
void* native_handle(const Stream& stream) {
  if constexpr (HasNativeHandle<Stream>::value) {
    return stream.native_handle();
  } else {
    (void)stream;
    TORCH_CHECK(false,
                "crowdloss CUDA kernels: this LibTorch's c10::Stream has no native_handle() (LibTorch 2.2 or newer "
                "is needed)");
    return nullptr;
  }
}

}  // namespace detail
}  // namespace crowdloss
