#pragma once
/// \file
/// A minimal SIMD vector for the CPU kernels' inner loops: GCC/Clang vector extensions (16 bytes,
/// which every x86-64 and AArch64 target has natively; the compiler uses the widest instructions
/// the build allows for them), and plain scalars elsewhere, so that one source serves both.

#include <cstring>

namespace crowdloss {
namespace detail {

#if defined(__GNUC__)
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(16)));
  static constexpr int size = 16 / sizeof(T);
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
