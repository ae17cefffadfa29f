// Vector types and helpers for the CPU kernels that are compiled once per instruction set
// (simd.hpp): included by each such kernel's source inside the namespace it is included into,
// with CROWDLOSS_SIMD_TARGET and CROWDLOSS_SIMD_BYTES defined. Hence no include guard and no
// includes (the includer provides <cstdint> and <cstring>).

#if CROWDLOSS_SIMD_BYTES > 0
template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(CROWDLOSS_SIMD_BYTES)));
  static constexpr int64_t size = CROWDLOSS_SIMD_BYTES / sizeof(T);
};
#else
template <typename T>
struct Simd {
  using V = T;
  static constexpr int64_t size = 1;
};
#endif

template <typename T>
CROWDLOSS_SIMD_TARGET inline typename Simd<T>::V load(const T* p) {
  typename Simd<T>::V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
CROWDLOSS_SIMD_TARGET inline void store(T* p, typename Simd<T>::V v) {
  std::memcpy(p, &v, sizeof v);
}

/// The `count` elements at p (0 < count ≤ a vector's lanes), zeros in the lanes after them. A
/// loop over a row in steps of a vector loads its last, partial step this way, so that the
/// remainder is vector code too (GCC 12 vectorises no remainder loop at -O2). The compiler may
/// still fuse multiply–adds differently in the full and the partial step, so a kernel whose
/// results must not depend on the thread count fixes which step computes an element by the
/// element's position (ssim_cpu.hpp's backward: blocks at fixed offsets of a plane).
template <typename T>
CROWDLOSS_SIMD_TARGET inline typename Simd<T>::V load_n(const T* p, int64_t count) {
  if (count == Simd<T>::size) return load(p);
  typename Simd<T>::V v{};
  std::memcpy(&v, p, static_cast<size_t>(count) * sizeof(T));
  return v;
}

/// Stores the first `count` lanes of v at p (0 < count ≤ the lanes).
template <typename T>
CROWDLOSS_SIMD_TARGET inline void store_n(T* p, typename Simd<T>::V v, int64_t count) {
  if (count == Simd<T>::size) return store(p, v);
  std::memcpy(p, &v, static_cast<size_t>(count) * sizeof(T));
}

/// x in every lane: ones times x, which compilers fold into one broadcast (`V{} + x` must really
/// add, since 0 + (−0) is +0).
template <typename T>
CROWDLOSS_SIMD_TARGET inline typename Simd<T>::V broadcast(T x) {
  return (typename Simd<T>::V{} + T(1)) * x;
}

/// Lane k of a vector.
#if CROWDLOSS_SIMD_BYTES > 0
template <typename V>
CROWDLOSS_SIMD_TARGET inline auto lane(const V& v, int64_t k) {
  return v[k];
}
#else
template <typename T>
inline T lane(T v, int64_t) {
  return v;
}
#endif

/// Whether any lane of a comparison's result is true.
template <typename M>
CROWDLOSS_SIMD_TARGET inline bool any_lane(const M& m) {
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(M) / sizeof(lane(m, 0)));
  auto any = lane(m, 0);
  for (int64_t k = 1; k < lanes; ++k) any |= lane(m, k);
  return any != 0;
}
