#pragma once
// Fixture helpers shared by the examples' tests: scratch directories under the test tmp dir,
// text files, and small synthetic datasets.
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

/// `count` synthetic scenes of height×width with at most `max_count` heads, written to `dir`.
inline std::vector<crowdloss_examples::CrowdSample> small_synthetic_set(const std::filesystem::path& dir, int64_t count,
                                                                         int64_t height, int64_t width, int64_t max_count,
                                                                         uint64_t seed = 1) {
  crowdloss_examples::SyntheticOptions o;
  o.height = height, o.width = width, o.max_count = max_count, o.seed = seed;
  return crowdloss_examples::write_synthetic_dataset(dir, count, o);
}

}  // namespace crowdloss_examples_test
