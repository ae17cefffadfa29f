#pragma once
/// \file
/// `torch::nn` modules wrapping the dense-detection losses. Each holds its options and forwards
/// to the free function of the same name.

#include <crowdloss/detection/losses.hpp>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <ostream>

namespace crowdloss {

/// Module form of `crowdloss::sigmoid_focal_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::SigmoidFocalLoss criterion(crowdloss::SigmoidFocalLossOptions().reduction(torch::kSum));
/// auto loss = criterion(cls_logits, onehot_targets);
/// ```
struct SigmoidFocalLossImpl : torch::nn::Cloneable<SigmoidFocalLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `SigmoidFocalLoss` for alpha outside [0, 1] or
  /// gamma < 0.
  explicit SigmoidFocalLossImpl(SigmoidFocalLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_focal_options("SigmoidFocalLoss", options.alpha(), options.gamma());
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::sigmoid_focal_loss(logits, targets, options)`: elementwise (kNone, the logits'
  /// shape) or 0-dim (kMean, kSum). logits, targets: floating tensors of one shape, dtype and
  /// device; errors as for `sigmoid_focal_loss`.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& targets) {
    return sigmoid_focal_loss(logits, targets, options);
  }
  /// Writes `crowdloss::SigmoidFocalLoss(alpha=0.25, gamma=2, reduction=kNone)` (alpha=None
  /// without the weighting).
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::SigmoidFocalLoss(alpha=";
    if (options.alpha())
      stream << *options.alpha();
    else
      stream << "None";
    stream << ", gamma=" << options.gamma() << ", reduction=" << detail::reduction_name(options.reduction()) << ")";
  }
  /// The options passed to `crowdloss::sigmoid_focal_loss` on every call. They may be changed
  /// between calls; the function validates them each time.
  SigmoidFocalLossOptions options;
};
/// `SigmoidFocalLoss`, the module to use: a holder (shared pointer) of `SigmoidFocalLossImpl`, like
/// torch's own `torch::nn::Xxx`. Construct it from `SigmoidFocalLossOptions` (or with none, for the
/// defaults), call it like a function, register it in a model with `register_module`.
TORCH_MODULE(SigmoidFocalLoss);

/// Module form of `crowdloss::iou_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::IoULoss criterion(crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU));
/// auto loss = criterion(pred_ltrb, target_ltrb);
/// ```
struct IoULossImpl : torch::nn::Cloneable<IoULossImpl> {
  /// Stores `options_` (every IoULossOptions value is valid).
  explicit IoULossImpl(IoULossOptions options_ = {}) : options(std::move(options_)) {}
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::iou_loss(pred_ltrb, target_ltrb, options)`: pred_ltrb, target_ltrb …×4 floating
  /// tensors of one shape, dtype and device; returns the per-box losses (shape …, kNone) or a
  /// 0-dim tensor (kMean, kSum). Errors as for `iou_loss`.
  at::Tensor forward(const at::Tensor& pred_ltrb, const at::Tensor& target_ltrb) {
    return iou_loss(pred_ltrb, target_ltrb, options);
  }
  /// Writes `crowdloss::IoULoss(loss_type=kIoU, reduction=kNone)`.
  void pretty_print(std::ostream& stream) const override {
    static constexpr const char* types[] = {"kIoU", "kLinearIoU", "kGIoU", "kDIoU", "kCIoU"};
    stream << "crowdloss::IoULoss(loss_type=" << types[options.loss_type().index()]
           << ", reduction=" << detail::reduction_name(options.reduction()) << ")";
  }
  /// The options passed to `crowdloss::iou_loss` on every call; they may be changed between
  /// calls.
  IoULossOptions options;
};
/// `IoULoss`, the module to use: a holder (shared pointer) of `IoULossImpl`, like torch's own
/// `torch::nn::Xxx`. Construct it from `IoULossOptions` (or with none, for the defaults), call it
/// like a function, register it in a model with `register_module`.
TORCH_MODULE(IoULoss);

}  // namespace crowdloss
