#pragma once
// What the two example programs share around their own training code, written once:
// - the option values of every subcommand (ProgramOptions) and the options both programs declare
//   alike (demo, train's data / run options, bench, eval, predict);
// - FORMAT:PATH data loading for a program's Data (its sample type, formats, generator, reader);
// - a demo's frame (DemoFrame: banner, splits, results files, closing lines);
// - parsing and the error handling around the chosen subcommand (run_program).
#include "cli.hpp"
#include "datasets.hpp"
#include "distributed.hpp"
#include "report.hpp"
#include "run_config.hpp"
#include "synthetic.hpp"
#include "throughput.hpp"
#include "training.hpp"

#include <CLI/CLI.hpp>
#include <crowdloss/version.hpp>
#include <torch/version.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace crowdloss_examples {

/// The values of the options both programs have (each subcommand uses some of them).
struct ProgramOptions {
  std::string out, data, val, checkpoint, device = "cpu";
  Amp amp = Amp::kOff;
  bool quick = false, resume = false, overwrite = false, skip_bad = false, allow_outside = false;
  double max_megapixels = static_cast<double>(max_image_pixels()) / 1e6;
  int64_t synthetic_count = 400, threads = at::get_num_threads();
  std::vector<std::string> images;
  LaunchOptions launch;  // train: data-parallel ranks (distributed.hpp)
};

/// The data a program reads, named FORMAT:PATH. A Data type provides `Sample`, `Synthetic` (its
/// scene options, with a `seed`), `formats()` (synthetic first), `format_note` (said after the
/// formats in --help), `generate(path, count, synthetic, ExistingSet)` and `read(format, path,
/// BadSamples*, allow_outside)`.
template <class Data>
std::string formats_help() {
  return "FORMAT:PATH, FORMAT one of " + join(Data::formats()) + " (synthetic:DIR is generated there if absent" +
         Data::format_note + ")";
}

/// The data set `spec`: a synthetic one is generated with `synthetic_count` images unless its
/// folder holds one, which is used as it is (another count is an error when `count_given`).
template <class Data>
std::vector<typename Data::Sample> load_data(const DataSpec& spec, int64_t synthetic_count, bool count_given,
                                             const typename Data::Synthetic& synthetic, BadSamples& bad,
                                             bool allow_outside) {
  if (spec.format == "synthetic")
    return Data::generate(spec.path, synthetic_count, synthetic,
                          count_given ? ExistingSet::kError : ExistingSet::kUseExisting);
  return Data::read(spec.format, spec.path, &bad, allow_outside);
}

/// The `train` command's data sets (--data, --val; see load_train_and_val). In a data-parallel
/// run (`ranks`) rank 0 reads them first (generating synthetic sets), the others after it.
template <class Data>
auto load_train_and_val(const CLI::App& train_cmd, const ProgramOptions& o, BadSamples& bad,
                        ProcessGroup* ranks = nullptr) {
  const bool count_given = train_cmd.count("--synthetic-count") > 0;
  constexpr const char* kWait = "waiting for rank 0 to prepare the data";
  if (ranks && !ranks->main()) ranks->barrier(kWait);
  auto sets = load_train_and_val(o.data, o.val, Data::formats(), o.synthetic_count, typename Data::Synthetic{},
                                 [&](const DataSpec& spec, int64_t count, const typename Data::Synthetic& s) {
                                   return load_data<Data>(spec, count, count_given, s, bad, o.allow_outside);
                                 });
  if (ranks && ranks->main()) ranks->barrier(kWait);
  return sets;
}

/// The ranks of a data-parallel `train` run that this process belongs to (null: it trains
/// alone). Data-parallel runs take CPU devices: the Gloo group averages CPU tensors.
inline std::shared_ptr<ProcessGroup> join_train_run(const LaunchOptions& launch, const std::string& device) {
  auto ranks = join_run(launch.dist_timeout);
  if (ranks && !torch::Device(device).is_cpu())
    throw std::runtime_error("--device " + device +
                             ": data-parallel training runs on CPUs (Gloo) in this version; NCCL for CUDA is not "
                             "built yet");
  return ranks;
}

/// The `eval` command's data set (--data), not empty.
template <class Data>
std::vector<typename Data::Sample> load_eval_data(const ProgramOptions& o, BadSamples& bad) {
  const auto spec = parse_data_spec("--data", o.data, Data::formats());
  auto set =
      load_data<Data>(spec, o.synthetic_count, /*count_given=*/false, typename Data::Synthetic{}, bad, o.allow_outside);
  check_not_empty("--data", o.data, set.size());
  return set;
}

constexpr const char* kSkipBadHelp = "leave out images and annotations that cannot be read, with a warning naming each";

/// `demo` with --out, --quick and --threads.
inline CLI::App* add_demo_command(CLI::App& app, ProgramOptions& o, const std::string& help) {
  auto* cmd = app.add_subcommand("demo", help);
  cmd->add_option("--out", o.out, "results folder");
  cmd->add_flag("--quick", o.quick, "a smoke run on a tiny budget (for tests): its numbers mean nothing");
  cmd->add_option("--threads", o.threads, "LibTorch's threads (the results depend on it; default: the cores)");
  cmd->add_option("--device", o.device,
                  "cpu: CPU-sized models; cuda or cuda:N: the papers' full-size models at realistic sizes");
  return cmd;
}

/// `train` with --data, --val and --out; the program adds its own options, then add_run_options.
template <class Data>
CLI::App* add_train_command(CLI::App& app, ProgramOptions& o, const std::string& help) {
  auto* cmd = app.add_subcommand("train", help);
  cmd->add_option("--data", o.data, "training set, " + formats_help<Data>())->required();
  cmd->add_option("--val", o.val, "validation set, " + formats_help<Data>())->required();
  cmd->add_option("--out", o.out, "output folder (checkpoints, metrics.jsonl)");
  return cmd;
}

/// The options of RunConfig `c` that shape a training step and its data (optimiser, batch,
/// crop, loader threads, seed, device, precision), on `train` and `bench` alike, after the
/// program's own.
inline void add_step_options(CLI::App& cmd, ProgramOptions& o, RunConfig& c) {
  add_choice_option(cmd, c.optimizer, "the optimizer");
  cmd.add_option("--lr", c.lr, "learning rate (the schedule's start or peak)");
  cmd.add_option("--weight-decay", c.weight_decay, "the optimizer's weight decay");
  cmd.add_option("--min-lr", c.min_lr, "end of the cosine schedule");
  cmd.add_option("--clip", c.clip, "gradient-norm clip (0: off)");
  cmd.add_option("--batch", c.batch, "images per training batch");
  cmd.add_option("--crop", c.crop, "random square crop side (0: whole images)");
  cmd.add_option("--longest-side", c.longest_side, "resize so the longer side is this (0: keep)");
  cmd.add_option("--workers", c.workers, "threads decoding and augmenting images, beside the training thread");
  cmd.add_option("--seed", c.seed, "seed of the weights, the shuffling and the augmentation");
  cmd.add_option("--device", c.device, "cpu | cuda");
  add_choice_option(cmd, c.amp, "mixed precision (fp16: CUDA, with dynamic loss scaling)");
  cmd.add_flag("--deterministic", c.deterministic,
               "deterministic algorithms only (cuDNN, cuBLAS, ATen); an op without one stops the run, naming it");
  cmd.add_option("--synthetic-count", o.synthetic_count,
                 "images to generate for synthetic:DIR sets (validation: a quarter); without it, a set already in "
                 "DIR is used as it is");
}

/// The `train` options after the program's own: add_step_options, --epochs, the run folder's,
/// the bad-data ones and data-parallel launching.
inline void add_run_options(CLI::App& cmd, ProgramOptions& o, RunConfig& c) {
  add_step_options(cmd, o, c);
  cmd.add_option("--epochs", c.epochs, "epochs to train (with --resume: in all)");
  add_run_folder_flags(cmd, o.resume, o.overwrite);
  add_bad_data_options(cmd, o.skip_bad, std::string(kSkipBadHelp) + ", and count them", o.allow_outside,
                       o.max_megapixels);
  add_launch_options(cmd, o.launch);
  cmd.footer(kFaultsHelp);
}

/// `bench` with --data (optional), --out, --steps, --warmup-steps and --json; the program adds its
/// own model options, then add_step_options.
inline CLI::App* add_bench_command(CLI::App& app, ProgramOptions& o, ThroughputOptions& t, std::string& json,
                                   const std::vector<std::string>& formats) {
  auto* cmd = app.add_subcommand(
      "bench",
      "training throughput: the bare step on a batch already on the device against the trainer's training phase "
      "(loader included), with the train command's settings");
  cmd->add_option("--data", o.data,
                  "training data, FORMAT:PATH with FORMAT one of " + join(formats) +
                      " (default: a synthetic set of steps x batch images in OUT/bench-data)");
  cmd->add_option("--out", o.out, "folder for the generated data");
  cmd->add_option("--steps", t.steps, "timed bare steps; the generated set has steps x batch images");
  cmd->add_option("--warmup-steps", t.warmup, "untimed bare steps first");
  cmd->add_option("--json", json, "append the result to the JSON list in this file");
  return cmd;
}

/// Throws, naming the option and the value, for --steps or --warmup-steps that `bench` cannot
/// run with (checked before any data is read or generated).
inline void check_bench_options(const ThroughputOptions& t) {
  check_value(t.steps >= 1, "--steps", t.steps, ">= 1");
  check_value(t.warmup >= 0, "--warmup-steps", t.warmup, ">= 0");
}

/// The data `bench` trains on: --data as `train` reads it, or by default a synthetic set of
/// `count` images in OUT/bench-data (replaced when it holds another).
template <class Data>
std::vector<typename Data::Sample> load_bench_data(const ProgramOptions& o, int64_t count, BadSamples& bad) {
  if (o.data.empty())
    return Data::generate(std::filesystem::path(o.out) / "bench-data", count, typename Data::Synthetic{},
                          ExistingSet::kReplace);
  const auto spec = parse_data_spec("--data", o.data, Data::formats());
  auto set =
      load_data<Data>(spec, o.synthetic_count, /*count_given=*/false, typename Data::Synthetic{}, bad, o.allow_outside);
  check_not_empty("--data", o.data, set.size());
  return set;
}

/// Runs `bench` for a program's training run `training` (CountTraining, DetectTraining) with
/// configuration `config`: prints the result and, with `json`, appends it there
/// (throughput_json).
template <class Training>
int run_bench(const char* program, Training& training, const nlohmann::json& config, const std::string& device,
              const ThroughputOptions& t, const std::string& json) {
  const auto result = training.throughput(t);
  const auto where = describe_device(torch::Device(device));
  print_throughput(result, where);
  if (!json.empty()) append_to_json_list(json, throughput_json(program, config, result, where));
  return 0;
}

/// `eval` with --checkpoint, --data, --device, --amp and the bad-data options.
template <class Data>
CLI::App* add_eval_command(CLI::App& app, ProgramOptions& o, const std::string& help) {
  auto* cmd = app.add_subcommand("eval", help);
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  cmd->add_option("--data", o.data, formats_help<Data>())->required();
  cmd->add_option("--device", o.device, "cpu | cuda");
  add_choice_option(*cmd, o.amp, "mixed precision");
  add_bad_data_options(*cmd, o.skip_bad, kSkipBadHelp, o.allow_outside, o.max_megapixels);
  return cmd;
}

/// `predict` with --checkpoint, --out, --device, --max-megapixels and the image files.
inline CLI::App* add_predict_command(CLI::App& app, ProgramOptions& o, const std::string& help,
                                     const std::string& out_help) {
  auto* cmd = app.add_subcommand("predict", help);
  cmd->add_option("--checkpoint", o.checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  cmd->add_option("--out", o.out, out_help);
  cmd->add_option("--device", o.device, "cpu | cuda");
  add_max_megapixels_option(*cmd, o.max_megapixels);
  cmd->add_option("images", o.images, "image files")->required();
  return cmd;
}

/// Parses the command line into `app` (CLI11's messages and exit codes for a bad one), then runs
/// `run` with the bad-data record: an exception ends the program with "NAME: message" and exit
/// 1; with --skip-bad the record's summary is printed at the end.
inline int run_program(const char* name, CLI::App& app, int argc, char** argv, const ProgramOptions& o,
                       const std::function<int(BadSamples&)>& run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    BadSamples bad(o.skip_bad);
    set_max_megapixels(o.max_megapixels);
    const int rc = run(bad);
    if (o.skip_bad) std::printf("%s\n", bad.summary().c_str());
    return rc;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

/// The frame of a demo: the banner and the clock at the start; the data splits; at the end the
/// results files (write_results) and the closing lines.
class DemoFrame {
 public:
  /// Prints "crowdloss V `what` demo (LibTorch V, N threads[, on DEVICE])".
  DemoFrame(const std::string& what, const std::string& device, bool quick, const char* quick_note)
      : device_(device), quick_(quick), quick_note_(quick_note) {
    std::cout << "crowdloss " << CROWDLOSS_VERSION_STRING << " " << what << " demo (LibTorch " << TORCH_VERSION << ", "
              << at::get_num_threads() << " threads" << (device == "cpu" ? "" : ", on " + device) << ")\n";
  }

  /// Training, validation and test sets of `sizes` scenes in OUT/data/{train,val,test}, made by
  /// `generate(path, count, options, ExistingSet)` with the seeds 1, 1001 and 2001.
  template <class Synthetic, class Generate>
  auto splits(const std::filesystem::path& out, const std::array<int64_t, 3>& sizes, const Synthetic& synthetic,
              Generate generate) const {
    const std::array<const char*, 3> names = {"train", "val", "test"};
    const std::array<uint64_t, 3> seeds = {1, 1001, 2001};
    std::array<decltype(generate(out, 0, synthetic, ExistingSet::kReplace)), 3> sets;
    for (size_t i = 0; i < 3; ++i) {
      auto o = synthetic;
      o.seed = seeds[i];
      sets[i] = generate(out / "data" / names[i], sizes[i], o, ExistingSet::kReplace);
    }
    return sets;
  }

  /// The quick-run note, or "" for a full run.
  const char* quick_note() const { return quick_ ? quick_note_ : ""; }

  /// Writes OUT/results.md and results.json (write_results) and prints the table, "Also in …",
  /// `pictures` and `metrics` (sentences about the other outputs) and the total time.
  int finish(const std::filesystem::path& out, const std::string& command, const Table& table, const std::string& notes,
             const nlohmann::json& json, const std::string& pictures, const std::string& metrics) const {
    const std::string md = write_results(out, command, table, notes, json, device_);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::printf("\n%s\nAlso in %s/results.md and results.json. %s\n%s Total time %.0f s.\n", md.c_str(),
                out.string().c_str(), pictures.c_str(), metrics.c_str(), total);
    std::printf("%s", quick_note());
    return 0;
  }

 private:
  std::string device_;
  bool quick_;
  const char* quick_note_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace crowdloss_examples
