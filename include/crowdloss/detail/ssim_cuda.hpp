#pragma once
/// \file
/// The CUDA kernels of SSIM's per-channel mean and the SANet loss's pixel term (behind
/// `cuda_kernels_enabled`, docs/gpu.md), with the CPU kernel's algorithm (ssim_cpu.hpp): four
/// separable moments μx = F(x), μy = F(y), m2 = F(x² + y²), mxy = F(xy) and the closed-form
/// backward through the filter's adjoint (the window is symmetric, so the adjoint is the same
/// correlation over the derivative maps). Three launches, each block a tile of the map held in
/// shared memory with its halo:
/// - `crowdloss_ssim_forward`: a T×T tile of output positions — the moments, the SSIM values and
///   the squared error of the tile's own pixels, summed per block;
/// - `crowdloss_ssim_reduce`: one block per plane sums its tiles' sums (fixed order) into the
///   per-channel means;
/// - `crowdloss_ssim_backward`: a T×T tile of input pixels — the moments and the four derivative
///   maps over the output positions that read the tile (the tile plus a window's halo), their
///   adjoint filtering, and both gradients with the upstream factors, each pixel written once.
/// Both tile kernels first find their region's largest magnitude; beyond 2⁶⁰ (float) a block
/// divides its region by a power of two and takes SSIM in double with the constants divided
/// likewise, so that maps whose squares overflow float (values of 10²⁰) still give SSIM's finite
/// value (issue 17); every other block computes exactly as without it (`ssim_block_divisor`).
/// Every sum is a fixed tree: no atomics, the same bits run after run. The per-thread code is
/// `CROWDLOSS_DEVICE_CODE`, so `ssim_cuda_emulated_*` run it on the CPU block by block for tests.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/cuda_storage.hpp>
#include <crowdloss/detail/ssim_aten.hpp>
#include <crowdloss/detail/ssim_cpu.hpp>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace crowdloss {
namespace detail {

// clang-format off
CROWDLOSS_DEVICE_CODE(ssim_device_source,

/* The longest window the kernels take, and the threads of every block. */
enum { kSsimMaxTaps = 31, kSsimThreads = 256 };

/* A launch's sizes: planes (B·C) maps of H×W, Ho×Wo output positions, the window (taps, zero
   padding pad on each side), the tile side T and the tiles per plane, the constants, and whether
   the squared error is summed and which gradients are written. */
struct SsimParams {
  long long planes, H, W, Ho, Wo, taps, pad, tile, tiles_y, tiles_x, with_mse;
  double c1, c2;
  double window[kSsimMaxTaps];
};

/* Input side of a forward tile's region (T + n − 1), and of a backward tile's (T + 2n − 2), whose
   output positions number (T + n − 1)². */
CROWDLOSS_HD long long ssim_forward_side(const SsimParams& q) { return q.tile + q.taps - 1; }
CROWDLOSS_HD long long ssim_backward_side(const SsimParams& q) { return q.tile + 2 * q.taps - 2; }
CROWDLOSS_HD long long ssim_backward_outputs(const SsimParams& q) { return q.tile + q.taps - 1; }

/* Elements of shared memory a block uses: x and y over its region, the four horizontally filtered
   moments, and in the backward the four derivative maps. */
CROWDLOSS_HD long long ssim_shared_elements(const SsimParams& q, bool backward) {
  if (!backward) {
    const long long r = ssim_forward_side(q);
    return 2 * r * r + 4 * r * q.tile;
  }
  const long long r = ssim_backward_side(q), o = ssim_backward_outputs(q);
  return 2 * r * r + 4 * r * o + 4 * o * o;
}

/* The larger of `largest` and |v| (NaN ignored). */
CROWDLOSS_HD double ssim_larger(double largest, double v) {
  const double a = v < 0 ? -v : v;
  return a > largest ? a : largest;
}

/* x and y over the side×side region whose first pixel is (r0, c0) of plane `plane`, in their
   compute type, zero outside the map: elements tid, tid + n, …; returns the largest magnitude
   among them. */
template <typename storage_t, typename scalar_t>
CROWDLOSS_HD double ssim_load(const SsimParams& q, const storage_t* x, const storage_t* y, long long plane,
                              long long r0, long long c0, long long side, scalar_t* sx, scalar_t* sy, int tid, int n) {
  double largest = 0;
  for (long long e = tid; e < side * side; e += n) {
    const long long r = r0 + e / side, c = c0 + e % side;
    const bool inside = r >= 0 && r < q.H && c >= 0 && c < q.W;
    const long long at = (plane * q.H + r) * q.W + c;
    sx[e] = inside ? loaded(x[at]) : static_cast<scalar_t>(0);
    sy[e] = inside ? loaded(y[at]) : static_cast<scalar_t>(0);
    largest = ssim_larger(ssim_larger(largest, static_cast<double>(sx[e])), static_cast<double>(sy[e]));
  }
  return largest;
}

/* One step of a block's tree of maxima: largest[tid] = max(largest[tid], largest[tid + stride]). */
CROWDLOSS_HD void ssim_max_step(double* largest, int tid, int stride) {
  if (tid < stride && largest[tid + stride] > largest[tid]) largest[tid] = largest[tid + stride];
}

/* The magnitude beyond which a block divides its region: 2⁶⁰ in float, 2⁵⁰⁰ in double, so that no
   square of a moment overflows the compute type. */
template <typename scalar_t>
CROWDLOSS_HD double ssim_limit() {
  return sizeof(scalar_t) == sizeof(float) ? 0x1p60 : 0x1p500;
}

/* The power of two s that a block divides its region by, from the region's largest magnitude: 1
   unless that exceeds the limit, else the least that brings it within (issue 17: float32 maps of
   10²⁰, whose squares overflow, must give SSIM's finite value). SSIM is unchanged when x, y are
   divided by s and C1, C2 by s², which a block with s ≠ 1 takes in double; a block with s = 1
   computes exactly as without all this. Infinite values keep s = 1 and propagate. (Constants
   beyond float's range never reach the float kernels: `ssim_cuda_params`.) */
template <typename scalar_t>
CROWDLOSS_HD double ssim_block_divisor(double largest) {
  const double limit = ssim_limit<scalar_t>();
  double s = 1;
  if (largest - largest != 0) return s;
  while (largest > limit * s) s *= 2;
  return s;
}

/* Backward, for a block that divides its region by s: the power of two t by which it divides the
   derivatives with respect to the divided second moments m' = m/s² before storing them. Those are
   s² times the undivided ones, up to 2|scale|·s²/C2 where a window is flat in the divided frame
   (beyond float from s ≈ 2⁶⁰ on, whose flat windows would then give inf and NaN gradients); t is
   the least that keeps that bound within 2¹⁰⁰ (2¹⁰⁰⁰ in double) — 1 where it is already, so the
   derivatives keep their precision wherever they can. With t > 1 the smallest ones, of windows
   over values near the limit, may become subnormal: the gradients they make (of order 1/x for
   values x beyond 10³², themselves near float's underflow) lose their precision. 1 where s = 1
   (those blocks store the derivatives as they are), and where C2 = 0 gives no bound (flat windows
   give NaN there, as in the ATen path). */
template <typename scalar_t>
CROWDLOSS_HD double ssim_moment_divisor(double scale, double divisor, double c2) {
  const double limit = sizeof(scalar_t) == sizeof(float) ? 0x1p100 : 0x1p1000;
  const double magnitude = scale < 0 ? -scale : scale;
  const double needed = 2 * magnitude / c2 / limit * divisor * divisor;  // s, t powers of two: exact steps
  double t = 1;
  if (divisor == 1 || !(c2 > 0) || needed - needed != 0) return t;
  while (t < needed) t *= 2;
  return t;
}

/* Divides the region's x and y (count elements each) by the block's divisor: elements tid, tid + n,
   … (exact: a power of two, barring values that become subnormal). */
template <typename scalar_t>
CROWDLOSS_HD void ssim_rescale(scalar_t* sx, scalar_t* sy, long long count, double divisor, int tid, int n) {
  const scalar_t inverse = static_cast<scalar_t>(1 / divisor);
  for (long long e = tid; e < count; e += n) {
    sx[e] *= inverse;
    sy[e] *= inverse;
  }
}

/* The four moments' inputs (x, y, x² + y², xy) filtered along rows: h[k] is rows×cols, column c
   from region columns c … c + n − 1 (region rows of `width`); elements tid, tid + n, … */
template <typename scalar_t>
CROWDLOSS_HD void ssim_rows_pass(const SsimParams& q, const scalar_t* sx, const scalar_t* sy, long long rows,
                                 long long width, long long cols, scalar_t* h, int tid, int n) {
  for (long long e = tid; e < rows * cols; e += n) {
    const long long r = e / cols, c = e % cols;
    scalar_t a = 0, b = 0, s = 0, p = 0;
    for (long long j = 0; j < q.taps; ++j) {
      const scalar_t w = static_cast<scalar_t>(q.window[j]);
      const scalar_t xv = sx[r * width + c + j], yv = sy[r * width + c + j];
      a += w * xv;
      b += w * yv;
      s += w * (xv * xv + yv * yv);
      p += w * (xv * yv);
    }
    h[e] = a;
    h[rows * cols + e] = b;
    h[2 * rows * cols + e] = s;
    h[3 * rows * cols + e] = p;
  }
}

/* The four moments at (r, c) of the rows pass's output h (rows×cols each): column c filtered
   along rows r … r + n − 1. */
template <typename scalar_t>
CROWDLOSS_HD void ssim_moments(const SsimParams& q, const scalar_t* h, long long rows, long long cols, long long r,
                               long long c, scalar_t* m) {
  for (int k = 0; k < 4; ++k) {
    scalar_t v = 0;
    for (long long i = 0; i < q.taps; ++i) v += static_cast<scalar_t>(q.window[i]) * h[(k * rows + r + i) * cols + c];
    m[k] = v;
  }
}

/* SSIM from the moments m = (μx, μy, m2, mxy) and the constants: l·c with l = A1/B1, c = A2/B2,
   NaN where a denominator overflowed (as the ATen path's guard). */
template <typename scalar_t>
CROWDLOSS_HD scalar_t ssim_value(const scalar_t* m, double c1_, double c2_) {
  const scalar_t c1 = static_cast<scalar_t>(c1_), c2 = static_cast<scalar_t>(c2_);
  const scalar_t mx = m[0], my = m[1];
  const scalar_t b1 = mx * mx + my * my + c1, b2 = m[2] - mx * mx - my * my + c2;
  const scalar_t guard = (b1 + b2) - (b1 + b2);
  return ((2 * mx * my + c1) / b1) * ((2 * (m[3] - mx * my) + c2) / b2) + guard;
}

/* ∂S/∂(μx, μy, m2, mxy) from the moments and the constants, times `scale`: with l = A1/B1,
   c = A2/B2, S = l·c, P = 2(c/B1 − l/B2), Q = 2S(1/B2 − 1/B1):
   (μy·P + μx·Q, μx·P + μy·Q, −S/B2, 2l/B2). */
template <typename scalar_t>
CROWDLOSS_HD void ssim_derivatives(const scalar_t* m, double c1_, double c2_, scalar_t scale, scalar_t* d) {
  const scalar_t c1 = static_cast<scalar_t>(c1_), c2 = static_cast<scalar_t>(c2_);
  const scalar_t mx = m[0], my = m[1];
  const scalar_t b1 = mx * mx + my * my + c1, b2 = m[2] - mx * mx - my * my + c2;
  const scalar_t l = (2 * mx * my + c1) / b1, c = (2 * (m[3] - mx * my) + c2) / b2, s = l * c;
  const scalar_t p = 2 * (c / b1 - l / b2), qq = 2 * s * (1 / b2 - 1 / b1);
  d[0] = scale * (my * p + mx * qq);
  d[1] = scale * (mx * p + my * qq);
  d[2] = scale * (-s / b2);
  d[3] = scale * (2 * l / b2);
}

/* Forward, one thread's share of block `block` (plane · tiles + tile) after the rows pass over the
   region divided by `divisor` s: the sum of SSIM over its output positions tid, tid + n, … of the
   tile (in double, with the constants divided by s², where s ≠ 1), and of (x − y)² over its pixels
   (the divided difference times s, squared in double, where s ≠ 1). */
template <typename scalar_t>
CROWDLOSS_HD void ssim_forward_sums(const SsimParams& q, const scalar_t* sx, const scalar_t* sy, const scalar_t* h,
                                    long long block, double divisor, int tid, int n, double* ssim_sum,
                                    double* squared_sum) {
  const long long tiles = q.tiles_y * q.tiles_x, tile = block % tiles;
  const long long oy0 = tile / q.tiles_x * q.tile, ox0 = tile % q.tiles_x * q.tile, side = ssim_forward_side(q);
  double s = 0, e = 0;
  for (long long k = tid; k < q.tile * q.tile; k += n) {
    const long long a = k / q.tile, b = k % q.tile;
    if (oy0 + a < q.Ho && ox0 + b < q.Wo) {
      scalar_t m[4];
      ssim_moments(q, h, side, q.tile, a, b, m);
      if (divisor == 1) {
        s += static_cast<double>(ssim_value(m, q.c1, q.c2));
      } else {
        const double wide[4] = {m[0], m[1], m[2], m[3]};
        s += ssim_value(wide, q.c1 / divisor / divisor, q.c2 / divisor / divisor);
      }
    }
    if (q.with_mse && oy0 + a < q.H && ox0 + b < q.W) {
      const long long at = (a + q.pad) * side + b + q.pad;
      const scalar_t d = sx[at] - sy[at];
      const double undivided = static_cast<double>(d) * divisor;
      e += divisor == 1 ? static_cast<double>(d * d) : undivided * undivided;
    }
  }
  *ssim_sum = s;
  *squared_sum = e;
}

/* Backward, after the rows pass over the region divided by `divisor` s: the derivative maps D
   (4 × O×O, O = T + n − 1) with respect to the divided moments at output positions tid, tid + n, …
   of the tile's output region, times the plane's SSIM coefficient; zero at positions outside the
   Ho×Wo outputs. Where s ≠ 1, they are taken in double with the constants divided by s², with
   respect to the divided moments μ' = μ/s and m' = m/s², and those with respect to m' are stored
   divided by `moment_divisor` t (`ssim_moment_divisor`). */
template <typename scalar_t>
CROWDLOSS_HD void ssim_backward_derivatives(const SsimParams& q, const scalar_t* h, long long block, scalar_t scale,
                                            double divisor, double moment_divisor, scalar_t* dmaps, int tid, int n) {
  const long long tiles = q.tiles_y * q.tiles_x, tile = block % tiles;
  const long long o = ssim_backward_outputs(q), side = ssim_backward_side(q);
  const long long first_y = tile / q.tiles_x * q.tile + q.pad - q.taps + 1;
  const long long first_x = tile % q.tiles_x * q.tile + q.pad - q.taps + 1;
  for (long long k = tid; k < o * o; k += n) {
    const long long r = k / o, c = k % o, oy = first_y + r, ox = first_x + c;
    scalar_t d[4] = {0, 0, 0, 0};
    if (oy >= 0 && oy < q.Ho && ox >= 0 && ox < q.Wo) {
      scalar_t m[4];
      ssim_moments(q, h, side, o, r, c, m);
      if (divisor == 1) {
        ssim_derivatives(m, q.c1, q.c2, scale, d);
      } else {
        const double wide[4] = {m[0], m[1], m[2], m[3]};
        double dw[4];
        ssim_derivatives(wide, q.c1 / divisor / divisor, q.c2 / divisor / divisor, static_cast<double>(scale), dw);
        for (int j = 0; j < 4; ++j) d[j] = static_cast<scalar_t>(j < 2 ? dw[j] : dw[j] / moment_divisor);
      }
    }
    for (int j = 0; j < 4; ++j) dmaps[j * o * o + k] = d[j];
  }
}

/* Backward, the adjoint filter along rows: a[k] (O×T) column c from D[k]'s columns c … c + n − 1. */
template <typename scalar_t>
CROWDLOSS_HD void ssim_adjoint_rows(const SsimParams& q, const scalar_t* dmaps, scalar_t* a, int tid, int n) {
  const long long o = ssim_backward_outputs(q), t = q.tile;
  for (long long e = tid; e < 4 * o * t; e += n) {
    const long long k = e / (o * t), r = e / t % o, c = e % t;
    scalar_t v = 0;
    for (long long j = 0; j < q.taps; ++j) v += static_cast<scalar_t>(q.window[j]) * dmaps[(k * o + r) * o + c + j];
    a[e] = v;
  }
}

/* Backward, last: the tile's pixels tid, tid + n, …: the adjoint filter along columns, then
   grad_x = Fᵀ(dμx) + 2x·Fᵀ(dm2) + y·Fᵀ(dmxy) + e·(x − y) and grad_y symmetrically (e the
   plane's squared-error coefficient), computed in the compute type and each stored in the maps'
   type where its pointer is not null. Where s ≠ 1, in double from the divided x' = x/s, y' and the
   divided frame's D (those of m' divided by `moment_divisor` t):
   Fᵀ(dμx')/s + (2x'·Fᵀ(dm2') + y'·Fᵀ(dmxy'))·t/s + s·e·(x' − y'). */
template <typename storage_t, typename scalar_t>
CROWDLOSS_HD void ssim_backward_pixels(const SsimParams& q, const scalar_t* sx, const scalar_t* sy, const scalar_t* a,
                                       long long block, scalar_t e, double divisor, double moment_divisor,
                                       storage_t* grad_x, storage_t* grad_y, int tid, int n) {
  const long long tiles = q.tiles_y * q.tiles_x, plane = block / tiles, tile = block % tiles;
  const long long iy0 = tile / q.tiles_x * q.tile, ix0 = tile % q.tiles_x * q.tile;
  const long long o = ssim_backward_outputs(q), t = q.tile, side = ssim_backward_side(q);
  for (long long k = tid; k < t * t; k += n) {
    const long long r = k / t, c = k % t;
    if (iy0 + r >= q.H || ix0 + c >= q.W) continue;
    scalar_t f[4];
    for (long long m = 0; m < 4; ++m) {
      scalar_t v = 0;
      for (long long i = 0; i < q.taps; ++i) v += static_cast<scalar_t>(q.window[i]) * a[(m * o + r + i) * t + c];
      f[m] = v;
    }
    const long long at_region = (r + q.taps - 1) * side + c + q.taps - 1;
    const scalar_t xv = sx[at_region], yv = sy[at_region];
    const long long at = (plane * q.H + iy0 + r) * q.W + ix0 + c;
    if (divisor == 1) {
      const scalar_t ssim_x = f[0] + 2 * xv * f[2] + yv * f[3], ssim_y = f[1] + 2 * yv * f[2] + xv * f[3];
      if (grad_x) store(grad_x + at, ssim_x + e * (xv - yv));
      if (grad_y) store(grad_y + at, ssim_y + e * (yv - xv));
    } else {
      const double x1 = xv, y1 = yv, mse = static_cast<double>(e) * (x1 - y1) * divisor;
      const double second = moment_divisor / divisor;
      const double ssim_x = f[0] / divisor + (2 * x1 * f[2] + y1 * f[3]) * second;
      const double ssim_y = f[1] / divisor + (2 * y1 * f[2] + x1 * f[3]) * second;
      if (grad_x) store(grad_x + at, static_cast<scalar_t>(ssim_x + mse));
      if (grad_y) store(grad_y + at, static_cast<scalar_t>(ssim_y - mse));
    }
  }
}

/* One step of a block's tree reduction of two sums. */
CROWDLOSS_HD void ssim_tree_step(double* first, double* second, int tid, int stride) {
  if (tid < stride) {
    first[tid] += first[tid + stride];
    second[tid] += second[tid + stride];
  }
}

/* Reduce, one thread's share of plane `plane`'s tile sums (partials: 2 per block). */
CROWDLOSS_HD void ssim_plane_partial(const SsimParams& q, const double* partials, long long plane, int tid, int n,
                                     double* ssim_sum, double* squared_sum) {
  const long long tiles = q.tiles_y * q.tiles_x;
  double s = 0, e = 0;
  for (long long t = tid; t < tiles; t += n) {
    s += partials[2 * (plane * tiles + t)];
    e += partials[2 * (plane * tiles + t) + 1];
  }
  *ssim_sum = s;
  *squared_sum = e;
}

)  // CROWDLOSS_DEVICE_CODE
// clang-format on

/// The kernels: the device code above, called from each block's threads with barriers between
/// its phases. `ssim_cuda_emulated_*` mirror them phase by phase; keep the two in step.
inline const char* ssim_kernels_source() {
  return R"(
// A tile block's first phase: its region loaded from (r0, c0) of `plane`, the tree of maxima in
// `largest` (kSsimThreads), and the region divided by the block's divisor, which it returns.
__device__ double crowdloss_ssim_load(const SsimParams& q, const CROWDLOSS_STORAGE* x, const CROWDLOSS_STORAGE* y,
                                         long long plane, long long r0, long long c0, long long side,
                                         CROWDLOSS_SCALAR* sx, CROWDLOSS_SCALAR* sy, double* largest) {
  const int tid = threadIdx.x, n = blockDim.x;
  largest[tid] = ssim_load(q, x, y, plane, r0, c0, side, sx, sy, tid, n);
  __syncthreads();
  for (int s = n / 2; s > 0; s >>= 1) {
    ssim_max_step(largest, tid, s);
    __syncthreads();
  }
  const double divisor = ssim_block_divisor<CROWDLOSS_SCALAR>(largest[0]);
  if (divisor != 1) ssim_rescale(sx, sy, side * side, divisor, tid, n);
  __syncthreads();
  return divisor;
}

extern "C" __global__ void __launch_bounds__(256) crowdloss_ssim_forward(const CROWDLOSS_STORAGE* x, const CROWDLOSS_STORAGE* y, SsimParams q,
                                                  double* partials) {
  extern __shared__ double shared[];
  __shared__ double first[kSsimThreads], second[kSsimThreads];
  const int tid = threadIdx.x, n = blockDim.x;
  const long long block = blockIdx.x, tiles = q.tiles_y * q.tiles_x, tile = block % tiles, side = ssim_forward_side(q);
  CROWDLOSS_SCALAR* sx = reinterpret_cast<CROWDLOSS_SCALAR*>(shared);
  CROWDLOSS_SCALAR* sy = sx + side * side;
  CROWDLOSS_SCALAR* h = sy + side * side;
  const double divisor = crowdloss_ssim_load(q, x, y, block / tiles, tile / q.tiles_x * q.tile - q.pad,
                                              tile % q.tiles_x * q.tile - q.pad, side, sx, sy, first);
  ssim_rows_pass(q, sx, sy, side, side, q.tile, h, tid, n);
  __syncthreads();
  ssim_forward_sums(q, sx, sy, h, block, divisor, tid, n, &first[tid], &second[tid]);
  __syncthreads();
  for (int s = n / 2; s > 0; s >>= 1) {
    ssim_tree_step(first, second, tid, s);
    __syncthreads();
  }
  if (tid == 0) {
    partials[2 * block] = first[0];
    partials[2 * block + 1] = second[0];
  }
}

extern "C" __global__ void __launch_bounds__(256) crowdloss_ssim_reduce(SsimParams q, const double* partials, CROWDLOSS_SCALAR* ssim,
                                                 CROWDLOSS_SCALAR* mse) {
  __shared__ double first[kSsimThreads], second[kSsimThreads];
  const int tid = threadIdx.x, n = blockDim.x;
  ssim_plane_partial(q, partials, blockIdx.x, tid, n, &first[tid], &second[tid]);
  __syncthreads();
  for (int s = n / 2; s > 0; s >>= 1) {
    ssim_tree_step(first, second, tid, s);
    __syncthreads();
  }
  if (tid == 0) {
    ssim[blockIdx.x] = static_cast<CROWDLOSS_SCALAR>(first[0] / static_cast<double>(q.Ho * q.Wo));
    mse[blockIdx.x] = static_cast<CROWDLOSS_SCALAR>(second[0] / static_cast<double>(q.H * q.W));
  }
}

extern "C" __global__ void __launch_bounds__(256) crowdloss_ssim_backward(const CROWDLOSS_STORAGE* x, const CROWDLOSS_STORAGE* y, SsimParams q,
                                                   const CROWDLOSS_SCALAR* grad_ssim, const CROWDLOSS_SCALAR* grad_mse,
                                                   CROWDLOSS_STORAGE* grad_x, CROWDLOSS_STORAGE* grad_y) {
  extern __shared__ double shared[];
  __shared__ double largest[kSsimThreads];
  const int tid = threadIdx.x, n = blockDim.x;
  const long long block = blockIdx.x, tiles = q.tiles_y * q.tiles_x, plane = block / tiles, tile = block % tiles;
  const long long side = ssim_backward_side(q), o = ssim_backward_outputs(q);
  CROWDLOSS_SCALAR* sx = reinterpret_cast<CROWDLOSS_SCALAR*>(shared);
  CROWDLOSS_SCALAR* sy = sx + side * side;
  CROWDLOSS_SCALAR* h = sy + side * side;
  CROWDLOSS_SCALAR* dmaps = h + 4 * side * o;
  const CROWDLOSS_SCALAR scale = grad_ssim ? static_cast<CROWDLOSS_SCALAR>(static_cast<double>(grad_ssim[plane]) /
                                                                           static_cast<double>(q.Ho * q.Wo))
                                           : static_cast<CROWDLOSS_SCALAR>(0);
  const CROWDLOSS_SCALAR e = grad_mse ? static_cast<CROWDLOSS_SCALAR>(2.0 * static_cast<double>(grad_mse[plane]) /
                                                                      static_cast<double>(q.H * q.W))
                                      : static_cast<CROWDLOSS_SCALAR>(0);
  const double divisor = crowdloss_ssim_load(q, x, y, plane, tile / q.tiles_x * q.tile - q.taps + 1,
                                              tile % q.tiles_x * q.tile - q.taps + 1, side, sx, sy, largest);
  ssim_rows_pass(q, sx, sy, side, side, o, h, tid, n);
  __syncthreads();
  const double moment_divisor = ssim_moment_divisor<CROWDLOSS_SCALAR>(scale, divisor, q.c2);
  ssim_backward_derivatives(q, h, block, scale, divisor, moment_divisor, dmaps, tid, n);
  __syncthreads();
  ssim_adjoint_rows(q, dmaps, h, tid, n);
  __syncthreads();
  ssim_backward_pixels(q, sx, sy, h, block, e, divisor, moment_divisor, grad_x, grad_y, tid, n);
}
)";
}

/// The tile side the kernels use for maps of `dtype`: 16 where they compute in float (float,
/// float16, bfloat16), 8 for double (whose shared memory is twice as large per element).
inline int64_t ssim_cuda_tile(at::ScalarType dtype) { return dtype == at::kDouble ? 8 : 16; }

/// The most shared memory a block may use without opting in: 48 KiB.
constexpr int64_t kSsimSharedLimit = 48 * 1024;

/// Bytes of dynamic shared memory a forward or backward block takes on maps of `dtype` (whose
/// regions it holds in their compute dtype).
inline int64_t ssim_cuda_shared_bytes(const SsimParams& q, at::ScalarType dtype, bool backward) {
  return ssim_shared_elements(q, backward) * static_cast<int64_t>(c10::elementSize(compute_dtype(dtype)));
}

/// The sizes of a launch on B×C×H×W maps like `x` (a floating dtype) with the 1-D `window` (a CPU
/// tensor, so that no launch waits for a copy from the device), `pad` zeros on each side and the
/// constants; or `planes == 0` when the kernels cannot take them: a window longer than
/// kSsimMaxTaps, shared memory beyond 48 KiB a block, more blocks than a grid holds, or, computing
/// in float, a constant beyond kSsimFloatConstantLimit (`ssim_constants_exceed_float`: the
/// dispatch takes such setups in float64).
inline SsimParams ssim_cuda_params(const at::Tensor& x, const at::Tensor& window, int64_t pad, double c1, double c2) {
  SsimParams q{};
  const auto taps = window.numel();
  const int64_t H = x.size(2), W = x.size(3), T = ssim_cuda_tile(compute_dtype(x));
  const bool in_float = compute_dtype(x) != at::kDouble;
  if (taps > kSsimMaxTaps || !window.device().is_cpu() ||
      (in_float && (c1 > kSsimFloatConstantLimit || c2 > kSsimFloatConstantLimit)))
    return q;
  q.H = H, q.W = W, q.taps = taps, q.pad = pad, q.tile = T;
  q.Ho = H + 2 * pad - taps + 1, q.Wo = W + 2 * pad - taps + 1;
  q.tiles_y = (H + T - 1) / T, q.tiles_x = (W + T - 1) / T;
  q.c1 = c1, q.c2 = c2;
  const auto taps_double = window.to(at::kDouble).contiguous();
  for (int64_t j = 0; j < taps; ++j) q.window[j] = taps_double.data_ptr<double>()[j];
  // The trees' static arrays: two in the forward, one in the backward.
  const int64_t planes = x.size(0) * x.size(1), tree = kSsimThreads * 8;
  if (ssim_cuda_shared_bytes(q, x.scalar_type(), true) + tree > kSsimSharedLimit ||
      ssim_cuda_shared_bytes(q, x.scalar_type(), false) + 2 * tree > kSsimSharedLimit ||
      planes * q.tiles_y * q.tiles_x > std::numeric_limits<int32_t>::max())
    return SsimParams{};
  q.planes = planes;
  return q;
}

/// `crowdloss_ssim_load` (the tile kernels' first phase) run on the CPU for one block, thread by
/// thread: the region loaded from (r0, c0) of `plane`, the tree of maxima in `largest`
/// (kSsimThreads), and the region divided by the block's divisor, which it returns.
template <typename storage_t, typename scalar_t>
double ssim_emulated_load(const SsimParams& q, const storage_t* x, const storage_t* y, long long plane, long long r0,
                          long long c0, long long side, scalar_t* sx, scalar_t* sy, double* largest) {
  const int n = kSsimThreads;
  for (int tid = 0; tid < n; ++tid) largest[tid] = ssim_load(q, x, y, plane, r0, c0, side, sx, sy, tid, n);
  for (int s = n / 2; s > 0; s >>= 1)
    for (int tid = 0; tid < n; ++tid) ssim_max_step(largest, tid, s);
  const double divisor = ssim_block_divisor<scalar_t>(largest[0]);
  if (divisor != 1)
    for (int tid = 0; tid < n; ++tid) ssim_rescale(sx, sy, side * side, divisor, tid, n);
  return divisor;
}

/// The forward kernels run on the CPU in the kernels' order, block by block and thread by thread
/// (tests compare them with the ATen path): per plane, the SSIM mean and the squared error's (in
/// the maps' compute type).
template <typename storage_t, typename scalar_t>
void ssim_cuda_emulated_forward(const storage_t* x, const storage_t* y, const SsimParams& q, scalar_t* ssim,
                                scalar_t* mse) {
  const int n = kSsimThreads;
  const long long tiles = q.tiles_y * q.tiles_x, side = ssim_forward_side(q);
  std::vector<scalar_t> shared(static_cast<size_t>(ssim_shared_elements(q, false)));
  std::vector<double> partials(static_cast<size_t>(2 * q.planes * tiles)), first_buffer(n), second_buffer(n);
  double *first = first_buffer.data(), *second = second_buffer.data();
  const auto tree = [&] {
    for (int s = n / 2; s > 0; s >>= 1)
      for (int tid = 0; tid < n; ++tid) ssim_tree_step(first, second, tid, s);
  };
  for (long long block = 0; block < q.planes * tiles; ++block) {
    const long long tile = block % tiles;
    scalar_t* sx = shared.data();
    scalar_t* sy = sx + side * side;
    scalar_t* h = sy + side * side;
    const double divisor = ssim_emulated_load(q, x, y, block / tiles, tile / q.tiles_x * q.tile - q.pad,
                                              tile % q.tiles_x * q.tile - q.pad, side, sx, sy, first);
    for (int tid = 0; tid < n; ++tid) ssim_rows_pass(q, sx, sy, side, side, q.tile, h, tid, n);
    for (int tid = 0; tid < n; ++tid)
      ssim_forward_sums(q, sx, sy, h, block, divisor, tid, n, first + tid, second + tid);
    tree();
    partials[static_cast<size_t>(2 * block)] = first[0];
    partials[static_cast<size_t>(2 * block + 1)] = second[0];
  }
  for (long long plane = 0; plane < q.planes; ++plane) {
    for (int tid = 0; tid < n; ++tid) ssim_plane_partial(q, partials.data(), plane, tid, n, first + tid, second + tid);
    tree();
    ssim[plane] = static_cast<scalar_t>(first[0] / static_cast<double>(q.Ho * q.Wo));
    mse[plane] = static_cast<scalar_t>(second[0] / static_cast<double>(q.H * q.W));
  }
}

/// The backward kernel run on the CPU, block by block and thread by thread (see above).
template <typename storage_t, typename scalar_t>
void ssim_cuda_emulated_backward(const storage_t* x, const storage_t* y, const SsimParams& q, const scalar_t* grad_ssim,
                                 const scalar_t* grad_mse, storage_t* grad_x, storage_t* grad_y) {
  const int n = kSsimThreads;
  const long long tiles = q.tiles_y * q.tiles_x, side = ssim_backward_side(q), o = ssim_backward_outputs(q);
  std::vector<scalar_t> shared(static_cast<size_t>(ssim_shared_elements(q, true)));
  std::vector<double> largest(n);
  for (long long block = 0; block < q.planes * tiles; ++block) {
    const long long plane = block / tiles, tile = block % tiles;
    scalar_t* sx = shared.data();
    scalar_t* sy = sx + side * side;
    scalar_t* h = sy + side * side;
    scalar_t* dmaps = h + 4 * side * o;
    const scalar_t scale =
        grad_ssim ? static_cast<scalar_t>(static_cast<double>(grad_ssim[plane]) / static_cast<double>(q.Ho * q.Wo))
                  : scalar_t(0);
    const scalar_t e =
        grad_mse ? static_cast<scalar_t>(2.0 * static_cast<double>(grad_mse[plane]) / static_cast<double>(q.H * q.W))
                 : scalar_t(0);
    const double divisor = ssim_emulated_load(q, x, y, plane, tile / q.tiles_x * q.tile - q.taps + 1,
                                              tile % q.tiles_x * q.tile - q.taps + 1, side, sx, sy, largest.data());
    for (int tid = 0; tid < n; ++tid) ssim_rows_pass(q, sx, sy, side, side, o, h, tid, n);
    const double moment_divisor = ssim_moment_divisor<scalar_t>(scale, divisor, q.c2);
    for (int tid = 0; tid < n; ++tid)
      ssim_backward_derivatives(q, h, block, scale, divisor, moment_divisor, dmaps, tid, n);
    for (int tid = 0; tid < n; ++tid) ssim_adjoint_rows(q, dmaps, h, tid, n);
    for (int tid = 0; tid < n; ++tid)
      ssim_backward_pixels(q, sx, sy, h, block, e, divisor, moment_divisor, grad_x, grad_y, tid, n);
  }
}

/// The kernels' module (maps of float, double, float16 or bfloat16).
inline constexpr cuda_jit::KernelSource kSsimKernels{"crowdloss_ssim", &ssim_device_source, &ssim_kernels_source,
                                                     /*reads_half=*/true};

/// SSIM's per-channel mean and the squared error's on CUDA maps through the kernels above: the
/// interface of SSIMCpuFunction (x, y B×C×H×W of one floating dtype; the window — here a CPU
/// tensor in the compute dtype —, its padding and constants; both outputs B×C in the compute
/// dtype, the second zeros without `with_mse`), for setups `ssim_cuda_params` accepts. float16
/// and bfloat16 maps are read and their gradients written as they are, computed in float, so
/// nothing of the maps' size is allocated besides the gradients. Deterministic. The backward
/// recomputes the moments rather than keep maps from the forward.
struct SSIMCudaFunction : public torch::autograd::Function<SSIMCudaFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in,
                                                const at::Tensor& y_in, const at::Tensor& host_window, int64_t pad,
                                                double c1, double c2, bool with_mse) {
    const auto x = x_in.contiguous(), y = y_in.contiguous();
    SsimParams q = ssim_cuda_params(x, host_window, pad, c1, c2);
    TORCH_CHECK(q.planes > 0, "ssim: the CUDA kernels cannot take maps of ", x.sizes());
    q.with_mse = with_mse ? 1 : 0;
    auto* module = kSsimKernels.find(x.scalar_type(), x.device());
    TORCH_CHECK(module != nullptr, "ssim: the CUDA kernels are unavailable");
    const int64_t B = x.size(0), C = x.size(1), blocks = q.planes * q.tiles_y * q.tiles_x;
    const at::Tensor partials = at::empty({2 * blocks}, x.options().dtype(at::kDouble));
    const auto out_options = x.options().dtype(compute_dtype(x));
    const at::Tensor ssim = at::empty({B, C}, out_options), mse = at::empty({B, C}, out_options);
    void *xp = x.data_ptr(), *yp = y.data_ptr(), *pp = partials.data_ptr(), *sp = ssim.data_ptr(), *mp = mse.data_ptr();
    const auto shared = static_cast<unsigned>(ssim_cuda_shared_bytes(q, x.scalar_type(), false));
    module->launch("crowdloss_ssim_forward", x.device(), static_cast<unsigned>(blocks), kSsimThreads,
                   {&xp, &yp, &q, &pp}, shared);
    module->launch("crowdloss_ssim_reduce", x.device(), static_cast<unsigned>(q.planes), kSsimThreads,
                   {&q, &pp, &sp, &mp});
    ctx->save_for_backward({x, y});
    ctx->saved_data["window"] = host_window;
    ctx->saved_data["pad"] = pad;
    ctx->saved_data["c1"] = c1;
    ctx->saved_data["c2"] = c2;
    return {ssim, mse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1];
    SsimParams q = ssim_cuda_params(x, ctx->saved_data["window"].toTensor(), ctx->saved_data["pad"].toInt(),
                                    ctx->saved_data["c1"].toDouble(), ctx->saved_data["c2"].toDouble());
    auto* module = kSsimKernels.find(x.scalar_type(), x.device());
    TORCH_CHECK(module != nullptr, "ssim: the CUDA kernels are unavailable");
    const auto upstream = [&](const at::Tensor& g) { return g.defined() ? g.to(compute_dtype(x)).contiguous() : g; };
    const at::Tensor gs = upstream(grad_outputs[0]), gm = upstream(grad_outputs[1]);
    const at::Tensor grad_x = ctx->needs_input_grad(0) ? at::empty_like(x) : at::Tensor();
    const at::Tensor grad_y = ctx->needs_input_grad(1) ? at::empty_like(y) : at::Tensor();
    void *xp = x.data_ptr(), *yp = y.data_ptr(), *gsp = gs.defined() ? gs.data_ptr() : nullptr,
         *gmp = gm.defined() ? gm.data_ptr() : nullptr, *gxp = grad_x.defined() ? grad_x.data_ptr() : nullptr,
         *gyp = grad_y.defined() ? grad_y.data_ptr() : nullptr;
    const int64_t blocks = q.planes * q.tiles_y * q.tiles_x;
    const auto shared = static_cast<unsigned>(ssim_cuda_shared_bytes(q, x.scalar_type(), true));
    if (gxp != nullptr || gyp != nullptr)
      module->launch("crowdloss_ssim_backward", x.device(), static_cast<unsigned>(blocks), kSsimThreads,
                     {&xp, &yp, &q, &gsp, &gmp, &gxp, &gyp}, shared);
    return {grad_x, grad_y, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// SSIM per channel through SSIMCudaFunction (`host_window`: s.window's taps on the CPU).
inline SSIMPerChannel ssim_per_channel_cuda(const SSIMSetup& s, const at::Tensor& host_window, bool with_mse) {
  const auto out = SSIMCudaFunction::apply(s.x, s.y, host_window, s.pad, s.c1, s.c2, with_mse);
  return {out[0], with_mse ? out[1] : at::Tensor()};
}

}  // namespace detail
}  // namespace crowdloss
