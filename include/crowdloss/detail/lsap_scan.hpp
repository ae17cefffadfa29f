// The dense search's two loops over the columns (lsap.hpp), written once and included by it once
// per instruction set (simd.hpp), each time into its own namespace with CROWDLOSS_SIMD_TARGET and
// CROWDLOSS_SIMD_BYTES defined. Hence no include guard and no library includes here (but
// simd_ops.hpp, written the same way): lsap.hpp includes what this needs before it.
// Part of the port of SciPy's solver: BSD-3-Clause, SciPy's notice in THIRD_PARTY_NOTICES.md.

#include <crowdloss/detail/simd_ops.hpp>

/// shortest[j…] and path[j…] relaxed from row i for one vector of columns, and the running
/// minimum `low` taken over the result (see dense_relax).
template <typename V, typename I>
CROWDLOSS_SIMD_TARGET inline V relax_lanes(const double* row, const double* v, double* shortest, int64_t* path,
                                           int64_t j, V min_val, V ui, I i, V low) {
  const V r = min_val + load(row + j) - ui - load(v + j);  // ((min_val + c) − u) − v, as SciPy
  V h = load(shortest + j);
  I p = load(path + j);
  const auto better = r < h;
  h = better ? r : h;
  p = better ? i : p;
  store(shortest + j, h);
  store(path + j, p);
  return h < low ? h : low;
}

/// One step of SciPy's search from row i, over all n columns at once: r = min_val + row[j] −
/// ui − v[j] with SciPy's rounding, and where r < shortest[j], shortest[j] = r and path[j] = i.
/// Returns the least shortest[j] afterwards. A scanned column has v = −inf and shortest = +inf,
/// so r is +inf (or NaN, where min_val + c − ui overflowed to −inf): it neither changes nor wins.
CROWDLOSS_SIMD_TARGET inline double dense_relax(const double* row, const double* v, double* shortest, int64_t* path,
                                                int64_t n, double min_val, double ui, int64_t i) {
  constexpr int64_t w = Simd<double>::size;
  constexpr double inf = std::numeric_limits<double>::infinity();
  const auto mv = broadcast(min_val), u = broadcast(ui), low_init = broadcast(inf);
  const auto iv = broadcast(i);
  auto low0 = low_init, low1 = low_init;  // two running minima, for two chains of dependence
  int64_t j = 0;
  for (; j + 2 * w <= n; j += 2 * w) {
    low0 = relax_lanes(row, v, shortest, path, j, mv, u, iv, low0);
    low1 = relax_lanes(row, v, shortest, path, j + w, mv, u, iv, low1);
  }
  if (j + w <= n) {
    low0 = relax_lanes(row, v, shortest, path, j, mv, u, iv, low0);
    j += w;
  }
  low0 = low1 < low0 ? low1 : low0;
  double lowest = inf;
  for (int64_t k = 0; k < w; ++k) lowest = std::min(lowest, static_cast<double>(lane(low0, k)));
  for (; j < n; ++j) {
    const double r = min_val + row[j] - ui - v[j];
    if (r < shortest[j]) {
      shortest[j] = r;
      path[j] = i;
    }
    lowest = std::min(lowest, shortest[j]);
  }
  return lowest;
}

/// SciPy's choice among the columns whose shortest equals `lowest` (at least one does): SciPy
/// keeps the first of them in its remaining order, unless a free column (row4col = −1) among
/// them comes later, and then the last such. Returns the chosen column's position in that order
/// (`position[j]`). Blocks of columns with no such value are skipped a few vectors at a time.
CROWDLOSS_SIMD_TARGET inline int64_t dense_pick(const double* shortest, const int64_t* position, const int64_t* row4col,
                                                int64_t n, double lowest) {
  constexpr int64_t w = Simd<double>::size, block = 4 * w;
  const auto target = broadcast(lowest);
  int64_t first = n, last_free = -1;
  for (int64_t j0 = 0; j0 < n; j0 += block) {
    const int64_t end = std::min(j0 + block, n);
    if (end - j0 == block) {
      const auto hit = (load(shortest + j0) == target) | (load(shortest + j0 + w) == target) |
                       (load(shortest + j0 + 2 * w) == target) | (load(shortest + j0 + 3 * w) == target);
      if (!any_lane(hit)) continue;
    }
    for (int64_t j = j0; j < end; ++j) {
      if (!(shortest[j] == lowest)) continue;
      first = std::min(first, position[j]);
      if (row4col[j] == -1) last_free = std::max(last_free, position[j]);
    }
  }
  return std::max(first, last_free);
}
