#pragma once
// The demos' result files: `results.md` (the table in Markdown, then the run's provenance: date,
// machine, threads, LibTorch, crowdloss and the commit built) and `results.json` (the same numbers
// at full precision, with the provenance), written into the demo's output folder. docs/results/
// holds the committed copies that docs/results.md includes and that CI compares a fresh run with
// (examples/tests/demo_table.cmake): every column but the last (a time) must match.
#include "cli.hpp"

#include <crowdloss/detail/simd.hpp>
#include <crowdloss/version.hpp>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace crowdloss_examples {

/// The commit the programs were built from ("unknown" outside a git checkout; "-dirty" appended
/// when tracked files differed from it), defined in build_info.cpp, which the build regenerates.
const char* build_commit();

/// Where and how a result was made.
struct Provenance {
  std::string date;      // UTC, YYYY-MM-DD
  std::string machine;   // CPU model and signature, cores, the crowdloss and LibTorch kernels' instruction sets
  std::string software;  // crowdloss, LibTorch
  std::string commit;
  std::string device;  // "cpu", or the GPU's model and the device ("NVIDIA H200 (cuda:0)")
  int threads = 0;

  nlohmann::json to_json() const {
    return {{"date", date},     {"machine", machine}, {"software", software},
            {"commit", commit}, {"threads", threads}, {"device", device}};
  }
};

/// The value of the first line of `file` whose field is `key` ("key<blanks>: value"), or "".
inline std::string proc_field(const std::filesystem::path& file, const std::string& key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto field = line.substr(0, colon);
    field.erase(field.find_last_not_of(" \t") + 1);  // npos + 1 == 0: a blank field empties
    if (field != key) continue;
    const auto begin = line.find_first_not_of(" \t", colon + 1);
    return begin == std::string::npos ? std::string() : line.substr(begin);
  }
  return "";
}

/// The CPU's model name from /proc/cpuinfo ("unknown CPU" where there is none).
inline std::string cpu_model() {
  const auto model = proc_field("/proc/cpuinfo", "model name");
  return model.empty() ? "unknown CPU" : model;
}

/// What identifies the CPU beyond its model name, which virtual machines often shorten ("AMD
/// EPYC" for several generations): its family and model numbers and its last-level cache, from
/// which oneDNN picks its kernels and their blocking ("family 25 model 1, L3 32768K"; the parts
/// /proc/cpuinfo and /sys do not give are left out, "" where none is given).
inline std::string cpu_signature() {
  std::vector<std::string> parts;
  const auto family = proc_field("/proc/cpuinfo", "cpu family"), model = proc_field("/proc/cpuinfo", "model");
  if (!family.empty() && !model.empty()) parts.push_back("family " + family + " model " + model);
  int level = 0;
  std::string size;
  std::error_code error;
  for (const auto& e : std::filesystem::directory_iterator("/sys/devices/system/cpu/cpu0/cache", error)) {
    std::ifstream level_file(e.path() / "level"), size_file(e.path() / "size");
    int l = 0;
    std::string s;
    if ((level_file >> l) && (size_file >> s) && l > level) level = l, size = s;
  }
  if (level > 0) parts.push_back("L" + std::to_string(level) + " " + size);
  std::string signature;
  for (const auto& part : parts) signature += (signature.empty() ? "" : ", ") + part;
  return signature;
}

/// The instruction set of LibTorch's own CPU kernels ("AVX2", "AVX512", "DEFAULT"), from the
/// "CPU capability usage" line of at::show_config() ("unknown" without one).
inline std::string libtorch_cpu_capability() {
  const std::string config = at::show_config(), key = "CPU capability usage: ";
  const auto at_key = config.find(key);
  if (at_key == std::string::npos) return "unknown";
  const auto begin = at_key + key.size();
  return config.substr(begin, config.find('\n', begin) - begin);
}

/// The device a run uses, in words: the CPU's model and LibTorch's threads, or the GPU's model
/// (from the NVIDIA driver's /proc entry; "cuda:N" without one).
inline std::string describe_device(const c10::Device& device) {
  if (device.is_cpu())
    return cpu_model() + ", " + std::to_string(at::get_num_threads()) + " LibTorch threads, " +
           std::to_string(std::thread::hardware_concurrency()) + " cores";
  const std::filesystem::path gpus = "/proc/driver/nvidia/gpus";
  std::error_code error;
  if (device.is_cuda() && std::filesystem::is_directory(gpus, error)) {
    std::vector<std::filesystem::path> cards;
    for (const auto& e : std::filesystem::directory_iterator(gpus, error)) cards.push_back(e.path());
    std::sort(cards.begin(), cards.end());  // by PCI address, the CUDA order without CUDA_VISIBLE_DEVICES
    const auto index = static_cast<size_t>(std::max<int64_t>(0, device.index()));
    if (index < cards.size()) {
      const auto model = proc_field(cards[index] / "information", "Model");
      if (!model.empty()) return model;
    }
  }
  return device.str();
}

/// This run's provenance (today's date, this machine, LibTorch's thread count now) on `device`
/// ("cpu", "cuda", "cuda:N").
inline Provenance provenance(const std::string& device = "cpu") {
  Provenance p;
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char date[16];
  std::strftime(date, sizeof date, "%Y-%m-%d", &utc);
  p.date = date;
  const bool avx2 = crowdloss::detail::cpu_capability() == crowdloss::detail::CpuCapability::avx2;
  const auto signature = cpu_signature();
  p.machine = cpu_model() + (signature.empty() ? "" : " (" + signature + ")") + ", " +
              std::to_string(std::thread::hardware_concurrency()) + " cores, crowdloss kernels " +
              (avx2 ? "AVX2" : "baseline") + ", LibTorch kernels " + libtorch_cpu_capability();
  p.software = std::string("crowdloss ") + CROWDLOSS_VERSION_STRING + ", LibTorch " + TORCH_VERSION;
  p.commit = build_commit();
  p.threads = at::get_num_threads();
  const c10::Device d(device);
  p.device = d.is_cuda() ? describe_device(d) + " (" + device + ")" : device;
  return p;
}

/// Sets LibTorch's threads for a demo run (`--threads`, at least 1): its results depend on the
/// count, which the provenance records.
inline void set_demo_threads(int64_t threads) {
  check_value(threads >= 1, "--threads", threads, ">= 1");
  at::set_num_threads(static_cast<int>(threads));
}

/// `value` with `decimals` decimals ("nan" and "inf" as such).
inline std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

/// Mean and sample standard deviation (n − 1; 0 for one value) of `values`.
inline std::pair<double, double> mean_std(const std::vector<double>& values) {
  double mean = 0;
  for (const double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double ss = 0;
  for (const double v : values) ss += (v - mean) * (v - mean);
  return {mean, values.size() > 1 ? std::sqrt(ss / static_cast<double>(values.size() - 1)) : 0.0};
}

/// A result table: a header and rows of cells; the first column is left-aligned, the others
/// right-aligned.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string markdown() const {
    const auto line = [](const std::vector<std::string>& cells) {
      std::string s = "|";
      for (const auto& c : cells) s += " " + c + " |";
      return s + "\n";
    };
    std::vector<std::string> rule(header.size(), "---:");
    rule.at(0) = "---";
    std::string s = line(header) + line(rule);
    for (const auto& r : rows) {
      if (r.size() != header.size())
        throw std::logic_error("result table: a row of " + std::to_string(r.size()) + " cells");
      s += line(r);
    }
    return s;
  }
};

/// Writes `out`/results.md (`table`, then `notes` and the provenance of a run on `device`) and
/// `out`/results.json (`json` with the provenance added as "provenance"); returns the Markdown.
inline std::string write_results(const std::filesystem::path& out, const std::string& command, const Table& table,
                                 const std::string& notes, nlohmann::json json, const std::string& device = "cpu") {
  const Provenance p = provenance(device);
  std::string md = table.markdown() + "\n";
  if (!notes.empty()) md += notes + "\n\n";
  md += "Made by `" + command + "` on " + p.date + ": " + p.machine + ", " + std::to_string(p.threads) + " threads; " +
        (p.device == "cpu" ? "" : "GPU " + p.device + "; ") + p.software + "; commit " + p.commit + ".\n";
  json["command"] = command;
  json["provenance"] = p.to_json();
  const auto write = [](const std::filesystem::path& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    if (!(f << text) || !f.flush()) throw std::runtime_error("cannot write " + path.string());
  };
  std::filesystem::create_directories(out);
  write(out / "results.md", md);
  write(out / "results.json", json.dump(2) + "\n");
  return md;
}

}  // namespace crowdloss_examples
