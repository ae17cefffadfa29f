#pragma once
/// \file
/// Sums of a row of values in double with four independent partial sums (no add-latency chain),
/// shared by the CPU kernels.

#include <cstdint>

namespace crowdloss {
namespace detail {

/// Σ f(i) for i < n, accumulated in double in four partial sums (i mod 4), added pairwise.
template <typename F>
double sum4_indexed(int64_t n, F f) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += f(i), s1 += f(i + 1), s2 += f(i + 2), s3 += f(i + 3);
  for (; i < n; ++i) s0 += f(i);
  return (s0 + s1) + (s2 + s3);
}

/// Σ op(x[i]) over n values, accumulated in double.
template <typename T, typename Op>
double sum4(const T* x, int64_t n, Op op) {
  return sum4_indexed(n, [&](int64_t i) { return op(x[i]); });
}

/// Σ x[i] over n values, accumulated in double.
template <typename T>
double sum4(const T* x, int64_t n) {
  return sum4(x, n, [](T v) { return static_cast<double>(v); });
}

}  // namespace detail
}  // namespace crowdloss
