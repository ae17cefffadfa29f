#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

using crowdloss_test::check_error;
using crowdloss_test::to_vector;

namespace {

// torchvision's CPU kernel, scalar: visit by decreasing score (ties in input order), keep unless
// IoU > threshold with a kept box of the same class. The IoU in T (the boxes' compute dtype), with
// torchvision's operations and their order, compared with the threshold as a double.
template <typename T>
std::vector<int64_t> reference_nms_in(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                                      double thr) {
  const auto b = boxes.to(c10::CppTypeToScalarType<T>::value).contiguous();
  const auto s = scores.to(torch::kDouble).contiguous();
  const auto c =
      classes.defined() ? classes.to(torch::kLong).contiguous() : torch::zeros({boxes.size(0)}, torch::kLong);
  const int64_t n = b.size(0);
  const auto B = b.template accessor<T, 2>();
  const auto S = s.accessor<double, 1>();
  const auto C = c.accessor<int64_t, 1>();
  std::vector<T> area(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) area[static_cast<size_t>(i)] = (B[i][2] - B[i][0]) * (B[i][3] - B[i][1]);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return S[i] > S[j]; });
  std::vector<bool> suppressed(static_cast<size_t>(n), false);
  std::vector<int64_t> keep;
  for (size_t a = 0; a < order.size(); ++a) {
    const int64_t i = order[a];
    if (suppressed[static_cast<size_t>(i)]) continue;
    keep.push_back(i);
    for (size_t o = a + 1; o < order.size(); ++o) {
      const int64_t j = order[o];
      if (C[i] != C[j]) continue;
      const T w = std::max(T(0), std::min(B[i][2], B[j][2]) - std::max(B[i][0], B[j][0]));
      const T h = std::max(T(0), std::min(B[i][3], B[j][3]) - std::max(B[i][1], B[j][1]));
      const T inter = w * h;
      const T uni = area[static_cast<size_t>(i)] + area[static_cast<size_t>(j)] - inter;
      const T iou = inter / uni;
      if (static_cast<double>(iou) > thr) suppressed[static_cast<size_t>(j)] = true;
    }
  }
  return keep;
}

std::vector<int64_t> reference_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                                   double thr) {
  return boxes.scalar_type() == torch::kDouble ? reference_nms_in<double>(boxes, scores, classes, thr)
                                               : reference_nms_in<float>(boxes, scores, classes, thr);
}

at::Tensor random_boxes(int64_t n, at::ScalarType dtype = torch::kFloat64) {
  const auto xy = torch::rand({n, 2}, dtype) * 100, wh = torch::rand({n, 2}, dtype) * 40 + 1;
  return torch::cat({xy, xy + wh}, 1);
}

// Boxes on a grid of whole numbers, 1–6 wide and high over 12×12: many IoUs are exactly the
// thresholds' ratios (1/2, 1/3, 3/5, …), where rounding the threshold would change the result.
at::Tensor grid_boxes(int64_t n, at::ScalarType dtype) {
  const auto xy = torch::randint(0, 12, {n, 2}, torch::kLong), wh = torch::randint(1, 7, {n, 2}, torch::kLong);
  return torch::cat({xy, xy + wh}, 1).to(dtype);
}

// nms_dispatch's preparation around `path`: the visit order, the compute dtype and the threshold
// (threshold_below); `path` maps (sorted boxes, their classes or undefined, threshold) to the kept
// positions in that order, and those are mapped back to indices.
template <class Path>
std::vector<int64_t> nms_by(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes, double thr,
                            Path path) {
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).to(crowdloss::detail::compute_dtype(boxes));
  const auto keep = path(sorted, classes.defined() ? classes.index_select(0, order) : at::Tensor(),
                         crowdloss::detail::threshold_below(thr, sorted.scalar_type()));
  return to_vector(order.index_select(0, keep));
}

// nms by the ATen path (nms_aten) on CPU tensors, as nms_dispatch calls it on CUDA.
std::vector<int64_t> aten_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                              double thr) {
  return nms_by(boxes, scores, classes, thr, crowdloss::detail::nms_aten);
}

// Dense boxes as detectors produce them (the benchmark): 20–60 px over 400×400.
at::Tensor dense_boxes(int64_t n, at::ScalarType dtype) {
  const auto xy = torch::rand({n, 2}, dtype) * 400, wh = torch::rand({n, 2}, dtype) * 40 + 20;
  return torch::cat({xy, xy + wh}, 1);
}

// nms by the CUDA kernels' arithmetic run on the CPU (nms_cuda_emulated), as nms_dispatch calls
// them on CUDA.
std::vector<int64_t> emulated_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& classes,
                                  double thr) {
  return nms_by(boxes, scores, classes, thr,
                [](const at::Tensor& sorted_boxes, const at::Tensor& sorted_classes, double threshold) {
                  using namespace crowdloss::detail;
                  const auto sorted = sorted_boxes.contiguous();
                  const int64_t n = sorted.size(0);
                  std::vector<long long> classes_ll;
                  if (sorted_classes.defined()) {
                    const auto c = sorted_classes.to(torch::kLong).contiguous();
                    classes_ll.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + n);
                  }
                  const NmsParams q = nms_cuda_params(n, threshold);
                  std::vector<unsigned char> keep(static_cast<size_t>(n), 2);
                  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "emulated_nms", [&] {
                    nms_cuda_emulated(q, sorted.data_ptr<scalar_t>(),
                                      sorted_classes.defined() ? classes_ll.data() : nullptr, keep.data());
                  });
                  std::vector<int64_t> kept;
                  for (int64_t i = 0; i < n; ++i) {
                    REQUIRE(keep[static_cast<size_t>(i)] < 2);  // every flag written
                    if (keep[static_cast<size_t>(i)] == 1) kept.push_back(i);
                  }
                  return at::tensor(kept, at::TensorOptions(at::kLong));
                });
}

}  // namespace

TEST_CASE("nms: hand-derived suppression, threshold is strict, order by score") {
  const auto boxes = torch::tensor({0.0, 0.0, 10.0, 10.0,    // 0: area 100
                                    2.0, 0.0, 10.0, 10.0,    // 1: area 80, inside 0 → IoU 80/100 = 0.8
                                    20.0, 20.0, 30.0, 30.0,  // 2: disjoint
                                    5.0, 0.0, 15.0, 10.0},   // 3: IoU with 0 = 50/150 = 1/3
                                   torch::kFloat64)
                         .view({4, 4});
  const auto scores = torch::tensor({0.9, 0.95, 0.1, 0.5}, torch::kFloat64);
  // Visit 1 (0.95): keep. 0: IoU 0.8 > 0.5 → gone. 3: IoU(1, 3) = 50/(80 + 100 − 50) = 5/13 ≈ 0.385 → kept. 2 kept.
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, 0.5)) == std::vector<int64_t>({1, 3, 2}));
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, 0.8)) ==
                std::vector<int64_t>({1, 0, 3, 2}));  // 0.8 is not > 0.8
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, 0.3)) == std::vector<int64_t>({1, 2}));
  // Same score: input order decides.
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes.slice(0, 0, 2), torch::ones({2}, torch::kFloat64), 0.5)) ==
                std::vector<int64_t>({0}));
  const auto none = crowdloss::nms(torch::zeros({0, 4}), torch::zeros({0}), 0.5);
  DOCTEST_CHECK(none.numel() == 0);
  DOCTEST_CHECK((none.scalar_type() == torch::kLong));
}

TEST_CASE("nms and batched_nms: equal to torchvision's kernel on random boxes, in float and double") {
  torch::manual_seed(7);
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    for (const int64_t n : {1, 7, 60, 300}) {
      for (const double thr : {0.0, 0.3, 0.7}) {
        INFO("n " << n << " threshold " << thr << " dtype " << dtype);
        const auto boxes = random_boxes(n, dtype);
        auto scores = torch::rand({n}, dtype);
        scores.slice(0, 0, n / 3).fill_(0.5);  // ties
        DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, thr)) == reference_nms(boxes, scores, at::Tensor(), thr));
        const auto classes = torch::randint(0, 3, {n}, torch::kLong);
        DOCTEST_CHECK(to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)) ==
                      reference_nms(boxes, scores, classes, thr));
      }
    }
  }
  // Many rows: several tiles of the ATen path's mask (N² > 4M entries), mostly suppressed.
  const auto boxes = random_boxes(2500), scores = torch::rand({2500}, torch::kFloat64);
  const auto expected = reference_nms(boxes, scores, at::Tensor(), 0.2);
  DOCTEST_CHECK(aten_nms(boxes, scores, at::Tensor(), 0.2) == expected);
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, 0.2)) == expected);
}

TEST_CASE("nms: the threshold is compared as a double, never rounded to the boxes' dtype") {
  // IoU([0,0,5,1], [0,0,3,1]) = 3/5: in float32 that is float32(0.6) = 0.6000000238… > 0.6, so
  // torchvision suppresses box 1; in float64 it is double(0.6), not above 0.6.
  const auto boxes = torch::tensor({0.0, 0.0, 5.0, 1.0, 0.0, 0.0, 3.0, 1.0}, torch::kFloat64).view({2, 4});
  const auto scores = torch::tensor({1.0, 0.9}, torch::kFloat64);
  const auto one_class = torch::zeros({2}, torch::kLong);
  // IoU([0,0,3,1], [0,0,1,1]) = 1/3: float32(1/3) > 1/3 too. IoU 7/10: float32(0.7) < 0.7, kept.
  const auto third = torch::tensor({0.0, 0.0, 3.0, 1.0, 0.0, 0.0, 1.0, 1.0}, torch::kFloat64).view({2, 4});
  const auto seven = torch::tensor({0.0, 0.0, 10.0, 1.0, 0.0, 0.0, 7.0, 1.0}, torch::kFloat64).view({2, 4});
  const std::vector<int64_t> first{0}, both{0, 1};
  for (const auto dtype : {torch::kFloat32, torch::kHalf, torch::kBFloat16, torch::kFloat64}) {
    INFO("dtype " << dtype);
    const auto& expected = dtype == torch::kFloat64 ? both : first;
    const auto b = boxes.to(dtype), s = scores.to(dtype);
    DOCTEST_CHECK(to_vector(crowdloss::nms(b, s, 0.6)) == expected);
    DOCTEST_CHECK(to_vector(crowdloss::batched_nms(b, s, one_class, 0.6)) == expected);
    DOCTEST_CHECK(aten_nms(b, s, at::Tensor(), 0.6) == expected);
    DOCTEST_CHECK(aten_nms(b, s, one_class, 0.6) == expected);
    DOCTEST_CHECK(to_vector(crowdloss::nms(third.to(dtype), s, 1.0 / 3)) == expected);
    DOCTEST_CHECK(aten_nms(third.to(dtype), s, at::Tensor(), 1.0 / 3) == expected);
    DOCTEST_CHECK(to_vector(crowdloss::nms(seven.to(dtype), s, 0.7)) == both);
    DOCTEST_CHECK(aten_nms(seven.to(dtype), s, at::Tensor(), 0.7) == both);
  }
  using crowdloss::detail::threshold_below;
  DOCTEST_CHECK(threshold_below(0.6, torch::kFloat) == static_cast<double>(std::nextafter(0.6f, 0.0f)));
  DOCTEST_CHECK(threshold_below(0.7, torch::kFloat) == static_cast<double>(0.7f));
  DOCTEST_CHECK(threshold_below(0.5, torch::kFloat) == 0.5);
  DOCTEST_CHECK(threshold_below(0.6, torch::kDouble) == 0.6);
  DOCTEST_CHECK(std::isnan(threshold_below(NAN, torch::kFloat)));
  DOCTEST_CHECK(threshold_below(INFINITY, torch::kFloat) == INFINITY);
  DOCTEST_CHECK(threshold_below(1e300, torch::kFloat) == static_cast<double>(std::numeric_limits<float>::max()));
  DOCTEST_CHECK(threshold_below(-1e300, torch::kFloat) == -INFINITY);
  DOCTEST_CHECK(threshold_below(-0.6, torch::kFloat) == static_cast<double>(-0.6f));  // float32(−0.6) < −0.6
}

TEST_CASE(
    "nms and batched_nms: the CPU kernel equals torchvision's arithmetic and the ATen path, per instruction set") {
  const double thresholds[] = {0.0, 0.2, 0.3, 1.0 / 3, 0.5, 0.6, 0.7, 1.0};
  crowdloss_test::for_each_cpu_capability([&] {
    torch::manual_seed(5);
    for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kHalf, torch::kBFloat16}) {
      // Whole-number boxes: ties in IoU and score, and IoUs exactly at the thresholds.
      for (const int64_t n : {1, 2, 5, 17, 40, 300}) {
        const auto boxes = grid_boxes(n, dtype);
        const auto scores = (torch::randint(0, 5, {n}, torch::kLong).to(torch::kFloat64) / 4).to(dtype);
        const auto classes = torch::randint(0, 3, {n}, torch::kLong);
        for (const double thr : thresholds) {
          INFO("grid n " << n << " threshold " << thr << " dtype " << dtype);
          const auto expected = reference_nms(boxes, scores, at::Tensor(), thr);
          DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, thr)) == expected);
          DOCTEST_CHECK(aten_nms(boxes, scores, at::Tensor(), thr) == expected);
          const auto expected_classes = reference_nms(boxes, scores, classes, thr);
          DOCTEST_CHECK(to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)) == expected_classes);
          DOCTEST_CHECK(aten_nms(boxes, scores, classes, thr) == expected_classes);
        }
      }
    }
    // Dense, heavily overlapping boxes: most die early, so the live list is compacted many times;
    // with hundreds of classes, most of them hold a few boxes.
    for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
      const auto boxes = dense_boxes(3000, dtype);
      const auto scores = torch::rand({3000}, dtype);
      const auto classes = torch::randint(0, 400, {3000}, torch::kLong);
      for (const double thr : {0.0, 0.3, 0.5, 0.7}) {
        INFO("dense threshold " << thr << " dtype " << dtype);
        const auto expected = reference_nms(boxes, scores, at::Tensor(), thr);
        DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, thr)) == expected);
        DOCTEST_CHECK(aten_nms(boxes, scores, at::Tensor(), thr) == expected);
        DOCTEST_CHECK(to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)) ==
                      reference_nms(boxes, scores, classes, thr));
      }
    }
  });
}

TEST_CASE("batched_nms: classes never suppress each other, and it equals per-class nms merged by score") {
  const auto box = torch::tensor({0.0, 0.0, 10.0, 10.0}, torch::kFloat32).view({1, 4});
  const auto boxes = box.repeat({4, 1});
  const auto scores = torch::tensor({0.1f, 0.4f, 0.3f, 0.2f});
  const auto classes = torch::tensor({0, 1, 0, 2}, torch::kLong);
  DOCTEST_CHECK(to_vector(crowdloss::batched_nms(boxes, scores, classes, 0.5)) == std::vector<int64_t>({1, 2, 3}));
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes, scores, 0.5)) == std::vector<int64_t>({1}));
  torch::manual_seed(3);
  const auto many = random_boxes(200);
  const auto s = torch::rand({200}, torch::kFloat64);
  const auto c = torch::randint(0, 4, {200}, torch::kInt32);  // any integer dtype
  std::vector<int64_t> merged;
  for (int64_t k = 0; k < 4; ++k) {
    const auto members = (c == k).nonzero().squeeze(1);
    for (const auto i : to_vector(crowdloss::nms(many.index_select(0, members), s.index_select(0, members), 0.4)))
      merged.push_back(members[i].item<int64_t>());
  }
  std::stable_sort(merged.begin(), merged.end(),
                   [&](int64_t a, int64_t b) { return s[a].item<double>() > s[b].item<double>(); });
  DOCTEST_CHECK(to_vector(crowdloss::batched_nms(many, s, c, 0.4)) == merged);
}

TEST_CASE("nms: half precision, degenerate boxes and NaN scores behave like torchvision") {
  const auto boxes = random_boxes(40, torch::kFloat32);
  const auto scores = torch::rand({40});
  const auto half_boxes = boxes.to(torch::kHalf), half_scores = scores.to(torch::kHalf);  // computed in float32
  DOCTEST_CHECK(torch::equal(crowdloss::nms(half_boxes, half_scores, 0.5),
                             crowdloss::nms(half_boxes.to(torch::kFloat), half_scores.to(torch::kFloat), 0.5)));
  // Zero-area boxes: IoU 0/0 is NaN, never > threshold, so identical points are all kept.
  const auto points = torch::tensor({1.0f, 1.0f, 1.0f, 1.0f}).view({1, 4}).repeat({3, 1});
  DOCTEST_CHECK(crowdloss::nms(points, torch::rand({3}), 0.5).numel() == 3);
  auto with_nan = torch::tensor({0.5f, NAN, 0.7f});
  const auto same = torch::tensor({0.0f, 0.0f, 4.0f, 4.0f}).view({1, 4}).repeat({3, 1});
  DOCTEST_CHECK(to_vector(crowdloss::nms(same, with_nan, 0.5)) == std::vector<int64_t>({1}));  // NaN first
}

TEST_CASE("nms and batched_nms: every bad input throws c10::Error naming the function and the value") {
  const auto boxes = random_boxes(5), scores = torch::rand({5}, torch::kFloat64);
  check_error([&] { crowdloss::nms(boxes.view({5, 2, 2}), scores, 0.5); }, {"nms", "boxes", "(N, 4)", "[5, 2, 2]"});
  check_error([&] { crowdloss::nms(boxes, scores.slice(0, 0, 4), 0.5); }, {"nms", "scores", "(5)", "[4]"});
  check_error([&] { crowdloss::nms(boxes.to(torch::kLong), scores, 0.5); }, {"nms", "boxes", "Long"});
  check_error([&] { crowdloss::nms(boxes, scores.to(torch::kLong), 0.5); }, {"nms", "scores", "Long"});
  check_error([&] { crowdloss::nms(boxes, scores.to(at::kMeta), 0.5); }, {"nms", "scores", "meta"});
  const auto idxs = torch::zeros({5}, torch::kLong);
  check_error([&] { crowdloss::batched_nms(boxes, scores, idxs.to(torch::kFloat), 0.5); },
              {"batched_nms", "idxs", "Float"});
  check_error([&] { crowdloss::batched_nms(boxes, scores, idxs.slice(0, 0, 3), 0.5); }, {"batched_nms", "idxs", "[3]"});
  check_error([&] { crowdloss::batched_nms(boxes, scores, at::Tensor(), 0.5); }, {"batched_nms", "idxs", "defined"});
  check_error([&] { crowdloss::batched_nms(boxes, scores, idxs.to(at::kMeta), 0.5); }, {"batched_nms", "idxs", "meta"});
  check_error([&] { crowdloss::batched_nms(boxes.slice(0, 0, 4), scores, idxs, 0.5); },
              {"batched_nms", "scores", "(4)"});
  // Thresholds outside [0, 1]: NaN and +inf would keep every box, −1 would keep only the first.
  check_error([&] { crowdloss::nms(boxes, scores, NAN); }, {"nms", "iou_threshold", "[0, 1]", "nan"});
  check_error([&] { crowdloss::nms(boxes, scores, INFINITY); }, {"nms", "iou_threshold", "inf"});
  check_error([&] { crowdloss::nms(boxes, scores, -1); }, {"nms", "iou_threshold", "-1"});
  check_error([&] { crowdloss::nms(boxes, scores, 1.5); }, {"nms", "iou_threshold", "1.5"});
  check_error([&] { crowdloss::batched_nms(boxes, scores, idxs, -INFINITY); },
              {"batched_nms", "iou_threshold", "-inf"});
  // The ends of [0, 1] are thresholds: 1 keeps every distinct box, and an empty set needs none.
  DOCTEST_CHECK(crowdloss::nms(boxes, scores, 1.0).numel() == 5);
  DOCTEST_CHECK(crowdloss::nms(boxes.slice(0, 0, 0), scores.slice(0, 0, 0), 0.0).numel() == 0);
}

TEST_CASE("nms device kernels: their arithmetic, run on the CPU, equals the CPU kernel, ties and limits included") {
  torch::manual_seed(17);
  const double thresholds[] = {0.0, 1.0 / 3, 0.5, 0.6, 1.0};
  for (const auto dtype : {torch::kFloat64, torch::kFloat32, torch::kHalf}) {
    // Whole-number boxes (IoUs exactly at the thresholds, tied scores); sizes around the 64-box tiles.
    for (const int64_t n : {1, 2, 63, 64, 65, 128, 129, 300}) {
      const auto boxes = grid_boxes(n, dtype);
      const auto scores = (torch::randint(0, 5, {n}, torch::kLong).to(torch::kFloat64) / 4).to(dtype);
      const auto classes = torch::randint(0, 3, {n}, torch::kLong);
      for (const double thr : thresholds) {
        INFO("grid n " << n << " threshold " << thr << " dtype " << dtype);
        DOCTEST_CHECK(emulated_nms(boxes, scores, at::Tensor(), thr) == to_vector(crowdloss::nms(boxes, scores, thr)));
        DOCTEST_CHECK(emulated_nms(boxes, scores, classes, thr) ==
                      to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)));
      }
    }
  }
  // Dense boxes as a detector emits them: many tiles, most boxes suppressed by earlier tiles;
  // hundreds of classes.
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const auto boxes = dense_boxes(1500, dtype);
    const auto scores = torch::rand({1500}, dtype);
    const auto classes = torch::randint(0, 300, {1500}, torch::kLong);
    for (const double thr : {0.2, 0.3, 0.5}) {
      INFO("dense threshold " << thr << " dtype " << dtype);
      const auto expected = to_vector(crowdloss::nms(boxes, scores, thr));
      DOCTEST_CHECK(expected.size() > 50);
      DOCTEST_CHECK(expected.size() < 1000);
      DOCTEST_CHECK(emulated_nms(boxes, scores, at::Tensor(), thr) == expected);
      DOCTEST_CHECK(emulated_nms(boxes, scores, classes, thr) ==
                    to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)));
    }
  }
  // The minimal case: float32(0.6) is above 0.6, so box 1 goes; not in float64.
  const auto pair = torch::tensor({0.0, 0.0, 5.0, 1.0, 0.0, 0.0, 3.0, 1.0}, torch::kFloat64).view({2, 4});
  const auto pair_scores = torch::tensor({1.0, 0.9}, torch::kFloat64);
  DOCTEST_CHECK(emulated_nms(pair.to(torch::kFloat), pair_scores, at::Tensor(), 0.6) == std::vector<int64_t>{0});
  DOCTEST_CHECK(emulated_nms(pair, pair_scores, at::Tensor(), 0.6) == std::vector<int64_t>({0, 1}));
  // Zero-area boxes (IoU 0/0) and NaN coordinates suppress nothing and are not suppressed.
  auto odd = dense_boxes(70, torch::kFloat32);
  odd.slice(0, 0, 3).copy_(torch::tensor({1.0f, 1.0f, 1.0f, 1.0f}).expand({3, 4}));
  odd[5][2].fill_(NAN);
  odd[66][0].fill_(NAN);
  const auto odd_scores = torch::rand({70});
  DOCTEST_CHECK(emulated_nms(odd, odd_scores, at::Tensor(), 0.5) == to_vector(crowdloss::nms(odd, odd_scores, 0.5)));
  DOCTEST_CHECK(emulated_nms(odd, odd_scores, at::Tensor(), 0.5) == reference_nms(odd, odd_scores, at::Tensor(), 0.5));
  // The sizes: ⌈n/64⌉ words a box; CPU boxes, and more boxes than the scan holds, are not theirs.
  using namespace crowdloss::detail;
  DOCTEST_CHECK(nms_cuda_params(129, 0.5).words == 3);
  DOCTEST_CHECK(nms_cuda_params(64, 0.5).words == 1);
  DOCTEST_CHECK(kNmsMaxBoxes == 65536);
  const bool before = crowdloss::set_cuda_kernels_enabled(true);
  DOCTEST_CHECK(!nms_cuda_takes(odd));
  crowdloss::set_cuda_kernels_enabled(before);
}

TEST_CASE("nms and batched_nms: the CUDA kernels equal the CPU kernel on CUDA, past their size limit too") {
  if (!crowdloss_test::cuda_or_skip("the CUDA NMS kernels")) return;
  const bool before = crowdloss::set_cuda_kernels_enabled(true);
  torch::manual_seed(23);
  for (const auto dtype : {torch::kFloat32, torch::kFloat64, torch::kHalf}) {
    for (const int64_t n : {1, 64, 65, 1000, 5000, 20000}) {
      const auto boxes = dense_boxes(n, torch::kFloat32).to(dtype), scores = torch::rand({n}).to(dtype);
      const auto classes = torch::randint(0, 80, {n}, torch::kLong);
      for (const double thr : {0.3, 0.5, 0.6}) {
        INFO("n " << n << " threshold " << thr << " dtype " << dtype);
        DOCTEST_CHECK(crowdloss::detail::nms_cuda_takes(boxes.cuda().to(crowdloss::detail::compute_dtype(boxes))));
        const auto gpu = crowdloss::nms(boxes.cuda(), scores.cuda(), thr);
        DOCTEST_CHECK(gpu.is_cuda());
        DOCTEST_CHECK(to_vector(gpu) == to_vector(crowdloss::nms(boxes, scores, thr)));
        DOCTEST_CHECK(to_vector(crowdloss::batched_nms(boxes.cuda(), scores.cuda(), classes.cuda(), thr)) ==
                      to_vector(crowdloss::batched_nms(boxes, scores, classes, thr)));
      }
    }
  }
  // Whole-number boxes: IoUs at the thresholds, tied scores.
  const auto grid = grid_boxes(3000, torch::kFloat32);
  const auto tied = (torch::randint(0, 5, {3000}, torch::kLong).to(torch::kFloat64) / 4).to(torch::kFloat32);
  for (const double thr : {0.0, 1.0 / 3, 0.6, 1.0})
    DOCTEST_CHECK(to_vector(crowdloss::nms(grid.cuda(), tied.cuda(), thr)) ==
                  to_vector(crowdloss::nms(grid, tied, thr)));
  // More boxes than the kernels take: the ATen path, the same result.
  const int64_t many = crowdloss::detail::kNmsMaxBoxes + 1;
  const auto boxes = dense_boxes(many, torch::kFloat32), scores = torch::rand({many});
  DOCTEST_CHECK(!crowdloss::detail::nms_cuda_takes(boxes.cuda()));
  DOCTEST_CHECK(to_vector(crowdloss::nms(boxes.cuda(), scores.cuda(), 0.5)) ==
                to_vector(crowdloss::nms(boxes, scores, 0.5)));
  crowdloss::set_cuda_kernels_enabled(before);
}

TEST_CASE("nms and batched_nms: CPU/CUDA parity") {
  if (!crowdloss_test::cuda_or_skip("nms CPU/CUDA parity")) return;
  torch::manual_seed(11);
  const auto boxes = random_boxes(3000, torch::kFloat32), scores = torch::rand({3000});
  const auto classes = torch::randint(0, 5, {3000}, torch::kLong);
  const auto gpu = crowdloss::nms(boxes.cuda(), scores.cuda(), 0.5);
  DOCTEST_CHECK(gpu.is_cuda());
  DOCTEST_CHECK(torch::equal(gpu.cpu(), crowdloss::nms(boxes, scores, 0.5)));
  DOCTEST_CHECK(torch::equal(crowdloss::batched_nms(boxes.cuda(), scores.cuda(), classes.cuda(), 0.5).cpu(),
                             crowdloss::batched_nms(boxes, scores, classes, 0.5)));
}
