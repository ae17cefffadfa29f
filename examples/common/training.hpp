#pragma once
// The training loop both example trainers (counting, detection) share: learning-rate schedule,
// mixed precision with loss scaling, gradient clipping, a progress bar, per-epoch validation,
// JSON-lines metrics, atomic checkpoints (last and best) in a locked output folder and an exact
// --resume, also after a run killed at any moment (SIGKILL, a crash) or stopped by a full disk:
// see `fit`.
#include "amp.hpp"
#include "distributed.hpp"
#include "run_config.hpp"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss_examples {

namespace fs = std::filesystem;

/// What the trainers' `train --help` says about interruptions and bad data (docs/examples.md,
/// "Faults and bad data").
inline constexpr const char* kFaultsHelp =
    "After each epoch OUT/best.pt, OUT/last.pt and then OUT/metrics.jsonl are written atomically: a run\n"
    "killed at any moment (even with SIGKILL) or stopped by a full disk keeps its completed epochs, and\n"
    "--resume continues it with the same results as an uninterrupted run (its settings are the\n"
    "checkpoint's; only --epochs, --device and --workers may change). OUT is locked while a run writes\n"
    "there, and a run already in OUT is continued only with --resume, replaced only with --overwrite.\n"
    "A non-finite loss stops training with an error; the last good checkpoint stays. An image or\n"
    "annotation that cannot be read, or that lies outside its data set's folder, stops the run with\n"
    "an error naming the file, unless --skip-bad is given (--allow-outside-paths accepts such paths).";

/// The optimiser `kind` (SGD with `momentum`) over `params`.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(Optimizer kind, const std::vector<at::Tensor>& params,
                                                               double lr, double weight_decay, double momentum) {
  switch (kind) {
    case Optimizer::kAdamW:
      return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
    case Optimizer::kAdam:
      return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(lr).weight_decay(weight_decay));
    case Optimizer::kSGD:
      break;
  }
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
}

/// Cosine annealing from `lr` to `min_lr` over `t_max` epochs (0-based `epoch`, constant after).
inline double cosine_lr(double lr, double min_lr, int64_t t_max, double epoch) {
  const double t = std::min(epoch, static_cast<double>(t_max)) / static_cast<double>(std::max<int64_t>(1, t_max));
  return min_lr + (lr - min_lr) * (1 + std::cos(3.141592653589793 * t)) / 2;
}

/// A file written in full or not at all. The content goes to a temporary file beside `path`
/// (`path`.tmp); `commit` flushes it to the disk and renames it over `path`. A failed write (a full
/// disk, an I/O error) is remembered and reported by `commit`; an object destroyed without a
/// successful `commit` (an error, an exception while producing the content) removes the temporary
/// file. So `path` holds either its former content or the whole new one, and nothing is left
/// behind. Errors are std::runtime_error naming `path` and the cause.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path) : path_(std::move(path)), tmp_(path_.string() + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (file_ == nullptr) fail(errno);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  /// Appends `n` bytes and returns `n`: a failure is reported by `commit` (a writer that stops
  /// short would make LibTorch's archive writer throw from its destructor, which aborts).
  size_t write(const void* data, size_t n) {
    if (error_ == 0 && n > 0 && std::fwrite(data, 1, n, file_) != n) error_ = errno != 0 ? errno : EIO;
    return n;
  }

  void commit() {
    if (error_ == 0 && std::fflush(file_) != 0) error_ = errno;
    if (error_ == 0 && ::fsync(::fileno(file_)) != 0 && errno != EINVAL)
      error_ = errno;  // EINVAL: cannot sync, e.g. a pipe
    const int closed = std::fclose(file_);
    file_ = nullptr;
    if (error_ == 0 && closed != 0) error_ = errno;
    if (error_ == 0 && std::rename(tmp_.c_str(), path_.c_str()) != 0) error_ = errno;
    if (error_ != 0) fail(error_);
    committed_ = true;
    // The rename itself reaches the disk with the folder's entry (best effort).
    const int dir = ::open(path_.has_parent_path() ? path_.parent_path().c_str() : ".", O_RDONLY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

 private:
  [[noreturn]] void fail(int error) const {
    throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(error));
  }

  fs::path path_;
  std::string tmp_;
  std::FILE* file_ = nullptr;
  int error_ = 0;
  bool committed_ = false;
};

/// Writes `archive` to `path` atomically (AtomicFile).
inline void save_atomically(torch::serialize::OutputArchive& archive, const fs::path& path) {
  AtomicFile file(path);
  archive.save_to([&](const void* data, size_t n) { return file.write(data, n); });
  file.commit();
}

/// Writes `text` to `path` atomically (AtomicFile).
inline void write_text_atomically(const fs::path& path, const std::string& text) {
  AtomicFile file(path);
  file.write(text.data(), text.size());
  file.commit();
}

/// The first line of `text` (LibTorch's messages go on with a C++ backtrace).

/// Opens the checkpoint `path`. Throws std::runtime_error, one line naming the file, when it is
/// missing or is not a LibTorch archive (empty, truncated, corrupt, another kind of file).
inline torch::serialize::InputArchive open_checkpoint(const fs::path& path) {
  if (!fs::is_regular_file(path)) throw std::runtime_error("no checkpoint " + path.string());
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const c10::Error& e) {
    throw std::runtime_error(path.string() + " is not a checkpoint: not a LibTorch archive, or a damaged one (" +
                             first_line(e.what_without_backtrace()) + ")");
  }
  return archive;
}

/// Value `key` of a checkpoint written by `fit`; a one-line error naming the file when it has none.
inline c10::IValue checkpoint_value(torch::serialize::InputArchive& archive, const fs::path& path,
                                    const std::string& key) {
  c10::IValue value;
  if (!archive.try_read(key, value))
    throw std::runtime_error(path.string() + " is not a checkpoint of the crowdloss trainers (it holds no '" + key +
                             "')");
  return value;
}

/// The configuration JSON stored in a checkpoint written by `fit` (errors as checkpoint_value).
inline nlohmann::json checkpoint_json(const fs::path& path) {
  auto archive = open_checkpoint(path);
  const auto config = checkpoint_value(archive, path, "config");
  try {
    return nlohmann::json::parse(config.toStringRef());
  } catch (const std::exception& e) {
    throw std::runtime_error(
        path.string() +
        " is not a checkpoint of the crowdloss trainers (its 'config' is not JSON: " + first_line(e.what()) + ")");
  }
}

/// A checkpoint's configuration as `Config` (TrainConfig, DetectConfig); `program` names the
/// program whose checkpoints hold one, for the one-line error about any other file.
template <class Config>
Config checkpoint_config_of(const fs::path& path, const std::string& program) {
  const auto j = checkpoint_json(path);
  try {
    // A missing setting takes the program's default, but not the one that says which program
    // wrote the checkpoint.
    j.at(Config::kIdentifyingKey);
    return j.get<Config>();
  } catch (const nlohmann::json::exception& e) {
    const std::string what = e.what();
    throw std::runtime_error(path.string() + " is not a " + program + " checkpoint (its configuration: " +
                             what.substr(what.find("] ") == std::string::npos ? 0 : what.find("] ") + 2) + ")");
  } catch (const std::runtime_error& e) {  // a setting with an unknown name (parse_choice)
    throw std::runtime_error(path.string() + " is not a " + program + " checkpoint (its configuration: " + e.what() +
                             ")");
  }
}

/// Loads a checkpoint's weights into `model` (best.pt or last.pt of `fit`); a one-line error
/// naming the file when they are not that model's.
inline void load_weights(const fs::path& path, torch::nn::Module& model) {
  auto archive = open_checkpoint(path);
  try {
    model.load(archive);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path.string() + " does not hold this model's weights (" +
                             first_line(e.what_without_backtrace()) + ")");
  }
}

/// An exclusive lock on a run's output folder (`dir`/.lock, flock), held while the object lives.
/// The system releases it when the process ends in any way, SIGKILL included, so a killed run
/// never leaves the folder locked. The file records the holder (pid, host, start time) and stays.
/// Throws std::runtime_error naming the folder and the holder when another run holds it.
class FolderLock {
 public:
  explicit FolderLock(const fs::path& dir) {
    const auto path = dir / ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      char holder[256] = {};
      const auto n = ::pread(fd_, holder, sizeof holder - 1, 0);
      ::close(fd_);
      std::string who(holder, static_cast<size_t>(std::max<ssize_t>(0, n)));
      while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
      if (error == EWOULDBLOCK)
        throw std::runtime_error(dir.string() + " is in use by another run (" + (who.empty() ? "unknown" : who) +
                                 "): wait for it to end, or choose another --out");
      throw std::runtime_error("cannot lock " + path.string() + ": " + std::strerror(error));
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    char since[32] = {};
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    std::strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S UTC", ::gmtime_r(&now, &utc));
    const std::string me = "pid " + std::to_string(::getpid()) + " on " + host + " since " + since + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
      // The lock holds without the note; only the message of a second run is poorer.
    }
  }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock() { ::close(fd_); }

 private:
  int fd_ = -1;
};

/// What `fit` does with a run already in its output folder (last.pt, best.pt or metrics.jsonl).
enum class ExistingRun {
  kRefuse,     ///< stop with an error naming the folder (the trainers' default)
  kResume,     ///< continue it from last.pt (`--resume`; without last.pt, start afresh)
  kOverwrite,  ///< delete it and start afresh (`--overwrite`; the demos, whose folders are their own)
};

/// The ExistingRun of the trainers' `--resume` and `--overwrite` flags (refuse without either).
inline ExistingRun existing_run(bool resume, bool overwrite) {
  return resume ? ExistingRun::kResume : overwrite ? ExistingRun::kOverwrite : ExistingRun::kRefuse;
}

/// Whether a --resume run may change configuration key `key`: how many epochs in all, on which
/// device, with how many loader threads, whether with deterministic algorithms only. Every other
/// setting stays the checkpoint's.
inline bool resumable_setting(const std::string& key) {
  return key == "epochs" || key == "device" || key == "workers" || key == "deterministic";
}

/// `--deterministic` (on) or the backends' defaults (off), for the whole process: ATen's
/// deterministic algorithms (an op without a deterministic implementation throws, naming itself,
/// rather than run), cuDNN's deterministic algorithms without its benchmark search, and cuBLAS's
/// fixed workspace (CUBLAS_WORKSPACE_CONFIG=:4096:8 unless the environment sets it; cuBLAS reads
/// it when its first handle is made, so this runs before the model). The examples' own
/// reductions are in a fixed order either way: losses and metrics are summed on the host in batch
/// order, and Gloo's ring all-reduce adds in a fixed order for a given number of ranks. On the
/// CPU a run is deterministic for a given thread count without the flag.
inline void apply_determinism(bool on) {
  if (on) ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  auto& context = at::globalContext();
  context.setDeterministicAlgorithms(on, /*warn_only=*/false);
  context.setDeterministicCuDNN(on);
  context.setBenchmarkCuDNN(false);
}

/// The configuration (as checkpoints store it) a --resume run continues with: the checkpoint's,
/// `saved`, but for the resumable settings given on the command line, taken from `given`.
/// `option_given(key)` names the option that sets `key` when the command line gave it, else "".
/// Throws std::runtime_error naming `checkpoint`, the option and both values when a given option
/// contradicts the checkpoint on a setting that may not change.
inline nlohmann::json resumed_config(const fs::path& checkpoint, const nlohmann::json& saved,
                                     const nlohmann::json& given,
                                     const std::function<std::string(const std::string&)>& option_given) {
  auto config = saved;
  for (const auto& [key, value] : given.items()) {
    if (!config.contains(key)) config[key] = value;  // a setting newer than the checkpoint
    const auto option = option_given(key);
    if (option.empty() || config[key] == value) continue;
    if (!resumable_setting(key))
      throw std::runtime_error(
          "--resume: " + checkpoint.string() + " was trained with " + option + " " + config[key].dump() + ", not " +
          value.dump() +
          "; a resumed run keeps its settings (but --epochs, --device, --workers, --deterministic): leave " + option +
          " out, or train afresh in another --out");
    config[key] = value;
  }
  return config;
}

/// The configuration `given` becomes as a --resume run in `out` (resumed_config); `given` itself
/// when `out` holds no last.pt yet (the run starts afresh).
template <class Config>
Config resumed(const Config& given, const fs::path& out,
               const std::function<std::string(const std::string&)>& option_given) {
  const auto last = out / "last.pt";
  if (!fs::exists(last)) return given;
  return resumed_config(last, checkpoint_json(last), nlohmann::json(given), option_given).get<Config>();
}

/// "epoch 3/10 [######......] 45/100 loss 0.1234 12.3 img/s ETA 00:12": on a terminal redrawn in
/// place; when stderr is not a terminal (a redirected log), written as whole lines, one at the end
/// of the epoch and one at most every 30 seconds before it.
class ProgressBar {
 public:
  ProgressBar(std::string title, int64_t total)
      : title_(std::move(title)), total_(total), start_(clock::now()), printed_(start_),
        terminal_(isatty(STDERR_FILENO) == 1) {}
  void update(int64_t done, double loss, int64_t images) {
    const auto now = clock::now();
    if (!terminal_ && done != total_ && now - printed_ < std::chrono::seconds(30)) return;
    printed_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = images / std::max(seconds, 1e-9);
    const double eta = done > 0 ? seconds / done * (total_ - done) : 0;
    const int width = 24, filled = static_cast<int>(width * done / std::max<int64_t>(1, total_));
    std::fprintf(stderr, "%s%s [%s%s] %lld/%lld loss %.4f %.1f img/s ETA %02d:%02d ", terminal_ ? "\r" : "",
                 title_.c_str(), std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), loss, rate, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
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
  double clip = 0;                              // gradient-norm clip (0: off)
  std::optional<at::ScalarType> amp;            // autocast dtype; fp16 also scales the loss
  fs::path out;                                 // last.pt, best.pt, metrics.jsonl
  ExistingRun existing = ExistingRun::kRefuse;  // a run already in `out`
  bool quiet = false;
  nlohmann::json config;                // stored in the checkpoints
  std::shared_ptr<ProcessGroup> ranks;  // a data-parallel run's ranks; null: this process alone
};

/// The FitSettings of a run configured by `c` (its epochs and gradient clip) with autocast `amp`,
/// the `ranks` of a data-parallel run, and `config` to store in checkpoints.
inline FitSettings fit_settings(const RunConfig& c, std::optional<at::ScalarType> amp, nlohmann::json config,
                                std::shared_ptr<ProcessGroup> ranks) {
  FitSettings s;
  s.epochs = c.epochs, s.clip = c.clip, s.amp = amp, s.config = std::move(config), s.ranks = std::move(ranks);
  return s;
}

/// One epoch's validation: the metrics to log, and the number the best checkpoint is chosen
/// by (lower is better).
struct Validation {
  nlohmann::json metrics;
  double score = 0;
};

/// Throws unless a training batch has images: only a data-parallel run passes on a batch whose
/// images were all skipped as bad (each rank must take every step, and this one cannot).
inline void check_step_has_images(const at::Tensor& images) {
  if (!images.defined())
    throw std::runtime_error(
        "--skip-bad left this rank no image in a training batch; a data-parallel step needs at "
        "least one readable image on every rank");
}

/// The per-task parts of the loop. `loss` runs the forward pass (under `AmpScope` for the
/// model) and returns the scalar float32 loss of a batch and its number of images.
template <class Batch>
struct FitHooks {
  std::function<double(int64_t epoch, int64_t batch, int64_t batches)> learning_rate;
  std::function<std::pair<at::Tensor, int64_t>(Batch&)> loss;
  std::function<Validation(int64_t epoch)> validate;
};

/// Scales the gradients of `params` so that their joint 2-norm is at most `max_norm`: the
/// arithmetic of torch::nn::utils::clip_grad_norm_ (bit for bit), without the host read of the
/// norm that it returns, so that a GPU step does not wait for the device.
inline void clip_gradients(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads, norms;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad()), norms.push_back(p.grad().norm(2));
  if (grads.empty()) return;
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  const auto coefficient = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.mul_(coefficient);
}

/// Returns when the device of `params` has run everything queued so far (at once on the CPU).
inline void wait_for_device(const std::vector<at::Tensor>& params) {
  if (!params.empty() && !params.front().is_cpu()) torch::cuda::synchronize(params.front().device().index());
}

/// One optimisation step of `fit`: the learning rate, the loss of a batch (FitHooks::loss), its
/// gradients (in a data-parallel run averaged over the ranks, the loss summed with them), fp16
/// loss scaling, the gradient-norm clip and the optimiser's step. Nothing in it reads the device
/// back, but for fp16's overflow check and a data-parallel run's collectives.
template <class Batch>
class TrainStep {
 public:
  /// The loss of a step (0-dim, still on the loss's device: not read back) and its images.
  struct Result {
    at::Tensor loss;
    int64_t images = 0;
  };

  TrainStep(torch::nn::Module& model, torch::optim::Optimizer& opt, const FitHooks<Batch>& hooks, const FitSettings& s)
      : params_(model.parameters()), opt_(opt), hooks_(hooks), clip_(s.clip), ranks_(s.ranks.get()),
        scaler_(s.amp == at::kHalf) {}

  Result operator()(double lr, Batch& b) {
    for (auto& group : opt_.param_groups()) group.options().set_lr(lr);
    opt_.zero_grad();
    auto [loss, n] = hooks_.loss(b);
    scaler_.scale(loss).backward();
    if (ranks_) {
      // The gradients are averaged, and the loss summed over the ranks with them, so that every
      // rank sees the same loss and takes the same decisions.
      auto sums =
          torch::tensor({loss.template item<double>() * static_cast<double>(n), static_cast<double>(n)}, at::kFloat);
      ranks_->average_gradients(params_, sums);
      n = static_cast<int64_t>(sums[1].template item<double>());
      loss = torch::scalar_tensor(sums[0].template item<double>() / static_cast<double>(std::max<int64_t>(1, n)),
                                  at::kDouble);
    }
    if (scaler_.unscale_and_check(params_)) {
      if (clip_ > 0) clip_gradients(params_, clip_);
      opt_.step();
    } else {
      ++skipped_;  // fp16 overflow: the scaler backed off, the step is skipped
    }
    return {loss.detach(), n};
  }

  LossScaler& scaler() { return scaler_; }
  /// Steps skipped since the last call (fp16 overflows).
  int64_t take_skipped() { return std::exchange(skipped_, 0); }
  const std::vector<at::Tensor>& params() const { return params_; }

 private:
  std::vector<at::Tensor> params_;
  torch::optim::Optimizer& opt_;
  const FitHooks<Batch>& hooks_;
  double clip_;
  ProcessGroup* ranks_;
  LossScaler scaler_;
  int64_t skipped_ = 0;
};

/// Steps of a GPU run between two reads of the training loss: the host queues that many steps
/// ahead of the device instead of waiting for each. A CPU run reads every step (it costs nothing).
inline constexpr int64_t kLossReadBack = 16;

/// One training epoch's totals.
struct EpochTotals {
  double loss_sum = 0;  // the batches' losses weighted by their images
  int64_t images = 0, skipped_steps = 0;
  double seconds = 0;  // the epoch's wall time, the loader's included
  double lr = 0;       // the last step's learning rate
};

/// Trains one epoch of `loader` with `step` (the trainer's training phase): losses read back every
/// step on the CPU, every kLossReadBack steps on a device, each checked to be finite (else a
/// std::runtime_error naming the epoch, the batch and `checkpoint_note`); a progress bar unless
/// `quiet`. The time ends when the device has finished the epoch's last step.
template <class Loader, class Batch>
EpochTotals train_epoch(const Loader& loader, TrainStep<Batch>& step, const FitHooks<Batch>& hooks, int64_t epoch,
                        int64_t epochs, bool quiet, const std::string& checkpoint_note) {
  const int64_t batches = loader.batches();
  ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), batches);
  EpochTotals t;
  std::vector<std::pair<int64_t, typename TrainStep<Batch>::Result>> pending;  // steps not yet read back
  const auto read_back = [&] {
    if (pending.empty()) return;
    std::vector<at::Tensor> losses;
    for (const auto& [i, r] : pending) losses.push_back(r.loss.to(at::kDouble).reshape({1}));
    const auto values = torch::cat(losses).cpu();
    for (size_t k = 0; k < pending.size(); ++k) {
      const double value = values[static_cast<int64_t>(k)].template item<double>();
      if (!std::isfinite(value))
        throw std::runtime_error("non-finite loss (" + std::to_string(value) + ") at epoch " +
                                 std::to_string(epoch + 1) + ", batch " + std::to_string(pending[k].first + 1) + "; " +
                                 checkpoint_note);
      t.loss_sum += value * static_cast<double>(pending[k].second.images);
      t.images += pending[k].second.images;
    }
    if (!quiet)
      bar.update(pending.back().first + 1, t.loss_sum / static_cast<double>(std::max<int64_t>(1, t.images)), t.images);
    pending.clear();
  };
  const auto start = std::chrono::steady_clock::now();
  loader.run_epoch(epoch, [&](int64_t i, Batch& b) {
    t.lr = hooks.learning_rate(epoch, i, batches);
    pending.emplace_back(i, step(t.lr, b));
    if (pending.back().second.loss.is_cpu() || static_cast<int64_t>(pending.size()) >= kLossReadBack) read_back();
  });
  read_back();
  wait_for_device(step.params());
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  t.skipped_steps = step.take_skipped();
  return t;
}

/// Trains `model` with `opt` over `loader` (anything with batches() and run_epoch(epoch, fn))
/// for `s.epochs` epochs, validating after each, with its output folder `out` locked
/// (FolderLock). After each epoch it writes `out`/best.pt (when the epoch is the best so far),
/// then `out`/last.pt, then `out`/metrics.jsonl (one JSON line per epoch), each atomically
/// (AtomicFile): a run killed at any moment leaves a complete last.pt, and the log is never ahead
/// of it (last.pt holds the log too). A run already in `out` is refused, resumed or replaced as
/// `s.existing` says. Resuming continues from `out`/last.pt (model, optimiser, loss scale,
/// epoch, best score, log) so that the result equals an uninterrupted run; its configuration
/// must equal the checkpoint's but for the resumable settings (resumable_setting); without a
/// last.pt it starts afresh. A non-finite loss stops training with an error naming the epoch, the
/// batch and the last good checkpoint, which stays as it was; a file that cannot be written (a
/// full disk) stops it with an error naming the file and the cause, leaving the last complete
/// checkpoint. Returns the best validation's metrics, with its epoch (from 1) as "epoch".
template <class Loader, class Batch>
nlohmann::json fit(torch::nn::Module& model, torch::optim::Optimizer& opt, const Loader& loader,
                   const FitHooks<Batch>& hooks, const FitSettings& s) {
  ProcessGroup* const ranks = s.ranks.get();
  const bool main = ranks == nullptr || ranks->main();  // the rank that writes and prints
  const bool quiet = s.quiet || !main;
  fs::create_directories(s.out);
  std::optional<FolderLock> lock;
  if (main) lock.emplace(s.out);
  TrainStep<Batch> step(model, opt, hooks, s);
  LossScaler& scaler = step.scaler();
  int64_t first_epoch = 0;
  double best_score = std::numeric_limits<double>::infinity();
  nlohmann::json best_metrics;
  std::string log_text;  // metrics.jsonl as last.pt holds it
  const auto last = s.out / "last.pt", best = s.out / "best.pt", log = s.out / "metrics.jsonl";
  std::string found;
  for (const auto& f : {last, best, log})
    if (fs::exists(f)) found += (found.empty() ? "" : ", ") + f.filename().string();
  if (!found.empty() && s.existing == ExistingRun::kRefuse)
    throw std::runtime_error(s.out.string() + " already holds a run (" + found +
                             "): --resume continues it, --overwrite replaces it, or choose another --out");
  if (s.existing == ExistingRun::kResume && fs::exists(last)) {
    auto archive = open_checkpoint(last);
    const auto saved = checkpoint_json(last);
    for (const auto& [key, value] : s.config.items())
      if (!resumable_setting(key) && saved.value(key, nlohmann::json()) != value)
        throw std::runtime_error("cannot resume " + last.string() + ": it was trained with " + key + " " +
                                 saved.value(key, nlohmann::json()).dump() + ", this run asks for " + value.dump());
    try {
      model.load(archive);
    } catch (const c10::Error& e) {
      throw std::runtime_error(last.string() + " does not hold this model's weights (" +
                               first_line(e.what_without_backtrace()) + ")");
    }
    torch::serialize::InputArchive opt_archive;
    if (!archive.try_read("optimizer", opt_archive))
      throw std::runtime_error(last.string() + " holds no optimiser state: it is not a last.pt to resume from");
    opt.load(opt_archive);
    first_epoch = checkpoint_value(archive, last, "next_epoch").toInt();
    best_score = checkpoint_value(archive, last, "best_score").toDouble();
    best_metrics = nlohmann::json::parse(checkpoint_value(archive, last, "best_metrics").toStringRef());
    scaler.restore(checkpoint_value(archive, last, "loss_scale").toDouble(),
                   checkpoint_value(archive, last, "loss_scale_good_steps").toInt());
    log_text = checkpoint_value(archive, last, "log").toStringRef();
    if (main) write_text_atomically(log, log_text);  // drops what a run killed after its last checkpoint logged
    if (!quiet) std::cerr << "resuming " << last << " at epoch " << first_epoch + 1 << "\n";
  } else {
    if (s.existing == ExistingRun::kResume && !quiet)
      std::cerr << "no " << last << " to resume from: starting at epoch 1\n";
    if (main)
      for (const auto& f : {last, best, log}) fs::remove(f);
  }
  if (ranks) {  // every rank starts from rank 0's weights (and waits for its folder)
    std::vector<at::Tensor> state;
    for (const auto& t : model.parameters()) state.push_back(t.detach());
    for (const auto& t : model.buffers()) state.push_back(t.detach());
    ranks->broadcast(state, "broadcasting rank 0's weights");
  }
  int64_t saved_epochs = first_epoch;  // the epochs in last.pt, when it is this run's
  const auto save = [&](const fs::path& path, bool full, int64_t next_epoch) {
    if (!main) return;
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
      archive.write("log", c10::IValue(log_text));
    }
    save_atomically(archive, path);
  };
  if (loader.batches() == 0) throw std::runtime_error("no training data: the training set has no images");
  for (int64_t epoch = first_epoch; epoch < s.epochs; ++epoch) {
    model.train();
    const auto t = train_epoch(loader, step, hooks, epoch, s.epochs, quiet,
                               saved_epochs > 0 ? "the last good checkpoint is " + last.string() + " (after epoch " +
                                                      std::to_string(saved_epochs) + ")"
                                                : std::string("no checkpoint was written yet"));
    const auto v = hooks.validate(epoch);
    nlohmann::json line = {{"epoch", epoch + 1},
                           {"lr", t.lr},
                           {"train_loss", t.loss_sum / static_cast<double>(std::max<int64_t>(1, t.images))},
                           {"images_per_s", static_cast<double>(t.images) / t.seconds},
                           {"seconds", t.seconds}};
    line.update(v.metrics);
    if (s.amp)
      line["amp"] = {
          {"dtype", c10::toString(*s.amp)}, {"loss_scale", scaler.current_scale()}, {"skipped_steps", t.skipped_steps}};
    if (!quiet) std::cerr << line.dump() << "\n";
    // The checkpoints first, the log after: last.pt holds the log with this epoch's line, so a
    // kill or a full disk in between loses nothing that --resume does not restore.
    log_text += line.dump() + "\n";
    if (v.score < best_score) {
      best_score = v.score, best_metrics = v.metrics;
      best_metrics["epoch"] = epoch + 1;
      save(best, false, 0);
    }
    save(last, true, epoch + 1);
    saved_epochs = epoch + 1;
    if (main) write_text_atomically(log, log_text);
  }
  if (ranks) ranks->barrier("finishing");  // rank 0's last files are written when any rank returns
  return best_metrics;
}

}  // namespace crowdloss_examples
