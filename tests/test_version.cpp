#include "support/doctest_torch.hpp"

#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <string>

TEST_CASE("version: the header's version is the CMake package version") {
  // CROWDLOSS_EXPECTED_VERSION is PROJECT_VERSION, which CMake read back from version.hpp.
  DOCTEST_CHECK(std::string(CROWDLOSS_VERSION_STRING) == CROWDLOSS_EXPECTED_VERSION);
}

TEST_CASE("compat: the LibTorch version check agrees with torch's own version") {
  DOCTEST_CHECK(CROWDLOSS_TORCH_VERSION_AT_LEAST(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR));
  DOCTEST_CHECK_FALSE(CROWDLOSS_TORCH_VERSION_AT_LEAST(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR + 1));
  DOCTEST_CHECK_FALSE(CROWDLOSS_TORCH_VERSION_AT_LEAST(TORCH_VERSION_MAJOR + 1, 0));
  MESSAGE("compiled against LibTorch " << TORCH_VERSION << ", CUDA available: " << torch::cuda::is_available());
}

TEST_CASE("compat: AutocastGuard turns autocast on for its scope, nests, and restores the previous state") {
  using crowdloss::detail::autocast_enabled;
  using crowdloss::detail::AutocastGuard;
  for (const auto device : {c10::kCPU, c10::kCUDA}) {  // only thread-local flags: no CUDA needed
    INFO("device " << device);
    const auto dtype_before = crowdloss::detail::autocast_dtype(device);
    DOCTEST_REQUIRE_FALSE(autocast_enabled(device));
    {
      AutocastGuard outer(device, at::kBFloat16);
      DOCTEST_CHECK(autocast_enabled(device));
      DOCTEST_CHECK((crowdloss::detail::autocast_dtype(device) == at::kBFloat16));
      {
        AutocastGuard inner(device, at::kBFloat16, /*enabled=*/false);
        DOCTEST_CHECK_FALSE(autocast_enabled(device));
      }
      DOCTEST_CHECK(autocast_enabled(device));
    }
    DOCTEST_CHECK_FALSE(autocast_enabled(device));
    DOCTEST_CHECK((crowdloss::detail::autocast_dtype(device) == dtype_before));
  }
  // On the CPU the guard really changes what a matmul computes in.
  const auto a = torch::rand({4, 4});
  {
    AutocastGuard guard(c10::kCPU, at::kBFloat16);
    DOCTEST_CHECK((torch::mm(a, a).scalar_type() == at::kBFloat16));
  }
  DOCTEST_CHECK((torch::mm(a, a).scalar_type() == at::kFloat));
  crowdloss_test::check_error([] { AutocastGuard guard(c10::kMeta, at::kHalf); }, {"autocast", "meta"});
}
