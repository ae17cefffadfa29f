#pragma once
/// \file
/// The entropic optimal-transport solve DM-Count uses: Sinkhorn–Knopp matrix scaling as its
/// `losses/bregman_pytorch.py` (`sinkhorn_knopp`, after POT's `ot.bregman.sinkhorn`) runs it
/// (`sinkhorn_knopp`, the reference), and the same iterations for a batch of problems whose
/// kernels are separable (`sinkhorn_knopp_separable`, the fast path).

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

/// The scalings of P Sinkhorn–Knopp solves at once whose kernels are separable: K_p[i, (r, c)] =
/// Ky_p[i, r]·Kx_p[i, c], so that the plan of problem p is diag(u_p)·K_p·diag(v_p) with v_p an
/// h×w map.
struct SeparableSinkhornScaling {
  at::Tensor u;  // P×N
  at::Tensor v;  // P×h×w
};

/// sinkhorn_knopp's iterations (the same updates, NaN guard, error test and stopping rule, each
/// problem on its own) for P problems at once, each with the target measure a_p (P×N, zero on
/// padded rows), the source measure b_p (P×h×w) and the kernel K_p = Ky_p ⊗ Kx_p given by its
/// factors `Ky` (P×N×h, zero on padded rows) and `Kx` (P×N×w). Both products with K are two
/// batched matrix products through the factors, so no P×N×(h·w) kernel is formed: uᵀK =
/// Kyᵀ·(u ∘ Kx) and K v = Σ_c (Ky·v) ∘ Kx. `u0` (P×N) is the starting u (1/N on a problem's rows,
/// 0 on padding). A problem that has stopped keeps its scalings while the others go on; the host
/// reads whether all have stopped at each error evaluation, not every iteration.
inline SeparableSinkhornScaling sinkhorn_knopp_separable(const at::Tensor& a, const at::Tensor& b, const at::Tensor& Ky,
                                                         const at::Tensor& Kx, const at::Tensor& u0,
                                                         int64_t max_iterations, double stop = 1e-9,
                                                         int64_t eval_freq = 10) {
  constexpr double eps = 1e-16;  // DM-Count's M_EPS
  const int64_t P = b.size(0), h = b.size(1), w = b.size(2);
  const auto Ky_t = Ky.transpose(1, 2).contiguous();
  const auto uK = [&](const at::Tensor& u) { return at::bmm(Ky_t, u.unsqueeze(2) * Kx); };     // P×h×w
  const auto Kv = [&](const at::Tensor& v) { return (at::bmm(Ky, v) * Kx).sum(2); };           // P×N
  const auto all_finite = [](const at::Tensor& t) { return t.isfinite().flatten(1).all(1); };  // P
  SeparableSinkhornScaling s{u0, at::full({P, h, w}, 1.0 / static_cast<double>(h * w), b.options())};
  auto done = at::zeros({P}, b.options().dtype(at::kBool));
  for (int64_t it = 1; it <= max_iterations; ++it) {
    const auto v = b / (uK(s.u) + eps);
    const auto u = a / (Kv(v) + eps);
    const auto finite = all_finite(u).logical_and(all_finite(v));
    const auto update = done.logical_not().logical_and(finite);
    s.u = at::where(update.view({P, 1}), u, s.u);
    s.v = at::where(update.view({P, 1, 1}), v, s.v);
    done = done.logical_or(finite.logical_not());  // a step that is not finite is undone, and the solve ends
    if (it % eval_freq == 0) {
      const auto err = (b - uK(s.u) * s.v).pow(2).flatten(1).sum(1);
      done = done.logical_or(update.logical_and(err.gt(stop).logical_not()));  // as `while (err > stop)`: NaN stops
      if (done.all().item<bool>()) break;
    }
  }
  return s;
}

}  // namespace detail
}  // namespace crowdloss
