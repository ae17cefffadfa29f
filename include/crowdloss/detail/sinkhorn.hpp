#pragma once
/// \file
/// The entropic optimal-transport solve DM-Count uses: Sinkhorn–Knopp matrix scaling as its
/// `losses/bregman_pytorch.py` (`sinkhorn_knopp`, after POT's `ot.bregman.sinkhorn`) runs it.

#include <torch/types.h>

#include <cstdint>

namespace crowdloss {
namespace detail {

/// The scalings of a Sinkhorn–Knopp solve: the plan is diag(u)·K·diag(v).
struct SinkhornScaling {
  at::Tensor u, v, K;
  int64_t iterations = 0;
};

/// Sinkhorn–Knopp for the target measure `a` (na), the source measure `b` (nb) and the cost `C`
/// (na×nb), regularisation `reg`, as DM-Count's `sinkhorn_knopp` with its defaults: K = exp(C /
/// −reg); u = 1/na, v = 1/nb; each iteration v = b / (uᵀK + 1e-16), u = a / (K v + 1e-16); if u or v
/// then has a NaN or infinite entry the previous pair is kept and the loop ends; every
/// `eval_freq`-th iteration err = Σ (b − (uᵀK)·v)², and the loop ends once err ≤ `stop` or after
/// `max_iterations`. Never NaN or infinite for finite inputs with a, b ≥ 0 (the starting pair
/// is finite, and a step that is not is undone). One host read per iteration (the NaN check) and
/// per error evaluation, as in DM-Count.
inline SinkhornScaling sinkhorn_knopp(const at::Tensor& a, const at::Tensor& b, const at::Tensor& C, double reg,
                                      int64_t max_iterations, double stop = 1e-9, int64_t eval_freq = 10) {
  constexpr double eps = 1e-16;  // DM-Count's M_EPS
  SinkhornScaling s;
  s.u = at::ones({C.size(0)}, a.options()) / static_cast<double>(C.size(0));
  s.v = at::ones({C.size(1)}, b.options()) / static_cast<double>(C.size(1));
  s.K = at::div(C, -reg).exp();
  double err = 1;
  int64_t it = 1;
  while (err > stop && it <= max_iterations) {
    const auto v = b / (at::matmul(s.u, s.K) + eps);
    const auto u = a / (at::matmul(s.K, v) + eps);
    if (!(u.isfinite().all().item<bool>() && v.isfinite().all().item<bool>())) break;  // keep the previous pair
    s.u = u, s.v = v;
    if (it % eval_freq == 0) err = (b - at::matmul(s.u, s.K) * s.v).pow(2).sum().item<double>();
    ++it;
  }
  s.iterations = it - 1;
  return s;
}

}  // namespace detail
}  // namespace crowdloss
