#pragma once
/// \file
/// Linear sum assignment (the Hungarian problem) with exactly SciPy 1.10's semantics and tie
/// breaking: the shortest-augmenting-path algorithm of Crouse (2016), as in SciPy's
/// `rectangular_lsap`. The solver core works on Eigen matrices; tensors are bridged to it
/// without a copy where their layout allows.

#include <ATen/Parallel.h>
#include <Eigen/Core>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace crowdloss {

/// A solution of `linear_sum_assignment`: `rows[i]` is assigned to `cols[i]`, rows ascending,
/// min(R, C) pairs; `cost` is the sum of the original cost entries of the pairs.
struct Assignment {
  /// Assigned row indices, ascending.
  std::vector<int64_t> rows;
  /// The column assigned to each row of `rows`.
  std::vector<int64_t> cols;
  /// Σ cost[rows[i], cols[i]] over the pairs, in the matrix's original (not negated) values.
  double cost = 0.0;
};

namespace detail {

/// A read-only R×C matrix of doubles with arbitrary element strides.
struct CostView {
  const double* data;
  int64_t rows, cols, row_stride, col_stride;
  double at(int64_t r, int64_t c) const { return data[r * row_stride + c * col_stride]; }
};

/// One shortest augmenting path from free row `i` (SciPy's `augmenting_path`). `cost` is the
/// nr×nc working matrix, row-major with rows ≤ columns. Returns the sink column, or −1 when no
/// augmenting path exists (infeasible).
inline int64_t lsap_augmenting_path(const double* cost, int64_t nc, const std::vector<double>& u,
                                    const std::vector<double>& v, std::vector<int64_t>& path,
                                    const std::vector<int64_t>& row4col, std::vector<double>& shortest, int64_t i,
                                    std::vector<char>& SR, std::vector<char>& SC, std::vector<int64_t>& remaining,
                                    double& min_val) {
  min_val = 0;
  // Columns still to scan, filled in reverse order (this fixes which of equal minima wins).
  int64_t num_remaining = nc;
  for (int64_t it = 0; it < nc; ++it) remaining[static_cast<size_t>(it)] = nc - it - 1;
  std::fill(SR.begin(), SR.end(), 0);
  std::fill(SC.begin(), SC.end(), 0);
  std::fill(shortest.begin(), shortest.end(), std::numeric_limits<double>::infinity());
  int64_t sink = -1;
  while (sink == -1) {
    int64_t index = -1;
    double lowest = std::numeric_limits<double>::infinity();
    SR[static_cast<size_t>(i)] = 1;
    const double* row = cost + i * nc;
    const double base = min_val - u[static_cast<size_t>(i)];
    for (int64_t it = 0; it < num_remaining; ++it) {
      const auto j = static_cast<size_t>(remaining[static_cast<size_t>(it)]);
      const double r = base + row[j] - v[j];
      if (r < shortest[j]) {
        path[j] = i;
        shortest[j] = r;
      }
      // Among equal minima prefer a column that is still free: it ends the path.
      if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == -1)) {
        lowest = shortest[j];
        index = it;
      }
    }
    min_val = lowest;
    if (min_val == std::numeric_limits<double>::infinity()) return -1;
    const auto j = static_cast<size_t>(remaining[static_cast<size_t>(index)]);
    if (row4col[j] == -1) {
      sink = static_cast<int64_t>(j);
    } else {
      i = row4col[j];
    }
    SC[j] = 1;
    remaining[static_cast<size_t>(index)] = remaining[static_cast<size_t>(--num_remaining)];
  }
  return sink;
}

/// Solves the assignment for `view` (SciPy's `solve`): transposes when it has more rows than
/// columns, negates for `maximize`, rejects NaN and −inf (after negation), and reports
/// infeasibility. `fn` names the caller in error messages.
inline Assignment solve_lsap(const CostView& view, bool maximize, const char* fn) {
  Assignment result;
  if (view.rows == 0 || view.cols == 0) return result;
  const bool transpose = view.cols < view.rows;
  const int64_t nr = transpose ? view.cols : view.rows, nc = transpose ? view.rows : view.cols;
  // The working matrix is nr×nc row-major; element (i, j) is view(i, j), or view(j, i) when
  // transposed. Use the caller's memory when it already has that layout and no negation.
  const int64_t inner = transpose ? view.row_stride : view.col_stride;
  const int64_t outer = transpose ? view.col_stride : view.row_stride;
  std::vector<double> copy;
  const double* cost = view.data;
  if (maximize || inner != 1 || outer != nc) {
    copy.resize(static_cast<size_t>(nr * nc));
    const double sign = maximize ? -1.0 : 1.0;
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j) copy[static_cast<size_t>(i * nc + j)] = sign * view.data[i * outer + j * inner];
    cost = copy.data();
  }
  for (int64_t k = 0; k < nr * nc; ++k) {
    TORCH_CHECK(!std::isnan(cost[k]) && cost[k] != -std::numeric_limits<double>::infinity(), fn,
                ": matrix contains invalid numeric entries (NaN, -inf, or +inf when maximizing)");
  }
  std::vector<double> u(static_cast<size_t>(nr), 0.0), v(static_cast<size_t>(nc), 0.0), shortest(static_cast<size_t>(nc));
  std::vector<int64_t> path(static_cast<size_t>(nc), -1), col4row(static_cast<size_t>(nr), -1),
      row4col(static_cast<size_t>(nc), -1), remaining(static_cast<size_t>(nc));
  std::vector<char> SR(static_cast<size_t>(nr)), SC(static_cast<size_t>(nc));
  for (int64_t cur = 0; cur < nr; ++cur) {
    double min_val = 0;
    const int64_t sink = lsap_augmenting_path(cost, nc, u, v, path, row4col, shortest, cur, SR, SC, remaining, min_val);
    TORCH_CHECK(sink >= 0, fn, ": cost matrix is infeasible (no complete assignment avoids the +inf entries)");
    // Update the dual variables.
    u[static_cast<size_t>(cur)] += min_val;
    for (int64_t i = 0; i < nr; ++i)
      if (SR[static_cast<size_t>(i)] && i != cur)
        u[static_cast<size_t>(i)] += min_val - shortest[static_cast<size_t>(col4row[static_cast<size_t>(i)])];
    for (int64_t j = 0; j < nc; ++j)
      if (SC[static_cast<size_t>(j)]) v[static_cast<size_t>(j)] -= min_val - shortest[static_cast<size_t>(j)];
    // Augment the previous solution along the path.
    for (int64_t j = sink;;) {
      const int64_t i = path[static_cast<size_t>(j)];
      row4col[static_cast<size_t>(j)] = i;
      std::swap(col4row[static_cast<size_t>(i)], j);
      if (i == cur) break;
    }
  }
  result.rows.resize(static_cast<size_t>(nr));
  result.cols.resize(static_cast<size_t>(nr));
  if (transpose) {  // working rows are original columns: report by ascending original row
    std::vector<int64_t> order(static_cast<size_t>(nr));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return col4row[static_cast<size_t>(a)] < col4row[static_cast<size_t>(b)]; });
    for (size_t k = 0; k < order.size(); ++k) {
      result.rows[k] = col4row[static_cast<size_t>(order[k])];
      result.cols[k] = order[k];
    }
  } else {
    std::iota(result.rows.begin(), result.rows.end(), 0);
    result.cols = col4row;
  }
  for (size_t k = 0; k < result.rows.size(); ++k) result.cost += view.at(result.rows[k], result.cols[k]);
  return result;
}

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

/// The tensor path: float64 CPU memory is read in place (any strides); other dtypes or devices
/// are converted to a float64 CPU copy first.
inline Assignment solve_lsap_tensor(const char* fn, const at::Tensor& cost, bool maximize) {
  check_cost_tensor(fn, cost);
  const auto host = cost.to(at::kCPU, at::kDouble);
  return solve_lsap({host.data_ptr<double>(), host.size(0), host.size(1), host.stride(0), host.stride(1)}, maximize, fn);
}

}  // namespace detail

/// Solves the linear sum assignment problem on an Eigen matrix: a set of min(R, C) (row, column)
/// pairs, each row and column used at most once, with the least total cost (the greatest with
/// `maximize`). Exactly SciPy 1.10's `linear_sum_assignment` — same algorithm, same tie breaking,
/// so the same indices, not merely the same total: rows ascending; +inf marks a forbidden pair.
///
/// Throws c10::Error containing "invalid numeric entries" for NaN or −inf entries (+inf when
/// maximizing) and "infeasible" when no complete assignment avoids the +inf entries. A 0×n or
/// n×0 matrix gives an empty assignment. Reads the matrix in place when it has at least as many
/// rows as columns (column-major storage is then what the solver wants); copies it otherwise.
///
/// Example:
///   Eigen::MatrixXd cost(2, 3);
///   cost << 4, 1, 3,
///           2, 0, 5;
///   crowdloss::Assignment a = crowdloss::linear_sum_assignment(cost);   // rows {0, 1}, cols {1, 0}, cost 3
inline Assignment linear_sum_assignment(const Eigen::Ref<const Eigen::MatrixXd>& cost, bool maximize = false) {
  return detail::solve_lsap({cost.data(), cost.rows(), cost.cols(), 1, cost.outerStride()}, maximize,
                            "linear_sum_assignment");
}

/// Tensor form of `linear_sum_assignment`: `cost` is a 2-D float32 or float64 tensor on any
/// device (solved on the CPU; a float64 CPU tensor with at most as many rows as columns is read in
/// place). Returns int64 CPU tensors `(row_ind, col_ind)` of min(R, C) entries, row_ind ascending,
/// identical to SciPy 1.10's.
///
/// Throws c10::Error for a non-2-D or non-floating matrix and as the Eigen overload does.
///
/// Example:
///   auto [rows, cols] = crowdloss::linear_sum_assignment(quality, /*maximize=*/true);
inline std::tuple<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost, bool maximize = false) {
  return detail::to_index_tensors(detail::solve_lsap_tensor("linear_sum_assignment", cost, maximize));
}

/// Batch form: solves each matrix of `costs` (per-image matrices of different shapes, any
/// devices) in parallel with `at::parallel_for`, returning `(row_ind, col_ind)` for each in order.
/// An error in any matrix is rethrown as a c10::Error that names its index, e.g. "costs[3]".
///
/// Example:
///   std::vector<at::Tensor> per_image = {q0, q1, q2};
///   auto matches = crowdloss::linear_sum_assignment(per_image, /*maximize=*/true);
inline std::vector<std::tuple<at::Tensor, at::Tensor>> linear_sum_assignment(const std::vector<at::Tensor>& costs,
                                                                            bool maximize = false) {
  const auto n = static_cast<int64_t>(costs.size());
  std::vector<Assignment> solved(costs.size());
  std::vector<std::string> errors(costs.size());
  std::vector<at::Tensor> hosts(costs.size());
  for (int64_t i = 0; i < n; ++i) {  // device transfers stay on the calling thread
    const std::string name = "linear_sum_assignment: costs[" + std::to_string(i) + "]";
    detail::check_cost_tensor(name.c_str(), costs[static_cast<size_t>(i)]);
    hosts[static_cast<size_t>(i)] = costs[static_cast<size_t>(i)].to(at::kCPU, at::kDouble);
  }
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto& h = hosts[static_cast<size_t>(i)];
      const std::string name = "linear_sum_assignment: costs[" + std::to_string(i) + "]";
      try {
        solved[static_cast<size_t>(i)] = detail::solve_lsap(
            {h.data_ptr<double>(), h.size(0), h.size(1), h.stride(0), h.stride(1)}, maximize, name.c_str());
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
