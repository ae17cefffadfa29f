#include "support/checks.hpp"

#include "fixtures.hpp"

#include "detect_trainer.hpp"

#include <filesystem>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;

namespace {

ex::DetectConfig tiny_detect_config(ex::AssignMode mode) {
  ex::DetectConfig c;
  c.assign = mode, c.backbone = "resnet18", c.width = 0.25, c.fpn_channels = 64, c.optimizer = ex::Optimizer::kAdamW;
  c.lr = 1e-3;
  c.warmup = 2, c.epochs = 6, c.batch = 4, c.workers = 2, c.seed = 2, c.clip = 10;
  return c;
}

std::vector<ex::DetectionSample> tiny_pedestrians(const fs::path& dir, int64_t count, uint64_t seed) {
  return crowdloss_examples_test::small_pedestrian_set(dir, count, 128, 128, 12, seed);
}

// A hand-made FCOS output with one level of 2×2 cells, stride 8 (points at 4 and 12).
ex::FCOSOutput hand_output(const std::vector<float>& cls, const std::vector<float>& ltrb) {
  ex::FCOSOutput o;
  o.cls_logits = torch::tensor(cls).view({1, 4, 1});
  o.box_ltrb = torch::tensor(ltrb).view({1, 4, 4});
  o.level_hw = {{2, 2}};
  o.strides = {8};
  return o;
}

}  // namespace

TEST_CASE("detect trainer: the 3DMF product logit is the logit of sigma(a) sigma(b), stably") {
  const auto a = torch::tensor({-30.0, -2.0, 0.0, 1.5, 30.0}, torch::kFloat64),
             b = torch::tensor({0.5, 3.0, -1.0, 2.0, 30.0}, torch::kFloat64);
  const auto p = a.sigmoid() * b.sigmoid();
  const auto logit = ex::product_logit(a, b);
  DOCTEST_CHECK(torch::allclose(logit.slice(0, 0, 4).sigmoid(), p.slice(0, 0, 4), 1e-9, 1e-12));
  DOCTEST_CHECK(std::isfinite(logit[4].item<double>()));  // p rounds to 1: clamped, not inf
  DOCTEST_CHECK(logit[0].item<double>() < -29);           // log σ(−30) kept, not −inf
}

TEST_CASE("detect trainer: inference scores, threshold, NMS per mode, clipping and the detection cap") {
  // Anchors 0 and 1 predict almost the same box (IoU 0.8), anchor 2 a distant one, anchor 3 scores 0.
  const auto o = hand_output({3.0f, 2.0f, 1.0f, -10.0f},
                             {4, 4, 4, 4, /* (0, 0, 8, 8) */ 11, 4, -3, 4, /* (1, 0, 9, 8) */ 2, 2, 2, 2, 1, 1, 1, 1});
  const auto points = ex::anchor_points(o);
  auto c = tiny_detect_config(ex::AssignMode::kPOTO);
  const auto no_nms = ex::detect(c, o, points, {{16, 16}}).at(0);
  DOCTEST_CHECK(no_nms.scores.numel() == 3);  // σ(−10) < 0.05
  DOCTEST_CHECK(no_nms.scores[0].item<float>() == doctest::Approx(1 / (1 + std::exp(-3.0))));
  DOCTEST_CHECK((no_nms.scores.slice(0, 0, 2) >= no_nms.scores.slice(0, 1, 3)).all().item<bool>());  // highest first
  c.assign = ex::AssignMode::kFCOS;
  const auto with_nms = ex::detect(c, o, points, {{16, 16}}).at(0);
  DOCTEST_CHECK(with_nms.scores.numel() == 2);  // anchor 1 suppressed by anchor 0
  c.nms = ex::NmsMode::kOff;
  DOCTEST_CHECK(ex::detect(c, o, points, {{16, 16}}).at(0).scores.numel() == 3);
  c.max_detections = 1;
  DOCTEST_CHECK(ex::detect(c, o, points, {{16, 16}}).at(0).scores.numel() == 1);
  // Boxes are clipped to the image size given (here 6×10: h, w).
  const auto clipped = ex::detect(c, o, points, {{6, 10}}).at(0).boxes;
  DOCTEST_CHECK(clipped.select(1, 3).max().item<float>() <= 6);
  // 3DMF: σ(cls)·σ(filter); LLA: √(σ(cls)·σ(iou)).
  auto f = o;
  f.filter_logits = torch::zeros({1, 4, 1});
  c.nms = ex::NmsMode::kOff, c.max_detections = 10;
  DOCTEST_CHECK(ex::detect(c, f, points, {{16, 16}}).at(0).scores[0].item<float>() ==
                doctest::Approx(0.5 / (1 + std::exp(-3.0))));
  auto l = o;
  l.iou_logits = torch::full({1, 4, 1}, 100.0f);
  DOCTEST_CHECK(ex::detect(c, l, points, {{16, 16}}).at(0).scores[0].item<float>() ==
                doctest::Approx(std::sqrt(1 / (1 + std::exp(-3.0)))));
  c.nms = ex::NmsMode::kOn;
  DOCTEST_CHECK(ex::detect(c, o, points, {{16, 16}}).at(0).scores.numel() == 2);  // POTO's scores, NMS forced
}

TEST_CASE("detect trainer: every assignment mode gives a finite loss with gradients, POTO one anchor per person") {
  const auto dir = fixture_dir("detect_loss");
  const auto samples = tiny_pedestrians(dir, 4, 7);
  ex::DetectionLoaderOptions lo;
  lo.batch = 4;
  auto batch = ex::DetectionLoader(samples, lo).make_batch(0, 0);
  int64_t people = 0;
  for (const auto& b : batch.boxes) people += b.size(0);
  REQUIRE(people > 0);
  for (const auto& [mode, name] : ex::Choices<ex::AssignMode>::names) {
    INFO("mode " << name);
    torch::manual_seed(1);
    auto net = ex::make_detector(tiny_detect_config(mode));
    const auto out = net->forward(batch.images);
    const auto loss = ex::detection_loss(mode, out, ex::anchor_points(out), batch.boxes, batch.ignore);
    DOCTEST_CHECK(std::isfinite(loss.total.item<double>()));
    DOCTEST_CHECK(loss.total.item<double>() > 0);
    const int64_t fg = loss.parts.at("foreground");
    if (mode == ex::AssignMode::kPOTO || mode == ex::AssignMode::kPOTO3DMFAux)
      DOCTEST_CHECK(fg == people);  // one-to-one
    else
      DOCTEST_CHECK(fg >= people / 2);  // one-to-many (a person may have no anchor in its range)
    DOCTEST_CHECK(loss.parts.contains("aux") == (mode == ex::AssignMode::kPOTO3DMFAux));
    DOCTEST_CHECK(loss.parts.contains("iou") == (mode == ex::AssignMode::kLLA));
    loss.total.backward();
    for (const auto& p : net->named_parameters()) {
      const bool frozen_head_part = !p.value().requires_grad();
      if (!frozen_head_part) DOCTEST_CHECK_MESSAGE(p.value().grad().defined(), p.key());
    }
  }
  // Names are parsed once, where they come in; check_config names the option and its value, before
  // anything is built or read.
  DOCTEST_CHECK(ex::parse_choice<ex::AssignMode>("poto-3dmf-aux") == ex::AssignMode::kPOTO3DMFAux);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::AssignMode>("atss"),
                               "unknown --assign 'atss' (fcos, poto, poto-3dmf-aux, lla)", std::runtime_error);
  DOCTEST_CHECK_NOTHROW(ex::check_config(tiny_detect_config(ex::AssignMode::kLLA)));
  auto c = tiny_detect_config(ex::AssignMode::kPOTO);
  c.fpn_channels = 48;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::check_config(c), "--fpn-channels must be a positive multiple of 32, got 48",
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::NmsMode>("soft"), "unknown --nms 'soft' (auto, on, off)",
                               std::runtime_error);
  c = tiny_detect_config(ex::AssignMode::kPOTO);
  c.warmup = -1;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::check_config(c), "--warmup must be >= 0, got -1", std::runtime_error);
}

TEST_CASE("detect trainer: a short POTO run lowers the loss and writes metrics, checkpoints and a loadable model") {
  const auto dir = fixture_dir("detect_train");
  const auto train = tiny_pedestrians(dir / "train", 8, 1), val = tiny_pedestrians(dir / "val", 4, 2);
  auto c = tiny_detect_config(ex::AssignMode::kPOTO);
  ex::DetectionLoaderOptions lo;
  lo.batch = 8;
  auto batch = ex::DetectionLoader(train, lo).make_batch(0, 0);
  const auto loss_of = [&](ex::FCOS& net) {
    torch::NoGradGuard no_grad;
    net->eval();
    const auto out = net->forward(batch.images);
    return ex::detection_loss(c.assign, out, ex::anchor_points(out), batch.boxes, batch.ignore).total.item<double>();
  };
  torch::manual_seed(c.seed);  // the initial weights train_detector starts from
  auto initial = ex::make_detector(c);
  const auto best = ex::train_detector(c, train, val, dir / "out", ex::ExistingRun::kRefuse, /*quiet=*/true);
  auto [trained, config] = ex::load_detector(dir / "out" / "last.pt", "cpu");
  const double before = loss_of(initial), after = loss_of(trained);
  MESSAGE("POTO loss on the training images: " << before << " -> " << after << " after " << c.epochs << " epochs");
  DOCTEST_CHECK(after < 0.8 * before);
  DOCTEST_CHECK(config.assign == ex::AssignMode::kPOTO);
  const auto lines = crowdloss_examples_test::read_metrics(dir / "out");
  for (const auto& j : lines) {
    DOCTEST_CHECK(j.contains("ap50"));
    DOCTEST_CHECK(j.contains("mmr"));
    DOCTEST_CHECK(j.at("assign_ms_per_batch").get<double>() > 0);
  }
  DOCTEST_CHECK(static_cast<int64_t>(lines.size()) == c.epochs);
  DOCTEST_CHECK(best.epoch >= 1);  // the best validation, typed
  DOCTEST_CHECK(best.ground_truths > 0);
  DOCTEST_CHECK(best.ap50 >= 0);
  DOCTEST_CHECK(fs::exists(dir / "out" / "best.pt"));
}

TEST_CASE("detect trainer: detections are drawn on the image, ignore regions in grey") {
  const auto image = torch::zeros({20, 30, 3}, torch::kUInt8);
  const ex::Detections d{torch::tensor({2.0f, 3.0f, 12.0f, 15.0f}).view({1, 4}), torch::tensor({1.0f})};
  const auto drawn = ex::draw_detections(image, d, torch::tensor({20.0f, 2.0f, 28.0f, 10.0f}).view({1, 4}));
  DOCTEST_CHECK(drawn.sizes() == image.sizes());
  DOCTEST_CHECK(drawn[3][5][0].item<int>() == 255);  // top edge, red
  DOCTEST_CHECK(drawn[3][5][1].item<int>() == 0);
  DOCTEST_CHECK(drawn[8][8].sum().item<int>() == 0);  // inside untouched
  DOCTEST_CHECK(drawn[2][24][0].item<int>() == 160);  // ignore region edge
}
