#pragma once
/// \file
/// `torch::nn` modules wrapping the density-map losses, for use as members of a model or trainer.
/// Each holds its options and forwards to the free function of the same name.

#include <crowdloss/density/pml.hpp>
#include <crowdloss/density/ssim.hpp>

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

/// 1 − SSIM as a loss: `1 - crowdloss::ssim(pred, target, options)` (a 0-dim tensor with kMean,
/// B×C with kNone).
///
/// Example:
///   crowdloss::SSIMLoss criterion(crowdloss::SSIMOptions().padding(crowdloss::kSame));
///   auto loss = criterion(pred, target);
struct SSIMLossImpl : torch::nn::Cloneable<SSIMLossImpl> {
  explicit SSIMLossImpl(SSIMOptions options_ = {}) : options(std::move(options_)) {
    detail::check_ssim_options("SSIMLoss", options);
  }
  void reset() override {}
  /// `1 - crowdloss::ssim(pred, target, options)`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return 1 - ssim(pred, target, options); }
  SSIMOptions options;
};
TORCH_MODULE(SSIMLoss);

/// Module form of `crowdloss::sanet_loss`.
///
/// Example:
///   crowdloss::SANetLoss criterion;                 // alpha 0.001, 11×11 window, valid padding
///   auto loss = criterion(pred, target);
struct SANetLossImpl : torch::nn::Cloneable<SANetLossImpl> {
  explicit SANetLossImpl(SANetLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_sanet_options("SANetLoss", options);
  }
  void reset() override {}
  /// `crowdloss::sanet_loss(pred, target, options)`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return sanet_loss(pred, target, options); }
  SANetLossOptions options;
};
TORCH_MODULE(SANetLoss);

}  // namespace crowdloss
