#pragma once
// The synthetic dense-pedestrian scenes, the detection example's default data set: street scenes
// in perspective, heavily occluded, with ignore regions, written in the CrowdHuman layout.
#include "detection_datasets.hpp"
#include "image_io.hpp"
#include "synthetic.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace crowdloss_examples {

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
  const auto samples = render_in_parallel(count, [&](int64_t i) {
    const auto scene = render_pedestrian_scene(i, o);
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
    save_png((images / name).string(), scene.image);
    return DetectionSample{(images / name).string(), scene.boxes, scene.ignore};
  });
  write_odgt(odgt, samples);
  std::ofstream out(meta_path);
  if (!(out << meta.dump(2) << '\n')) throw std::runtime_error("cannot write " + meta_path.string());
  out.close();
  return read_odgt(odgt, images);
}

}  // namespace crowdloss_examples
