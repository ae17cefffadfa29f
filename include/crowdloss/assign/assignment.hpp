#pragma once
/// \file
/// The result type of `linear_sum_assignment` (assign/linear_sum_assignment.hpp).

#include <cstdint>
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

}  // namespace crowdloss
