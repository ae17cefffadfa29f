// The rows of SSIM's CPU kernel (ssim_cpu.hpp), written once and included by it once per
// instruction set (simd.hpp), each time into its own namespace with CROWDLOSS_SIMD_TARGET,
// CROWDLOSS_SIMD_BYTES and CROWDLOSS_SIMD_SHUFFLES defined. Hence no include guard and no
// library includes here (but simd_ops.hpp, written the same way): ssim_cpu.hpp includes what this
// needs before it.
//
// The filters read their taps through an accessor (row pointers for the pass across rows, with
// zero rows standing in for padding; shifts of one row for the pass along it), keep blocks of
// outputs in SIMD registers over all taps, and fold the symmetric window's mirrored taps into one
// multiply. The default 11-tap window is unrolled at compile time; two output rows share the
// loads of the pass across rows, and the pass along a row builds its shifted taps from aligned
// loads. Each path sums in the same order, but a compiler may fuse multiply–adds differently in
// each, so which path computes an output is fixed by its position alone (rows in pairs (2m,
// 2m + 1), below), never by how the rows are split among threads.

#include <crowdloss/detail/simd_ops.hpp>

/// Taps that are rows: tap k is rows[k].
template <typename T>
struct RowTaps {
  const T* const* rows;
  const T* operator()(int64_t k) const { return rows[k]; }
};

/// Taps that are shifts of one row: tap k starts k elements in.
template <typename T>
struct ShiftTaps {
  const T* row;
  const T* operator()(int64_t k) const { return row + k; }
};

/// acc[i] += w·(p + q) for the Count vectors from p and q, two taps that the symmetric window
/// weighs alike.
template <int Count, typename T>
CROWDLOSS_SIMD_TARGET inline void add_mirrored_taps(typename Simd<T>::V* acc, T w, const T* p, const T* q) {
  constexpr int64_t v = Simd<T>::size;
  const auto wk = broadcast(w);
  CROWDLOSS_UNROLL
  for (int i = 0; i < Count; ++i) acc[i] += wk * (load(p + i * v) + load(q + i * v));
}

/// Count vectors of outputs from position j: out[j…] = Σ_k w[k]·tap(k)[j…] over the symmetric
/// window of 2h + 1 taps (Half ≥ 0: h = Half, known at compile time, the taps unrolled).
template <int Half, int Count, typename T, typename Taps>
CROWDLOSS_SIMD_TARGET inline void filter_block(const Taps& tap, const T* w, int64_t h, int64_t j, T* out) {
  using V = typename Simd<T>::V;
  constexpr int64_t v = Simd<T>::size;
  const int64_t half = Half >= 0 ? Half : h;
  V acc[static_cast<size_t>(Count)];
  const V wc = broadcast(w[half]);
  const T* c = tap(half) + j;
  CROWDLOSS_UNROLL
  for (int i = 0; i < Count; ++i) acc[i] = wc * load(c + i * v);
  if constexpr (Half >= 0) {
    CROWDLOSS_UNROLL
    for (int k = 0; k < Half; ++k) add_mirrored_taps<Count>(acc, w[k], tap(k) + j, tap(2 * Half - k) + j);
  } else {
    for (int64_t k = 0; k < h; ++k) add_mirrored_taps<Count>(acc, w[k], tap(k) + j, tap(2 * h - k) + j);
  }
  CROWDLOSS_UNROLL
  for (int i = 0; i < Count; ++i) store(out + j + i * v, acc[i]);
}

/// out[j] = Σ_k w[k]·tap(k)[j] for j < n, w symmetric of `taps` taps (odd). Blocks of four
/// vectors, then single vectors, the last one overlapping its predecessor; scalars only when n is
/// narrower than a vector.
template <int Half, typename T, typename Taps>
CROWDLOSS_SIMD_TARGET inline void filter_with(const Taps& tap, const T* w, int64_t taps, int64_t n, T* out) {
  constexpr int64_t v = Simd<T>::size;
  const int64_t h = taps / 2;
  int64_t j = 0;
  for (; j + 4 * v <= n; j += 4 * v) filter_block<Half, 4>(tap, w, h, j, out);
  for (; j + v <= n; j += v) filter_block<Half, 1>(tap, w, h, j, out);
  if (j < n && n >= v) {
    filter_block<Half, 1>(tap, w, h, n - v, out);
    return;
  }
  for (; j < n; ++j) {
    T acc = w[h] * tap(h)[j];
    for (int64_t k = 0; k < h; ++k) acc += w[k] * (tap(k)[j] + tap(taps - 1 - k)[j]);
    out[j] = acc;
  }
}

template <typename T, typename Taps>
CROWDLOSS_SIMD_TARGET inline void filter(const Taps& tap, const T* w, int64_t taps, int64_t n, T* out) {
  if (taps == 11)
    filter_with<5>(tap, w, taps, n, out);
  else
    filter_with<-1>(tap, w, taps, n, out);
}

#if CROWDLOSS_SIMD_BYTES > 0 && CROWDLOSS_SIMD_SHUFFLES
/// Lanes S … S + v − 1 of the concatenation a‖b.
template <int S, typename V, size_t... I>
CROWDLOSS_SIMD_TARGET inline V lanes_from(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, (S + static_cast<int>(I))...);
}

/// Taps K … K + v − 1 from the consecutive aligned vectors b[0], b[1], ….
template <int K, typename T>
CROWDLOSS_SIMD_TARGET inline typename Simd<T>::V tap_vector(const typename Simd<T>::V* b) {
  constexpr int v = static_cast<int>(Simd<T>::size);
  if constexpr (K % v == 0)
    return b[K / v];
  else
    return lanes_from<K % v>(b[K / v], b[K / v + 1], std::make_index_sequence<static_cast<size_t>(v)>{});
}

/// One output vector from the aligned vectors b of its taps, summed in filter_block's order.
template <int Half, typename T, int... K>
CROWDLOSS_SIMD_TARGET inline typename Simd<T>::V along_vector(const typename Simd<T>::V* b,
                                                              const typename Simd<T>::V* wv,
                                                              std::integer_sequence<int, K...>) {
  auto acc = wv[Half] * tap_vector<Half, T>(b);
  ((acc += wv[K] * (tap_vector<K, T>(b) + tap_vector<2 * Half - K, T>(b))), ...);
  return acc;
}
#endif

/// The pass along a row: out[j] = Σ_k w[k]·base[j + k] for j < n, `base` the row's first tap
/// (an AlignedRows row's first margin element). With the default window the shifted taps are
/// built from aligned loads by lane shuffles — unaligned loads that straddle cache lines cost
/// about twice as much — summed in `filter`'s order (a compiler's fused multiply–adds aside);
/// which path computes an output depends only on its column and n.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void filter_along(const T* base, const T* w, int64_t taps, int64_t n, T* out) {
#if CROWDLOSS_SIMD_BYTES > 0 && CROWDLOSS_SIMD_SHUFFLES
  constexpr int Half = 5, v = static_cast<int>(Simd<T>::size), blocks = (2 * Half + v - 1) / v + 1;
  using V = typename Simd<T>::V;
  if (taps == 2 * Half + 1 && n >= v) {
    V wv[Half + 1];
    CROWDLOSS_UNROLL
    for (int k = 0; k <= Half; ++k) wv[k] = broadcast(w[k]);
    int64_t j = 0;
    for (; j + v <= n; j += v) {
      V b[static_cast<size_t>(blocks)];
      CROWDLOSS_UNROLL
      for (int i = 0; i < blocks; ++i) b[i] = load(base + j + i * v);
      store(out + j, along_vector<Half, T>(b, wv, std::make_integer_sequence<int, Half>{}));
    }
    if (j < n) filter_block<Half, 1>(ShiftTaps<T>{base}, w, Half, n - v, out);
    return;
  }
#endif
  filter(ShiftTaps<T>{base}, w, taps, n, out);
}

/// Count vectors from position j of two consecutive outputs across rows: out0 from rows[0…2h],
/// out1 from rows[1…2h + 1] (h = Half), the shared rows read once. Each output is summed in the
/// same order as filter_block's.
template <int Half, int Count, typename T>
CROWDLOSS_SIMD_TARGET inline void filter_pair_block(const T* const* rows, const T* w, int64_t j, T* out0, T* out1) {
  using V = typename Simd<T>::V;
  constexpr int64_t v = Simd<T>::size;
  const V wc = broadcast(w[Half]);
  CROWDLOSS_UNROLL
  for (int i = 0; i < Count; ++i) {
    V x[static_cast<size_t>(2 * Half + 2)];
    CROWDLOSS_UNROLL
    for (int k = 0; k < 2 * Half + 2; ++k) x[k] = load(rows[k] + j + i * v);
    V a0 = wc * x[Half], a1 = wc * x[Half + 1];
    CROWDLOSS_UNROLL
    for (int k = 0; k < Half; ++k) {
      const V wk = broadcast(w[k]);
      a0 += wk * (x[k] + x[2 * Half - k]);
      a1 += wk * (x[k + 1] + x[2 * Half + 1 - k]);
    }
    store(out0 + j + i * v, a0);
    store(out1 + j + i * v, a1);
  }
}

/// Two consecutive output rows across rows: out0 from rows[0…taps − 1], out1 from rows[1…taps]
/// (the default window shares the loads; others filter twice). Summed as `filter` sums.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void filter_pair(const T* const* rows, const T* w, int64_t taps, int64_t n, T* out0,
                                              T* out1) {
  constexpr int64_t v = Simd<T>::size;
  if (taps != 11 || n < v) {
    filter(RowTaps<T>{rows}, w, taps, n, out0);
    filter(RowTaps<T>{rows + 1}, w, taps, n, out1);
    return;
  }
  int64_t j = 0;
  for (; j + 2 * v <= n; j += 2 * v) filter_pair_block<5, 2>(rows, w, j, out0, out1);
  for (; j + v <= n; j += v) filter_pair_block<5, 1>(rows, w, j, out0, out1);
  if (j < n) filter_pair_block<5, 1>(rows, w, n - v, out0, out1);
}

/// The `count` row pointers for the taps of a window whose first row is r0 in a plane of H rows
/// of width W (`zeros`, at least W zeros, for the rows outside).
template <typename T>
inline void tap_rows(const T* plane, int64_t H, int64_t W, int64_t r0, const T* zeros, int64_t count, const T** rows) {
  for (int64_t k = 0; k < count; ++k) {
    const int64_t r = r0 + k;
    rows[k] = r >= 0 && r < H ? plane + r * W : zeros;
  }
}

// The element-wise rows below step through their row in vectors, the last step partial
// (load_n), rather than leave the loops to the compiler's vectoriser: a header-only library runs
// at its user's -O level, and GCC 12 vectorises none of them at -O2.

/// The products one input row contributes to the moments: sq = a² + b², xy = a·b.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void products(const T* __restrict a, const T* __restrict b, int64_t W, T* __restrict sq,
                                           T* __restrict xy) {
  constexpr int64_t v = Simd<T>::size;
  for (int64_t c = 0; c < W; c += v) {
    const int64_t m = std::min(v, W - c);
    const auto x = load_n(a + c, m), y = load_n(b + c, m);
    store_n(sq + c, x * x + y * y, m);
    store_n(xy + c, x * y, m);
  }
}

/// SSIM from the four filtered moments at n positions, and with `grad` its derivatives with
/// respect to them (ssim_cpu.hpp's formulas).
template <bool grad, typename T>
CROWDLOSS_SIMD_TARGET inline void pointwise(const T* __restrict mx, const T* __restrict my, const T* __restrict m2,
                                            const T* __restrict mxy, int64_t n, T C1, T C2, T* __restrict out,
                                            T* __restrict d_mx, T* __restrict d_my, T* __restrict d_m2,
                                            T* __restrict d_mxy) {
  using V = typename Simd<T>::V;
  constexpr int64_t v = Simd<T>::size;
  for (int64_t j = 0; j < n; j += v) {
    const int64_t m = std::min(v, n - j);
    const V x = load_n(mx + j, m), y = load_n(my + j, m), sq = load_n(m2 + j, m), xy = load_n(mxy + j, m);
    const V a1 = T(2) * x * y + C1, b1 = x * x + y * y + C1;
    const V a2 = T(2) * (xy - x * y) + C2, b2 = sq - (x * x + y * y) + C2;
    // Each quotient on its own (|A1/B1|, |A2/B2| ≤ 1): B1·B2 would overflow float32 for values
    // beyond ±2^32. An overflowed B turns the value into NaN, never into a finite wrong one.
    const V r1 = T(1) / b1, r2 = T(1) / b2, l = a1 * r1, c = a2 * r2;
    const V guard = b1 + b2, s = l * c + (guard - guard);  // + 0, or NaN where a B is inf or NaN
    store_n(out + j, s, m);
    if constexpr (grad) {
      const V p = T(2) * (c * r1 - l * r2), q = T(2) * s * (r2 - r1);  // P = 2(A2 − A1)/D
      store_n(d_mx + j, y * p + x * q, m);
      store_n(d_my + j, x * p + y * q, m);
      store_n(d_m2 + j, -s * r2, m);
      store_n(d_mxy + j, T(2) * l * r2, m);
    }
  }
}

/// What row_sum adds up: the values, or the squared differences of two rows.
enum class RowSum { Sum, SquaredError };

#if CROWDLOSS_SIMD_BYTES > 0 && CROWDLOSS_SIMD_SHUFFLES
/// Lanes Offset … Offset + |I| − 1 of e, as a vector of that many lanes.
template <int Offset, typename V, size_t... I>
CROWDLOSS_SIMD_TARGET inline auto half_lanes(V e, std::index_sequence<I...>) {
  return __builtin_shufflevector(e, e, (Offset + static_cast<int>(I))...);
}
#endif

/// Σ op(x[j], y[j]) over n values accumulated in double: op(a, b) = a (Sum) or (a − b)² with the
/// difference taken in T (SquaredError). In double lanes where the instruction set has the
/// shuffles to widen floats, then in four partial sums (sum4_indexed).
template <RowSum op, typename T>
CROWDLOSS_SIMD_TARGET inline double row_sum(const T* x, const T* y, int64_t n) {
  int64_t j = 0;
  double total = 0;
#if CROWDLOSS_SIMD_BYTES > 0 && CROWDLOSS_SIMD_SHUFFLES
  using V = typename Simd<T>::V;
  typedef double Wide __attribute__((vector_size(CROWDLOSS_SIMD_BYTES)));
  constexpr int64_t v = Simd<T>::size;
  Wide lo = Wide{}, hi = Wide{};
  for (; j + v <= n; j += v) {
    const V e = op == RowSum::Sum ? load(x + j) : load(x + j) - load(y + j);
    if constexpr (sizeof(T) == sizeof(double)) {
      lo += op == RowSum::Sum ? e : e * e;
    } else {  // widen each half of the float lanes
      const Wide a =
          __builtin_convertvector(half_lanes<0>(e, std::make_index_sequence<static_cast<size_t>(v / 2)>{}), Wide);
      const Wide b =
          __builtin_convertvector(half_lanes<v / 2>(e, std::make_index_sequence<static_cast<size_t>(v / 2)>{}), Wide);
      lo += op == RowSum::Sum ? a : a * a;
      hi += op == RowSum::Sum ? b : b * b;
    }
  }
  for (int64_t i = 0; i < static_cast<int64_t>(sizeof(Wide) / sizeof(double)); ++i) total += lo[i] + hi[i];
#endif
  return total + sum4_indexed(n - j, [&](int64_t i) {
           const double e = op == RowSum::Sum ? static_cast<double>(x[j + i])
                                              : static_cast<double>(static_cast<T>(x[j + i] - y[j + i]));
           return op == RowSum::Sum ? e : e * e;
         });
}

/// Σ (a − b)² over each row of width W in [begin, end), into sums[row]: the SANet loss's pixel term.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void squared_error_rows(const T* a, const T* b, int64_t W, int64_t begin, int64_t end,
                                                     double* sums) {
  for (int64_t r = begin; r < end; ++r) sums[r] = row_sum<RowSum::SquaredError>(a + r * W, b + r * W, W);
}

/// One row of an input's unscaled SSIM gradient: out = f_mu + 2·own·f_m2 + other·f_mxy, the f
/// the derivative maps filtered back.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void gradient_row(const T* __restrict f_mu, const T* __restrict f_m2,
                                               const T* __restrict f_mxy, const T* __restrict own,
                                               const T* __restrict other, int64_t W, T* __restrict out) {
  constexpr int64_t v = Simd<T>::size;
  for (int64_t c = 0; c < W; c += v) {
    const int64_t m = std::min(v, W - c);
    store_n(out + c,
            load_n(f_mu + c, m) + T(2) * load_n(own + c, m) * load_n(f_m2 + c, m) +
                load_n(other + c, m) * load_n(f_mxy + c, m),
            m);
  }
}

/// The backward's scaling of n values of an input's unscaled gradient map g: out = s·g + e·(own −
/// other), or s·g where e = 0 (no squared-error term).
template <typename T>
CROWDLOSS_SIMD_TARGET inline void scale_gradient(const T* __restrict g, const T* __restrict own,
                                                 const T* __restrict other, T s, T e, int64_t n, T* __restrict out) {
  constexpr int64_t v = Simd<T>::size;
  const auto sv = broadcast(s), ev = broadcast(e);
  for (int64_t j = 0; j < n; j += v) {
    const int64_t m = std::min(v, n - j);
    if (e == 0)
      store_n(out + j, sv * load_n(g + j, m), m);
    else
      store_n(out + j, sv * load_n(g + j, m) + ev * (load_n(own + j, m) - load_n(other + j, m)), m);
  }
}

/// The kernel's row pipeline over one thread's rows: input rows → their products (each computed
/// once, in a ring) → the four moments of SSIM rows (across rows, then along them) → SSIM and its
/// derivatives (kept in a ring of the last rows) → filtered back through the window's adjoint →
/// rows of the unscaled gradient maps. All buffers are a few rows long.
template <typename T>
class Pipeline {
 public:
  explicit Pipeline(const SSIMForwardArgs<T>& a)
      : a_(a), n_(a.taps), span_(a.taps + 1), ring_(a.taps + 2), apad_(a.taps - 1 - a.pad),
        slots_(a.need_x() || a.need_y() ? 2 + a.need_x() + a.need_y() : 0), d_mx_(a.need_x() ? int64_t{kDMeanX} : -1),
        d_my_(a.need_y() ? kDMeanX + a.need_x() : -1), across_(8, a.W, a.pad),
        along_(kAlongRows, std::max(a.W, a.Wo), 0), products_(2 * span_, a.W, 0), derivs_(slots_ * ring_, a.Wo, 0),
        back_(2 * slots_, a.Wo, apad_), product_row_(static_cast<size_t>(span_), -1),
        taps_(static_cast<size_t>(4 * span_)) {}

  /// SSIM rows i (and i + 1 when rows = 2) of `plane`: each row's sum into sums[], and with
  /// gradients, its derivative rows into their ring (slot i mod (n + 2)).
  CROWDLOSS_SIMD_TARGET void ssim_rows(int64_t plane, int64_t i, int64_t rows, double* sums) {
    const int64_t n = n_, pad = a_.pad, H = a_.H, W = a_.W, Wo = a_.Wo;
    const T* zeros = along_[kZeroRow];
    const T* xs = a_.x + plane * H * W;
    const T* ys = a_.y + plane * H * W;
    const T **xr = taps(0), **yr = taps(1), **sqr = taps(2), **xyr = taps(3);
    int64_t* product_row = product_row_.data();
    tap_rows(xs, H, W, i - pad, zeros, span_, xr);
    tap_rows(ys, H, W, i - pad, zeros, span_, yr);
    for (int64_t k = 0; k < n + rows - 1; ++k) {
      const int64_t r = i - pad + k, slot = (r % span_ + span_) % span_;
      if (xr[k] == zeros) {  // outside the plane (tap_rows decided)
        sqr[k] = xyr[k] = zeros;
        continue;
      }
      if (product_row[slot] != plane * H + r) {
        products(xs + r * W, ys + r * W, W, products_[slot], products_[span_ + slot]);
        product_row[slot] = plane * H + r;
      }
      sqr[k] = products_[slot];
      xyr[k] = products_[span_ + slot];
    }
    // across_[4·row + q]: moment q of each row filtered across rows, zero margins for the pass along.
    for (int q = 0; q < 4; ++q) {
      if (rows == 2)
        filter_pair(taps(q), a_.window, n, W, across_[q], across_[4 + q]);
      else
        filter(RowTaps<T>{taps(q)}, a_.window, n, W, across_[q]);
    }
    T* m[4] = {along_[kMoment], along_[kMoment + 1], along_[kMoment + 2], along_[kMoment + 3]};  // μx μy E[x²+y²] E[xy]
    T* ssim = along_[kSSIMRow];
    T* scratch = along_[kScratchRow];
    for (int64_t r = 0; r < rows; ++r) {
      for (int q = 0; q < 4; ++q) filter_along(across_[4 * r + q] - pad, a_.window, n, Wo, m[q]);
      if (slots_) {
        const int64_t slot = (i + r) % ring_;
        const auto deriv = [&](int64_t map) { return map < 0 ? scratch : derivs_[map * ring_ + slot]; };
        pointwise<true>(m[0], m[1], m[2], m[3], Wo, a_.C1, a_.C2, ssim, deriv(d_mx_), deriv(d_my_), deriv(kDSquares),
                        deriv(kDProduct));
      } else {
        pointwise<false, T>(m[0], m[1], m[2], m[3], Wo, a_.C1, a_.C2, ssim, nullptr, nullptr, nullptr, nullptr);
      }
      sums[r] = row_sum<RowSum::Sum, T>(ssim, nullptr, Wo);
    }
  }

  /// Rows r (and r + 1 when rows = 2) of `plane`'s unscaled gradient maps, from the derivative
  /// rows r − apad … r + rows − 1 + pad in the ring (those inside the map; zeros stand for the
  /// others), apad = n − 1 − pad the adjoint's padding; only rows in [first, last) are written.
  CROWDLOSS_SIMD_TARGET void gradient_rows(int64_t plane, int64_t r, int64_t rows, int64_t first, int64_t last) {
    const int64_t n = n_, H = a_.H, W = a_.W, Ho = a_.Ho, Wo = a_.Wo;
    const T* zeros = along_[kZeroRow];
    const T** across = taps(0);
    for (int64_t q = 0; q < slots_; ++q) {
      for (int64_t k = 0; k < n + rows - 1; ++k) {
        const int64_t i = r - apad_ + k;
        across[k] = i >= 0 && i < Ho ? derivs_[q * ring_ + i % ring_] : zeros;
      }
      if (rows == 2)
        filter_pair(across, a_.window, n, Wo, back_[2 * q], back_[2 * q + 1]);
      else
        filter(RowTaps<T>{across}, a_.window, n, Wo, back_[2 * q]);
    }
    for (int64_t k = 0; k < rows; ++k) {
      if (r + k < first || r + k >= last) continue;
      // Derivative map q filtered back along the row lands in along_[kMoment + q] (over the moments).
      for (int64_t q = 0; q < slots_; ++q) filter_along(back_[2 * q + k] - apad_, a_.window, n, W, along_[kMoment + q]);
      const auto back = [&](int64_t map) { return along_[kMoment + map]; };
      const int64_t offset = plane * H * W + (r + k) * W;
      const T* xr = a_.x + offset;
      const T* yr = a_.y + offset;
      if (a_.need_x()) gradient_row(back(d_mx_), back(kDSquares), back(kDProduct), xr, yr, W, a_.gx + offset);
      if (a_.need_y()) gradient_row(back(d_my_), back(kDSquares), back(kDProduct), yr, xr, W, a_.gy + offset);
    }
  }

 private:
  // The rows of along_: the four moments filtered along rows (reused for the derivative maps
  // filtered back), the SSIM row, a scratch row (derivatives nobody needs), a row of zeros.
  enum AlongRow : int64_t { kMoment = 0, kSSIMRow = 4, kScratchRow = 5, kZeroRow = 6, kAlongRows = 7 };
  // The derivative maps, in derivs_ (a ring of rows each) and back_: SSIM's derivatives with
  // respect to E[x²+y²], E[xy], and (those wanted) μx and μy; d_mx_ / d_my_ are −1 when unwanted.
  enum DerivMap : int64_t { kDSquares = 0, kDProduct = 1, kDMeanX = 2 };

  const SSIMForwardArgs<T>& a_;
  int64_t n_, span_, ring_, apad_, slots_;  // span_: the products ring; ring_: the derivatives ring
  int64_t d_mx_, d_my_;
  // across_: two rows' moments filtered across rows; products_: the input rows' products (x²+y²,
  // xy); derivs_: the derivative rows; back_: two rows of each derivative map filtered back across rows.
  AlignedRows<T> across_, along_, products_, derivs_, back_;
  std::vector<int64_t> product_row_;  // the input row whose products each products_ slot holds
  std::vector<const T*> taps_;        // four lists of span_ row pointers (see taps)

  /// List q of row pointers: the rows a filter across rows reads, one per tap.
  const T** taps(int64_t q) { return taps_.data() + q * span_; }
};

// Rows go in pairs (2m, 2m + 1) of each plane, the last row of an odd count alone, whatever range
// a thread is given: the pair path and the single path may round differently (a compiler may
// fuse a multiply–add in one and not the other), so each row must always take the same one for
// the results not to depend on the split. A range that starts on an odd row computes its pair's
// first row too.

/// The pair of rows that row i belongs to, of `count` rows: its first row and its size.
inline std::pair<int64_t, int64_t> row_pair(int64_t i, int64_t count) {
  const int64_t first = i - i % 2;
  return {first, first + 1 < count ? 2 : 1};
}

/// SSIM without gradients, for SSIM rows [begin, end) of all planes (idx = plane·Ho + i): each
/// row's sum into row_sums[idx].
template <typename T>
CROWDLOSS_SIMD_TARGET inline void ssim_rows(const SSIMForwardArgs<T>& a, int64_t begin, int64_t end) {
  Pipeline<T> pipe(a);
  double sums[2];
  for (int64_t idx = begin; idx < end;) {
    const int64_t plane = idx / a.Ho;
    const auto [i, rows] = row_pair(idx % a.Ho, a.Ho);
    pipe.ssim_rows(plane, i, rows, sums);
    for (int64_t k = 0; k < rows; ++k)
      if (plane * a.Ho + i + k >= idx && plane * a.Ho + i + k < end) a.row_sums[plane * a.Ho + i + k] = sums[k];
    idx = plane * a.Ho + i + rows;
  }
}

/// SSIM with its unscaled gradient maps, for gradient rows [begin, end) of all planes
/// (idx = plane·H + r). Gradient row r reads SSIM rows r − apad … r + pad, so a range also
/// computes the SSIM rows before its own that it reads (which its neighbour computes too); of
/// the SSIM rows it reports the sums of those it owns — from first − apad to before end − apad,
/// first and end its own first and past-the-end gradient rows of the plane, extended to the
/// map's edges — so that the ranges of any split own every SSIM row once.
template <typename T>
CROWDLOSS_SIMD_TARGET inline void ssim_gradient_rows(const SSIMForwardArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t H = a.H, Ho = a.Ho, pad = a.pad, apad = a.taps - 1 - pad;
  Pipeline<T> pipe(a);
  double sums[2];
  for (int64_t idx = begin; idx < end;) {
    const int64_t plane = idx / H, first = idx % H, last = std::min(H, first + (end - idx));
    const int64_t own_begin = first == 0 ? 0 : first - apad, own_end = last == H ? Ho : last - apad;
    const int64_t start = row_pair(first, H).first;                         // the first gradient row computed
    int64_t next = row_pair(std::max<int64_t>(0, start - apad), Ho).first;  // the next SSIM row to compute
    for (int64_t r = start; r < last;) {
      const int64_t rows = row_pair(r, H).second, need = std::min(Ho, r + rows + pad);
      while (next < need) {
        const int64_t count = row_pair(next, Ho).second;
        pipe.ssim_rows(plane, next, count, sums);
        for (int64_t k = 0; k < count; ++k)
          if (next + k >= own_begin && next + k < own_end) a.row_sums[plane * Ho + next + k] = sums[k];
        next += count;
      }
      pipe.gradient_rows(plane, r, rows, first, last);
      r += rows;
    }
    idx += last - first;
  }
}
