#pragma once
// Data for the dense-pedestrian detection example: readers for CrowdHuman (.odgt) and COCO
// detection JSON, the synthetic dense-pedestrian generator (the example's default dataset, written
// in the CrowdHuman layout), box-aware augmentation built on the point transforms of
// transforms.hpp, and a multi-worker loader on the same BatchSchedule as the counting Loader.
//
// Boxes are N×4 float32 (x0, y0, x1, y1) in pixels: people are full-body boxes, ignore regions
// are areas whose contents are not annotated (a detection there is neither right nor wrong).
#include "datasets.hpp"
#include "image_io.hpp"
#include "loader.hpp"
#include "synthetic.hpp"
#include "transforms.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
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

// ---------------------------------------------------------------------------------------------
// The synthetic dense-pedestrian scenes.

/// The synthetic pedestrians: street scenes in perspective (people grow `height_range`× from the
/// horizon to the bottom of the frame) with people standing in tight groups so that many
/// full-body boxes overlap heavily, as in CrowdHuman.
struct PedestrianOptions {
  int64_t height = 256;
  int64_t width = 256;
  int64_t min_people = 2;  // people per image, drawn uniformly from [min_people, max_people]
                           // (hidden ones are replaced, a few rounds at most)
  int64_t max_people = 40;
  double min_height = 0.1;    // height of the farthest people, as a fraction of the image height
  double height_range = 5.0;  // nearest / farthest person height (≥ 4)
  double min_aspect = 0.3;    // full-body box width / height, drawn uniformly per person
  double max_aspect = 0.5;
  int64_t max_group = 5;       // people stand in groups of 1..max_group that overlap heavily
  double min_visible = 0.15;   // people whose silhouette is more hidden than this are left out
  int64_t ignore_regions = 2;  // blurred far crowds (ignore regions) per image: 0..ignore_regions
  int64_t distractors = 10;    // poles and blobs, not annotated
  uint64_t seed = 1;
};

/// One rendered scene: H×W×3 uint8 image, people (N×4) and ignore regions (M×4), xyxy pixels.
struct PedestrianScene {
  at::Tensor image;
  at::Tensor boxes;
  at::Tensor ignore;
};

namespace pedestrian_detail {

using synthetic_detail::Canvas;
using synthetic_detail::Colour;
using synthetic_detail::jitter;
using synthetic_detail::Random;

/// One filled ellipse of a figure.
struct Part {
  double cx, cy, rx, ry;
  Colour colour;
};

/// A person: the full-body box (x0, y0, x1, y1) and the ellipses that draw it, back to front.
struct Figure {
  std::array<double, 4> box;
  std::vector<Part> parts;
};

/// A person standing with the feet at (cx, foot), `h` tall and aspect × h wide: legs, torso,
/// arms (reaching the sides of the box), head and hair, in random clothes and skin tone.
inline Figure person(Random& r, double cx, double foot, double h, double aspect) {
  static const Colour skins[] = {
      {0.87f, 0.72f, 0.6f}, {0.72f, 0.55f, 0.45f}, {0.5f, 0.36f, 0.27f}, {0.33f, 0.23f, 0.17f}};
  const Colour skin = jitter(r, skins[static_cast<size_t>(r.uniform() * 4) % 4], 0.04);
  const Colour shirt = jitter(r, {0.5f, 0.5f, 0.5f}, 0.25), sleeve = jitter(r, shirt, 0.04);
  const Colour trousers = jitter(r, {0.25f, 0.25f, 0.3f}, 0.12), hair = jitter(r, {0.15f, 0.12f, 0.1f}, 0.08);
  const double w = aspect * h, top = foot - h, head = 0.075 * h, arm = 0.04 * h, leg = 0.05 * h;
  const double stance = r.uniform(0.3, 0.9) * std::max(0.0, w / 2 - leg), torso = r.uniform(0.6, 0.8) * w / 2;
  return {{cx - w / 2, top, cx + w / 2, foot},
          {{cx - stance, top + 0.76 * h, leg, 0.24 * h, trousers},
           {cx + stance, top + 0.76 * h, leg, 0.24 * h, trousers},
           {cx, top + 0.35 * h, torso, 0.2 * h, shirt},
           {cx - w / 2 + arm, top + 0.37 * h, arm, 0.17 * h, sleeve},
           {cx + w / 2 - arm, top + 0.37 * h, arm, 0.17 * h, sleeve},
           {cx, top + head, 0.9 * head, head, skin},
           {cx, top + 0.6 * head, 0.85 * head, 0.6 * head, hair}}};
}

inline void draw(Canvas& canvas, const Figure& f) {
  for (const auto& p : f.parts) canvas.ellipse(p.cx, p.cy, p.rx, p.ry, p.colour);
}

/// Keeps the figures (sorted far to near) of which at least `min_visible` of the silhouette
/// (the pixel centres inside their ellipses) is not hidden by nearer ones.
inline std::vector<Figure> visible_figures(std::vector<Figure> figures, int64_t H, int64_t W, double min_visible) {
  std::vector<int32_t> owner(static_cast<size_t>(H * W), -1);  // the nearest figure at each pixel
  std::vector<int64_t> area(figures.size(), 0), shown(figures.size(), 0);
  for (size_t i = 0; i < figures.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    for (const auto& p : figures[i].parts) {
      const int64_t ya = std::max<int64_t>(0, static_cast<int64_t>(std::floor(p.cy - p.ry))),
                    yb = std::min<int64_t>(H - 1, static_cast<int64_t>(std::ceil(p.cy + p.ry)));
      const int64_t xa = std::max<int64_t>(0, static_cast<int64_t>(std::floor(p.cx - p.rx))),
                    xb = std::min<int64_t>(W - 1, static_cast<int64_t>(std::ceil(p.cx + p.rx)));
      for (int64_t y = ya; y <= yb; ++y)
        for (int64_t x = xa; x <= xb; ++x) {
          const double u = (x + 0.5 - p.cx) / p.rx, v = (y + 0.5 - p.cy) / p.ry;
          auto& o = owner[static_cast<size_t>(y * W + x)];
          if (u * u + v * v < 1 && o != id) {
            o = id;
            ++area[i];
          }
        }
    }
  }
  for (const auto o : owner)
    if (o >= 0) ++shown[static_cast<size_t>(o)];
  std::vector<Figure> kept;
  for (size_t i = 0; i < figures.size(); ++i)
    if (area[i] > 0 && static_cast<double>(shown[i]) >= min_visible * static_cast<double>(area[i]))
      kept.push_back(std::move(figures[i]));
  return kept;
}

inline void sort_far_to_near(std::vector<Figure>& figures) {
  std::stable_sort(figures.begin(), figures.end(),
                   [](const Figure& a, const Figure& b) { return a.box[3] < b.box[3]; });
}

/// The union of the figures' boxes, clipped to the W×H image.
inline std::array<double, 4> union_box(const std::vector<Figure>& figures, int64_t H, int64_t W) {
  std::array<double, 4> u{static_cast<double>(W), static_cast<double>(H), 0.0, 0.0};
  for (const auto& f : figures)
    u = {std::max(0.0, std::min(u[0], f.box[0])), std::max(0.0, std::min(u[1], f.box[1])),
         std::min(static_cast<double>(W), std::max(u[2], f.box[2])),
         std::min(static_cast<double>(H), std::max(u[3], f.box[3]))};
  return u;
}

inline at::Tensor boxes_of(const std::vector<std::array<double, 4>>& boxes) {
  std::vector<float> xyxy;
  for (const auto& b : boxes)
    for (const double v : b) xyxy.push_back(static_cast<float>(v));
  return detection_detail::boxes_tensor(xyxy);
}

inline void check(const PedestrianOptions& o) {
  if (o.height < 16 || o.width < 16) throw std::invalid_argument("PedestrianOptions: height and width must be >= 16");
  if (o.min_people < 0 || o.max_people < o.min_people)
    throw std::invalid_argument("PedestrianOptions: need 0 <= min_people <= max_people");
  if (!(o.min_height > 0) || !(o.height_range >= 1) || o.min_height * o.height_range > 0.8)
    throw std::invalid_argument(
        "PedestrianOptions: need min_height > 0, height_range >= 1, min_height * height_range <= 0.8");
  if (!(o.min_aspect > 0) || o.max_aspect < o.min_aspect || o.max_group < 1 || o.ignore_regions < 0 ||
      o.distractors < 0)
    throw std::invalid_argument(
        "PedestrianOptions: need 0 < min_aspect <= max_aspect, max_group >= 1, ignore_regions, distractors >= 0");
}

}  // namespace pedestrian_detail

/// Renders pedestrian scene `index` of the set defined by `o` (the same (seed, index) gives the
/// same scene). Back to front: the street background of the crowd scenes, poles and blobs (not
/// annotated), 0..ignore_regions far crowds of small people blurred beyond recognition (ignore
/// regions), then the people far to near, so that nearer (lower, larger) people occlude farther
/// ones; finally the crowd scenes' lighting and noise.
inline PedestrianScene render_pedestrian_scene(int64_t index, const PedestrianOptions& o) {
  using namespace synthetic_detail;
  using namespace pedestrian_detail;
  check(o);
  Random r(o.seed * 0xC2B2AE3D27D4EB4FULL + static_cast<uint64_t>(index) * 0x165667B19E3779F9ULL + 7);
  const int64_t H = o.height, W = o.width;
  const double Hd = static_cast<double>(H), Wd = static_cast<double>(W), smallest = o.min_height * Hd;
  Canvas canvas(H, W);
  street_background(canvas, r);
  // Feet stand between the horizon and the bottom of the frame; heights grow linearly in between.
  const double horizon = std::max(r.uniform(0.25, 0.4) * Hd, 1.15 * smallest);
  const auto person_height = [&](double foot) {
    return smallest * (1 + (o.height_range - 1) * std::clamp((foot - horizon) / (Hd - horizon), 0.0, 1.0));
  };
  for (int64_t d = 0; d < o.distractors; ++d) {
    const double foot = horizon + (Hd - horizon) * r.uniform(), size = person_height(foot) * r.uniform(0.6, 1.4),
                 x = r.uniform() * Wd;
    if (r.uniform() < 0.5) {  // a pole with a lamp or a sign on top
      const double top = foot - size * r.uniform(1.0, 1.6), half = std::max(0.6, 0.025 * size);
      canvas.rect(x - half, top, x + half, foot, jitter(r, {0.35f, 0.35f, 0.38f}, 0.1));
      canvas.ellipse(x, top, 0.12 * size, 0.08 * size, jitter(r, {0.6f, 0.55f, 0.4f}, 0.2));
    } else {  // a bush, a bin, a bollard
      canvas.ellipse(x, foot - 0.2 * size, r.uniform(0.08, 0.25) * size, 0.2 * size,
                     jitter(r, {0.3f, 0.4f, 0.25f}, 0.15));
    }
  }
  std::vector<std::array<double, 4>> ignore;
  for (int64_t g = 0, n = static_cast<int64_t>(r.uniform() * static_cast<double>(o.ignore_regions + 1)); g < n; ++g) {
    const double foot = horizon + (Hd - horizon) * r.uniform(0.0, 0.35),
                 size = person_height(foot) * r.uniform(0.35, 0.55);
    const double span = r.uniform(0.15, 0.35) * Wd, left = r.uniform() * (Wd - span);
    std::vector<Figure> crowd;
    for (int64_t k = 0, m = 12 + static_cast<int64_t>(r.uniform() * 20); k < m; ++k) {
      const double h = size * r.uniform(0.85, 1.1), f = std::max(foot + r.uniform(-0.3, 0.3) * size, h);
      crowd.push_back(person(r, left + r.uniform(0.1, 0.9) * span, f, h, r.uniform(o.min_aspect, o.max_aspect)));
    }
    sort_far_to_near(crowd);
    for (const auto& f : crowd) draw(canvas, f);
    const auto box = union_box(crowd, H, W);
    canvas.blur(static_cast<int64_t>(box[0]) - 1, static_cast<int64_t>(box[1]) - 1,
                static_cast<int64_t>(std::ceil(box[2])) + 1, static_cast<int64_t>(std::ceil(box[3])) + 1,
                size > 16 ? 2 : 1);
    ignore.push_back(box);
  }
  // People in groups: members share a depth and stand about 0.4 box widths apart, so boxes of a
  // group overlap heavily. Hidden people are left out and replaced (a few rounds at most).
  const auto target = static_cast<size_t>(
      o.min_people + static_cast<int64_t>(r.uniform() * static_cast<double>(o.max_people - o.min_people + 1)));
  std::vector<Figure> people;
  for (int round = 0; round < 4 && people.size() < target; ++round) {
    for (size_t missing = target - people.size(); missing > 0;) {
      const size_t members = std::min(missing, 1 + static_cast<size_t>(r.uniform() * static_cast<double>(o.max_group)));
      const double group_foot = horizon + (Hd - horizon) * r.uniform(), group_x = r.uniform() * Wd;
      for (size_t k = 0; k < members; ++k) {
        const double foot = std::clamp(group_foot + 0.05 * person_height(group_foot) * r.normal(), horizon, Hd);
        const double h = person_height(foot) * r.uniform(0.85, 1.1), aspect = r.uniform(o.min_aspect, o.max_aspect);
        const double half = aspect * h / 2, x = std::min(std::max(group_x + 0.8 * half * r.normal(), half), Wd - half);
        people.push_back(person(r, x, std::max(foot, h), h, aspect));
      }
      missing -= members;
    }
    sort_far_to_near(people);
    people = visible_figures(std::move(people), H, W, o.min_visible);
  }
  std::vector<std::array<double, 4>> boxes;
  for (const auto& f : people) {
    draw(canvas, f);
    boxes.push_back(f.box);
  }
  light_and_noise(canvas, r);
  return {canvas.to_image(), boxes_of(boxes), boxes_of(ignore)};
}

/// Writes `count` pedestrian scenes in the CrowdHuman layout: `dir`/Images/<index>.png and
/// `dir`/annotation.odgt, with the options in `dir`/synthetic.json (written last). A complete set
/// already there is used as it is when its synthetic.json matches, and otherwise as `existing`
/// says (reuse_synthetic_set); a set without a readable synthetic.json (interrupted while being
/// written) is written again. Returns the samples as read_odgt gives them.
inline std::vector<DetectionSample> write_synthetic_pedestrians(const fs::path& dir, int64_t count,
                                                                const PedestrianOptions& o,
                                                                ExistingSet existing = ExistingSet::kError) {
  if (count < 0) throw std::invalid_argument("write_synthetic_pedestrians: count must be >= 0");
  pedestrian_detail::check(o);
  const auto odgt = dir / "annotation.odgt", meta_path = dir / "synthetic.json", images = dir / "Images";
  const nlohmann::json meta = {{"generator", "pedestrians-1"},
                               {"count", count},
                               {"height", o.height},
                               {"width", o.width},
                               {"min_people", o.min_people},
                               {"max_people", o.max_people},
                               {"min_height", o.min_height},
                               {"height_range", o.height_range},
                               {"min_aspect", o.min_aspect},
                               {"max_aspect", o.max_aspect},
                               {"max_group", o.max_group},
                               {"min_visible", o.min_visible},
                               {"ignore_regions", o.ignore_regions},
                               {"distractors", o.distractors},
                               {"seed", o.seed}};
  if (fs::exists(meta_path) && fs::exists(odgt)) {
    std::optional<nlohmann::json> written;
    try {
      written = data_detail::read_json(meta_path);
    } catch (const std::runtime_error&) {  // an unreadable sidecar: an interrupted set, written again
    }
    if (written && reuse_synthetic_set(dir, *written, meta, existing)) return read_odgt(odgt, images);
  }
  fs::remove(meta_path);  // written last: a set interrupted while being written is not reused
  fs::create_directories(images);
  std::vector<DetectionSample> samples;
  for (int64_t i = 0; i < count; ++i) {
    auto scene = render_pedestrian_scene(i, o);
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
    save_png((images / name).string(), scene.image);
    samples.push_back({(images / name).string(), scene.boxes, scene.ignore});
  }
  write_odgt(odgt, samples);
  std::ofstream out(meta_path);
  if (!(out << meta.dump(2) << '\n')) throw std::runtime_error("cannot write " + meta_path.string());
  out.close();
  return read_odgt(odgt, images);
}

// ---------------------------------------------------------------------------------------------
// Box-aware transforms: the boxes travel as their corner points through the point transforms of
// transforms.hpp; only what is specific to boxes (x0/x1 after a flip, clipping) is done here.

/// An image (3×H×W float in [0, 1]) with its people and ignore regions, in its own pixels.
struct BoxSample {
  at::Tensor image;
  at::Tensor boxes;
  at::Tensor ignore;
};

namespace detection_detail {

/// People then ignore regions as the corner points (x0, y0), (x1, y1) of one Sample.
inline Sample corners(const BoxSample& s) {
  return {s.image, torch::cat({s.boxes.reshape({-1, 4}), s.ignore.reshape({-1, 4})}).reshape({-1, 2})};
}

/// The inverse of `corners`, `people` being the number of people.
inline BoxSample from_corners(const Sample& x, int64_t people) {
  const auto b = x.points.reshape({-1, 4});
  return {x.image, b.narrow(0, 0, people), b.narrow(0, people, b.size(0) - people)};
}

inline at::Tensor box_area(const at::Tensor& b) {
  return (b.select(1, 2) - b.select(1, 0)).clamp_min(0) * (b.select(1, 3) - b.select(1, 1)).clamp_min(0);
}

}  // namespace detection_detail

/// Resizes so that the longer side is `side`; boxes scale with each axis.
inline BoxSample resize_longest(const BoxSample& s, int64_t side) {
  return detection_detail::from_corners(resize_longest(detection_detail::corners(s), side), s.boxes.size(0));
}

/// Zero-pads at the bottom/right to multiples of `multiple`; boxes are unchanged.
inline BoxSample pad_to_multiple(const BoxSample& s, int64_t multiple) {
  return {pad_to_multiple(Sample{s.image, {}}, multiple).image, s.boxes, s.ignore};
}

/// Mirrors left-right: x → W − x, the two x of each box swapped.
inline BoxSample hflip(const BoxSample& s) {
  auto f = detection_detail::from_corners(hflip(detection_detail::corners(s)), s.boxes.size(0));
  const auto order = torch::tensor({2, 1, 0, 3}, torch::kLong);
  return {f.image, f.boxes.index_select(1, order), f.ignore.index_select(1, order)};
}

/// The h×w window at (y0, x0) (as `crop` of transforms.hpp). Boxes shift into the window and are
/// clipped to it; a person stays if the clipped box keeps at least `min_kept` of its area and is
/// at least `min_side` pixels wide and high, an ignore region if anything of it is left.
inline BoxSample crop(const BoxSample& s, int64_t y0, int64_t x0, int64_t h, int64_t w, double min_kept = 0.25,
                      double min_side = 2) {
  const auto image = crop(Sample{s.image, torch::zeros({0, 2})}, y0, x0, h, w).image;
  const auto shift =
      torch::tensor({static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x0), static_cast<float>(y0)});
  const auto limit =
      torch::tensor({static_cast<float>(w), static_cast<float>(h), static_cast<float>(w), static_cast<float>(h)});
  const auto moved = s.boxes.reshape({-1, 4}) - shift, clipped = torch::minimum(moved.clamp_min(0), limit);
  const auto people = (detection_detail::box_area(clipped) >= min_kept * detection_detail::box_area(moved)) &
                      (clipped.select(1, 2) - clipped.select(1, 0) >= min_side) &
                      (clipped.select(1, 3) - clipped.select(1, 1) >= min_side);
  const auto regions = torch::minimum((s.ignore.reshape({-1, 4}) - shift).clamp_min(0), limit);
  return {image, clipped.index({people}), regions.index({detection_detail::box_area(regions) > 0})};
}

/// An h×w window at a random position (as `random_crop` of transforms.hpp), boxes as in `crop`.
inline BoxSample random_crop(const BoxSample& s, int64_t h, int64_t w, at::Generator& gen) {
  const auto [y0, x0] = random_window(s.image.size(1), s.image.size(2), h, w, gen);
  return crop(s, y0, x0, h, w);
}

/// Random brightness, contrast and saturation (as in transforms.hpp); boxes are unchanged.
inline BoxSample colour_jitter(const BoxSample& s, double strength, at::Generator& gen) {
  return {colour_jitter(Sample{s.image, {}}, strength, gen).image, s.boxes, s.ignore};
}

// ---------------------------------------------------------------------------------------------
// The loader.

struct DetectionLoaderOptions {
  int64_t batch = 8;
  int64_t longest_side = 0;  // resize so that the longer side is this (0: keep the size)
  int64_t crop = 0;          // side of the random square crop when augmenting (0: no crop)
  int64_t multiple = 32;     // images are zero-padded to a multiple of this (the model's largest stride)
  bool augment = false;      // random crop, horizontal flip, colour jitter
  bool shuffle = false;
  int64_t workers = 2;
  uint64_t seed = 0;
  BadSamples* bad = nullptr;  // an image that cannot be read: stop (null) or as `bad` says
};

struct DetectionBatch {
  at::Tensor images;                      // B×3×H×W, normalised, zero-padded to the largest (a multiple)
  std::vector<at::Tensor> boxes, ignore;  // per image: N×4 people, M×4 ignore regions, xyxy pixels
  std::vector<std::string> files;
  std::vector<std::array<int64_t, 2>> sizes;  // each image's {h, w} before padding
};

/// The detection counterpart of Loader, with the same guarantees: batch i of epoch e is
/// augmented from a generator seeded by (seed, e, i), so batches do not depend on the number of
/// workers, and an epoch can be resumed at any batch.
class DetectionLoader
    : public LoaderBase<DetectionLoader, DetectionSample, BoxSample, DetectionBatch, DetectionLoaderOptions> {
 public:
  DetectionLoader(std::vector<DetectionSample> samples, DetectionLoaderOptions options)
      : LoaderBase(std::move(samples), checked(std::move(options))) {}

  /// One sample, as the loader prepares it before padding (`gen` drives the augmentation).
  BoxSample prepare(const DetectionSample& s, at::Generator& gen) const {
    BoxSample x{to_chw_float(load_image(s.image)), s.boxes, s.ignore};
    if (o_.longest_side > 0) x = resize_longest(x, o_.longest_side);
    if (o_.augment) x = random_augment(x, o_.crop, gen);
    return x;
  }

  /// The batch of prepared samples `xs`: images zero-padded to the largest, rounded up to the
  /// multiple; each image's size before padding, boxes and ignore regions.
  DetectionBatch collate(std::vector<BoxSample> xs, std::vector<std::string> files) const {
    DetectionBatch b;
    int64_t H = 0, W = 0;
    for (const auto& x : xs) {
      b.sizes.push_back({x.image.size(1), x.image.size(2)});
      b.boxes.push_back(x.boxes.contiguous());
      b.ignore.push_back(x.ignore.contiguous());
      H = std::max(H, x.image.size(1)), W = std::max(W, x.image.size(2));
    }
    H = (H + o_.multiple - 1) / o_.multiple * o_.multiple;
    W = (W + o_.multiple - 1) / o_.multiple * o_.multiple;
    std::vector<at::Tensor> images;
    for (const auto& x : xs)
      images.push_back(normalize(torch::constant_pad_nd(x.image, {0, W - x.image.size(2), 0, H - x.image.size(1)}, 0)));
    b.images = torch::stack(images);
    b.files = std::move(files);
    return b;
  }

 private:
  static DetectionLoaderOptions checked(DetectionLoaderOptions o) {
    if (o.batch < 1 || o.workers < 1 || o.multiple < 1)
      throw std::invalid_argument("DetectionLoader: batch, workers and multiple must be >= 1");
    return o;
  }
};

}  // namespace crowdloss_examples
