// What NVRTC provides without a header, for Clang's CUDA mode without a CUDA installation
// (tests/cuda/compile_sources.cmake): the execution-space keywords, the built-in index
// variables and the math and bit-cast functions the kernels call.
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#include <__clang_cuda_builtin_vars.h>
extern "C" __device__ double log(double);
__device__ float __uint_as_float(unsigned int);
__device__ unsigned int __float_as_uint(float);
