#include "support/doctest_torch.hpp"

#include <crowdloss/crowdloss.hpp>

#include <string>
#include <type_traits>

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

// crowdloss 0.1's option names are deprecated aliases until 0.3: code written against them
// still compiles (with a deprecation warning, silenced here) and passes the same options.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("names: crowdloss 0.1's option names are aliases of the new ones") {
  static_assert(std::is_same_v<crowdloss::FocalLossOptions, crowdloss::SigmoidFocalLossOptions>);
  static_assert(std::is_same_v<crowdloss::POTOOptions, crowdloss::POTOAssignOptions>);
  static_assert(std::is_same_v<crowdloss::AuxAssignOptions, crowdloss::POTOAuxAssignOptions>);
  static_assert(std::is_same_v<crowdloss::LLAOptions, crowdloss::LLAAssignOptions>);
  static_assert(std::is_same_v<crowdloss::DensityOptions, crowdloss::PointsToDensityOptions>);
  static_assert(std::is_same_v<crowdloss::SSIMLossOptions, crowdloss::SSIMOptions>);
  const auto logits = torch::tensor({-1.0, 2.0}), targets = torch::tensor({0.0, 1.0});
  DOCTEST_CHECK(
      torch::equal(crowdloss::sigmoid_focal_loss(logits, targets, crowdloss::FocalLossOptions().gamma(1.0)),
                   crowdloss::sigmoid_focal_loss(logits, targets, crowdloss::SigmoidFocalLossOptions().gamma(1.0))));
}
#pragma GCC diagnostic pop
