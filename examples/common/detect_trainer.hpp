#pragma once
// Training, evaluation and inference for the dense-pedestrian detector (FCOS-style, see
// models/fcos.hpp) with the label assignments of crowdloss: FCOS's one-to-many baseline, POTO,
// POTO + 3DMF + auxiliary loss, and LLA. The loop itself is training.hpp's `fit`.
#include "cli.hpp"
#include "run_config.hpp"
#include "detection_loader.hpp"
#include "pedestrians.hpp"
#include "detection_eval.hpp"
#include "models/fcos.hpp"
#include "throughput.hpp"
#include "training.hpp"

#include <crowdloss/crowdloss.hpp>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

namespace crowdloss_examples {

/// The label assignment the detector trains with (detection_loss).
enum class AssignMode { kFCOS, kPOTO, kPOTO3DMFAux, kLLA };
template <>
struct Choices<AssignMode> {
  static constexpr const char* option = "--assign";
  static constexpr std::array<std::pair<AssignMode, const char*>, 4> names{{{AssignMode::kFCOS, "fcos"},
                                                                            {AssignMode::kPOTO, "poto"},
                                                                            {AssignMode::kPOTO3DMFAux, "poto-3dmf-aux"},
                                                                            {AssignMode::kLLA, "lla"}}};
};

/// Whether inference applies NMS: as the assignment needs (kAuto: fcos and lla), or forced.
enum class NmsMode { kAuto, kOn, kOff };
template <>
struct Choices<NmsMode> {
  static constexpr const char* option = "--nms";
  static constexpr std::array<std::pair<NmsMode, const char*>, 3> names{
      {{NmsMode::kAuto, "auto"}, {NmsMode::kOn, "on"}, {NmsMode::kOff, "off"}}};
};

/// A detection run: the assignment mode, the detector and inference settings, beside RunConfig's.
struct DetectConfig : RunConfig {
  /// The key a checkpoint of this program always holds (checkpoint_config_of).
  static constexpr const char* kIdentifyingKey = "assign";
  AssignMode assign = AssignMode::kPOTO;
  std::string backbone = "resnet50";
  int64_t fpn_channels = 256;
  std::string backbone_weights;  // torchvision ResNet state dict (optional; not saved: a path)
  bool freeze_bn = false;
  double momentum = 0.9;
  int64_t warmup = 500;  // linear warm-up iterations
  // Inference: candidates above score_threshold, the pre_nms_topk best, NMS where the mode needs it
  // ("auto": fcos and lla; "on" / "off" to force), at most max_detections per image.
  double score_threshold = 0.05, nms_threshold = 0.6;
  int64_t pre_nms_topk = 1000, max_detections = 300;
  NmsMode nms = NmsMode::kAuto;

  DetectConfig() {
    optimizer = Optimizer::kSGD, lr = 0.01, weight_decay = 1e-4;
    epochs = 12, batch = 8;
  }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DetectConfig, CROWDLOSS_RUN_CONFIG_FIELDS, assign, backbone,
                                                fpn_channels, freeze_bn, momentum, warmup, score_threshold,
                                                nms_threshold, pre_nms_topk, max_detections, nms)

/// Throws, naming the option and the value, for a configuration `train_detector` cannot run with;
/// `train_detector` calls it before it touches anything, and the program before it reads any data.
inline void check_config(const DetectConfig& c) {
  check_choice("--backbone", c.backbone, {"resnet18", "resnet34", "resnet50"});
  check_common_config(c);
  check_value(c.fpn_channels > 0 && c.fpn_channels % 32 == 0, "--fpn-channels", c.fpn_channels,
              "a positive multiple of 32");
  check_value(c.momentum >= 0, "--momentum", c.momentum, ">= 0");
  check_value(c.warmup >= 0, "--warmup", c.warmup, ">= 0");
}

/// The detector for `c`: 3DMF for poto-3dmf-aux, the IoU branch for lla.
inline FCOS make_detector(const DetectConfig& c) {
  FCOSOptions o;
  o.backbone = c.backbone, o.width = c.width, o.fpn_channels = c.fpn_channels, o.freeze_bn = c.freeze_bn;
  o.filter_3dmf = c.assign == AssignMode::kPOTO3DMFAux, o.iou_branch = c.assign == AssignMode::kLLA;
  FCOS net(o);
  if (!c.backbone_weights.empty()) net->load_backbone(c.backbone_weights);
  net->to(torch::Device(c.device));
  return net;
}

/// The logit of σ(a)·σ(b), computed stably: log p − log(1 − p) with log p = logσ(a) + logσ(b).
/// DeFCN trains the 3DMF score p with a focal loss on probabilities; the focal loss on this
/// logit is the same function.
inline at::Tensor product_logit(const at::Tensor& a, const at::Tensor& b) {
  const auto log_p = torch::log_sigmoid(a) + torch::log_sigmoid(b);
  return log_p - torch::log1p(-log_p.exp().clamp_max(1 - 1e-6));
}

/// Distances from each point to the four sides of its own box (A×2, A×4 → A×4).
inline at::Tensor paired_ltrb(const at::Tensor& points, const at::Tensor& boxes) {
  return torch::cat({points - boxes.slice(1, 0, 2), boxes.slice(1, 2, 4) - points}, 1);
}

/// The training loss of one batch and its parts (all normalised by max(1, foreground count)).
struct DetectionLoss {
  at::Tensor total;
  nlohmann::json parts;  // cls, reg, aux, iou, foreground, assign_ms
};

/// One image's assignment: `assigned` holds each anchor's gt index or −1; `valid` marks the
/// anchors that take a classification loss (undefined: positives and anchors outside ignore
/// regions); `aux_assigned` is the one-to-many assignment of poto-3dmf-aux (else undefined).
struct ImageAssignment {
  at::Tensor assigned, valid, aux_assigned;
};

/// Assigns the anchors of every image of `out` to its boxes `gt_boxes[b]` (ignore regions
/// `ignore[b]`, both on the outputs' device) as `mode` does, with the batched assigners (one pass
/// over the batch on a GPU), without gradients.
inline std::vector<ImageAssignment> assign_batch(AssignMode mode, const FCOSOutput& out, const at::Tensor& points,
                                                 const std::vector<at::Tensor>& gt_boxes,
                                                 const std::vector<at::Tensor>& ignore,
                                                 const std::vector<int64_t>& level_sizes) {
  torch::NoGradGuard no_grad;
  const auto cls = out.cls_logits.to(torch::kFloat), ltrb = out.box_ltrb.to(torch::kFloat);
  const auto B = static_cast<int64_t>(gt_boxes.size()), A = points.size(0);
  std::vector<at::Tensor> gt_classes;
  for (const auto& gt : gt_boxes) gt_classes.push_back(torch::zeros({gt.size(0)}, gt.options().dtype(torch::kLong)));
  std::vector<ImageAssignment> r(gt_boxes.size());
  switch (mode) {
    case AssignMode::kFCOS: {
      const auto assigned = crowdloss::fcos_assign_batch(
          points, gt_boxes, crowdloss::FCOSAssignOptions().strides(out.strides).level_sizes(level_sizes));
      for (int64_t b = 0; b < B; ++b) r[static_cast<size_t>(b)].assigned = assigned[b];
      break;
    }
    case AssignMode::kLLA: {
      // Ignore regions join the matching as class −1 and claim the anchors there.
      std::vector<at::Tensor> all, classes;
      for (size_t b = 0; b < gt_boxes.size(); ++b) {
        all.push_back(torch::cat({gt_boxes[b], ignore[b]}));
        classes.push_back(torch::cat({gt_classes[b], torch::full({ignore[b].size(0)}, -1, gt_classes[b].options())}));
      }
      const auto gt_of_anchor = crowdloss::lla_assign_batch(cls, ltrb, points, all, classes);
      for (int64_t b = 0; b < B; ++b) {
        const auto on_ignore = gt_of_anchor[b] >= gt_boxes[static_cast<size_t>(b)].size(0);
        r[static_cast<size_t>(b)].assigned = gt_of_anchor[b].masked_fill(on_ignore, -1);
        r[static_cast<size_t>(b)].valid = on_ignore.logical_not();
      }
      break;
    }
    case AssignMode::kPOTO:
    case AssignMode::kPOTO3DMFAux: {
      const auto pred_boxes = crowdloss::ltrb_to_boxes(points, ltrb);
      const auto prob =
          mode == AssignMode::kPOTO ? cls.sigmoid() : cls.sigmoid() * out.filter_logits.to(torch::kFloat).sigmoid();
      const auto matched = crowdloss::poto_assign_batch(prob, pred_boxes, points, gt_boxes, gt_classes,
                                                        crowdloss::POTOAssignOptions()
                                                            .alpha(0.8)
                                                            .center_sampling_radius(1.5)
                                                            .strides(out.strides)
                                                            .level_sizes(level_sizes));
      for (int64_t b = 0; b < B; ++b) {
        const auto& m = matched[static_cast<size_t>(b)];
        const auto ok = m >= 0;
        auto& assigned = r[static_cast<size_t>(b)].assigned;
        assigned = torch::full({A}, -1, m.options());
        assigned.index_put_({m.index({ok})}, torch::arange(m.size(0), m.options()).index({ok}));
      }
      if (mode == AssignMode::kPOTO3DMFAux) {
        const auto aux =
            crowdloss::poto_aux_assign_batch(cls.sigmoid(), pred_boxes, points, gt_boxes, gt_classes,
                                             crowdloss::POTOAuxAssignOptions().topk(9).level_sizes(level_sizes));
        for (int64_t b = 0; b < B; ++b) r[static_cast<size_t>(b)].aux_assigned = aux[b];
      }
      break;
    }
  }
  return r;
}

/// Assigns every image of the batch with the configured mode (assign_batch) and sums the losses:
/// focal (α 0.25, γ 2) on the classification (for poto-3dmf-aux on σ(cls)·σ(filter)), 2·GIoU on
/// the positives' boxes, plus the auxiliary one-to-many focal loss on σ(cls) (poto-3dmf-aux) or
/// 0.5·BCE of the IoU branch against the positives' IoU (lla). Anchors inside ignore regions
/// that are not positives take no classification loss. In a data-parallel run (`ranks`) the
/// foreground counts that normalise the losses are the mean over the ranks (DeFCN's reduce_sum /
/// world size), so that the ranks' averaged gradients are those of one process on the global batch.
inline DetectionLoss detection_loss(AssignMode mode, const FCOSOutput& out, const at::Tensor& points,
                                    const std::vector<at::Tensor>& gt_boxes, const std::vector<at::Tensor>& ignore,
                                    ProcessGroup* ranks = nullptr) {
  std::vector<int64_t> level_sizes;
  for (const auto& hw : out.level_hw) level_sizes.push_back(hw[0] * hw[1]);
  const auto device = out.cls_logits.device();
  const auto focal = crowdloss::SigmoidFocalLossOptions().alpha(0.25).gamma(2.0).reduction(torch::kSum);
  const auto giou = crowdloss::IoULossOptions().loss_type(crowdloss::kGIoU).reduction(torch::kSum);
  auto cls_sum = torch::zeros({}, out.cls_logits.options().dtype(torch::kFloat)), reg_sum = cls_sum, aux_sum = cls_sum,
       iou_sum = cls_sum;
  int64_t foreground = 0, aux_foreground = 0;
  const int64_t A = points.size(0);
  std::vector<at::Tensor> gts, ignores;
  for (size_t b = 0; b < gt_boxes.size(); ++b)
    gts.push_back(to_device(gt_boxes[b], device)), ignores.push_back(to_device(ignore[b], device));
  const auto t0 = std::chrono::steady_clock::now();
  auto assignments = assign_batch(mode, out, points, gts, ignores, level_sizes);
  const double assign_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  for (size_t b = 0; b < gt_boxes.size(); ++b) {
    const auto bi = static_cast<int64_t>(b);
    const auto cls = out.cls_logits[bi].to(torch::kFloat), ltrb = out.box_ltrb[bi].to(torch::kFloat);
    const auto &gt = gts[b], &ign = ignores[b];
    const auto in_ignore = ign.size(0) > 0 ? (crowdloss::ltrb_targets(points, ign).amin(-1) > 0).any(0)
                                           : torch::zeros({A}, torch::TensorOptions(torch::kBool).device(device));
    auto [assigned, valid, aux_assigned] = assignments[b];
    const auto positive = assigned >= 0;
    if (!valid.defined()) valid = positive.logical_or(in_ignore.logical_not());
    const auto cls_input =
        mode == AssignMode::kPOTO3DMFAux ? product_logit(cls, out.filter_logits[bi].to(torch::kFloat)) : cls;
    const auto target = positive.to(torch::kFloat).unsqueeze(1).expand_as(cls);
    cls_sum = cls_sum + crowdloss::sigmoid_focal_loss(cls_input.index({valid}), target.index({valid}), focal);
    const auto pos = positive.nonzero().squeeze(1);
    foreground += pos.numel();
    if (pos.numel() > 0) {
      const auto target_ltrb =
          paired_ltrb(points.index_select(0, pos), gt.index_select(0, assigned.index_select(0, pos)));
      const auto pred = ltrb.index_select(0, pos);
      reg_sum = reg_sum + crowdloss::iou_loss(pred, target_ltrb, giou);
      if (mode == AssignMode::kLLA) {
        const auto iou_target = 1 - crowdloss::iou_loss(pred.detach(), target_ltrb,
                                                        crowdloss::IoULossOptions().loss_type(crowdloss::kLinearIoU));
        iou_sum = iou_sum + torch::binary_cross_entropy_with_logits(
                                out.iou_logits[bi].to(torch::kFloat).index_select(0, pos).squeeze(1), iou_target, {},
                                {}, at::Reduction::Sum);
      }
    }
    if (aux_assigned.defined()) {
      const auto aux_positive = aux_assigned >= 0;
      const auto aux_valid = aux_positive.logical_or(in_ignore.logical_not());
      aux_foreground += aux_positive.sum().item<int64_t>();
      aux_sum = aux_sum + crowdloss::sigmoid_focal_loss(
                              cls.index({aux_valid}),
                              aux_positive.to(torch::kFloat).unsqueeze(1).expand_as(cls).index({aux_valid}), focal);
    }
  }
  double n = static_cast<double>(foreground), n_aux = static_cast<double>(aux_foreground);
  if (ranks) {
    auto counts = torch::tensor({n, n_aux}, at::kDouble);
    ranks->all_reduce_sum(counts, "reducing the foreground counts");
    n = counts[0].item<double>() / static_cast<double>(ranks->world());
    n_aux = counts[1].item<double>() / static_cast<double>(ranks->world());
  }
  n = std::max(1.0, n), n_aux = std::max(1.0, n_aux);
  const auto cls_loss = cls_sum / n, reg_loss = 2.0 * reg_sum / n;
  auto total = cls_loss + reg_loss;
  nlohmann::json parts = {{"cls", cls_loss.item<double>()},
                          {"reg", reg_loss.item<double>()},
                          {"foreground", foreground},
                          {"assign_ms", assign_ms}};
  if (mode == AssignMode::kPOTO3DMFAux) {
    const auto aux_loss = aux_sum / n_aux;
    total = total + aux_loss;
    parts["aux"] = aux_loss.item<double>();
  }
  if (mode == AssignMode::kLLA) {
    const auto iou_loss = 0.5 * iou_sum / n;
    total = total + iou_loss;
    parts["iou"] = iou_loss.item<double>();
  }
  return {total, parts};
}

/// Whether inference applies NMS for this configuration.
inline bool uses_nms(const DetectConfig& c) {
  if (c.nms != NmsMode::kAuto) return c.nms == NmsMode::kOn;
  return c.assign == AssignMode::kFCOS || c.assign == AssignMode::kLLA;
}

/// Detections of every image of a batch: the mode's score (σ(cls); σ(cls)·σ(filter) with 3DMF;
/// √(σ(cls)·σ(iou)) for LLA), candidates above the threshold, the top pre_nms_topk, boxes
/// clipped to the image (`sizes`: each image's h, w), class-aware NMS when `uses_nms`, at most
/// max_detections. Boxes and scores on the CPU, highest score first.
inline std::vector<Detections> detect(const DetectConfig& c, const FCOSOutput& out, const at::Tensor& points,
                                      const std::vector<std::array<int64_t, 2>>& sizes) {
  torch::NoGradGuard no_grad;
  auto scores = out.cls_logits.to(torch::kFloat).sigmoid();
  if (out.filter_logits.defined()) scores = scores * out.filter_logits.to(torch::kFloat).sigmoid();
  if (out.iou_logits.defined()) scores = (scores * out.iou_logits.to(torch::kFloat).sigmoid()).sqrt();
  const int64_t K = scores.size(2);
  std::vector<Detections> result;
  for (size_t b = 0; b < sizes.size(); ++b) {
    const auto s = scores[static_cast<int64_t>(b)].flatten();
    auto candidates = (s > c.score_threshold).nonzero().squeeze(1);
    auto cand_scores = s.index_select(0, candidates);
    if (candidates.numel() > c.pre_nms_topk) {
      const auto top = std::get<1>(cand_scores.topk(c.pre_nms_topk));
      candidates = candidates.index_select(0, top), cand_scores = cand_scores.index_select(0, top);
    }
    const auto anchor = candidates.div(K, "floor"), cls = candidates.remainder(K);
    auto boxes =
        crowdloss::ltrb_to_boxes(points.index_select(0, anchor),
                                 out.box_ltrb[static_cast<int64_t>(b)].to(torch::kFloat).index_select(0, anchor));
    const double h = static_cast<double>(sizes[b][0]), w = static_cast<double>(sizes[b][1]);
    boxes = torch::stack({boxes.select(1, 0).clamp(0, w), boxes.select(1, 1).clamp(0, h),
                          boxes.select(1, 2).clamp(0, w), boxes.select(1, 3).clamp(0, h)},
                         1);
    auto keep = uses_nms(c) ? crowdloss::batched_nms(boxes, cand_scores, cls, c.nms_threshold)
                            : std::get<1>(cand_scores.sort(/*stable=*/true, 0, /*descending=*/true));
    keep = keep.slice(0, 0, c.max_detections);
    result.push_back({boxes.index_select(0, keep).cpu(), cand_scores.index_select(0, keep).cpu()});
  }
  return result;
}

/// A detector's validation: the detection metrics, inference speed and, during training, the
/// time the assignment took per batch. In metrics.jsonl as these keys; `epoch` (from 1) is set
/// on the best validation train_detector returns.
struct DetectorMetrics : DetectionMetrics {
  double eval_images_per_s = 0;
  double assign_ms_per_batch = 0;
  int64_t epoch = 0;  // not one of the JSON fields: metrics.jsonl has its own
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DetectorMetrics, ap50, mmr, recall, ground_truths, detections,
                                                eval_images_per_s, assign_ms_per_batch)

/// AP50, mMR and recall of `net` on `loader` (CrowdHuman protocol, ignore regions honoured),
/// plus images/s of inference, with the model under autocast to `amp` when given.
inline DetectorMetrics evaluate_detector(const DetectConfig& c, FCOS& net, const DetectionLoader& loader,
                                         std::optional<at::ScalarType> amp = std::nullopt) {
  torch::NoGradGuard no_grad;
  net->eval();
  const torch::Device device(c.device);
  std::vector<Detections> dets;
  std::vector<at::Tensor> gts, ignores;
  double seconds = 0;
  loader.run_epoch(0, [&](int64_t, DetectionBatch& b) {
    const auto t0 = std::chrono::steady_clock::now();
    FCOSOutput out;
    {
      AmpScope scope(device, amp);
      out = net->forward(to_device(b.images, device));
    }
    for (auto& d : detect(c, out, anchor_points(out), b.sizes)) dets.push_back(std::move(d));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gts.insert(gts.end(), b.boxes.begin(), b.boxes.end());
    ignores.insert(ignores.end(), b.ignore.begin(), b.ignore.end());
  });
  DetectorMetrics m;
  static_cast<DetectionMetrics&>(m) = evaluate_detections(dets, gts, ignores);
  m.eval_images_per_s = static_cast<double>(dets.size()) / std::max(seconds, 1e-9);
  return m;
}

/// A detection run, built from its configuration: the detector (seeded with c.seed), the
/// optimiser, the training and validation loaders and the step's hooks. `fit` trains it
/// (train_detector); `throughput` measures its training phase against the bare step
/// (`crowdloss-detect bench`). In a data-parallel run (`ranks`), each rank trains on its shard of
/// every epoch. Images that cannot be read go to `bad` (without one: an error).
class DetectTraining {
 public:
  DetectTraining(const DetectConfig& c, const std::vector<DetectionSample>& train,
                 const std::vector<DetectionSample>& val, BadSamples* bad = nullptr,
                 std::shared_ptr<ProcessGroup> ranks = nullptr)
      : c_(checked(c)), device_(c.device), net_(seeded_detector(c)),
        opt_(make_optimizer(c.optimizer, net_->parameters(), c.lr, c.weight_decay, c.momentum)),
        amp_(amp_dtype(c.amp, device_)), ranks_(std::move(ranks)),
        train_loader_(train, train_options(c, bad, ranks_.get())), val_loader_(val, val_options(c, bad)) {
    hooks_.learning_rate = [this](int64_t epoch, int64_t i, int64_t batches) {
      const double iteration = static_cast<double>(epoch * batches + i);
      const double warm = c_.warmup > 0 ? std::min(1.0, (iteration + 1) / static_cast<double>(c_.warmup)) : 1.0;
      return warm * cosine_lr(c_.lr, c_.min_lr, c_.epochs, iteration / static_cast<double>(batches));
    };
    hooks_.loss = [this](DetectionBatch& b) {
      check_step_has_images(b.images);
      FCOSOutput o;
      {
        AmpScope scope(device_, amp_);
        o = net_->forward(to_device(b.images, device_));
      }
      auto loss = detection_loss(c_.assign, o, anchor_points(o), b.boxes, b.ignore, ranks_.get());
      assign_ms_ += loss.parts.at("assign_ms").get<double>(), ++assign_batches_;
      return std::make_pair(loss.total, b.images.size(0));
    };
    hooks_.validate = [this](int64_t) {
      auto m = evaluate_detector(c_, net_, val_loader_, amp_);
      m.assign_ms_per_batch = assign_ms_ / static_cast<double>(std::max<int64_t>(1, assign_batches_));
      assign_ms_ = 0, assign_batches_ = 0;
      return Validation{m, -m.ap50};
    };
  }
  DetectTraining(const DetectTraining&) = delete;
  DetectTraining& operator=(const DetectTraining&) = delete;

  /// Trains with the shared loop of training.hpp (`fit`), validating after every epoch (the best
  /// AP50 is kept as best.pt), a run already in `out` refused, resumed or replaced as `existing`
  /// says. Returns the best validation's metrics and its epoch.
  DetectorMetrics fit(const fs::path& out, ExistingRun existing, bool quiet = false) {
    auto s = settings();
    s.out = out, s.existing = existing, s.quiet = quiet;
    const auto best = crowdloss_examples::fit(*net_, *opt_, train_loader_, hooks_, s);
    auto m = best.get<DetectorMetrics>();
    m.epoch = best.value("epoch", int64_t{0});
    return m;
  }

  /// The bare step on the training loader's first batch (moved to the device) against one epoch
  /// of the training loader (measure_throughput).
  Throughput throughput(const ThroughputOptions& o) {
    net_->train();
    auto batch = train_loader_.make_batch(0, 0).to(device_);
    TrainStep<DetectionBatch> step(*net_, *opt_, hooks_, settings());
    return measure_throughput(step, hooks_, train_loader_, std::move(batch), o);
  }

 private:
  static const DetectConfig& checked(const DetectConfig& c) {
    check_config(c);
    return c;
  }
  static FCOS seeded_detector(const DetectConfig& c) {
    apply_determinism(c.deterministic);
    torch::manual_seed(c.seed);
    return make_detector(c);
  }
  static DetectionLoaderOptions train_options(const DetectConfig& c, BadSamples* bad, ProcessGroup* ranks) {
    DetectionLoaderOptions o;
    o.batch = c.batch, o.longest_side = c.longest_side, o.crop = c.crop, o.augment = true, o.shuffle = true;
    o.workers = c.workers, o.seed = c.seed, o.bad = bad, o.pin_memory = torch::Device(c.device).is_cuda();
    if (ranks) o.shard = {ranks->rank(), ranks->world(), /*pad=*/true};
    return o;
  }
  static DetectionLoaderOptions val_options(const DetectConfig& c, BadSamples* bad) {
    DetectionLoaderOptions o;
    o.batch = c.batch, o.longest_side = c.longest_side, o.workers = c.workers, o.bad = bad;
    o.pin_memory = torch::Device(c.device).is_cuda();
    return o;
  }
  FitSettings settings() const { return fit_settings(c_, amp_, c_, ranks_); }

  DetectConfig c_;
  torch::Device device_;
  FCOS net_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::optional<at::ScalarType> amp_;
  std::shared_ptr<ProcessGroup> ranks_;
  DetectionLoader train_loader_, val_loader_;
  FitHooks<DetectionBatch> hooks_;
  double assign_ms_ = 0;
  int64_t assign_batches_ = 0;
};

/// Trains a detector per `c` on `train`, validating on `val` after every epoch
/// (DetectTraining::fit). Returns the best validation's metrics and its epoch.
inline DetectorMetrics train_detector(const DetectConfig& c, const std::vector<DetectionSample>& train,
                                      const std::vector<DetectionSample>& val, const fs::path& out,
                                      ExistingRun existing, bool quiet = false, BadSamples* bad = nullptr,
                                      std::shared_ptr<ProcessGroup> ranks = nullptr) {
  return DetectTraining(c, train, val, bad, std::move(ranks)).fit(out, existing, quiet);
}

/// A detector from a checkpoint written by `train_detector`, on `device`, in eval mode.
inline std::pair<FCOS, DetectConfig> load_detector(const fs::path& checkpoint, const std::string& device) {
  auto c = checkpoint_config_of<DetectConfig>(checkpoint, "crowdloss-detect");
  c.device = device, c.backbone_weights.clear();
  auto net = make_detector(c);
  load_weights(checkpoint, *net);
  net->eval();
  return {net, c};
}

/// `image` (H×W×3 uint8) with `boxes` drawn as 2-px rectangles, colour from red (score 1) to
/// yellow (score at the threshold); ignore regions, when given, in grey.
inline at::Tensor draw_detections(const at::Tensor& image, const Detections& d, const at::Tensor& ignore = {}) {
  auto out = image.clone();
  const int64_t H = out.size(0), W = out.size(1);
  const auto rect = [&](const float* b, const std::array<uint8_t, 3>& rgb) {
    const int64_t x0 = std::clamp<int64_t>(std::lround(b[0]), 0, W - 1),
                  y0 = std::clamp<int64_t>(std::lround(b[1]), 0, H - 1);
    const int64_t x1 = std::clamp<int64_t>(std::lround(b[2]), 0, W - 1),
                  y1 = std::clamp<int64_t>(std::lround(b[3]), 0, H - 1);
    const auto colour = torch::tensor({rgb[0], rgb[1], rgb[2]}, torch::kUInt8);
    for (int64_t t = 0; t < 2; ++t) {
      out.index_put_({std::min(y0 + t, H - 1), torch::indexing::Slice(x0, x1 + 1)}, colour);
      out.index_put_({std::max(y1 - t, int64_t{0}), torch::indexing::Slice(x0, x1 + 1)}, colour);
      out.index_put_({torch::indexing::Slice(y0, y1 + 1), std::min(x0 + t, W - 1)}, colour);
      out.index_put_({torch::indexing::Slice(y0, y1 + 1), std::max(x1 - t, int64_t{0})}, colour);
    }
  };
  if (ignore.defined()) {
    const auto g = ignore.to(torch::kFloat).contiguous();
    for (int64_t i = 0; i < g.size(0); ++i) rect(g[i].data_ptr<float>(), {160, 160, 160});
  }
  const auto boxes = d.boxes.to(torch::kFloat).contiguous();
  const auto scores = d.scores.to(torch::kFloat).contiguous();
  for (int64_t i = boxes.size(0) - 1; i >= 0; --i) {  // best drawn last, on top
    const auto green = static_cast<uint8_t>(std::lround(220 * (1 - std::clamp(scores[i].item<double>(), 0.0, 1.0))));
    rect(boxes[i].data_ptr<float>(), {255, green, 0});
  }
  return out;
}

/// The detections scoring above `threshold` (for drawing).
inline Detections confident(const Detections& d, double threshold) {
  const auto keep = (d.scores > threshold).nonzero().squeeze(1);
  return {d.boxes.index_select(0, keep), d.scores.index_select(0, keep)};
}

/// Runs `net` on one image file and returns its detections in the image's pixels.
inline Detections predict_image(const DetectConfig& c, FCOS& net, const at::Tensor& image) {
  torch::NoGradGuard no_grad;
  const auto x = pad_to_multiple(Sample{to_chw_float(image), torch::zeros({0, 2})}, 32).image;
  const auto out = net->forward(normalize(x).unsqueeze(0).to(torch::Device(c.device)));
  return detect(c, out, anchor_points(out), {{image.size(0), image.size(1)}}).at(0);
}

}  // namespace crowdloss_examples
