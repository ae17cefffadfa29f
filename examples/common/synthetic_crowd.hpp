#pragma once
// A small synthetic crowd: grey-level images of head-and-shoulder blobs whose size grows towards
// the bottom of the frame (a perspective gradient), over a cluttered background with head-sized
// distractors and noise, and their point labels rasterised into a count map. Deterministic from
// the generator it is given.
#include <torch/torch.h>

#include <cstdint>

namespace crowdloss_examples {

struct SyntheticCrowdOptions {
  int64_t size = 64;          // image side in pixels
  int64_t stride = 4;         // input pixels per density-map pixel
  int64_t max_people = 120;   // counts are drawn uniformly from [0, max_people]
  int64_t distractors = 6;    // non-head blobs (elongated) per image
};

struct CrowdBatch {
  at::Tensor images;   // B×1×S×S float32 in [0, 1]
  at::Tensor density;  // B×1×(S/stride)×(S/stride) float32, one unit per person
  at::Tensor counts;   // B float32
};

// Sum over i of exp(−((x−xᵢ)²/(2sxᵢ²) + (y−yᵢ)²/(2syᵢ²))) on an S×S grid, times amplitude aᵢ.
inline at::Tensor render_blobs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& sx, const at::Tensor& sy,
                               const at::Tensor& amp, int64_t size) {
  const auto grid = torch::arange(size, torch::kFloat32) + 0.5;
  const auto dx = (grid.view({1, 1, size}) - x.view({-1, 1, 1})) / sx.view({-1, 1, 1});
  const auto dy = (grid.view({1, size, 1}) - y.view({-1, 1, 1})) / sy.view({-1, 1, 1});
  return (amp.view({-1, 1, 1}) * torch::exp(-0.5 * (dx.square() + dy.square()))).sum(0);
}

inline CrowdBatch make_crowd_batch(int64_t batch, const SyntheticCrowdOptions& o, at::Generator& gen) {
  const int64_t S = o.size, M = S / o.stride;
  auto images = torch::empty({batch, 1, S, S});
  auto density = torch::zeros({batch, 1, M, M});
  auto counts = torch::empty({batch});
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = torch::randint(0, o.max_people + 1, {1}, gen).item<int64_t>();
    const auto x = torch::rand({n}, gen) * S;
    const auto y = torch::rand({n}, gen) * S;
    const auto head = 0.6 + 2.4 * y / S;  // perspective: heads 4× larger at the bottom than the top
    auto image = render_blobs(x, y, head, head, 0.5 + 0.5 * torch::rand({n}, gen), S) +
                 render_blobs(x, y + 2.2 * head, 1.6 * head, 1.8 * head, 0.25 * torch::ones({n}), S);
    const int64_t k = o.distractors;
    image += render_blobs(torch::rand({k}, gen) * S, torch::rand({k}, gen) * S, 0.8 + 6 * torch::rand({k}, gen),
                          0.8 + 0.8 * torch::rand({k}, gen), 0.6 * torch::rand({k}, gen), S);
    image += 0.3 * torch::rand({1}, gen) + 0.05 * torch::randn({S, S}, gen);
    images[b][0] = image.clamp(0, 1);
    // The PML authors' rasteriser: map[min(int(y/stride), M−1)][min(int(x/stride), M−1)] += 1.
    const auto row = (y / o.stride).to(torch::kLong).clamp_max(M - 1);
    const auto col = (x / o.stride).to(torch::kLong).clamp_max(M - 1);
    density[b][0].view(-1).index_put_({row * M + col}, torch::ones({n}), /*accumulate=*/true);
    counts[b] = static_cast<float>(n);
  }
  return {images, density, counts};
}

}  // namespace crowdloss_examples
