#pragma once
/// \file
/// `torch::nn` modules wrapping the dense-detection losses. Each holds its options and forwards
/// to the free function of the same name.

#include <crowdloss/detection/losses.hpp>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace crowdloss {

/// Module form of `crowdloss::sigmoid_focal_loss`.
///
/// Example:
///   crowdloss::SigmoidFocalLoss criterion(crowdloss::FocalLossOptions().reduction(torch::kSum));
///   auto loss = criterion(cls_logits, onehot_targets);
struct SigmoidFocalLossImpl : torch::nn::Cloneable<SigmoidFocalLossImpl> {
  explicit SigmoidFocalLossImpl(FocalLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_focal_options("SigmoidFocalLoss", options.alpha(), options.gamma());
  }
  void reset() override {}
  /// `crowdloss::sigmoid_focal_loss(logits, targets, options)`.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& targets) {
    return sigmoid_focal_loss(logits, targets, options);
  }
  FocalLossOptions options;
};
TORCH_MODULE(SigmoidFocalLoss);

/// Module form of `crowdloss::iou_loss`.
///
/// Example:
///   crowdloss::IoULoss criterion(crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU));
///   auto loss = criterion(pred_ltrb, target_ltrb);
struct IoULossImpl : torch::nn::Cloneable<IoULossImpl> {
  explicit IoULossImpl(IoULossOptions options_ = {}) : options(std::move(options_)) {}
  void reset() override {}
  /// `crowdloss::iou_loss(pred_ltrb, target_ltrb, options)`.
  at::Tensor forward(const at::Tensor& pred_ltrb, const at::Tensor& target_ltrb) {
    return iou_loss(pred_ltrb, target_ltrb, options);
  }
  IoULossOptions options;
};
TORCH_MODULE(IoULoss);

}  // namespace crowdloss
