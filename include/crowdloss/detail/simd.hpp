#pragma once
/// \file
/// Which instruction set the CPU kernels run with:
/// - a kernel's source (ssim_rows.hpp, lsap_scan.hpp, nms_scan.hpp) is written once over GCC/Clang
///   vector extensions (simd_ops.hpp) and included once per instruction set into its own
///   namespace, with `CROWDLOSS_SIMD_TARGET` (target attribute), `CROWDLOSS_SIMD_BYTES` (vector
///   width; 0 = plain scalars) and, for SSIM, `CROWDLOSS_SIMD_SHUFFLES` set by the includer;
/// - sets: baseline (what the build targets) and avx2 (AVX2 + FMA through the target attribute on
///   x86-64, chosen at run time when the CPU has both, as ATen chooses its own kernels);
/// - `CROWDLOSS_CPU_CAPABILITY=baseline` in the environment (read once) keeps the baseline;
/// - every translation unit of a program must use the same -m… flags (the kernels' inline
///   functions differ between them and the linker keeps one of each; Eigen documents the same).

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__GNUC__)
#if defined(__AVX__)
#define CROWDLOSS_SIMD_BASELINE_BYTES 32
#else
#define CROWDLOSS_SIMD_BASELINE_BYTES 16
#endif
#if (defined(__x86_64__) || defined(__i386__)) && !(defined(__AVX2__) && defined(__FMA__))
#define CROWDLOSS_SIMD_AVX2 1
#endif
#else
#define CROWDLOSS_SIMD_BASELINE_BYTES 0
#endif
// Whether the filters along a row build their shifted tap vectors from aligned loads by lane
// shuffles of two vectors (__builtin_shufflevector: GCC 12+, Clang), per instruction set: AVX2
// has them in one instruction; x86-64's baseline SSE2 has no such shuffle (SSSE3 does), where
// unaligned loads are faster.
#define CROWDLOSS_SIMD_BASELINE_SHUFFLES 0
#define CROWDLOSS_SIMD_AVX2_SHUFFLES 0
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#undef CROWDLOSS_SIMD_AVX2_SHUFFLES
#define CROWDLOSS_SIMD_AVX2_SHUFFLES 1
#if !(defined(__x86_64__) || defined(__i386__)) || defined(__SSSE3__)
#undef CROWDLOSS_SIMD_BASELINE_SHUFFLES
#define CROWDLOSS_SIMD_BASELINE_SHUFFLES 1
#endif
#endif
#endif

// Before a loop of a few iterations, known at compile time, over vectors (a filter's taps, a
// block's accumulators): unroll it in full, so that its vectors stay in registers. GCC unrolls
// such loops by itself at -O3 but not at -O2, which leaves them in memory (SSIM 1.6× slower).
#if defined(__clang__)
#define CROWDLOSS_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define CROWDLOSS_UNROLL _Pragma("GCC unroll 16")
#else
#define CROWDLOSS_UNROLL
#endif

namespace crowdloss {
namespace detail {

/// The instruction sets a CPU kernel may run with (see the file comment).
enum class CpuCapability { baseline, avx2 };

/// The set the CPU kernels use: the best this CPU supports, capped by CROWDLOSS_CPU_CAPABILITY.
/// A reference, so that tests can switch kernels (not thread-safe while kernels run).
inline CpuCapability& cpu_capability() {
  static CpuCapability capability = [] {
#if defined(CROWDLOSS_SIMD_AVX2)
    const char* cap = std::getenv("CROWDLOSS_CPU_CAPABILITY");
    __builtin_cpu_init();
    if ((cap == nullptr || std::strcmp(cap, "baseline") != 0) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
      return CpuCapability::avx2;
#endif
    return CpuCapability::baseline;
  }();
  return capability;
}

/// Zero-initialised scratch rows for the CPU kernels: `count` rows of `width` elements, each with
/// `margin` zeros before and after it. Each row's first margin element sits on a 64-byte boundary
/// (so vector loads of a row's taps from there never straddle two cache lines), and a cache line
/// of slack follows the last row (so a vector load that starts inside a row stays in the buffer).
template <typename T>
class AlignedRows {
 public:
  AlignedRows(int64_t count, int64_t width, int64_t margin)
      : stride_(round_up(width + 2 * margin)), storage_(static_cast<size_t>(count * stride_ + 2 * kLine), T(0)) {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    base_ = storage_.data() + (kBytes - address % kBytes) % kBytes / sizeof(T) + margin;
  }
  AlignedRows(const AlignedRows&) = delete;  // base_ points into storage_
  AlignedRows& operator=(const AlignedRows&) = delete;
  /// Element 0 of row i.
  T* operator[](int64_t i) { return base_ + i * stride_; }

 private:
  static constexpr int64_t kBytes = 64, kLine = kBytes / static_cast<int64_t>(sizeof(T));
  static int64_t round_up(int64_t n) { return (n + kLine - 1) / kLine * kLine; }
  int64_t stride_;
  std::vector<T> storage_;
  T* base_;
};

}  // namespace detail
}  // namespace crowdloss
