#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <optional>
#include <sstream>
#include <string>

using crowdloss_test::check_error;
using crowdloss_test::tensor_from_json;

TEST_CASE("sigmoid_focal_loss: hand-derived values and reductions") {
  const auto x = torch::tensor({0.0, 2.0, -1.0}, torch::kFloat64);
  const auto t = torch::tensor({1.0, 0.0, 1.0}, torch::kFloat64);
  const auto loss = crowdloss::sigmoid_focal_loss(x, t);
  const auto fl = [](double logit, double target, double alpha, double gamma) {
    const double p = 1 / (1 + std::exp(-logit));
    const double pt = target ? p : 1 - p;
    return (target ? alpha : 1 - alpha) * std::pow(1 - pt, gamma) * -std::log(pt);
  };
  for (int64_t i = 0; i < 3; ++i)
    DOCTEST_CHECK(loss[i].item<double>() ==
                  doctest::Approx(fl(x[i].item<double>(), t[i].item<double>(), 0.25, 2)).epsilon(1e-12));
  // γ = 0 and no α weighting is plain binary cross-entropy.
  const auto bce =
      crowdloss::sigmoid_focal_loss(x, t, crowdloss::SigmoidFocalLossOptions().gamma(0).alpha(std::nullopt));
  DOCTEST_CHECK(torch::allclose(bce, torch::binary_cross_entropy_with_logits(x, t, {}, {}, at::Reduction::None)));
  DOCTEST_CHECK(
      crowdloss::sigmoid_focal_loss(x, t, crowdloss::SigmoidFocalLossOptions().reduction(torch::kSum)).item<double>() ==
      doctest::Approx(loss.sum().item<double>()));
  DOCTEST_CHECK(crowdloss::sigmoid_focal_loss(x, t, crowdloss::SigmoidFocalLossOptions().reduction(torch::kMean))
                    .item<double>() == doctest::Approx(loss.mean().item<double>()));
  torch::manual_seed(1);
  const auto targets = (torch::rand({6, 3}, torch::kFloat64) > 0.5).to(torch::kFloat64);
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&](const at::Tensor& l) { return crowdloss::sigmoid_focal_loss(l, targets).sum(); },
                    torch::randn({6, 3}, torch::kFloat64)) < 1e-7);
}

TEST_CASE("iou_loss: hand-derived values for IoU, linear IoU and GIoU") {
  // Around one point: pred (1, 1, 1, 1) is a 2×2 box, target (1, 1, 3, 1) a 4×2 box containing it.
  const auto pred = torch::tensor({1.0, 1.0, 1.0, 1.0}, torch::kFloat64).view({1, 4});
  const auto target = torch::tensor({1.0, 1.0, 3.0, 1.0}, torch::kFloat64).view({1, 4});
  using O = crowdloss::IoULossOptions;
  DOCTEST_CHECK(crowdloss::iou_loss(pred, target)[0].item<double>() == doctest::Approx(-std::log(0.5)));
  DOCTEST_CHECK(crowdloss::iou_loss(pred, target, O().loss_type(crowdloss::kLinearIoU))[0].item<double>() ==
                doctest::Approx(0.5));
  DOCTEST_CHECK(crowdloss::iou_loss(pred, target, O().loss_type(crowdloss::kGIoU))[0].item<double>() ==
                doctest::Approx(0.5));
  // Crossed boxes: pred 2 wide × 6 tall (1, 3, 1, 3), target 6 × 2 (3, 1, 3, 1): inter 4, union 20,
  // enclosing 36 → IoU 0.2, GIoU 0.2 − 16/36.
  const auto tall = torch::tensor({1.0, 3.0, 1.0, 3.0}, torch::kFloat64).view({1, 4});
  const auto wide = torch::tensor({3.0, 1.0, 3.0, 1.0}, torch::kFloat64).view({1, 4});
  DOCTEST_CHECK(crowdloss::iou_loss(tall, wide, O().loss_type(crowdloss::kGIoU))[0].item<double>() ==
                doctest::Approx(1 - (0.2 - 16.0 / 36)));
  // A degenerate prediction: IoU 0, so −log is clamped at −log(ε) with ε = float32 epsilon.
  const auto zero = torch::zeros({1, 4}, torch::kFloat64);
  DOCTEST_CHECK(crowdloss::iou_loss(zero, target)[0].item<double>() ==
                doctest::Approx(-std::log(static_cast<double>(std::numeric_limits<float>::epsilon()))));
  DOCTEST_CHECK(crowdloss::iou_loss(target, target)[0].item<double>() == doctest::Approx(0.0));
  torch::manual_seed(2);
  const auto tgt = torch::rand({5, 4}, torch::kFloat64) * 10 + 1;
  for (const crowdloss::IoULossType type :
       {crowdloss::IoULossType(crowdloss::kIoU), crowdloss::IoULossType(crowdloss::kLinearIoU),
        crowdloss::IoULossType(crowdloss::kGIoU)})
    DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                      [&](const at::Tensor& p) {
                        return crowdloss::iou_loss(p, tgt, O().loss_type(type).reduction(torch::kSum));
                      },
                      torch::rand({5, 4}, torch::kFloat64) * 10 + 1) < 1e-6);
}

TEST_CASE("iou_loss: hand-derived DIoU and CIoU") {
  // pred (1, 1, 1, 1): the 2×2 box [−1, 1]²; target (1, 1, 3, 1): [−1, 3]×[−1, 1]. Intersection 4,
  // union 8; centres (0, 0) and (1, 0): ρ² = 1; enclosing box 4×2: c² = 20.
  const auto pred = torch::tensor({1.0, 1.0, 1.0, 1.0}, torch::kFloat64).view({1, 4});
  const auto target = torch::tensor({1.0, 1.0, 3.0, 1.0}, torch::kFloat64).view({1, 4});
  using O = crowdloss::IoULossOptions;
  const double eps = 1e-7, iou = 4 / (8 + eps), diou = 1 - iou + 1 / (20 + eps);
  DOCTEST_CHECK(crowdloss::iou_loss(pred, target, O().loss_type(crowdloss::kDIoU))[0].item<double>() ==
                doctest::Approx(diou).epsilon(1e-15));
  // Aspect ratios 1 and 2: v = 4/π² (atan 2 − atan 1)², α = v / (1 − IoU + v + ε).
  const double pi = 3.14159265358979323846, v = 4 / (pi * pi) * std::pow(std::atan(2.0) - std::atan(1.0), 2);
  const double ciou = diou + v / (1 - iou + v + eps) * v;
  DOCTEST_CHECK(crowdloss::iou_loss(pred, target, O().loss_type(crowdloss::kCIoU))[0].item<double>() ==
                doctest::Approx(ciou).epsilon(1e-15));
  // Same centre and shape: both are 1 − IoU (up to the eps).
  DOCTEST_CHECK(crowdloss::iou_loss(target, target, O().loss_type(crowdloss::kCIoU))[0].item<double>() ==
                doctest::Approx(1 - 8 / (8 + eps)).epsilon(1e-15));
  // Disjoint boxes [−1, 1]² and [2, 4]×[−1, 1]: no intersection, ρ² = 9, c² = 25 + 4.
  const auto apart = torch::tensor({-2.0, 1.0, 4.0, 1.0}, torch::kFloat64).view({1, 4});
  DOCTEST_CHECK(crowdloss::iou_loss(pred, apart, O().loss_type(crowdloss::kDIoU))[0].item<double>() ==
                doctest::Approx(1 + 9 / (29 + eps)).epsilon(1e-15));
  torch::manual_seed(5);
  const auto tgt = torch::rand({5, 4}, torch::kFloat64) * 10 + 1;
  DOCTEST_CHECK(crowdloss_test::gradcheck_max_error(
                    [&](const at::Tensor& p) {
                      return crowdloss::iou_loss(p, tgt, O().loss_type(crowdloss::kDIoU).reduction(torch::kSum));
                    },
                    torch::rand({5, 4}, torch::kFloat64) * 10 + 1) < 1e-6);
}

TEST_CASE("iou_loss: DIoU and CIoU equal torchvision's losses (oracle)") {
  const auto oracle = crowdloss_test::load_json("beyond.json");
  int checked = 0;
  for (const auto& c : oracle.at("iou")) {
    const auto name = c.at("name").get<std::string>();
    DOCTEST_CAPTURE(name);
    const auto type = c.at("type").get<std::string>();
    const auto reduction = c.at("reduction").get<std::string>();
    const auto options = crowdloss::IoULossOptions()
                             .loss_type(type == "diou" ? crowdloss::IoULossType(crowdloss::kDIoU)
                                                       : crowdloss::IoULossType(crowdloss::kCIoU))
                             .reduction(reduction == "none"   ? crowdloss::Reduction(torch::kNone)
                                        : reduction == "mean" ? crowdloss::Reduction(torch::kMean)
                                                              : crowdloss::Reduction(torch::kSum));
    const auto pred = tensor_from_json(c.at("pred_ltrb")).requires_grad_(true);
    const auto loss = crowdloss::iou_loss(pred, tensor_from_json(c.at("target_ltrb")), options);
    const auto& e = c.at("expected");
    DOCTEST_CHECK(crowdloss_test::scaled_error(loss, tensor_from_json(e.at("loss")).view(loss.sizes())) < 1e-12);
    if (reduction == "none")
      loss.backward(tensor_from_json(c.at("grad_output")));
    else
      loss.backward();
    DOCTEST_CHECK(crowdloss_test::scaled_error(pred.grad(), tensor_from_json(e.at("grad_pred"))) < 1e-12);
    ++checked;
  }
  DOCTEST_CHECK(checked >= 2);
}

TEST_CASE("iou_loss: the mean over no boxes is 0 with zero gradients, for every type") {
  for (const crowdloss::IoULossType type :
       {crowdloss::IoULossType(crowdloss::kIoU), crowdloss::IoULossType(crowdloss::kLinearIoU),
        crowdloss::IoULossType(crowdloss::kGIoU), crowdloss::IoULossType(crowdloss::kDIoU),
        crowdloss::IoULossType(crowdloss::kCIoU)}) {
    const auto index = type.index();
    DOCTEST_CAPTURE(index);
    const auto none = torch::zeros({0, 4}, torch::kFloat64).requires_grad_(true);
    const auto mean = crowdloss::iou_loss(none, torch::zeros({0, 4}, torch::kFloat64),
                                          crowdloss::IoULossOptions().loss_type(type).reduction(torch::kMean));
    DOCTEST_CHECK(mean.dim() == 0);
    DOCTEST_CHECK(mean.item<double>() == 0.0);
    mean.backward();
    DOCTEST_REQUIRE(none.grad().defined());
    DOCTEST_CHECK(none.grad().sizes() == at::IntArrayRef({0, 4}));
    // With boxes, kMean is still the plain mean.
    const auto a = torch::rand({3, 4}, torch::kFloat64) + 1, b = torch::rand({3, 4}, torch::kFloat64) + 1;
    const auto o = crowdloss::IoULossOptions().loss_type(type);
    DOCTEST_CHECK(torch::allclose(crowdloss::iou_loss(a, b, crowdloss::IoULossOptions(o).reduction(torch::kMean)),
                                  crowdloss::iou_loss(a, b, o).mean()));
  }
}

TEST_CASE("sigmoid_focal_loss and iou_loss: DeFCN's losses on its POTO targets (oracle)") {
  // DeFCN: loss_cls = focal(α 0.25, γ 2) summed / max(1, #fg); loss_box_reg = 2 · GIoU loss on
  // the foreground anchors summed / max(1, #fg).
  const auto oracle = crowdloss_test::load_json("assign.json");
  const auto& in = oracle.at("inputs");
  const auto& ref = oracle.at("results").at("poto_plain_crowdhuman");
  const auto logits = tensor_from_json(in.at("box_cls_logits_flat_NRK")).view({-1, 1});
  const auto deltas = tensor_from_json(in.at("box_delta_flat_NR4")).view({-1, 4});
  const auto classes = tensor_from_json(ref.at("gt_classes")).view(-1);
  const auto gt_deltas = tensor_from_json(ref.at("gt_shifts_deltas")).view({-1, 4});
  const auto fg = classes.ne(1);  // class 1 = background (num_classes)
  const double num_fg = std::max<double>(1.0, fg.sum().item<double>());
  const auto onehot = fg.to(torch::kFloat).unsqueeze(1);
  const auto loss_cls =
      crowdloss::sigmoid_focal_loss(logits, onehot, crowdloss::SigmoidFocalLossOptions().reduction(torch::kSum)) /
      num_fg;
  const auto loss_reg =
      2.0 *
      crowdloss::iou_loss(deltas.index({fg}), gt_deltas.index({fg}),
                          crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum)) /
      num_fg;
  DOCTEST_CHECK(loss_cls.item<double>() ==
                doctest::Approx(ref.at("losses").at("loss_cls").get<double>()).epsilon(1e-5));
  DOCTEST_CHECK(loss_reg.item<double>() ==
                doctest::Approx(ref.at("losses").at("loss_box_reg").get<double>()).epsilon(1e-5));
}

TEST_CASE("SigmoidFocalLoss and IoULoss print every option, as LibTorch's modules do") {
  std::ostringstream focal, unweighted, iou;
  focal << *crowdloss::SigmoidFocalLoss();
  DOCTEST_CHECK(focal.str() == "crowdloss::SigmoidFocalLoss(alpha=0.25, gamma=2, reduction=kNone)");
  unweighted << *crowdloss::SigmoidFocalLoss(
      crowdloss::SigmoidFocalLossOptions().alpha(std::nullopt).gamma(0.5).reduction(torch::kMean));
  DOCTEST_CHECK(unweighted.str() == "crowdloss::SigmoidFocalLoss(alpha=None, gamma=0.5, reduction=kMean)");
  iou << *crowdloss::IoULoss(crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum));
  DOCTEST_CHECK(iou.str() == "crowdloss::IoULoss(loss_type=kGIoU, reduction=kSum)");
  std::ostringstream ciou;
  ciou << *crowdloss::IoULoss(crowdloss::IoULossOptions().loss_type(crowdloss::kCIoU));
  DOCTEST_CHECK(ciou.str() == "crowdloss::IoULoss(loss_type=kCIoU, reduction=kNone)");
}

TEST_CASE("SigmoidFocalLoss and IoULoss modules equal the functional forms") {
  torch::manual_seed(4);
  const auto x = torch::randn({10, 3}), t = (torch::rand({10, 3}) > 0.5).to(torch::kFloat);
  const auto fopts = crowdloss::SigmoidFocalLossOptions().alpha(0.5).gamma(1.5).reduction(torch::kMean);
  crowdloss::SigmoidFocalLoss focal(fopts);
  DOCTEST_CHECK(torch::equal(focal(x, t), crowdloss::sigmoid_focal_loss(x, t, fopts)));
  const auto a = torch::rand({10, 4}) + 1, b = torch::rand({10, 4}) + 1;
  const auto iopts = crowdloss::IoULossOptions().loss_type(crowdloss::kLinearIoU).reduction(torch::kSum);
  crowdloss::IoULoss iou(iopts);
  DOCTEST_CHECK(torch::equal(iou(a, b), crowdloss::iou_loss(a, b, iopts)));
  auto copy = std::dynamic_pointer_cast<crowdloss::IoULossImpl>(iou->clone());
  DOCTEST_CHECK(torch::equal(copy->forward(a, b), iou(a, b)));
  check_error([] { crowdloss::SigmoidFocalLoss(crowdloss::SigmoidFocalLossOptions().gamma(-1)); },
              {"SigmoidFocalLoss", "gamma", "-1"});
}

TEST_CASE("sigmoid_focal_loss and iou_loss: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("detection losses CPU/CUDA parity")) return;
  torch::manual_seed(3);
  const auto x = torch::randn({50, 4}, torch::kFloat64),
             t = (torch::rand({50, 4}, torch::kFloat64) > 0.7).to(torch::kFloat64);
  DOCTEST_CHECK(
      torch::allclose(crowdloss::sigmoid_focal_loss(x.cuda(), t.cuda()).cpu(), crowdloss::sigmoid_focal_loss(x, t)));
  const auto a = torch::rand({50, 4}, torch::kFloat64) * 9 + 1, b = torch::rand({50, 4}, torch::kFloat64) * 9 + 1;
  for (const crowdloss::IoULossType type :
       {crowdloss::IoULossType(crowdloss::kGIoU), crowdloss::IoULossType(crowdloss::kDIoU),
        crowdloss::IoULossType(crowdloss::kCIoU)}) {
    const auto o = crowdloss::IoULossOptions().loss_type(type);
    DOCTEST_CHECK(torch::allclose(crowdloss::iou_loss(a.cuda(), b.cuda(), o).cpu(), crowdloss::iou_loss(a, b, o)));
  }
}

TEST_CASE("sigmoid_focal_loss and iou_loss: bad inputs throw c10::Error naming the function and the value") {
  const auto x = torch::randn({4, 3}), t = torch::zeros({4, 3});
  check_error([&] { crowdloss::sigmoid_focal_loss(x, t.narrow(1, 0, 2)); }, {"sigmoid_focal_loss", "[4, 2]"});
  check_error([&] { crowdloss::sigmoid_focal_loss(x, t.to(at::kDouble)); }, {"sigmoid_focal_loss", "Double"});
  check_error([&] { crowdloss::sigmoid_focal_loss(x.to(at::kLong), t.to(at::kLong)); }, {"sigmoid_focal_loss", "Long"});
  check_error([&] { crowdloss::sigmoid_focal_loss(x, t.to(at::kMeta)); }, {"sigmoid_focal_loss", "meta"});
  check_error([&] { crowdloss::sigmoid_focal_loss(x, t, crowdloss::SigmoidFocalLossOptions().alpha(1.5)); },
              {"sigmoid_focal_loss", "alpha", "1.5"});
  check_error([&] { crowdloss::sigmoid_focal_loss(x, t, crowdloss::SigmoidFocalLossOptions().gamma(-1)); },
              {"sigmoid_focal_loss", "gamma", "-1"});
  const auto ltrb = torch::rand({5, 4});
  check_error([&] { crowdloss::iou_loss(ltrb, ltrb.narrow(0, 0, 3)); }, {"iou_loss", "[3, 4]"});
  check_error([&] { crowdloss::iou_loss(ltrb.view({10, 2}), ltrb.view({10, 2})); }, {"iou_loss", "[10, 2]"});
  check_error([&] { crowdloss::iou_loss(ltrb.to(at::kInt), ltrb.to(at::kInt)); }, {"iou_loss", "Int"});
}
