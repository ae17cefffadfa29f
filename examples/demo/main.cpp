// crowdloss-demo: the project's main job until the full counting trainer lands.
//
// Trains the same small fully-convolutional density regressor twice on synthetic crowds, once with
// plain pixel L2 and once with PML (+ pixel L2, the authors' full objective), from the same
// initial weights and the same batches, and reports the counting error on held-out images.
#include "synthetic_crowd.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

namespace ex = crowdloss_examples;

// Output stride 4: three 3×3 stages, two max-pools, a 1×1 density head.
struct DensityNetImpl : torch::nn::Cloneable<DensityNetImpl> {
  DensityNetImpl() { reset(); }
  void reset() override {
    body = register_module("body", torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)), torch::nn::ReLU(),
        torch::nn::MaxPool2d(2),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)), torch::nn::ReLU(),
        torch::nn::MaxPool2d(2),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 64, 3).padding(2).dilation(2)), torch::nn::ReLU(),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 1, 1))));
  }
  at::Tensor forward(const at::Tensor& x) { return body->forward(x); }
  torch::nn::Sequential body{nullptr};
};
TORCH_MODULE(DensityNet);

struct Result {
  double mae = 0, rmse = 0, seconds = 0;
};

Result train_and_evaluate(const std::string& loss_name, const DensityNet& init, const ex::CrowdBatch& train,
                          const ex::CrowdBatch& test, int64_t steps, int64_t batch) {
  auto net = std::dynamic_pointer_cast<DensityNetImpl>(init->clone());
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  const auto pml = crowdloss::PMLLossOptions().grids({1, 2, 4, 8, 16}).pixel_mse_weight(1.0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(/*seed=*/2024);  // same batches for every loss
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= steps; ++step) {
    const auto idx = torch::randint(0, train.images.size(0), {batch}, gen);
    const auto pred = net->forward(train.images.index_select(0, idx));
    const auto target = train.density.index_select(0, idx);
    const auto loss = loss_name == "pml" ? crowdloss::pml_loss(pred, target, pml) : torch::mse_loss(pred, target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % std::max<int64_t>(1, steps / 4) == 0) std::printf("  %-3s step %4lld  loss %.4f\n", loss_name.c_str(), (long long)step, loss.item<double>());
  }
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  torch::NoGradGuard no_grad;
  const auto err = net->forward(test.images).sum({1, 2, 3}) - test.counts;
  r.mae = err.abs().mean().item<double>();
  r.rmse = err.square().mean().sqrt().item<double>();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 600;
  const int64_t batch = 16;
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(0);
  const ex::SyntheticCrowdOptions data;
  auto data_gen = at::make_generator<at::CPUGeneratorImpl>(/*seed=*/7);
  const auto train = ex::make_crowd_batch(800, data, data_gen);
  const auto test = ex::make_crowd_batch(200, data, data_gen);

  std::printf("crowdloss %s demo (LibTorch %s, %d threads)\n", CROWDLOSS_VERSION_STRING, TORCH_VERSION,
              at::get_num_threads());
  std::printf("Synthetic crowds: %lldx%lld images, 0-%lld people each, density maps at stride %lld.\n",
              (long long)data.size, (long long)data.size, (long long)data.max_people, (long long)data.stride);
  std::printf("Training one small FCN per loss on %lld images for %lld steps of %lld (same init, same batches);\n"
              "counting error on %lld held-out images (mean count %.1f):\n",
              (long long)train.images.size(0), (long long)steps, (long long)batch, (long long)test.counts.size(0),
              test.counts.mean().item<double>());
  const DensityNet init;
  const auto l2 = train_and_evaluate("l2", init, train, test, steps, batch);
  const auto pml = train_and_evaluate("pml", init, train, test, steps, batch);

  std::printf("\n  loss                      count MAE   count RMSE   train time\n");
  std::printf("  pixel L2 (mse_loss)        %8.2f     %8.2f      %5.1f s\n", l2.mae, l2.rmse, l2.seconds);
  std::printf("  PML + pixel L2 (crowdloss) %8.2f     %8.2f      %5.1f s\n", pml.mae, pml.rmse, pml.seconds);
  std::printf("\nLower is better. Pass a step count as the first argument to train longer.\n");
  return 0;
}
