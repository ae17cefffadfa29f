#pragma once
/// \file
/// The CUDA kernels of `nms` and `batched_nms` (behind `cuda_kernels_enabled`, docs/gpu.md):
/// the greedy scan of the CPU kernel (detail/nms_cpu.hpp) with its arithmetic, in two launches —
/// - `crowdloss_nms_mask`: one block of 64 threads per 64×64 tile of the pairs (i, j), i < j,
///   on or above the diagonal; thread r writes the 64-bit word of the tile's columns that box
///   i = 64·row_tile + r suppresses (IoU above the threshold, and the same class where classes
///   are given);
/// - `crowdloss_nms_scan`: one block walks the boxes 64 at a time in the order of visit: one
///   thread resolves the 64 boxes against each other from the diagonal words, then every thread
///   ORs the kept boxes' rows into the words of the removed set it owns; it writes a keep flag
///   per box.
/// No host round trip until the caller reads the kept positions (one `nonzero`); the mask takes
/// n·⌈n/64⌉ words (32 MiB for 16,384 boxes), so `kNmsMaxBoxes` caps n and more boxes take the
/// ATen path, whose memory is bounded. The per-thread code is `CROWDLOSS_DEVICE_CODE`, so
/// `nms_cuda_emulated` runs it on the CPU block by block and thread by thread, for the tests.

#include <crowdloss/cuda_kernels.hpp>
#include <crowdloss/detail/cuda_storage.hpp>

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace crowdloss {
namespace detail {

// clang-format off
CROWDLOSS_DEVICE_CODE(nms_device_source,

/* Boxes per mask word and tile; the most mask words per row (so the most boxes, 64·1024) the scan's
   shared memory holds; the scan's threads. */
enum { kNmsTile = 64, kNmsMaxWords = 1024, kNmsScanThreads = 256 };

/* A launch: n boxes in the order of visit, words = ⌈n / 64⌉ mask words per box, threshold a value of
   the boxes' type (nms_dispatch's, so that the comparison in that type is torchvision's). */
struct NmsParams {
  long long n, words;
  double threshold;
};

/* Whether box b (x1, y1, x2, y2) overlaps the visited box a by an IoU above the threshold: the CPU
   kernel's operations in its order (nms_scan.hpp), max(u, v) as u < v ? v : u and min(u, v) as
   v < u ? v : u, so NaN and empty boxes behave as there. */
template <typename scalar_t>
CROWDLOSS_HD bool nms_suppresses(const scalar_t* a, const scalar_t* b, scalar_t threshold) {
  const scalar_t zero = 0;
  const scalar_t lx = a[0] < b[0] ? b[0] : a[0], ly = a[1] < b[1] ? b[1] : a[1];
  const scalar_t rx = b[2] < a[2] ? b[2] : a[2], ry = b[3] < a[3] ? b[3] : a[3];
  const scalar_t dx = rx - lx, dy = ry - ly;
  const scalar_t w = zero < dx ? dx : zero, h = zero < dy ? dy : zero;
  const scalar_t inter = w * h;
  const scalar_t area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return inter / ((area_a + area_b) - inter) > threshold;
}

/* Boxes in tile `tile` (at most 64; fewer in the last). */
CROWDLOSS_HD int nms_tile_count(const NmsParams& q, long long tile) {
  const long long left = q.n - tile * kNmsTile;
  return left < kNmsTile ? static_cast<int>(left) : kNmsTile;
}

/* Mask tile `block` of words × words in row-major order: its row tile and column tile, and whether
   the scan reads it (the column tile on or after the row tile). */
CROWDLOSS_HD bool nms_mask_tile(const NmsParams& q, long long block, long long* row_tile, long long* col_tile) {
  *row_tile = block / q.words;
  *col_tile = block % q.words;
  return *col_tile >= *row_tile;
}

/* Thread r's share of loading column tile `col_tile` into shared memory: box 64·col_tile + r and its
   class (0 without classes). */
template <typename scalar_t>
CROWDLOSS_HD void nms_load_column(const NmsParams& q, const scalar_t* boxes, const long long* classes,
                                  long long col_tile, int r, scalar_t* column, long long* column_classes) {
  if (r >= nms_tile_count(q, col_tile)) return;
  const long long j = col_tile * kNmsTile + r;
  for (int c = 0; c < 4; ++c) column[4 * r + c] = boxes[4 * j + c];
  column_classes[r] = classes ? classes[j] : 0;
}

/* Thread r's mask word of the tile: bit k set where box i = 64·row_tile + r suppresses box
   j = 64·col_tile + k (j after i, the same class); written to mask[i·words + col_tile]. */
template <typename scalar_t>
CROWDLOSS_HD void nms_mask_word(const NmsParams& q, const scalar_t* boxes, const long long* classes, long long row_tile,
                                long long col_tile, int r, const scalar_t* column, const long long* column_classes,
                                unsigned long long* mask) {
  if (r >= nms_tile_count(q, row_tile)) return;
  const long long i = row_tile * kNmsTile + r;
  const scalar_t* a = boxes + 4 * i;
  const long long own = classes ? classes[i] : 0;
  const scalar_t threshold = static_cast<scalar_t>(q.threshold);
  const int count = nms_tile_count(q, col_tile);
  unsigned long long word = 0;
  for (int k = col_tile == row_tile ? r + 1 : 0; k < count; ++k)
    if (column_classes[k] == own && nms_suppresses(a, column + 4 * k, threshold)) word |= 1ull << k;
  mask[i * q.words + col_tile] = word;
}

/* Thread r's diagonal word of tile `tile` for the scan (0 past the last box). */
CROWDLOSS_HD unsigned long long nms_diagonal_word(const NmsParams& q, const unsigned long long* mask, long long tile,
                                                  int r) {
  return r < nms_tile_count(q, tile) ? mask[(tile * kNmsTile + r) * q.words + tile] : 0ull;
}

/* The greedy scan within tile `tile`, whose boxes `removed` (its word of the removed set) marks as
   suppressed by earlier tiles: returns the bits of the boxes kept. */
CROWDLOSS_HD unsigned long long nms_resolve_tile(const NmsParams& q, long long tile, const unsigned long long* diagonal,
                                                 unsigned long long removed) {
  unsigned long long kept = 0;
  const int count = nms_tile_count(q, tile);
  for (int k = 0; k < count; ++k)
    if (!((removed >> k) & 1ull)) {
      kept |= 1ull << k;
      removed |= diagonal[k];
    }
  return kept;
}

/* Thread tid (of n) ORs the rows of tile `tile`'s kept boxes into its words of the removed set
   after the tile: words tile + 1 + tid, tile + 1 + tid + n, …, each gathered in a register (the
   kept rows' loads of a word do not wait for one another) and stored once. */
CROWDLOSS_HD void nms_remove_after(const NmsParams& q, const unsigned long long* mask, long long tile,
                                   unsigned long long kept, unsigned long long* removed, int tid, int n) {
  if (kept == 0) return;
  for (long long w = tile + 1 + tid; w < q.words; w += n) {
    const unsigned long long* column = mask + tile * kNmsTile * q.words + w;
    unsigned long long word = removed[w];
    for (int k = 0; k < kNmsTile; ++k)
      if ((kept >> k) & 1ull) word |= column[k * q.words];
    removed[w] = word;
  }
}

/* Thread r's keep flag of tile `tile`. */
CROWDLOSS_HD void nms_write_keep(const NmsParams& q, long long tile, unsigned long long kept, int r,
                                 unsigned char* keep) {
  if (r < nms_tile_count(q, tile)) keep[tile * kNmsTile + r] = static_cast<unsigned char>((kept >> r) & 1ull);
}

)  // CROWDLOSS_DEVICE_CODE
// clang-format on

/// The kernels: the device code above between the blocks' barriers. `nms_cuda_emulated` mirrors
/// them phase by phase; keep the two in step.
inline const char* nms_kernels_source() {
  return R"(
extern "C" __global__ void __launch_bounds__(64) crowdloss_nms_mask(NmsParams q, const CROWDLOSS_SCALAR* boxes,
                                                                   const long long* classes, unsigned long long* mask) {
  __shared__ CROWDLOSS_SCALAR column[4 * kNmsTile];
  __shared__ long long column_classes[kNmsTile];
  long long row_tile = 0, col_tile = 0;
  if (!nms_mask_tile(q, blockIdx.x, &row_tile, &col_tile)) return;
  nms_load_column(q, boxes, classes, col_tile, threadIdx.x, column, column_classes);
  __syncthreads();
  nms_mask_word(q, boxes, classes, row_tile, col_tile, threadIdx.x, column, column_classes, mask);
}

extern "C" __global__ void __launch_bounds__(256) crowdloss_nms_scan(NmsParams q, const unsigned long long* mask,
                                                                    unsigned char* keep) {
  __shared__ unsigned long long removed[kNmsMaxWords], diagonal[kNmsTile], kept;
  const int tid = threadIdx.x, n = blockDim.x;
  for (long long w = tid; w < q.words; w += n) removed[w] = 0;
  for (long long tile = 0; tile < q.words; ++tile) {
    if (tid < kNmsTile) diagonal[tid] = nms_diagonal_word(q, mask, tile, tid);
    __syncthreads();
    if (tid == 0) kept = nms_resolve_tile(q, tile, diagonal, removed[tile]);
    __syncthreads();
    const unsigned long long bits = kept;
    nms_remove_after(q, mask, tile, bits, removed, tid, n);
    if (tid < kNmsTile) nms_write_keep(q, tile, bits, tid, keep);
  }
}
)";
}

/// The most boxes the kernels take: the scan's removed set is kNmsMaxWords words of shared memory.
constexpr int64_t kNmsMaxBoxes = int64_t{kNmsTile} * kNmsMaxWords;

/// The sizes of a launch on n boxes with the threshold (a value of the boxes' dtype).
inline NmsParams nms_cuda_params(int64_t n, double threshold) {
  return NmsParams{n, (n + kNmsTile - 1) / kNmsTile, threshold};
}

/// Both kernels run on the CPU in the kernels' order, block by block and thread by thread (tests
/// compare them with the CPU kernel): `boxes` n×4 row-major, `classes` n or null; sets keep[i]
/// to 1 for the kept boxes, 0 for the others. The mask starts all ones, so that a word the scan
/// read without the mask kernel having written it would show as suppressed boxes.
template <typename scalar_t>
void nms_cuda_emulated(const NmsParams& q, const scalar_t* boxes, const long long* classes, unsigned char* keep) {
  std::vector<unsigned long long> mask(static_cast<size_t>(q.n * q.words), ~0ull);
  scalar_t column[4 * kNmsTile];
  long long column_classes[kNmsTile];
  for (long long block = 0; block < q.words * q.words; ++block) {
    long long row_tile = 0, col_tile = 0;
    if (!nms_mask_tile(q, block, &row_tile, &col_tile)) continue;
    for (int r = 0; r < kNmsTile; ++r) nms_load_column(q, boxes, classes, col_tile, r, column, column_classes);
    for (int r = 0; r < kNmsTile; ++r)
      nms_mask_word(q, boxes, classes, row_tile, col_tile, r, column, column_classes, mask.data());
  }
  std::vector<unsigned long long> removed(static_cast<size_t>(q.words), 0ull), diagonal(kNmsTile);
  for (long long tile = 0; tile < q.words; ++tile) {
    for (int r = 0; r < kNmsTile; ++r) diagonal[static_cast<size_t>(r)] = nms_diagonal_word(q, mask.data(), tile, r);
    const unsigned long long kept = nms_resolve_tile(q, tile, diagonal.data(), removed[static_cast<size_t>(tile)]);
    for (int tid = 0; tid < kNmsScanThreads; ++tid)
      nms_remove_after(q, mask.data(), tile, kept, removed.data(), tid, kNmsScanThreads);
    for (int r = 0; r < kNmsTile; ++r) nms_write_keep(q, tile, kept, r, keep);
  }
}

/// The kernels' module (float or double).
inline constexpr cuda_jit::KernelSource kNmsKernels{"crowdloss_nms", &nms_device_source, &nms_kernels_source,
                                                    /*reads_half=*/false};

/// Whether nms_cuda takes these boxes (sorted, in the compute dtype): the kernels are enabled
/// (`cuda_kernels_enabled`), the boxes are on CUDA, at most kNmsMaxBoxes, and the kernels
/// compile here.
inline bool nms_cuda_takes(const at::Tensor& sorted) {
  return cuda_kernels_enabled() && sorted.is_cuda() && sorted.size(0) > 0 && sorted.size(0) <= kNmsMaxBoxes &&
         kNmsKernels.find(sorted.scalar_type(), sorted.device()) != nullptr;
}

/// The CUDA path of nms_dispatch where nms_cuda_takes says so: as nms_cpu and nms_aten (`sorted`
/// N×4 in the order of visit, float or double; `sorted_classes` or undefined; `threshold` a
/// value of sorted's dtype), returning the kept positions in that order, ascending, as an int64
/// tensor on the boxes' device.
inline at::Tensor nms_cuda(const at::Tensor& sorted, const at::Tensor& sorted_classes, double threshold) {
  const auto boxes = sorted.contiguous();
  const auto classes = sorted_classes.defined() ? sorted_classes.to(at::kLong).contiguous() : at::Tensor();
  NmsParams q = nms_cuda_params(boxes.size(0), threshold);
  auto* module = kNmsKernels.find(boxes.scalar_type(), boxes.device());
  TORCH_CHECK(module != nullptr, "nms: the CUDA kernels are unavailable");
  // Words below the diagonal tiles are never written nor read.
  const auto mask = at::empty({q.n * q.words}, boxes.options().dtype(at::kLong));
  const auto keep = at::empty({q.n}, boxes.options().dtype(at::kByte));
  void *bp = boxes.data_ptr(), *cp = classes.defined() ? classes.data_ptr() : nullptr, *mp = mask.data_ptr(),
       *kp = keep.data_ptr();
  module->launch("crowdloss_nms_mask", boxes.device(), static_cast<unsigned>(q.words * q.words), kNmsTile,
                 {&q, &bp, &cp, &mp});
  module->launch("crowdloss_nms_scan", boxes.device(), 1, kNmsScanThreads, {&q, &mp, &kp});
  return keep.nonzero().squeeze(1);
}

}  // namespace detail
}  // namespace crowdloss
