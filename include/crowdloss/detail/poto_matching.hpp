#pragma once
/// \file
/// POTO's quality and its one-to-one matching: the quality expression, the prior's pairs with
/// their quality, the G×A matrix they make, and the Hungarian matching on them without that
/// matrix (the sparse search of detail/lsap.hpp).

#include <crowdloss/detail/lsap.hpp>

#include <torch/types.h>

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

/// POTO's Hungarian matching (G ≤ A) without the G×A quality matrix: its working rows (maximised,
/// so negated: +1 but at the prior's pairs) go to the LSA's sparse search as they are. The
/// answer is `linear_sum_assignment(quality_matrix(p, G, A), true)`'s, SciPy's. Returns the anchor
/// of each gt.
inline std::vector<int64_t> poto_sparse_matching(const POTOPairs& p, int64_t G, int64_t A) {
  const auto g = p.g.to(at::kCPU).contiguous(), a = p.a.to(at::kCPU).contiguous();
  const auto values = p.values.to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = g.numel();
  const int64_t* gp = g.data_ptr<int64_t>();
  const int64_t* ap = a.data_ptr<int64_t>();
  const double* vp = values.data_ptr<double>();
  SparseRows rows;
  rows.common.assign(static_cast<size_t>(G), 1.0);
  rows.start.assign(static_cast<size_t>(G) + 1, 0);
  rows.cols.assign(ap, ap + n);
  rows.values.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    ++rows.start[static_cast<size_t>(gp[k]) + 1];
    rows.values[static_cast<size_t>(k)] = -vp[k];
    check_lsap_entry(rows.values[static_cast<size_t>(k)], "poto_assign");
  }
  std::partial_sum(rows.start.begin(), rows.start.end(), rows.start.begin());
  return sparse_matching(rows, G, A, "poto_assign");
}

}  // namespace detail
}  // namespace crowdloss
