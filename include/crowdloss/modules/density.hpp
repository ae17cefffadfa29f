#pragma once
/// \file
/// `torch::nn` modules wrapping the density-map losses, for use as members of a model or trainer.
/// Each holds its options and forwards to the free function of the same name.

#include <crowdloss/density/pml.hpp>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace crowdloss {

/// Module form of `crowdloss::pml_loss`.
///
/// Example:
///   crowdloss::PMLLoss criterion(crowdloss::PMLLossOptions().pixel_mse_weight(1.0));
///   auto loss = criterion(pred, target);
struct PMLLossImpl : torch::nn::Cloneable<PMLLossImpl> {
  explicit PMLLossImpl(PMLLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_pml_options("PMLLoss", options);
  }
  void reset() override {}
  /// `crowdloss::pml_loss(pred, target, options)`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) {
    return pml_loss(pred, target, options);
  }
  PMLLossOptions options;
};
TORCH_MODULE(PMLLoss);

}  // namespace crowdloss
