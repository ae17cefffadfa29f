#pragma once
/// \file
/// The element types of the maps that crowdloss's CUDA kernels read and write (docs/gpu.md):
/// float and double as they are, and float16 / bfloat16 as 16-bit patterns (`HalfBits`,
/// `BFloat16Bits`) that the kernels widen to float on loading and round to nearest even on
/// storing, so that half-precision maps are read and their gradients written in place — no
/// float32 copy of the inputs — while every sum is taken in float or wider. The conversions are
/// integer code written once (`CROWDLOSS_DEVICE_CODE`), so tests check them on the CPU against
/// c10::Half and c10::BFloat16; only the reinterpretation of a float's bits differs by side
/// (`bits_as_float` / `float_as_bits`: std::memcpy on the host, __uint_as_float /
/// __float_as_uint in the NVRTC source's preamble, `kCudaStoragePreamble`).

#include <crowdloss/detail/cuda_jit.hpp>

#include <torch/types.h>

#include <cstring>
#include <string>

namespace crowdloss {
namespace detail {

/// A float's bits as an unsigned 32-bit integer and back (the host side of the primitives).
inline float bits_as_float(unsigned int bits) {
  static_assert(sizeof(float) == sizeof(unsigned int), "float and unsigned int must both be 32 bits");
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline unsigned int float_as_bits(float value) {
  unsigned int bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

/// The device side of the primitives, put before the device code in every NVRTC source.
constexpr const char* kCudaStoragePreamble =
    "__device__ __forceinline__ float bits_as_float(unsigned int u) { return __uint_as_float(u); }\n"
    "__device__ __forceinline__ unsigned int float_as_bits(float f) { return __float_as_uint(f); }\n";

// clang-format off
CROWDLOSS_DEVICE_CODE(cuda_storage_source,

/* IEEE binary16 and bfloat16 values, by their bits (the layouts of c10::Half and c10::BFloat16). */
struct HalfBits { unsigned short bits; };
struct BFloat16Bits { unsigned short bits; };

/* The type a stored element is computed in: itself, or float for the 16-bit types. */
template <typename T> struct ComputeOf { typedef T type; };
template <> struct ComputeOf<HalfBits> { typedef float type; };
template <> struct ComputeOf<BFloat16Bits> { typedef float type; };

/* A stored element as its compute type (exact). */
CROWDLOSS_HD float loaded(float v) { return v; }
CROWDLOSS_HD double loaded(double v) { return v; }
CROWDLOSS_HD float loaded(BFloat16Bits v) { return bits_as_float(static_cast<unsigned int>(v.bits) << 16); }
CROWDLOSS_HD float loaded(HalfBits v) {
  const unsigned int h = v.bits, sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_as_float(sign | 0x7f800000u | (mantissa << 13));  /* inf, NaN */
  if (exponent != 0) return bits_as_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  /* zero or subnormal: mantissa·2⁻²⁴, exact in float */
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign != 0 ? -magnitude : magnitude;
}

/* Stores a computed value, rounded to nearest even where the element is narrower. */
CROWDLOSS_HD void store(float* at, float v) { *at = v; }
CROWDLOSS_HD void store(double* at, double v) { *at = v; }
CROWDLOSS_HD void store(BFloat16Bits* at, float v) {
  unsigned int f = float_as_bits(v);
  if ((f & 0x7fffffffu) > 0x7f800000u) {  /* NaN: the quiet NaN c10 writes */
    at->bits = 0x7fc0u;
    return;
  }
  f += 0x7fffu + ((f >> 16) & 1u);
  at->bits = static_cast<unsigned short>(f >> 16);
}
CROWDLOSS_HD void store(HalfBits* at, float v) {
  const unsigned int f = float_as_bits(v), sign = (f >> 16) & 0x8000u, a = f & 0x7fffffffu;
  unsigned int h;
  if (a > 0x7f800000u) {
    h = 0x7e00u;  /* NaN */
  } else if (a >= 0x477ff000u) {
    h = 0x7c00u;  /* inf, and every value that rounds beyond 65504 */
  } else if (a >= 0x38800000u) {  /* a normal half: rebias the exponent, round at bit 13 */
    const unsigned int m = a - 0x38000000u;
    h = (m + 0xfffu + ((m >> 13) & 1u)) >> 13;
  } else if (a > 0x33000000u) {  /* a subnormal half (or the least normal, by rounding): a/2⁻²⁴ */
    const unsigned int shift = 126 - (a >> 23), mantissa = (a & 0x7fffffu) | 0x800000u;
    const unsigned int rest = mantissa & ((1u << shift) - 1), tie = 1u << (shift - 1);
    h = mantissa >> shift;
    if (rest > tie || (rest == tie && (h & 1u) != 0)) ++h;
  } else {
    h = 0;  /* at most 2⁻²⁵: rounds to zero */
  }
  at->bits = static_cast<unsigned short>(sign | h);
}

)  // CROWDLOSS_DEVICE_CODE
// clang-format on

namespace cuda_jit {

/// One module of kernels, compiled once per element type of the maps as `<stem>_<type>` (type
/// float, double, and where `reads_half`, half or bfloat16): NVRTC's source is a preamble (`CROWDLOSS_HD`'s device
/// qualifier, `CROWDLOSS_STORAGE` for the maps' element type, `CROWDLOSS_SCALAR` for its
/// compute type — double for double, else float — and `kCudaStoragePreamble`), then the storage
/// code above, then the module's device code (`CROWDLOSS_DEVICE_CODE`), then its kernels.
struct KernelSource {
  const char* stem;
  const char* (*device_code)();
  const char* (*kernels)();
  /// Whether the kernels take float16 and bfloat16 maps (read in place, computed in float); the
  /// others take float and double only.
  bool reads_half = false;

  /// How a module is compiled for maps of one dtype: its name's suffix, the storage type and the
  /// compute type in the source.
  struct Element {
    const char *suffix, *storage, *compute;
  };
  /// How the module is compiled for maps of `dtype` (those the kernels read in place), or null
  /// where it is not.
  const Element* element(at::ScalarType dtype) const {
    static const Element f32{"_float", "float", "float"}, f64{"_double", "double", "double"},
        f16{"_half", "HalfBits", "float"}, bf16{"_bfloat16", "BFloat16Bits", "float"};
    if (dtype == at::kFloat) return &f32;
    if (dtype == at::kDouble) return &f64;
    if (!reads_half) return nullptr;
    return dtype == at::kHalf ? &f16 : dtype == at::kBFloat16 ? &bf16 : nullptr;
  }
  const Element& checked(at::ScalarType dtype) const {
    TORCH_CHECK(element(dtype) != nullptr, "crowdloss CUDA kernels: no kernels for ", dtype);
    return *element(dtype);
  }
  std::string name(at::ScalarType dtype) const { return std::string(stem) + checked(dtype).suffix; }
  std::string source(at::ScalarType dtype) const {
    const Element& e = checked(dtype);
    return std::string("#define CROWDLOSS_HD __device__ __forceinline__\n#define CROWDLOSS_STORAGE ") + e.storage +
           "\n#define CROWDLOSS_SCALAR " + e.compute + "\n" + kCudaStoragePreamble + cuda_storage_source() +
           device_code() + kernels();
  }
  /// The compiled module for maps of `dtype` on `device`, or null where it cannot run (an
  /// unsupported dtype; else Module::find: one warning then says why).
  Module* find(at::ScalarType dtype, const at::Device& device) const {
    if (element(dtype) == nullptr) return nullptr;
    return Module::find(
        name(dtype), [&] { return source(dtype); }, device);
  }
};

}  // namespace cuda_jit
}  // namespace detail
}  // namespace crowdloss
