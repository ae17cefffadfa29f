#include "support/checks.hpp"

#include "fixtures.hpp"

#include "datasets.hpp"
#include "image_io.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;
using crowdloss_examples_test::read_text;
using crowdloss_examples_test::write_image;
using crowdloss_examples_test::write_text;

namespace {

at::Tensor pts(std::vector<float> xy) { return torch::tensor(xy).view({-1, 2}); }

#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
// A MATLAB v5 file with one N×2 double array `name`, optionally wrapped as ShanghaiTech does:
// image_info = {struct('location', points, 'number', N)}.
void write_mat(const fs::path& path, const std::string& name, const std::vector<double>& xy, bool shanghaitech,
               bool compress = false) {
  const auto compression = compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
  fs::create_directories(path.parent_path());
  const size_t n = xy.size() / 2;
  std::vector<double> column_major(xy.size());
  for (size_t i = 0; i < n; ++i) column_major[i] = xy[2 * i], column_major[n + i] = xy[2 * i + 1];
  mat_t* mat = Mat_CreateVer(path.string().c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  size_t dims[2] = {n, 2}, one[2] = {1, 1};
  matvar_t* points = Mat_VarCreate(shanghaitech ? "location" : name.c_str(), MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims,
                                   column_major.data(), 0);
  if (shanghaitech) {
    const char* fields[] = {"location"};
    matvar_t* info = Mat_VarCreateStruct(nullptr, 2, one, fields, 1);
    Mat_VarSetStructFieldByName(info, "location", 0, points);
    matvar_t* cell = Mat_VarCreate(name.c_str(), MAT_C_CELL, MAT_T_CELL, 2, one, nullptr, 0);
    Mat_VarSetCell(cell, 0, info);
    Mat_VarWrite(mat, cell, compression);
    Mat_VarFree(cell);
  } else {
    Mat_VarWrite(mat, points, compression);
    Mat_VarFree(points);
  }
  Mat_Close(mat);
}
#endif

}  // namespace

TEST_CASE("image_io: PNG round trip, sizes, and errors that name the file") {
  const auto dir = fixture_dir("image_io");
  const auto image = torch::randint(0, 256, {5, 7, 3}).to(torch::kUInt8);
  ex::save_png((dir / "a.png").string(), image);
  DOCTEST_CHECK(torch::equal(ex::load_image((dir / "a.png").string()), image));
  DOCTEST_CHECK(ex::image_size((dir / "a.png").string()) == std::array<int64_t, 2>{5, 7});
  DOCTEST_CHECK_THROWS_WITH_AS(ex::load_image((dir / "missing.jpg").string()), doctest::Contains("missing.jpg"),
                               std::runtime_error);
  write_text(dir / "corrupt.jpg", "not an image");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::load_image((dir / "corrupt.jpg").string()), doctest::Contains("corrupt.jpg"),
                               std::runtime_error);
}

TEST_CASE("read_coco_points: points at bbox centres, images without heads kept, errors name the file") {
  const auto dir = fixture_dir("coco");
  write_text(dir / "ann.json", R"({"images": [{"id": 7, "file_name": "b.jpg"}, {"id": 3, "file_name": "a.jpg"}],
    "annotations": [{"id": 1, "image_id": 3, "bbox": [10, 20, 4, 6]}, {"id": 2, "image_id": 3, "bbox": [0, 0, 0, 0]}],
    "categories": [{"id": 1, "name": "person"}]})");
  const auto samples = ex::read_coco_points(dir / "ann.json", dir / "imgs");
  REQUIRE(samples.size() == 2);
  DOCTEST_CHECK(samples[0].image == (dir / "imgs" / "a.jpg").string());
  DOCTEST_CHECK(torch::equal(samples[0].points, pts({12, 23, 0, 0})));
  DOCTEST_CHECK(samples[1].points.sizes() == at::IntArrayRef({0, 2}));
  write_text(
      dir / "bad.json",
      R"({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "bbox": [1, 1, 1, 1]}]})");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_points(dir / "bad.json", dir), doctest::Contains("bad.json"),
                               std::runtime_error);
  write_text(dir / "corrupt.json", "{\"images\": [");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_points(dir / "corrupt.json", dir), doctest::Contains("corrupt.json"),
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_points(dir / "absent.json", dir), doctest::Contains("absent.json"),
                               std::runtime_error);
}

TEST_CASE("read_nwpu: images/<id>.jpg with jsons/<id>.json points") {
  const auto dir = fixture_dir("nwpu");
  write_image(dir / "images" / "0002.jpg");
  write_image(dir / "images" / "0001.jpg");
  write_text(dir / "jsons" / "0001.json", R"({"img_id": "0001.jpg", "human_num": 2, "points": [[1.5, 2.5], [3, 4]]})");
  write_text(dir / "jsons" / "0002.json", R"({"img_id": "0002.jpg", "human_num": 0, "points": []})");
  const auto samples = ex::read_nwpu(dir);
  REQUIRE(samples.size() == 2);
  DOCTEST_CHECK(fs::path(samples[0].image).filename() == "0001.jpg");
  DOCTEST_CHECK(torch::equal(samples[0].points, pts({1.5, 2.5, 3, 4})));
  DOCTEST_CHECK(samples[1].points.size(0) == 0);
  write_text(dir / "jsons" / "0002.json", R"({"points": [[1, 2, 3]]})");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_nwpu(dir), doctest::Contains("0002.json"), std::runtime_error);
  fs::remove(dir / "jsons" / "0002.json");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_nwpu(dir), doctest::Contains("0002.json"), std::runtime_error);
}

TEST_CASE("read_jhu: gt/<id>.txt lines 'x y w h o b'") {
  const auto dir = fixture_dir("jhu");
  write_image(dir / "images" / "0001.jpg");
  write_image(dir / "images" / "0002.jpg");
  write_text(dir / "gt" / "0001.txt", "10 20 4 4 1 0\n30.5 40 6 6 2 1\n\n");
  write_text(dir / "gt" / "0002.txt", "");
  const auto samples = ex::read_jhu(dir);
  REQUIRE(samples.size() == 2);
  DOCTEST_CHECK(torch::equal(samples[0].points, pts({10, 20, 30.5, 40})));
  DOCTEST_CHECK(samples[1].points.size(0) == 0);
  write_text(dir / "gt" / "0002.txt", "1 2 3\n");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_jhu(dir), doctest::Contains("0002.txt:1"), std::runtime_error);
}

TEST_CASE("read_shanghaitech and read_ucf_qnrf: MATLAB annotations") {
  const auto dir = fixture_dir("mat");
#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
  write_image(dir / "sha" / "images" / "IMG_1.jpg");
  write_mat(dir / "sha" / "ground-truth" / "GT_IMG_1.mat", "image_info", {5, 6, 7.25, 8}, true);
  const auto sha = ex::read_shanghaitech(dir / "sha");
  REQUIRE(sha.size() == 1);
  DOCTEST_CHECK(torch::equal(sha[0].points, pts({5, 6, 7.25, 8})));
  write_image(dir / "qnrf" / "img_0001.jpg");
  write_mat(dir / "qnrf" / "img_0001_ann.mat", "annPoints", {1, 2, 3, 4, 5, 6}, false);
  const auto qnrf = ex::read_ucf_qnrf(dir / "qnrf");
  REQUIRE(qnrf.size() == 1);
  DOCTEST_CHECK(torch::equal(qnrf[0].points, pts({1, 2, 3, 4, 5, 6})));
  // A wrong variable name and a file that is not MATLAB at all.
  write_mat(dir / "qnrf" / "img_0001_ann.mat", "points", {1, 2}, false);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_ucf_qnrf(dir / "qnrf"), doctest::Contains("annPoints"), std::runtime_error);
  write_text(dir / "sha" / "ground-truth" / "GT_IMG_1.mat", "garbage");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_shanghaitech(dir / "sha"), doctest::Contains("GT_IMG_1.mat"),
                               std::runtime_error);
  // Compressed (MATLAB 7) files: checked through their inflated contents.
  write_mat(dir / "sha" / "ground-truth" / "GT_IMG_1.mat", "image_info", {5, 6, 7.25, 8}, true, /*compress=*/true);
  DOCTEST_CHECK(torch::equal(ex::read_shanghaitech(dir / "sha").at(0).points, pts({5, 6, 7.25, 8})));
  write_mat(dir / "qnrf" / "img_0001_ann.mat", "annPoints", {1, 2, 3, 4}, false, /*compress=*/true);
  DOCTEST_CHECK(torch::equal(ex::read_ucf_qnrf(dir / "qnrf").at(0).points, pts({1, 2, 3, 4})));
  // Sizes a file cannot hold are refused before libmatio allocates for them (a fuzzer's 448-byte
  // file declared a 1×1,761,607,681 cell array: 14 GB of element pointers). The image_info cell's
  // second dimension is at byte 164 of an uncompressed little-endian file.
  const auto mat = dir / "sha" / "ground-truth" / "GT_IMG_1.mat";
  write_mat(mat, "image_info", {5, 6, 7.25, 8}, true);
  auto bytes = read_text(mat);
  REQUIRE(bytes.substr(126, 2) == "IM");
  const uint32_t huge = 1761607681;
  std::memcpy(&bytes[164], &huge, 4);
  write_text(mat, bytes);
  DOCTEST_CHECK_THROWS_WITH_AS(
      ex::read_shanghaitech(dir / "sha"),
      doctest::Contains((mat.string() + ": a damaged MATLAB file (an array declares 1761607681 elements in").c_str()),
      std::runtime_error);
  // A data element longer than the file, and a file too short for the header.
  bytes = read_text(mat);
  const uint32_t long_element = 1u << 30;
  std::memcpy(&bytes[132], &long_element, 4);
  write_text(mat, bytes);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_shanghaitech(dir / "sha"), doctest::Contains("more than it has room for"),
                               std::runtime_error);
  write_text(mat, "MATLAB 5.0");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_shanghaitech(dir / "sha"),
                               doctest::Contains("shorter than its 128-byte header"), std::runtime_error);
#else
  MESSAGE("built without libmatio: checking that the .mat readers say so");
  write_image(dir / "sha" / "images" / "IMG_1.jpg");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_shanghaitech(dir / "sha"), doctest::Contains("libmatio"), std::runtime_error);
#endif
}

TEST_CASE("to_coco: converted annotations read back to the same points") {
  const auto dir = fixture_dir("convert");
  write_image(dir / "images" / "0001.jpg", 10, 12);
  write_text(dir / "gt" / "0001.txt", "3 4 1 1 0 0\n5.5 6.5 1 1 0 0\n");
  const auto samples = ex::read_jhu(dir);
  const auto json = ex::to_coco(samples, {ex::image_size(samples[0].image)}, dir);
  DOCTEST_CHECK(json.at("images").at(0).at("height") == 10);
  DOCTEST_CHECK(json.at("images").at(0).at("file_name") == "images/0001.jpg");
  write_text(dir / "coco.json", json.dump());
  const auto back = ex::read_dataset("coco", dir / "coco.json");
  REQUIRE(back.size() == 1);
  DOCTEST_CHECK(back[0].image == samples[0].image);
  DOCTEST_CHECK(torch::equal(back[0].points, samples[0].points));
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_dataset("voc", dir), doctest::Contains("voc"), std::runtime_error);
}
