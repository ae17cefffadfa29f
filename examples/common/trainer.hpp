#pragma once
// Training, evaluation and prediction for the counting examples: model and loss selection, the
// papers' recipes, a progress bar, JSON-lines metrics, atomic checkpoints with exact resume.
#include "cli.hpp"
#include "run_config.hpp"
#include "image_io.hpp"
#include "loader.hpp"
#include "throughput.hpp"
#include "training.hpp"
#include "models/csrnet.hpp"
#include "models/sanet.hpp"

#include <crowdloss/crowdloss.hpp>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>

namespace crowdloss_examples {

/// The counting model: CSRNet (output stride 8) or SANet (stride 1).
enum class CountModel { kCSRNet, kSANet };
template <>
struct Choices<CountModel> {
  static constexpr const char* option = "--model";
  static constexpr std::array<std::pair<CountModel, const char*>, 2> names{
      {{CountModel::kCSRNet, "csrnet"}, {CountModel::kSANet, "sanet"}}};
};

/// The training objective (count_loss).
enum class CountLoss { kL2, kPML, kSANet, kEuclidean, kDMCount, kBayesian };
template <>
struct Choices<CountLoss> {
  static constexpr const char* option = "--loss";
  static constexpr std::array<std::pair<CountLoss, const char*>, 6> names{{{CountLoss::kL2, "l2"},
                                                                           {CountLoss::kPML, "pml"},
                                                                           {CountLoss::kSANet, "sanet"},
                                                                           {CountLoss::kEuclidean, "euclidean"},
                                                                           {CountLoss::kDMCount, "dm-count"},
                                                                           {CountLoss::kBayesian, "bayesian"}}};
};

/// The learning-rate schedule (learning_rate).
enum class Schedule { kCosine, kConstant };
template <>
struct Choices<Schedule> {
  static constexpr const char* option = "--schedule";
  static constexpr std::array<std::pair<Schedule, const char*>, 2> names{
      {{Schedule::kCosine, "cosine"}, {Schedule::kConstant, "constant"}}};
};

/// The papers' settings (recipe).
enum class Recipe { kPML, kCSRNet, kSANet, kDMCount, kBayesian };
template <>
struct Choices<Recipe> {
  static constexpr const char* option = "--recipe";
  static constexpr std::array<std::pair<Recipe, const char*>, 5> names{{{Recipe::kPML, "pml"},
                                                                        {Recipe::kCSRNet, "csrnet"},
                                                                        {Recipe::kSANet, "sanet"},
                                                                        {Recipe::kDMCount, "dm-count"},
                                                                        {Recipe::kBayesian, "bayesian"}}};
};

/// A counting run: the model, the loss and the learning-rate schedule, beside RunConfig's
/// settings (defaults: the PML paper's recipe but the image size).
struct TrainConfig : RunConfig {
  /// The key a checkpoint of this program always holds (checkpoint_config_of).
  static constexpr const char* kIdentifyingKey = "model";
  CountModel model = CountModel::kCSRNet;
  CountLoss loss = CountLoss::kPML;
  Schedule schedule = Schedule::kCosine;
  int64_t cosine_t_max = 150;
  std::string vgg_weights;  // a VGG-16 state dict for CSRNet's front end (not saved: a path)

  TrainConfig() {
    optimizer = Optimizer::kAdamW, lr = 1e-4, weight_decay = 1e-6, min_lr = 1e-7, clip = 10.0;
    epochs = 10, batch = 8, crop = 256;
  }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TrainConfig, CROWDLOSS_RUN_CONFIG_FIELDS, model, loss, schedule,
                                                cosine_t_max)

/// The papers' recipes: "pml" (the PML paper: CSRNet, AdamW 1e-4, weight decay 1e-6, cosine
/// T_max 150 to 1e-7, gradient-norm clip 10, batch 8, longest side 1024, pixel MSE + PML),
/// "csrnet" (CSRNet: the Euclidean loss ½·Σ‖Z − Ẑ‖² per image, SGD at the paper's fixed 1e-6 with
/// the official code's momentum 0.95 and weight decay 5e-4, batch 1, whole images), "sanet"
/// (SANet: Adam 1e-5, L2 + 0.001·(1 − SSIM)), "dm-count" (DM-Count's train.py: CSRNet here,
/// Adam 1e-5, weight decay 1e-4, batch 10, 512² crops, its loss weights) and "bayesian"
/// (Bayesian-Crowd-Counting's train.py: CSRNet here, Adam 1e-5, weight decay 1e-4, batch 1, 512²
/// crops, σ 8, the background term with ratio 1).
inline TrainConfig recipe(Recipe name) {
  TrainConfig c;
  switch (name) {
    case Recipe::kPML:
      c.model = CountModel::kCSRNet, c.loss = CountLoss::kPML, c.optimizer = Optimizer::kAdamW, c.lr = 1e-4;
      c.weight_decay = 1e-6, c.schedule = Schedule::kCosine, c.cosine_t_max = 150, c.min_lr = 1e-7, c.clip = 10;
      c.batch = 8, c.longest_side = 1024;
      break;
    case Recipe::kCSRNet:
      c.model = CountModel::kCSRNet, c.loss = CountLoss::kEuclidean, c.optimizer = Optimizer::kSGD, c.lr = 1e-6;
      c.weight_decay = 5e-4, c.schedule = Schedule::kConstant, c.clip = 0, c.batch = 1, c.crop = 0;
      break;
    case Recipe::kSANet:
      c.model = CountModel::kSANet, c.loss = CountLoss::kSANet, c.optimizer = Optimizer::kAdam, c.lr = 1e-5;
      c.weight_decay = 0, c.schedule = Schedule::kConstant, c.clip = 0;
      break;
    case Recipe::kDMCount:
      c.model = CountModel::kCSRNet, c.loss = CountLoss::kDMCount, c.optimizer = Optimizer::kAdam, c.lr = 1e-5;
      c.weight_decay = 1e-4, c.schedule = Schedule::kConstant, c.clip = 0, c.batch = 10, c.crop = 512;
      break;
    case Recipe::kBayesian:
      c.model = CountModel::kCSRNet, c.loss = CountLoss::kBayesian, c.optimizer = Optimizer::kAdam, c.lr = 1e-5;
      c.weight_decay = 1e-4, c.schedule = Schedule::kConstant, c.clip = 0, c.batch = 1, c.crop = 512;
      break;
  }
  return c;
}

/// Throws, naming the option and the value, for a configuration `train` cannot run with; `train`
/// calls it before it touches anything, and the program before it reads any data.
inline void check_config(const TrainConfig& c) {
  check_common_config(c);
  check_value(c.cosine_t_max >= 1, "--t-max", c.cosine_t_max, ">= 1");
}

/// A counting model behind one interface: forward(images) → density at `stride`.
struct CountingModel {
  torch::nn::AnyModule module;
  std::shared_ptr<torch::nn::Module> ptr;
  int64_t stride = 8;
  CountLoss loss = CountLoss::kPML;  // what it trains with: the point losses want a density ≥ 0

  /// The density the model predicts. The point losses need a density ≥ 0, so it ends as their
  /// authors' models end: for DM-Count in a ReLU, for the Bayesian loss in |·|. The other losses
  /// train the raw output.
  at::Tensor forward(const at::Tensor& images) {
    const auto density = module.forward(images);
    if (loss == CountLoss::kDMCount) return density.relu();
    return loss == CountLoss::kBayesian ? density.abs() : density;
  }
};

/// The bias the output convolution starts from when the model ends in |·| (the Bayesian loss):
/// a from-scratch CSRNet's N(0, 0.01) weights give outputs of order 1e-17 (at width 0.25), whose
/// random signs under |·| cancel the bias's gradient, and a run stays at zero. Starting every
/// output at this small positive density puts |·| in its linear part.
inline constexpr double kAbsOutputBias = 0.01;

inline CountingModel make_model(const TrainConfig& c) {
  CountingModel m;
  if (c.model == CountModel::kCSRNet) {
    CSRNet net(c.width);
    if (!c.vgg_weights.empty()) net->load_vgg16_frontend(c.vgg_weights);
    m.module = torch::nn::AnyModule(net), m.ptr = net.ptr(), m.stride = 8;
  } else {
    SANet net;
    m.module = torch::nn::AnyModule(net), m.ptr = net.ptr(), m.stride = 1;
  }
  if (c.loss == CountLoss::kBayesian) {
    torch::NoGradGuard no_grad;
    if (c.model == CountModel::kCSRNet)
      m.ptr->as<CSRNetImpl>()->output->bias.fill_(kAbsOutputBias);
    else
      m.ptr->as<SANetImpl>()->output_bias().fill_(kAbsOutputBias);
  }
  m.ptr->to(torch::Device(c.device));
  m.loss = c.loss;
  return m;
}

/// The training objective for the density `pred` (B×1×h×w at `stride`) of batch `b` (on pred's
/// device): against its density maps, or, for dm-count and bayesian, its head points
/// (DMCountOptions' and BayesianLossOptions' defaults, the authors' settings; the Bayesian loss's
/// background distance from each crop's shorter side, the authors' from the whole image's). In a data-parallel run (`ranks`), PML reduces its sums over
/// the ranks (PMLLossOptions::all_reduce), the SANet loss's SSIM takes the data range of the
/// global batch, and DM-Count's OT term (a sum over images; its other terms are means) is scaled
/// by the number of ranks, so that each is the global batch's loss; the means (l2, euclidean,
/// bayesian) need nothing, the ranks' batches being equal.
inline at::Tensor count_loss(CountLoss loss, const at::Tensor& pred, const Batch& b, int64_t stride,
                             ProcessGroup* ranks = nullptr) {
  const auto& target = b.density;
  switch (loss) {
    case CountLoss::kL2:
      return torch::mse_loss(pred, target);
    case CountLoss::kEuclidean:
      return 0.5 * (pred - target).square().sum() / static_cast<double>(pred.size(0));
    case CountLoss::kPML: {
      // The grids that divide the map (at most 32 cells per side); pad when none beyond 1 does.
      std::vector<int64_t> grids{1};
      while (grids.back() < 32 && pred.size(2) % (grids.back() * 2) == 0 && pred.size(3) % (grids.back() * 2) == 0)
        grids.push_back(grids.back() * 2);
      auto options = crowdloss::PMLLossOptions().grids(grids).pixel_mse_weight(1.0);
      if (ranks)
        options.all_reduce([ranks](at::Tensor& sums) {
          auto host = sums.cpu();
          ranks->all_reduce_sum(host, "reducing PML's sums");
          sums.copy_(host);
        });
      return crowdloss::pml_loss(pred, target, options);
    }
    case CountLoss::kDMCount: {
      const auto t = crowdloss::dm_count_loss_terms(pred, b.points, crowdloss::DMCountOptions().stride(stride));
      return ranks ? t.count + t.tv + t.ot * static_cast<double>(ranks->world()) : t.total;
    }
    case CountLoss::kBayesian:  // a mean over the images
      return crowdloss::bayesian_loss(pred, b.points, crowdloss::BayesianLossOptions().stride(stride));
    case CountLoss::kSANet:
      break;
  }
  auto range_max = target.max().to(torch::kCPU, torch::kFloat).reshape({1});
  if (ranks) ranks->all_reduce_max(range_max, "reducing the SSIM data range");
  const double range = std::max(range_max.item<double>(), 1e-6);
  return crowdloss::sanet_loss(
      pred, target,
      crowdloss::SANetLossOptions().ssim(crowdloss::SSIMOptions().data_range(range).padding(crowdloss::kSame)));
}

inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainConfig& c,
                                                               const std::vector<at::Tensor>& params) {
  return make_optimizer(c.optimizer, params, c.lr, c.weight_decay, /*momentum (CSRNet's official code)=*/0.95);
}

/// The learning rate of `epoch` (0-based): cosine annealing from lr to min_lr over T_max epochs.
inline double learning_rate(const TrainConfig& c, int64_t epoch) {
  return c.schedule == Schedule::kConstant ? c.lr
                                           : cosine_lr(c.lr, c.min_lr, c.cosine_t_max, static_cast<double>(epoch));
}

struct Metrics {
  double mae = 0, rmse = 0;
  int64_t epoch = 0;  // train(): the epoch (from 1) of the best validation
};

/// MAE and RMSE of the predicted counts over `loader` (no augmentation expected; images skipped
/// as bad do not count), the model run under autocast to `amp` when given. In a data-parallel
/// run (`ranks`) each rank's loader holds its shard, and the sums are reduced over the ranks.
inline Metrics evaluate(CountingModel& m, const Loader& loader, const torch::Device& device,
                        std::optional<at::ScalarType> amp = std::nullopt, ProcessGroup* ranks = nullptr) {
  torch::NoGradGuard no_grad;
  m.ptr->eval();
  double abs_sum = 0, sq_sum = 0;
  int64_t images = 0;
  loader.run_epoch(0, [&](int64_t, Batch& b) {
    at::Tensor pred;
    {
      AmpScope scope(device, amp);
      pred = m.forward(to_device(b.images, device));
    }
    const auto counts = pred.to(torch::kDouble).sum({1, 2, 3}).cpu();
    const auto err = counts - b.counts.to(torch::kDouble);
    abs_sum += err.abs().sum().item<double>();
    sq_sum += err.square().sum().item<double>();
    images += b.images.size(0);
  });
  if (ranks) {
    auto sums = torch::tensor({abs_sum, sq_sum, static_cast<double>(images)}, at::kDouble);
    ranks->all_reduce_sum(sums, "reducing the validation metrics");
    abs_sum = sums[0].item<double>(), sq_sum = sums[1].item<double>(), images = sums[2].item<int64_t>();
  }
  const double n = static_cast<double>(std::max<int64_t>(1, images));
  return {abs_sum / n, std::sqrt(sq_sum / n)};
}

inline TrainConfig checkpoint_config(const fs::path& path) {
  return checkpoint_config_of<TrainConfig>(path, "crowdloss-count");
}

/// A counting run, built from its configuration: the model (seeded with c.seed), the optimiser,
/// the training and validation loaders and the step's hooks. `fit` trains it (train); `throughput`
/// measures its training phase against the bare step (`crowdloss-count bench`). In a data-parallel
/// run (`ranks`), each rank trains on its shard of every epoch with `c.batch` images per step, its
/// gradients averaged over the ranks, and validates on its shard of `val`. Images that cannot be
/// read go to `bad` (without one: an error).
class CountTraining {
 public:
  CountTraining(const TrainConfig& c, const std::vector<CrowdSample>& train, const std::vector<CrowdSample>& val,
                BadSamples* bad = nullptr, std::shared_ptr<ProcessGroup> ranks = nullptr)
      : c_(checked(c)), device_(c.device), m_(seeded_model(c)), opt_(make_optimizer(c, m_.ptr->parameters())),
        amp_(amp_dtype(c.amp, device_)), ranks_(std::move(ranks)),
        train_loader_(train, train_options(c, m_.stride, bad, ranks_.get())),
        val_loader_(val, val_options(c, m_.stride, bad, ranks_.get())) {
    hooks_.learning_rate = [this](int64_t epoch, int64_t, int64_t) { return learning_rate(c_, epoch); };
    hooks_.loss = [this](Batch& b) {
      check_step_has_images(b.images);
      const auto on_device = b.to(device_);
      at::Tensor pred;
      {
        AmpScope scope(device_, amp_);
        pred = m_.forward(on_device.images);
      }
      return std::make_pair(count_loss(c_.loss, pred.to(torch::kFloat), on_device, m_.stride, ranks_.get()),
                            b.images.size(0));
    };
    hooks_.validate = [this](int64_t) {
      const auto v = evaluate(m_, val_loader_, device_, amp_, ranks_.get());
      return Validation{{{"val_mae", v.mae}, {"val_rmse", v.rmse}}, v.mae};
    };
  }
  CountTraining(const CountTraining&) = delete;
  CountTraining& operator=(const CountTraining&) = delete;

  /// Trains with the shared loop of training.hpp (`fit`): `out`/last.pt and `out`/best.pt (the
  /// best validation MAE), metrics.jsonl, a run already in `out` refused, resumed exactly or
  /// replaced as `existing` says. Returns the best validation's metrics and epoch.
  Metrics fit(const fs::path& out, ExistingRun existing, bool quiet = false) {
    auto step_settings = settings();
    step_settings.out = out, step_settings.existing = existing, step_settings.quiet = quiet;
    const auto best = crowdloss_examples::fit(*m_.ptr, *opt_, train_loader_, hooks_, step_settings);
    return {best.value("val_mae", std::numeric_limits<double>::infinity()), best.value("val_rmse", 0.0),
            best.value("epoch", int64_t{0})};
  }

  /// The bare step on the training loader's first batch (moved to the device) against one epoch
  /// of the training loader (measure_throughput).
  Throughput throughput(const ThroughputOptions& o) {
    m_.ptr->train();
    auto batch = train_loader_.make_batch(0, 0).to(device_);
    TrainStep<Batch> step(*m_.ptr, *opt_, hooks_, settings());
    return measure_throughput(step, hooks_, train_loader_, std::move(batch), o);
  }

 private:
  static const TrainConfig& checked(const TrainConfig& c) {
    check_config(c);
    return c;
  }
  static CountingModel seeded_model(const TrainConfig& c) {
    apply_determinism(c.deterministic);
    torch::manual_seed(c.seed);
    return make_model(c);
  }
  static LoaderOptions train_options(const TrainConfig& c, int64_t stride, BadSamples* bad, ProcessGroup* ranks) {
    LoaderOptions o;
    o.batch = c.batch, o.crop = c.crop, o.longest_side = c.longest_side, o.stride = stride, o.augment = true;
    o.shuffle = true, o.workers = c.workers, o.seed = c.seed, o.bad = bad;
    o.pin_memory = torch::Device(c.device).is_cuda();
    if (ranks) o.shard = {ranks->rank(), ranks->world(), /*pad=*/true};
    return o;
  }
  static LoaderOptions val_options(const TrainConfig& c, int64_t stride, BadSamples* bad, ProcessGroup* ranks) {
    LoaderOptions o;
    o.batch = 1, o.longest_side = c.longest_side, o.stride = std::max<int64_t>(stride, 8), o.workers = c.workers;
    o.bad = bad, o.pin_memory = torch::Device(c.device).is_cuda();
    if (ranks) o.shard = {ranks->rank(), ranks->world(), /*pad=*/false};
    return o;
  }
  FitSettings settings() const { return fit_settings(c_, amp_, c_, ranks_); }

  TrainConfig c_;
  torch::Device device_;
  CountingModel m_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::optional<at::ScalarType> amp_;
  std::shared_ptr<ProcessGroup> ranks_;
  Loader train_loader_, val_loader_;
  FitHooks<Batch> hooks_;
};

/// Trains per `c` on `train`, validating on `val` after every epoch (CountTraining::fit).
/// Returns the best validation's metrics and epoch.
inline Metrics train(const TrainConfig& c, const std::vector<CrowdSample>& train, const std::vector<CrowdSample>& val,
                     const fs::path& out, ExistingRun existing, bool quiet = false, BadSamples* bad = nullptr,
                     std::shared_ptr<ProcessGroup> ranks = nullptr) {
  return CountTraining(c, train, val, bad, std::move(ranks)).fit(out, existing, quiet);
}

/// A model from a checkpoint written by `train` (best.pt or last.pt).
inline CountingModel load_model(const fs::path& checkpoint, const std::string& device) {
  auto c = checkpoint_config(checkpoint);
  c.device = device;
  auto m = make_model(c);
  load_weights(checkpoint, *m.ptr);
  m.ptr->eval();
  return m;
}

/// A density map (h×w, people per cell) upsampled to H×W as people per pixel: bilinear, clamped
/// at 0, scaled by h·w / (H·W), so that maps of any stride share one scale.
inline at::Tensor density_per_pixel(const at::Tensor& density, int64_t H, int64_t W) {
  const int64_t h = density.size(-2), w = density.size(-1);
  const auto up = torch::nn::functional::interpolate(density.view({1, 1, h, w}).to(torch::kFloat),
                                                     torch::nn::functional::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{H, W})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false))[0][0];
  return up.clamp_min(0) * (static_cast<double>(h * w) / static_cast<double>(H * W));
}

/// The overlay scale of a density map (the per-pixel density shown at full colour): the 99th
/// percentile of density_per_pixel, so that a few sharp peaks do not wash out the rest.
inline double overlay_scale(const at::Tensor& density, int64_t H, int64_t W) {
  return density_per_pixel(density, H, W).flatten().quantile(0.99).item<double>();
}

/// `text` (digits, '.', '-' and spaces) written on the image (H×W×3 uint8) at its top-left
/// corner, white on black, in a 3×5 pixel font enlarged `scale` times.
inline at::Tensor label_image(const at::Tensor& image_hwc, const std::string& text, int64_t scale = 3) {
  static const char* const glyphs[] = {"111101101101111", "010110010010111", "111001111100111", "111001111001111",
                                       "101101111001001", "111100111001111", "111100111101111", "111001001001001",
                                       "111101111101111", "111101111001111"};
  auto out = image_hwc.clone();
  const int64_t H = out.size(0), W = out.size(1), cell = 4 * scale, pad = scale;
  const int64_t box_w = std::min<int64_t>(W, pad + cell * static_cast<int64_t>(text.size())),
                box_h = std::min<int64_t>(H, 7 * scale);
  out.slice(0, 0, box_h).slice(1, 0, box_w).zero_();
  for (size_t k = 0; k < text.size(); ++k) {
    const char ch = text[k];
    const char* glyph = ch >= '0' && ch <= '9' ? glyphs[ch - '0']
                        : ch == '.'            ? "000000000000010"
                        : ch == '-'            ? "000000111000000"
                                               : "";
    for (int64_t bit = 0; glyph[bit] != '\0'; ++bit) {
      if (glyph[bit] != '1') continue;
      const int64_t y = pad + bit / 3 * scale, x = pad + static_cast<int64_t>(k) * cell + bit % 3 * scale;
      if (y + scale <= H && x + scale <= W) out.slice(0, y, y + scale).slice(1, x, x + scale).fill_(255);
    }
  }
  return out;
}

/// A density map as a colour overlay on its image, labelled with its count: the map as people
/// per pixel (density_per_pixel) divided by `scale` (default: its own overlay_scale; give the
/// ground truth's to compare panels), coloured blue → green → red, and blended in proportion to
/// its value.
inline at::Tensor density_overlay(const at::Tensor& image_hwc, const at::Tensor& density,
                                  std::optional<double> scale = std::nullopt) {
  const int64_t H = image_hwc.size(0), W = image_hwc.size(1);
  auto d = density_per_pixel(density, H, W);
  d = (d / std::max(scale ? *scale : d.flatten().quantile(0.99).item<double>(), 1e-12)).clamp_max(1);
  const auto colour = torch::stack({(2 * d - 1).clamp(0, 1), 1 - (2 * d - 1).abs(), (1 - 2 * d).clamp(0, 1)}, 2);
  const auto alpha = (0.85 * d).unsqueeze(2);
  const auto blended = image_hwc.to(torch::kFloat) / 255 * (1 - alpha) + colour * alpha;
  char count[32];
  std::snprintf(count, sizeof count, "%.1f", density.sum().item<double>());
  return label_image((blended * 255).round().clamp(0, 255).to(torch::kUInt8), count);
}

}  // namespace crowdloss_examples
