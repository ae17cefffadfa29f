#pragma once
// Detection data sets for the dense-pedestrian example: DetectionSample and the readers of
// CrowdHuman (.odgt) and COCO detection JSON (with the .odgt writer the synthetic set uses).
//
// Boxes are N×4 float32 (x0, y0, x1, y1) in pixels: people are full-body boxes, ignore regions
// are areas whose contents are not annotated (a detection there is neither right nor wrong).
#include "datasets.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

/// One annotated image: its file, its people (N×4 full-body boxes) and its ignore regions (M×4).
struct DetectionSample {
  std::string image;
  at::Tensor boxes;
  at::Tensor ignore;
};

namespace detection_detail {

inline at::Tensor boxes_tensor(const std::vector<float>& xyxy) {
  return torch::tensor(xyxy, torch::kFloat32).view({-1, 4}).clone();
}

/// Appends the (x0, y0, x1, y1) of an [x, y, w, h] JSON array to `out`.
inline void append_xywh(const nlohmann::json& xywh, std::vector<float>& out) {
  const auto b = xywh.get<std::vector<double>>();
  if (b.size() != 4) throw std::runtime_error("a box is not [x, y, w, h]");
  out.insert(out.end(), {static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[0] + b[2]),
                         static_cast<float>(b[1] + b[3])});
}

/// Whether `key` of a JSON object is 1 or true (absent: false).
inline bool flag(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return false;
  const auto& v = j.at(key);
  return v.is_boolean() ? v.get<bool>() : v.get<double>() == 1;
}

}  // namespace detection_detail

/// CrowdHuman `.odgt`: one JSON object per line, {"ID": ..., "gtboxes": [{"tag", "fbox": [x, y,
/// w, h], "extra": {"ignore"}, ...}]}. People are the full-body boxes (fbox) of the entries tagged
/// "person" whose extra.ignore is not 1; every other entry (tag "mask", extra.ignore 1, ...) is an
/// ignore region. Images are `image_dir`/<ID>.jpg, else <ID>.png, inside `image_dir` unless
/// `allow_outside` (an ID such as "../x" is an invalid line, see file_in). Samples in file order;
/// errors name the file and line, or the missing image. An invalid line or a missing image is a
/// bad sample (see BadSamples).
inline std::vector<DetectionSample> read_odgt(const fs::path& odgt, const fs::path& image_dir,
                                              BadSamples* bad = nullptr, bool allow_outside = false) {
  std::ifstream in(odgt);
  if (!in) throw std::runtime_error("cannot open " + odgt.string());
  std::vector<DetectionSample> out;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = odgt.string() + ":" + std::to_string(line_no);
    fs::path image;
    std::vector<float> people, ignore;
    const bool valid = data_detail::read_sample(bad, where, [&] {
      try {
        const auto j = nlohmann::json::parse(line);
        image = data_detail::file_in(image_dir, j.at("ID").get<std::string>() + ".jpg", allow_outside);
        for (const auto& g : j.at("gtboxes")) {
          const bool person = g.at("tag").get<std::string>() == "person" &&
                              !(g.contains("extra") && detection_detail::flag(g.at("extra"), "ignore"));
          detection_detail::append_xywh(g.at("fbox"), person ? people : ignore);
        }
      } catch (const std::exception& e) {  // corrupt JSON, missing keys, wrong types
        throw std::runtime_error(where + ": invalid CrowdHuman annotation: " + e.what());
      }
    });
    if (!valid) continue;
    data_detail::read_sample(bad, image.string(), [&] {
      if (!fs::exists(image)) {
        const auto png = fs::path(image).replace_extension(".png");
        if (!fs::exists(png))
          throw std::runtime_error("missing image " + image.string() + " (nor .png), listed at " + where);
        image = png;
      }
      out.push_back({image.string(), detection_detail::boxes_tensor(people), detection_detail::boxes_tensor(ignore)});
    });
  }
  return out;
}

/// Writes samples as CrowdHuman `.odgt` (ID = the image's file stem; people tagged "person",
/// ignore regions tagged "mask" with extra.ignore = 1), the inverse of read_odgt.
inline void write_odgt(const fs::path& odgt, const std::vector<DetectionSample>& samples) {
  std::ofstream out(odgt);
  if (!out) throw std::runtime_error("cannot write " + odgt.string());
  for (const auto& s : samples) {
    nlohmann::json gtboxes = nlohmann::json::array();
    const auto add = [&](const at::Tensor& boxes, bool person) {
      const auto b = boxes.to(torch::kFloat64).contiguous().view({-1, 4});
      const auto a = b.accessor<double, 2>();
      for (int64_t k = 0; k < b.size(0); ++k)
        gtboxes.push_back({{"tag", person ? "person" : "mask"},
                           {"fbox", {a[k][0], a[k][1], a[k][2] - a[k][0], a[k][3] - a[k][1]}},
                           {"extra", {{"ignore", person ? 0 : 1}}}});
    };
    add(s.boxes, true);
    add(s.ignore, false);
    out << nlohmann::json{{"ID", fs::path(s.image).stem().string()}, {"gtboxes", gtboxes}}.dump() << '\n';
  }
  if (!out) throw std::runtime_error("cannot write " + odgt.string());
}

/// COCO detection JSON: `images` [{id, file_name}] (relative to `image_root`), `annotations`
/// [{image_id, category_id, bbox: [x, y, w, h], iscrowd, ignore}]. Only the category named
/// "person" when there is one (annotations without category_id count as people), all otherwise;
/// iscrowd = 1 or ignore = 1 makes an ignore region. Images without annotations are kept. Sorted
/// by image path; errors name the file. file_name must stay in `image_root` unless
/// `allow_outside` (see file_in). An invalid annotation is a bad sample (its image, see
/// BadSamples); a file without valid `images` and `categories` is an error either way.
inline std::vector<DetectionSample> read_coco_boxes(const fs::path& json_path, const fs::path& image_root,
                                                    BadSamples* bad = nullptr, bool allow_outside = false) {
  const auto j = data_detail::read_json(json_path);
  const auto invalid = [&](const std::string& what) {
    return std::runtime_error("invalid COCO detection annotations in " + json_path.string() + ": " + what);
  };
  std::optional<int64_t> person;
  try {
    for (const auto& c : j.value("categories", nlohmann::json::array()))
      if (c.at("name").get<std::string>() == "person") person = c.at("id").get<int64_t>();
  } catch (const std::exception& e) {
    throw invalid(e.what());
  }
  const auto files = data_detail::coco_files(j, image_root, allow_outside, invalid);
  std::map<int64_t, std::array<std::vector<float>, 2>> boxes;  // people, ignore regions
  const auto dropped =
      data_detail::read_coco_annotations(j, files, json_path, bad, invalid, [&](const nlohmann::json& a, int64_t id) {
        if (person && a.value("category_id", *person) != *person) return;
        const bool ignore = detection_detail::flag(a, "iscrowd") || detection_detail::flag(a, "ignore");
        detection_detail::append_xywh(a.at("bbox"), boxes[id][ignore ? 1 : 0]);
      });
  std::vector<DetectionSample> out;
  for (const auto& [id, file] : files)
    if (!dropped.count(id))
      out.push_back({file, detection_detail::boxes_tensor(boxes[id][0]), detection_detail::boxes_tensor(boxes[id][1])});
  std::sort(out.begin(), out.end(),
            [](const DetectionSample& a, const DetectionSample& b) { return a.image < b.image; });
  return out;
}

/// A detection dataset by name: "crowdhuman" (`path` = an .odgt file, images in `<its
/// folder>/Images/`; synthetic sets use this layout too) or "coco" (`path` = the JSON, images
/// relative to its folder), each image inside that folder unless `allow_outside`; bad samples go
/// to `bad`.
inline std::vector<DetectionSample> read_detection_dataset(const std::string& format, const fs::path& path,
                                                           BadSamples* bad = nullptr, bool allow_outside = false) {
  if (format == "crowdhuman") return read_odgt(path, path.parent_path() / "Images", bad, allow_outside);
  if (format == "coco") return read_coco_boxes(path, path.parent_path(), bad, allow_outside);
  throw std::runtime_error("unknown detection dataset format '" + format + "' (crowdhuman, coco)");
}

}  // namespace crowdloss_examples
