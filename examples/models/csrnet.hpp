#pragma once
// CSRNet (Li et al., "CSRNet: Dilated Convolutional Neural Networks for Understanding the Highly
// Congested Scenes", CVPR 2018), as the official code builds it: the first ten 3×3 convolutions of
// VGG-16 with three 2×2 max-pools (output stride 8), a back end of six 3×3 convolutions with
// dilation 2 (512, 512, 512, 256, 128, 64 channels), ReLU after every convolution, and a 1×1
// output convolution without ReLU. Weights are drawn from N(0, 0.01), biases are 0.
// 16,263,489 parameters. `width` < 1 scales every channel count (rounded, at least 1) for a
// narrower network that trains on a CPU; width 1 is the paper's model.
#include "vgg_weights.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

struct CSRNetImpl : torch::nn::Cloneable<CSRNetImpl> {
  explicit CSRNetImpl(double width = 1.0) : width_(width) {
    if (!(width > 0 && width <= 1)) throw std::invalid_argument("CSRNet: width must lie in (0, 1]");
    reset();
  }

  void reset() override {
    frontend = torch::nn::Sequential();
    int64_t in = 3;
    for (const int64_t v : kFrontend) {
      if (v == 0) {
        frontend->push_back(torch::nn::MaxPool2d(2));
        continue;
      }
      frontend->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, scaled(v), 3).padding(1)));
      frontend->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      in = scaled(v);
    }
    backend = torch::nn::Sequential();
    for (const int64_t v : {512, 512, 512, 256, 128, 64}) {
      backend->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, scaled(v), 3).padding(2).dilation(2)));
      backend->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      in = scaled(v);
    }
    output = torch::nn::Conv2d(torch::nn::Conv2dOptions(in, 1, 1));
    register_module("frontend", frontend);
    register_module("backend", backend);
    register_module("output", output);
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      if (p.key().find("weight") != std::string::npos)
        p.value().normal_(0, 0.01);
      else
        p.value().zero_();
    }
  }

  /// images B×3×H×W → density B×1×⌊H/8⌋×⌊W/8⌋.
  at::Tensor forward(const at::Tensor& images) { return output(backend->forward(frontend->forward(images))); }

  /// Loads the front end from a torchvision VGG-16 state dict (see vgg_weights.hpp).
  void load_vgg16_frontend(const std::string& path) { load_vgg16_convs(path, frontend); }

  // VGG-16's first ten convolutions; 0 marks a max-pool.
  static constexpr int64_t kFrontend[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512};

  torch::nn::Sequential frontend{nullptr}, backend{nullptr};
  torch::nn::Conv2d output{nullptr};

 private:
  int64_t scaled(int64_t channels) const {
    return std::max<int64_t>(1, std::llround(static_cast<double>(channels) * width_));
  }
  double width_;
};
TORCH_MODULE(CSRNet);

}  // namespace crowdloss_examples
