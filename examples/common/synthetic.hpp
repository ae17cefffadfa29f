#pragma once
// The synthetic crowd: the examples' embedded default dataset, deterministic from a seed.
//
// Each image is a street-like scene seen in perspective: head size grows linearly from the top
// of the frame to the bottom (`head_range` ≥ 4× between the smallest and the largest head), people
// are drawn far to near so nearer bodies occlude farther heads (every head is still annotated, as
// in real datasets), the background is cluttered with buildings, stripes and head-like round
// distractors (not annotated), and every image gets its own lighting gradient, contrast and
// sensor noise. Counts range from 0 to `max_count` (≥ 2,000 by default), drawn log-uniformly so
// that sparse and very dense scenes both occur. Written as PNG images plus the COCO-style JSON
// the readers understand (one head box per person, centred on the annotated point).
// The drawing primitives (synthetic_detail: Random, Canvas, jitter, street_background,
// light_and_noise) are shared with the pedestrian scenes of pedestrians.hpp.
#include "datasets.hpp"
#include "image_io.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <exception>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace crowdloss_examples {

struct SyntheticOptions {
  int64_t height = 256;
  int64_t width = 256;
  int64_t max_count = 2000;  // counts are drawn log-uniformly from [0, max_count]
  double min_head = 2.0;     // head radius in pixels at the top of the frame
  double head_range = 5.0;   // bottom-of-frame head radius / top-of-frame head radius (≥ 4)
  int64_t distractors = 12;  // head-like round objects per image (not annotated)
  uint64_t seed = 1;
};

/// One rendered scene: H×W×3 uint8 image, N×2 head points (x, y) and N head radii.
struct SyntheticScene {
  at::Tensor image;
  at::Tensor points;
  std::vector<float> radii;
};

namespace synthetic_detail {

// Distributions written out, so that a seed gives the same scene with any standard library.
struct Random {
  explicit Random(uint64_t seed) : engine(seed) {}
  double uniform() { return static_cast<double>(engine() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  double normal() {
    const double u = std::max(uniform(), 1e-300), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  std::mt19937_64 engine;
};

using Colour = std::array<float, 3>;

struct Canvas {
  int64_t h, w;
  std::vector<float> px;  // h×w×3, values in [0, 1]
  Canvas(int64_t h_, int64_t w_) : h(h_), w(w_), px(static_cast<size_t>(h_ * w_ * 3), 0.f) {}
  float* at(int64_t y, int64_t x) { return px.data() + (y * w + x) * 3; }

  // Alpha-blends a filled ellipse (centre cx, cy; radii rx, ry) with a soft one-pixel edge.
  void ellipse(double cx, double cy, double rx, double ry, const Colour& c, double opacity = 1.0) {
    const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(cx - rx - 1)),
                  x1 = std::min<int64_t>(w - 1, static_cast<int64_t>(cx + rx + 1));
    const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(cy - ry - 1)),
                  y1 = std::min<int64_t>(h - 1, static_cast<int64_t>(cy + ry + 1));
    for (int64_t y = y0; y <= y1; ++y) {
      for (int64_t x = x0; x <= x1; ++x) {
        const double dx = (x + 0.5 - cx) / rx, dy = (y + 0.5 - cy) / ry;
        const double d = std::sqrt(dx * dx + dy * dy);
        const double a = opacity * std::clamp((1 - d) * std::min(rx, ry) + 0.5, 0.0, 1.0);
        if (a <= 0) continue;
        float* p = at(y, x);
        for (int k = 0; k < 3; ++k) p[k] = static_cast<float>(p[k] * (1 - a) + c[static_cast<size_t>(k)] * a);
      }
    }
  }

  void rect(double x0, double y0, double x1, double y1, const Colour& c) {
    for (int64_t y = std::max<int64_t>(0, static_cast<int64_t>(y0)); y < std::min<int64_t>(h, static_cast<int64_t>(y1));
         ++y)
      for (int64_t x = std::max<int64_t>(0, static_cast<int64_t>(x0));
           x < std::min<int64_t>(w, static_cast<int64_t>(x1)); ++x)
        std::copy(c.begin(), c.end(), at(y, x));
  }

  // Box blur (separable, `passes` times) of the pixels in [x0, x1) × [y0, y1), edges clamped
  // to that window.
  void blur(int64_t x0, int64_t y0, int64_t x1, int64_t y1, int64_t radius, int passes = 2) {
    x0 = std::max<int64_t>(0, x0), y0 = std::max<int64_t>(0, y0), x1 = std::min(w, x1), y1 = std::min(h, y1);
    if (x1 <= x0 || y1 <= y0 || radius < 1) return;
    std::vector<float> line;
    // One 1-D pass over `n` pixels starting at `first`, `step` floats apart.
    const auto blur_line = [&](float* first, int64_t n, int64_t step) {
      line.clear();
      for (int64_t i = 0; i < n; ++i) line.insert(line.end(), first + i * step, first + i * step + 3);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < 3; ++k) {
          double sum = 0;
          for (int64_t j = i - radius; j <= i + radius; ++j)
            sum += line[static_cast<size_t>(std::clamp<int64_t>(j, 0, n - 1) * 3 + k)];
          first[i * step + k] = static_cast<float>(sum / static_cast<double>(2 * radius + 1));
        }
    };
    for (int pass = 0; pass < passes; ++pass) {
      for (int64_t y = y0; y < y1; ++y) blur_line(at(y, x0), x1 - x0, 3);
      for (int64_t x = x0; x < x1; ++x) blur_line(at(y0, x), y1 - y0, 3 * w);
    }
  }

  // The canvas as an H×W×3 uint8 image.
  at::Tensor to_image() {
    return (torch::from_blob(px.data(), {h, w, 3}, torch::kFloat32) * 255).round().to(torch::kUInt8);
  }
};

inline Colour jitter(Random& r, const Colour& base, double amount) {
  Colour c;
  for (size_t k = 0; k < 3; ++k) c[k] = static_cast<float>(std::clamp(base[k] + amount * r.normal(), 0.0, 1.0));
  return c;
}

/// Street-like background: a sky-to-ground gradient, buildings and horizontal stripes.
inline void street_background(Canvas& canvas, Random& r) {
  const int64_t H = canvas.h, W = canvas.w;
  const Colour sky = jitter(r, {0.55f, 0.6f, 0.7f}, 0.12), ground = jitter(r, {0.4f, 0.38f, 0.35f}, 0.1);
  for (int64_t y = 0; y < H; ++y) {
    const double t = static_cast<double>(y) / static_cast<double>(H);
    for (int64_t x = 0; x < W; ++x)
      for (size_t k = 0; k < 3; ++k) canvas.at(y, x)[k] = static_cast<float>(sky[k] * (1 - t) + ground[k] * t);
  }
  for (int b = 0, n = 3 + static_cast<int>(r.uniform() * 6); b < n; ++b) {
    const double x0 = r.uniform(-0.1, 1.0) * W, bw = r.uniform(0.08, 0.3) * W, top = r.uniform(0.0, 0.35) * H;
    canvas.rect(x0, top, x0 + bw, top + r.uniform(0.1, 0.4) * H, jitter(r, {0.5f, 0.45f, 0.42f}, 0.15));
  }
  for (int s = 0, n = static_cast<int>(r.uniform() * 8); s < n; ++s) {
    const double y0 = r.uniform() * H;
    canvas.rect(0, y0, static_cast<double>(W), y0 + r.uniform(1, 4), jitter(r, {0.7f, 0.7f, 0.65f}, 0.2));
  }
}

/// Per-image lighting (a diagonal gradient and a contrast change) and sensor noise.
inline void light_and_noise(Canvas& canvas, Random& r) {
  const int64_t H = canvas.h, W = canvas.w;
  const double gain = r.uniform(0.7, 1.2), slope = r.uniform(-0.3, 0.3), offset = r.uniform(-0.05, 0.05);
  const double noise = r.uniform(0.01, 0.04);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const double light = gain * (1 + slope * (static_cast<double>(x + y) / static_cast<double>(H + W) - 0.5));
      for (int k = 0; k < 3; ++k) {
        float& v = canvas.at(y, x)[k];
        v = static_cast<float>(std::clamp(v * light + offset + noise * r.normal(), 0.0, 1.0));
      }
    }
}

}  // namespace synthetic_detail

/// Renders scene `index` of the set defined by `o` (the same (seed, index) gives the same scene).
inline SyntheticScene render_synthetic_scene(int64_t index, const SyntheticOptions& o) {
  using namespace synthetic_detail;
  Random r(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ULL + 1);
  const int64_t H = o.height, W = o.width;
  Canvas canvas(H, W);
  street_background(canvas, r);
  const auto head_radius = [&](double y) {
    return o.min_head * (1 + (o.head_range - 1) * std::clamp(y / H, 0.0, 1.0));
  };
  // Head-like distractors: round, head-sized, head-coloured, not annotated.
  for (int64_t d = 0; d < o.distractors; ++d) {
    const double y = r.uniform() * H, rad = head_radius(y) * r.uniform(0.7, 1.3);
    canvas.ellipse(r.uniform() * W, y, rad, rad, jitter(r, {0.45f, 0.32f, 0.25f}, 0.12));
  }
  // People, log-uniform count, drawn far (top) to near (bottom).
  const auto n =
      static_cast<int64_t>(std::floor(std::exp(r.uniform() * std::log(static_cast<double>(o.max_count) + 1)))) - 1;
  std::vector<std::array<double, 2>> heads(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (auto& p : heads) p = {r.uniform() * W, (1 - std::sqrt(r.uniform())) * H};  // denser towards the top (far away)
  std::sort(heads.begin(), heads.end(), [](const auto& a, const auto& b) { return a[1] < b[1]; });
  SyntheticScene scene;
  std::vector<float> xy;
  for (const auto& [x, y] : heads) {
    const double rad = head_radius(y);
    canvas.ellipse(x, y + 2.6 * rad, 1.5 * rad, 2.2 * rad, jitter(r, {0.3f, 0.3f, 0.4f}, 0.2));  // shoulders / body
    canvas.ellipse(x, y, rad, 1.1 * rad, jitter(r, {0.72f, 0.55f, 0.45f}, 0.12));                // face
    canvas.ellipse(x, y - 0.45 * rad, 0.95 * rad, 0.6 * rad, jitter(r, {0.15f, 0.12f, 0.1f}, 0.08));  // hair
    xy.push_back(static_cast<float>(x));
    xy.push_back(static_cast<float>(y));
    scene.radii.push_back(static_cast<float>(rad));
  }
  light_and_noise(canvas, r);
  scene.image = canvas.to_image();
  scene.points = data_detail::points_tensor(xy);
  return scene;
}

/// What a synthetic-set writer does when its folder already holds a complete set that differs
/// from the set asked for.
enum class ExistingSet {
  kUseExisting,  ///< use it as it is, whatever its settings (the caller asked for none explicitly)
  kError,        ///< any difference is an error
  kReplace,      ///< write the asked-for set over it (the demos, whose folders are their own)
};

/// Whether a writer asked for the set `wanted` (its settings, as written beside a set) uses the
/// set `existing` in `dir` as it is (true) or writes `wanted` (false), per `policy`. Throws
/// std::runtime_error naming `dir` and each differing setting when the policy allows neither,
/// and always for annotations that are not a synthetic set's (`existing` not an object of
/// settings): nothing in `dir` is touched then.
inline bool reuse_synthetic_set(const fs::path& dir, const nlohmann::json& existing, const nlohmann::json& wanted,
                                ExistingSet policy) {
  if (existing == wanted) return true;
  if (!existing.is_object() || existing.empty())
    throw std::runtime_error(dir.string() +
                             " already holds annotations that are not a synthetic set: name another folder");
  if (policy == ExistingSet::kReplace) return false;
  if (policy == ExistingSet::kUseExisting) return true;
  std::string differences;
  for (const auto& [key, value] : wanted.items()) {
    const auto have = existing.value(key, nlohmann::json());
    if (have != value)
      differences +=
          (differences.empty() ? "" : ", ") + key + " " + have.dump() + " where " + value.dump() + " was asked for";
  }
  throw std::runtime_error(
      dir.string() + " already holds another synthetic set (" + differences +
      "): name another folder, remove this one, or leave out --synthetic-count to use it as it is");
}

/// Runs `render(i)` for i in [0, count) on up to LibTorch's thread count of threads, each with
/// one intra-op thread (so a scene is computed as a one-thread run computes it, whatever the
/// machine), and returns the results in index order. The first exception is rethrown here.
template <class Render>
auto render_in_parallel(int64_t count, const Render& render) {
  std::vector<decltype(render(int64_t{0}))> results(static_cast<size_t>(std::max<int64_t>(0, count)));
  const int threads = at::get_num_threads();  // also sets up this thread's team before the workers change the default
  std::atomic<int64_t> next{0};
  std::mutex m;
  std::exception_ptr error;
  const auto work = [&] {
    at::set_num_threads(1);
    for (int64_t i; (i = next++) < count;) {
      try {
        results[static_cast<size_t>(i)] = render(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
        next = count;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int64_t w = 0; w < std::min<int64_t>(threads, count); ++w) workers.emplace_back(work);
  for (auto& w : workers) w.join();
  at::set_num_threads(threads);  // ATen's default for threads started later, as it was
  if (error) std::rethrow_exception(error);
  return results;
}

/// Writes `count` scenes to `dir`/images/<index>.png and `dir`/annotations.json (COCO-style,
/// one head box per point, the generator's settings under "synthetic"). A folder that already
/// holds annotations.json is used as it is when it lists exactly that set, and otherwise as
/// `existing` says (reuse_synthetic_set). Returns the samples as `read_coco_points` gives them.
inline std::vector<CrowdSample> write_synthetic_dataset(const fs::path& dir, int64_t count, const SyntheticOptions& o,
                                                        ExistingSet existing = ExistingSet::kError) {
  const auto json_path = dir / "annotations.json";
  const nlohmann::json meta = {{"count", count},
                               {"height", o.height},
                               {"width", o.width},
                               {"max_count", o.max_count},
                               {"min_head", o.min_head},
                               {"head_range", o.head_range},
                               {"distractors", o.distractors},
                               {"seed", o.seed}};
  if (fs::exists(json_path) &&
      reuse_synthetic_set(dir, data_detail::read_json(json_path).value("synthetic", nlohmann::json()), meta, existing))
    return read_coco_points(json_path, dir);
  fs::create_directories(dir / "images");
  nlohmann::json images = nlohmann::json::array(), annotations = nlohmann::json::array();
  int64_t ann = 1;
  const auto file_of = [](int64_t i) {
    char name[32];
    std::snprintf(name, sizeof name, "images/%06lld.png", static_cast<long long>(i));
    return std::string(name);
  };
  const auto scenes = render_in_parallel(count, [&](int64_t i) {
    auto scene = render_synthetic_scene(i, o);
    save_png((dir / file_of(i)).string(), scene.image);
    scene.image = at::Tensor();  // written: only the annotations are kept
    return scene;
  });
  for (int64_t i = 0; i < count; ++i) {
    const auto& scene = scenes[static_cast<size_t>(i)];
    const auto name = file_of(i);
    images.push_back({{"id", i + 1}, {"file_name", name}, {"height", o.height}, {"width", o.width}});
    const auto p = scene.points.accessor<float, 2>();
    for (int64_t k = 0; k < scene.points.size(0); ++k) {
      const float rad = scene.radii[static_cast<size_t>(k)];
      annotations.push_back({{"id", ann++},
                             {"image_id", i + 1},
                             {"category_id", 1},
                             {"bbox", {p[k][0] - rad, p[k][1] - rad, 2 * rad, 2 * rad}}});
    }
  }
  std::ofstream out(json_path);
  if (!out) throw std::runtime_error("cannot write " + json_path.string());
  out << nlohmann::json{{"synthetic", meta},
                        {"images", images},
                        {"annotations", annotations},
                        {"categories", {{{"id", 1}, {"name", "person"}}}}}
             .dump();
  out.close();
  return read_coco_points(json_path, dir);
}

}  // namespace crowdloss_examples
