#pragma once
// Loading VGG-16 convolution weights saved from Python:
//
//   import torch, torchvision
//   sd = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()
//   torch.save(dict(sd), "vgg16.pth")      # a plain dict: no OrderedDict metadata
//
// torchvision names the convolutions of `features` by their index in that Sequential:
// features.0, .2, .5, .7, .10, .12, .14, .17, .19, .21, ... (ReLUs and pools in between).
#include "state_dict.hpp"

#include <torch/torch.h>

#include <iterator>
#include <stdexcept>
#include <string>

namespace crowdloss_examples {

/// Copies `features.<i>.weight` / `.bias` of a torchvision VGG-16 state dict into the
/// convolutions of `convs`, in order. Throws std::runtime_error naming the file and the key for
/// a missing file, a key that is absent, or a shape that does not match.
inline void load_vgg16_convs(const std::string& path, torch::nn::Sequential& convs) {
  const StateDictFile file(path, "VGG-16 weights");
  // Indices of the convolutions in torchvision's vgg16().features.
  static constexpr int64_t kConvIndex[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
  size_t conv = 0;
  for (auto& module : convs->children()) {
    auto* c = module->as<torch::nn::Conv2d>();
    if (c == nullptr) continue;
    if (conv >= std::size(kConvIndex)) throw std::runtime_error(path + ": more convolutions than VGG-16 has");
    const std::string prefix = "features." + std::to_string(kConvIndex[conv++]);
    file.copy_to(prefix + ".weight", c->weight);
    file.copy_to(prefix + ".bias", c->bias);
  }
}

}  // namespace crowdloss_examples
