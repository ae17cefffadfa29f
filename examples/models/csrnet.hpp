#pragma once
// CSRNet (Li et al., "CSRNet: Dilated Convolutional Neural Networks for Understanding the Highly
// Congested Scenes", CVPR 2018), as the official code builds it: the first ten 3×3 convolutions of
// VGG-16 with three 2×2 max-pools (output stride 8), a back end of six 3×3 convolutions with
// dilation 2 (512, 512, 512, 256, 128, 64 channels), ReLU after every convolution, and a 1×1
// output convolution without ReLU. Weights are drawn from N(0, 0.01), biases are 0.
// 16,263,489 parameters.
#include "vgg_weights.hpp"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace crowdloss_examples {

struct CSRNetImpl : torch::nn::Cloneable<CSRNetImpl> {
  CSRNetImpl() { reset(); }

  void reset() override {
    frontend = torch::nn::Sequential();
    int64_t in = 3;
    for (const int64_t v : kFrontend) {
      if (v == 0) {
        frontend->push_back(torch::nn::MaxPool2d(2));
        continue;
      }
      frontend->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, v, 3).padding(1)));
      frontend->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      in = v;
    }
    backend = torch::nn::Sequential();
    for (const int64_t v : {512, 512, 512, 256, 128, 64}) {
      backend->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, v, 3).padding(2).dilation(2)));
      backend->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
      in = v;
    }
    output = torch::nn::Conv2d(torch::nn::Conv2dOptions(in, 1, 1));
    register_module("frontend", frontend);
    register_module("backend", backend);
    register_module("output", output);
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      if (p.key().find("weight") != std::string::npos) p.value().normal_(0, 0.01);
      else p.value().zero_();
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
};
TORCH_MODULE(CSRNet);

}  // namespace crowdloss_examples
