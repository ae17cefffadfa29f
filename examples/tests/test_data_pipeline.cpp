#include "support/checks.hpp"

#include "fixtures.hpp"

#include "loader.hpp"
#include "synthetic.hpp"
#include "transforms.hpp"

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;
using crowdloss_examples_test::write_text;

namespace {

// An image whose channels encode their own coordinates: (x, y, 0) / 1000.
ex::Sample coordinate_sample(int64_t h, int64_t w, const at::Tensor& points) {
  const auto x = torch::arange(w).to(torch::kFloat).view({1, w}).expand({h, w});
  const auto y = torch::arange(h).to(torch::kFloat).view({h, 1}).expand({h, w});
  return {torch::stack({x, y, torch::zeros({h, w})}) / 1000, points};
}

}  // namespace

TEST_CASE("transforms: points follow the image under resize, pad, crop and flip") {
  torch::manual_seed(1);
  const auto points = torch::rand({50, 2}) * torch::tensor({30.0f, 20.0f});
  const auto s = coordinate_sample(20, 30, points);
  const auto r = ex::resize_longest(s, 60);
  DOCTEST_CHECK(r.image.sizes() == at::IntArrayRef({3, 40, 60}));
  DOCTEST_CHECK(torch::allclose(r.points, points * 2));
  const auto p = ex::pad_to_multiple(s, 8);
  DOCTEST_CHECK(p.image.sizes() == at::IntArrayRef({3, 24, 32}));
  DOCTEST_CHECK(torch::equal(p.points, points));
  const auto f = ex::hflip(s);
  DOCTEST_CHECK(torch::allclose(f.points.select(1, 0), 30 - points.select(1, 0)));
  DOCTEST_CHECK(torch::allclose(ex::hflip(f).points, points));
  DOCTEST_CHECK(torch::equal(ex::hflip(f).image, s.image));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (int trial = 0; trial < 20; ++trial) {
    const auto c = ex::random_crop(s, 12, 16, gen);
    REQUIRE(c.image.sizes() == at::IntArrayRef({3, 12, 16}));
    // The crop's top-left pixel tells where it was taken; the kept points are exactly those
    // inside that window, shifted by it.
    const float x0 = c.image[0][0][0].item<float>() * 1000, y0 = c.image[1][0][0].item<float>() * 1000;
    const auto shifted = points - torch::tensor({x0, y0});
    const auto inside = (shifted.select(1, 0) >= 0) & (shifted.select(1, 0) < 16) & (shifted.select(1, 1) >= 0) &
                        (shifted.select(1, 1) < 12);
    DOCTEST_CHECK(c.points.size(0) == inside.sum().item<int64_t>());
    DOCTEST_CHECK(torch::allclose(c.points, shifted.index({inside})));
  }
  // A crop larger than the image pads it and keeps every point.
  const auto big = ex::random_crop(s, 32, 40, gen);
  DOCTEST_CHECK(big.image.sizes() == at::IntArrayRef({3, 32, 40}));
  DOCTEST_CHECK(big.points.size(0) == 50);
  const auto j = ex::colour_jitter(s, 0.3, gen);
  DOCTEST_CHECK(torch::equal(j.points, points));
  DOCTEST_CHECK(j.image.min().item<float>() >= 0);
  DOCTEST_CHECK(j.image.max().item<float>() <= 1);
}

TEST_CASE("synthetic: deterministic scenes with a perspective size gradient and the full count range") {
  ex::SyntheticOptions o;
  const auto a = ex::render_synthetic_scene(5, o), b = ex::render_synthetic_scene(5, o),
             c = ex::render_synthetic_scene(6, o);
  DOCTEST_CHECK(torch::equal(a.image, b.image));
  DOCTEST_CHECK(torch::equal(a.points, b.points));
  DOCTEST_CHECK_FALSE(torch::equal(a.image, c.image));
  DOCTEST_CHECK(a.image.sizes() == at::IntArrayRef({256, 256, 3}));
  int64_t smallest = 1 << 30, largest = 0;
  double range = 0;
  for (int64_t i = 0; i < 80; ++i) {
    const auto s = ex::render_synthetic_scene(i, o);
    const int64_t n = s.points.size(0);
    smallest = std::min(smallest, n);
    largest = std::max(largest, n);
    if (n > 100)
      range = std::max(range, static_cast<double>(*std::max_element(s.radii.begin(), s.radii.end()) /
                                                  *std::min_element(s.radii.begin(), s.radii.end())));
    if (n > 0) {
      DOCTEST_CHECK(s.points.min().item<float>() >= 0);
      DOCTEST_CHECK(s.points.max().item<float>() <= 256);
    }
  }
  DOCTEST_CHECK(smallest == 0);
  DOCTEST_CHECK(largest >= 1500);
  DOCTEST_CHECK(range >= 4.0);  // at least 4× head-size range within one image
}

TEST_CASE("synthetic: the written dataset reads back through the COCO reader, and is reused") {
  const auto dir = fixture_dir("synthetic");
  const auto samples = crowdloss_examples_test::small_synthetic_set(dir, 6, 64, 96, 300);
  REQUIRE(samples.size() == 6);
  ex::SyntheticOptions o;
  o.height = 64, o.width = 96, o.max_count = 300;
  for (int64_t i = 0; i < 6; ++i) {
    const auto scene = ex::render_synthetic_scene(i, o);
    DOCTEST_CHECK(torch::allclose(samples[static_cast<size_t>(i)].points, scene.points, 0, 1e-4));
    DOCTEST_CHECK(torch::equal(ex::load_image(samples[static_cast<size_t>(i)].image), scene.image));
  }
  const auto stamp = fs::last_write_time(dir / "annotations.json");
  crowdloss_examples_test::small_synthetic_set(dir, 6, 64, 96, 300);  // same set: nothing rewritten
  DOCTEST_CHECK(fs::last_write_time(dir / "annotations.json") == stamp);
  // Another set asked for: an error naming each difference (nothing rewritten), unless none was
  // asked for explicitly (kUseExisting: the set as it is) or the caller owns the folder (kReplace).
  DOCTEST_CHECK_THROWS_WITH_AS(ex::write_synthetic_dataset(dir, 400, o),
                               doctest::Contains("count 6 where 400 was asked for"), std::runtime_error);
  auto other = o;
  other.seed = 7;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::write_synthetic_dataset(dir, 400, other),
                               doctest::Contains("seed 1 where 7 was asked for"), std::runtime_error);
  const auto kept = ex::write_synthetic_dataset(dir, 400, other, ex::ExistingSet::kUseExisting);
  REQUIRE(kept.size() == 6);
  DOCTEST_CHECK(torch::equal(kept[0].points, samples[0].points));
  DOCTEST_CHECK(fs::last_write_time(dir / "annotations.json") == stamp);
  DOCTEST_CHECK(ex::write_synthetic_dataset(dir, 3, o, ex::ExistingSet::kReplace).size() == 3);
  // A folder with other annotations (not a synthetic set) is never written over.
  const auto real = fixture_dir("synthetic_real");
  write_text(real / "annotations.json", R"({"images": [], "annotations": []})");
  for (const auto policy : {ex::ExistingSet::kUseExisting, ex::ExistingSet::kError, ex::ExistingSet::kReplace})
    DOCTEST_CHECK_THROWS_WITH_AS(
        ex::write_synthetic_dataset(real, 6, o, policy),
        doctest::Contains((real.string() + " already holds annotations that are not a synthetic set").c_str()),
        std::runtime_error);
}

namespace {

// The two loaders, for the guarantees they share (LoaderBase).
struct CountingLoaderCase {
  using Loader = ex::Loader;
  using Options = ex::LoaderOptions;
  static constexpr const char* name = "loader_counting";
  static std::vector<ex::CrowdSample> samples(const fs::path& dir) {
    return crowdloss_examples_test::small_synthetic_set(dir, 10, 72, 100, 200);
  }
};
struct DetectionLoaderCase {
  using Loader = ex::DetectionLoader;
  using Options = ex::DetectionLoaderOptions;
  static constexpr const char* name = "loader_detection";
  static std::vector<ex::DetectionSample> samples(const fs::path& dir) {
    return crowdloss_examples_test::small_pedestrian_set(dir, 10, 72, 100, 12, 5);
  }
};

}  // namespace

TEST_CASE_TEMPLATE("loaders: batches do not depend on the workers, epochs differ, and an epoch resumes at any batch",
                   Case, CountingLoaderCase, DetectionLoaderCase) {
  const auto samples = Case::samples(fixture_dir(Case::name));
  typename Case::Options o;
  o.batch = 4, o.crop = 48, o.augment = true, o.shuffle = true, o.seed = 9, o.workers = 1;
  const typename Case::Loader one(samples, o);
  o.workers = 3;
  const typename Case::Loader three(samples, o);
  DOCTEST_CHECK(one.size() == 10);
  DOCTEST_CHECK(one.batches() == 3);
  using Batch = decltype(one.make_batch(0, 0));
  std::vector<Batch> first, second, other, rest;
  one.run_epoch(2, [&](int64_t, Batch& b) { first.push_back(b); });
  three.run_epoch(2, [&](int64_t, Batch& b) { second.push_back(b); });
  DOCTEST_REQUIRE(first.size() == 3);
  DOCTEST_REQUIRE(second.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    DOCTEST_CHECK(torch::equal(first[i].images, second[i].images));
    DOCTEST_CHECK(first[i].files == second[i].files);
  }
  DOCTEST_CHECK(first[2].images.size(0) == 2);
  // Another epoch is another order and other crops; resuming mid-epoch gives the same batches.
  three.run_epoch(3, [&](int64_t, Batch& b) { other.push_back(b); });
  DOCTEST_CHECK_FALSE(torch::equal(other[0].images, first[0].images));
  three.run_epoch(
      2, [&](int64_t, Batch& b) { rest.push_back(b); }, 1);
  DOCTEST_REQUIRE(rest.size() == 2);
  DOCTEST_CHECK(torch::equal(rest[0].images, first[1].images));
  DOCTEST_CHECK(rest[1].files == first[2].files);
}

TEST_CASE("BatchSchedule: loader threads run one intra-op thread each, the consuming thread keeps its own") {
  // A fresh consuming thread whose team is not set up yet: run() must set it up (at 2) before its
  // workers lower ATen's default to 1, or the training step would run on one thread.
  std::vector<int> in_workers;
  int consumer = 0;
  const int before = at::get_num_threads();
  std::thread([&] {
    at::set_num_threads(2);
    const ex::BatchSchedule schedule(6, 2, false, 2, 0);
    std::mutex m;
    schedule.run<int>(
        [&](int64_t) {
          std::lock_guard<std::mutex> lock(m);
          in_workers.push_back(at::get_num_threads());
          return 0;
        },
        [](int64_t, int&) {});
    consumer = at::get_num_threads();
    at::set_num_threads(before);  // ATen's default for later threads, as it was
  }).join();
  DOCTEST_CHECK(consumer == 2);
  DOCTEST_CHECK(in_workers == std::vector<int>{1, 1, 1});
}

TEST_CASE("Loader: batch shapes, density sums equal counts, whole images for evaluation, errors name the file") {
  const auto dir = fixture_dir("loader");
  const auto samples = crowdloss_examples_test::small_synthetic_set(dir, 10, 72, 100, 200);
  ex::LoaderOptions lo;
  lo.batch = 4, lo.crop = 48, lo.augment = true, lo.shuffle = true, lo.seed = 9, lo.workers = 3;
  const ex::Loader three(samples, lo);
  std::vector<ex::Batch> first;
  three.run_epoch(2, [&](int64_t, ex::Batch& b) { first.push_back(b); });
  REQUIRE(first.size() == 3);
  for (const auto& b : first) DOCTEST_CHECK(torch::allclose(b.density.sum({1, 2, 3}), b.counts));
  DOCTEST_CHECK(first[0].images.sizes() == at::IntArrayRef({4, 3, 48, 48}));
  DOCTEST_CHECK(first[0].density.sizes() == at::IntArrayRef({4, 1, 6, 6}));
  // Evaluation: whole images padded to the stride, exact counts.
  ex::LoaderOptions eo;
  eo.batch = 1;
  const ex::Loader eval(samples, eo);
  eval.run_epoch(0, [&](int64_t i, ex::Batch& b) {
    DOCTEST_CHECK(b.images.sizes() == at::IntArrayRef({1, 3, 72, 104}));
    DOCTEST_CHECK(b.counts[0].item<float>() == samples[static_cast<size_t>(i)].points.size(0));
  });
  std::ofstream(samples[3].image) << "corrupt";
  const std::string corrupt = fs::path(samples[3].image).filename().string();
  DOCTEST_CHECK_THROWS_WITH_AS(three.run_epoch(0, [](int64_t, ex::Batch&) {}), doctest::Contains(corrupt.c_str()),
                               std::runtime_error);
}

TEST_CASE("loaders: CUDA pinned batches reach the GPU with the unpinned batches' values") {
  if (!crowdloss_test::cuda_or_skip("pinned batches to the GPU")) return;
  const auto dir = fixture_dir("pinned");
  const auto samples = crowdloss_examples_test::small_synthetic_set(dir, 6, 64, 64, 100);
  ex::LoaderOptions lo;
  lo.batch = 3, lo.crop = 48, lo.augment = true, lo.shuffle = true, lo.seed = 4;
  const ex::Loader plain(samples, lo);
  lo.pin_memory = true;
  const ex::Loader pinned(samples, lo);
  const torch::Device gpu(torch::kCUDA);
  for (int64_t i = 0; i < plain.batches(); ++i) {
    const auto a = plain.make_batch(1, i), b = pinned.make_batch(1, i);
    DOCTEST_CHECK(b.images.is_pinned());
    DOCTEST_CHECK(b.density.is_pinned());
    DOCTEST_CHECK(!a.images.is_pinned());
    const auto on_gpu = b.to(gpu);  // queued without waiting; the reads below wait for it
    DOCTEST_CHECK(on_gpu.images.is_cuda());
    DOCTEST_CHECK(torch::equal(on_gpu.images.cpu(), a.images));
    DOCTEST_CHECK(torch::equal(on_gpu.density.cpu(), a.density));
    for (size_t k = 0; k < a.points.size(); ++k) DOCTEST_CHECK(torch::equal(on_gpu.points[k].cpu(), a.points[k]));
  }
}
