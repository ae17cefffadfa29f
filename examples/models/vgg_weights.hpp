#pragma once
// Loading VGG-16 convolution weights saved from Python:
//
//   import torch, torchvision
//   sd = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()
//   torch.save(dict(sd), "vgg16.pth")      # a plain dict: no OrderedDict metadata
//
// torchvision names the convolutions of `features` by their index in that Sequential:
// features.0, .2, .5, .7, .10, .12, .14, .17, .19, .21, ... (ReLUs and pools in between).
#include <torch/torch.h>

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

/// Copies `features.<i>.weight` / `.bias` of a torchvision VGG-16 state dict into the
/// convolutions of `convs`, in order. Throws std::runtime_error naming the file and the key for
/// a missing file, a key that is absent, or a shape that does not match.
inline void load_vgg16_convs(const std::string& path, torch::nn::Sequential& convs) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open VGG-16 weights " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue loaded;
  try {
    loaded = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + ": not a torch.save'd state dict (" + e.what_without_backtrace() + ")");
  }
  if (!loaded.isGenericDict()) throw std::runtime_error(path + ": expected a dict of tensors");
  const auto dict = loaded.toGenericDict();
  // Indices of the convolutions in torchvision's vgg16().features.
  static constexpr int64_t kConvIndex[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
  size_t conv = 0;
  torch::NoGradGuard no_grad;
  for (auto& module : convs->children()) {
    auto* c = module->as<torch::nn::Conv2d>();
    if (c == nullptr) continue;
    if (conv >= std::size(kConvIndex)) throw std::runtime_error(path + ": more convolutions than VGG-16 has");
    const std::string prefix = "features." + std::to_string(kConvIndex[conv++]);
    for (const auto& [suffix, target] : {std::pair<std::string, at::Tensor>{".weight", c->weight}, {".bias", c->bias}}) {
      const auto key = prefix + suffix;
      if (!dict.contains(key)) throw std::runtime_error(path + ": missing " + key);
      const auto value = dict.at(key).toTensor();
      if (value.sizes() != target.sizes())
        throw std::runtime_error(path + ": " + key + " has shape " + c10::str(value.sizes()) + ", expected " +
                                 c10::str(target.sizes()));
      at::Tensor(target).copy_(value);
    }
  }
}

}  // namespace crowdloss_examples
