#include "support/checks.hpp"

#include <crowdloss/reduction.hpp>

TEST_CASE("reduction: kNone, kMean and kSum applied to values") {
  const auto v = torch::tensor({1.0, 2.0, 6.0}, torch::kFloat64);
  crowdloss::Reduction r = torch::kNone;
  DOCTEST_CHECK(torch::equal(crowdloss::detail::reduce(v, r), v));
  r = torch::kMean;
  DOCTEST_CHECK(crowdloss::detail::reduce(v, r).item<double>() == 3.0);
  DOCTEST_CHECK(crowdloss::detail::reduce(v, r).dim() == 0);
  r = torch::kSum;
  DOCTEST_CHECK(crowdloss::detail::reduce(v, r).item<double>() == 9.0);
  DOCTEST_CHECK(std::string(crowdloss::detail::reduction_name(r)) == "kSum");
}

TEST_CASE("reduction: gradient flows through kMean and kSum") {
  auto v = torch::tensor({1.0, 2.0, 6.0, 3.0}, torch::kFloat64).requires_grad_(true);
  crowdloss::detail::reduce(v, torch::kMean).backward();
  DOCTEST_CHECK(torch::allclose(v.grad(), torch::full({4}, 0.25, torch::kFloat64)));
}

TEST_CASE("reduction: check_reduction rejects what a loss does not support, by name") {
  using crowdloss::detail::check_reduction;
  check_reduction<torch::enumtype::kNone, torch::enumtype::kMean>(torch::kMean, "some_loss");
  crowdloss_test::check_error(
      [] { check_reduction<torch::enumtype::kNone, torch::enumtype::kMean>(torch::kSum, "some_loss"); },
      {"some_loss", "kSum"});
}
