#pragma once
// SANet (Cao et al., "Scale Aggregation Network for Accurate and Efficient Crowd Counting",
// ECCV 2018). The paper gives the architecture but no code; the choices made here:
//
// - Encoder: four scale-aggregation modules, each four parallel branches with 1×1, 3×3, 5×5 and
//   7×7 convolutions whose outputs are concatenated; branch widths 16, 32, 32, 16 (outputs 64,
//   128, 128, 64 channels). From the second module on, the 3×3/5×5/7×7 branches start with a 1×1
//   reduction to twice the branch width. 2×2 max-pools after modules 1, 2 and 3 (stride 8).
// - Decoder: 9×9 conv 64, 2×2 stride-2 transposed conv 64, 7×7 conv 32, transposed conv 32, 5×5
//   conv 16, transposed conv 16, 3×3 conv 16, 1×1 conv 1: full-resolution output.
// - Instance normalisation (affine) and ReLU after every convolution but the last; convolutions
//   followed by a normalisation have no bias; the 1×1 output convolution has a bias and a ReLU
//   (densities are non-negative), as in the C3-Framework port. Weights drawn from N(0, 0.01).
//
// 914,801 parameters (the paper: 0.91M).
#include <torch/torch.h>

#include <string>
#include <vector>

namespace crowdloss_examples {

namespace sanet_detail {

// conv (no bias) → instance norm (affine) → ReLU.
inline torch::nn::Sequential conv_in_relu(int64_t in, int64_t out, int64_t k) {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).padding(k / 2).bias(false)),
                               torch::nn::InstanceNorm2d(torch::nn::InstanceNorm2dOptions(out).affine(true)),
                               torch::nn::ReLU(torch::nn::ReLUOptions(true)));
}

inline torch::nn::Sequential deconv_in_relu(int64_t channels) {
  return torch::nn::Sequential(
      torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(channels, channels, 2).stride(2).bias(false)),
      torch::nn::InstanceNorm2d(torch::nn::InstanceNorm2dOptions(channels).affine(true)),
      torch::nn::ReLU(torch::nn::ReLUOptions(true)));
}

}  // namespace sanet_detail

/// One scale-aggregation module: four branches (1×1, 3×3, 5×5, 7×7) concatenated.
struct ScaleAggregationImpl : torch::nn::Cloneable<ScaleAggregationImpl> {
  ScaleAggregationImpl(int64_t in, int64_t branch, bool reduce) : in_(in), branch_(branch), reduce_(reduce) { reset(); }
  void reset() override {
    branches.clear();
    for (const int64_t k : {1, 3, 5, 7}) {
      torch::nn::Sequential b;
      if (reduce_ && k > 1) {
        b->extend(*sanet_detail::conv_in_relu(in_, 2 * branch_, 1));
        b->extend(*sanet_detail::conv_in_relu(2 * branch_, branch_, k));
      } else {
        b->extend(*sanet_detail::conv_in_relu(in_, branch_, k));
      }
      branches.push_back(register_module("branch" + std::to_string(k), b));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    std::vector<at::Tensor> outs;
    for (auto& b : branches) outs.push_back(b->forward(x));
    return torch::cat(outs, 1);
  }
  std::vector<torch::nn::Sequential> branches;

 private:
  int64_t in_, branch_;
  bool reduce_;
};
TORCH_MODULE(ScaleAggregation);

struct SANetImpl : torch::nn::Cloneable<SANetImpl> {
  SANetImpl() { reset(); }

  void reset() override {
    using namespace sanet_detail;
    encoder =
        torch::nn::Sequential(ScaleAggregation(3, 16, false), torch::nn::MaxPool2d(2), ScaleAggregation(64, 32, true),
                              torch::nn::MaxPool2d(2), ScaleAggregation(128, 32, true), torch::nn::MaxPool2d(2),
                              ScaleAggregation(128, 16, true));
    decoder = torch::nn::Sequential();
    for (const auto& part : {conv_in_relu(64, 64, 9), deconv_in_relu(64), conv_in_relu(64, 32, 7), deconv_in_relu(32),
                             conv_in_relu(32, 16, 5), deconv_in_relu(16), conv_in_relu(16, 16, 3)})
      decoder->extend(*part);
    decoder->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 1, 1)));
    decoder->push_back(torch::nn::ReLU());
    register_module("encoder", encoder);
    register_module("decoder", decoder);
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<torch::nn::Conv2d>()) c->weight.normal_(0, 0.01);
      if (auto* t = m->as<torch::nn::ConvTranspose2d>()) t->weight.normal_(0, 0.01);
    }
    output_bias().zero_();  // the output convolution's bias starts at 0
  }

  /// The 1×1 output convolution's bias (before the final ReLU).
  at::Tensor& output_bias() { return decoder->ptr<torch::nn::Conv2dImpl>(decoder->size() - 2)->bias; }

  /// images B×3×H×W (H, W multiples of 8) → density B×1×H×W.
  at::Tensor forward(const at::Tensor& images) { return decoder->forward(encoder->forward(images)); }

  torch::nn::Sequential encoder{nullptr}, decoder{nullptr};
};
TORCH_MODULE(SANet);

}  // namespace crowdloss_examples
