// Determinism: the same seed on the same device (and the same thread count) gives bit-identical
// losses, gradients and assignments, run after run. Each case draws its inputs from a seed, runs
// the whole computation twice from scratch and compares with torch::equal (exact), including a
// multi-threaded CPU run where the kernels split work across threads.

#include "support/checks.hpp"

#include <crowdloss/crowdloss.hpp>

#include <ATen/Parallel.h>

#include <functional>
#include <string>
#include <vector>

namespace {

/// Runs `compute` twice from the same seed; every tensor it returns must be identical.
void check_repeatable(const std::string& what, const std::function<std::vector<at::Tensor>()>& compute) {
  INFO(what << " with " << at::get_num_threads() << " thread(s)");
  torch::manual_seed(42);
  const auto first = compute();
  torch::manual_seed(42);
  const auto second = compute();
  REQUIRE(first.size() == second.size());
  for (size_t k = 0; k < first.size(); ++k) {
    INFO("output " << k);
    DOCTEST_CHECK(torch::equal(first[k], second[k]));
  }
}

/// A loss's value and its gradients with respect to both maps.
std::vector<at::Tensor> loss_and_gradients(
    const std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>& loss) {
  auto pred = torch::rand({4, 1, 96, 80}).requires_grad_(true);
  auto target = torch::rand({4, 1, 96, 80}).requires_grad_(true);
  const auto value = loss(pred, target);
  value.backward();
  return {value.detach(), pred.grad(), target.grad()};
}

void check_all() {
  check_repeatable("pml_loss", [] {
    return loss_and_gradients([](const at::Tensor& p, const at::Tensor& t) {
      return crowdloss::pml_loss(p, t, crowdloss::PMLLossOptions().grids({1, 2, 4, 8, 16}).pixel_mse_weight(1.0));
    });
  });
  check_repeatable("sanet_loss", [] {
    return loss_and_gradients([](const at::Tensor& p, const at::Tensor& t) { return crowdloss::sanet_loss(p, t); });
  });
  check_repeatable("ssim (same padding)", [] {
    return loss_and_gradients([](const at::Tensor& p, const at::Tensor& t) {
      return crowdloss::ssim(p, t, crowdloss::SSIMOptions().padding(crowdloss::kSame));
    });
  });
  check_repeatable("assignments", [] {
    const auto points = crowdloss::anchor_points({{40, 48}, {20, 24}, {10, 12}}, {8, 16, 32}, 0.5);
    const int64_t A = points.size(0), G = 30, K = 2;
    const auto xy = torch::rand({G, 2}) * torch::tensor({300.0, 250.0});
    const auto gt_boxes = torch::cat({xy, xy + torch::rand({G, 2}) * 60 + 8}, 1);
    const auto gt_classes = torch::randint(0, K, {G});
    const auto logits = torch::randn({A, K});
    const auto ltrb = torch::rand({A, 4}) * 40 + 1;
    const auto boxes = crowdloss::ltrb_to_boxes(points, ltrb);
    const auto [rows, cols] = crowdloss::linear_sum_assignment(torch::rand({G, A}).to(torch::kFloat64));
    return std::vector<at::Tensor>{
        crowdloss::poto_assign(logits.sigmoid(), boxes, points, gt_boxes, gt_classes),
        crowdloss::poto_aux_assign(logits.sigmoid(), boxes, points, gt_boxes, gt_classes,
                                   crowdloss::POTOAuxAssignOptions().level_sizes({40 * 48, 20 * 24, 10 * 12})),
        crowdloss::lla_assign(logits, ltrb, points, gt_boxes, gt_classes),
        crowdloss::fcos_assign(points, gt_boxes,
                               crowdloss::FCOSAssignOptions()
                                   .strides({8, 16, 32})
                                   .level_sizes({40 * 48, 20 * 24, 10 * 12})
                                   .size_bounds({64, 128})),
        crowdloss::nms(boxes, logits.select(1, 0).sigmoid(), 0.6),
        rows,
        cols};
  });
}

}  // namespace

TEST_CASE("determinism: the same seed gives identical losses, gradients and assignments") {
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  check_all();
  at::set_num_threads(2);
  check_all();
  at::set_num_threads(threads);
}
