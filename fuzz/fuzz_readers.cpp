// libFuzzer harness for the examples' annotation readers, one executable per format: this file is
// compiled once, and each executable's entry point (fuzz_reader_main.cpp, whose CMake definition
// CROWDLOSS_FUZZ_READER names the format) calls crowdloss_fuzz_reader. The fuzzer's bytes become
// the annotation file of a one-image dataset in a private temporary folder. A reader must return samples or throw an
// exception whose message names the file; a crash, sanitizer report, hang or an exception without
// the path is a bug.

#include "fuzz_readers.hpp"

#include <datasets.hpp>
#include <detection_datasets.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace ex = crowdloss_examples;

/// The datasets' folder (made once per process, which fuzzes one reader): one folder per layout,
/// each with one (empty) image where the layout wants it.
const fs::path& root(std::string_view reader) {
  static const fs::path dir = [reader] {
    const auto d =
        fs::temp_directory_path() / ("crowdloss-fuzz-" + std::string(reader) + "-" + std::to_string(::getpid()));
    for (const auto* sub : {"nwpu/jsons", "jhu/gt", "sht/ground-truth", "qnrf", "images"})
      fs::create_directories(d / sub);
    for (const auto* image : {"nwpu/images/1.jpg", "jhu/images/1.jpg", "sht/images/IMG_1.jpg", "qnrf/img_1.jpg"}) {
      fs::create_directories((d / image).parent_path());
      std::ofstream(d / image).put('\0');
    }
    return d;
  }();
  return dir;
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Runs `read` on the annotation file `file` holding the bytes; its exception must name `file`.
template <typename Fn>
void check(std::string_view reader, const fs::path& file, const std::string& bytes, Fn&& read) {
  write(file, bytes);
  try {
    read();
  } catch (const std::exception& e) {
    if (std::string(e.what()).find(file.string()) == std::string::npos) {
      std::cerr << "reader fuzz (" << reader << "): the error does not name " << file << ": " << e.what() << "\n";
      std::abort();
    }
  }
}

}  // namespace

int crowdloss_fuzz_reader(std::string_view reader, const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const auto& d = root(reader);
  if (reader == "coco") {
    check(reader, d / "points.json", bytes, [&] { ex::read_coco_points(d / "points.json", d); });
    check(reader, d / "boxes.json", bytes, [&] { ex::read_coco_boxes(d / "boxes.json", d); });
  } else if (reader == "odgt") {
    check(reader, d / "annotation.odgt", bytes, [&] { ex::read_odgt(d / "annotation.odgt", d / "images"); });
  } else if (reader == "nwpu") {
    check(reader, d / "nwpu" / "jsons" / "1.json", bytes, [&] { ex::read_nwpu(d / "nwpu"); });
  } else if (reader == "jhu") {
    check(reader, d / "jhu" / "gt" / "1.txt", bytes, [&] { ex::read_jhu(d / "jhu"); });
  } else if (reader == "mat") {
    check(reader, d / "sht" / "ground-truth" / "GT_IMG_1.mat", bytes, [&] { ex::read_shanghaitech(d / "sht"); });
    check(reader, d / "qnrf" / "img_1_ann.mat", bytes, [&] { ex::read_ucf_qnrf(d / "qnrf"); });
  } else {
    std::cerr << "unknown reader " << reader << "\n";
    std::abort();
  }
  return 0;
}
