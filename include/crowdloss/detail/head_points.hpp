#pragma once
/// \file
/// What the point-supervised losses (Bayesian loss, DM-Count) and the point matching share: the
/// checks of point sets and of head points against the density map they annotate, and the
/// cells' centres in image pixels.

#include <crowdloss/detail/checks.hpp>

#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss {
namespace detail {

/// Checks one set of points: an N×2 floating tensor (`name` in the message).
inline void check_point_set(const char* fn, const std::string& name, const at::Tensor& points) {
  TORCH_CHECK(points.defined() && points.dim() == 2 && points.size(1) == 2, fn, ": expected ", name,
              " of shape (N, 2), got ", points.defined() ? points.sizes() : at::IntArrayRef{});
  TORCH_CHECK(points.is_floating_point(), fn, ": expected floating-point ", name, ", got ", points.scalar_type());
}

/// The image and its row of row `flat` of the images' `points` stacked in order.
inline std::pair<int64_t, int64_t> image_and_row(const std::vector<at::Tensor>& points, int64_t flat) {
  int64_t image = 0;
  while (flat >= points[static_cast<size_t>(image)].size(0)) flat -= points[static_cast<size_t>(image++)].size(0);
  return {image, flat};
}

/// Checks `points` against a B×1×h×w `pred` at `stride`: one N_b×2 floating tensor per image on
/// pred's device, every coordinate finite and on the map (0 ≤ x ≤ w·stride, 0 ≤ y ≤ h·stride),
/// with one host read for all of them.
inline void check_head_points(const char* fn, const at::Tensor& pred, const std::vector<at::Tensor>& points,
                              int64_t stride) {
  TORCH_CHECK(pred.defined() && pred.dim() == 4 && pred.size(1) == 1 && pred.numel() > 0, fn,
              ": expected pred of shape (B, 1, h, w), got ", pred.defined() ? pred.sizes() : at::IntArrayRef{});
  TORCH_CHECK(pred.is_floating_point(), fn, ": expected a floating-point pred, got ", pred.scalar_type());
  TORCH_CHECK(static_cast<int64_t>(points.size()) == pred.size(0), fn, ": expected ", pred.size(0),
              " point tensors (one per image of pred), got ", points.size());
  std::vector<at::Tensor> all;
  for (size_t b = 0; b < points.size(); ++b) {
    const auto name = "points[" + std::to_string(b) + "]";
    check_point_set(fn, name, points[b]);
    check_same_device(fn, pred, "pred", points[b], name.c_str());
    all.push_back(points[b].to(at::kDouble));
  }
  const auto xy = at::cat(all).cpu();
  if (xy.numel() == 0) return;
  const double width = static_cast<double>(pred.size(3) * stride), height = static_cast<double>(pred.size(2) * stride);
  const auto x = xy.select(1, 0), y = xy.select(1, 1);
  const auto bad = (x.isfinite() & y.isfinite() & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)).logical_not();
  if (!bad.any().item<bool>()) return;
  const auto [image, row] = image_and_row(points, bad.nonzero()[0][0].item<int64_t>());
  const auto bad_point = points[static_cast<size_t>(image)][row].to(at::kDouble).cpu();
  TORCH_CHECK(false, fn, ": points[", image, "][", row, "] = (", bad_point[0].item<double>(), ", ",
              bad_point[1].item<double>(), ") is not a finite point of the ", width, "x", height,
              " image the map covers");
}

/// The cell centres along one side of `cells` cells: i·stride + stride/2.
inline at::Tensor cell_centres(int64_t cells, int64_t stride, const at::TensorOptions& options) {
  return (at::arange(cells, options.dtype(at::kFloat)) * static_cast<double>(stride) + static_cast<double>(stride) / 2)
      .to(options)
      .unsqueeze(0);
}

/// The squared distances along one axis, …×N×cells, between the coordinates `z` (…×N) and the
/// cell centres `c` (1×cells), as both losses' authors expand them: −2·z·c + z² + c².
inline at::Tensor axis_squared_distances(const at::Tensor& z, const at::Tensor& c) {
  const auto column = z.unsqueeze(-1);
  return -2 * at::matmul(column, c) + column * column + c * c;
}

/// The squared distances, N×(h·w), between `heads` (N×2, x then y) and the cells of a map whose
/// row centres are `centres_y` (1×h) and column centres `centres_x` (1×w), cells row-major, as
/// both losses' authors compute them: axis_squared_distances per axis, then rows plus columns.
inline at::Tensor squared_distances(const at::Tensor& heads, const at::Tensor& centres_y, const at::Tensor& centres_x) {
  const auto rows = axis_squared_distances(heads.select(1, 1), centres_y);
  const auto columns = axis_squared_distances(heads.select(1, 0), centres_x);
  return (rows.unsqueeze(2) + columns.unsqueeze(1)).view({heads.size(0), -1});
}

/// The heads of the images `images` (indices into `heads`, each N_b×2) padded to the most:
/// `points` P×N×2 (padding 0) in `options`' dtype and device, `valid` P×N (bool).
struct PaddedHeads {
  at::Tensor points, valid;
};

inline PaddedHeads pad_heads(const std::vector<at::Tensor>& heads, const std::vector<int64_t>& images,
                             const at::TensorOptions& options) {
  const auto P = static_cast<int64_t>(images.size());
  int64_t most = 0;
  for (const int64_t b : images) most = std::max(most, heads[static_cast<size_t>(b)].size(0));
  PaddedHeads padded{at::zeros({P, most, 2}, options), at::zeros({P, most}, options.dtype(at::kBool))};
  for (int64_t k = 0; k < P; ++k) {
    const auto& p = heads[static_cast<size_t>(images[static_cast<size_t>(k)])];
    padded.points[k].narrow(0, 0, p.size(0)).copy_(p);
    padded.valid[k].narrow(0, 0, p.size(0)).fill_(true);
  }
  return padded;
}

}  // namespace detail
}  // namespace crowdloss
