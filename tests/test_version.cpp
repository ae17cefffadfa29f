#include "support/doctest_torch.hpp"

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
