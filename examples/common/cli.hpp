#pragma once
// What the example programs' command lines share: option values and FORMAT:PATH data specs,
// checked before any file is read or written, with messages that name the option, the value and
// what it may be.
#include "amp.hpp"
#include "image_io.hpp"

#include <torch/cuda.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss_examples {

/// "a, b, c".
inline std::string join(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : ", ") + w;
  return s;
}

/// The first line of `text` (an exception's message without LibTorch's backtrace).
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// Throws unless `value` is one of `choices`: "unknown --loss 'x' (l2, pml, …)".
inline void check_choice(const std::string& option, const std::string& value, const std::vector<std::string>& choices) {
  for (const auto& c : choices)
    if (value == c) return;
  throw std::runtime_error("unknown " + option + " '" + value + "' (" + join(choices) + ")");
}

/// Throws unless `ok`: "--lr must be > 0, got -1".
template <typename T>
void check_value(bool ok, const std::string& option, const T& value, const std::string& rule) {
  if (ok) return;
  std::ostringstream message;
  message << option << " must be " << rule << ", got " << value;
  throw std::runtime_error(message.str());
}

/// Throws unless `device` names a device this machine has ("cpu", "cuda", "cuda:1").
inline void check_device(const std::string& device) {
  try {
    const torch::Device d(device);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw std::runtime_error("--device " + device + ": no CUDA device here");
    if (!d.is_cpu() && !d.is_cuda()) throw std::runtime_error("unknown --device '" + device + "' (cpu, cuda, cuda:N)");
  } catch (const c10::Error&) {
    throw std::runtime_error("unknown --device '" + device + "' (cpu, cuda, cuda:N)");
  }
}

/// The checks both trainers' configurations share (TrainConfig and DetectConfig have these fields).
template <class Config>
void check_common_config(const Config& c) {
  check_device(c.device);
  amp_dtype(c.amp, torch::Device(c.device));
  check_value(c.width > 0 && c.width <= 1, "--width", c.width, "in (0, 1]");
  check_value(c.lr > 0, "--lr", c.lr, "> 0");
  check_value(c.min_lr >= 0, "--min-lr", c.min_lr, ">= 0");
  check_value(c.weight_decay >= 0, "--weight-decay", c.weight_decay, ">= 0");
  check_value(c.clip >= 0, "--clip", c.clip, ">= 0");
  check_value(c.epochs >= 1, "--epochs", c.epochs, ">= 1");
  check_value(c.batch >= 1, "--batch", c.batch, ">= 1");
  check_value(c.crop >= 0, "--crop", c.crop, ">= 0");
  check_value(c.longest_side >= 0, "--longest-side", c.longest_side, ">= 0");
  check_value(c.workers >= 1, "--workers", c.workers, ">= 1");
}

/// Sets the largest image the program decodes (`--max-megapixels`, > 0; see max_image_pixels).
inline void set_max_megapixels(double megapixels) {
  check_value(megapixels > 0 && megapixels < 1e12, "--max-megapixels", megapixels, "> 0");
  max_image_pixels() = std::llround(megapixels * 1e6);
}

/// `--resume` and `--overwrite` on a train command `cmd` (CLI11), which exclude each other; see
/// existing_run for what they decide.
template <typename App>
void add_run_folder_flags(App& cmd, bool& resume, bool& overwrite) {
  auto* resume_flag =
      cmd.add_flag("--resume", resume, "continue the run in OUT from OUT/last.pt (exactly; also after a kill)");
  cmd.add_flag("--overwrite", overwrite, "replace the run in OUT (checkpoints, metrics.jsonl) instead of refusing to")
      ->excludes(resume_flag);
}

/// `--max-megapixels` on `cmd` (a CLI11 subcommand): the limit set_max_megapixels applies.
template <typename App>
void add_max_megapixels_option(App& cmd, double& max_megapixels) {
  cmd.add_option("--max-megapixels", max_megapixels, "refuse images larger than this (checked from the file header)");
}

/// The bad-data options of a command that reads a data set (docs/examples.md, faults):
/// `--skip-bad` (what it does with a bad item: `skip_help`), `--allow-outside-paths` and
/// `--max-megapixels`.
template <typename App>
void add_bad_data_options(App& cmd, bool& skip_bad, const std::string& skip_help, bool& allow_outside,
                          double& max_megapixels) {
  cmd.add_flag("--skip-bad", skip_bad, skip_help);
  cmd.add_flag("--allow-outside-paths", allow_outside,
               "accept annotation files naming images outside their data set's folder");
  add_max_megapixels_option(cmd, max_megapixels);
}

/// The option of `app` (a CLI11 subcommand) that sets configuration key `key` ("weight_decay":
/// "--weight-decay", "cosine_t_max": "--t-max") when the command line gave it, else "".
template <class App>
std::string given_option(const App& app, const std::string& key) {
  std::string name = "--" + (key == "cosine_t_max" ? std::string("t-max") : key);
  std::replace(name.begin(), name.end(), '_', '-');
  const auto* option = app.get_option_no_throw(name);
  return option != nullptr && option->count() > 0 ? name : "";
}

/// Throws unless the data set given as `option` `spec` has at least one image: "--val
/// coco:x.json: the data set has no images".
inline void check_not_empty(const std::string& option, const std::string& spec, size_t images) {
  if (images == 0) throw std::runtime_error(option + " " + spec + ": the data set has no images");
}

/// A data set named on the command line as FORMAT:PATH.
struct DataSpec {
  std::string format, path;
};

/// Splits `spec`, the value of `option`, into FORMAT and PATH, and checks FORMAT against
/// `formats`; touches no file.
inline DataSpec parse_data_spec(const std::string& option, const std::string& spec,
                                const std::vector<std::string>& formats) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos || colon + 1 == spec.size())
    throw std::runtime_error(option + ": expected FORMAT:PATH with FORMAT one of " + join(formats) + ", got '" + spec +
                             "'");
  DataSpec d{spec.substr(0, colon), spec.substr(colon + 1)};
  check_choice(option + " format", d.format, formats);
  return d;
}

/// The training and validation sets of a `train` command, as `load(spec, synthetic_count,
/// synthetic)` reads each: --data `data` with `synthetic_count` synthetic images, --val `val` with
/// a quarter as many and the seed 1000 further on (other scenes; `Synthetic` is a program's scene
/// options, with a `seed`). Each FORMAT is checked against `formats` before any file is read; a
/// set without images is an error naming it.
template <typename Synthetic, typename Load>
auto load_train_and_val(const std::string& data, const std::string& val, const std::vector<std::string>& formats,
                        int64_t synthetic_count, const Synthetic& synthetic, Load load) {
  const auto train_spec = parse_data_spec("--data", data, formats), val_spec = parse_data_spec("--val", val, formats);
  auto val_synthetic = synthetic;
  val_synthetic.seed = synthetic.seed + 1000;
  auto train_set = load(train_spec, synthetic_count, synthetic);
  auto val_set = load(val_spec, synthetic_count / 4, val_synthetic);
  check_not_empty("--data", data, train_set.size());
  check_not_empty("--val", val, val_set.size());
  return std::make_pair(std::move(train_set), std::move(val_set));
}

}  // namespace crowdloss_examples
