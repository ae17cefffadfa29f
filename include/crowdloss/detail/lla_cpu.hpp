#pragma once
/// \file
/// The CPU kernel of `lla_assign`: per gt, a search of the anchors that keeps its `topk` lowest
/// costs, without the G×A cost matrix.
/// - a pair's cost is the ATen path's expression (lla_aten.hpp) in the same dtype; exact near-ties
///   may fall either way between the two (fused multiply–adds, ATen's vectorised log);
/// - the IoU term is ≥ 0 (clamped), so cls + penalty·outside bounds the cost from below: a pair
///   whose bound cannot beat the gt's k-th cost skips the IoU and its logarithm;
/// - each gt visits the anchors strictly inside its box first, then the others only while the
///   least outside cost can still beat its k-th;
/// - the top k is ordered by (cost, anchor), so the visiting order does not change it;
/// - CUDA runs the ATen path; a test holds the two to the same assignments.
/// The argument and the timings: docs/performance.md, "Batch assignment".

#include <crowdloss/detail/lla_aten.hpp>
#include <crowdloss/detail/spatial_prior.hpp>

#include <ATen/Dispatch.h>
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

/// One gt's k lowest-cost anchors, best first, in the order of (cost, anchor index) with NaN
/// ranking last: equal costs keep the lower anchor index, whatever order anchors are offered in.
template <typename T>
class LLATopK {
 public:
  using Item = std::pair<T, int64_t>;
  explicit LLATopK(int64_t k) : k_(static_cast<size_t>(k)) { items_.reserve(k_ + 1); }
  bool full() const { return items_.size() == k_; }
  T worst() const { return items_.back().first; }
  void offer(T cost, int64_t anchor) {
    const Item item{cost, anchor};
    if (full() && !before(item, items_.back())) return;
    items_.insert(std::upper_bound(items_.begin(), items_.end(), item, before), item);
    if (items_.size() > k_) items_.pop_back();
  }
  const std::vector<Item>& items() const { return items_; }

 private:
  static bool before(const Item& a, const Item& b) {
    const bool a_nan = std::isnan(a.first), b_nan = std::isnan(b.first);
    if (a_nan != b_nan) return b_nan;
    if (!a_nan && a.first != b.first) return a.first < b.first;
    return a.second < b.second;
  }
  size_t k_;
  std::vector<Item> items_;
};

/// What every pair (gt g, anchor a) needs before its IoU: the point's distances to the box's
/// sides (l, t, r, b), the class cost, and the outside penalty; cls + penalty is a lower bound of
/// the pair's cost.
template <typename T>
struct LLAPair {
  T t[4];
  T cls, penalty;
};

template <typename T>
inline LLAPair<T> lla_pair(const LLAInputs<T>& in, int64_t g, int64_t a) {
  const T* box = in.gt_boxes + g * 4;
  const T px = in.points[a * 2], py = in.points[a * 2 + 1];
  LLAPair<T> pair{{px - box[0], py - box[1], box[2] - px, box[3] - py}, T(0), T(0)};
  const T* t = pair.t;
  const bool inside = std::min(std::min(t[0], t[1]), std::min(t[2], t[3])) > in.inside_eps;
  pair.cls = in.cls_negative[a] + in.cls_difference[a * in.K + in.classes[g]];
  pair.penalty = inside ? T(0) : in.outside_penalty;
  return pair;
}

/// LLA's cost of the pair at anchor a, as the ATen path (lla_assign_aten) computes it in dtype T.
template <typename T>
T lla_pair_cost(const LLAInputs<T>& in, const LLAPair<T>& pair, int64_t a) {
  const T* t = pair.t;
  const T* p = in.box_ltrb + a * 4;
  const auto clamp0 = [](T v) { return std::max(v, T(0)); };
  const T pred_area = clamp0(p[2] + p[0]) * clamp0(p[3] + p[1]);
  const T target_area = clamp0(t[2] + t[0]) * clamp0(t[3] + t[1]);
  const T w = clamp0(std::min(p[2], t[2]) + std::min(p[0], t[0]));
  const T h = clamp0(std::min(p[3], t[3]) + std::min(p[1], t[1]));
  const T inter = w * h;
  const T iou = inter / std::max(target_area + pred_area - inter, in.iou_eps);
  const T reg = std::max(-std::log(std::max(iou, in.iou_eps)), T(0));  // ≥ 0 (see the file comment); NaN stays
  return (pair.cls + in.reg_cost * reg) + pair.penalty;
}

/// LLA's assignment (see `lla_assign`) on the CPU: A int64, −1 = background. `inside`, when
/// given (it needs inside_eps ≥ 0), lists per gt the anchors strictly inside its box
/// (inside_pairs_cpu): a superset of those inside by more than inside_eps, so every other
/// anchor pays the outside penalty (or, with a NaN coordinate, which std::min may drop from the
/// inside test, has a NaN cost, which cannot enter a top k whose k-th cost is a number).
template <typename T>
at::Tensor lla_assign_kernel(const LLAInputs<T>& in, const std::vector<std::vector<int64_t>>* inside) {
  const int64_t G = in.G, A = in.A, K = in.K, k = std::min(in.topk, A);
  // Per class, the lowest class cost of any anchor (NaN aside): with the penalty, a lower bound of
  // every outside pair's cost.
  std::vector<T> lowest_cls(static_cast<size_t>(K), std::numeric_limits<T>::infinity());
  for (int64_t a = 0; a < A; ++a)
    for (int64_t c = 0; c < K; ++c) {
      const T cls = in.cls_negative[a] + in.cls_difference[a * K + c];
      if (cls < lowest_cls[static_cast<size_t>(c)]) lowest_cls[static_cast<size_t>(c)] = cls;
    }
  // Each gt's candidates: k (anchor, cost) pairs, best first.
  std::vector<std::vector<std::pair<T, int64_t>>> candidates(static_cast<size_t>(G));
  at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> visited(inside ? static_cast<size_t>(A) : 0, -1);  // the gt that visited an anchor first
    for (int64_t g = begin; g < end; ++g) {
      LLATopK<T> top(k);
      const auto visit = [&](int64_t a) {
        const auto pair = lla_pair(in, g, a);
        // The IoU term only adds (≥ 0); a NaN k-th yields to any number.
        if (top.full() && !std::isnan(top.worst()) && !(pair.cls + pair.penalty <= top.worst())) return;
        top.offer(lla_pair_cost(in, pair, a), a);
      };
      if (inside) {
        for (const int64_t a : (*inside)[static_cast<size_t>(g)]) {
          visit(a);
          visited[static_cast<size_t>(a)] = g;
        }
        const T outside_bound = lowest_cls[static_cast<size_t>(in.classes[g])] + in.outside_penalty;
        if (top.full() && !std::isnan(top.worst()) && outside_bound > top.worst()) {
          candidates[static_cast<size_t>(g)] = top.items();
          continue;
        }
      }
      for (int64_t a = 0; a < A; ++a)
        if (!inside || visited[static_cast<size_t>(a)] != g) visit(a);
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

/// `lla_assign` with the CPU kernel (detail/lla_cpu.hpp), float32 or float64 inputs.
inline at::Tensor lla_assign_cpu(const at::Tensor& cls_logits, const at::Tensor& box_ltrb, const at::Tensor& points,
                                 const at::Tensor& gt_boxes, const at::Tensor& gt_classes, const LLACost& o) {
  const auto costs = lla_class_costs(cls_logits, o);
  const auto negative = costs.first.contiguous(), difference = costs.second.contiguous();
  const auto ltrb = box_ltrb.contiguous(), pts = points.contiguous(), boxes = gt_boxes.contiguous();
  const auto classes = gt_classes.clamp_min(0).contiguous();
  std::vector<std::vector<int64_t>> inside(static_cast<size_t>(gt_boxes.size(0)));
  if (o.inside_eps >= 0) inside_pairs_cpu(pts, boxes, 0, inside);
  at::Tensor assigned;
  AT_DISPATCH_FLOATING_TYPES(cls_logits.scalar_type(), "lla_assign", [&] {
    const LLAInputs<scalar_t> in{negative.data_ptr<scalar_t>(),
                                 difference.data_ptr<scalar_t>(),
                                 ltrb.data_ptr<scalar_t>(),
                                 pts.data_ptr<scalar_t>(),
                                 boxes.data_ptr<scalar_t>(),
                                 classes.data_ptr<int64_t>(),
                                 cls_logits.size(0),
                                 cls_logits.size(1),
                                 gt_boxes.size(0),
                                 o.topk,
                                 static_cast<scalar_t>(o.reg_cost),
                                 static_cast<scalar_t>(o.outside_penalty),
                                 static_cast<scalar_t>(o.inside_eps),
                                 static_cast<scalar_t>(kIoUEps)};
    assigned = lla_assign_kernel(in, o.inside_eps >= 0 ? &inside : nullptr);
  });
  return assigned;
}

}  // namespace detail
}  // namespace crowdloss
