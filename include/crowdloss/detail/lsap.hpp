#pragma once
/// \file
/// The solver core of `linear_sum_assignment`: SciPy 1.10's shortest augmenting path (Crouse 2016,
/// SciPy's `rectangular_lsap`), with two searches for the next augmenting path that give SciPy's
/// answer bit for bit:
///
/// - the dense search does SciPy's work on every column, but loops over all columns in memory
///   order, vectorised (lsap_scan.hpp, compiled per instruction set as simd.hpp describes), where
///   SciPy loops over its shrinking list of remaining columns through an index;
/// - the sparse search is for matrices whose rows are mostly one value (POTO's quality is −1
///   outside the box priors). A column that is free and holds its row's common value in every row
///   the search has visited has the same tentative distance, predecessor and dual (zero) as every
///   other such column, so those columns are kept as one group; only the other entries of the
///   visited rows and the assigned columns are tracked one by one.
///
/// Both compute every reduced cost with SciPy's expression and rounding,
/// `min_val + cost − u[i] − v[j]`, and break ties as SciPy does: by the position of a column in
/// SciPy's `remaining` order (RemainingOrder), so they agree with SciPy on ties as well.
///
/// A port of SciPy's code: Copyright (c) 2001-2002 Enthought, Inc. 2003-2022, SciPy Developers;
/// BSD-3-Clause (notice in THIRD_PARTY_NOTICES.md), which covers this file and lsap_scan.hpp.

#include <crowdloss/assign/assignment.hpp>
#include <crowdloss/detail/simd.hpp>

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace crowdloss {
namespace detail {

// The dense search's loops, once per instruction set (simd.hpp).
namespace lsap_baseline {
#define CROWDLOSS_SIMD_TARGET
#define CROWDLOSS_SIMD_BYTES CROWDLOSS_SIMD_BASELINE_BYTES
#include <crowdloss/detail/lsap_scan.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
}  // namespace lsap_baseline
#if defined(CROWDLOSS_SIMD_AVX2)
namespace lsap_avx2 {
#define CROWDLOSS_SIMD_TARGET __attribute__((target("avx2,fma")))
#define CROWDLOSS_SIMD_BYTES 32
#include <crowdloss/detail/lsap_scan.hpp>
#undef CROWDLOSS_SIMD_TARGET
#undef CROWDLOSS_SIMD_BYTES
}  // namespace lsap_avx2
#endif

/// The problem the solver works on: nr ≤ nc rows, the caller's matrix or its transpose, negated
/// when maximising. Element (i, j) is `sign · data[i·outer + j·inner]`.
template <typename T>
struct WorkingMatrix {
  const T* data;
  int64_t nr, nc, outer, inner;
  double sign;
  double operator()(int64_t i, int64_t j) const { return sign * static_cast<double>(data[i * outer + j * inner]); }
};

/// Which search `solve_lsap` uses: `automatic` picks the sparse one when at most an eighth of the
/// entries differ from their row's common value (and the matrix is not tiny); tests force either.
enum class LsapSearch { automatic, dense, sparse };

/// Duals, the matching, and what one augmenting path leaves for the dual update (SciPy's `solve`).
struct LsapState {
  LsapState(int64_t nr, int64_t nc)
      : u(static_cast<size_t>(nr), 0.0), v(static_cast<size_t>(nc), 0.0),
        shortest(static_cast<size_t>(nc), std::numeric_limits<double>::infinity()), path(static_cast<size_t>(nc), -1),
        col4row(static_cast<size_t>(nr), -1), row4col(static_cast<size_t>(nc), -1) {}
  std::vector<double> u, v;
  /// Per column, its tentative distance and predecessor row when the last search scanned it
  /// (only the scanned columns' entries are current; `augment` reads only those).
  std::vector<double> shortest;
  std::vector<int64_t> path;
  std::vector<int64_t> col4row, row4col;
  /// The rows and columns the last search visited (SciPy's SR and SC, as lists).
  std::vector<int64_t> rows_seen, cols_scanned;
  /// The last search's final minimum.
  double min_val = 0;

  /// Records column j as scanned at distance d. Returns true when j is free (the path's sink);
  /// otherwise the path goes on from j's row, written to `row`.
  bool scan(int64_t j, double d, int64_t& row) {
    shortest[static_cast<size_t>(j)] = d;
    cols_scanned.push_back(j);
    if (row4col[static_cast<size_t>(j)] == -1) return true;
    row = row4col[static_cast<size_t>(j)];
    return false;
  }

  /// After a path from free row `cur` to free column `sink`: SciPy's dual update, then the
  /// matching augmented along the path.
  void augment(int64_t cur, int64_t sink) {
    u[static_cast<size_t>(cur)] += min_val;
    for (const int64_t i : rows_seen)
      if (i != cur)
        u[static_cast<size_t>(i)] += min_val - shortest[static_cast<size_t>(col4row[static_cast<size_t>(i)])];
    for (const int64_t j : cols_scanned) v[static_cast<size_t>(j)] -= min_val - shortest[static_cast<size_t>(j)];
    for (int64_t j = sink;;) {
      const int64_t i = path[static_cast<size_t>(j)];
      row4col[static_cast<size_t>(j)] = i;
      std::swap(col4row[static_cast<size_t>(i)], j);
      if (i == cur) break;
    }
  }
};

/// This machine's physical memory in bytes (+inf where the system does not say).
inline double physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return std::numeric_limits<double>::infinity();
}

/// Throws c10::Error naming `fn` when the nr×nc working problem (nr ≤ nc) needs more memory than
/// this machine has: 64 bytes per column (LsapState's four column arrays, a search's column
/// order and its per-column distances and duals or tracks), 16 per row, and `extra_bytes` (the
/// dense search's copy of the matrix). So a matrix that cannot be solved here — say a 1×2³⁶
/// expanded (stride-0) one, which takes no memory itself — fails at once, before anything is
/// allocated, instead of growing until the system kills the process.
inline void check_lsap_memory(const char* fn, int64_t nr, int64_t nc, double extra_bytes) {
  const double need = 64.0 * static_cast<double>(nc) + 16.0 * static_cast<double>(nr) + extra_bytes;
  const double have = physical_memory_bytes();
  TORCH_CHECK(need <= have, fn, ": a ", nr, "×", nc, " assignment (the shorter side first) needs ", need / 1e9,
              " GB of working memory, more than this machine's ", have / 1e9, " GB");
}

inline void check_lsap_entry(double x, const char* fn) {
  TORCH_CHECK(!std::isnan(x) && x != -std::numeric_limits<double>::infinity(), fn,
              ": matrix contains invalid numeric entries (NaN, -inf, or +inf when maximizing)");
}

/// SciPy's `remaining` order of the columns during one path search, which decides ties: it
/// starts as nc − 1, …, 0, and a scanned column's place is taken by the last remaining one. Kept
/// with its inverse; `restore` undoes one path's removals (cheaper than refilling it).
class RemainingOrder {
 public:
  explicit RemainingOrder(int64_t nc) : order_(static_cast<size_t>(nc)), position_(static_cast<size_t>(nc)), size_(nc) {
    for (int64_t p = 0; p < nc; ++p) {
      order_[static_cast<size_t>(p)] = nc - p - 1;
      position_[static_cast<size_t>(nc - p - 1)] = p;
    }
  }
  /// How many columns remain; they hold positions [0, size()).
  int64_t size() const { return size_; }
  /// The column at position p.
  int64_t column(int64_t p) const { return order_[static_cast<size_t>(p)]; }
  /// Every column's position.
  const int64_t* positions() const { return position_.data(); }
  /// Removes the column at position p.
  void remove(int64_t p) {
    swap(p, --size_);
    removed_.push_back(p);
  }
  /// Puts back every removed column, as before the first removal.
  void restore() {
    for (auto k = removed_.size(); k-- > 0;) swap(removed_[k], size_++);
    removed_.clear();
  }

 private:
  void swap(int64_t p, int64_t q) {
    const int64_t a = order_[static_cast<size_t>(p)], b = order_[static_cast<size_t>(q)];
    order_[static_cast<size_t>(p)] = b;
    order_[static_cast<size_t>(q)] = a;
    position_[static_cast<size_t>(b)] = p;
    position_[static_cast<size_t>(a)] = q;
  }
  std::vector<int64_t> order_, position_, removed_;
  int64_t size_;
};

/// SciPy's augmenting-path search over an nr×nc row-major matrix (see the file comment). Each
/// step relaxes every column from the visited row and takes the least distance
/// (`dense_relax`), then finds which of the columns holding it SciPy would take (`dense_pick`).
/// A scanned column is made inert for the rest of the path: distance +inf, and dual −inf in the
/// search's own copy of the duals. One object serves all paths of one solve, called as
/// `augmenting_path` then `LsapState::augment` for rows 0, 1, …
class DenseSearch {
 public:
  DenseSearch(const double* cost, int64_t nc)
      : cost_(cost), nc_(nc), order_(nc), v_(static_cast<size_t>(nc)), shortest_(static_cast<size_t>(nc)) {
#if defined(CROWDLOSS_SIMD_AVX2)
    if (cpu_capability() == CpuCapability::avx2) {
      relax_ = lsap_avx2::dense_relax;
      pick_ = lsap_avx2::dense_pick;
    }
#endif
  }

  /// The path from free row `cur`: returns the sink column, or −1 when infeasible (the search is
  /// then left mid-path, and the solve ends).
  int64_t augmenting_path(LsapState& s, int64_t cur) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    std::fill(shortest_.begin(), shortest_.end(), inf);
    std::copy(s.v.begin(), s.v.end(), v_.begin());
    s.rows_seen.clear();
    s.cols_scanned.clear();
    double min_val = 0;
    int64_t i = cur, sink = -1;
    while (sink == -1) {
      s.rows_seen.push_back(i);
      const double lowest = relax_(cost_ + i * nc_, v_.data(), shortest_.data(), s.path.data(), nc_, min_val,
                                   s.u[static_cast<size_t>(i)], i);
      if (lowest == inf) return -1;
      const int64_t index = pick_(shortest_.data(), order_.positions(), s.row4col.data(), nc_, lowest);
      const int64_t j = order_.column(index);
      auto& distance = shortest_[static_cast<size_t>(j)];
      min_val = distance;  // this column's value, as SciPy (±0 compare equal)
      if (s.scan(j, distance, i)) sink = j;
      distance = inf;
      v_[static_cast<size_t>(j)] = -inf;
      order_.remove(index);
    }
    order_.restore();
    s.min_val = min_val;
    return sink;
  }

 private:
  const double* cost_;
  int64_t nc_;
  RemainingOrder order_;
  std::vector<double> v_, shortest_;  // the duals with scanned columns at −inf; the distances
  decltype(&lsap_baseline::dense_relax) relax_ = lsap_baseline::dense_relax;
  decltype(&lsap_baseline::dense_pick) pick_ = lsap_baseline::dense_pick;
};

/// The working matrix as, per row, its most common value and the entries that differ from it.
struct SparseRows {
  std::vector<double> common;  ///< per row
  std::vector<int64_t> start;  ///< row i's other entries are [start[i], start[i + 1])
  std::vector<int64_t> cols;
  std::vector<double> values;
};

/// Finds, for rows i0 … i0 + n − 1 of `w`, the entries that differ from `common[s]` (s = row −
/// i0) and checks them (NaN, −inf). A row with more than `max_count` such entries is abandoned
/// and marked in `over`. Contiguous rows are read several at a time (more memory streams read
/// faster than one), a block of each at a time, comparing bits: a block whose bits all equal the
/// common value's is skipped without a floating-point comparison; others are compared value by
/// value (so −0 equals +0).
template <typename T, int64_t lanes>
void find_entries(const WorkingMatrix<T>& w, int64_t i0, int64_t n, const double* common, int64_t max_count,
                  std::vector<int64_t>* cols, std::vector<double>* values, bool* over, const char* fn) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  const auto take = [&](int64_t s, int64_t j) {
    const double x = w(i0 + s, j);
    if (over[s] || x == common[s]) return;
    check_lsap_entry(x, fn);
    if (static_cast<int64_t>(cols[s].size()) == max_count) {
      over[s] = true;
      return;
    }
    cols[s].push_back(j);
    values[s].push_back(x);
  };
  Bits pattern[static_cast<size_t>(lanes)];
  bool by_block[static_cast<size_t>(lanes)];
  for (int64_t s = 0; s < n; ++s) {
    cols[s].clear();
    values[s].clear();
    over[s] = false;
    const double raw = w.sign * common[s];  // sign·x == common ⇔ x == sign·common (sign is ±1)
    const auto raw_t = static_cast<T>(raw);
    std::memcpy(&pattern[s], &raw_t, sizeof(T));
    by_block[s] = w.inner == 1 && !std::isnan(raw) && static_cast<double>(raw_t) == raw;
  }
  // Bitwise OR of x[k] ^ pattern over [0, count): zero when every bit pattern matches.
  const auto differs = [](const T* x, int64_t count, Bits pattern) {
    Bits d = 0;
    for (int64_t k = 0; k < count; ++k) {
      Bits b;
      std::memcpy(&b, x + k, sizeof(T));
      d |= b ^ pattern;
    }
    return d;
  };
  int64_t j0 = 0;
  if (std::all_of(by_block, by_block + n, [](bool b) { return b; })) {
    constexpr int64_t block = 32, sub = 8;
    for (; j0 + block <= w.nc; j0 += block) {
      for (int64_t s = 0; s < n; ++s) {
        const T* x = w.data + (i0 + s) * w.outer + j0;
        if (differs(x, block, pattern[s]) == 0) continue;
        for (int64_t k0 = 0; k0 < block; k0 += sub) {
          if (differs(x + k0, sub, pattern[s]) == 0) continue;
          for (int64_t k = k0; k < k0 + sub; ++k)
            if (differs(x + k, 1, pattern[s]) != 0) take(s, j0 + k);
        }
      }
    }
  }
  for (int64_t s = 0; s < n; ++s)
    for (int64_t j = j0; j < w.nc; ++j) take(s, j);
}

/// Splits the rows of `w` for the sparse search and checks every entry (NaN, −inf). A row's common
/// value is guessed as the previous rows' (a majority vote when that guess leaves more than half
/// the row). Rows are split in parallel (`at::parallel_for`). Returns false, stopping early, once
/// more than `limit` entries differ.
template <typename T>
bool split_rows(const WorkingMatrix<T>& w, int64_t limit, SparseRows& out, const char* fn) {
  constexpr int64_t lanes = 4;
  std::vector<std::vector<int64_t>> cols(static_cast<size_t>(w.nr));
  std::vector<std::vector<double>> values(static_cast<size_t>(w.nr));
  out.common.assign(static_cast<size_t>(w.nr), 0.0);
  std::atomic<int64_t> total{0};
  at::parallel_for(0, w.nr, 16, [&](int64_t begin, int64_t end) {
    bool over[lanes];
    double common[lanes];
    for (int64_t i0 = begin; i0 < end && total.load(std::memory_order_relaxed) <= limit; i0 += lanes) {
      const int64_t n = std::min(lanes, end - i0);
      std::fill(common, common + n, i0 > begin ? out.common[static_cast<size_t>(i0 - 1)] : w(i0, 0));
      find_entries<T, lanes>(w, i0, n, common, w.nc / 2, &cols[static_cast<size_t>(i0)],
                             &values[static_cast<size_t>(i0)], over, fn);
      for (int64_t s = 0; s < n; ++s) {
        const auto i = static_cast<size_t>(i0 + s);
        if (over[s]) {  // Boyer–Moore majority vote, then the row again
          int64_t votes = 0;
          for (int64_t j = 0; j < w.nc; ++j) {
            const double x = w(i0 + s, j);
            if (votes == 0) common[s] = x;
            votes += x == common[s] ? 1 : -1;
          }
          find_entries<T, 1>(w, i0 + s, 1, common + s, w.nc, &cols[i], &values[i], over + s, fn);
        }
        if (static_cast<int64_t>(cols[i].size()) < w.nc) check_lsap_entry(common[s], fn);  // it occurs
        out.common[i] = common[s];
        total += static_cast<int64_t>(cols[i].size());
      }
    }
  });
  if (total > limit) return false;
  out.start.assign(1, 0);
  out.cols.clear();
  out.values.clear();
  out.cols.reserve(static_cast<size_t>(total));
  out.values.reserve(static_cast<size_t>(total));
  for (size_t i = 0; i < cols.size(); ++i) {
    out.cols.insert(out.cols.end(), cols[i].begin(), cols[i].end());
    out.values.insert(out.values.end(), values[i].begin(), values[i].end());
    out.start.push_back(static_cast<int64_t>(out.cols.size()));
  }
  return true;
}

/// SciPy's augmenting-path search over `SparseRows`, visiting only the tracked columns (see the
/// file comment). One object serves all paths of one solve, called as `augmenting_path` then
/// `LsapState::augment` for rows 0, 1, …
///
/// Tracked columns live in slots, so the per-step loops run over short contiguous arrays: slots
/// [0, assigned) hold the assigned columns (kept from path to path with their duals), the rest the
/// free columns the current path has met. A scanned slot gets distance +inf and dual −inf, so that
/// every later reduced cost is +inf and it neither updates nor wins the minimum.
class SparseSearch {
 public:
  SparseSearch(const SparseRows& rows, int64_t nc)
      : rows_(rows), nc_(nc), order_(nc), track_(static_cast<size_t>(nc), Track{-1, 0}) {}

  /// The path from free row `cur`: returns the sink column, or −1 when infeasible (the search is
  /// then left mid-path, and the solve ends).
  int64_t augmenting_path(LsapState& s, int64_t cur) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    // The last path's sink is assigned now (it had one of that path's free slots, so the first
    // of them exists), and the columns it scanned have new duals.
    if (!s.cols_scanned.empty()) {
      const int64_t sink = s.cols_scanned.back();
      track_[static_cast<size_t>(sink)] = Track{kAssigned, assigned_};
      col_[static_cast<size_t>(assigned_++)] = sink;
    }
    // Drop the other free slots; the duals are refreshed just below.
    col_.resize(static_cast<size_t>(assigned_));
    path_row_.resize(static_cast<size_t>(assigned_));
    for (auto* a : {&v_, &short_, &cost_}) a->resize(static_cast<size_t>(assigned_));
    for (const int64_t j : s.cols_scanned)
      v_[static_cast<size_t>(track_[static_cast<size_t>(j)].slot)] = s.v[static_cast<size_t>(j)];
    std::fill(short_.begin(), short_.end(), inf);
    s.rows_seen.clear();
    s.cols_scanned.clear();
    group_short_ = inf;
    group_path_ = -1;
    group_size_ = nc_ - assigned_;
    double min_val = 0;
    int64_t i = cur, sink = -1;
    while (sink == -1) {
      s.rows_seen.push_back(i);
      const auto begin = rows_.start[static_cast<size_t>(i)], end = rows_.start[static_cast<size_t>(i) + 1];
      for (auto k = begin; k < end; ++k) slot(rows_.cols[static_cast<size_t>(k)], cur);
      const double ui = s.u[static_cast<size_t>(i)], common = rows_.common[static_cast<size_t>(i)];
      std::fill(cost_.begin(), cost_.end(), common);
      for (auto k = begin; k < end; ++k)
        cost_[static_cast<size_t>(track_[static_cast<size_t>(rows_.cols[static_cast<size_t>(k)])].slot)] =
            rows_.values[static_cast<size_t>(k)];
      double lowest = inf;
      const auto slots = static_cast<int64_t>(col_.size());
      for (int64_t k = 0; k < slots; ++k) {
        const double r = min_val + cost_[static_cast<size_t>(k)] - ui - v_[static_cast<size_t>(k)];
        if (r < short_[static_cast<size_t>(k)]) {
          path_row_[static_cast<size_t>(k)] = i;
          short_[static_cast<size_t>(k)] = r;
        }
        lowest = std::min(lowest, short_[static_cast<size_t>(k)]);
      }
      if (group_size_ > 0) {
        const double r = min_val + common - ui - 0.0;  // a free column's dual is zero
        if (r < group_short_) {
          group_path_ = i;
          group_short_ = r;
        }
        lowest = std::min(lowest, group_short_);
      }
      if (lowest == inf) return -1;
      // SciPy's scan keeps the first position holding the minimum, unless a later position holds
      // a free column with the minimum: then the last such position.
      int64_t first = order_.size(), last_free = -1;
      for (int64_t k = 0; k < slots; ++k) {
        if (!(short_[static_cast<size_t>(k)] == lowest)) continue;
        const int64_t p = order_.positions()[col_[static_cast<size_t>(k)]];
        first = std::min(first, p);
        if (k >= assigned_) last_free = std::max(last_free, p);
      }
      if (group_size_ > 0 && group_short_ == lowest) {
        int64_t p = 0, q = order_.size() - 1;
        while (tracked(order_.column(p), cur)) ++p;
        while (tracked(order_.column(q), cur)) --q;
        first = std::min(first, p);
        last_free = std::max(last_free, q);
      }
      const int64_t index = std::max(first, last_free);
      const int64_t j = order_.column(index);
      const auto k = static_cast<size_t>(slot(j, cur));
      min_val = short_[k];
      s.path[static_cast<size_t>(j)] = path_row_[k];
      if (s.scan(j, short_[k], i)) sink = j;
      short_[k] = inf;
      v_[k] = -inf;
      order_.remove(index);
    }
    order_.restore();
    s.min_val = min_val;
    return sink;
  }

 private:
  // Who tracks a column: `path` is kAssigned for an assigned column, else the free row whose
  // path last tracked it; `slot` is its slot there.
  struct Track {
    int64_t path, slot;
  };
  static constexpr int64_t kAssigned = -2;

  bool tracked(int64_t j, int64_t cur) const {
    const int64_t path = track_[static_cast<size_t>(j)].path;
    return path == cur || path == kAssigned;
  }
  // Column j's slot in path `cur`; a free column met for the first time gets a new one holding
  // the group's state.
  int64_t slot(int64_t j, int64_t cur) {
    if (tracked(j, cur)) return track_[static_cast<size_t>(j)].slot;
    const auto k = static_cast<int64_t>(col_.size());
    track_[static_cast<size_t>(j)] = Track{cur, k};
    col_.push_back(j);
    v_.push_back(0.0);
    short_.push_back(group_short_);
    path_row_.push_back(group_path_);
    cost_.push_back(0.0);
    --group_size_;
    return k;
  }

  const SparseRows& rows_;
  int64_t nc_;
  RemainingOrder order_;
  std::vector<Track> track_;
  // Per slot: column, dual, tentative distance and its row, the visited row's entry.
  std::vector<int64_t> col_, path_row_;
  std::vector<double> v_, short_, cost_;
  int64_t assigned_ = 0, group_size_ = 0, group_path_ = -1;
  double group_short_ = 0;
};

/// SciPy's `solve` loop: a path from each row in turn, then the duals and matching updated.
template <typename Search>
std::vector<int64_t> solve_paths(Search& search, LsapState& s, int64_t nr, const char* fn) {
  for (int64_t cur = 0; cur < nr; ++cur) {
    const int64_t sink = search.augmenting_path(s, cur);
    TORCH_CHECK(sink >= 0, fn, ": cost matrix is infeasible (no complete assignment avoids the +inf entries)");
    s.augment(cur, sink);
  }
  return s.col4row;
}

/// col4row of the nr×nc working problem (nr ≤ nc) given as `rows`, whose entries have been
/// checked (NaN, −inf), by the sparse search: for callers that know their matrix's sparsity and
/// never build it (poto_assign); SciPy's answer for the matrix the rows describe.
inline std::vector<int64_t> sparse_matching(const SparseRows& rows, int64_t nr, int64_t nc, const char* fn) {
  check_lsap_memory(fn, nr, nc, 0);
  LsapState s(nr, nc);
  SparseSearch search(rows, nc);
  return solve_paths(search, s, nr, fn);
}

/// The optimal matching of the working problem `w` (SciPy's `solve` after its transposition and
/// negation): col4row. Rejects NaN and −inf entries and reports infeasibility; `fn` names the
/// caller in error messages.
template <typename T>
std::vector<int64_t> lsap_matching(const WorkingMatrix<T>& w, const char* fn, LsapSearch search) {
  const int64_t nr = w.nr, nc = w.nc;
  check_lsap_memory(fn, nr, nc, 0);
  SparseRows sparse;
  const bool use_sparse = search == LsapSearch::sparse ||
                          (search == LsapSearch::automatic && nc >= 256 && split_rows(w, nr * nc / 8, sparse, fn));
  if (use_sparse) {
    if (search == LsapSearch::sparse) split_rows(w, nr * nc, sparse, fn);
    return sparse_matching(sparse, nr, nc, fn);
  }
  // The dense search wants an nr×nc row-major double matrix: the caller's memory when it already
  // is one, else a copy.
  std::vector<double> copy;
  const double* cost = reinterpret_cast<const double*>(w.data);
  if (!std::is_same<T, double>::value || w.sign < 0 || w.inner != 1 || w.outer != nc) {
    check_lsap_memory(fn, nr, nc, 8.0 * static_cast<double>(nr) * static_cast<double>(nc));
    copy.resize(static_cast<size_t>(nr * nc));
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j) copy[static_cast<size_t>(i * nc + j)] = w(i, j);
    cost = copy.data();
  }
  for (int64_t k = 0; k < nr * nc; ++k) check_lsap_entry(cost[k], fn);
  LsapState s(nr, nc);
  DenseSearch searcher(cost, nc);
  return solve_paths(searcher, s, nr, fn);
}

/// A read-only R×C matrix with arbitrary element strides (float or double).
template <typename T>
struct CostView {
  const T* data;
  int64_t rows, cols, row_stride, col_stride;
  double at(int64_t r, int64_t c) const { return static_cast<double>(data[r * row_stride + c * col_stride]); }
};

/// Solves the assignment for `view` as SciPy's `solve` does: transposed when it has more rows
/// than columns, negated for `maximize`; reports the pairs by ascending row. `fn` names the caller
/// in error messages; `search` is for tests (see `LsapSearch`).
template <typename T>
Assignment solve_lsap(const CostView<T>& view, bool maximize, const char* fn,
                      LsapSearch search = LsapSearch::automatic) {
  Assignment result;
  if (view.rows == 0 || view.cols == 0) return result;
  const bool transpose = view.cols < view.rows;
  const WorkingMatrix<T> w{view.data,
                           transpose ? view.cols : view.rows,
                           transpose ? view.rows : view.cols,
                           transpose ? view.col_stride : view.row_stride,
                           transpose ? view.row_stride : view.col_stride,
                           maximize ? -1.0 : 1.0};
  const std::vector<int64_t> col4row = lsap_matching(w, fn, search);
  const auto n = col4row.size();
  result.rows.resize(n);
  result.cols.resize(n);
  if (transpose) {  // working rows are original columns: report by ascending original row
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return col4row[static_cast<size_t>(a)] < col4row[static_cast<size_t>(b)]; });
    for (size_t k = 0; k < n; ++k) {
      result.rows[k] = col4row[static_cast<size_t>(order[k])];
      result.cols[k] = order[k];
    }
  } else {
    std::iota(result.rows.begin(), result.rows.end(), 0);
    result.cols = col4row;
  }
  for (size_t k = 0; k < n; ++k) result.cost += view.at(result.rows[k], result.cols[k]);
  return result;
}

}  // namespace detail
}  // namespace crowdloss
