#pragma once
// Fixture helpers shared by the examples' tests: scratch directories and paths under the test
// tmp dir, text and image files, small synthetic datasets, parameter counts.
#include "synthetic.hpp"

#include <filesystem>
#include <fstream>
#include <string>

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

/// `count` synthetic scenes of height×width with at most `max_count` heads, written to `dir`.
inline std::vector<crowdloss_examples::CrowdSample> small_synthetic_set(const std::filesystem::path& dir, int64_t count,
                                                                         int64_t height, int64_t width, int64_t max_count,
                                                                         uint64_t seed = 1) {
  crowdloss_examples::SyntheticOptions o;
  o.height = height, o.width = width, o.max_count = max_count, o.seed = seed;
  return crowdloss_examples::write_synthetic_dataset(dir, count, o);
}

}  // namespace crowdloss_examples_test
