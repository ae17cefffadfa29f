#include "support/checks.hpp"

#include "fixtures.hpp"

#include "models/fcos.hpp"
#include "models/resnet.hpp"

#include <crowdloss/detection/boxes.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;
using crowdloss_examples_test::count_parameters;
using crowdloss_examples_test::temp_path;
using crowdloss_examples_test::write_pickle;

namespace {

// A small, fast FCOS: ResNet-18 at width 0.25, 32 FPN channels, two convs per tower.
ex::FCOSOptions small_options() {
  ex::FCOSOptions o;
  o.backbone = "resnet18";
  o.width = 0.25;
  o.fpn_channels = 32;
  o.head_convs = 2;
  return o;
}

// torchvision's resnet18().state_dict() names and shapes, written out independently of the model,
// with random values (positive running variances, num_batches_tracked an int64 scalar).
c10::Dict<std::string, at::Tensor> torchvision_resnet18_state_dict() {
  c10::Dict<std::string, at::Tensor> dict;
  const auto bn = [&](const std::string& prefix, int64_t c) {
    dict.insert(prefix + ".weight", torch::randn({c}));
    dict.insert(prefix + ".bias", torch::randn({c}));
    dict.insert(prefix + ".running_mean", torch::randn({c}));
    dict.insert(prefix + ".running_var", torch::rand({c}) + 0.5);
    dict.insert(prefix + ".num_batches_tracked", torch::full({}, 1234, torch::kLong));
  };
  dict.insert("conv1.weight", torch::randn({64, 3, 7, 7}));
  bn("bn1", 64);
  int64_t in = 64;
  for (int64_t layer = 1; layer <= 4; ++layer) {
    const int64_t planes = int64_t{64} << (layer - 1);
    for (int64_t block = 0; block < 2; ++block) {
      const auto p = "layer" + std::to_string(layer) + "." + std::to_string(block);
      dict.insert(p + ".conv1.weight", torch::randn({planes, in, 3, 3}));
      bn(p + ".bn1", planes);
      dict.insert(p + ".conv2.weight", torch::randn({planes, planes, 3, 3}));
      bn(p + ".bn2", planes);
      if (block == 0 && layer > 1) {
        dict.insert(p + ".downsample.0.weight", torch::randn({planes, in, 1, 1}));
        bn(p + ".downsample.1", planes);
      }
      in = planes;
    }
  }
  dict.insert("fc.weight", torch::randn({1000, 512}));
  dict.insert("fc.bias", torch::randn({1000}));
  return dict;
}

}  // namespace

TEST_CASE("detector model: ResNet-18/34/50 at width 1 have torchvision's parameter counts without fc") {
  // torchvision: resnet18 11,689,512, resnet34 21,797,672 (fc 512·1000 + 1000 = 513,000);
  // resnet50 25,557,032 (fc 2048·1000 + 1000 = 2,049,000).
  ex::ResNet r18(ex::ResNetOptions{"resnet18", 1.0, false});
  ex::ResNet r34(ex::ResNetOptions{"resnet34", 1.0, false});
  ex::ResNet r50(ex::ResNetOptions{"resnet50", 1.0, false});
  DOCTEST_CHECK(count_parameters(*r18) == 11689512 - 513000);
  DOCTEST_CHECK(count_parameters(*r34) == 21797672 - 513000);
  DOCTEST_CHECK(count_parameters(*r50) == 25557032 - 2049000);
  DOCTEST_CHECK(r18->out_channels() == std::vector<int64_t>{128, 256, 512});
  DOCTEST_CHECK(r50->out_channels() == std::vector<int64_t>{512, 1024, 2048});
  // torchvision's names, e.g. the Bottleneck's third convolution and the downsample branch.
  const auto params = r50->named_parameters();
  DOCTEST_CHECK(params.contains("layer1.0.conv3.weight"));
  DOCTEST_CHECK(params.contains("layer4.0.downsample.0.weight"));
  DOCTEST_CHECK(params.contains("layer4.0.downsample.1.bias"));
  DOCTEST_CHECK(params["layer2.0.conv2.weight"].sizes() == at::IntArrayRef({128, 128, 3, 3}));  // stride on the 3×3
  const auto first = r50->layers[1]->ptr<ex::ResNetBlockImpl>(0);
  DOCTEST_CHECK(first->conv1->options.stride()->at(0) == 1);
  DOCTEST_CHECK(first->conv2->options.stride()->at(0) == 2);
  DOCTEST_CHECK(r50->named_buffers().contains("layer3.5.bn3.num_batches_tracked"));
  DOCTEST_CHECK_THROWS_AS(ex::ResNet(ex::ResNetOptions{"resnet101", 1.0, false}), std::invalid_argument);
}

TEST_CASE("detector model: FCOS output shapes and level sizes for an odd input size") {
  torch::manual_seed(0);
  auto o = small_options();
  o.num_classes = 2;
  ex::FCOS net(o);
  const auto c = net->backbone->forward(torch::randn({2, 3, 100, 130}));
  REQUIRE(c.size() == 3);
  DOCTEST_CHECK(c[0].sizes() == at::IntArrayRef({2, 32, 13, 17}));  // 128·0.25 channels, ⌈100/8⌉×⌈130/8⌉
  DOCTEST_CHECK(c[2].sizes() == at::IntArrayRef({2, 128, 4, 5}));

  const auto out = net->forward(torch::randn({2, 3, 100, 130}));
  const std::vector<std::array<int64_t, 2>> hw{{13, 17}, {7, 9}, {4, 5}, {2, 3}, {1, 2}};
  DOCTEST_CHECK((out.level_hw == hw));
  DOCTEST_CHECK(out.strides == std::vector<double>{8, 16, 32, 64, 128});
  const int64_t anchors = 13 * 17 + 7 * 9 + 4 * 5 + 2 * 3 + 1 * 2;
  DOCTEST_CHECK(out.cls_logits.sizes() == at::IntArrayRef({2, anchors, 2}));
  DOCTEST_CHECK(out.box_ltrb.sizes() == at::IntArrayRef({2, anchors, 4}));
  DOCTEST_CHECK_FALSE(out.filter_logits.defined());
  DOCTEST_CHECK_FALSE(out.iou_logits.defined());
  const auto points = ex::anchor_points(out);
  DOCTEST_CHECK(points.sizes() == at::IntArrayRef({anchors, 2}));
  DOCTEST_CHECK(torch::equal(points, crowdloss::anchor_points(hw, {8, 16, 32, 64, 128})));

  // A clone computes the same function.
  net->eval();
  auto copy = std::dynamic_pointer_cast<ex::FCOSImpl>(net->clone());
  REQUIRE(copy != nullptr);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 64, 72});
  DOCTEST_CHECK(torch::allclose(copy->forward(x).cls_logits, net->forward(x).cls_logits));
}

TEST_CASE("detector model: anchor index of level 1 cell (y, x) holds that cell's head output") {
  torch::manual_seed(1);
  ex::FCOS net(small_options());
  net->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 100, 130});
  const auto out = net->forward(images);
  const auto p = net->fpn->forward(net->backbone->forward(images));
  const auto cls4 = net->head->cls_logits(net->head->cls_tower->forward(p[1]));  // B×1×7×9
  const auto box4 =
      torch::relu(net->head->bbox_pred(net->head->bbox_tower->forward(p[1])) * net->head->scales[1]) * 16.0;
  const auto points = ex::anchor_points(out);
  const int64_t offset = 13 * 17;  // anchors of level 0
  for (const auto& [y, x] : std::vector<std::array<int64_t, 2>>{{0, 0}, {0, 8}, {3, 4}, {6, 0}, {6, 8}}) {
    const int64_t a = offset + y * 9 + x;
    INFO("y = " << y << ", x = " << x);
    DOCTEST_CHECK(torch::allclose(out.cls_logits.select(1, a), cls4.select(3, x).select(2, y)));
    DOCTEST_CHECK(torch::allclose(out.box_ltrb.select(1, a), box4.select(3, x).select(2, y)));
    DOCTEST_CHECK(points[a][0].item<double>() == (x + 0.5) * 16);
    DOCTEST_CHECK(points[a][1].item<double>() == (y + 0.5) * 16);
  }
}

TEST_CASE("detector model: prior bias of the classification logits and non-negative boxes") {
  torch::manual_seed(2);
  auto o = small_options();
  o.num_classes = 3;
  ex::FCOS net(o);
  const double prior_bias = -std::log((1 - 0.01) / 0.01);  // −4.59512
  DOCTEST_CHECK(prior_bias == doctest::Approx(-4.59512).epsilon(1e-5));
  const auto bias = net->head->cls_logits->bias;
  DOCTEST_CHECK(bias.sizes() == at::IntArrayRef({3}));
  DOCTEST_CHECK(torch::allclose(bias, torch::full({3}, prior_bias)));
  DOCTEST_CHECK(net->head->bbox_pred->bias.abs().sum().item<double>() == 0.0);
  DOCTEST_CHECK(torch::equal(net->head->scales, torch::ones({5})));
  DOCTEST_CHECK(net->head->cls_tower[0]->as<torch::nn::Conv2d>()->weight.std().item<double>() ==
                doctest::Approx(0.01).epsilon(0.1));
  const auto out = net->forward(torch::randn({2, 3, 64, 80}));
  DOCTEST_CHECK(out.box_ltrb.min().item<double>() >= 0);
  DOCTEST_CHECK(out.box_ltrb.max().item<double>() > 0);
  // N(0, 0.01) weights: the logits start close to the prior.
  DOCTEST_CHECK(torch::sigmoid(out.cls_logits).mean().item<double>() == doctest::Approx(0.01).epsilon(0.2));
}

TEST_CASE("detector model: 3DMF filter and IoU branches are present exactly when asked for") {
  torch::manual_seed(3);
  auto o = small_options();
  o.filter_3dmf = true;
  ex::FCOS with_filter(o);
  o.filter_3dmf = false;
  o.iou_branch = true;
  ex::FCOS with_iou(o);
  o.filter_3dmf = true;
  ex::FCOS with_both(o);
  const auto images = torch::randn({2, 3, 100, 130});
  const int64_t anchors = 312;
  const auto f = with_filter->forward(images);
  DOCTEST_CHECK(f.filter_logits.sizes() == at::IntArrayRef({2, anchors, 1}));
  DOCTEST_CHECK_FALSE(f.iou_logits.defined());
  DOCTEST_CHECK_FALSE(with_filter->head->max_filter.is_empty());
  DOCTEST_CHECK(with_filter->head->iou_pred.is_empty());
  const auto i = with_iou->forward(images);
  DOCTEST_CHECK(i.iou_logits.sizes() == at::IntArrayRef({2, anchors, 1}));
  DOCTEST_CHECK_FALSE(i.filter_logits.defined());
  DOCTEST_CHECK(with_iou->head->max_filter.is_empty());
  const auto b = with_both->forward(images);
  DOCTEST_CHECK(b.filter_logits.sizes() == at::IntArrayRef({2, anchors, 1}));
  DOCTEST_CHECK(b.iou_logits.sizes() == at::IntArrayRef({2, anchors, 1}));
  // The parameters the branches add: 3DMF conv + GroupNorm + filter conv; the IoU conv.
  const int64_t c = 32;
  DOCTEST_CHECK(count_parameters(*with_both) - count_parameters(*with_iou) == (9 * c * c + c) + 2 * c + (9 * c + 1));
  DOCTEST_CHECK(count_parameters(*with_both) - count_parameters(*with_filter) == 9 * c + 1);
}

TEST_CASE("detector model: 3DMF max-filters across neighbouring levels and space, as DeFCN") {
  torch::manual_seed(4);
  ex::MaxFiltering mf(32);
  const std::vector<at::Tensor> inputs{torch::randn({2, 32, 13, 17}), torch::randn({2, 32, 7, 9}),
                                       torch::randn({2, 32, 4, 5})};
  const auto outs = mf->forward(inputs);
  REQUIRE(outs.size() == 3);
  // Reference: 3×3 spatial max of each neighbour's conv output resized to the level, then the max
  // over the neighbours l−1, l, l+1 that exist.
  namespace F = torch::nn::functional;
  std::vector<at::Tensor> conv;
  for (const auto& x : inputs) conv.push_back(mf->conv(x));
  for (int64_t l = 0; l < 3; ++l) {
    const auto& x = conv[l];
    at::Tensor ref;
    for (int64_t k = std::max<int64_t>(0, l - 1); k <= std::min<int64_t>(2, l + 1); ++k) {
      const auto resized = F::interpolate(conv[k], F::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false));
      const auto pooled = F::max_pool2d(resized, F::MaxPool2dFuncOptions(3).stride(1).padding(1));
      ref = ref.defined() ? torch::maximum(ref, pooled) : pooled;
    }
    INFO("level " << l);
    DOCTEST_CHECK(outs[l].sizes() == inputs[l].sizes());
    DOCTEST_CHECK(torch::allclose(outs[l], torch::relu(mf->norm(ref + inputs[l])), 1e-5, 1e-5));
  }
}

TEST_CASE("detector model: fpn_channels that GroupNorm(32) cannot split are refused") {
  auto o = small_options();
  o.fpn_channels = 48;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::FCOS{o}, doctest::Contains("fpn_channels must be a positive multiple of 32"),
                               std::invalid_argument);
  o.fpn_channels = 64;
  o.backbone = "vgg16";
  DOCTEST_CHECK_THROWS_WITH_AS(ex::FCOS{o}, doctest::Contains("vgg16"), std::invalid_argument);
  o.backbone = "resnet18";
  o.prior_prob = 1.0;
  DOCTEST_CHECK_THROWS_AS(ex::FCOS{o}, std::invalid_argument);
}

TEST_CASE("detector model: ResNet-18 loads a torchvision state dict by name") {
  torch::manual_seed(5);
  const auto dict = torchvision_resnet18_state_dict();
  DOCTEST_CHECK(dict.size() == 122);  // torchvision's resnet18 state dict, fc and num_batches_tracked included
  const auto path = temp_path("resnet18_test.pth");
  write_pickle(path, dict);
  ex::ResNet net(ex::ResNetOptions{"resnet18", 1.0, false});
  net->load_torchvision(path);
  size_t compared = 0;
  for (const auto& p : net->named_parameters()) {
    INFO(p.key());
    DOCTEST_CHECK(torch::equal(p.value(), dict.at(p.key())));
    ++compared;
  }
  for (const auto& b : net->named_buffers()) {
    INFO(b.key());
    DOCTEST_CHECK(torch::equal(b.value(), dict.at(b.key())));
    ++compared;
  }
  DOCTEST_CHECK(compared == 120);  // every key but fc.weight and fc.bias
  DOCTEST_CHECK(net->bn1->num_batches_tracked.item<int64_t>() == 1234);

  // FCOS hands its backbone the file.
  auto o = small_options();
  o.width = 1.0;
  ex::FCOS fcos(o);
  fcos->load_backbone(path);
  DOCTEST_CHECK(torch::equal(fcos->backbone->layers[3]->ptr<ex::ResNetBlockImpl>(1)->conv2->weight,
                             dict.at("layer4.1.conv2.weight")));

  // Errors name the file and the key; nothing is copied from a file that does not match.
  ex::ResNet fresh(ex::ResNetOptions{"resnet18", 1.0, false});
  const auto before = fresh->conv1->weight.clone();
  auto missing = torchvision_resnet18_state_dict();
  REQUIRE(missing.erase("layer3.1.bn2.running_var") == 1);
  write_pickle(path, missing);
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path),
                               doctest::Contains("resnet18_test.pth: missing layer3.1.bn2.running_var"),
                               std::runtime_error);
  DOCTEST_CHECK(torch::equal(fresh->conv1->weight, before));
  auto wrong = torchvision_resnet18_state_dict();
  wrong.insert_or_assign("layer2.0.downsample.0.weight", torch::randn({128, 64, 3, 3}));
  write_pickle(path, wrong);
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path),
                               doctest::Contains("resnet18_test.pth: layer2.0.downsample.0.weight has shape"),
                               std::runtime_error);
  DOCTEST_CHECK(torch::equal(fresh->conv1->weight, before));
  auto extra = torchvision_resnet18_state_dict();  // e.g. a ResNet-34 file
  extra.insert("layer1.2.conv1.weight", torch::randn({64, 64, 3, 3}));
  write_pickle(path, extra);
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path), doctest::Contains("layer1.2.conv1.weight"),
                               std::runtime_error);
  // A width-0.25 network cannot take width-1 weights.
  ex::ResNet narrow(ex::ResNetOptions{"resnet18", 0.25, false});
  write_pickle(path, dict);
  DOCTEST_CHECK_THROWS_WITH_AS(narrow->load_torchvision(path), doctest::Contains("conv1.weight"), std::runtime_error);
  // Not a dict, not a pickle, no file.
  write_pickle(path, c10::List<at::Tensor>({torch::ones({2})}));
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path), doctest::Contains("resnet18_test.pth: expected a dict"),
                               std::runtime_error);
  write_pickle(path, torch::ones({3}));
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path), doctest::Contains("resnet18_test.pth: expected a dict"),
                               std::runtime_error);
  std::ofstream(path) << "not a pickle";
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path), doctest::Contains("resnet18_test.pth"),
                               std::runtime_error);
  std::remove(path.c_str());
  DOCTEST_CHECK_THROWS_WITH_AS(fresh->load_torchvision(path), doctest::Contains("resnet18_test.pth"),
                               std::runtime_error);
  DOCTEST_CHECK(torch::equal(fresh->conv1->weight, before));
}

TEST_CASE("detector model: freeze_bn keeps BatchNorm in eval mode and out of autograd") {
  torch::manual_seed(6);
  auto o = small_options();
  o.freeze_bn = true;
  ex::FCOS frozen(o);
  o.freeze_bn = false;
  ex::FCOS trained(o);
  frozen->train();
  trained->train();
  const auto batch_norms = [](ex::FCOS& net) {
    std::vector<torch::nn::BatchNorm2dImpl*> out;
    for (auto& m : net->backbone->modules(false))
      if (auto* bn = m->as<torch::nn::BatchNorm2d>()) out.push_back(bn);
    return out;
  };
  const auto frozen_bns = batch_norms(frozen);
  REQUIRE(frozen_bns.size() == 20);
  for (auto* bn : frozen_bns) {
    DOCTEST_CHECK_FALSE(bn->is_training());
    DOCTEST_CHECK_FALSE(bn->weight.requires_grad());
    DOCTEST_CHECK_FALSE(bn->bias.requires_grad());
  }
  DOCTEST_CHECK(frozen->is_training());
  DOCTEST_CHECK(frozen->head->is_training());
  for (auto* bn : batch_norms(trained)) DOCTEST_CHECK(bn->is_training());

  const auto images = torch::randn({2, 3, 64, 64});
  const auto mean_before = frozen->backbone->bn1->running_mean.clone();
  const auto count_before = frozen->backbone->bn1->num_batches_tracked.item<int64_t>();
  const auto out = frozen->forward(images);
  (out.cls_logits.mean() + out.box_ltrb.mean()).backward();
  DOCTEST_CHECK(torch::equal(frozen->backbone->bn1->running_mean, mean_before));  // statistics not updated
  DOCTEST_CHECK(frozen->backbone->bn1->num_batches_tracked.item<int64_t>() == count_before);
  DOCTEST_CHECK_FALSE(frozen->backbone->bn1->weight.grad().defined());
  DOCTEST_CHECK(frozen->backbone->conv1->weight.grad().defined());  // the convolutions still train

  const auto trained_mean = trained->backbone->bn1->running_mean.clone();
  trained->forward(images);
  DOCTEST_CHECK_FALSE(torch::equal(trained->backbone->bn1->running_mean, trained_mean));

  // eval() then train() again: still frozen.
  frozen->eval();
  frozen->train();
  for (auto* bn : frozen_bns) DOCTEST_CHECK_FALSE(bn->is_training());
}

TEST_CASE("detector model: a backward pass produces gradients for the head, the FPN and the backbone") {
  torch::manual_seed(7);
  auto o = small_options();
  o.filter_3dmf = true;
  o.iou_branch = true;
  // 64 channels: GroupNorm(32) of a 1×1 level with one channel per group would pass no gradient.
  o.fpn_channels = 64;
  ex::FCOS net(o);
  net->train();
  const auto out = net->forward(torch::randn({2, 3, 96, 128}));
  (out.cls_logits.sigmoid().mean() + out.box_ltrb.mean() + out.filter_logits.sigmoid().mean() +
   out.iou_logits.sigmoid().mean())
      .backward();
  const auto has_grad = [](const at::Tensor& t) {
    return t.grad().defined() && t.grad().abs().sum().item<double>() > 0;
  };
  DOCTEST_CHECK(has_grad(net->head->cls_logits->weight));
  DOCTEST_CHECK(has_grad(net->head->cls_logits->bias));
  DOCTEST_CHECK(has_grad(net->head->bbox_pred->weight));
  DOCTEST_CHECK(has_grad(net->head->scales));
  DOCTEST_CHECK(has_grad(net->head->filter->weight));
  DOCTEST_CHECK(has_grad(net->head->max_filter->conv->weight));
  DOCTEST_CHECK(has_grad(net->head->iou_pred->weight));
  DOCTEST_CHECK(has_grad(net->head->cls_tower[0]->as<torch::nn::Conv2d>()->weight));
  DOCTEST_CHECK(has_grad(net->fpn->p7->weight));
  DOCTEST_CHECK(has_grad(net->fpn->lateral[0]->weight));
  DOCTEST_CHECK(has_grad(net->backbone->conv1->weight));
  DOCTEST_CHECK(has_grad(net->backbone->bn1->weight));  // not frozen
}
