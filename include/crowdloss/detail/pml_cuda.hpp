#pragma once
/// \file
/// The CUDA kernels of PML's one-pass path (behind `cuda_kernels_enabled`, docs/gpu.md): the
/// same algorithm as the CPU kernel (detail/pml_cpu.hpp) in three launches —
/// - `crowdloss_pml_cells`: one block per finest cell sums the error p − t over the cell's
///   pixels (the maps are read once), and its square when the pixel term is folded in;
/// - `crowdloss_pml_levels`: one block derives every coarser level from the finest cells, sums
///   each level's squares and writes the terms (or their sum, with the pixel term w·mean(e²)
///   where asked) and each term's slope;
/// - `crowdloss_pml_backward`: one block per finest cell computes the cell's gradient
///   coefficient from the saved levels and writes it to the cell's pixels (each gradient once),
///   plus the pixel term's 2w·e/N, which is the only reason it reads the maps.
/// Every reduction is a fixed tree in shared memory: no atomics, the same bits run after run.
/// The per-thread and per-block code is `CROWDLOSS_DEVICE_CODE`, so `pml_cuda_emulated_*` run it
/// on the CPU block by block and thread by thread, as the kernels do, for the tests.

#include <crowdloss/detail/checks.hpp>
#include <crowdloss/detail/cuda_storage.hpp>
#include <crowdloss/detail/pml_cpu.hpp>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace crowdloss {
namespace detail {

// clang-format off
CROWDLOSS_DEVICE_CODE(pml_device_source,

/* The most grids PML's kernels take (each grid at least doubles the last, so 32 is beyond any map). */
enum { kPmlMaxLevels = 32, kPmlLevelThreads = 1024 };

/* A launch's sizes: planes (B·C) maps of H×W, the finest grid f, B, L grids, their cells' offsets
   in the levels buffer (level i's planes×g×g cells from offsets[i]); summed: one output; upstream:
   the upstream gradient's length (1 or L); pixel_weight w > 0 (summed only) adds w·Σe²/pixels,
   pixels the unpadded maps' element count. */
struct PmlParams {
  long long planes, H, W, f, B, L, summed, upstream;
  long long grids[kPmlMaxLevels];
  long long offsets[kPmlMaxLevels + 1];
  double pixel_weight, pixels;
};

/* Threads per block of the per-cell kernels: a power of two in [32, 256], about a cell's pixels. */
CROWDLOSS_HD int pml_cell_threads(long long pixels) {
  int n = 32;
  while (n < 256 && n < pixels) n *= 2;
  return n;
}

/* Pixels tid, tid + n, … of a bh×bw cell, row by row: (y, x) within the cell. */
struct PmlWalk {
  long long y, x, bh, bw, dy, dx;
  CROWDLOSS_HD PmlWalk(long long bh_, long long bw_, int tid, int n)
      : y(tid / bw_), x(tid % bw_), bh(bh_), bw(bw_), dy(n / bw_), dx(n % bw_) {}
  CROWDLOSS_HD bool more() const { return y < bh; }
  CROWDLOSS_HD void next() {
    x += dx;
    y += dy;
    if (x >= bw) {
      x -= bw;
      ++y;
    }
  }
};

/* Offset of finest cell `cell`'s first pixel (cells planes×f×f, row-major). */
CROWDLOSS_HD long long pml_cell_origin(const PmlParams& q, long long cell) {
  const long long plane = cell / (q.f * q.f), cy = cell / q.f % q.f, cx = cell % q.f;
  return (plane * q.H + cy * (q.H / q.f)) * q.W + cx * (q.W / q.f);
}

/* One thread's share of finest cell `cell`'s error sum Σ (p − t) and squared error sum Σ (p − t)²
   over its pixels tid, tid + n, …, in double (so that neither the difference nor its square
   overflows for any finite float maps). */
template <typename storage_t>
CROWDLOSS_HD void pml_cell_partial(const storage_t* p, const storage_t* t, const PmlParams& q, long long cell, int tid,
                                   int n, double* sum, double* squares) {
  const long long origin = pml_cell_origin(q, cell);
  double s = 0, s2 = 0;
  for (PmlWalk w(q.H / q.f, q.W / q.f, tid, n); w.more(); w.next()) {
    const long long at = origin + w.y * q.W + w.x;
    const double e = static_cast<double>(loaded(p[at])) - static_cast<double>(loaded(t[at]));
    s += e;
    s2 += e * e;
  }
  *sum = s;
  *squares = s2;
}

/* One step of a block's tree reduction: partial[tid] += partial[tid + stride] for tid < stride. */
CROWDLOSS_HD void pml_tree_step(double* partial, int tid, int stride) {
  if (tid < stride) partial[tid] += partial[tid + stride];
}

/* Cell j of level i (i < L − 1): the sum of its k×k children at level i + 1, row by row. */
CROWDLOSS_HD void pml_coarsen_cell(const PmlParams& q, double* levels, long long i, long long j) {
  const long long g = q.grids[i], G = q.grids[i + 1], k = G / g;
  const long long plane = j / (g * g), cy = j / g % g, cx = j % g;
  const double* child = levels + q.offsets[i + 1] + (plane * G + cy * k) * G + cx * k;
  double sum = 0;
  for (long long dy = 0; dy < k; ++dy) {
    double row = 0;
    for (long long dx = 0; dx < k; ++dx) row += child[dy * G + dx];
    sum += row;
  }
  levels[q.offsets[i] + j] = sum;
}

/* One thread's share of level i's Σ cell²: its cells tid, tid + n, …. */
CROWDLOSS_HD double pml_square_partial(const PmlParams& q, const double* levels, long long i, int tid, int n) {
  double sum = 0;
  for (long long j = q.offsets[i] + tid; j < q.offsets[i + 1]; j += n) sum += levels[j] * levels[j];
  return sum;
}

/* One thread's share of the finest cells' squared-error sums: cells tid, tid + n, …. */
CROWDLOSS_HD double pml_pixel_partial(const PmlParams& q, const double* squares, int tid, int n) {
  double sum = 0;
  for (long long j = tid; j < q.planes * q.f * q.f; j += n) sum += squares[j];
  return sum;
}

/* (grids[i − 1] / grids[i])², the share of level i − 1's error that term i takes as explained. */
CROWDLOSS_HD double pml_ratio(const PmlParams& q, long long i) {
  return static_cast<double>(q.grids[i - 1] * q.grids[i - 1]) / static_cast<double>(q.grids[i] * q.grids[i]);
}

/* From the levels' sums S_i: the terms ln(1 + increment_i) into out (their sum in grid order when
   summed, plus w·squares/pixels when pixel_weight > 0) and slope_i = d term_i / d increment_i (0
   where the relu is at or below its kink; NaN kept). */
template <typename scalar_t>
CROWDLOSS_HD void pml_finish(const PmlParams& q, const double* sums, double squares, double* slope, scalar_t* out) {
  double previous = 0, total = 0;
  for (long long i = 0; i < q.L; ++i) {
    const double mse = sums[i] / static_cast<double>(q.B);
    double increment = mse;
    if (i > 0) {
      increment = mse - pml_ratio(q, i) * previous;
      if (!(increment > 0) && increment == increment) increment = 0;
    }
    const double term = log(increment + 1);
    slope[i] = (i == 0 || increment > 0) ? 1 / (increment + 1) : 0.0;
    previous = mse;
    if (q.summed) {
      total += term;
    } else {
      out[i] = static_cast<scalar_t>(term);
    }
  }
  if (q.pixel_weight > 0) total += q.pixel_weight * squares / q.pixels;
  if (q.summed) out[0] = static_cast<scalar_t>(total);
}

/* d loss / d (finest cell `cell`'s error sum) = Σ_i 2·dm_i·S_i(the cell's ancestor at level i)/B,
   dm_i = go_i·slope_i − go_{i+1}·slope_{i+1}·ratio_{i+1}, go the upstream gradient. */
template <typename scalar_t>
CROWDLOSS_HD double pml_cell_coefficient(const PmlParams& q, const double* levels, const double* slope,
                                         const scalar_t* upstream, long long cell) {
  const long long f = q.f, plane = cell / (f * f), y = cell / f % f, x = cell % f;
  double coefficient = 0;
  for (long long i = 0; i < q.L; ++i) {
    double dm = static_cast<double>(upstream[q.upstream == 1 ? 0 : i]) * slope[i];
    if (i + 1 < q.L) dm -= static_cast<double>(upstream[q.upstream == 1 ? 0 : i + 1]) * slope[i + 1] * pml_ratio(q, i + 1);
    const long long g = q.grids[i], k = f / g;
    coefficient += 2.0 * dm / static_cast<double>(q.B) * levels[q.offsets[i] + (plane * g + y / k) * g + x / k];
  }
  return coefficient;
}

/* Writes finest cell `cell`'s gradient to its pixels tid, tid + n, … of grad_pred: `coefficient`,
   plus pixel_coefficient·(p − t) for the pixel term (2w·upstream/pixels, in double; the maps are
   read only when it is not 0); its negation to grad_target unless that is null. Stored in the
   maps' type. */
template <typename storage_t>
CROWDLOSS_HD void pml_write_cell(const PmlParams& q, double coefficient, double pixel_coefficient, const storage_t* p,
                                 const storage_t* t, long long cell, int tid, int n, storage_t* grad_pred,
                                 storage_t* grad_target) {
  typedef typename ComputeOf<storage_t>::type scalar_t;
  const long long origin = pml_cell_origin(q, cell);
  const scalar_t value = static_cast<scalar_t>(coefficient);
  for (PmlWalk w(q.H / q.f, q.W / q.f, tid, n); w.more(); w.next()) {
    const long long at = origin + w.y * q.W + w.x;
    const scalar_t g =
        pixel_coefficient != 0
            ? static_cast<scalar_t>(coefficient + pixel_coefficient * (static_cast<double>(loaded(p[at])) -
                                                                       static_cast<double>(loaded(t[at]))))
            : value;
    store(grad_pred + at, g);
    if (grad_target) store(grad_target + at, -g);
  }
}

)  // CROWDLOSS_DEVICE_CODE
// clang-format on

/// The kernels: the device code above, called from each block's threads with shared-memory
/// trees between its phases. `pml_cuda_emulated_forward` / `_backward` mirror them phase by
/// phase; keep the two in step.
inline const char* pml_kernels_source() {
  return R"(
extern "C" __global__ void __launch_bounds__(256) crowdloss_pml_cells(const CROWDLOSS_STORAGE* p, const CROWDLOSS_STORAGE* t, PmlParams q,
                                               double* levels, double* squares) {
  __shared__ double partial[256], squared[256];
  const int tid = threadIdx.x, n = blockDim.x;
  pml_cell_partial(p, t, q, blockIdx.x, tid, n, &partial[tid], &squared[tid]);
  __syncthreads();
  for (int s = n / 2; s > 0; s >>= 1) {
    pml_tree_step(partial, tid, s);
    pml_tree_step(squared, tid, s);
    __syncthreads();
  }
  if (tid == 0) {
    levels[q.offsets[q.L - 1] + blockIdx.x] = partial[0];
    if (squares) squares[blockIdx.x] = squared[0];
  }
}

extern "C" __global__ void __launch_bounds__(1024) crowdloss_pml_levels(PmlParams q, double* levels, const double* squares, double* slope,
                                                CROWDLOSS_SCALAR* out) {
  __shared__ double partial[kPmlLevelThreads];
  __shared__ double sums[kPmlMaxLevels];
  const int tid = threadIdx.x, n = blockDim.x;
  for (long long i = q.L - 1; i-- > 0;) {
    for (long long j = tid; j < q.offsets[i + 1] - q.offsets[i]; j += n) pml_coarsen_cell(q, levels, i, j);
    __syncthreads();
  }
  for (long long i = 0; i <= q.L; ++i) {
    partial[tid] = i < q.L ? pml_square_partial(q, levels, i, tid, n)
                           : (q.pixel_weight > 0 ? pml_pixel_partial(q, squares, tid, n) : 0.0);
    __syncthreads();
    for (int s = n / 2; s > 0; s >>= 1) {
      pml_tree_step(partial, tid, s);
      __syncthreads();
    }
    if (tid == 0 && i < q.L) sums[i] = partial[0];
    if (tid == 0 && i == q.L) pml_finish(q, sums, partial[0], slope, out);
    __syncthreads();
  }
}

extern "C" __global__ void __launch_bounds__(256) crowdloss_pml_backward(PmlParams q, const double* levels, const double* slope,
                                                  const CROWDLOSS_SCALAR* upstream, const CROWDLOSS_STORAGE* p,
                                                  const CROWDLOSS_STORAGE* t, CROWDLOSS_STORAGE* grad_pred,
                                                  CROWDLOSS_STORAGE* grad_target) {
  __shared__ double coefficient;
  if (threadIdx.x == 0) coefficient = pml_cell_coefficient(q, levels, slope, upstream, blockIdx.x);
  __syncthreads();
  const double pixel = q.pixel_weight > 0 ? 2 * q.pixel_weight * static_cast<double>(upstream[0]) / q.pixels : 0.0;
  pml_write_cell(q, coefficient, pixel, p, t, blockIdx.x, threadIdx.x, blockDim.x, grad_pred, grad_target);
}
)";
}

/// The sizes of a launch on B×C×H×W maps (the finest grid dividing H and W; with `summed`, the
/// pixel term `pixel_weight`·Σe²/`pixels` folded in where the weight is positive, `pixels` the
/// unpadded maps' element count), or nothing-set `planes == 0` when the kernels cannot take them
/// (more than kPmlMaxLevels grids, more finest cells than a grid of blocks holds, or a cell of
/// 2³¹ pixels or more).
inline PmlParams pml_cuda_params(at::IntArrayRef shape, const std::vector<int64_t>& grids, bool summed,
                                 double pixel_weight = 0, int64_t pixels = 0) {
  PmlParams q{};
  constexpr int64_t limit = std::numeric_limits<int32_t>::max();
  // a·b ≤ limit for non-negative a, b, without forming a product that may overflow.
  const auto within = [](int64_t a, int64_t b) { return a == 0 || b <= limit / a; };
  if (grids.size() > static_cast<size_t>(kPmlMaxLevels)) return q;
  const int64_t f = grids.back();
  if (!within(shape[0], shape[1]) || !within(f, f) || !within(shape[0] * shape[1], f * f) ||
      !within(shape[2] / f, shape[3] / f))
    return q;
  const int64_t planes = shape[0] * shape[1];
  q.planes = planes, q.H = shape[2], q.W = shape[3], q.f = f, q.B = shape[0];
  q.L = static_cast<long long>(grids.size()), q.summed = summed ? 1 : 0, q.upstream = summed ? 1 : q.L;
  q.pixel_weight = summed ? pixel_weight : 0.0, q.pixels = static_cast<double>(pixels);
  const auto offsets = pml_level_offsets(grids, planes);
  for (size_t i = 0; i < grids.size(); ++i) q.grids[i] = grids[i];
  for (size_t i = 0; i < offsets.size(); ++i) q.offsets[i] = offsets[i];
  return q;
}

/// The forward kernels run on the CPU in the kernels' order, block by block and thread by thread
/// (tests compare them with the ATen path): fills levels (offsets[L] doubles), squares (a double
/// per finest cell), slope (L) and out (L terms, or 1 when summed; the maps' compute type).
template <typename storage_t, typename scalar_t>
void pml_cuda_emulated_forward(const storage_t* p, const storage_t* t, const PmlParams& q, double* levels,
                               double* squares, double* slope, scalar_t* out) {
  const int cell_threads = pml_cell_threads((q.H / q.f) * (q.W / q.f));
  std::vector<double> buffer(2 * kPmlLevelThreads);
  double *partial = buffer.data(), *squared = partial + kPmlLevelThreads;
  for (long long cell = 0; cell < q.planes * q.f * q.f; ++cell) {
    for (int tid = 0; tid < cell_threads; ++tid)
      pml_cell_partial(p, t, q, cell, tid, cell_threads, partial + tid, squared + tid);
    for (int s = cell_threads / 2; s > 0; s >>= 1)
      for (int tid = 0; tid < cell_threads; ++tid) pml_tree_step(partial, tid, s), pml_tree_step(squared, tid, s);
    levels[q.offsets[q.L - 1] + cell] = partial[0];
    squares[cell] = squared[0];
  }
  const int n = kPmlLevelThreads;
  for (long long i = q.L - 1; i-- > 0;)
    for (int tid = 0; tid < n; ++tid)
      for (long long j = tid; j < q.offsets[i + 1] - q.offsets[i]; j += n) pml_coarsen_cell(q, levels, i, j);
  std::vector<double> sums(static_cast<size_t>(q.L));
  for (long long i = 0; i <= q.L; ++i) {
    for (int tid = 0; tid < n; ++tid)
      partial[tid] = i < q.L ? pml_square_partial(q, levels, i, tid, n)
                             : (q.pixel_weight > 0 ? pml_pixel_partial(q, squares, tid, n) : 0.0);
    for (int s = n / 2; s > 0; s >>= 1)
      for (int tid = 0; tid < n; ++tid) pml_tree_step(partial, tid, s);
    if (i < q.L) sums[static_cast<size_t>(i)] = partial[0];
  }
  pml_finish(q, sums.data(), partial[0], slope, out);
}

/// The backward kernel run on the CPU, block by block and thread by thread (see above).
template <typename storage_t, typename scalar_t>
void pml_cuda_emulated_backward(const PmlParams& q, const double* levels, const double* slope, const scalar_t* upstream,
                                const storage_t* p, const storage_t* t, storage_t* grad_pred, storage_t* grad_target) {
  const int cell_threads = pml_cell_threads((q.H / q.f) * (q.W / q.f));
  const double pixel = q.pixel_weight > 0 ? 2 * q.pixel_weight * static_cast<double>(upstream[0]) / q.pixels : 0.0;
  for (long long cell = 0; cell < q.planes * q.f * q.f; ++cell) {
    const double coefficient = pml_cell_coefficient(q, levels, slope, upstream, cell);
    for (int tid = 0; tid < cell_threads; ++tid)
      pml_write_cell(q, coefficient, pixel, p, t, cell, tid, cell_threads, grad_pred, grad_target);
  }
}

/// The kernels' module (maps of float, double, float16 or bfloat16).
inline constexpr cuda_jit::KernelSource kPmlKernels{"crowdloss_pml", &pml_device_source, &pml_kernels_source,
                                                    /*reads_half=*/true};

/// PML's per-level terms on CUDA maps through the kernels above: as PMLCpuFunction (B×C×H×W maps
/// of one floating dtype, the finest grid dividing H and W; terms or their sum), for maps
/// `pml_cuda_params` accepts; with `summed` and `pixel_weight` > 0 the sum also holds
/// pixel_weight·Σ(pred − target)²/`pixels` (PML's pixel term, folded into the same launches).
/// float16 and bfloat16 maps are read and their gradients written as they are, computed in float:
/// the result is float32 then (the compute dtype), and nothing of the maps' size is allocated
/// besides the gradients. Deterministic.
struct PMLCudaFunction : public torch::autograd::Function<PMLCudaFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& pred, const at::Tensor& target,
                            const std::vector<int64_t>& grids, bool summed, double pixel_weight, int64_t pixels) {
    const auto p = pred.contiguous(), t = target.contiguous();
    PmlParams q = pml_cuda_params(p.sizes(), grids, summed, pixel_weight, pixels);
    TORCH_CHECK(q.planes > 0, "pml_loss: the CUDA kernels cannot take maps of ", p.sizes());
    auto* module = kPmlKernels.find(p.scalar_type(), p.device());
    TORCH_CHECK(module != nullptr, "pml_loss: the CUDA kernels are unavailable");
    const auto f64 = p.options().dtype(at::kDouble);
    const auto L = static_cast<int64_t>(q.L);
    const bool pixel = q.pixel_weight > 0;
    const at::Tensor levels = at::empty({static_cast<int64_t>(q.offsets[L])}, f64), slope = at::empty({L}, f64);
    const at::Tensor squares = pixel ? at::empty({static_cast<int64_t>(q.planes * q.f * q.f)}, f64) : at::Tensor();
    const auto out_options = p.options().dtype(compute_dtype(p));
    const at::Tensor out = summed ? at::empty({}, out_options) : at::empty({L}, out_options);
    void *pp = p.data_ptr(), *tp = t.data_ptr(), *lp = levels.data_ptr(), *qp = pixel ? squares.data_ptr() : nullptr,
         *sp = slope.data_ptr(), *op = out.data_ptr();
    const auto cells = static_cast<unsigned>(q.planes * q.f * q.f);
    const auto threads = static_cast<unsigned>(pml_cell_threads((q.H / q.f) * (q.W / q.f)));
    module->launch("crowdloss_pml_cells", p.device(), cells, threads, {&pp, &tp, &q, &lp, &qp});
    module->launch("crowdloss_pml_levels", p.device(), 1, kPmlLevelThreads, {&q, &lp, &qp, &sp, &op});
    // The maps are kept only for the pixel term's gradient (autograd holds them anyway).
    ctx->save_for_backward(pixel ? std::vector<at::Tensor>{levels, slope, p, t}
                                 : std::vector<at::Tensor>{levels, slope});
    ctx->saved_data["grids"] = at::IValue(grids);
    ctx->saved_data["shape"] = at::IValue(p.sizes().vec());
    ctx->saved_data["dtype"] = static_cast<int64_t>(p.scalar_type());
    ctx->saved_data["summed"] = summed;
    ctx->saved_data["pixel_weight"] = pixel_weight;
    ctx->saved_data["pixels"] = pixels;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    PmlParams q = pml_cuda_params(shape, ctx->saved_data["grids"].toIntVector(), ctx->saved_data["summed"].toBool(),
                                  ctx->saved_data["pixel_weight"].toDouble(), ctx->saved_data["pixels"].toInt());
    const at::Tensor& levels = saved[0];
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const auto upstream = grad_outputs[0].to(compute_dtype(dtype)).contiguous();
    auto* module = kPmlKernels.find(dtype, upstream.device());
    TORCH_CHECK(module != nullptr, "pml_loss: the CUDA kernels are unavailable");
    const auto grad_options = upstream.options().dtype(dtype);
    const at::Tensor grad_pred = at::empty(shape, grad_options);
    const at::Tensor grad_target = ctx->needs_input_grad(1) ? at::empty(shape, grad_options) : at::Tensor();
    const bool pixel = q.pixel_weight > 0;
    void *lp = levels.data_ptr(), *sp = saved[1].data_ptr(), *up = upstream.data_ptr(),
         *pp = pixel ? saved[2].data_ptr() : nullptr, *tp = pixel ? saved[3].data_ptr() : nullptr,
         *gp = grad_pred.data_ptr(), *gt = grad_target.defined() ? grad_target.data_ptr() : nullptr;
    const auto cells = static_cast<unsigned>(q.planes * q.f * q.f);
    const auto threads = static_cast<unsigned>(pml_cell_threads((q.H / q.f) * (q.W / q.f)));
    module->launch("crowdloss_pml_backward", upstream.device(), cells, threads,
                   {&q, &lp, &sp, &up, &pp, &tp, &gp, &gt});
    return {grad_pred, grad_target, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail
}  // namespace crowdloss
