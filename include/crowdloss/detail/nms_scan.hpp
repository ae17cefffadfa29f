// The CPU NMS kernel's suppression pass (nms_cpu.hpp), written once and included by it once per
// instruction set (simd.hpp), each time into its own namespace with CROWDLOSS_SIMD_TARGET and
// CROWDLOSS_SIMD_BYTES defined. Hence no include guard and no library includes here (but
// simd_ops.hpp, written the same way): nms_cpu.hpp includes what this needs before it.

#include <crowdloss/detail/simd_ops.hpp>

/// A comparison's result as a lane mask of `I` (all ones where true): vectors already are one.
template <typename I, typename M>
CROWDLOSS_SIMD_TARGET inline M as_mask(M m) {
  return m;
}
template <typename I>
CROWDLOSS_SIMD_TARGET inline I as_mask(bool b) {
  return b ? I(-1) : I(0);
}

/// The box `k` (x1, y1, x2, y2, area) of the live list suppresses, among the live boxes [begin,
/// end), every box whose IoU with it is greater than `threshold`: their `dead` lane becomes all
/// ones. `threshold` is the largest T at most the caller's threshold, so that T's IoU compared
/// with it is the IoU compared with the caller's double (see nms_cpu.hpp). Arithmetic as
/// torchvision's CPU kernel, in T: w = max(0, min(x2ᵢ, x2ⱼ) − max(x1ᵢ, x1ⱼ)), likewise h,
/// inter = w·h, IoU = inter / ((areaᵢ + areaⱼ) − inter) — the product feeds both the quotient and
/// the difference, so no compiler fuses it into a multiply-add. The list is padded past `end` to
/// a whole vector with boxes that nothing suppresses (NaN). Returns how many boxes died here.
template <typename T, typename I>
CROWDLOSS_SIMD_TARGET inline int64_t nms_suppress(const T* const* live, I* dead, int64_t k, int64_t begin, int64_t end,
                                                  T threshold) {
  using V = typename Simd<T>::V;
  using M = typename Simd<I>::V;
  constexpr int64_t w = Simd<T>::size;
  const T *x1 = live[0], *y1 = live[1], *x2 = live[2], *y2 = live[3], *area = live[4];
  const V bx1 = broadcast(x1[k]), by1 = broadcast(y1[k]), bx2 = broadcast(x2[k]), by2 = broadcast(y2[k]);
  const V barea = broadcast(area[k]), thr = broadcast(threshold), zero = broadcast(T(0));
  M fresh{};
  for (int64_t j = begin; j < end; j += w) {
    // std::max(a, b) is (a < b) ? b : a, and std::min(a, b) is (b < a) ? b : a, as torchvision.
    const V lx = bx1 < load(x1 + j) ? load(x1 + j) : bx1, ly = by1 < load(y1 + j) ? load(y1 + j) : by1;
    const V rx = load(x2 + j) < bx2 ? load(x2 + j) : bx2, ry = load(y2 + j) < by2 ? load(y2 + j) : by2;
    const V dx = rx - lx, dy = ry - ly;
    const V iw = zero < dx ? dx : zero, ih = zero < dy ? dy : zero;
    const V inter = iw * ih;
    const V uni = (barea + load(area + j)) - inter;
    const M hit = as_mask<I>(inter / uni > thr);
    const M before = load(dead + j);
    fresh -= hit & ~before;  // hit is −1 where true: +1 per box that dies now
    store(dead + j, before | hit);
  }
  int64_t died = 0;
  for (int64_t l = 0; l < Simd<I>::size; ++l) died += static_cast<int64_t>(lane(fresh, l));
  return died;
}
