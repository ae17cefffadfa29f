#pragma once
/// \file
/// The one place for differences between the LibTorch versions crowdloss supports (Debian's 1.13
/// and the 2.x inside Python torch):
/// - nothing else branches on `TORCH_VERSION_*`; code that needs a version-dependent spelling
///   branches on `CROWDLOSS_TORCH_VERSION_AT_LEAST` (the examples' autocast guard, the bench's
///   counting allocator do);
/// - by design rather than by a shim: torch's `reduction_t` is a `c10::variant` on 1.13 and a
///   `std::variant` on 2.x, so crowdloss has its own `crowdloss::Reduction` (reduction.hpp).

#include <torch/version.h>

/// True when the LibTorch being compiled against is at least `major.minor`.
#define CROWDLOSS_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

static_assert(CROWDLOSS_TORCH_VERSION_AT_LEAST(1, 13), "crowdloss needs LibTorch 1.13 or newer");
