#pragma once
// FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019), the
// dense one-stage detector DeFCN (POTO + 3DMF) and LLA train; built as AdelaiDet/cvpods build it:
//
// - Backbone: a torchvision-layout ResNet-18/34/50 (resnet.hpp) giving C3, C4, C5.
// - FPN P3–P7 (strides 8, 16, 32, 64, 128): 1×1 lateral convolutions on C3–C5, top-down nearest
//   upsampling (to the lateral's size, so odd sizes work) and addition, 3×3 output convolutions;
//   P6 = 3×3 stride-2 conv on P5 and P7 = 3×3 stride-2 conv on relu(P6) (FCOS's "P6/P7 from P5").
//   Kaiming-uniform (a = 1) weights, zero biases. Level sizes are ⌈H/stride⌉ × ⌈W/stride⌉.
// - Head shared across levels: a classification tower and a box tower, each `head_convs` × (3×3
//   conv, GroupNorm(32), ReLU); classification logits (num_classes channels, bias
//   −log((1 − prior)/prior)); box regression ltrb = relu(scale_l · conv(box tower)) · stride_l with
//   one learnable scale per level (initially 1). Head convolutions: N(0, 0.01) weights, zero bias.
// - Optional 3DMF (DeFCN's 3-D max filtering, `MaxFiltering` then the `filter` conv) on the box
//   tower: filter logits, one per anchor. Optional IoU branch (a 3×3 conv on the box tower, one
//   IoU / quality logit per anchor, like FCOS's centerness).
//
// Outputs are flattened per anchor in the order of crowdloss::anchor_points(level_hw, strides):
// levels P3..P7 concatenated, each level row-major (y outer, x inner), points at cell centres.
// Images are expected normalised as the backbone's weights were trained (ImageNet mean/std).
#include "resnet.hpp"

#include <crowdloss/detection/boxes.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

struct FCOSOptions {
  std::string backbone = "resnet50";  ///< "resnet18", "resnet34" or "resnet50"
  double width = 1.0;                 ///< backbone channel multiplier in (0, 1] (1: torchvision's)
  int64_t fpn_channels = 256;         ///< FPN and head channels, a multiple of 32 (GroupNorm(32))
  int64_t num_classes = 1;
  int64_t head_convs = 4;    ///< conv-GN-ReLU layers in each tower
  double prior_prob = 0.01;  ///< initial foreground probability of the classification logits
  bool filter_3dmf = false;  ///< DeFCN's 3-D max filtering branch → filter_logits
  bool iou_branch = false;   ///< IoU (quality) branch → iou_logits
  bool freeze_bn = false;    ///< backbone BatchNorm frozen (see resnet.hpp)
};

/// What FCOS::forward returns; A = Σ_l h_l·w_l anchors, ordered as crowdloss::anchor_points.
struct FCOSOutput {
  at::Tensor cls_logits;                         ///< B×A×K classification logits
  at::Tensor box_ltrb;                           ///< B×A×4 distances (left, top, right, bottom) in pixels, ≥ 0
  at::Tensor filter_logits;                      ///< B×A×1 3DMF filter logits; undefined unless filter_3dmf
  at::Tensor iou_logits;                         ///< B×A×1 IoU logits; undefined unless iou_branch
  std::vector<std::array<int64_t, 2>> level_hw;  ///< {h, w} of P3..P7
  std::vector<double> strides;                   ///< 8, 16, 32, 64, 128
};

/// The A×2 anchor points (x, y) of an FCOS output: crowdloss::anchor_points(level_hw, strides)
/// at the cell centres, float32 on the outputs' device.
inline at::Tensor anchor_points(const FCOSOutput& out) {
  return crowdloss::anchor_points(out.level_hw, out.strides, 0.5,
                                  at::TensorOptions().dtype(at::kFloat).device(out.cls_logits.device()));
}

namespace fcos_detail {

inline torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

/// B×C×H×W → B×(H·W)×C, row-major over the cells.
inline at::Tensor flatten_level(const at::Tensor& x) {
  return x.permute({0, 2, 3, 1}).reshape({x.size(0), -1, x.size(1)});
}

}  // namespace fcos_detail

/// FPN P3–P7 on C3–C5 (see the top of the file).
struct FPNImpl : torch::nn::Cloneable<FPNImpl> {
  FPNImpl(std::vector<int64_t> in_channels, int64_t channels)
      : in_channels_(std::move(in_channels)), channels_(channels) {
    reset();
  }

  void reset() override {
    lateral.clear();
    output.clear();
    for (size_t i = 0; i < in_channels_.size(); ++i) {
      const auto name = std::to_string(i + 3);
      lateral.push_back(register_module("lateral" + name,
                                        torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels_[i], channels_, 1))));
      output.push_back(register_module("output" + name, fcos_detail::conv3x3(channels_, channels_)));
    }
    p6 = register_module("p6", fcos_detail::conv3x3(channels_, channels_, 2));
    p7 = register_module("p7", fcos_detail::conv3x3(channels_, channels_, 2));
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_uniform_(c->weight, /*a=*/1);
        c->bias.zero_();
      }
    }
  }

  /// {C3, C4, C5} → {P3, P4, P5, P6, P7}.
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& features) {
    TORCH_CHECK(features.size() == lateral.size(), "FPN: expected ", lateral.size(), " feature maps, got ",
                features.size());
    std::vector<at::Tensor> outs(features.size());
    at::Tensor top;
    for (size_t i = features.size(); i-- > 0;) {
      auto x = lateral[i](features[i]);
      if (top.defined()) {
        x = x + torch::nn::functional::interpolate(top, torch::nn::functional::InterpolateFuncOptions()
                                                            .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                                            .mode(torch::kNearest));
      }
      top = x;
      outs[i] = output[i](x);
    }
    const auto q6 = p6(outs.back());
    const auto q7 = p7(torch::relu(q6));
    outs.push_back(q6);
    outs.push_back(q7);
    return outs;
  }

  std::vector<torch::nn::Conv2d> lateral, output;  ///< for C3, C4, C5
  torch::nn::Conv2d p6{nullptr}, p7{nullptr};

 private:
  std::vector<int64_t> in_channels_;
  int64_t channels_;
};
TORCH_MODULE(FPN);

/// DeFCN's 3-D max filtering (cvpods' `MaxFiltering`, τ = 2): a 3×3 conv shared by the levels;
/// for level l the conv outputs of levels l−τ/2..l+τ/2 (those that exist), resized bilinearly to
/// level l, stacked in depth and max-pooled with a (τ+1)×3×3 kernel; the slice of level l plus
/// the level's input, then GroupNorm(32) and ReLU.
struct MaxFilteringImpl : torch::nn::Cloneable<MaxFilteringImpl> {
  explicit MaxFilteringImpl(int64_t channels, int64_t tau = 2) : channels_(channels), tau_(tau) {
    if (tau < 0 || tau % 2 != 0) throw std::invalid_argument("MaxFiltering: tau must be even and non-negative");
    reset();
  }

  void reset() override {
    conv = register_module("conv", fcos_detail::conv3x3(channels_, channels_));
    norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels_)));
  }

  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& inputs) {
    namespace F = torch::nn::functional;
    std::vector<at::Tensor> features;
    for (const auto& x : inputs) features.push_back(conv(x));
    const int64_t margin = tau_ / 2, levels = static_cast<int64_t>(features.size());
    std::vector<at::Tensor> outs;
    for (int64_t l = 0; l < levels; ++l) {
      const auto& x = features[l];
      std::vector<at::Tensor> stack;
      for (int64_t k = std::max<int64_t>(0, l - margin); k < std::min(levels, l + margin + 1); ++k) {
        stack.push_back(k == l ? x
                               : F::interpolate(features[k], F::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                                                 .mode(torch::kBilinear)
                                                                 .align_corners(false)));
      }
      const auto pooled = F::max_pool3d(torch::stack(stack, 2),
                                        F::MaxPool3dFuncOptions({tau_ + 1, 3, 3}).stride(1).padding({margin, 1, 1}))
                              .select(2, std::min(l, margin));
      outs.push_back(torch::relu(norm(pooled + inputs[l])));
    }
    return outs;
  }

  torch::nn::Conv2d conv{nullptr};
  torch::nn::GroupNorm norm{nullptr};

 private:
  int64_t channels_, tau_;
};
TORCH_MODULE(MaxFiltering);

/// The FCOS head shared across the levels (see the top of the file).
struct FCOSHeadImpl : torch::nn::Cloneable<FCOSHeadImpl> {
  FCOSHeadImpl(const FCOSOptions& options, std::vector<double> strides)
      : options_(options), strides_(std::move(strides)) {
    reset();
  }

  void reset() override {
    const int64_t c = options_.fpn_channels;
    cls_tower = torch::nn::Sequential();
    bbox_tower = torch::nn::Sequential();
    for (int64_t i = 0; i < options_.head_convs; ++i) {
      for (auto* tower : {&cls_tower, &bbox_tower}) {
        (*tower)->push_back(fcos_detail::conv3x3(c, c));
        (*tower)->push_back(torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, c)));
        (*tower)->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      }
    }
    register_module("cls_tower", cls_tower);
    register_module("bbox_tower", bbox_tower);
    cls_logits = register_module("cls_logits", fcos_detail::conv3x3(c, options_.num_classes));
    bbox_pred = register_module("bbox_pred", fcos_detail::conv3x3(c, 4));
    scales = register_parameter("scales", torch::ones({static_cast<int64_t>(strides_.size())}));
    max_filter = nullptr;
    filter = nullptr;
    iou_pred = nullptr;
    if (options_.filter_3dmf) {
      max_filter = register_module("max_filter", MaxFiltering(c));
      filter = register_module("filter", fcos_detail::conv3x3(c, 1));
    }
    if (options_.iou_branch) iou_pred = register_module("iou_pred", fcos_detail::conv3x3(c, 1));
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        conv->weight.normal_(0, 0.01);
        conv->bias.zero_();
      }
    }
    cls_logits->bias.fill_(-std::log((1 - options_.prior_prob) / options_.prior_prob));
  }

  /// P3..P7 → FCOSOutput (without level_hw/strides filled in by FCOS).
  FCOSOutput forward(const std::vector<at::Tensor>& features) {
    TORCH_CHECK(features.size() == strides_.size(), "FCOSHead: expected ", strides_.size(), " levels, got ",
                features.size());
    std::vector<at::Tensor> cls, box, iou, box_towers;
    for (size_t l = 0; l < features.size(); ++l) {
      cls.push_back(fcos_detail::flatten_level(cls_logits(tower(cls_tower, features[l]))));
      auto t = tower(bbox_tower, features[l]);
      box.push_back(
          fcos_detail::flatten_level(torch::relu(bbox_pred(t) * scales[static_cast<int64_t>(l)]) * strides_[l]));
      if (iou_pred) iou.push_back(fcos_detail::flatten_level(iou_pred(t)));
      box_towers.push_back(std::move(t));
    }
    FCOSOutput out;
    out.cls_logits = torch::cat(cls, 1);
    out.box_ltrb = torch::cat(box, 1);
    if (iou_pred) out.iou_logits = torch::cat(iou, 1);
    if (max_filter) {
      std::vector<at::Tensor> filters;
      for (const auto& f : max_filter->forward(box_towers)) filters.push_back(fcos_detail::flatten_level(filter(f)));
      out.filter_logits = torch::cat(filters, 1);
    }
    return out;
  }

  torch::nn::Sequential cls_tower{nullptr}, bbox_tower{nullptr};
  torch::nn::Conv2d cls_logits{nullptr}, bbox_pred{nullptr};
  at::Tensor scales;  ///< one learnable scale per level
  MaxFiltering max_filter{nullptr};
  torch::nn::Conv2d filter{nullptr}, iou_pred{nullptr};

 private:
  // An empty Sequential (head_convs = 0) refuses forward(): the identity then.
  static at::Tensor tower(torch::nn::Sequential& t, const at::Tensor& x) { return t->is_empty() ? x : t->forward(x); }

  FCOSOptions options_;
  std::vector<double> strides_;
};
TORCH_MODULE(FCOSHead);

struct FCOSImpl : torch::nn::Cloneable<FCOSImpl> {
  explicit FCOSImpl(FCOSOptions options = {}) : options_(std::move(options)) {
    if (options_.fpn_channels <= 0 || options_.fpn_channels % 32 != 0)
      throw std::invalid_argument(
          "FCOS: fpn_channels must be a positive multiple of 32 (GroupNorm with 32 groups), got " +
          std::to_string(options_.fpn_channels));
    if (options_.num_classes < 1) throw std::invalid_argument("FCOS: num_classes must be at least 1");
    if (options_.head_convs < 0) throw std::invalid_argument("FCOS: head_convs must not be negative");
    if (!(options_.prior_prob > 0 && options_.prior_prob < 1))
      throw std::invalid_argument("FCOS: prior_prob must lie in (0, 1)");
    reset();
  }

  void reset() override {
    backbone =
        register_module("backbone", ResNet(ResNetOptions{options_.backbone, options_.width, options_.freeze_bn}));
    fpn = register_module("fpn", FPN(backbone->out_channels(), options_.fpn_channels));
    head = register_module("head", FCOSHead(options_, kStrides));
  }

  /// images B×3×H×W (normalised) → per-anchor outputs, anchors as crowdloss::anchor_points.
  FCOSOutput forward(const at::Tensor& images) {
    TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "FCOS: expected images of shape (B, 3, H, W), got ",
                images.sizes());
    const auto features = fpn->forward(backbone->forward(images));
    auto out = head->forward(features);
    for (const auto& f : features) out.level_hw.push_back({f.size(2), f.size(3)});
    out.strides = kStrides;
    return out;
  }

  /// Loads the backbone from a torchvision ResNet state dict (ResNet::load_torchvision).
  void load_backbone(const std::string& path) { backbone->load_torchvision(path); }

  const FCOSOptions& options() const { return options_; }

  inline static const std::vector<double> kStrides{8, 16, 32, 64, 128};

  ResNet backbone{nullptr};
  FPN fpn{nullptr};
  FCOSHead head{nullptr};

 private:
  FCOSOptions options_;
};
TORCH_MODULE(FCOS);

}  // namespace crowdloss_examples
