#pragma once
/// \file
/// Block sums over the last two dimensions, shared by PML and `sum_pool`.

#include <torch/types.h>

namespace crowdloss {
namespace detail {

/// Sums the non-overlapping bh×bw blocks of the last two dimensions of `map` (…×H×W with H, W
/// divisible by bh, bw): …×(H/bh)×(W/bw). One reshape and one reduction, differentiable.
inline at::Tensor sum_blocks(const at::Tensor& map, int64_t bh, int64_t bw) {
  const int64_t H = map.size(-2), W = map.size(-1);
  auto shape = map.sizes().slice(0, static_cast<size_t>(map.dim() - 2)).vec();
  const auto lead = static_cast<int64_t>(shape.size());
  shape.insert(shape.end(), {H / bh, bh, W / bw, bw});
  return map.reshape(shape).sum({lead + 1, lead + 3});
}

}  // namespace detail
}  // namespace crowdloss
