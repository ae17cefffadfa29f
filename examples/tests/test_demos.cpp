#include "support/checks.hpp"

#include "fixtures.hpp"

#include "count/demo.hpp"
#include "detect/demo.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;

namespace {

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<std::string> methods_of(const nlohmann::json& rows) {
  std::vector<std::string> m;
  for (const auto& r : rows) m.push_back(r.at("method").get<std::string>());
  return m;
}

}  // namespace

TEST_CASE("demo plans: the CPU plans train the CPU-sized models, the GPU plans the papers' full-size ones") {
  const auto cpu = ex::count_demo_plan("cpu", false);
  DOCTEST_CHECK(cpu.scenes.height == 256);
  DOCTEST_CHECK(cpu.sizes == std::array<int64_t, 3>{320, 40, 80});
  REQUIRE(cpu.runs.size() == 3);
  for (const auto& r : cpu.runs) {
    DOCTEST_CHECK(r.config.width == 0.25);
    DOCTEST_CHECK(r.config.epochs == 20);
    DOCTEST_CHECK(r.method == ex::name_of(r.config.loss));  // the folders the committed results name
  }

  const auto gpu = ex::count_demo_plan("cuda", false);
  DOCTEST_CHECK(gpu.scenes.height == 512);
  DOCTEST_CHECK(gpu.scenes.width == 512);
  REQUIRE(gpu.runs.size() == 4);
  const std::vector<std::string> methods = {"l2", "pml", "sanet-l2", "sanet-loss"};
  const std::vector<ex::CountLoss> losses = {ex::CountLoss::kL2, ex::CountLoss::kPML, ex::CountLoss::kL2,
                                             ex::CountLoss::kSANet};
  for (size_t i = 0; i < gpu.runs.size(); ++i) {
    auto c = gpu.runs[i].config;
    CAPTURE(gpu.runs[i].method);
    DOCTEST_CHECK(gpu.runs[i].method == methods[i]);
    DOCTEST_CHECK(c.loss == losses[i]);
    DOCTEST_CHECK(c.model == (i < 2 ? ex::CountModel::kCSRNet : ex::CountModel::kSANet));
    DOCTEST_CHECK(c.width == 1.0);
    DOCTEST_CHECK(c.amp == ex::Amp::kBF16);
    DOCTEST_CHECK(c.device == "cuda");
    DOCTEST_CHECK(c.crop == 256);
    // The recipe's optimiser and learning rate: the PML paper's for CSRNet, SANet's for SANet.
    const auto r = ex::recipe(i < 2 ? ex::Recipe::kPML : ex::Recipe::kSANet);
    DOCTEST_CHECK(c.optimizer == r.optimizer);
    DOCTEST_CHECK(c.lr == r.lr);
    c.device = "cpu", c.amp = ex::Amp::kOff;
    DOCTEST_CHECK_NOTHROW(ex::check_config(c));
  }
  DOCTEST_CHECK(gpu.runs[1].versus == "l2");
  DOCTEST_CHECK(gpu.runs[3].versus == "sanet-l2");

  const auto detect_cpu = ex::detect_demo_plan("cpu", false);
  DOCTEST_CHECK(detect_cpu.config.backbone == "resnet18");
  DOCTEST_CHECK(detect_cpu.scenes.height == 256);
  const auto detect_gpu = ex::detect_demo_plan("cuda:0", false);
  DOCTEST_CHECK(detect_gpu.config.backbone == "resnet50");
  DOCTEST_CHECK(detect_gpu.config.width == 1.0);
  DOCTEST_CHECK(detect_gpu.config.fpn_channels == 256);
  DOCTEST_CHECK(detect_gpu.config.amp == ex::Amp::kBF16);
  DOCTEST_CHECK(detect_gpu.config.device == "cuda:0");
  DOCTEST_CHECK(detect_gpu.scenes.height == 512);
  auto c = detect_gpu.config;
  c.device = "cpu", c.amp = ex::Amp::kOff;
  DOCTEST_CHECK_NOTHROW(ex::check_config(c));
}

// The GPU plans' code paths, shrunk to run on the CPU in seconds: the full-size models on small
// scenes, one epoch, two seeds for the counting demo (its comparison notes).
TEST_CASE("demo: the GPU counting plan runs end to end, shrunk to the CPU") {
  auto plan = ex::count_demo_plan("cuda", true);
  plan.scenes.height = plan.scenes.width = 96, plan.scenes.max_count = 40;
  plan.sizes = {4, 2, 2};
  for (auto& r : plan.runs) {
    auto& c = r.config;
    c.device = "cpu", c.amp = ex::Amp::kOff, c.crop = 64, c.batch = 2, c.epochs = 1, c.cosine_t_max = 1, c.workers = 1;
  }
  const auto out = fixture_dir("demo_count_gpu_plan");
  REQUIRE(ex::count_demo(out, plan, "cpu", /*quick=*/true, /*seeds=*/2) == 0);
  const auto json = read_json(out / "results.json");
  DOCTEST_CHECK(methods_of(json.at("rows")) == std::vector<std::string>{"l2", "pml", "sanet-l2", "sanet-loss"});
  for (const auto& r : json.at("rows")) {
    DOCTEST_CHECK(std::isfinite(r.at("mae").get<double>()));
    DOCTEST_CHECK(std::isfinite(r.at("rmse").get<double>()));
    DOCTEST_CHECK(r.at("seconds").get<double>() > 0);
  }
  DOCTEST_CHECK(json.at("provenance").at("device") == "cpu");
  std::ifstream md(out / "results.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  DOCTEST_CHECK(text.find("| SANet, SANet loss (crowdloss) |") != std::string::npos);
  DOCTEST_CHECK(text.find("SANet, SANet loss (crowdloss) has a lower test MAE than SANet, pixel L2 (mse_loss) with") !=
                std::string::npos);
  DOCTEST_CHECK(text.find("CSRNet, PML + pixel L2 (crowdloss) has a lower test MAE than CSRNet, pixel L2 (mse_loss)") !=
                std::string::npos);
  for (const auto& m : {"l2", "pml", "sanet-l2", "sanet-loss"})
    DOCTEST_CHECK(fs::exists(out / "seed2" / m / "best.pt"));
  DOCTEST_CHECK(fs::exists(out / "test_scene0.png"));
}

TEST_CASE("demo: the GPU detection plan runs end to end, shrunk to the CPU") {
  auto plan = ex::detect_demo_plan("cuda", true);
  plan.scenes.height = plan.scenes.width = 128;
  plan.sizes = {4, 2, 2};
  plan.config.device = "cpu", plan.config.amp = ex::Amp::kOff, plan.config.batch = 2, plan.config.workers = 1;
  const auto out = fixture_dir("demo_detect_gpu_plan");
  REQUIRE(ex::detect_demo(out, plan, "cpu", /*quick=*/true) == 0);
  const auto json = read_json(out / "results.json");
  DOCTEST_CHECK(methods_of(json.at("rows")) == std::vector<std::string>{"fcos", "poto", "poto-3dmf-aux", "lla"});
  for (const auto& r : json.at("rows")) {
    for (const auto& key : {"ap50", "mmr", "recall"}) {
      const double v = r.at(key).get<double>();
      DOCTEST_CHECK(v >= 0);
      DOCTEST_CHECK(v <= 1);
    }
    DOCTEST_CHECK(r.at("seconds").get<double>() > 0);
  }
  const auto checkpoint = ex::checkpoint_config_of<ex::DetectConfig>(out / "lla" / "best.pt", "crowdloss-detect");
  DOCTEST_CHECK(checkpoint.backbone == "resnet50");
  DOCTEST_CHECK(checkpoint.fpn_channels == 256);
}
