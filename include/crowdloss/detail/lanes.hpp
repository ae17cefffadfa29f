#pragma once
/// \file
/// A minimal SIMD vector for the CPU kernels' inner loops: GCC/Clang vector extensions, 32 bytes
/// when the build targets AVX (e.g. -march=native on a recent x86-64) and 16 bytes otherwise
/// (native on every x86-64 and AArch64 target), and plain scalars with other compilers, so that
/// one source serves all.

#include <cstring>

namespace crowdloss {
namespace detail {

#if defined(__GNUC__)
#if defined(__AVX__)
constexpr int kLaneBytes = 32;
#else
constexpr int kLaneBytes = 16;
#endif
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(kLaneBytes)));
  static constexpr int size = kLaneBytes / sizeof(T);
  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof v); }
  static type broadcast(T x) {
    type v;
    for (int i = 0; i < size; ++i) v[i] = x;
    return v;
  }
};
#else
template <typename T>
struct Lanes {
  using type = T;
  static constexpr int size = 1;
  static type load(const T* p) { return *p; }
  static void store(T* p, type v) { *p = v; }
  static type broadcast(T x) { return x; }
};
#endif

}  // namespace detail
}  // namespace crowdloss
