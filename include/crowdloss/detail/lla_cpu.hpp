#pragma once
/// \file
/// The CPU kernel of `lla_assign`: per gt, one pass over the anchors that keeps its `topk`
/// lowest costs, without the G×A cost matrix. The cost of a pair is the ATen path's expression
/// (lla_assign_aten in lla.hpp) in the same dtype (a compiler may fuse a multiply–add, and
/// std::log may differ from ATen's vectorised log in the last bit, so exact near-ties can fall
/// either way between the two). The IoU term is ≥ 0 (IoU ≤ 1 holds after rounding, every rounding
/// involved being monotonic; the kernel also clamps it, in case a fused multiply–add rounds
/// otherwise), so cls + penalty·outside is a lower bound of the cost, and a pair whose bound
/// cannot beat the gt's current k-th cost skips the IoU and its logarithm — which is most pairs
/// (the anchors outside the box). On CUDA the ATen path runs; a test holds the two to the same
/// assignments.

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace crowdloss {
namespace detail {

/// What the LLA kernel reads, all contiguous CPU data of dtype T: per anchor the all-negative
/// focal cost (A) and the positive − negative difference per class (A×K); the predicted ltrb
/// distances (A×4) and points (A×2); the gt boxes (G×4 xyxy) and their classes clamped to ≥ 0.
template <typename T>
struct LLAInputs {
  const T *cls_negative, *cls_difference, *box_ltrb, *points, *gt_boxes;
  const int64_t* classes;
  int64_t A, K, G, topk;
  T reg_cost, outside_penalty, inside_eps, iou_eps;
};

/// One gt's lowest-cost anchors, best first; a later anchor enters only with a strictly lower
/// cost than the k-th (so equal costs keep the lower anchor index), NaN ranking last.
template <typename T>
class LLATopK {
 public:
  explicit LLATopK(int64_t k) : k_(static_cast<size_t>(k)) { items_.reserve(k_ + 1); }
  bool full() const { return items_.size() == k_; }
  T worst() const { return items_.back().first; }
  void offer(T cost, int64_t anchor) {
    if (full() && !before(cost, worst())) return;
    auto it = std::upper_bound(items_.begin(), items_.end(), cost,
                               [](T c, const std::pair<T, int64_t>& item) { return before(c, item.first); });
    items_.insert(it, {cost, anchor});
    if (items_.size() > k_) items_.pop_back();
  }
  const std::vector<std::pair<T, int64_t>>& items() const { return items_; }

 private:
  static bool before(T a, T b) { return a < b || (!std::isnan(a) && std::isnan(b)); }
  size_t k_;
  std::vector<std::pair<T, int64_t>> items_;
};

/// LLA's cost of gt g at anchor a into `cost`, as the ATen path (lla_assign_aten) computes it in
/// dtype T; with `have_bound`, only when its lower bound is below `bound` (returns whether it did).
template <typename T>
bool lla_pair_cost(const LLAInputs<T>& in, int64_t g, int64_t a, bool have_bound, T bound, T& cost) {
  const T* box = in.gt_boxes + g * 4;
  const T px = in.points[a * 2], py = in.points[a * 2 + 1];
  const T t[4] = {px - box[0], py - box[1], box[2] - px, box[3] - py};
  const bool inside = std::min(std::min(t[0], t[1]), std::min(t[2], t[3])) > in.inside_eps;
  const T cls = in.cls_negative[a] + in.cls_difference[a * in.K + in.classes[g]];
  const T penalty = inside ? T(0) : in.outside_penalty;
  if (have_bound && !(cls + penalty < bound)) return false;  // the IoU term only adds (≥ 0)
  const T* p = in.box_ltrb + a * 4;
  const auto clamp0 = [](T v) { return std::max(v, T(0)); };
  const T pred_area = clamp0(p[2] + p[0]) * clamp0(p[3] + p[1]);
  const T target_area = clamp0(t[2] + t[0]) * clamp0(t[3] + t[1]);
  const T w = clamp0(std::min(p[2], t[2]) + std::min(p[0], t[0]));
  const T h = clamp0(std::min(p[3], t[3]) + std::min(p[1], t[1]));
  const T inter = w * h;
  const T iou = inter / std::max(target_area + pred_area - inter, in.iou_eps);
  const T reg = std::max(-std::log(std::max(iou, in.iou_eps)), T(0));  // ≥ 0 (see the file comment); NaN stays
  cost = (cls + in.reg_cost * reg) + penalty;
  return true;
}

/// LLA's assignment (see `lla_assign`) on the CPU: A int64, −1 = background.
template <typename T>
at::Tensor lla_assign_kernel(const LLAInputs<T>& in) {
  const int64_t G = in.G, A = in.A, k = std::min(in.topk, A);
  // Each gt's candidates: k (anchor, cost) pairs, best first.
  std::vector<std::vector<std::pair<T, int64_t>>> candidates(static_cast<size_t>(G));
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      LLATopK<T> top(k);
      for (int64_t a = 0; a < A; ++a) {
        const bool bounded = top.full() && !std::isnan(top.worst());  // a NaN k-th yields to any number
        T cost;
        if (lla_pair_cost(in, g, a, bounded, bounded ? top.worst() : T(0), cost)) top.offer(cost, a);
      }
      candidates[static_cast<size_t>(g)] = top.items();
    }
  });
  // An anchor several gts take goes to the lowest cost, the lower gt on ties (NaN wins, as in
  // a min that propagates it); an anchor whose best cost is +inf stays background.
  at::Tensor assigned = at::full({A}, -1, at::TensorOptions(at::kLong));
  int64_t* out = assigned.data_ptr<int64_t>();
  std::vector<T> best(static_cast<size_t>(A), std::numeric_limits<T>::infinity());
  for (int64_t g = 0; g < G; ++g) {
    for (const auto& [cost, a] : candidates[static_cast<size_t>(g)]) {
      T& b = best[static_cast<size_t>(a)];
      const bool better = out[a] < 0 ? true : (std::isnan(cost) && !std::isnan(b)) || cost < b;
      if (better) b = cost, out[a] = g;
    }
  }
  for (int64_t a = 0; a < A; ++a)
    if (out[a] >= 0 && best[static_cast<size_t>(a)] == std::numeric_limits<T>::infinity()) out[a] = -1;
  return assigned;
}

}  // namespace detail
}  // namespace crowdloss
