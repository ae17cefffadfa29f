#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>
#include <random>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;
using crowdloss_test::to_vector;

namespace {

// The optimum over all injective maps of the smaller side into the larger (brute force).
double brute_force_optimum(const at::Tensor& cost, bool maximize) {
  const bool tall = cost.size(0) > cost.size(1);
  const auto c = tall ? cost.t().contiguous() : cost.contiguous();
  const int64_t r = c.size(0), n = c.size(1);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  double best = maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  const auto acc = c.accessor<double, 2>();
  do {  // every ordered choice of r columns appears as a prefix of some permutation
    double total = 0;
    for (int64_t i = 0; i < r; ++i) total += acc[i][perm[static_cast<size_t>(i)]];
    if (std::isfinite(total)) best = maximize ? std::max(best, total) : std::min(best, total);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

}  // namespace

TEST_CASE("linear_sum_assignment: SciPy 1.10's indices on every oracle case (tensor, Eigen and batch forms)") {
  const auto oracle = crowdloss_test::load_json("assign.json");
  const auto& cases = oracle.at("results").at("lsap_cases");
  REQUIRE(cases.size() >= 8);
  std::vector<at::Tensor> costs;
  std::vector<bool> maximize;
  for (const auto& c : cases) {
    INFO("case " << c.at("name").get<std::string>());
    const auto cost = tensor_from_json(c.at("cost"));
    const bool max = c.at("maximize").get<bool>();
    const auto rows = c.at("row_ind").get<std::vector<int64_t>>();
    const auto cols = c.at("col_ind").get<std::vector<int64_t>>();
    const auto [r, k] = crowdloss::linear_sum_assignment(cost, max);
    DOCTEST_CHECK(to_vector(r) == rows);
    DOCTEST_CHECK(to_vector(k) == cols);
    // The same through the Eigen core, from a column-major copy.
    Eigen::MatrixXd m(cost.size(0), cost.size(1));
    for (int64_t i = 0; i < m.rows(); ++i)
      for (int64_t j = 0; j < m.cols(); ++j) m(i, j) = cost[i][j].item<double>();
    const auto a = crowdloss::linear_sum_assignment(m, max);
    DOCTEST_CHECK(a.rows == rows);
    DOCTEST_CHECK(a.cols == cols);
    DOCTEST_CHECK(a.cost == doctest::Approx(c.at("total_cost").get<double>()).epsilon(1e-12));
    // And from a non-contiguous (transposed) view of the same values.
    const auto [rt, kt] = crowdloss::linear_sum_assignment(cost.t().contiguous().t(), max);
    DOCTEST_CHECK(to_vector(kt) == cols);
    if (!max) {  // the batch below runs all minimisation cases at once
      costs.push_back(cost);
    }
  }
  const auto batch = crowdloss::linear_sum_assignment(costs);
  REQUIRE(batch.size() == costs.size());
  size_t b = 0;
  for (const auto& c : cases) {
    if (c.at("maximize").get<bool>()) continue;
    DOCTEST_CHECK(to_vector(std::get<1>(batch[b++])) == c.at("col_ind").get<std::vector<int64_t>>());
  }
}

TEST_CASE("linear_sum_assignment: optimal on random matrices against brute force") {
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> uniform(-5, 5);
  std::uniform_int_distribution<int> small(0, 3);
  int checked = 0;
  for (int64_t r = 1; r <= 6; ++r) {
    for (int64_t c = 1; c <= 6; ++c) {
      for (int trial = 0; trial < 6; ++trial) {
        auto cost = torch::empty({r, c}, torch::kFloat64);
        auto acc = cost.accessor<double, 2>();
        for (int64_t i = 0; i < r; ++i)
          for (int64_t j = 0; j < c; ++j) acc[i][j] = trial % 3 == 2 ? small(rng) : uniform(rng);  // some with ties
        if (trial % 2 == 1) acc[0][0] = std::numeric_limits<double>::infinity();                   // a forbidden pair
        for (const bool maximize : {false, true}) {
          if (maximize && trial % 2 == 1) continue;  // +inf is invalid when maximizing
          INFO(r << "x" << c << ", trial " << trial << ", maximize " << maximize);
          const double optimum = brute_force_optimum(cost, maximize);
          if (!std::isfinite(optimum)) {  // every assignment uses the forbidden pair (1×1)
            check_error([&] { crowdloss::linear_sum_assignment(cost, maximize); }, {"infeasible"});
            continue;
          }
          const auto [rows, cols] = crowdloss::linear_sum_assignment(cost, maximize);
          const auto rv = to_vector(rows), cv = to_vector(cols);
          REQUIRE(rv.size() == static_cast<size_t>(std::min(r, c)));
          DOCTEST_CHECK(std::is_sorted(rv.begin(), rv.end()));
          DOCTEST_CHECK(std::adjacent_find(rv.begin(), rv.end()) == rv.end());
          auto sorted_cols = cv;
          std::sort(sorted_cols.begin(), sorted_cols.end());
          DOCTEST_CHECK(std::adjacent_find(sorted_cols.begin(), sorted_cols.end()) == sorted_cols.end());
          double total = 0;
          for (size_t k = 0; k < rv.size(); ++k) total += acc[rv[k]][cv[k]];
          DOCTEST_CHECK(total == doctest::Approx(optimum).epsilon(1e-12));
          ++checked;
        }
      }
    }
  }
  DOCTEST_CHECK(checked > 300);
}

TEST_CASE("linear_sum_assignment: the sparse search and the dense search with every instruction set agree") {
  // Rows that are mostly one value, with ties everywhere: small-integer entries, a common value
  // shared by many rows or differing per row, forbidden (+inf) pairs, wide and tall shapes, and
  // the oracle cases, all solved by both searches, the dense one with each instruction set.
  using crowdloss::detail::LsapSearch;
  std::mt19937 rng(2026);
  const double inf = std::numeric_limits<double>::infinity();
  const auto solve = [](const at::Tensor& m, bool maximize, LsapSearch search) {
    return crowdloss::detail::solve_lsap<double>({m.data_ptr<double>(), m.size(0), m.size(1), m.stride(0), m.stride(1)},
                                                 maximize, "linear_sum_assignment", search);
  };
  std::vector<std::pair<at::Tensor, bool>> cases;
  for (int trial = 0; trial < 1500; ++trial) {
    const int64_t a = std::uniform_int_distribution<int64_t>(1, 12)(rng);
    const int64_t b = std::uniform_int_distribution<int64_t>(1, trial % 10 == 0 ? 400 : 40)(rng);
    const bool tall = trial % 4 == 3;
    const int64_t rows = tall ? b : a, cols = tall ? a : b;
    const double density = std::array<double, 4>{0.0, 0.05, 0.3, 1.0}[static_cast<size_t>(trial % 4)];
    const bool integers = trial % 3 != 0, per_row_common = trial % 5 == 0;
    auto m = torch::empty({rows, cols}, torch::kFloat64);
    auto acc = m.accessor<double, 2>();
    double common = std::uniform_int_distribution<int>(-2, 2)(rng);
    for (int64_t i = 0; i < rows; ++i) {
      if (per_row_common) common = std::uniform_int_distribution<int>(-2, 2)(rng) * 0.5;
      for (int64_t j = 0; j < cols; ++j) {
        acc[i][j] = common;
        if (std::uniform_real_distribution<double>(0, 1)(rng) < density)
          acc[i][j] = integers ? std::uniform_int_distribution<int>(-3, 3)(rng)
                               : std::uniform_real_distribution<double>(-3, 3)(rng);
        if (trial % 7 == 1 && std::uniform_real_distribution<double>(0, 1)(rng) < (trial % 3 == 0 ? 0.7 : 0.1))
          acc[i][j] = inf;
      }
    }
    cases.emplace_back(m, trial % 7 != 1 && trial % 2 == 0);
  }
  const auto oracle = crowdloss_test::load_json("assign.json");
  for (const auto& c : oracle.at("results").at("lsap_cases"))
    cases.emplace_back(tensor_from_json(c.at("cost")).to(at::kDouble).contiguous(), c.at("maximize").get<bool>());
  int compared = 0, infeasible = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const at::Tensor& m = cases[k].first;  // named references: Clang 14 lambdas cannot capture bindings
    const bool maximize = cases[k].second;
    INFO("case " << k << ": " << m.sizes() << ", maximize " << maximize);
    bool dense_failed = false;
    crowdloss::Assignment dense;
    try {
      dense = solve(m, maximize, LsapSearch::dense);
    } catch (const c10::Error&) {
      dense_failed = true;
    }
    if (dense_failed) {
      check_error([&] { solve(m, maximize, LsapSearch::sparse); }, {"linear_sum_assignment"});
      crowdloss_test::for_each_cpu_capability(
          [&] { check_error([&] { solve(m, maximize, LsapSearch::dense); }, {"linear_sum_assignment"}); });
      ++infeasible;
      continue;
    }
    const auto sparse = solve(m, maximize, LsapSearch::sparse);
    DOCTEST_CHECK(sparse.rows == dense.rows);
    DOCTEST_CHECK(sparse.cols == dense.cols);
    crowdloss_test::for_each_cpu_capability(
        [&] { DOCTEST_CHECK(solve(m, maximize, LsapSearch::dense).cols == dense.cols); });
    ++compared;
  }
  DOCTEST_CHECK(compared > 1200);
  DOCTEST_CHECK(infeasible > 5);
}

TEST_CASE("linear_sum_assignment: forbidden pairs, infeasibility, invalid entries, empty matrices") {
  const double inf = std::numeric_limits<double>::infinity();
  // The only finite assignment avoids both cheap-looking +inf pairs.
  const auto forced = torch::tensor({inf, 1.0, 2.0, inf}, torch::kFloat64).view({2, 2});
  DOCTEST_CHECK(to_vector(std::get<1>(crowdloss::linear_sum_assignment(forced))) == std::vector<int64_t>{1, 0});
  check_error(
      [&] {
        crowdloss::linear_sum_assignment(torch::tensor({inf, inf, 1.0, 2.0}, torch::kFloat64).view({2, 2}));
      },
      {"linear_sum_assignment", "infeasible"});
  check_error(
      [&] {
        crowdloss::linear_sum_assignment(torch::tensor({1.0, std::nan(""), 1.0, 2.0}).view({2, 2}));
      },
      {"linear_sum_assignment", "invalid numeric entries"});
  check_error(
      [&] {
        crowdloss::linear_sum_assignment(torch::tensor({1.0, -inf, 1.0, 2.0}).view({2, 2}));
      },
      {"linear_sum_assignment", "invalid numeric entries"});
  check_error([&] { crowdloss::linear_sum_assignment(forced, /*maximize=*/true); },
              {"linear_sum_assignment", "invalid numeric entries"});
  // −inf is valid when maximizing (it becomes +inf, a forbidden pair).
  DOCTEST_CHECK(to_vector(std::get<1>(crowdloss::linear_sum_assignment(-forced, true))) == std::vector<int64_t>{1, 0});
  for (const auto& shape : {std::vector<int64_t>{0, 4}, std::vector<int64_t>{3, 0}, std::vector<int64_t>{0, 0}}) {
    const auto [rows, cols] = crowdloss::linear_sum_assignment(torch::zeros(shape));
    DOCTEST_CHECK(rows.numel() == 0);
    DOCTEST_CHECK(cols.numel() == 0);
    DOCTEST_CHECK((rows.scalar_type() == at::kLong));
  }
  DOCTEST_CHECK(crowdloss::linear_sum_assignment(Eigen::MatrixXd(0, 3)).rows.empty());
}

TEST_CASE(
    "linear_sum_assignment: an expanded matrix is read in place, and one too big for this machine fails at once") {
  // A stride-0 row of 2^20 columns: solved without materialising the expansion.
  const auto wide = torch::full({1, 1}, 2.0, torch::kFloat64).expand({1, int64_t{1} << 20});
  const auto a = crowdloss::detail::solve_lsap_tensor("linear_sum_assignment", wide, false);
  DOCTEST_CHECK(a.rows == std::vector<int64_t>{0});
  DOCTEST_CHECK(a.cost == 2.0);
  // 2^36 columns need 4.4 TB of working memory (64 bytes per column), more than any machine
  // running this test: an error naming the size, not a process that grows until it is killed.
  const int64_t huge = int64_t{1} << 36;
  for (const auto& shape : {std::vector<int64_t>{1, huge}, std::vector<int64_t>{huge, 1}}) {
    const auto cost = torch::zeros({1, 1}, torch::kFloat32).expand(shape);
    check_error([&] { crowdloss::linear_sum_assignment(cost); }, {"linear_sum_assignment", "1×68719476736 assignment",
                                                                  "GB of working memory, more than this machine's"});
    check_error([&] { crowdloss::linear_sum_assignment(std::vector<at::Tensor>{cost}, /*maximize=*/true); },
                {"costs[0]", "working memory"});
  }
}

TEST_CASE("linear_sum_assignment: float32, maximize, tall matrices and Eigen views") {
  torch::manual_seed(7);
  const auto cost = torch::rand({9, 5}, torch::kFloat64);
  const auto [r64, c64] = crowdloss::linear_sum_assignment(cost, true);
  const auto [rn, cn] = crowdloss::linear_sum_assignment(-cost);
  DOCTEST_CHECK(torch::equal(r64, rn));
  DOCTEST_CHECK(torch::equal(c64, cn));
  // float32 is solved in float64 after an exact conversion.
  const auto f32 = cost.to(at::kFloat);
  DOCTEST_CHECK(torch::equal(std::get<1>(crowdloss::linear_sum_assignment(f32)),
                             std::get<1>(crowdloss::linear_sum_assignment(f32.to(at::kDouble)))));
  // An Eigen block (outer stride ≠ rows) gives the answer of the same values copied.
  Eigen::MatrixXd big = Eigen::MatrixXd::Random(12, 10);
  const Eigen::MatrixXd block = big.block(2, 1, 7, 6);
  const auto from_block = crowdloss::linear_sum_assignment(big.block(2, 1, 7, 6));
  const auto from_copy = crowdloss::linear_sum_assignment(block);
  DOCTEST_CHECK(from_block.cols == from_copy.cols);
  DOCTEST_CHECK(from_block.rows == from_copy.rows);
  DOCTEST_CHECK(from_block.cost == from_copy.cost);
}

TEST_CASE("linear_sum_assignment: CUDA cost matrices are solved on the CPU") {
  if (!crowdloss_test::cuda_or_skip("linear_sum_assignment on a CUDA tensor")) return;
  const auto cost = torch::rand({20, 30}, torch::kFloat64);
  DOCTEST_CHECK(torch::equal(std::get<1>(crowdloss::linear_sum_assignment(cost.cuda())),
                             std::get<1>(crowdloss::linear_sum_assignment(cost))));
}

TEST_CASE("linear_sum_assignment: bad inputs throw c10::Error naming the function and the value") {
  check_error(
      [] {
        crowdloss::linear_sum_assignment(torch::rand({2, 3, 4}));
      },
      {"linear_sum_assignment", "2-D", "[2, 3, 4]"});
  check_error([] { crowdloss::linear_sum_assignment(torch::rand({5})); }, {"linear_sum_assignment", "[5]"});
  check_error(
      [] {
        crowdloss::linear_sum_assignment(torch::ones({2, 2}, torch::kLong));
      },
      {"linear_sum_assignment", "Long"});
  check_error([] { crowdloss::linear_sum_assignment(at::Tensor()); }, {"linear_sum_assignment", "2-D"});
  const std::vector<at::Tensor> batch = {torch::rand({2, 2}), torch::tensor({1.0, std::nan("")}).view({1, 2})};
  check_error([&] { crowdloss::linear_sum_assignment(batch); }, {"costs[1]", "invalid numeric entries"});
  const std::vector<at::Tensor> bad_shape = {torch::rand({2, 2}), torch::rand({2, 2, 2})};
  check_error([&] { crowdloss::linear_sum_assignment(bad_shape); }, {"costs[1]", "[2, 2, 2]"});
  DOCTEST_CHECK(crowdloss::linear_sum_assignment(std::vector<at::Tensor>{}).empty());
}
