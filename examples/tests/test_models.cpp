#include "support/checks.hpp"

#include "fixtures.hpp"

#include "models/csrnet.hpp"
#include "models/sanet.hpp"

#include <cstdio>
#include <fstream>
#include <string>

namespace ex = crowdloss_examples;
using crowdloss_examples_test::count_parameters;
using crowdloss_examples_test::temp_path;
using crowdloss_examples_test::write_pickle;
using crowdloss_test::check_error;

namespace {

c10::Dict<std::string, at::Tensor> vgg16_features_state_dict() {
  c10::Dict<std::string, at::Tensor> dict;
  const int64_t index[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
  const int64_t channels[] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
  int64_t in = 3;
  for (size_t i = 0; i < 13; ++i) {
    dict.insert("features." + std::to_string(index[i]) + ".weight", torch::randn({channels[i], in, 3, 3}));
    dict.insert("features." + std::to_string(index[i]) + ".bias", torch::randn({channels[i]}));
    in = channels[i];
  }
  dict.insert("classifier.0.weight", torch::randn({4, 4}));  // present in real files, unused
  return dict;
}

}  // namespace

TEST_CASE("CSRNet: the official architecture, 16,263,489 parameters, output stride 8") {
  ex::CSRNet net;
  DOCTEST_CHECK(count_parameters(*net) == 16263489);
  const auto out = net->forward(torch::rand({2, 3, 64, 96}));
  DOCTEST_CHECK(out.sizes() == at::IntArrayRef({2, 1, 8, 12}));
  // N(0, 0.01) weights, zero biases.
  const auto w = net->backend->ptr<torch::nn::Conv2dImpl>(0)->weight;
  DOCTEST_CHECK(w.std().item<double>() == doctest::Approx(0.01).epsilon(0.05));
  DOCTEST_CHECK(net->output->bias.abs().sum().item<double>() == 0.0);
  auto copy = std::dynamic_pointer_cast<ex::CSRNetImpl>(net->clone());
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({1, 3, 32, 32});
  DOCTEST_CHECK(torch::equal(copy->forward(x), net->forward(x)));
}

TEST_CASE("SANet: four scale-aggregation modules and a transposed-conv decoder, 914,801 parameters") {
  ex::SANet net;
  DOCTEST_CHECK(count_parameters(*net) == 914801);
  const auto out = net->forward(torch::rand({2, 3, 64, 96}));
  DOCTEST_CHECK(out.sizes() == at::IntArrayRef({2, 1, 64, 96}));  // full resolution
  DOCTEST_CHECK(out.min().item<double>() >= 0);                   // ReLU output
  auto copy = std::dynamic_pointer_cast<ex::SANetImpl>(net->clone());
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({1, 3, 32, 40});
  DOCTEST_CHECK(torch::allclose(copy->forward(x), net->forward(x)));
}

TEST_CASE("CSRNet: loads its front end from a VGG-16 state dict saved like torch.save") {
  torch::manual_seed(1);
  const auto dict = vgg16_features_state_dict();
  const auto path = temp_path("vgg16_test.pth");
  write_pickle(path, dict);
  ex::CSRNet net;
  const auto backend_before = net->backend->ptr<torch::nn::Conv2dImpl>(0)->weight.clone();
  net->load_vgg16_frontend(path);
  const int64_t index[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21};
  size_t conv = 0;
  for (auto& m : net->frontend->children()) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      const auto key = "features." + std::to_string(index[conv++]);
      DOCTEST_CHECK(torch::equal(c->weight, dict.at(key + ".weight")));
      DOCTEST_CHECK(torch::equal(c->bias, dict.at(key + ".bias")));
    }
  }
  DOCTEST_CHECK(conv == 10);
  DOCTEST_CHECK(torch::equal(net->backend->ptr<torch::nn::Conv2dImpl>(0)->weight, backend_before));  // untouched
  // Missing file, missing key, wrong shape: errors that name the file and the key.
  DOCTEST_CHECK_THROWS_WITH_AS(net->load_vgg16_frontend(temp_path("absent.pth")), doctest::Contains("absent.pth"),
                               std::runtime_error);
  auto missing = vgg16_features_state_dict();
  REQUIRE(missing.erase("features.7.bias") == 1);
  write_pickle(path, missing);
  DOCTEST_CHECK_THROWS_WITH_AS(net->load_vgg16_frontend(path), doctest::Contains("features.7.bias"),
                               std::runtime_error);
  auto wrong = vgg16_features_state_dict();
  wrong.insert_or_assign("features.2.weight", torch::randn({64, 32, 3, 3}));
  write_pickle(path, wrong);
  DOCTEST_CHECK_THROWS_WITH_AS(net->load_vgg16_frontend(path), doctest::Contains("features.2.weight"),
                               std::runtime_error);
  std::ofstream(path) << "not a pickle";
  DOCTEST_CHECK_THROWS_WITH_AS(net->load_vgg16_frontend(path), doctest::Contains("vgg16_test.pth"), std::runtime_error);
  std::remove(path.c_str());
}
