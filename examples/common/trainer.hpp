#pragma once
// Training, evaluation and prediction for the counting examples: model and loss selection, the
// papers' recipes, a progress bar, JSON-lines metrics, atomic checkpoints with exact resume.
#include "amp.hpp"
#include "image_io.hpp"
#include "loader.hpp"
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
#include <string>

namespace crowdloss_examples {

struct TrainConfig {
  std::string model = "csrnet";  // csrnet | sanet
  double width = 1.0;            // CSRNet channel multiplier (1 = the paper's model)
  std::string loss = "pml";      // l2 | pml | sanet | euclidean
  std::string optimizer = "adamw";
  double lr = 1e-4, weight_decay = 1e-6, min_lr = 1e-7, clip = 10.0;
  std::string schedule = "cosine";  // cosine | constant
  int64_t cosine_t_max = 150;
  int64_t epochs = 10, batch = 8, crop = 256, longest_side = 0, workers = 2;
  uint64_t seed = 1;
  std::string device = "cpu";
  std::string amp = "off";  // off | bf16 | fp16 (CUDA): autocast for the model, loss in float32
  std::string vgg_weights;

  nlohmann::json to_json() const {
    return {{"model", model}, {"width", width}, {"loss", loss}, {"optimizer", optimizer}, {"lr", lr},
            {"weight_decay", weight_decay}, {"min_lr", min_lr}, {"clip", clip}, {"schedule", schedule},
            {"cosine_t_max", cosine_t_max}, {"epochs", epochs}, {"batch", batch}, {"crop", crop},
            {"longest_side", longest_side}, {"workers", workers}, {"seed", seed}, {"device", device}, {"amp", amp}};
  }
  static TrainConfig from_json(const nlohmann::json& j) {
    TrainConfig c;
    c.model = j.at("model"), c.width = j.at("width"), c.loss = j.at("loss"), c.optimizer = j.at("optimizer");
    c.lr = j.at("lr"), c.weight_decay = j.at("weight_decay"), c.min_lr = j.at("min_lr"), c.clip = j.at("clip");
    c.schedule = j.at("schedule"), c.cosine_t_max = j.at("cosine_t_max"), c.epochs = j.at("epochs");
    c.batch = j.at("batch"), c.crop = j.at("crop"), c.longest_side = j.at("longest_side"), c.workers = j.at("workers");
    c.seed = j.at("seed"), c.device = j.at("device"), c.amp = j.value("amp", "off");
    return c;
  }
};

/// The papers' recipes: "pml" (the PML paper: CSRNet, AdamW 1e-4, weight decay 1e-6, cosine
/// T_max 150 to 1e-7, gradient-norm clip 10, batch 8, longest side 1024, pixel MSE + PML),
/// "csrnet" (CSRNet: the Euclidean loss ½·Σ‖Z − Ẑ‖² per image, SGD at the paper's fixed 1e-6 with
/// the official code's momentum 0.95 and weight decay 5e-4, batch 1, whole images), "sanet"
/// (SANet: Adam 1e-5, L2 + 0.001·(1 − SSIM)).
inline TrainConfig recipe(const std::string& name) {
  TrainConfig c;
  if (name == "pml") {
    c.model = "csrnet", c.loss = "pml", c.optimizer = "adamw", c.lr = 1e-4, c.weight_decay = 1e-6;
    c.schedule = "cosine", c.cosine_t_max = 150, c.min_lr = 1e-7, c.clip = 10, c.batch = 8, c.longest_side = 1024;
  } else if (name == "csrnet") {
    c.model = "csrnet", c.loss = "euclidean", c.optimizer = "sgd", c.lr = 1e-6, c.weight_decay = 5e-4, c.schedule = "constant";
    c.clip = 0, c.batch = 1, c.crop = 0;
  } else if (name == "sanet") {
    c.model = "sanet", c.loss = "sanet", c.optimizer = "adam", c.lr = 1e-5, c.weight_decay = 0, c.schedule = "constant";
    c.clip = 0;
  } else {
    throw std::runtime_error("unknown recipe '" + name + "' (pml, csrnet, sanet)");
  }
  return c;
}

/// A counting model behind one interface: forward(images) → density at `stride`.
struct CountingModel {
  torch::nn::AnyModule module;
  std::shared_ptr<torch::nn::Module> ptr;
  int64_t stride = 8;
};

inline CountingModel make_model(const TrainConfig& c) {
  CountingModel m;
  if (c.model == "csrnet") {
    CSRNet net(c.width);
    if (!c.vgg_weights.empty()) net->load_vgg16_frontend(c.vgg_weights);
    m.module = torch::nn::AnyModule(net), m.ptr = net.ptr(), m.stride = 8;
  } else if (c.model == "sanet") {
    SANet net;
    m.module = torch::nn::AnyModule(net), m.ptr = net.ptr(), m.stride = 1;
  } else {
    throw std::runtime_error("unknown model '" + c.model + "' (csrnet, sanet)");
  }
  m.ptr->to(torch::Device(c.device));
  return m;
}

/// The training objective for density maps pred, target (B×1×h×w).
inline at::Tensor count_loss(const std::string& name, const at::Tensor& pred, const at::Tensor& target) {
  if (name == "l2") return torch::mse_loss(pred, target);
  if (name == "euclidean") return 0.5 * (pred - target).square().sum() / static_cast<double>(pred.size(0));
  if (name == "pml") {
    // The grids that divide the map (at most 32 cells per side); pad when none beyond 1 does.
    std::vector<int64_t> grids{1};
    while (grids.back() < 32 && pred.size(2) % (grids.back() * 2) == 0 && pred.size(3) % (grids.back() * 2) == 0)
      grids.push_back(grids.back() * 2);
    return crowdloss::pml_loss(pred, target, crowdloss::PMLLossOptions().grids(grids).pixel_mse_weight(1.0));
  }
  if (name == "sanet") {
    const double range = std::max(target.max().item<double>(), 1e-6);
    return crowdloss::sanet_loss(pred, target, crowdloss::SANetLossOptions().ssim(
        crowdloss::SSIMOptions().data_range(range).padding(crowdloss::kSame)));
  }
  throw std::runtime_error("unknown loss '" + name + "' (l2, pml, sanet, euclidean)");
}

inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainConfig& c, const std::vector<at::Tensor>& params) {
  if (c.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(c.lr).weight_decay(c.weight_decay));
  if (c.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  if (c.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(c.lr).momentum(0.95).weight_decay(c.weight_decay));
  throw std::runtime_error("unknown optimizer '" + c.optimizer + "' (adamw, adam, sgd)");
}

/// The learning rate of `epoch` (0-based): cosine annealing from lr to min_lr over T_max epochs.
inline double learning_rate(const TrainConfig& c, int64_t epoch) {
  if (c.schedule == "constant") return c.lr;
  const double t = static_cast<double>(std::min(epoch, c.cosine_t_max)) / static_cast<double>(c.cosine_t_max);
  return c.min_lr + (c.lr - c.min_lr) * (1 + std::cos(3.141592653589793 * t)) / 2;
}

struct Metrics {
  double mae = 0, rmse = 0;
};

/// MAE and RMSE of the predicted counts over `loader` (no augmentation expected), the model run
/// under autocast to `amp` when given.
inline Metrics evaluate(CountingModel& m, const Loader& loader, const torch::Device& device,
                        std::optional<at::ScalarType> amp = std::nullopt) {
  torch::NoGradGuard no_grad;
  m.ptr->eval();
  double abs_sum = 0, sq_sum = 0;
  loader.run_epoch(0, [&](int64_t, Batch& b) {
    at::Tensor pred;
    {
      AmpScope scope(device, amp);
      pred = m.module.forward(b.images.to(device));
    }
    const auto counts = pred.to(torch::kDouble).sum({1, 2, 3}).cpu();
    const auto err = counts - b.counts.to(torch::kDouble);
    abs_sum += err.abs().sum().item<double>();
    sq_sum += err.square().sum().item<double>();
  });
  const double n = static_cast<double>(std::max<int64_t>(1, loader.size()));
  return {abs_sum / n, std::sqrt(sq_sum / n)};
}

/// Writes `archive` to `path` atomically: a temporary file in the same directory, then rename.
inline void save_atomically(torch::serialize::OutputArchive& archive, const fs::path& path) {
  const auto tmp = path.string() + ".tmp";
  archive.save_to(tmp);
  fs::rename(tmp, path);
}

/// A checkpoint: model, optimizer, the next epoch to run, the best validation MAE so far, and
/// the configuration it was trained with.
inline void save_checkpoint(const fs::path& path, CountingModel& m, torch::optim::Optimizer& opt, int64_t next_epoch,
                            double best_mae, const TrainConfig& c, const LossScaler& scaler) {
  torch::serialize::OutputArchive archive, opt_archive;
  m.ptr->save(archive);
  opt.save(opt_archive);
  archive.write("optimizer", opt_archive);
  archive.write("next_epoch", c10::IValue(next_epoch));
  archive.write("best_mae", c10::IValue(best_mae));
  archive.write("loss_scale", c10::IValue(scaler.current_scale()));
  archive.write("loss_scale_good_steps", c10::IValue(scaler.good_steps()));
  archive.write("config", c10::IValue(c.to_json().dump()));
  save_atomically(archive, path);
}

inline TrainConfig checkpoint_config(const fs::path& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string());
  c10::IValue config;
  archive.read("config", config);
  return TrainConfig::from_json(nlohmann::json::parse(config.toStringRef()));
}

struct Resumed {
  int64_t next_epoch = 0;
  double best_mae = std::numeric_limits<double>::infinity();
};

inline Resumed load_checkpoint(const fs::path& path, CountingModel& m, torch::optim::Optimizer* opt,
                               LossScaler* scaler = nullptr) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string());
  m.ptr->load(archive);
  Resumed r;
  if (opt) {
    torch::serialize::InputArchive opt_archive;
    archive.read("optimizer", opt_archive);
    opt->load(opt_archive);
  }
  c10::IValue v;
  archive.read("next_epoch", v);
  r.next_epoch = v.toInt();
  archive.read("best_mae", v);
  r.best_mae = v.toDouble();
  if (scaler) {
    c10::IValue good;
    archive.read("loss_scale", v);
    archive.read("loss_scale_good_steps", good);
    scaler->restore(v.toDouble(), good.toInt());
  }
  return r;
}

/// "epoch 3/10 [######......] 45/100 loss 0.1234 12.3 img/s ETA 00:12", redrawn in place.
class ProgressBar {
 public:
  ProgressBar(std::string title, int64_t total) : title_(std::move(title)), total_(total), start_(clock::now()) {}
  void update(int64_t done, double loss, int64_t images) {
    const double seconds = std::chrono::duration<double>(clock::now() - start_).count();
    const double rate = images / std::max(seconds, 1e-9);
    const double eta = done > 0 ? seconds / done * (total_ - done) : 0;
    const int width = 24, filled = static_cast<int>(width * done / std::max<int64_t>(1, total_));
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f %.1f img/s ETA %02d:%02d ", title_.c_str(),
                 std::string(static_cast<size_t>(filled), '#').c_str(), std::string(static_cast<size_t>(width - filled), '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), loss, rate, static_cast<int>(eta) / 60,
                 static_cast<int>(eta) % 60);
    if (done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string title_;
  int64_t total_;
  clock::time_point start_;
};

/// Trains per `c` on `train`, validating on `val` after every epoch; writes `out`/last.pt and
/// `out`/best.pt (atomically) and appends one JSON line per epoch to `out`/metrics.jsonl. With
/// `resume`, continues from `out`/last.pt exactly where it stopped. Returns the best metrics.
/// A non-finite loss stops training with an error; the last good checkpoint stays in place.
inline Metrics train(const TrainConfig& c, const std::vector<CrowdSample>& train, const std::vector<CrowdSample>& val,
                     const fs::path& out, bool resume, bool quiet = false) {
  fs::create_directories(out);
  torch::manual_seed(c.seed);
  const torch::Device device(c.device);
  auto m = make_model(c);
  const auto params = m.ptr->parameters();
  auto opt = make_optimizer(c, params);
  const auto amp = amp_dtype(c.amp, device);
  LossScaler scaler(amp == at::kHalf);
  Resumed state;
  if (resume && fs::exists(out / "last.pt")) {
    state = load_checkpoint(out / "last.pt", m, opt.get(), &scaler);
    if (!quiet) std::cerr << "resuming " << out / "last.pt" << " at epoch " << state.next_epoch + 1 << "\n";
  } else {
    fs::remove(out / "metrics.jsonl");
  }
  LoaderOptions tl;
  tl.batch = c.batch, tl.crop = c.crop, tl.longest_side = c.longest_side, tl.stride = m.stride, tl.augment = true;
  tl.shuffle = true, tl.workers = c.workers, tl.seed = c.seed;
  LoaderOptions vl;
  vl.batch = 1, vl.longest_side = c.longest_side, vl.stride = std::max<int64_t>(m.stride, 8), vl.workers = c.workers;
  const Loader train_loader(train, tl), val_loader(val, vl);
  Metrics best{state.best_mae, 0};
  for (int64_t epoch = state.next_epoch; epoch < c.epochs; ++epoch) {
    const double lr = learning_rate(c, epoch);
    for (auto& group : opt->param_groups()) group.options().set_lr(lr);
    m.ptr->train();
    ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs), train_loader.batches());
    double loss_sum = 0;
    int64_t images = 0, skipped = 0;
    const auto start = std::chrono::steady_clock::now();
    train_loader.run_epoch(epoch, [&](int64_t i, Batch& b) {
      at::Tensor pred;
      {
        AmpScope scope(device, amp);
        pred = m.module.forward(b.images.to(device));
      }
      const auto loss = count_loss(c.loss, pred.to(torch::kFloat), b.density.to(device));
      const double value = loss.item<double>();
      if (!std::isfinite(value))
        throw std::runtime_error("non-finite loss at epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(i + 1) +
                                 "; the last good checkpoint is " + (out / "last.pt").string());
      opt->zero_grad();
      scaler.scale(loss).backward();
      if (scaler.unscale_and_check(params)) {
        if (c.clip > 0) torch::nn::utils::clip_grad_norm_(params, c.clip);
        opt->step();
      } else {
        ++skipped;  // fp16 overflow: the scaler backed off, the step is skipped
      }
      loss_sum += value * static_cast<double>(b.images.size(0));
      images += b.images.size(0);
      if (!quiet) bar.update(i + 1, loss_sum / static_cast<double>(images), images);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto metrics = evaluate(m, val_loader, device, amp);
    if (metrics.mae < best.mae) {
      best = metrics;
      torch::serialize::OutputArchive archive;
      m.ptr->save(archive);
      archive.write("config", c10::IValue(c.to_json().dump()));
      save_atomically(archive, out / "best.pt");
    }
    save_checkpoint(out / "last.pt", m, *opt, epoch + 1, best.mae, c, scaler);
    nlohmann::json line = {{"epoch", epoch + 1}, {"lr", lr}, {"train_loss", loss_sum / std::max<int64_t>(1, images)},
                                 {"val_mae", metrics.mae}, {"val_rmse", metrics.rmse}, {"images_per_s", images / seconds},
                                 {"seconds", seconds}};
    if (amp) line["amp"] = {{"dtype", c.amp}, {"loss_scale", scaler.current_scale()}, {"skipped_steps", skipped}};
    std::ofstream(out / "metrics.jsonl", std::ios::app) << line.dump() << "\n";
    if (!quiet) std::cerr << line.dump() << "\n";
  }
  return best;
}

/// A model from a checkpoint written by `train` (best.pt or last.pt).
inline CountingModel load_model(const fs::path& checkpoint, const std::string& device) {
  auto c = checkpoint_config(checkpoint);
  c.device = device;
  auto m = make_model(c);
  torch::serialize::InputArchive archive;
  archive.load_from(checkpoint.string());
  m.ptr->load(archive);
  m.ptr->eval();
  return m;
}

/// A density map as a colour overlay on its image: the map is upsampled to the image, scaled to
/// its 99th percentile (so that a few sharp peaks do not wash out the rest), coloured
/// blue → green → red, and blended in proportion to its value.
inline at::Tensor density_overlay(const at::Tensor& image_hwc, const at::Tensor& density) {
  const int64_t H = image_hwc.size(0), W = image_hwc.size(1);
  auto d = torch::nn::functional::interpolate(density.view({1, 1, density.size(-2), density.size(-1)}).to(torch::kFloat),
                                              torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{H, W})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false))[0][0]
               .clamp_min(0);
  d = (d / std::max(d.flatten().quantile(0.99).item<float>(), 1e-12f)).clamp_max(1);
  const auto colour = torch::stack({(2 * d - 1).clamp(0, 1), 1 - (2 * d - 1).abs(), (1 - 2 * d).clamp(0, 1)}, 2);
  const auto alpha = (0.85 * d).unsqueeze(2);
  const auto blended = image_hwc.to(torch::kFloat) / 255 * (1 - alpha) + colour * alpha;
  return (blended * 255).round().clamp(0, 255).to(torch::kUInt8);
}

}  // namespace crowdloss_examples
