#pragma once
// The training loop both example trainers (counting, detection) share: learning-rate schedule,
// mixed precision with loss scaling, gradient clipping, a progress bar, per-epoch validation,
// JSON-lines metrics, atomic checkpoints (last and best) and an exact --resume, also after a
// run killed at any moment (SIGKILL, a crash): see `fit`.
#include "amp.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>

namespace crowdloss_examples {

namespace fs = std::filesystem;

/// What the trainers' `train --help` says about interruptions and bad data (docs/examples.md,
/// "Faults and bad data").
inline constexpr const char* kFaultsHelp =
    "Checkpoints (OUT/last.pt, OUT/best.pt) are written atomically after each epoch: a run killed at\n"
    "any moment (even with SIGKILL) keeps its completed epochs, and --resume continues it with the\n"
    "same results as an uninterrupted run. A non-finite loss stops training with an error; the last\n"
    "good checkpoint stays. An image or annotation that cannot be read stops the run with an error\n"
    "naming the file, unless --skip-bad is given.";

/// "adamw" | "adam" | "sgd" (with `momentum`) over `params`.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, const std::vector<at::Tensor>& params,
                                                               double lr, double weight_decay, double momentum) {
  if (name == "adamw")
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
  if (name == "adam") return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(lr).weight_decay(weight_decay));
  if (name == "sgd")
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
  throw std::runtime_error("unknown optimizer '" + name + "' (adamw, adam, sgd)");
}

/// Cosine annealing from `lr` to `min_lr` over `t_max` epochs (0-based `epoch`, constant after).
inline double cosine_lr(double lr, double min_lr, int64_t t_max, double epoch) {
  const double t = std::min(epoch, static_cast<double>(t_max)) / static_cast<double>(std::max<int64_t>(1, t_max));
  return min_lr + (lr - min_lr) * (1 + std::cos(3.141592653589793 * t)) / 2;
}

/// Writes `archive` to `path` atomically: a temporary file in the same directory, then rename.
inline void save_atomically(torch::serialize::OutputArchive& archive, const fs::path& path) {
  const auto tmp = path.string() + ".tmp";
  archive.save_to(tmp);
  fs::rename(tmp, path);
}

/// The configuration JSON stored in a checkpoint written by `fit`.
inline nlohmann::json checkpoint_json(const fs::path& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string());
  c10::IValue config;
  archive.read("config", config);
  return nlohmann::json::parse(config.toStringRef());
}

/// Keeps the lines of the metrics log `path` for epochs 1..`epochs` and drops the rest (an epoch
/// logged by a run killed before its checkpoint was written, a line cut short), rewritten
/// atomically.
inline void keep_logged_epochs(const fs::path& path, int64_t epochs) {
  std::string kept, line;
  std::ifstream in(path);
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).at("epoch").get<int64_t>() <= epochs) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {  // a line cut short: dropped
    }
  }
  in.close();
  const auto tmp = path.string() + ".tmp";
  if (!(std::ofstream(tmp) << kept)) throw std::runtime_error("cannot write " + tmp);
  fs::rename(tmp, path);
}

/// Loads a checkpoint's weights into `model` (best.pt or last.pt of `fit`).
inline void load_weights(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string());
  model.load(archive);
}

/// "epoch 3/10 [######......] 45/100 loss 0.1234 12.3 img/s ETA 00:12": on a terminal redrawn in
/// place; when stderr is not a terminal (a redirected log), written as whole lines, one at the end
/// of the epoch and one at most every 30 seconds before it.
class ProgressBar {
 public:
  ProgressBar(std::string title, int64_t total)
      : title_(std::move(title)), total_(total), start_(clock::now()), printed_(start_), terminal_(isatty(STDERR_FILENO) == 1) {}
  void update(int64_t done, double loss, int64_t images) {
    const auto now = clock::now();
    if (!terminal_ && done != total_ && now - printed_ < std::chrono::seconds(30)) return;
    printed_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = images / std::max(seconds, 1e-9);
    const double eta = done > 0 ? seconds / done * (total_ - done) : 0;
    const int width = 24, filled = static_cast<int>(width * done / std::max<int64_t>(1, total_));
    std::fprintf(stderr, "%s%s [%s%s] %lld/%lld loss %.4f %.1f img/s ETA %02d:%02d ", terminal_ ? "\r" : "", title_.c_str(),
                 std::string(static_cast<size_t>(filled), '#').c_str(), std::string(static_cast<size_t>(width - filled), '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), loss, rate, static_cast<int>(eta) / 60,
                 static_cast<int>(eta) % 60);
    if (!terminal_ || done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string title_;
  int64_t total_;
  clock::time_point start_, printed_;
  bool terminal_;
};

/// What `fit` needs to know besides the hooks.
struct FitSettings {
  int64_t epochs = 1;
  double clip = 0;                         // gradient-norm clip (0: off)
  std::optional<at::ScalarType> amp;       // autocast dtype; fp16 also scales the loss
  fs::path out;                            // last.pt, best.pt, metrics.jsonl
  bool resume = false;                     // continue from out/last.pt
  bool quiet = false;
  nlohmann::json config;                   // stored in the checkpoints
};

/// One epoch's validation: the metrics to log, and the number the best checkpoint is chosen
/// by (lower is better).
struct Validation {
  nlohmann::json metrics;
  double score = 0;
};

/// The per-task parts of the loop. `loss` runs the forward pass (under `AmpScope` for the
/// model) and returns the scalar float32 loss of a batch and its number of images.
template <class Batch>
struct FitHooks {
  std::function<double(int64_t epoch, int64_t batch, int64_t batches)> learning_rate;
  std::function<std::pair<at::Tensor, int64_t>(Batch&)> loss;
  std::function<Validation(int64_t epoch)> validate;
};

/// Trains `model` with `opt` over `loader` (anything with batches() and run_epoch(epoch, fn))
/// for `s.epochs` epochs, validating after each; appends one JSON line per epoch to
/// `out`/metrics.jsonl, then writes `out`/best.pt and `out`/last.pt atomically (temporary file +
/// rename), in that order, so that a run killed at any moment leaves a complete last.pt. With
/// `resume`, continues from `out`/last.pt (model, optimiser, loss scale, epoch, best score) so
/// that the result equals an uninterrupted run, and drops the log lines of epochs after it (logged
/// by a run killed before their checkpoint); without a last.pt it starts afresh. A non-finite
/// loss stops training with an error naming the epoch, the batch and the last good checkpoint,
/// which stays as it was. Returns the best validation's metrics, with its epoch (from 1) as "epoch".
template <class Loader, class Batch>
nlohmann::json fit(torch::nn::Module& model, torch::optim::Optimizer& opt, const Loader& loader, const FitHooks<Batch>& hooks,
                   const FitSettings& s) {
  fs::create_directories(s.out);
  const auto params = model.parameters();
  LossScaler scaler(s.amp == at::kHalf);
  int64_t first_epoch = 0;
  double best_score = std::numeric_limits<double>::infinity();
  nlohmann::json best_metrics;
  const auto last = s.out / "last.pt", best = s.out / "best.pt", log = s.out / "metrics.jsonl";
  if (s.resume && fs::exists(last)) {
    torch::serialize::InputArchive archive, opt_archive;
    archive.load_from(last.string());
    model.load(archive);
    archive.read("optimizer", opt_archive);
    opt.load(opt_archive);
    c10::IValue epoch, score, scale, good, metrics;
    archive.read("next_epoch", epoch);
    archive.read("best_score", score);
    archive.read("loss_scale", scale);
    archive.read("loss_scale_good_steps", good);
    archive.read("best_metrics", metrics);
    first_epoch = epoch.toInt(), best_score = score.toDouble();
    best_metrics = nlohmann::json::parse(metrics.toStringRef());
    scaler.restore(scale.toDouble(), good.toInt());
    keep_logged_epochs(log, first_epoch);
    if (!s.quiet) std::cerr << "resuming " << last << " at epoch " << first_epoch + 1 << "\n";
  } else {
    if (s.resume && !s.quiet) std::cerr << "no " << last << " to resume from: starting at epoch 1\n";
    fs::remove(log);
  }
  int64_t saved_epochs = first_epoch;  // the epochs in last.pt, when it is this run's
  const auto save = [&](const fs::path& path, bool full, int64_t next_epoch) {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    archive.write("config", c10::IValue(s.config.dump()));
    if (full) {
      torch::serialize::OutputArchive opt_archive;
      opt.save(opt_archive);
      archive.write("optimizer", opt_archive);
      archive.write("next_epoch", c10::IValue(next_epoch));
      archive.write("best_score", c10::IValue(best_score));
      archive.write("best_metrics", c10::IValue(best_metrics.dump()));
      archive.write("loss_scale", c10::IValue(scaler.current_scale()));
      archive.write("loss_scale_good_steps", c10::IValue(scaler.good_steps()));
    }
    save_atomically(archive, path);
  };
  const int64_t batches = loader.batches();
  for (int64_t epoch = first_epoch; epoch < s.epochs; ++epoch) {
    model.train();
    ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(s.epochs), batches);
    double loss_sum = 0, lr = 0;
    int64_t images = 0, skipped = 0;
    const auto start = std::chrono::steady_clock::now();
    loader.run_epoch(epoch, [&](int64_t i, Batch& b) {
      lr = hooks.learning_rate(epoch, i, batches);
      for (auto& group : opt.param_groups()) group.options().set_lr(lr);
      const auto [loss, n] = hooks.loss(b);
      const double value = loss.template item<double>();
      if (!std::isfinite(value))
        throw std::runtime_error("non-finite loss (" + std::to_string(value) + ") at epoch " + std::to_string(epoch + 1) +
                                 ", batch " + std::to_string(i + 1) + "; " +
                                 (saved_epochs > 0 ? "the last good checkpoint is " + last.string() + " (after epoch " +
                                                         std::to_string(saved_epochs) + ")"
                                                   : std::string("no checkpoint was written yet")));
      opt.zero_grad();
      scaler.scale(loss).backward();
      if (scaler.unscale_and_check(params)) {
        if (s.clip > 0) torch::nn::utils::clip_grad_norm_(params, s.clip);
        opt.step();
      } else {
        ++skipped;  // fp16 overflow: the scaler backed off, the step is skipped
      }
      loss_sum += value * static_cast<double>(n);
      images += n;
      if (!s.quiet) bar.update(i + 1, loss_sum / static_cast<double>(images), images);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto v = hooks.validate(epoch);
    nlohmann::json line = {{"epoch", epoch + 1}, {"lr", lr}, {"train_loss", loss_sum / std::max<int64_t>(1, images)},
                           {"images_per_s", images / seconds}, {"seconds", seconds}};
    line.update(v.metrics);
    if (s.amp) line["amp"] = {{"dtype", c10::toString(*s.amp)}, {"loss_scale", scaler.current_scale()}, {"skipped_steps", skipped}};
    // The log line first, the checkpoints after: a kill in between repeats the epoch on resume,
    // and keep_logged_epochs drops its first line.
    if (!(std::ofstream(log, std::ios::app) << line.dump() << "\n")) throw std::runtime_error("cannot write " + log.string());
    if (!s.quiet) std::cerr << line.dump() << "\n";
    if (v.score < best_score) {
      best_score = v.score, best_metrics = v.metrics;
      best_metrics["epoch"] = epoch + 1;
      save(best, false, 0);
    }
    save(last, true, epoch + 1);
    saved_epochs = epoch + 1;
  }
  return best_metrics;
}

}  // namespace crowdloss_examples
