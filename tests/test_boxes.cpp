#include "support/checks.hpp"
#include "support/oracle.hpp"

#include <crowdloss/crowdloss.hpp>

using crowdloss_test::check_error;

TEST_CASE("box_iou and generalized_box_iou: hand-derived values") {
  const auto a = torch::tensor({0.0, 0.0, 2.0, 2.0, 5.0, 5.0, 6.0, 6.0}, torch::kFloat64).view({2, 4});
  const auto b =
      torch::tensor({1.0, 0.0, 3.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 4.0, 2.0}, torch::kFloat64).view({3, 4});
  const auto iou = crowdloss::box_iou(a, b);
  REQUIRE(iou.sizes() == at::IntArrayRef({2, 3}));
  DOCTEST_CHECK(iou[0][0].item<double>() == doctest::Approx(1.0 / 3));  // overlap 2, union 6
  DOCTEST_CHECK(iou[0][1].item<double>() == 1.0);                       // identical
  DOCTEST_CHECK(iou[0][2].item<double>() == 0.0);                       // touching edges
  DOCTEST_CHECK(iou[1][0].item<double>() == 0.0);                       // disjoint
  const auto giou = crowdloss::generalized_box_iou(a, b);
  DOCTEST_CHECK(giou[0][0].item<double>() == doctest::Approx(1.0 / 3));  // enclosing box = union
  DOCTEST_CHECK(giou[0][1].item<double>() == doctest::Approx(1.0));
  DOCTEST_CHECK(giou[0][2].item<double>() == doctest::Approx(0.0));  // enclosing 4×2 = union
  // (5,5,6,6) and (1,0,3,2): union 1 + 4, enclosing 5×6 → −25/30.
  DOCTEST_CHECK(giou[1][0].item<double>() == doctest::Approx(-25.0 / 30));
  torch::manual_seed(1);
  const auto xy = torch::rand({20, 2}) * 50, wh = torch::rand({20, 2}) * 30 + 1;
  const auto boxes = torch::cat({xy, xy + wh}, 1);
  DOCTEST_CHECK(
      (crowdloss::generalized_box_iou(boxes, boxes) <= crowdloss::box_iou(boxes, boxes) + 1e-6).all().item<bool>());
  DOCTEST_CHECK(torch::allclose(crowdloss::box_iou(boxes, boxes).diagonal(), torch::ones({20})));
}

TEST_CASE("anchor_points: DeFCN's shifts (oracle), row-major per level") {
  const auto oracle = crowdloss_test::load_json("assign.json");
  const auto& in = oracle.at("inputs");
  std::vector<std::array<int64_t, 2>> level_hw;
  for (const auto& hw : in.at("level_hw")) level_hw.push_back({hw.at(0).get<int64_t>(), hw.at(1).get<int64_t>()});
  const auto points = crowdloss::anchor_points(level_hw, in.at("strides").get<std::vector<double>>(),
                                               in.at("shift_offset").get<double>());
  DOCTEST_CHECK(torch::equal(points, crowdloss_test::tensor_from_json(in.at("shifts_all"))));
  const auto p = crowdloss::anchor_points({{2, 3}}, {10}, 0.0, torch::kFloat64);
  DOCTEST_CHECK(torch::equal(
      p, torch::tensor({0.0, 0.0, 10.0, 0.0, 20.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0, 10.0}, torch::kFloat64)
             .view({6, 2})));
}

TEST_CASE("ltrb_targets and ltrb_to_boxes are inverse") {
  const auto points = torch::tensor({5.0, 5.0, 12.0, 3.0}, torch::kFloat64).view({2, 2});
  const auto boxes = torch::tensor({0.0, 0.0, 10.0, 8.0}, torch::kFloat64).view({1, 4});
  const auto t = crowdloss::ltrb_targets(points, boxes);
  REQUIRE(t.sizes() == at::IntArrayRef({1, 2, 4}));
  DOCTEST_CHECK(torch::equal(t[0][0], torch::tensor({5.0, 5.0, 5.0, 3.0}, torch::kFloat64)));
  DOCTEST_CHECK(torch::equal(t[0][1], torch::tensor({12.0, 3.0, -2.0, 5.0}, torch::kFloat64)));  // outside: r < 0
  DOCTEST_CHECK(torch::equal(crowdloss::ltrb_to_boxes(points, t), boxes.unsqueeze(1).expand({1, 2, 4})));
  DOCTEST_CHECK(torch::equal(crowdloss::ltrb_to_boxes(points, t[0]), boxes.expand({2, 4})));
}

TEST_CASE("box utilities: CPU and CUDA agree") {
  if (!crowdloss_test::cuda_or_skip("box utilities CPU/CUDA parity")) return;
  torch::manual_seed(2);
  const auto xy = torch::rand({30, 2}, torch::kFloat64) * 50, wh = torch::rand({30, 2}, torch::kFloat64) * 30;
  const auto boxes = torch::cat({xy, xy + wh}, 1);
  DOCTEST_CHECK(torch::allclose(crowdloss::box_iou(boxes, boxes.flip(0)).cpu(),
                                crowdloss::box_iou(boxes.cuda(), boxes.flip(0).cuda()).cpu()));
  DOCTEST_CHECK(torch::allclose(crowdloss::generalized_box_iou(boxes, boxes.flip(0)),
                                crowdloss::generalized_box_iou(boxes.cuda(), boxes.flip(0).cuda()).cpu()));
  const auto points =
      crowdloss::anchor_points({{4, 5}}, {8}, 0.5, torch::TensorOptions(torch::kFloat64).device(torch::kCUDA));
  DOCTEST_CHECK(points.device().is_cuda());
  DOCTEST_CHECK(
      torch::equal(crowdloss::ltrb_targets(points, boxes.cuda()).cpu(), crowdloss::ltrb_targets(points.cpu(), boxes)));
}

TEST_CASE("box utilities: bad inputs throw c10::Error naming the function and the value") {
  const auto boxes = torch::rand({3, 4}), points = torch::rand({5, 2});
  check_error([&] { crowdloss::box_iou(boxes, torch::rand({3, 5})); }, {"box_iou", "b", "[3, 5]"});
  check_error([&] { crowdloss::box_iou(torch::ones({2, 4}, torch::kLong), boxes); }, {"box_iou", "Long"});
  check_error([&] { crowdloss::box_iou(boxes, boxes.to(at::kMeta)); }, {"box_iou", "meta"});
  check_error(
      [&] {
        crowdloss::generalized_box_iou(boxes.view({3, 2, 2}), boxes);
      },
      {"generalized_box_iou", "[3, 2, 2]"});
  check_error([&] { crowdloss::anchor_points({{2, 2}, {1, 1}}, {8}); }, {"anchor_points", "1 strides for 2 levels"});
  check_error([&] { crowdloss::anchor_points({{2, 2}}, {0}); }, {"anchor_points", "strides[0]", "0"});
  check_error([&] { crowdloss::anchor_points({{-1, 2}}, {8}); }, {"anchor_points", "-1x2"});
  check_error([&] { crowdloss::ltrb_targets(torch::rand({5, 3}), boxes); }, {"ltrb_targets", "[5, 3]"});
  check_error([&] { crowdloss::ltrb_targets(points, torch::rand({4})); }, {"ltrb_targets", "boxes", "[4]"});
  check_error([&] { crowdloss::ltrb_to_boxes(points, torch::rand({4, 4})); }, {"ltrb_to_boxes", "5", "[4, 4]"});
  check_error([&] { crowdloss::ltrb_to_boxes(points, torch::ones({5, 4}, torch::kInt)); }, {"ltrb_to_boxes", "Int"});
}
