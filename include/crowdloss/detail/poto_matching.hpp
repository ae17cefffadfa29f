#pragma once
/// \file
/// POTO's quality and its one-to-one matching: the quality expression, the prior's pairs with
/// their quality, the G×A matrix they make, and the matching on them on the host (Hungarian
/// without that matrix through the sparse search of detail/lsap.hpp, or argmax).

#include <crowdloss/detail/lsap.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace crowdloss {
namespace detail {

/// DeFCN's quality prob^(1−α)·IoU^α, elementwise.
inline at::Tensor quality_of(const at::Tensor& prob, const at::Tensor& iou, double alpha) {
  return prob.pow(1 - alpha) * iou.pow(alpha);
}

/// The pairs (g, a) of POTO's spatial prior, in row-major order, and their quality: the entries
/// of POTO's quality matrix that are not −1.
struct POTOPairs {
  at::Tensor g, a, values;
};

/// POTO's G×A quality matrix from its pairs: −1 elsewhere.
inline at::Tensor quality_matrix(const POTOPairs& p, int64_t G, int64_t A) {
  auto quality = at::full({G, A}, -1.0, p.values.options());
  return quality.index_put_({p.g, p.a}, p.values);
}

/// POTO's matching of one image on the host, from its prior pairs: g[k], a[k] and quality v[k]
/// for k < n, in row-major order; G gts, A anchors. Returns the anchor of each gt (−1: none).
/// - `argmax`: each gt's best anchor, the first on ties (NaN counts as the best), −1 without pairs:
///   `quality_matrix(…).max(1)`'s.
/// - Hungarian, G ≤ A: the working rows (maximised, so negated: +1 but at the pairs) go to the
///   LSA's sparse search as they are, without the G×A matrix.
/// - Hungarian, G > A: the dense solve of the G×A matrix; the gts left over get −1.
/// Both Hungarian answers are `linear_sum_assignment(quality_matrix(…), true)`'s, SciPy's.
inline std::vector<int64_t> poto_match(const int64_t* g, const int64_t* a, const double* v, int64_t n, int64_t G,
                                       int64_t A, bool argmax) {
  std::vector<int64_t> anchors(static_cast<size_t>(G), -1);
  if (argmax) {
    std::vector<double> best(static_cast<size_t>(G), -1.0);
    for (int64_t k = 0; k < n; ++k) {
      const auto row = static_cast<size_t>(g[k]);
      if (std::isnan(best[row])) continue;
      if (std::isnan(v[k]) || v[k] > best[row]) best[row] = v[k], anchors[row] = a[k];
    }
    return anchors;
  }
  if (G > A) {
    std::vector<double> dense(static_cast<size_t>(G * A), -1.0);
    for (int64_t k = 0; k < n; ++k) dense[static_cast<size_t>(g[k] * A + a[k])] = v[k];
    const auto solved = solve_lsap<double>({dense.data(), G, A, A, 1}, /*maximize=*/true, "poto_assign");
    for (size_t k = 0; k < solved.rows.size(); ++k) anchors[static_cast<size_t>(solved.rows[k])] = solved.cols[k];
    return anchors;
  }
  SparseRows rows;
  rows.common.assign(static_cast<size_t>(G), 1.0);
  rows.start.assign(static_cast<size_t>(G) + 1, 0);
  rows.cols.assign(a, a + n);
  rows.values.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    ++rows.start[static_cast<size_t>(g[k]) + 1];
    rows.values[static_cast<size_t>(k)] = -v[k];
    check_lsap_entry(rows.values[static_cast<size_t>(k)], "poto_assign");
  }
  std::partial_sum(rows.start.begin(), rows.start.end(), rows.start.begin());
  return sparse_matching(rows, G, A, "poto_assign");
}

/// poto_match on one image's pairs (on any device; read with one copy each) as a G int64 tensor
/// on `device`.
inline at::Tensor poto_match(const POTOPairs& p, int64_t G, int64_t A, bool argmax, const at::Device& device) {
  const auto g = p.g.to(at::kCPU).contiguous(), a = p.a.to(at::kCPU).contiguous();
  // (in double, which holds every floating dtype's values exactly)
  const auto values = p.values.to(at::kCPU, at::kDouble).contiguous();
  const auto anchors =
      poto_match(g.data_ptr<int64_t>(), a.data_ptr<int64_t>(), values.data_ptr<double>(), g.numel(), G, A, argmax);
  auto matched = at::empty({G}, at::kLong);
  std::copy(anchors.begin(), anchors.end(), matched.data_ptr<int64_t>());
  return matched.to(device);
}

}  // namespace detail
}  // namespace crowdloss
