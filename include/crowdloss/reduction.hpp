#pragma once
/// \file
/// `crowdloss::Reduction`: how a loss combines its per-element (or per-image) values, with
/// torch's own tag objects `torch::kNone`, `torch::kMean`, `torch::kSum`.

#include <torch/enum.h>
#include <torch/types.h>

#include <string>
#include <variant>

namespace crowdloss {

/// One of `torch::kNone`, `torch::kMean`, `torch::kSum`.
///
/// crowdloss keeps its own `std::variant` of torch's tag types rather than reusing torch's
/// `reduction_t`, which is a `c10::variant` on LibTorch 1.13 and a `std::variant` on 2.x.
///
/// Example:
/// ```cpp
/// crowdloss::Reduction r = torch::kSum;
/// ```
using Reduction = std::variant<torch::enumtype::kNone, torch::enumtype::kMean, torch::enumtype::kSum>;

namespace detail {

inline const char* reduction_name(const Reduction& reduction) {
  switch (reduction.index()) {
    case 0:
      return "kNone";
    case 1:
      return "kMean";
    default:
      return "kSum";
  }
}

/// Applies `reduction` to `values`: kNone returns them unchanged, kMean their mean, kSum their
/// sum (a 0-dim tensor of the same dtype and device). The mean of an empty tensor is NaN, as in
/// torch.
inline at::Tensor reduce(const at::Tensor& values, const Reduction& reduction) {
  switch (reduction.index()) {
    case 0:
      return values;
    case 1:
      return values.mean();
    default:
      return values.sum();
  }
}

/// Throws c10::Error naming `function` unless `reduction` is one of the `allowed` alternatives.
template <typename... Allowed>
void check_reduction(const Reduction& reduction, const char* function) {
  const bool ok = (std::holds_alternative<Allowed>(reduction) || ...);
  TORCH_CHECK(ok, function, ": reduction ", reduction_name(reduction), " is not supported here");
}

}  // namespace detail
}  // namespace crowdloss
