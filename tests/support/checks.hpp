#pragma once
// Assertion helpers shared by the tests: error messages, finite-difference gradients, and runs
// over the CPU kernels' instruction sets.
#include "doctest_torch.hpp"

#include <crowdloss/detail/simd.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace crowdloss_test {

/// An int64 tensor's elements (on any device) as a vector, for comparing index lists.
inline std::vector<int64_t> to_vector(const at::Tensor& t) {
  const auto c = t.cpu().contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

/// Asserts that `fn` throws c10::Error whose message (without backtrace) contains every one of
/// `parts`, e.g. the function's name and the offending value.
template <typename Fn>
void check_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL("expected a c10::Error containing \"" << *parts.begin() << "\", nothing was thrown");
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    for (const auto& part : parts) {
      INFO("message: " << msg);
      DOCTEST_CHECK(msg.find(part) != std::string::npos);
    }
  }
}

/// Central finite differences of the scalar `f(x)` at `count` evenly spread elements of the
/// float64 tensor `x`, compared with autograd's gradient; returns the largest absolute gap.
inline double gradcheck_max_error(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x,
                                  int64_t count = 24, double eps = 1e-6) {
  REQUIRE((x.scalar_type() == at::kDouble));
  auto leaf = x.detach().clone().requires_grad_(true);
  f(leaf).backward();
  const auto analytic = leaf.grad().reshape(-1);
  auto probe = x.detach().clone();
  auto flat = probe.view(-1);
  const int64_t n = flat.numel(), step = std::max<int64_t>(1, n / count);
  double worst = 0;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < n; i += step) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    const double up = f(probe).item<double>();
    flat[i] = orig - eps;
    const double down = f(probe).item<double>();
    flat[i] = orig;
    worst = std::max(worst, std::abs((up - down) / (2 * eps) - analytic[i].item<double>()));
  }
  return worst;
}

/// Runs `body` once with each instruction set this CPU can run the CPU kernels with (simd.hpp),
/// then restores the one chosen at start-up.
template <typename Body>
void for_each_cpu_capability(Body body) {
  using crowdloss::detail::CpuCapability;
  auto& current = crowdloss::detail::cpu_capability();
  const CpuCapability best = current;
  for (const CpuCapability capability : {CpuCapability::baseline, CpuCapability::avx2}) {
    if (capability > best) continue;
    current = capability;
    INFO("instruction set " << (capability == CpuCapability::avx2 ? "avx2" : "baseline"));
    body();
  }
  current = best;
}

}  // namespace crowdloss_test
