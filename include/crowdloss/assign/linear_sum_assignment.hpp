#pragma once
/// \file
/// Linear sum assignment (the Hungarian problem) with exactly SciPy 1.10's semantics and tie
/// breaking: the shortest-augmenting-path algorithm of Crouse (2016), as in SciPy's
/// `rectangular_lsap` (solver core: detail/lsap.hpp). Eigen matrices and float32/float64 CPU
/// tensors are read in place.

#include <crowdloss/assign/assignment.hpp>
#include <crowdloss/detail/lsap.hpp>

#include <ATen/Parallel.h>
#include <Eigen/Core>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace crowdloss {

namespace detail {

inline void check_cost_tensor(const char* fn, const at::Tensor& cost) {
  TORCH_CHECK(cost.defined() && cost.dim() == 2, fn, ": expected a 2-D cost matrix, got shape ",
              cost.defined() ? cost.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cost.scalar_type() == at::kFloat || cost.scalar_type() == at::kDouble, fn,
              ": expected a float32 or float64 cost matrix, got ", cost.scalar_type());
}

inline std::tuple<at::Tensor, at::Tensor> to_index_tensors(const Assignment& a) {
  const auto n = static_cast<int64_t>(a.rows.size());
  auto rows = at::empty({n}, at::kLong), cols = at::empty({n}, at::kLong);
  std::copy(a.rows.begin(), a.rows.end(), rows.data_ptr<int64_t>());
  std::copy(a.cols.begin(), a.cols.end(), cols.data_ptr<int64_t>());
  return {rows, cols};
}

/// Solves a float32 or float64 CPU tensor in place (any strides).
inline Assignment solve_lsap_host(const at::Tensor& host, bool maximize, const char* fn) {
  if (host.scalar_type() == at::kFloat)
    return solve_lsap<float>({host.data_ptr<float>(), host.size(0), host.size(1), host.stride(0), host.stride(1)},
                             maximize, fn);
  return solve_lsap<double>({host.data_ptr<double>(), host.size(0), host.size(1), host.stride(0), host.stride(1)},
                            maximize, fn);
}

/// The tensor path: a CPU tensor is read in place; others are copied to the CPU first.
inline Assignment solve_lsap_tensor(const char* fn, const at::Tensor& cost, bool maximize) {
  check_cost_tensor(fn, cost);
  return solve_lsap_host(cost.cpu(), maximize, fn);
}

}  // namespace detail

/// Solves the linear sum assignment problem on an Eigen matrix: a set of min(R, C) (row, column)
/// pairs, each row and column used at most once, with the least total cost (the greatest with
/// `maximize`). Exactly SciPy 1.10's `linear_sum_assignment` — same algorithm, same tie breaking,
/// so the same indices, not merely the same total: rows ascending; +inf marks a forbidden pair.
///
/// Throws c10::Error containing "invalid numeric entries" for NaN or −inf entries (+inf when
/// maximizing), "infeasible" when no complete assignment avoids the +inf entries, and "working
/// memory" at once, before allocating, when the solve needs more than this machine's physical
/// memory (64 bytes per column of the longer side, plus a float64 copy of the matrix where the
/// dense search cannot read it in place). A 0×n or n×0 matrix gives an empty assignment. The
/// matrix is read in place (an expanded, stride-0 matrix is not materialised). When its rows (or, for a
/// tall matrix, its columns) are mostly one value each — POTO's quality is −1 outside the box
/// priors — a search that visits only the other entries finds the same answer in a fraction of
/// the time (see docs/performance.md).
///
/// Example:
/// ```cpp
/// Eigen::MatrixXd cost(2, 3);
/// cost << 4, 1, 3,
///         2, 0, 5;
/// crowdloss::Assignment a = crowdloss::linear_sum_assignment(cost);   // rows {0, 1}, cols {1, 0}, cost 3
/// ```
inline Assignment linear_sum_assignment(const Eigen::Ref<const Eigen::MatrixXd>& cost, bool maximize = false) {
  return detail::solve_lsap<double>({cost.data(), cost.rows(), cost.cols(), 1, cost.outerStride()}, maximize,
                                    "linear_sum_assignment");
}

/// Tensor form of `linear_sum_assignment`: `cost` is a 2-D float32 or float64 tensor on any
/// device (solved on the CPU; a CPU tensor is read in place, float32 as its float64 values). Returns int64 CPU tensors `(row_ind, col_ind)` of min(R, C) entries, row_ind ascending,
/// identical to SciPy 1.10's.
///
/// Throws c10::Error for a non-2-D or non-floating matrix and as the Eigen overload does.
///
/// Example:
/// ```cpp
/// auto [rows, cols] = crowdloss::linear_sum_assignment(quality, /*maximize=*/true);
/// ```
inline std::tuple<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost, bool maximize = false) {
  return detail::to_index_tensors(detail::solve_lsap_tensor("linear_sum_assignment", cost, maximize));
}

/// Batch form: solves each matrix of `costs` (per-image matrices of different shapes, any
/// devices) in parallel with `at::parallel_for`, returning `(row_ind, col_ind)` for each in order.
/// An error in any matrix is rethrown as a c10::Error that names its index, e.g. "costs[3]".
///
/// Example:
/// ```cpp
/// std::vector<at::Tensor> per_image = {q0, q1, q2};
/// auto matches = crowdloss::linear_sum_assignment(per_image, /*maximize=*/true);
/// ```
inline std::vector<std::tuple<at::Tensor, at::Tensor>> linear_sum_assignment(const std::vector<at::Tensor>& costs,
                                                                             bool maximize = false) {
  const auto n = static_cast<int64_t>(costs.size());
  std::vector<Assignment> solved(costs.size());
  std::vector<std::string> errors(costs.size());
  std::vector<at::Tensor> hosts(costs.size());
  for (int64_t i = 0; i < n; ++i) {  // device transfers stay on the calling thread
    const std::string name = "linear_sum_assignment: costs[" + std::to_string(i) + "]";
    detail::check_cost_tensor(name.c_str(), costs[static_cast<size_t>(i)]);
    hosts[static_cast<size_t>(i)] = costs[static_cast<size_t>(i)].cpu();
  }
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::string name = "linear_sum_assignment: costs[" + std::to_string(i) + "]";
      try {
        solved[static_cast<size_t>(i)] = detail::solve_lsap_host(hosts[static_cast<size_t>(i)], maximize, name.c_str());
      } catch (const c10::Error& e) {
        errors[static_cast<size_t>(i)] = e.what_without_backtrace();
      }
    }
  });
  std::vector<std::tuple<at::Tensor, at::Tensor>> out;
  out.reserve(costs.size());
  for (size_t i = 0; i < costs.size(); ++i) {
    TORCH_CHECK(errors[i].empty(), errors[i]);
    out.push_back(detail::to_index_tensors(solved[i]));
  }
  return out;
}

}  // namespace crowdloss
