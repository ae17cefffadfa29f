#include "support/checks.hpp"

#include "detection_eval.hpp"

#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;

namespace {

using Box = std::array<double, 4>;

/// N×4 float32 xyxy boxes (0×4 when `b` is empty).
at::Tensor boxes(const std::vector<Box>& b, at::ScalarType dtype = at::kFloat) {
  auto t = at::empty({static_cast<int64_t>(b.size()), 4}, at::kDouble);
  auto a = t.accessor<double, 2>();
  for (size_t i = 0; i < b.size(); ++i)
    for (size_t j = 0; j < 4; ++j) a[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = b[i][j];
  return t.to(dtype);
}

ex::Detections dets(const std::vector<Box>& b, const std::vector<double>& s, at::ScalarType dtype = at::kFloat) {
  auto scores = at::empty({static_cast<int64_t>(s.size())}, at::kDouble);
  for (size_t i = 0; i < s.size(); ++i) scores[static_cast<int64_t>(i)] = s[i];
  return {boxes(b, dtype), scores.to(dtype)};
}

at::Tensor none() { return at::zeros({0, 4}); }

/// The mMR of nine per-reference miss rates, floored at 1e-10 as evaluate_detections does.
double log_average(std::initializer_list<double> miss_rates) {
  double sum = 0;
  for (const double mr : miss_rates) sum += std::log(std::max(mr, 1e-10));
  return std::exp(sum / static_cast<double>(miss_rates.size()));
}

/// Asserts that `fn` throws std::invalid_argument whose message contains every one of `parts`.
template <typename Fn>
void check_invalid(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL("expected a std::invalid_argument containing \"" << *parts.begin() << "\", nothing was thrown");
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const auto& part : parts) {
      INFO("message: " << msg);
      DOCTEST_CHECK(msg.find(part) != std::string::npos);
    }
  }
}

// People used throughout: 10×10 boxes in a row.
const Box P1{0, 0, 10, 10}, P2{20, 0, 30, 10}, P3{40, 0, 50, 10};

}  // namespace

TEST_CASE("detection eval: a perfect detector has AP 1, recall 1 and the floored mMR") {
  // Image 0: P1, P2 (float32); image 1: one tall person (float64 boxes and scores). Every
  // detection is its person's box, given in no particular score order.
  //   pooled: .9 TP, .8 TP, .7 TP   recall 1/3, 2/3, 1   precision 1, 1, 1   fppi 0, 0, 0
  //   AP = 1/3·1 + (1/3)(1 + 1)/2 + (1/3)(1 + 1)/2 = 1
  //   mMR: no FPPI reaches any reference, so each takes the last point, miss rate 0 → 1e-10.
  const auto m = ex::evaluate_detections({dets({P2, P1}, {0.8, 0.9}), dets({{0, 0, 10, 20}}, {0.7}, at::kDouble)},
                                         {boxes({P1, P2}), boxes({{0, 0, 10, 20}}, at::kDouble)}, {none(), none()});
  DOCTEST_CHECK(m.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(m.mmr == doctest::Approx(1e-10).scale(0));
  DOCTEST_CHECK(m.ground_truths == 3);
  DOCTEST_CHECK(m.detections == 3);
}

TEST_CASE("detection eval: an FP ranked above a TP lowers AP by the trapezoid rule") {
  // One image, people P1, P2. Detections: P1 at .9 (TP), a stray box at .8 (FP), P2 at .7 (TP).
  //   k  TP FP  recall  precision  fppi  miss rate
  //   1  1  0   1/2     1          0     1/2
  //   2  1  1   1/2     1/2        1     1/2
  //   3  2  1   1       2/3        1     0
  //   AP = (1/2)(1) + 0 + (1/2)(2/3 + 1/2)/2 = 1/2 + 7/24 = 19/24   (the toolkit's sum without the
  //        first term: 7/24)
  //   mMR: every reference r ≤ 1 first reaches fppi ≥ r at k = 2, miss rate 1/2 → 1/2.
  const Box stray{50, 50, 60, 60};
  const auto m = ex::evaluate_detections({dets({P1, stray, P2}, {0.9, 0.8, 0.7})}, {boxes({P1, P2})}, {none()});
  DOCTEST_CHECK(m.ap50 == doctest::Approx(19.0 / 24));
  DOCTEST_CHECK(m.mmr == doctest::Approx(0.5));
  DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(m.detections == 3);

  // The same FP ranked last: recall 1/2, 1, 1, precision 1, 1, 2/3 → AP = 1/2 + 1/2 + 0 = 1;
  // fppi 0, 0, 1, miss rate 1/2, 0, 0 → every reference takes k = 3, miss rate 0 → 1e-10.
  const auto last = ex::evaluate_detections({dets({P1, stray, P2}, {0.9, 0.6, 0.7})}, {boxes({P1, P2})}, {none()});
  DOCTEST_CHECK(last.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(last.mmr == doctest::Approx(1e-10).scale(0));
}

TEST_CASE("detection eval: a second detection of a matched person is an FP") {
  // P1 is found first by a shifted box (IoU 90/110 = .82, score .9), then again by its exact box
  // (IoU 1, score .8): greedy by score, the exact box finds P1 taken and is an FP, even with
  // the better overlap. P2 at .7 is a TP. That is the TP, FP, TP sequence of the test above:
  // AP 19/24, mMR 1/2.
  const auto m =
      ex::evaluate_detections({dets({{1, 0, 11, 10}, P1, P2}, {0.9, 0.8, 0.7})}, {boxes({P1, P2})}, {none()});
  DOCTEST_CHECK(m.ap50 == doctest::Approx(19.0 / 24));
  DOCTEST_CHECK(m.mmr == doctest::Approx(0.5));
  DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(m.detections == 3);
}

TEST_CASE("detection eval: a detection on an ignore region is dropped, without the region it is an FP") {
  // Person P1; ignore region R = [100, 0, 200, 100]; a detection inside R, d = [120, 10, 140, 50],
  // at .9 above P1's exact box at .8. IoU(d, R) = 800/10000 = .08, but |d ∩ R|/|d| = 1.
  const Box region{100, 0, 200, 100}, inside{120, 10, 140, 50};
  // With R: d is dropped. Only the TP remains: AP 1, recall 1, no FP → mMR 1e-10.
  const auto with = ex::evaluate_detections({dets({inside, P1}, {0.9, 0.8})}, {boxes({P1})}, {boxes({region})});
  DOCTEST_CHECK(with.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(with.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(with.mmr == doctest::Approx(1e-10).scale(0));
  DOCTEST_CHECK(with.detections == 1);
  DOCTEST_CHECK(with.ground_truths == 1);  // R is no ground truth
  // Without R: FP then TP. recall 0, 1, precision 0, 1/2 → AP = 0·0 + 1·(1/2 + 0)/2 = 1/4;
  // fppi 1, 1, miss rate 1, 0 → every reference takes k = 1, miss rate 1 → mMR 1.
  const auto without = ex::evaluate_detections({dets({inside, P1}, {0.9, 0.8})}, {boxes({P1})}, {none()});
  DOCTEST_CHECK(without.ap50 == doctest::Approx(0.25));
  DOCTEST_CHECK(without.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(without.mmr == doctest::Approx(1.0));
  DOCTEST_CHECK(without.detections == 2);

  // Half of [190, 0, 210, 10] lies in R (100/200, exactly the threshold): dropped, AP 1 as above.
  // Of [192, 0, 212, 10] only 80/200 = .4 does: an FP, AP 1/4 as without R.
  const auto half =
      ex::evaluate_detections({dets({{190, 0, 210, 10}, P1}, {0.9, 0.8})}, {boxes({P1})}, {boxes({region})});
  DOCTEST_CHECK(half.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(half.detections == 1);
  const auto less =
      ex::evaluate_detections({dets({{192, 0, 212, 10}, P1}, {0.9, 0.8})}, {boxes({P1})}, {boxes({region})});
  DOCTEST_CHECK(less.ap50 == doctest::Approx(0.25));
  DOCTEST_CHECK(less.detections == 2);

  // A region's own box is no person: detecting it scores nothing (recall 0), while a person
  // inside a region is still matched first (recall 1).
  const Box in_region{110, 0, 120, 10};
  const auto on_region = ex::evaluate_detections({dets({region}, {0.9})}, {boxes({P1})}, {boxes({region})});
  DOCTEST_CHECK(on_region.recall == doctest::Approx(0.0));
  DOCTEST_CHECK(on_region.detections == 0);
  const auto person_in_region =
      ex::evaluate_detections({dets({in_region}, {0.9})}, {boxes({in_region})}, {boxes({region})});
  DOCTEST_CHECK(person_in_region.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(person_in_region.ap50 == doctest::Approx(1.0));
}

TEST_CASE("detection eval: greedy matching takes the unmatched ground truth of highest IoU") {
  // People g0 = [0, 0, 10, 10], g1 = [2, 0, 12, 10]. Detection a = [2, 0, 12, 10] at .9 has IoU
  // 80/120 = .67 with g0 and 1 with g1: it must take g1. Then b = [-3, 0, 7, 10] at .8 has IoU
  // 70/130 = .54 with g0 and 50/150 = .33 with g1: it takes g0. Both TP: recall 1, AP 1.
  // (Had a taken g0, the first ground truth over the threshold, b would be an FP: recall 1/2.)
  const Box g0{0, 0, 10, 10}, g1{2, 0, 12, 10};
  const auto m =
      ex::evaluate_detections({dets({{2, 0, 12, 10}, {-3, 0, 7, 10}}, {0.9, 0.8})}, {boxes({g0, g1})}, {none()});
  DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(m.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(m.detections == 2);
}

TEST_CASE("detection eval: an IoU exactly at the threshold counts") {
  // [0, 0, 10, 5] against P1: intersection 50, union 100, IoU exactly 1/2.
  const std::vector<ex::Detections> d{dets({{0, 0, 10, 5}}, {0.9})};
  const std::vector<at::Tensor> g{boxes({P1})}, ign{none()};
  const auto at_threshold = ex::evaluate_detections(d, g, ign, 0.5);
  DOCTEST_CHECK(at_threshold.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(at_threshold.ap50 == doctest::Approx(1.0));
  // Just above it the same detection is an FP: AP 0, recall 0, mMR 1.
  const auto above = ex::evaluate_detections(d, g, ign, 0.5 + 1e-9);
  DOCTEST_CHECK(above.recall == doctest::Approx(0.0));
  DOCTEST_CHECK(above.ap50 == doctest::Approx(0.0));
  DOCTEST_CHECK(above.mmr == doctest::Approx(1.0));
  DOCTEST_CHECK(above.detections == 1);
  // Other thresholds: [0, 0, 10, 6] has IoU .6, a TP at .6, an FP at .7.
  const std::vector<ex::Detections> d6{dets({{0, 0, 10, 6}}, {0.9})};
  DOCTEST_CHECK(ex::evaluate_detections(d6, g, ign, 0.6).recall == doctest::Approx(1.0));
  DOCTEST_CHECK(ex::evaluate_detections(d6, g, ign, 0.7).recall == doctest::Approx(0.0));
}

TEST_CASE("detection eval: miss rate at the FPPI reference points on two images") {
  // Image A: people P1, P2, P3; detections P1 .95, stray .9, P2 .6, stray .3, P3 .2.
  // Image B: people P1, P2;     detections P1 .8, stray .5, P2 .4.
  // Pooled, G = 5, I = 2 images:
  //   k  score  TP FP  recall  precision  fppi  miss rate
  //   1  .95    1  0   1/5     1          0     4/5
  //   2  .9     1  1   1/5     1/2        1/2   4/5
  //   3  .8     2  1   2/5     2/3        1/2   3/5
  //   4  .6     3  1   3/5     3/4        1/2   2/5
  //   5  .5     3  2   3/5     3/5        1     2/5
  //   6  .4     4  2   4/5     2/3        1     1/5
  //   7  .3     4  3   4/5     4/7        3/2   1/5
  //   8  .2     5  3   1       5/8        3/2   0
  // AP = 1/5·1 + (1/5)(2/3 + 1/2)/2 + (1/5)(3/4 + 2/3)/2 + (1/5)(2/3 + 3/5)/2 + (1/5)(5/8 + 4/7)/2
  //    = 1/5 + (7/6 + 17/12 + 19/15 + 67/56)/10 = 1680/8400 + 4239/8400 = 5919/8400 ≈ 0.70464
  // mMR: the seven references .01 … .3162 first reach fppi ≥ r at k = 2 (miss rate 4/5); .5623 and
  // 1 at k = 5 (fppi 1, miss rate 2/5). So mMR = exp((7 ln 4/5 + 2 ln 2/5)/9) ≈ 0.68580. (Taking
  // instead the last point with fppi ≤ r, as Dollár's Caltech code does, r = 1 would read k = 6,
  // miss rate 1/5.)
  const Box stray1{100, 100, 110, 110}, stray2{200, 200, 210, 210}, stray3{50, 50, 60, 60};
  const auto m = ex::evaluate_detections(
      {dets({P1, stray1, P2, stray2, P3}, {0.95, 0.9, 0.6, 0.3, 0.2}), dets({P1, stray3, P2}, {0.8, 0.5, 0.4})},
      {boxes({P1, P2, P3}), boxes({P1, P2})}, {none(), none()});
  DOCTEST_CHECK(m.ap50 == doctest::Approx(5919.0 / 8400));
  DOCTEST_CHECK(m.mmr == doctest::Approx(log_average({0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.4, 0.4})));
  DOCTEST_CHECK(m.mmr == doctest::Approx(0.68580).epsilon(1e-4));
  DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(m.ground_truths == 5);
  DOCTEST_CHECK(m.detections == 8);
}

TEST_CASE("detection eval: images without detections count in the FPPI") {
  // The TP, FP, TP image of the FP-above-TP test (AP 19/24, mMR 1/2 alone) next to an empty
  // image: I = 2, so fppi = 0, 1/2, 1/2 with miss rates 1/2, 1/2, 0. The seven references
  // below 1/2 read k = 2 (miss rate 1/2); .5623 and 1 are never reached and read the last
  // point, k = 3 (miss rate 0 → 1e-10): mMR = exp((7 ln 1/2 + 2 ln 1e-10)/9) ≈ 0.0034966.
  // AP does not change.
  const Box stray{50, 50, 60, 60};
  const auto m = ex::evaluate_detections({dets({P1, stray, P2}, {0.9, 0.8, 0.7}), dets({}, {})},
                                         {boxes({P1, P2}), none()}, {none(), none()});
  DOCTEST_CHECK(m.ap50 == doctest::Approx(19.0 / 24));
  DOCTEST_CHECK(m.mmr == doctest::Approx(log_average({0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 0})).scale(0));
  DOCTEST_CHECK(m.mmr == doctest::Approx(0.0034966).epsilon(1e-4).scale(0));
  DOCTEST_CHECK(m.ground_truths == 2);
}

TEST_CASE("detection eval: tied scores keep the image order, then the order within an image") {
  // Image X: no person, a stray detection at .5 (FP). Image Y: P1 found at .5 (TP). G = 1.
  //   X before Y: FP, TP → recall 0, 1, precision 0, 1/2 → AP = 0 + (1)(1/2 + 0)/2 = 1/4
  //   Y before X: TP, FP → recall 1, 1, precision 1, 1/2 → AP = 1
  const auto x = dets({{50, 50, 60, 60}}, {0.5}), y = dets({P1}, {0.5});
  const auto xy = ex::evaluate_detections({x, y}, {none(), boxes({P1})}, {none(), none()});
  const auto yx = ex::evaluate_detections({y, x}, {boxes({P1}), none()}, {none(), none()});
  DOCTEST_CHECK(xy.ap50 == doctest::Approx(0.25));
  DOCTEST_CHECK(yx.ap50 == doctest::Approx(1.0));
  DOCTEST_CHECK(xy.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(yx.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(ex::evaluate_detections({x, y}, {none(), boxes({P1})}, {none(), none()}).ap50 == xy.ap50);

  // Within an image: a = [0, 3, 10, 13] (IoU 70/130 = .54 with P1) and b = P1's box (IoU 1), both
  // at .5, with ignore region [0, 0, 10, 5] holding 20/100 of a and 50/100 of b. The one listed
  // first takes P1. a first: b is left over and dropped on the region → 1 scored detection.
  // b first: a is left over, outside the region → an FP, 2 scored detections.
  const Box a{0, 3, 10, 13}, region{0, 0, 10, 5};
  const auto a_first = ex::evaluate_detections({dets({a, P1}, {0.5, 0.5})}, {boxes({P1})}, {boxes({region})});
  const auto b_first = ex::evaluate_detections({dets({P1, a}, {0.5, 0.5})}, {boxes({P1})}, {boxes({region})});
  DOCTEST_CHECK(a_first.detections == 1);
  DOCTEST_CHECK(b_first.detections == 2);
  DOCTEST_CHECK(a_first.recall == doctest::Approx(1.0));
  DOCTEST_CHECK(b_first.recall == doctest::Approx(1.0));
}

TEST_CASE("detection eval: no detections, no ground truths and empty images") {
  SUBCASE("no image at all gives the defaults") {
    const auto m = ex::evaluate_detections({}, {}, {});
    DOCTEST_CHECK(m.ap50 == 0.0);
    DOCTEST_CHECK(m.mmr == 1.0);
    DOCTEST_CHECK(m.recall == 0.0);
    DOCTEST_CHECK(m.ground_truths == 0);
    DOCTEST_CHECK(m.detections == 0);
  }
  SUBCASE("people but no detections: AP 0, mMR 1, recall 0") {
    const auto m =
        ex::evaluate_detections({dets({}, {}), dets({}, {})}, {boxes({P1}), boxes({P1, P2})}, {none(), none()});
    DOCTEST_CHECK(m.ap50 == 0.0);
    DOCTEST_CHECK(m.mmr == 1.0);
    DOCTEST_CHECK(m.recall == 0.0);
    DOCTEST_CHECK(m.ground_truths == 3);
    DOCTEST_CHECK(m.detections == 0);
  }
  SUBCASE("detections but no person anywhere: all FP, AP and recall 0, mMR 1") {
    const auto m = ex::evaluate_detections({dets({P1, P2}, {0.9, 0.8})}, {none()}, {none()});
    DOCTEST_CHECK(m.ap50 == 0.0);
    DOCTEST_CHECK(m.mmr == 1.0);
    DOCTEST_CHECK(m.recall == 0.0);
    DOCTEST_CHECK(m.ground_truths == 0);
    DOCTEST_CHECK(m.detections == 2);
  }
  SUBCASE("detections only on ignore regions: none scored") {
    const auto m = ex::evaluate_detections({dets({P2, P3}, {0.9, 0.8})}, {boxes({P1})}, {boxes({{15, 0, 55, 10}})});
    DOCTEST_CHECK(m.ap50 == 0.0);
    DOCTEST_CHECK(m.mmr == 1.0);
    DOCTEST_CHECK(m.recall == 0.0);
    DOCTEST_CHECK(m.ground_truths == 1);
    DOCTEST_CHECK(m.detections == 0);
  }
  SUBCASE("an empty image next to a perfect one changes nothing but the image count") {
    const auto m = ex::evaluate_detections({dets({}, {}), dets({P1}, {0.9})}, {none(), boxes({P1})}, {none(), none()});
    DOCTEST_CHECK(m.ap50 == doctest::Approx(1.0));
    DOCTEST_CHECK(m.recall == doctest::Approx(1.0));
    DOCTEST_CHECK(m.mmr == doctest::Approx(1e-10).scale(0));
  }
}

TEST_CASE("detection eval: input errors name the argument") {
  const auto one = dets({P1}, {0.9});
  const auto g = boxes({P1});
  check_invalid([&] { ex::evaluate_detections({one, one}, {g}, {none(), none()}); }, {"gt_boxes", "2, 1 and 2"});
  check_invalid([&] { ex::evaluate_detections({one}, {g}, {}); }, {"ignore_regions", "1, 1 and 0"});
  check_invalid(
      [&] {
        ex::evaluate_detections({one, ex::Detections{at::zeros({2, 3}), at::zeros({2})}}, {g, g}, {none(), none()});
      },
      {"detections[1].boxes", "(N, 4)", "[2, 3]"});
  check_invalid([&] { ex::evaluate_detections({one}, {at::zeros({4})}, {none()}); }, {"gt_boxes[0]", "(N, 4)"});
  check_invalid([&] { ex::evaluate_detections({one}, {at::Tensor()}, {none()}); }, {"gt_boxes[0]", "undefined"});
  check_invalid([&] { ex::evaluate_detections({one}, {g}, {at::zeros({1, 5})}); }, {"ignore_regions[0]", "[1, 5]"});
  check_invalid([&] { ex::evaluate_detections({one}, {g.to(at::kInt)}, {none()}); }, {"gt_boxes[0]", "floating-point"});
  check_invalid(
      [&] {
        ex::evaluate_detections({ex::Detections{boxes({P1, P2}), at::ones({3})}}, {g}, {none()});
      },
      {"detections[0].scores", "2 scores"});
  check_invalid(
      [&] {
        ex::evaluate_detections({ex::Detections{boxes({P1}), at::ones({1, 1})}}, {g}, {none()});
      },
      {"detections[0].scores", "[1, 1]"});
  check_invalid(
      [&] {
        ex::evaluate_detections({ex::Detections{boxes({P1}), at::Tensor()}}, {g}, {none()});
      },
      {"detections[0].scores", "undefined"});
  check_invalid(
      [&] {
        ex::evaluate_detections({ex::Detections{boxes({P1}), at::full({1}, std::numeric_limits<double>::quiet_NaN())}},
                                {g}, {none()});
      },
      {"detections[0].scores", "NaN"});
  for (const double t : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("iou_threshold " << t);
    check_invalid([&] { ex::evaluate_detections({one}, {g}, {none()}, t); }, {"iou_threshold"});
  }
  // The checks come before any work: a valid call with the same inputs goes through.
  DOCTEST_CHECK(ex::evaluate_detections({one}, {g}, {none()}).recall == doctest::Approx(1.0));
}
