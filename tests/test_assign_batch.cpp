// The batched assigners (fcos_assign_batch, lla_assign_batch, poto_assign_batch, poto_aux_assign_batch):
// their device path, run here on the CPU in float64, gives the per-image CPU path's matches on
// scenes full of ties; the tie rule of the k-lowest mask; the batch's input checks.
#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <cmath>
#include <limits>
#include <variant>
#include <vector>

using crowdloss_test::check_error;

namespace {

// A batch on two FPN levels (12×16 at stride 8, 6×8 at 16: 240 anchors). The values are coarse
// so that costs and qualities tie often: integer boxes, predictions and ltrb distances, logits
// in {−2, …, 2}, probabilities in {0.25, 0.5, 0.75}. Image 1 has no gts; image 2 repeats three
// of its boxes.
struct Batch {
  at::Tensor points, logits, prob, ltrb, pred_boxes;
  std::vector<at::Tensor> gt_boxes, gt_classes;
  std::vector<int64_t> level_sizes{192, 48};
  std::vector<double> strides{8, 16};
};

Batch random_batch(uint64_t seed, int64_t K, int64_t min_class) {
  torch::manual_seed(seed);
  Batch s;
  s.points = crowdloss::anchor_points({{12, 16}, {6, 8}}, {8, 16}, 0.5, torch::kFloat64);
  const int64_t B = 4, A = s.points.size(0);
  s.logits = torch::randint(-2, 3, {B, A, K}, torch::kFloat64);
  s.prob = torch::randint(1, 4, {B, A, K}, torch::kFloat64) / 4;
  s.ltrb = torch::randint(1, 40, {B, A, 4}, torch::kFloat64);
  s.pred_boxes = crowdloss::ltrb_to_boxes(s.points, s.ltrb);
  for (const int64_t G : {6, 0, 9, 3}) {
    const auto xy = torch::randint(0, 100, {G, 2}, torch::kFloat64),
               wh = torch::randint(8, 60, {G, 2}, torch::kFloat64);
    auto boxes = torch::cat({xy, xy + wh}, 1);
    auto classes = torch::randint(min_class, K, {G});
    if (G == 9)
      boxes.narrow(0, 6, 3).copy_(boxes.narrow(0, 0, 3)), classes.narrow(0, 6, 3).copy_(classes.narrow(0, 0, 3));
    s.gt_boxes.push_back(boxes);
    s.gt_classes.push_back(classes);
  }
  return s;
}

int64_t foreground(const at::Tensor& assigned) { return (assigned >= 0).sum().item<int64_t>(); }

}  // namespace

TEST_CASE("k_extreme: the k lowest or highest, ties to the lower index, NaN the highest") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto v = torch::tensor({3.0, 1.0, 2.0, 1.0, nan, 2.0, 1.0}, torch::kFloat64);
  const auto lowest = crowdloss::detail::k_extreme(v, 3, false);
  DOCTEST_CHECK(torch::equal(lowest.first, torch::tensor({false, true, false, true, false, false, true})));
  const auto four = crowdloss::detail::k_extreme(v, 4, false).first;
  DOCTEST_CHECK(torch::equal(four, torch::tensor({false, true, true, true, false, false, true})));
  const auto highest = crowdloss::detail::k_extreme(v, 3, true);
  DOCTEST_CHECK(torch::equal(highest.first, torch::tensor({true, false, true, false, true, false, false})));
  DOCTEST_CHECK(std::isnan(highest.second[0].item<double>()));
  DOCTEST_CHECK(highest.second[2].item<double>() == 2.0);
  // k reaching into the NaNs takes them in index order; rows are independent.
  const auto rows = torch::stack({v, v.flip(0)});
  const auto all_but_one = crowdloss::detail::k_extreme(rows, 7, false).first;
  DOCTEST_CHECK(all_but_one.all().item<bool>());
}

TEST_CASE("fcos_assign_batch: the device path gives each image's one-image assignment") {
  const auto s = random_batch(1, 1, 0);
  for (const double radius : {1.5, 0.0}) {
    const auto opts = crowdloss::FCOSAssignOptions()
                          .strides(s.strides)
                          .level_sizes(s.level_sizes)
                          .center_sampling_radius(radius)
                          .size_bounds({24});
    const auto batch = crowdloss::fcos_assign_batch(s.points, s.gt_boxes, opts);
    const auto gts = crowdloss::detail::pad_gt_batch(s.gt_boxes, nullptr, s.points);
    DOCTEST_CHECK(
        torch::equal(crowdloss::detail::fcos_assign_aten("test", s.points, gts.boxes, gts.valid, opts), batch));
    REQUIRE(batch.sizes() == torch::IntArrayRef({4, 240}));
    for (int64_t b = 0; b < 4; ++b) {
      INFO("radius " << radius << ", image " << b);
      DOCTEST_CHECK(torch::equal(batch[b], crowdloss::fcos_assign(s.points, s.gt_boxes[static_cast<size_t>(b)], opts)));
    }
    DOCTEST_CHECK(foreground(batch[2]) > 0);
  }
}

TEST_CASE("lla_assign_batch: the device path gives the CPU kernel's matches, ties included") {
  const auto s = random_batch(2, 2, -1);
  for (const auto& opts : {crowdloss::LLAAssignOptions(), crowdloss::LLAAssignOptions().topk(25).reg_cost(0.0),
                           crowdloss::LLAAssignOptions().outside_penalty(0.0).inside_eps(3.0)}) {
    INFO("topk " << opts.topk() << ", reg_cost " << opts.reg_cost() << ", penalty " << opts.outside_penalty());
    const auto cpu = crowdloss::lla_assign_batch(s.logits, s.ltrb, s.points, s.gt_boxes, s.gt_classes, opts);
    const auto gts = crowdloss::detail::pad_gt_batch(s.gt_boxes, &s.gt_classes, s.ltrb);
    const auto device_path = crowdloss::detail::lla_assign_aten(s.logits, s.ltrb, s.points, gts.boxes, gts.classes,
                                                                crowdloss::detail::lla_cost(opts), gts.valid);
    DOCTEST_CHECK(torch::equal(device_path, cpu));
    for (int64_t b = 0; b < 4; ++b)
      DOCTEST_CHECK(torch::equal(
          cpu[b], crowdloss::lla_assign(s.logits[b], s.ltrb[b], s.points, s.gt_boxes[static_cast<size_t>(b)],
                                        s.gt_classes[static_cast<size_t>(b)], opts)));
    DOCTEST_CHECK(foreground(cpu[1]) == 0);
    DOCTEST_CHECK(foreground(cpu[2]) >= opts.topk());
    DOCTEST_CHECK((cpu[2] < 6).all().item<bool>());  // the repeated gts lose their ties
  }
}

TEST_CASE("poto_assign_batch: the device path gives the CPU path's matches, ties included") {
  const auto s = random_batch(3, 3, 0);
  const auto centre =
      crowdloss::POTOAssignOptions().center_sampling_radius(1.5).strides(s.strides).level_sizes(s.level_sizes);
  for (const auto& opts :
       {crowdloss::POTOAssignOptions(), centre, crowdloss::POTOAssignOptions().matcher(crowdloss::kArgmax),
        crowdloss::POTOAssignOptions(centre).matcher(crowdloss::kArgmax)}) {
    const bool argmax = std::holds_alternative<crowdloss::enumtype::kArgmax>(opts.matcher());
    const auto cpu = crowdloss::poto_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, s.gt_classes, opts);
    const auto device_path = crowdloss::detail::poto_match_batch(
        s.prob, s.pred_boxes, s.points, crowdloss::detail::pad_gt_batch(s.gt_boxes, &s.gt_classes, s.pred_boxes), opts);
    REQUIRE(cpu.size() == 4);
    REQUIRE(device_path.size() == 4);
    for (size_t b = 0; b < 4; ++b) {
      INFO("image " << b << ", radius " << opts.center_sampling_radius());
      DOCTEST_CHECK(torch::equal(device_path[b], cpu[b]));
      DOCTEST_CHECK(cpu[b].numel() == s.gt_boxes[b].size(0));
    }
    if (argmax)
      DOCTEST_CHECK(foreground(cpu[2]) > 0);
    else
      DOCTEST_CHECK(foreground(cpu[2]) == 9);  // Hungarian: every gt gets an anchor
  }
  // More gts than anchors (the dense solve): six anchors, eight gts, the leftovers get −1.
  const auto few = s.points.narrow(0, 0, 6);
  const std::vector<at::Tensor> boxes{s.gt_boxes[2].narrow(0, 0, 8), s.gt_boxes[0]},
      classes{s.gt_classes[2].narrow(0, 0, 8), s.gt_classes[0]};
  const auto prob = s.prob.narrow(1, 0, 6).narrow(0, 0, 2), pred = s.pred_boxes.narrow(1, 0, 6).narrow(0, 0, 2);
  const auto cpu = crowdloss::poto_assign_batch(prob, pred, few, boxes, classes);
  const auto device_path = crowdloss::detail::poto_match_batch(
      prob, pred, few, crowdloss::detail::pad_gt_batch(boxes, &classes, pred), crowdloss::POTOAssignOptions());
  for (size_t b = 0; b < 2; ++b) DOCTEST_CHECK(torch::equal(device_path[b], cpu[b]));
  DOCTEST_CHECK(foreground(cpu[0]) == 6);
}

TEST_CASE("poto_aux_assign_batch: the device path gives each image's one-image assignment, ties to the lower anchor") {
  const auto s = random_batch(4, 2, 0);
  for (const int64_t topk : {9, 1, 3}) {
    const auto opts = crowdloss::POTOAuxAssignOptions().topk(topk).level_sizes(s.level_sizes);
    const auto batch = crowdloss::poto_aux_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, s.gt_classes, opts);
    const auto gts = crowdloss::detail::pad_gt_batch(s.gt_boxes, &s.gt_classes, s.pred_boxes);
    DOCTEST_CHECK(torch::equal(crowdloss::detail::poto_aux_assign_aten(s.prob, s.pred_boxes, s.points, gts.boxes,
                                                                       gts.classes, gts.valid, opts),
                               batch));
    REQUIRE(batch.sizes() == torch::IntArrayRef({4, 240}));
    for (int64_t b = 0; b < 4; ++b) {
      INFO("topk " << topk << ", image " << b);
      DOCTEST_CHECK(torch::equal(
          batch[b], crowdloss::poto_aux_assign(s.prob[b], s.pred_boxes[b], s.points, s.gt_boxes[static_cast<size_t>(b)],
                                               s.gt_classes[static_cast<size_t>(b)], opts)));
    }
    if (topk > 1) DOCTEST_CHECK(foreground(batch[2]) > 0);
  }
  // One gt, every quality equal: its top 2 per level are the first two anchors of each level, and
  // all four reach the threshold (mean + std = the common value), but only those inside the box.
  const auto flat = torch::full({1, 240, 1}, 0.5, torch::kFloat64);
  const auto box = torch::tensor({{-1.0, -1.0, 200.0, 200.0}}, torch::kFloat64);
  const auto same = crowdloss::ltrb_to_boxes(s.points, torch::full({1, 240, 4}, 1e4, torch::kFloat64));
  const auto tied =
      crowdloss::poto_aux_assign_batch(flat, same, s.points, {box}, {torch::zeros({1}, torch::kLong)},
                                       crowdloss::POTOAuxAssignOptions().topk(2).level_sizes(s.level_sizes));
  DOCTEST_CHECK(torch::equal((tied[0] == 0).nonzero().squeeze(1), torch::tensor({0, 1, 192, 193})));
}

TEST_CASE("the batched assigners: bad inputs throw c10::Error naming the function, the image and the value") {
  const auto s = random_batch(5, 2, 0);
  auto boxes = s.gt_boxes;
  boxes[2] = boxes[2].clone();
  boxes[2][4][1] = std::numeric_limits<double>::quiet_NaN();
  check_error([&] { crowdloss::lla_assign_batch(s.logits, s.ltrb, s.points, boxes, s.gt_classes); },
              {"lla_assign_batch", "gt_boxes[2][4]", "nan"});
  check_error(
      [&] {
        crowdloss::fcos_assign_batch(
            s.points, boxes,
            crowdloss::FCOSAssignOptions().strides(s.strides).level_sizes(s.level_sizes).size_bounds({24}));
      },
      {"fcos_assign_batch", "gt_boxes[2][4]"});
  const std::vector<at::Tensor> three(s.gt_boxes.begin(), s.gt_boxes.begin() + 3);
  check_error([&] { crowdloss::poto_assign_batch(s.prob, s.pred_boxes, s.points, three, s.gt_classes); },
              {"poto_assign_batch", "gt_boxes for 4 images, got 3"});
  auto classes = s.gt_classes;
  classes[3] = classes[3] + 5;
  check_error([&] { crowdloss::poto_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, classes); },
              {"poto_assign_batch", "gt_classes must lie in [0, 2)"});
  classes[3] = s.gt_classes[3].to(torch::kInt);
  check_error(
      [&] {
        crowdloss::poto_aux_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, classes,
                                         crowdloss::POTOAuxAssignOptions().level_sizes(s.level_sizes));
      },
      {"poto_aux_assign_batch", "int64 gt_classes[3]"});
  classes[3] = s.gt_classes[3].narrow(0, 0, 2);
  check_error([&] { crowdloss::lla_assign_batch(s.logits, s.ltrb, s.points, s.gt_boxes, classes); },
              {"lla_assign_batch", "gt_classes[3] of shape (3)"});
  check_error([&] { crowdloss::lla_assign_batch(s.logits[0], s.ltrb, s.points, s.gt_boxes, s.gt_classes); },
              {"lla_assign_batch", "cls_logits of shape (B, A, K)"});
  check_error(
      [&] { crowdloss::lla_assign_batch(s.logits, s.ltrb.narrow(0, 0, 3), s.points, s.gt_boxes, s.gt_classes); },
      {"lla_assign_batch", "box_ltrb of shape (4, 240, 4)"});
  boxes[2] = s.gt_boxes[2].narrow(1, 0, 3);
  check_error(
      [&] {
        crowdloss::fcos_assign_batch(
            s.points, boxes,
            crowdloss::FCOSAssignOptions().strides(s.strides).level_sizes(s.level_sizes).size_bounds({24}));
      },
      {"fcos_assign_batch", "gt_boxes[2] of shape (N, 4)"});
}

TEST_CASE("the batched assigners: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("batched assignment CPU/CUDA parity")) return;
  const auto s = random_batch(6, 2, 0);
  std::vector<at::Tensor> boxes, classes;
  for (size_t b = 0; b < 4; ++b) boxes.push_back(s.gt_boxes[b].cuda()), classes.push_back(s.gt_classes[b].cuda());
  const auto fcos = crowdloss::FCOSAssignOptions().strides(s.strides).level_sizes(s.level_sizes).size_bounds({24});
  DOCTEST_CHECK(torch::equal(crowdloss::fcos_assign_batch(s.points.cuda(), boxes, fcos).cpu(),
                             crowdloss::fcos_assign_batch(s.points, s.gt_boxes, fcos)));
  DOCTEST_CHECK(
      torch::equal(crowdloss::lla_assign_batch(s.logits.cuda(), s.ltrb.cuda(), s.points.cuda(), boxes, classes).cpu(),
                   crowdloss::lla_assign_batch(s.logits, s.ltrb, s.points, s.gt_boxes, s.gt_classes)));
  const auto centre =
      crowdloss::POTOAssignOptions().center_sampling_radius(1.5).strides(s.strides).level_sizes(s.level_sizes);
  const auto cuda =
      crowdloss::poto_assign_batch(s.prob.cuda(), s.pred_boxes.cuda(), s.points.cuda(), boxes, classes, centre);
  const auto cpu = crowdloss::poto_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, s.gt_classes, centre);
  for (size_t b = 0; b < 4; ++b) {
    DOCTEST_CHECK(cuda[b].device().is_cuda());
    DOCTEST_CHECK(torch::equal(cuda[b].cpu(), cpu[b]));
  }
  const auto aux = crowdloss::POTOAuxAssignOptions().level_sizes(s.level_sizes);
  DOCTEST_CHECK(torch::equal(
      crowdloss::poto_aux_assign_batch(s.prob.cuda(), s.pred_boxes.cuda(), s.points.cuda(), boxes, classes, aux).cpu(),
      crowdloss::poto_aux_assign_batch(s.prob, s.pred_boxes, s.points, s.gt_boxes, s.gt_classes, aux)));
}
