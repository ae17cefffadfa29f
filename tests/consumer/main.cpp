// A user's program: uses only the installed package's public umbrella header.
#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <iostream>
#include <string>

int main() {
  if (std::string(CROWDLOSS_VERSION_STRING) != EXPECTED_VERSION) {
    std::cerr << "header version " << CROWDLOSS_VERSION_STRING << " != package version " << EXPECTED_VERSION << "\n";
    return 1;
  }
  // One unit of error in the top-left pixel of a 2×2 map, grids {1, 2}: PML = ln 2 + ln 1.75.
  auto pred = torch::zeros({1, 1, 2, 2}, torch::kFloat64);
  pred.index_put_({0, 0, 0, 0}, 1.0);
  pred.requires_grad_(true);
  crowdloss::PMLLoss criterion(crowdloss::PMLLossOptions().grids({1, 2}));
  const auto loss = criterion(pred, torch::zeros({1, 1, 2, 2}, torch::kFloat64));
  loss.backward();
  const double expected = std::log(2.0 * 1.75);
  std::cout << "crowdloss " << CROWDLOSS_VERSION_STRING << " (LibTorch " << TORCH_VERSION
            << "): pml_loss = " << loss.item<double>() << ", expected " << expected << "\n";
  if (std::abs(loss.item<double>() - expected) > 1e-12 || !pred.grad().defined()) return 1;
  return 0;
}
