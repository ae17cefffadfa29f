#pragma once
// ResNet-18/34/50 backbones (He et al., "Deep Residual Learning for Image Recognition", CVPR
// 2016) laid out exactly as torchvision's, without the classifier:
//
// - stem: conv1 (7×7, stride 2, no bias), bn1, ReLU, 3×3 max-pool (stride 2);
// - layer1..layer4 of BasicBlocks (ResNet-18: 2, 2, 2, 2; ResNet-34: 3, 4, 6, 3) or Bottlenecks
//   (ResNet-50: 3, 4, 6, 3; torchvision's "v1.5", the stride on the 3×3 convolution), each block
//   named `<i>.conv1`, `<i>.bn1`, ..., with `<i>.downsample.0` (1×1 conv) and `.1` (BN) where
//   the stride or the channel count changes;
// - convolutions without bias, He-normal (fan_out) initialisation, BN weight 1 and bias 0.
//
// So a torchvision state dict saved from Python as a plain dict loads by name:
//
//   import torch, torchvision
//   sd = torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict()
//   torch.save(dict(sd), "resnet50.pth")
//
// forward() returns C3, C4, C5 (the outputs of layer2, layer3, layer4; strides 8, 16, 32). The
// input is expected normalised as the weights were trained (ImageNet mean/std for torchvision's).
//
// Parameters at width 1 (torchvision's count without fc): ResNet-18 11,176,512, ResNet-34
// 21,284,672, ResNet-50 23,508,032.
//
// Options: `width` scales every channel count (rounded, at least 1; 0.25 gives a network that
// trains on a CPU; 1 is torchvision's); `freeze_bn` keeps every BatchNorm in eval mode (running
// statistics used and never updated, whatever train() says) with its weight and bias excluded from
// autograd, as detectors fine-tune pretrained backbones at small batch sizes. Freezing BN makes
// sense with pretrained statistics: from a random init it turns BN into the identity.
#include "state_dict.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

struct ResNetOptions {
  std::string arch = "resnet50";  ///< "resnet18", "resnet34" or "resnet50"
  double width = 1.0;             ///< channel multiplier in (0, 1]; 1 is torchvision's network
  bool freeze_bn = false;         ///< BatchNorm always in eval mode, its affine parameters without grad
};

/// One residual block: a BasicBlock (3×3, 3×3; expansion 1) or a Bottleneck (1×1, 3×3 with the
/// stride, 1×1; expansion 4), with torchvision's submodule names.
struct ResNetBlockImpl : torch::nn::Cloneable<ResNetBlockImpl> {
  ResNetBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck)
      : in_(in), planes_(planes), stride_(stride), bottleneck_(bottleneck) {
    reset();
  }

  int64_t out_channels() const { return bottleneck_ ? 4 * planes_ : planes_; }

  void reset() override {
    using torch::nn::BatchNorm2d;
    using torch::nn::Conv2d;
    using torch::nn::Conv2dOptions;
    if (bottleneck_) {
      conv1 = register_module("conv1", Conv2d(Conv2dOptions(in_, planes_, 1).bias(false)));
      bn1 = register_module("bn1", BatchNorm2d(planes_));
      conv2 =
          register_module("conv2", Conv2d(Conv2dOptions(planes_, planes_, 3).stride(stride_).padding(1).bias(false)));
      bn2 = register_module("bn2", BatchNorm2d(planes_));
      conv3 = register_module("conv3", Conv2d(Conv2dOptions(planes_, out_channels(), 1).bias(false)));
      bn3 = register_module("bn3", BatchNorm2d(out_channels()));
    } else {
      conv1 = register_module("conv1", Conv2d(Conv2dOptions(in_, planes_, 3).stride(stride_).padding(1).bias(false)));
      bn1 = register_module("bn1", BatchNorm2d(planes_));
      conv2 = register_module("conv2", Conv2d(Conv2dOptions(planes_, planes_, 3).padding(1).bias(false)));
      bn2 = register_module("bn2", BatchNorm2d(planes_));
      conv3 = nullptr;
      bn3 = nullptr;
    }
    downsample = nullptr;
    if (stride_ != 1 || in_ != out_channels()) {
      downsample = register_module(
          "downsample", torch::nn::Sequential(Conv2d(Conv2dOptions(in_, out_channels(), 1).stride(stride_).bias(false)),
                                              BatchNorm2d(out_channels())));
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    if (bottleneck_) out = bn3(conv3(torch::relu(out)));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  int64_t in_, planes_, stride_;
  bool bottleneck_;
};
TORCH_MODULE(ResNetBlock);

struct ResNetImpl : torch::nn::Cloneable<ResNetImpl> {
  explicit ResNetImpl(ResNetOptions options = {}) : options_(std::move(options)) {
    if (options_.arch != "resnet18" && options_.arch != "resnet34" && options_.arch != "resnet50")
      throw std::invalid_argument("ResNet: arch must be resnet18, resnet34 or resnet50, got \"" + options_.arch + "\"");
    if (!(options_.width > 0 && options_.width <= 1)) throw std::invalid_argument("ResNet: width must lie in (0, 1]");
    reset();
  }

  void reset() override {
    const bool bottleneck = options_.arch == "resnet50";
    const std::vector<int64_t> blocks =
        options_.arch == "resnet18" ? std::vector<int64_t>{2, 2, 2, 2} : std::vector<int64_t>{3, 4, 6, 3};
    int64_t in = scaled(64);
    conv1 = register_module("conv1",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(3, in, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(in));
    layers.clear();
    channels_.clear();
    for (size_t i = 0; i < 4; ++i) {
      const int64_t planes = scaled(int64_t{64} << i);
      torch::nn::Sequential layer;
      for (int64_t b = 0; b < blocks[i]; ++b) {
        ResNetBlock block(in, planes, b == 0 && i > 0 ? 2 : 1, bottleneck);
        in = block->out_channels();
        layer->push_back(block);
      }
      layers.push_back(register_module("layer" + std::to_string(i + 1), layer));
      channels_.push_back(in);
    }
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<torch::nn::Conv2d>())
        torch::nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
    }
    apply_freeze_bn();
  }

  /// images B×3×H×W → {C3, C4, C5}: B×c×⌈H/s⌉×⌈W/s⌉ for s = 8, 16, 32 (c from out_channels()).
  std::vector<at::Tensor> forward(const at::Tensor& images) {
    auto x = torch::max_pool2d(torch::relu(bn1(conv1(images))), {3, 3}, {2, 2}, {1, 1});
    x = layers[0]->forward(x);
    const auto c3 = layers[1]->forward(x);
    const auto c4 = layers[2]->forward(c3);
    return {c3, c4, layers[3]->forward(c4)};
  }

  /// Channels of C3, C4, C5: {128, 256, 512}·width (ResNet-18/34) or {512, 1024, 2048}·width.
  std::vector<int64_t> out_channels() const { return {channels_[1], channels_[2], channels_[3]}; }

  const ResNetOptions& options() const { return options_; }

  /// Sets training mode like Module::train, except that frozen BatchNorms stay in eval mode.
  void train(bool on = true) override {
    torch::nn::Module::train(on);
    apply_freeze_bn();
  }

  /// Copies every parameter and buffer (BN running statistics and num_batches_tracked included)
  /// from a torchvision ResNet state dict saved as a plain dict (see the top of this file); `fc.*`
  /// is ignored. Throws std::runtime_error naming the file, and the key where there is one, for a
  /// file that cannot be read or is not a pickled dict, a missing key, a shape that differs (e.g.
  /// width ≠ 1 or another depth) or a key this network lacks (e.g. a ResNet-34 file into a
  /// ResNet-18). Nothing is copied unless everything matches.
  void load_torchvision(const std::string& path) {
    const StateDictFile file(path, "torchvision " + options_.arch + " weights");
    std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (target, source)
    std::set<std::string> own;
    for (const auto& p : named_parameters()) {
      copies.emplace_back(p.value(), file.matching(p.key(), p.value()));
      own.insert(p.key());
    }
    for (const auto& b : named_buffers()) {
      copies.emplace_back(b.value(), file.matching(b.key(), b.value()));
      own.insert(b.key());
    }
    for (const auto& key : file.keys()) {
      if (key.rfind("fc.", 0) != 0 && own.count(key) == 0)
        throw std::runtime_error(path + ": unexpected key " + key + " (not a torchvision " + options_.arch + "?)");
    }
    torch::NoGradGuard no_grad;
    for (auto& [target, source] : copies) target.copy_(source);
  }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers;  ///< layer1..layer4

 private:
  int64_t scaled(int64_t channels) const {
    return std::max<int64_t>(1, std::llround(static_cast<double>(channels) * options_.width));
  }

  void apply_freeze_bn() {
    if (!options_.freeze_bn) return;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->eval();
        bn->weight.requires_grad_(false);
        bn->bias.requires_grad_(false);
      }
    }
  }

  ResNetOptions options_;
  std::vector<int64_t> channels_;  // outputs of layer1..layer4
};
TORCH_MODULE(ResNet);

}  // namespace crowdloss_examples
