#pragma once
/// \file
/// Input validation and dtype handling shared by the density-map losses.

#include <torch/types.h>

namespace crowdloss {
namespace detail {

/// Checks a (prediction, target) pair of density maps: both defined, B×C×H×W, same shape, same
/// floating dtype, same device, and no zero-sized dimension. Every message names `fn`.
inline void check_map_pair(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                           const char* pred_name = "pred", const char* target_name = "target") {
  TORCH_CHECK(pred.defined() && target.defined(), fn, ": ", pred_name, " and ", target_name,
              " must be defined tensors");
  TORCH_CHECK(pred.dim() == 4, fn, ": expected ", pred_name, " of shape (B, C, H, W), got ", pred.sizes());
  TORCH_CHECK(target.sizes() == pred.sizes(), fn, ": ", target_name, " shape ", target.sizes(),
              " differs from ", pred_name, " shape ", pred.sizes());
  TORCH_CHECK(pred.is_floating_point(), fn, ": expected a floating-point ", pred_name, ", got ",
              pred.scalar_type());
  TORCH_CHECK(target.scalar_type() == pred.scalar_type(), fn, ": ", target_name, " dtype ",
              target.scalar_type(), " differs from ", pred_name, " dtype ", pred.scalar_type());
  TORCH_CHECK(target.device() == pred.device(), fn, ": ", target_name, " is on ", target.device(),
              " but ", pred_name, " is on ", pred.device());
  TORCH_CHECK(pred.numel() > 0, fn, ": expected a non-empty batch of non-empty maps, got ", pred_name,
              " of shape ", pred.sizes());
}

/// The dtype a loss computes in: float32 for half-precision inputs, the input's own otherwise.
inline at::ScalarType compute_dtype(const at::Tensor& t) {
  const auto s = t.scalar_type();
  return (s == at::kHalf || s == at::kBFloat16) ? at::kFloat : s;
}

}  // namespace detail
}  // namespace crowdloss
