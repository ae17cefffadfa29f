#include "support/checks.hpp"

#include "fixtures.hpp"

#include "detection_loader.hpp"
#include "pedestrians.hpp"
#include "image_io.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;
using crowdloss_examples_test::write_image;
using crowdloss_examples_test::write_text;

namespace {

at::Tensor xyxy(std::vector<float> v) { return torch::tensor(v).view({-1, 4}); }

// Pairwise IoU of two sets of xyxy boxes.
at::Tensor iou(const at::Tensor& a, const at::Tensor& b) {
  const auto lt = torch::maximum(a.unsqueeze(1).narrow(2, 0, 2), b.unsqueeze(0).narrow(2, 0, 2));
  const auto rb = torch::minimum(a.unsqueeze(1).narrow(2, 2, 2), b.unsqueeze(0).narrow(2, 2, 2));
  const auto wh = (rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto area = [](const at::Tensor& x) {
    return (x.select(1, 2) - x.select(1, 0)) * (x.select(1, 3) - x.select(1, 1));
  };
  return inter / (area(a).unsqueeze(1) + area(b).unsqueeze(0) - inter);
}

// An image whose channels encode their own coordinates: (x, y, 0) / 1000.
at::Tensor coordinate_image(int64_t h, int64_t w) {
  const auto x = torch::arange(w).to(torch::kFloat).view({1, w}).expand({h, w});
  const auto y = torch::arange(h).to(torch::kFloat).view({h, 1}).expand({h, w});
  return torch::stack({x, y, torch::zeros({h, w})}) / 1000;
}

}  // namespace

TEST_CASE("detection data: read_odgt splits people from ignore regions, finds jpg or png, errors name file and line") {
  const auto dir = fixture_dir("odgt");
  write_image(dir / "Images" / "a.jpg");
  write_image(dir / "Images" / "b.png");
  write_text(
      dir / "train.odgt",
      R"({"ID": "a", "gtboxes": [{"tag": "person", "fbox": [10, 20, 30, 60], "vbox": [10, 20, 30, 40], "hbox": [15, 20, 10, 10], "extra": {"box_id": 0, "occ": 1, "ignore": 0}},)"
      R"( {"tag": "person", "fbox": [1, 2, 3, 4], "extra": {"ignore": 1}}, {"tag": "mask", "fbox": [5, 6, 7, 8], "extra": {"ignore": 1}},)"
      R"( {"tag": "person", "fbox": [0.5, 0, 2.25, 4]}, {"tag": "mask", "fbox": [9, 9, 1, 1]}]})"
      "\n\n"
      R"({"ID": "b", "gtboxes": []})"
      "\n");
  const auto samples = ex::read_odgt(dir / "train.odgt", dir / "Images");
  DOCTEST_REQUIRE(samples.size() == 2);
  DOCTEST_CHECK(samples[0].image == (dir / "Images" / "a.jpg").string());
  DOCTEST_CHECK(torch::equal(samples[0].boxes, xyxy({10, 20, 40, 80, 0.5, 0, 2.75, 4})));
  DOCTEST_CHECK(torch::equal(samples[0].ignore, xyxy({1, 2, 4, 6, 5, 6, 12, 14, 9, 9, 10, 10})));
  DOCTEST_CHECK(samples[1].image == (dir / "Images" / "b.png").string());
  DOCTEST_CHECK(samples[1].boxes.sizes() == at::IntArrayRef({0, 4}));
  DOCTEST_CHECK(samples[1].ignore.sizes() == at::IntArrayRef({0, 4}));
  DOCTEST_CHECK((samples[0].boxes.scalar_type() == torch::kFloat32));
  // The CrowdHuman layout by name: images in Images/ beside the .odgt file.
  const auto named = ex::read_detection_dataset("crowdhuman", dir / "train.odgt");
  DOCTEST_REQUIRE(named.size() == 2);
  DOCTEST_CHECK(torch::equal(named[0].boxes, samples[0].boxes));
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_detection_dataset("voc", dir / "train.odgt"),
                               doctest::Contains("crowdhuman, coco"), std::runtime_error);
  // Errors: corrupt JSON and missing keys name the file and the line, a missing image names it.
  write_text(dir / "corrupt.odgt", R"({"ID": "a", "gtboxes": []})"
                                   "\n"
                                   R"({"ID": "b", "gtboxes": [)"
                                   "\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "corrupt.odgt", dir / "Images"), doctest::Contains("corrupt.odgt:2"),
                               std::runtime_error);
  write_text(dir / "nofbox.odgt",
             "\n"
             R"({"ID": "a", "gtboxes": [{"tag": "person", "vbox": [1, 2, 3, 4]}]})"
             "\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "nofbox.odgt", dir / "Images"), doctest::Contains("nofbox.odgt:2"),
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "nofbox.odgt", dir / "Images"), doctest::Contains("fbox"),
                               std::runtime_error);
  write_text(dir / "noid.odgt", R"({"gtboxes": []})"
                                "\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "noid.odgt", dir / "Images"), doctest::Contains("noid.odgt:1"),
                               std::runtime_error);
  write_text(dir / "short.odgt", R"({"ID": "a", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3]}]})"
                                 "\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "short.odgt", dir / "Images"), doctest::Contains("short.odgt:1"),
                               std::runtime_error);
  write_text(dir / "noimage.odgt", R"({"ID": "a", "gtboxes": []})"
                                   "\n"
                                   R"({"ID": "nope", "gtboxes": []})"
                                   "\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "noimage.odgt", dir / "Images"), doctest::Contains("nope.jpg"),
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_odgt(dir / "absent.odgt", dir / "Images"), doctest::Contains("absent.odgt"),
                               std::runtime_error);
}

TEST_CASE("detection data: write_odgt then read_odgt gives the samples back exactly") {
  const auto dir = fixture_dir("odgt_round_trip");
  write_image(dir / "Images" / "x1.png");
  write_image(dir / "Images" / "x2.jpg");
  const std::vector<ex::DetectionSample> samples = {
      {(dir / "Images" / "x1.png").string(), xyxy({0.1f, 2.7f, 13.3f, 40.9f, 100.25f, 3, 120.125f, 77.7f}),
       xyxy({5, 5, 9.5f, 9.5f})},
      {(dir / "Images" / "x2.jpg").string(), torch::zeros({0, 4}), torch::zeros({0, 4})}};
  ex::write_odgt(dir / "out.odgt", samples);
  const auto back = ex::read_odgt(dir / "out.odgt", dir / "Images");
  DOCTEST_REQUIRE(back.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    DOCTEST_CHECK(back[i].image == samples[i].image);
    DOCTEST_CHECK(torch::equal(back[i].boxes, samples[i].boxes));
    DOCTEST_CHECK(torch::equal(back[i].ignore, samples[i].ignore));
  }
  std::ifstream in(dir / "out.odgt");
  std::string first;
  std::getline(in, first);
  DOCTEST_CHECK(first.find("\"mask\"") != std::string::npos);
  DOCTEST_CHECK(first.find("\"ID\":\"x1\"") != std::string::npos);
}

TEST_CASE("detection data: read_coco_boxes keeps people, makes crowds ignore regions, filters categories") {
  const auto dir = fixture_dir("coco_boxes");
  write_text(
      dir / "ann.json",
      R"({"images": [{"id": 2, "file_name": "sub/b.jpg"}, {"id": 1, "file_name": "a.jpg"}, {"id": 5, "file_name": "c.jpg"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 1},
                    {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 9, 9]},
                    {"id": 4, "image_id": 2, "category_id": 1, "bbox": [2, 2, 2, 2], "iscrowd": 0, "ignore": 1},
                    {"id": 5, "image_id": 2, "category_id": 1, "bbox": [7, 8, 1, 2], "iscrowd": 0}],
    "categories": [{"id": 2, "name": "car"}, {"id": 1, "name": "person"}]})");
  const auto samples = ex::read_coco_boxes(dir / "ann.json", dir);
  DOCTEST_REQUIRE(samples.size() == 3);
  DOCTEST_CHECK(samples[0].image == (dir / "a.jpg").string());
  DOCTEST_CHECK(samples[2].image == (dir / "sub/b.jpg").string());
  DOCTEST_CHECK(torch::equal(samples[0].boxes, xyxy({1, 2, 4, 6})));
  DOCTEST_CHECK(torch::equal(samples[0].ignore, xyxy({5, 5, 15, 15})));
  DOCTEST_CHECK(samples[1].boxes.sizes() == at::IntArrayRef({0, 4}));
  DOCTEST_CHECK(torch::equal(samples[2].boxes, xyxy({7, 8, 8, 10})));
  DOCTEST_CHECK(torch::equal(samples[2].ignore, xyxy({2, 2, 4, 4})));
  // Without a "person" category every annotation counts; images relative to the JSON's folder.
  write_text(dir / "other.json", R"({"images": [{"id": 1, "file_name": "a.jpg"}],
    "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}, {"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}],
    "categories": [{"id": 3, "name": "pedestrian"}, {"id": 4, "name": "rider"}]})");
  const auto all = ex::read_detection_dataset("coco", dir / "other.json");
  DOCTEST_REQUIRE(all.size() == 1);
  DOCTEST_CHECK(all[0].image == (dir / "a.jpg").string());
  DOCTEST_CHECK(all[0].boxes.size(0) == 2);
  write_text(
      dir / "bad.json",
      R"({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "bbox": [1, 1, 1, 1]}]})");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_boxes(dir / "bad.json", dir), doctest::Contains("bad.json"),
                               std::runtime_error);
  write_text(dir / "corrupt.json", "{\"images\": [");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_boxes(dir / "corrupt.json", dir), doctest::Contains("corrupt.json"),
                               std::runtime_error);
}

TEST_CASE(
    "detection data: synthetic pedestrians are deterministic, in perspective, heavily occluded, with ignore regions") {
  ex::PedestrianOptions o;
  o.height = 160, o.width = 192;
  const auto a = ex::render_pedestrian_scene(3, o), b = ex::render_pedestrian_scene(3, o),
             c = ex::render_pedestrian_scene(4, o);
  DOCTEST_CHECK(torch::equal(a.image, b.image));
  DOCTEST_CHECK(torch::equal(a.boxes, b.boxes));
  DOCTEST_CHECK(torch::equal(a.ignore, b.ignore));
  DOCTEST_CHECK_FALSE(torch::equal(a.image, c.image));
  DOCTEST_CHECK(a.image.sizes() == at::IntArrayRef({160, 192, 3}));
  DOCTEST_CHECK((a.image.scalar_type() == torch::kUInt8));
  const int64_t n_images = 40;
  int64_t people = 0, fewest = 1 << 30, most = 0, overlapping = 0, with_ignore = 0;
  double ratio_in_image = 0, tallest = 0, shortest = 1e9;
  for (int64_t i = 0; i < n_images; ++i) {
    const auto s = ex::render_pedestrian_scene(i, o);
    const int64_t n = s.boxes.size(0);
    people += n;
    fewest = std::min(fewest, n);
    most = std::max(most, n);
    with_ignore += s.ignore.size(0) > 0;
    DOCTEST_CHECK(s.ignore.size(0) <= 2);
    for (const auto& boxes : {s.boxes, s.ignore}) {
      if (boxes.size(0) == 0) continue;
      DOCTEST_CHECK(boxes.min().item<float>() >= 0);
      DOCTEST_CHECK((boxes.select(1, 2) <= 192).all().item<bool>());
      DOCTEST_CHECK((boxes.select(1, 3) <= 160).all().item<bool>());
      DOCTEST_CHECK((boxes.select(1, 2) > boxes.select(1, 0)).all().item<bool>());
      DOCTEST_CHECK((boxes.select(1, 3) > boxes.select(1, 1)).all().item<bool>());
    }
    if (n == 0) continue;
    const auto h = s.boxes.select(1, 3) - s.boxes.select(1, 1),
               aspect = (s.boxes.select(1, 2) - s.boxes.select(1, 0)) / h;
    DOCTEST_CHECK(aspect.min().item<float>() >= 0.3f - 1e-4f);
    DOCTEST_CHECK(aspect.max().item<float>() <= 0.5f + 1e-4f);
    tallest = std::max(tallest, h.max().item<double>());
    shortest = std::min(shortest, h.min().item<double>());
    ratio_in_image = std::max(ratio_in_image, h.max().item<double>() / h.min().item<double>());
    if (n > 1) {
      auto m = iou(s.boxes, s.boxes);
      m.fill_diagonal_(0);
      overlapping += m.max().item<float>() > 0.5f;
    }
  }
  DOCTEST_MESSAGE("people/image " << static_cast<double>(people) / n_images << " (" << fewest << ".." << most
                                  << "), images with an IoU > 0.5 pair " << overlapping << "/" << n_images
                                  << ", with ignore regions " << with_ignore << ", height range " << tallest / shortest
                                  << " (in one image " << ratio_in_image << ")");
  DOCTEST_CHECK(fewest >= 1);
  DOCTEST_CHECK(most <= 40);
  DOCTEST_CHECK(static_cast<double>(people) / n_images >= 12);
  DOCTEST_CHECK(overlapping >= n_images / 2);  // CrowdHuman-like: heavily overlapping pairs in most images
  DOCTEST_CHECK(with_ignore >= n_images / 4);
  DOCTEST_CHECK(with_ignore < n_images);
  DOCTEST_CHECK(tallest / shortest >= 4.0);
  DOCTEST_CHECK(ratio_in_image >= 4.0);
}

TEST_CASE("detection data: the synthetic set is written in the CrowdHuman layout, read back exactly, and reused") {
  const auto dir = fixture_dir("pedestrians");
  ex::PedestrianOptions o;
  o.height = 96, o.width = 128, o.max_people = 12;
  const auto samples = ex::write_synthetic_pedestrians(dir, 4, o);
  DOCTEST_REQUIRE(samples.size() == 4);
  DOCTEST_CHECK(samples[2].image == (dir / "Images" / "000002.png").string());
  DOCTEST_CHECK(fs::exists(dir / "annotation.odgt"));
  DOCTEST_CHECK(fs::exists(dir / "synthetic.json"));
  for (int64_t i = 0; i < 4; ++i) {
    const auto scene = ex::render_pedestrian_scene(i, o);
    const auto& s = samples[static_cast<size_t>(i)];
    DOCTEST_CHECK(torch::equal(ex::load_image(s.image), scene.image));
    DOCTEST_CHECK(torch::equal(s.boxes, scene.boxes));
    DOCTEST_CHECK(torch::equal(s.ignore, scene.ignore));
  }
  const auto first_image = ex::load_image(samples[0].image);
  const auto stamp = fs::last_write_time(dir / "annotation.odgt");
  const auto again = ex::write_synthetic_pedestrians(dir, 4, o);  // same set: nothing rewritten
  DOCTEST_CHECK(fs::last_write_time(dir / "annotation.odgt") == stamp);
  DOCTEST_REQUIRE(again.size() == 4);
  DOCTEST_CHECK(torch::equal(again[1].boxes, samples[1].boxes));
  DOCTEST_CHECK(ex::read_detection_dataset("crowdhuman", dir / "annotation.odgt").size() == 4);
  // Another set asked for: an error naming the folder and each difference (nothing rewritten),
  // unless none was asked for explicitly (the set as it is) or the caller owns the folder.
  DOCTEST_CHECK_THROWS_WITH_AS(ex::write_synthetic_pedestrians(dir, 5, o),
                               doctest::Contains("count 4 where 5 was asked for"), std::runtime_error);
  o.seed = 2;
  DOCTEST_CHECK_THROWS_WITH_AS(
      ex::write_synthetic_pedestrians(dir, 3, o),
      doctest::Contains(
          (dir.string() + " already holds another synthetic set (count 4 where 3 was asked for, seed 1 where 2")
              .c_str()),
      std::runtime_error);
  DOCTEST_CHECK(ex::write_synthetic_pedestrians(dir, 3, o, ex::ExistingSet::kUseExisting).size() == 4);
  DOCTEST_CHECK(fs::last_write_time(dir / "annotation.odgt") == stamp);
  const auto other = ex::write_synthetic_pedestrians(dir, 3, o, ex::ExistingSet::kReplace);
  DOCTEST_REQUIRE(other.size() == 3);
  DOCTEST_CHECK(torch::equal(other[0].boxes, ex::render_pedestrian_scene(0, o).boxes));
  DOCTEST_CHECK_FALSE(torch::equal(ex::load_image(other[0].image), first_image));
  o.height = 8;
  DOCTEST_CHECK_THROWS_AS(ex::render_pedestrian_scene(0, o), std::invalid_argument);
}

TEST_CASE("detection data: box transforms follow the image under resize, flip, crop, padding and jitter") {
  const auto image = coordinate_image(40, 60);
  const auto boxes = xyxy({10, 5, 30, 25, 0, 0, 6, 8, 2, 0, 22, 10, 48, 28, 58, 40, 25, 28, 45, 31, 25, 28.5f, 45, 31});
  const auto ignore = xyxy({40, 10, 60, 40, 0, 35, 10, 40});
  const ex::BoxSample s{image, boxes, ignore};
  const auto r = ex::resize_longest(s, 120);
  DOCTEST_CHECK(r.image.sizes() == at::IntArrayRef({3, 80, 120}));
  DOCTEST_CHECK(torch::allclose(r.boxes, boxes * 2));
  DOCTEST_CHECK(torch::allclose(r.ignore, ignore * 2));
  const auto f = ex::hflip(s);
  DOCTEST_CHECK(torch::equal(f.image, image.flip({2})));
  DOCTEST_CHECK(torch::allclose(f.boxes.narrow(0, 0, 2), xyxy({30, 5, 50, 25, 54, 0, 60, 8})));
  DOCTEST_CHECK(torch::allclose(f.ignore, xyxy({0, 10, 20, 40, 50, 35, 60, 40})));
  const auto ff = ex::hflip(f);
  DOCTEST_CHECK(torch::equal(ff.image, image));
  DOCTEST_CHECK(torch::allclose(ff.boxes, boxes));
  DOCTEST_CHECK(torch::allclose(ff.ignore, ignore));
  // The window x in [20, 50), y in [0, 30): a box keeping half its area stays (clipped), one
  // keeping 10% or 3% goes, one keeping 60% but only 1.5 px high goes, one 2 px high stays;
  // an ignore region is clipped, one outside goes.
  const auto c = ex::crop(s, 0, 20, 30, 30);
  DOCTEST_CHECK(torch::equal(c.image, image.narrow(1, 0, 30).narrow(2, 20, 30)));
  DOCTEST_CHECK(torch::equal(c.boxes, xyxy({0, 5, 10, 25, 5, 28, 25, 30})));
  DOCTEST_CHECK(torch::equal(c.ignore, xyxy({20, 10, 30, 30})));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (int trial = 0; trial < 10; ++trial) {
    const auto rc = ex::random_crop(s, 24, 32, gen);
    DOCTEST_REQUIRE(rc.image.sizes() == at::IntArrayRef({3, 24, 32}));
    // The crop's top-left pixel tells where it was taken.
    const auto x0 = std::lround(rc.image[0][0][0].item<float>() * 1000),
               y0 = std::lround(rc.image[1][0][0].item<float>() * 1000);
    const auto expected = ex::crop(s, y0, x0, 24, 32);
    DOCTEST_CHECK(torch::equal(rc.boxes, expected.boxes));
    DOCTEST_CHECK(torch::equal(rc.ignore, expected.ignore));
  }
  const auto big = ex::random_crop(s, 48, 64, gen);  // larger than the image: padded, every box kept
  DOCTEST_CHECK(big.image.sizes() == at::IntArrayRef({3, 48, 64}));
  DOCTEST_CHECK(torch::equal(big.boxes, boxes));
  DOCTEST_CHECK(torch::equal(big.ignore, ignore));
  const auto p = ex::pad_to_multiple(s, 32);
  DOCTEST_CHECK(p.image.sizes() == at::IntArrayRef({3, 64, 64}));
  DOCTEST_CHECK(torch::equal(p.boxes, boxes));
  const auto j = ex::colour_jitter(s, 0.3, gen);
  DOCTEST_CHECK(torch::equal(j.boxes, boxes));
  DOCTEST_CHECK(torch::equal(j.ignore, ignore));
  // Empty sets of boxes pass through every transform.
  const ex::BoxSample e{image, torch::zeros({0, 4}), torch::zeros({0, 4})};
  DOCTEST_CHECK(ex::hflip(ex::random_crop(ex::resize_longest(e, 30), 16, 16, gen)).boxes.sizes() ==
                at::IntArrayRef({0, 4}));
}

TEST_CASE("detection data: loader batches have the documented shapes, boxes inside the crop") {
  const auto dir = fixture_dir("detection_loader");
  ex::PedestrianOptions po;
  po.height = 72, po.width = 100, po.max_people = 12;
  const auto samples = ex::write_synthetic_pedestrians(dir, 7, po);
  ex::DetectionLoaderOptions lo;
  lo.batch = 3, lo.crop = 48, lo.augment = true, lo.shuffle = true, lo.seed = 5, lo.workers = 3;
  const ex::DetectionLoader three(samples, lo);
  std::vector<ex::DetectionBatch> first;
  three.run_epoch(1, [&](int64_t, ex::DetectionBatch& b) { first.push_back(b); });
  DOCTEST_REQUIRE(first.size() == 3);
  for (const auto& b : first)
    for (size_t k = 0; k < b.boxes.size(); ++k) {
      const auto& bx = b.boxes[k];
      DOCTEST_CHECK(b.ignore[k].size(1) == 4);
      if (bx.size(0) > 0) {
        DOCTEST_CHECK(bx.min().item<float>() >= 0);
        DOCTEST_CHECK(bx.max().item<float>() <= 48);
      }
    }
  DOCTEST_CHECK(first[0].images.sizes() == at::IntArrayRef({3, 3, 64, 64}));  // 48×48 crops padded to 64
  const bool cropped = first[0].sizes[0] == std::array<int64_t, 2>{48, 48};
  DOCTEST_CHECK(cropped);
  DOCTEST_CHECK(first[0].boxes.size() == 3);
  DOCTEST_CHECK(first[2].images.size(0) == 1);
  DOCTEST_CHECK(first[2].files.size() == 1);
  // Evaluation: whole images in order, padded to the multiple, boxes as annotated.
  ex::DetectionLoaderOptions eo;
  eo.batch = 2;
  const ex::DetectionLoader eval(samples, eo);
  eval.run_epoch(0, [&](int64_t i, ex::DetectionBatch& b) {
    DOCTEST_CHECK(b.images.sizes() == at::IntArrayRef({b.images.size(0), 3, 96, 128}));
    for (size_t k = 0; k < b.files.size(); ++k) {
      const auto& s = samples[static_cast<size_t>(i * 2) + k];
      DOCTEST_CHECK(b.files[k] == s.image);
      DOCTEST_CHECK(torch::equal(b.boxes[k], s.boxes));
      DOCTEST_CHECK(torch::equal(b.ignore[k], s.ignore));
      const bool whole = b.sizes[k] == std::array<int64_t, 2>{72, 100};
      DOCTEST_CHECK(whole);
    }
  });
  eo.longest_side = 50;  // 72×100 → 36×50, boxes halved
  const auto half = ex::DetectionLoader(samples, eo).make_batch(0, 0);
  DOCTEST_CHECK(half.images.sizes() == at::IntArrayRef({2, 3, 64, 64}));
  const bool resized = half.sizes[1] == std::array<int64_t, 2>{36, 50};
  DOCTEST_CHECK(resized);
  DOCTEST_CHECK(torch::allclose(half.boxes[1], samples[1].boxes / 2));
  eo.multiple = 0;
  DOCTEST_CHECK_THROWS_AS(ex::DetectionLoader(samples, eo), std::invalid_argument);
  std::ofstream(samples[4].image) << "corrupt";
  const std::string corrupt = fs::path(samples[4].image).filename().string();
  DOCTEST_CHECK_THROWS_WITH_AS(three.run_epoch(0, [](int64_t, ex::DetectionBatch&) {}),
                               doctest::Contains(corrupt.c_str()), std::runtime_error);
}
