// libFuzzer harness: linear_sum_assignment on random shapes (including empty), float32/float64
// values with NaN, ±inf, huge and tiny entries, minimise or maximise, as a tensor, an Eigen
// matrix and a batch. A bad matrix must raise c10::Error; a solution must be a valid assignment.

#include "fuzz_input.hpp"

#include <crowdloss/assign/linear_sum_assignment.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <set>
#include <vector>

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "linear_sum_assignment fuzz: " << what << "\n";
    std::abort();
  }
}

void check_solution(const at::Tensor& cost, const at::Tensor& rows, const at::Tensor& cols) {
  const int64_t R = cost.size(0), C = cost.size(1);
  require(rows.numel() == std::min(R, C) && cols.numel() == rows.numel(), "wrong number of pairs");
  std::set<int64_t> used;
  for (int64_t i = 0; i < rows.numel(); ++i) {
    const int64_t r = rows[i].item<int64_t>(), c = cols[i].item<int64_t>();
    require(r >= 0 && r < R && c >= 0 && c < C, "index out of range");
    require(i == 0 || r > rows[i - 1].item<int64_t>(), "rows not ascending");
    require(used.insert(c).second, "a column assigned twice");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  crowdloss_fuzz::Input in(data, size);
  const int64_t R = in.integer(0, 9), C = in.integer(0, 9);
  const bool maximize = in.flag(), single = in.flag();
  std::vector<double> values(static_cast<size_t>(R * C));
  for (auto& v : values) v = in.number(100.0);
  const auto cost = torch::tensor(values, torch::kFloat64).view({R, C}).to(single ? torch::kFloat32 : torch::kFloat64);
  bool solved = false;
  try {
    const auto [rows, cols] = crowdloss::linear_sum_assignment(cost, maximize);
    check_solution(cost, rows, cols);
    solved = true;
  } catch (const c10::Error&) {
  }
  // The other entry points agree on whether the matrix is solvable.
  try {
    const Eigen::MatrixXd m = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        cost.to(torch::kFloat64).contiguous().data_ptr<double>(), R, C);
    crowdloss::linear_sum_assignment(m, maximize);
    require(solved || single, "Eigen solved what the tensor API rejected");
  } catch (const c10::Error&) {
    require(!solved || single, "Eigen rejected what the tensor API solved");
  }
  try {
    crowdloss::linear_sum_assignment(std::vector<at::Tensor>{cost, cost.t()}, maximize);
  } catch (const c10::Error&) {
  }
  return 0;
}
