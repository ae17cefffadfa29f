#pragma once
// Included first by the generated header_examples.cpp (tests/docs_snippets.cmake): what the
// headers' `Example:` blocks use without defining it. Each example runs in a block of a
// function that declares these inputs first; the code is compiled, not run.
#include <crowdloss/crowdloss.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <memory>
#include <vector>

// Examples show a value they compute (`double w = opts.pixel_mse_weight();`) without using it.
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"

namespace crowdloss_header_examples {
/// Stands for the user's model in the examples (`model->forward(images)`).
struct Model {
  at::Tensor forward(const at::Tensor& images) { return images; }
};
}  // namespace crowdloss_header_examples

// The inputs, named as the examples name them: density maps (pred, target, gt_density,
// density, images), detection head outputs and ground truth, boxes for NMS, cost matrices, point
// predictions and head points.
#define CROWDLOSS_EXAMPLE_INPUTS                                                        \
  at::Tensor pred, target, gt_density, density, images;                                 \
  at::Tensor cls_logits, cls_prob, box_ltrb, pred_boxes, points, gt_boxes, gt_classes;  \
  at::Tensor onehot, onehot_targets, pred_ltrb, target_ltrb, fg, boxes, scores, labels; \
  at::Tensor quality, q0, q1, q2;                                                       \
  at::Tensor logits, pred_xy, gt_xy;                                                    \
  std::vector<at::Tensor> gt_points, heads;                                             \
  int64_t num_foreground = 0;                                                           \
  auto model = std::make_shared<crowdloss_header_examples::Model>();
