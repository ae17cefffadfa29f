#pragma once
/// \file
/// Input validation and dtype handling shared by the density-map losses.

#include <torch/types.h>

#include <initializer_list>

namespace crowdloss {
namespace detail {

/// Throws c10::Error naming `fn` unless `b` is on the device of `a`.
inline void check_same_device(const char* fn, const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK(b.device() == a.device(), fn, ": ", b_name, " is on ", b.device(), " but ", a_name, " is on ",
              a.device());
}

/// Checks a pair of tensors a loss compares elementwise: both defined, same shape, same floating
/// dtype, same device. Every message names `fn`.
inline void check_pair(const char* fn, const at::Tensor& a, const char* a_name, const at::Tensor& b,
                       const char* b_name) {
  TORCH_CHECK(a.defined() && b.defined(), fn, ": ", a_name, " and ", b_name, " must be defined tensors");
  TORCH_CHECK(a.sizes() == b.sizes(), fn, ": ", b_name, " shape ", b.sizes(), " differs from ", a_name, " shape ",
              a.sizes());
  TORCH_CHECK(a.is_floating_point(), fn, ": expected a floating-point ", a_name, ", got ", a.scalar_type());
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), fn, ": ", b_name, " dtype ", b.scalar_type(), " differs from ",
              a_name, " dtype ", a.scalar_type());
  check_same_device(fn, a, a_name, b, b_name);
}

/// Checks a (prediction, target) pair of density maps: `check_pair`, plus B×C×H×W and no
/// zero-sized dimension. Every message names `fn`.
inline void check_map_pair(const char* fn, const at::Tensor& pred, const at::Tensor& target,
                           const char* pred_name = "pred", const char* target_name = "target") {
  check_pair(fn, pred, pred_name, target, target_name);
  TORCH_CHECK(pred.dim() == 4, fn, ": expected ", pred_name, " of shape (B, C, H, W), got ", pred.sizes());
  TORCH_CHECK(pred.numel() > 0, fn, ": expected a non-empty batch of non-empty maps, got ", pred_name, " of shape ",
              pred.sizes());
}

/// The dtype a loss computes in: float32 for half-precision inputs, the input's own otherwise.
inline at::ScalarType compute_dtype(at::ScalarType s) {
  return (s == at::kHalf || s == at::kBFloat16) ? at::kFloat : s;
}
inline at::ScalarType compute_dtype(const at::Tensor& t) { return compute_dtype(t.scalar_type()); }

/// The density losses' rule for overflow, at their dispatch points on the CPU: whether a
/// computation on a, b (CPU tensors) overflowed its compute dtype — a value of `results` is not
/// finite although every value of a and b is (non-finite inputs propagate, as they should). In
/// float32 the caller then recomputes in float64, whose range the squares of any float32 value
/// fit; a float64 computation cannot widen, so it throws c10::Error naming `fn` and the largest
/// magnitude instead.
inline bool needs_float64(const char* fn, std::initializer_list<at::Tensor> results, const at::Tensor& a,
                          const char* a_name, const at::Tensor& b, const char* b_name) {
  bool overflowed = false;
  for (const auto& r : results) overflowed = overflowed || (r.defined() && !at::isfinite(r).all().item<bool>());
  if (!overflowed || !at::isfinite(a).all().item<bool>() || !at::isfinite(b).all().item<bool>()) return false;
  TORCH_CHECK(a.scalar_type() != at::kDouble, fn, ": ", a_name, " and ", b_name,
              " overflow float64 in the squared terms (largest magnitude ",
              at::maximum(a.abs().max(), b.abs().max()).item<double>(), "); scale them down");
  return true;
}

}  // namespace detail
}  // namespace crowdloss
