#pragma once
// Fixture helpers shared by the examples' tests: scratch directories and paths under the test
// tmp dir, text and image files, small synthetic datasets (crowds, pedestrians), metrics logs,
// parameter counts and comparisons.
#include "detection_loader.hpp"
#include "pedestrians.hpp"
#include "synthetic.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace crowdloss_examples_test {

/// A fresh, empty directory `name` under the tests' scratch directory.
inline std::filesystem::path fixture_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(CROWDLOSS_TEST_TMP_DIR) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

/// The contents of a text file ("" when it is absent).
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A random h×w RGB PNG at `path` (directories created).
inline void write_image(const std::filesystem::path& path, int64_t h = 6, int64_t w = 8) {
  std::filesystem::create_directories(path.parent_path());
  crowdloss_examples::save_png(path.string(), torch::randint(0, 256, {h, w, 3}).to(torch::kUInt8));
}

/// `name` in the tests' scratch directory.
inline std::string temp_path(const std::string& name) { return std::string(CROWDLOSS_TEST_TMP_DIR) + "/" + name; }

/// Writes `value` (a dict of tensors, a list, a tensor) as Python's torch.save would.
template <typename T>
void write_pickle(const std::string& path, const T& value) {
  const auto bytes = torch::pickle_save(value);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

/// The names of the parameters and buffers that differ between two models of one architecture
/// (empty: every weight is equal).
inline std::vector<std::string> different_tensors(const torch::nn::Module& a, const torch::nn::Module& b) {
  std::vector<std::string> differ;
  const auto compare = [&](const torch::OrderedDict<std::string, at::Tensor>& x,
                           const torch::OrderedDict<std::string, at::Tensor>& y) {
    if (x.size() != y.size())
      differ.push_back("(" + std::to_string(x.size()) + " vs " + std::to_string(y.size()) + " tensors)");
    for (const auto& item : x) {
      const auto* other = y.find(item.key());
      if (other == nullptr || !torch::equal(item.value(), *other)) differ.push_back(item.key());
    }
  };
  compare(a.named_parameters(), b.named_parameters());
  compare(a.named_buffers(), b.named_buffers());
  return differ;
}

/// The lines of `dir`/metrics.jsonl, as written by the trainers' `fit`.
inline std::vector<nlohmann::json> read_metrics(const std::filesystem::path& dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

/// `count` synthetic scenes of height×width with at most `max_count` heads, written to `dir`.
inline std::vector<crowdloss_examples::CrowdSample> small_synthetic_set(const std::filesystem::path& dir, int64_t count,
                                                                        int64_t height, int64_t width,
                                                                        int64_t max_count, uint64_t seed = 1) {
  crowdloss_examples::SyntheticOptions o;
  o.height = height, o.width = width, o.max_count = max_count, o.seed = seed;
  return crowdloss_examples::write_synthetic_dataset(dir, count, o);
}

/// `count` synthetic pedestrian scenes of height×width with at most `max_people` people, written
/// to `dir` in the CrowdHuman layout (annotation.odgt, Images/).
inline std::vector<crowdloss_examples::DetectionSample> small_pedestrian_set(const std::filesystem::path& dir,
                                                                             int64_t count, int64_t height,
                                                                             int64_t width, int64_t max_people,
                                                                             uint64_t seed = 1) {
  crowdloss_examples::PedestrianOptions o;
  o.height = height, o.width = width, o.max_people = max_people, o.seed = seed;
  return crowdloss_examples::write_synthetic_pedestrians(dir, count, o);
}

}  // namespace crowdloss_examples_test
