#pragma once
/// \file
/// `torch::nn` modules wrapping the density-map losses, for use as members of a model or trainer.
/// Each holds its options and forwards to the free function of the same name.

#include <crowdloss/density/bayesian.hpp>
#include <crowdloss/density/dm_count.hpp>
#include <crowdloss/density/ms_ssim.hpp>
#include <crowdloss/density/pml.hpp>
#include <crowdloss/density/ssim.hpp>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <ostream>
#include <vector>

namespace crowdloss {

namespace detail {

/// Writes the SSIM options as `window_size=11, sigma=1.5, …, padding=kValid` (no reduction).
inline void print_ssim_options(std::ostream& stream, const SSIMOptions& o, bool padding = true) {
  stream << "window_size=" << o.window_size() << ", sigma=" << o.sigma() << ", k1=" << o.k1() << ", k2=" << o.k2()
         << ", data_range=" << o.data_range();
  if (padding)
    stream << ", padding=" << (std::holds_alternative<torch::enumtype::kSame>(o.padding()) ? "kSame" : "kValid");
}

}  // namespace detail

/// Module form of `crowdloss::pml_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::PMLLoss criterion(crowdloss::PMLLossOptions().pixel_mse_weight(1.0));
/// auto loss = criterion(pred, target);
/// ```
struct PMLLossImpl : torch::nn::Cloneable<PMLLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `PMLLoss` for invalid grids (empty, not
  /// positive, not strictly increasing, not each dividing the next) or a negative
  /// pixel_mse_weight.
  explicit PMLLossImpl(PMLLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_pml_options("PMLLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::pml_loss(pred, target, options)`: a 0-dim tensor in pred's dtype. pred, target:
  /// B×C×H×W floating tensors of one shape, dtype and device; errors as for `pml_loss`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return pml_loss(pred, target, options); }
  /// Writes `crowdloss::PMLLoss(grids=[1, 2, 4, 8, 16, 32], pixel_mse_weight=0, …)`: every option.
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::PMLLoss(grids=" << at::IntArrayRef(options.grids())
           << ", pixel_mse_weight=" << options.pixel_mse_weight() << std::boolalpha
           << ", pad_to_multiple=" << options.pad_to_multiple() << ", reference_order=" << options.reference_order()
           << std::noboolalpha << ", all_reduce=" << (options.all_reduce() ? "set" : "none") << ")";
  }
  /// The options passed to `crowdloss::pml_loss` on every call. They may be changed between
  /// calls; the function validates them each time.
  PMLLossOptions options;
};
/// `PMLLoss`, the module to use: a holder (shared pointer) of `PMLLossImpl`, like torch's own
/// `torch::nn::Xxx`. Construct it from `PMLLossOptions` (or with none, for the defaults), call it
/// like a function, register it in a model with `register_module`.
TORCH_MODULE(PMLLoss);

/// 1 − SSIM as a loss: `1 - crowdloss::ssim(pred, target, options)` (a 0-dim tensor with kMean,
/// B×C with kNone).
///
/// Example:
/// ```cpp
/// crowdloss::SSIMLoss criterion(crowdloss::SSIMLossOptions().padding(crowdloss::kSame));
/// auto loss = criterion(pred, target);
/// ```
struct SSIMLossImpl : torch::nn::Cloneable<SSIMLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `SSIMLoss` for an even or non-positive
  /// window_size, sigma ≤ 0, k1 or k2 < 0, or data_range ≤ 0.
  explicit SSIMLossImpl(SSIMLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_ssim_options("SSIMLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `1 - crowdloss::ssim(pred, target, options)`: a 0-dim tensor (kMean) or B×C (kNone), in
  /// pred's dtype. pred, target: B×C×H×W floating tensors of one shape, dtype and device; errors
  /// as for `ssim`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return 1 - ssim(pred, target, options); }
  /// Writes `crowdloss::SSIMLoss(window_size=11, sigma=1.5, …, reduction=kMean)`: every option.
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::SSIMLoss(";
    detail::print_ssim_options(stream, options);
    stream << ", reduction=" << detail::reduction_name(options.reduction()) << ")";
  }
  /// The options passed to `crowdloss::ssim` on every call. They may be changed between calls; the
  /// function validates them each time.
  SSIMLossOptions options;
};
/// `SSIMLoss`, the module to use: a holder (shared pointer) of `SSIMLossImpl`, like torch's own
/// `torch::nn::Xxx`. Construct it from `SSIMLossOptions` (or with none, for the defaults), call it like
/// a function, register it in a model with `register_module`.
TORCH_MODULE(SSIMLoss);

/// Module form of 1 − `crowdloss::ms_ssim`.
///
/// Example:
/// ```cpp
/// crowdloss::MSSSIMLoss criterion(crowdloss::MSSSIMLossOptions().drop_levels(true));
/// auto loss = criterion(pred, target);
/// ```
struct MSSSIMLossImpl : torch::nn::Cloneable<MSSSIMLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `MSSSIMLoss` for options `ms_ssim` rejects
  /// whatever the maps (window, constants, weights).
  explicit MSSSIMLossImpl(MSSSIMLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_ms_ssim_options("MSSSIMLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `1 - crowdloss::ms_ssim(pred, target, options)`: a 0-dim tensor (kMean) or a B tensor
  /// (kNone), in pred's dtype. pred, target: B×C×H×W floating tensors of one shape, dtype and
  /// device; errors as for `ms_ssim`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return 1 - ms_ssim(pred, target, options); }
  /// Writes `crowdloss::MSSSIMLoss(window_size=11, …, weights=[0.0448, …], drop_levels=false,
  /// reduction=kMean)`: every option.
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::MSSSIMLoss(";
    detail::print_ssim_options(stream, detail::ms_ssim_window_options(options), /*padding=*/false);
    stream << ", weights=[";
    for (size_t i = 0; i < options.weights().size(); ++i) stream << (i ? ", " : "") << options.weights()[i];
    stream << "], drop_levels=" << (options.drop_levels() ? "true" : "false")
           << ", reduction=" << detail::reduction_name(options.reduction()) << ")";
  }
  /// The options passed to `crowdloss::ms_ssim` on every call. They may be changed between calls;
  /// the function validates them each time.
  MSSSIMLossOptions options;
};
/// `MSSSIMLoss`, the module to use: a holder (shared pointer) of `MSSSIMLossImpl`, like torch's own
/// `torch::nn::Xxx`. Construct it from `MSSSIMLossOptions` (or with none, for the defaults), call
/// it like a function, register it in a model with `register_module`.
TORCH_MODULE(MSSSIMLoss);

/// Module form of `crowdloss::bayesian_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::BayesianLoss criterion(crowdloss::BayesianLossOptions().use_background(true));
/// auto loss = criterion(density, heads);   // heads: one N×2 tensor per image
/// ```
struct BayesianLossImpl : torch::nn::Cloneable<BayesianLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `BayesianLoss` for stride < 1, σ or ratio ≤ 0,
  /// or a shorter side that is not positive.
  explicit BayesianLossImpl(BayesianLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_bayesian_options("BayesianLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::bayesian_loss(pred, points, options)`: a 0-dim tensor in pred's dtype. pred:
  /// B×1×h×w; points: B tensors N_b×2 (x, y) in image pixels; errors as for `bayesian_loss`.
  at::Tensor forward(const at::Tensor& pred, const std::vector<at::Tensor>& points) {
    return bayesian_loss(pred, points, options);
  }
  /// Writes `crowdloss::BayesianLoss(stride=8, sigma=8, use_background=true, …)`: every option.
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::BayesianLoss(stride=" << options.stride() << ", sigma=" << options.sigma()
           << ", use_background=" << (options.use_background() ? "true" : "false")
           << ", background_ratio=" << options.background_ratio() << ", shorter_sides=[";
    for (size_t i = 0; i < options.shorter_sides().size(); ++i) stream << (i ? ", " : "") << options.shorter_sides()[i];
    stream << "])";
  }
  /// The options passed to `crowdloss::bayesian_loss` on every call. They may be changed between
  /// calls; the function validates them each time.
  BayesianLossOptions options;
};
/// `BayesianLoss`, the module to use: a holder (shared pointer) of `BayesianLossImpl`, like
/// torch's own `torch::nn::Xxx`. Construct it from `BayesianLossOptions` (or with none, for the
/// defaults), call it like a function, register it in a model with `register_module`.
TORCH_MODULE(BayesianLoss);

/// Module form of `crowdloss::dm_count_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::DMCountLoss criterion;   // DM-Count's train.py weights
/// auto loss = criterion(density, heads);
/// ```
struct DMCountLossImpl : torch::nn::Cloneable<DMCountLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `DMCountLoss` for options `dm_count_loss` refuses.
  explicit DMCountLossImpl(DMCountLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_dm_count_options("DMCountLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::dm_count_loss(pred, points, options)`: a 0-dim tensor in pred's dtype. pred:
  /// B×1×h×w; points: B tensors N_b×2 (x, y) in image pixels; errors as for `dm_count_loss`.
  at::Tensor forward(const at::Tensor& pred, const std::vector<at::Tensor>& points) {
    return dm_count_loss(pred, points, options);
  }
  /// Writes `crowdloss::DMCountLoss(stride=8, ot_weight=0.1, …)`: every option.
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::DMCountLoss(stride=" << options.stride() << ", ot_weight=" << options.ot_weight()
           << ", tv_weight=" << options.tv_weight() << ", reg=" << options.reg()
           << ", sinkhorn_iterations=" << options.sinkhorn_iterations()
           << ", norm_coordinates=" << (options.norm_coordinates() ? "true" : "false") << ")";
  }
  /// The options passed to `crowdloss::dm_count_loss` on every call. They may be changed between
  /// calls; the function validates them each time.
  DMCountLossOptions options;
};
/// `DMCountLoss`, the module to use: a holder (shared pointer) of `DMCountLossImpl`, like torch's
/// own `torch::nn::Xxx`. Construct it from `DMCountLossOptions` (or with none, for the defaults),
/// call it like a function, register it in a model with `register_module`.
TORCH_MODULE(DMCountLoss);

/// Module form of `crowdloss::sanet_loss`.
///
/// Example:
/// ```cpp
/// crowdloss::SANetLoss criterion;                 // alpha 0.001, 11×11 window, valid padding
/// auto loss = criterion(pred, target);
/// ```
struct SANetLossImpl : torch::nn::Cloneable<SANetLossImpl> {
  /// Stores `options_`. Throws c10::Error naming `SANetLoss` for α < 0 or invalid SSIM options
  /// (as `SSIMLoss`).
  explicit SANetLossImpl(SANetLossOptions options_ = {}) : options(std::move(options_)) {
    detail::check_sanet_options("SANetLoss", options);
  }
  /// Does nothing: the module has no parameters or buffers to (re)initialise.
  void reset() override {}
  /// `crowdloss::sanet_loss(pred, target, options)`: a 0-dim tensor (kMean, kSum) or a B tensor
  /// (kNone), in pred's dtype. pred, target: B×C×H×W floating tensors of one shape, dtype and
  /// device; errors as for `sanet_loss`.
  at::Tensor forward(const at::Tensor& pred, const at::Tensor& target) { return sanet_loss(pred, target, options); }
  /// Writes `crowdloss::SANetLoss(alpha=0.001, window_size=11, …, reduction=kMean)`: every option
  /// that is used (the SSIM options' reduction is not).
  void pretty_print(std::ostream& stream) const override {
    stream << "crowdloss::SANetLoss(alpha=" << options.alpha() << ", ";
    detail::print_ssim_options(stream, options.ssim());
    stream << ", reduction=" << detail::reduction_name(options.reduction()) << ")";
  }
  /// The options passed to `crowdloss::sanet_loss` on every call. They may be changed between
  /// calls; the function validates them each time.
  SANetLossOptions options;
};
/// `SANetLoss`, the module to use: a holder (shared pointer) of `SANetLossImpl`, like torch's own
/// `torch::nn::Xxx`. Construct it from `SANetLossOptions` (or with none, for the defaults), call it
/// like a function, register it in a model with `register_module`.
TORCH_MODULE(SANetLoss);

}  // namespace crowdloss
