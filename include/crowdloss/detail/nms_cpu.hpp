#pragma once
/// \file
/// The CPU kernel of `nms` and `batched_nms` (nms.hpp): torchvision's greedy scan and arithmetic.
/// - the boxes, sorted by score, are packed as columns (x1, y1, x2, y2, area) with a lane mask;
/// - each kept box marks the boxes it suppresses in one vectorised pass over the live rest
///   (nms_scan.hpp, compiled per instruction set as simd.hpp describes);
/// - the list is compacted once more than half of it is dead: the work is about (kept) × (live) IoUs;
/// - with classes, each class is scanned on its own (exact; fast with thousands of classes);
/// - CUDA runs nms_cuda.hpp's kernels where enabled, else the ATen path (nms_aten.hpp); the
///   parity tests hold this kernel to the ATen path and to torchvision's arithmetic.
/// Timings beside torchvision: docs/performance.md, "Non-maximum suppression, beside torchvision".

#include <crowdloss/detail/simd.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

namespace crowdloss {
namespace detail {

// The suppression pass, once per instruction set (simd.hpp).
namespace nms_baseline {
#define CROWDLOSS_SIMD_TARGET
#define CROWDLOSS_SIMD_BYTES CROWDLOSS_SIMD_BASELINE_BYTES
#include <crowdloss/detail/nms_scan.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
}  // namespace nms_baseline
#if defined(CROWDLOSS_SIMD_AVX2)
namespace nms_avx2 {
#define CROWDLOSS_SIMD_TARGET __attribute__((target("avx2,fma")))
#define CROWDLOSS_SIMD_BYTES 32
#include <crowdloss/detail/nms_scan.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
}  // namespace nms_avx2
#endif

/// The mask lane of a box: an integer as wide as T, all ones once the box is suppressed.
template <typename T>
using NmsLane = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

/// The greedy scan over one group of boxes (all of them, or one class), reusing its buffers from
/// group to group.
template <typename T>
class NmsScan {
 public:
  explicit NmsScan(int64_t capacity)
      : dead_(static_cast<size_t>(capacity + kPad)), member_(static_cast<size_t>(capacity + kPad)) {
    for (auto& c : columns_) c.resize(static_cast<size_t>(capacity + kPad));
    suppress_ = &nms_baseline::nms_suppress<T, NmsLane<T>>;
#if defined(CROWDLOSS_SIMD_AVX2)
    if (cpu_capability() == CpuCapability::avx2) suppress_ = &nms_avx2::nms_suppress<T, NmsLane<T>>;
#endif
  }

  /// Greedy NMS of the boxes `members[0…m)` of `boxes` (row-major ×4), given in decreasing score:
  /// appends the kept members to `keep`, in that order. `threshold` as nms_dispatch gives it.
  void run(const T* boxes, const int64_t* members, int64_t m, T threshold, std::vector<int64_t>& keep) {
    for (int64_t k = 0; k < m; ++k) {
      const T* b = boxes + 4 * members[k];
      for (int c = 0; c < 4; ++c) columns_[c][static_cast<size_t>(k)] = b[c];
      columns_[4][static_cast<size_t>(k)] = (b[2] - b[0]) * (b[3] - b[1]);
      dead_[static_cast<size_t>(k)] = 0;
      member_[static_cast<size_t>(k)] = members[k];
    }
    pad(m);
    const T* const live[5] = {columns_[0].data(), columns_[1].data(), columns_[2].data(), columns_[3].data(),
                              columns_[4].data()};
    int64_t head = 0, alive = m;  // alive: live boxes at head and after
    while (alive > 0) {
      while (dead_[static_cast<size_t>(head)] != 0) ++head;
      keep.push_back(member_[static_cast<size_t>(head)]);
      const int64_t k = head++;
      if (--alive == 0) break;
      alive -= suppress_(live, dead_.data(), k, head, m, threshold);
      if (m - head >= 2 * alive + kPad) {  // mostly dead: keep only the live boxes
        m = compact(head, m);
        pad(m);
      }
    }
  }

 private:
  // Slack after the list for whole-vector loads: NaN boxes, which nothing suppresses.
  static constexpr int64_t kPad = 64 / static_cast<int64_t>(sizeof(T));

  void pad(int64_t m) {
    for (auto& c : columns_) std::fill_n(c.begin() + m, kPad, std::numeric_limits<T>::quiet_NaN());
    std::fill_n(dead_.begin() + m, kPad, 0);
  }

  /// Moves the live boxes of [head, m) to the front of that range, in order; returns the new end.
  int64_t compact(int64_t head, int64_t m) {
    int64_t to = head;
    for (int64_t j = head; j < m; ++j) {
      if (dead_[static_cast<size_t>(j)] != 0) continue;
      for (auto& c : columns_) c[static_cast<size_t>(to)] = c[static_cast<size_t>(j)];
      member_[static_cast<size_t>(to)] = member_[static_cast<size_t>(j)];
      dead_[static_cast<size_t>(to)] = 0;
      ++to;
    }
    return to;
  }

  std::vector<T> columns_[5];
  std::vector<NmsLane<T>> dead_;
  std::vector<int64_t> member_;
  int64_t (*suppress_)(const T* const*, NmsLane<T>*, int64_t, int64_t, int64_t, T);
};

/// The CPU path of nms_dispatch: `sorted` (N×4, float or double) are the boxes in the order of
/// visit, `sorted_classes` their classes (integers, or undefined for one class), `threshold` a
/// value of sorted's dtype (see nms_dispatch). Returns the positions in that order of the kept
/// boxes, ascending.
inline std::vector<int64_t> nms_cpu(const at::Tensor& sorted, const at::Tensor& sorted_classes, double threshold) {
  const auto boxes = sorted.contiguous();
  const int64_t n = boxes.size(0);
  std::vector<int64_t> members(static_cast<size_t>(n)), keep;
  std::iota(members.begin(), members.end(), int64_t{0});
  // Groups of one class, each in the order of visit.
  std::vector<int64_t> group_end{n};
  if (sorted_classes.defined()) {
    const auto classes = sorted_classes.to(at::kLong).contiguous();
    const int64_t* c = classes.data_ptr<int64_t>();
    std::stable_sort(members.begin(), members.end(), [c](int64_t a, int64_t b) { return c[a] < c[b]; });
    group_end.clear();
    for (int64_t k = 1; k <= n; ++k)
      if (k == n || c[members[static_cast<size_t>(k)]] != c[members[static_cast<size_t>(k - 1)]])
        group_end.push_back(k);
  }
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms", [&] {
    NmsScan<scalar_t> scan(n);
    int64_t begin = 0;
    for (const int64_t end : group_end) {
      scan.run(boxes.data_ptr<scalar_t>(), members.data() + begin, end - begin, static_cast<scalar_t>(threshold), keep);
      begin = end;
    }
  });
  if (group_end.size() > 1) std::sort(keep.begin(), keep.end());
  return keep;
}

}  // namespace detail
}  // namespace crowdloss
