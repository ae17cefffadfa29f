#pragma once
// What the fault tests share: text searches, program command lines (tiny models, CPU, fixed
// seed), error messages, damaged files and a fixed loader for `fit`.
#include "fixtures.hpp"

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss_examples_test {

namespace fs = std::filesystem;

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

inline int64_t occurrences(const std::string& text, const std::string& part) {
  int64_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

/// `program` with `args`, then `extra`.
inline std::vector<std::string> command(const std::string& program, std::vector<std::string> args,
                                        const std::vector<std::string>& extra) {
  args.insert(args.begin(), program);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// The counting and detection training command lines of these tests (tiny models, CPU, fixed seed).
inline std::vector<std::string> count_train(const fs::path& train, const fs::path& val, int64_t epochs,
                                            const std::string& lr = "1e-3") {
  return {"train",
          "--data",
          "coco:" + (train / "annotations.json").string(),
          "--val",
          "coco:" + (val / "annotations.json").string(),
          "--width",
          "0.125",
          "--crop",
          "64",
          "--longest-side",
          "0",
          "--batch",
          "2",
          "--lr",
          lr,
          "--workers",
          "2",
          "--seed",
          "5",
          "--epochs",
          std::to_string(epochs)};
}

inline std::vector<std::string> detect_train(const fs::path& train, const fs::path& val, int64_t epochs) {
  return {"train",
          "--data",
          "crowdhuman:" + (train / "annotation.odgt").string(),
          "--val",
          "crowdhuman:" + (val / "annotation.odgt").string(),
          "--backbone",
          "resnet18",
          "--width",
          "0.25",
          "--fpn-channels",
          "64",
          "--batch",
          "2",
          "--optimizer",
          "adamw",
          "--lr",
          "1e-3",
          "--warmup",
          "2",
          "--workers",
          "2",
          "--seed",
          "2",
          "--epochs",
          std::to_string(epochs)};
}

/// The message of the std::exception that `fn` throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// Cuts the file at `path` to half its size (a truncated download or copy).
inline void truncate_half(const fs::path& path) { fs::resize_file(path, fs::file_size(path) / 2); }

/// One epoch's batches for `fit`, always the same.
using XY = std::pair<at::Tensor, at::Tensor>;
struct FixedBatches {
  std::vector<XY> data;
  int64_t batches() const { return static_cast<int64_t>(data.size()); }
  void run_epoch(int64_t, const std::function<void(int64_t, XY&)>& fn) const {
    for (size_t i = 0; i < data.size(); ++i) {
      auto b = data[i];
      fn(static_cast<int64_t>(i), b);
    }
  }
};

}  // namespace crowdloss_examples_test
