#include "support/checks.hpp"

#include "fixtures.hpp"

#include "detect_trainer.hpp"
#include "synthetic.hpp"
#include "trainer.hpp"

#include <cstdlib>
#include <filesystem>
#include <string>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using crowdloss_examples_test::fixture_dir;
using crowdloss_examples_test::read_metrics;

namespace {

std::vector<ex::CrowdSample> tiny_set(const fs::path& dir, int64_t count, uint64_t seed) {
  return crowdloss_examples_test::small_synthetic_set(dir, count, 64, 64, 150, seed);
}

ex::TrainConfig tiny_count_config(ex::CountLoss loss) {
  ex::TrainConfig c;
  c.model = ex::CountModel::kCSRNet, c.width = 0.125, c.loss = loss, c.optimizer = ex::Optimizer::kAdamW, c.lr = 1e-3;
  c.schedule = ex::Schedule::kCosine;
  c.cosine_t_max = 8, c.epochs = 8, c.batch = 2, c.crop = 64, c.workers = 2, c.seed = 3, c.clip = 10;
  return c;
}

}  // namespace

TEST_CASE("train: a short run lowers the loss, and it writes metrics and checkpoints") {
  const auto dir = fixture_dir("train_short");
  const auto train = tiny_set(dir / "train", 12, 1), val = tiny_set(dir / "val", 4, 2);
  // The training images, whole and un-augmented, as one fixed batch to measure the loss on.
  ex::LoaderOptions fixed;
  fixed.batch = 12;
  const auto batch = ex::Loader(train, fixed).make_batch(0, 0);
  for (const auto loss : {ex::CountLoss::kL2, ex::CountLoss::kPML, ex::CountLoss::kDMCount, ex::CountLoss::kBayesian}) {
    INFO("loss " << ex::name_of(loss));
    const auto out = dir / ex::name_of(loss);
    const auto c = tiny_count_config(loss);
    const auto loss_of = [&](ex::CountingModel& m) {
      torch::NoGradGuard no_grad;
      return ex::count_loss(loss, m.forward(batch.images), batch, m.stride).item<double>();
    };

    torch::manual_seed(c.seed);  // the initial weights train() starts from
    auto initial = ex::make_model(c);
    const auto result = ex::train(c, train, val, out, ex::ExistingRun::kRefuse, /*quiet=*/true);
    auto trained = ex::load_model(out / "last.pt", "cpu");
    const double before = loss_of(initial), after = loss_of(trained);
    MESSAGE(loss << " loss on the training images: " << before << " -> " << after << " after 8 epochs");
    DOCTEST_CHECK(after < before);
    const auto lines = read_metrics(out);
    REQUIRE(lines.size() == 8);
    DOCTEST_CHECK(fs::exists(out / "last.pt"));
    DOCTEST_CHECK(fs::exists(out / "best.pt"));
    DOCTEST_CHECK_FALSE(fs::exists(out / "last.pt.tmp"));
    // The best checkpoint evaluates to the best validation MAE of the log, and train() returns
    // that MAE and its epoch.
    double best = 1e30;
    int64_t best_epoch = 0;
    for (const auto& l : lines)
      if (l.at("val_mae").get<double>() < best)
        best = l.at("val_mae").get<double>(), best_epoch = l.at("epoch").get<int64_t>();
    DOCTEST_CHECK(result.mae == best);
    DOCTEST_CHECK(result.epoch == best_epoch);
    auto model = ex::load_model(out / "best.pt", "cpu");
    ex::LoaderOptions lo;
    lo.batch = 1;
    DOCTEST_CHECK(ex::evaluate(model, ex::Loader(val, lo), torch::kCPU).mae == doctest::Approx(best).epsilon(1e-6));
  }
}

TEST_CASE("train: stopping after an epoch and resuming equals an uninterrupted run") {
  const auto dir = fixture_dir("train_resume");
  const auto train = tiny_set(dir / "train", 8, 3), val = tiny_set(dir / "val", 3, 4);
  auto c = tiny_count_config(ex::CountLoss::kPML);
  c.epochs = 3, c.cosine_t_max = 3;
  ex::train(c, train, val, dir / "straight", ex::ExistingRun::kRefuse, true);
  auto first = c;
  first.epochs = 1;  // "killed" after epoch 1: only its checkpoint survives
  ex::train(first, train, val, dir / "resumed", ex::ExistingRun::kRefuse, true);
  ex::train(c, train, val, dir / "resumed", ex::ExistingRun::kResume, true);
  auto a = ex::load_model(dir / "straight" / "last.pt", "cpu"), b = ex::load_model(dir / "resumed" / "last.pt", "cpu");
  DOCTEST_CHECK(crowdloss_examples_test::different_tensors(*a.ptr, *b.ptr).empty());
  const auto ma = read_metrics(dir / "straight"), mb = read_metrics(dir / "resumed");
  REQUIRE(ma.size() == 3);
  REQUIRE(mb.size() == 3);
  for (size_t e = 0; e < 3; ++e) {
    DOCTEST_CHECK(ma[e].at("train_loss") == mb[e].at("train_loss"));
    DOCTEST_CHECK(ma[e].at("val_mae") == mb[e].at("val_mae"));
  }
}

TEST_CASE("train: --deterministic sets the backends' switches, is saved, and a CPU run trains the same weights") {
  const auto dir = fixture_dir("train_deterministic");
  const auto switches_on = [] {
    const auto& context = at::globalContext();
    return context.deterministicAlgorithms() && context.deterministicCuDNN() && !context.benchmarkCuDNN();
  };
  // Counting (PML, CSRNet) and detection (POTO + 3DMF + aux, LLA): every op of their steps has a
  // deterministic CPU implementation (one without would throw here).
  const auto train = tiny_set(dir / "train", 4, 7), val = tiny_set(dir / "val", 2, 8);
  auto c = tiny_count_config(ex::CountLoss::kPML);
  c.epochs = 2, c.cosine_t_max = 2, c.deterministic = true;
  ex::train(c, train, val, dir / "on", ex::ExistingRun::kRefuse, true);
  DOCTEST_CHECK(switches_on());
  DOCTEST_CHECK(std::string(std::getenv("CUBLAS_WORKSPACE_CONFIG")) == ":4096:8");
  DOCTEST_CHECK(ex::checkpoint_config(dir / "on" / "last.pt").deterministic);
  c.deterministic = false;
  ex::train(c, train, val, dir / "off", ex::ExistingRun::kRefuse, true);
  DOCTEST_CHECK_FALSE(at::globalContext().deterministicAlgorithms());
  auto a = ex::load_model(dir / "on" / "last.pt", "cpu"), b = ex::load_model(dir / "off" / "last.pt", "cpu");
  DOCTEST_CHECK(crowdloss_examples_test::different_tensors(*a.ptr, *b.ptr).empty());

  const auto people = crowdloss_examples_test::small_pedestrian_set(dir / "people", 4, 96, 96, 8, 9);
  for (const auto mode : {ex::AssignMode::kPOTO3DMFAux, ex::AssignMode::kLLA}) {
    ex::DetectConfig d;
    d.assign = mode, d.backbone = "resnet18", d.width = 0.25, d.fpn_channels = 32, d.lr = 1e-3, d.warmup = 1;
    d.epochs = 1, d.batch = 2, d.workers = 2, d.seed = 2, d.clip = 10;
    const auto name = std::string(ex::name_of(mode));
    d.deterministic = true;
    ex::train_detector(d, people, people, dir / (name + "-on"), ex::ExistingRun::kRefuse, true);
    DOCTEST_CHECK(switches_on());
    d.deterministic = false;
    ex::train_detector(d, people, people, dir / (name + "-off"), ex::ExistingRun::kRefuse, true);
    auto [on, on_config] = ex::load_detector(dir / (name + "-on") / "last.pt", "cpu");
    auto [off, off_config] = ex::load_detector(dir / (name + "-off") / "last.pt", "cpu");
    INFO(name);
    DOCTEST_CHECK(on_config.deterministic);
    DOCTEST_CHECK(crowdloss_examples_test::different_tensors(*on, *off).empty());
  }
}

TEST_CASE("recipes, learning-rate schedule, overlays") {
  const auto pml = ex::recipe(ex::Recipe::kPML);
  DOCTEST_CHECK(pml.optimizer == ex::Optimizer::kAdamW);
  DOCTEST_CHECK(pml.lr == 1e-4);
  DOCTEST_CHECK(pml.weight_decay == 1e-6);
  DOCTEST_CHECK(pml.cosine_t_max == 150);
  DOCTEST_CHECK(pml.clip == 10);
  DOCTEST_CHECK(pml.batch == 8);
  DOCTEST_CHECK(pml.longest_side == 1024);
  DOCTEST_CHECK(ex::learning_rate(pml, 0) == doctest::Approx(1e-4));
  DOCTEST_CHECK(ex::learning_rate(pml, 75) == doctest::Approx((1e-4 + 1e-7) / 2));
  DOCTEST_CHECK(ex::learning_rate(pml, 150) == doctest::Approx(1e-7));
  DOCTEST_CHECK(ex::recipe(ex::Recipe::kSANet).loss == ex::CountLoss::kSANet);
  DOCTEST_CHECK(ex::recipe(ex::Recipe::kSANet).lr == 1e-5);
  DOCTEST_CHECK(ex::recipe(ex::Recipe::kCSRNet).loss == ex::CountLoss::kEuclidean);
  DOCTEST_CHECK(ex::parse_choice<ex::Recipe>("csrnet") == ex::Recipe::kCSRNet);
  const auto dm_count = ex::recipe(ex::parse_choice<ex::Recipe>("dm-count"));  // DM-Count's train.py
  DOCTEST_CHECK(dm_count.loss == ex::CountLoss::kDMCount);
  DOCTEST_CHECK(dm_count.optimizer == ex::Optimizer::kAdam);
  DOCTEST_CHECK(dm_count.lr == 1e-5);
  DOCTEST_CHECK(dm_count.weight_decay == 1e-4);
  DOCTEST_CHECK(dm_count.batch == 10);
  DOCTEST_CHECK(dm_count.crop == 512);
  DOCTEST_CHECK(ex::learning_rate(dm_count, 500) == 1e-5);
  const auto bayesian = ex::recipe(ex::parse_choice<ex::Recipe>("bayesian"));  // Bayesian-Crowd-Counting's train.py
  DOCTEST_CHECK(bayesian.loss == ex::CountLoss::kBayesian);
  DOCTEST_CHECK(bayesian.optimizer == ex::Optimizer::kAdam);
  DOCTEST_CHECK(bayesian.lr == 1e-5);
  DOCTEST_CHECK(bayesian.weight_decay == 1e-4);
  DOCTEST_CHECK(bayesian.batch == 1);
  DOCTEST_CHECK(bayesian.crop == 512);
  DOCTEST_CHECK(ex::learning_rate(bayesian, 500) == 1e-5);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::Recipe>("yolo"),
                               "unknown --recipe 'yolo' (pml, csrnet, sanet, dm-count, bayesian)", std::runtime_error);
}

TEST_CASE("config: each choice is parsed from its name once, names the option otherwise, and is saved as its name") {
  DOCTEST_CHECK(ex::parse_choice<ex::CountLoss>("euclidean") == ex::CountLoss::kEuclidean);
  DOCTEST_CHECK(std::string(ex::name_of(ex::CountModel::kSANet)) == "sanet");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::CountLoss>("l1"),
                               "unknown --loss 'l1' (l2, pml, sanet, euclidean, dm-count, bayesian)",
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::CountModel>("mcnn"), "unknown --model 'mcnn' (csrnet, sanet)",
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::Optimizer>("lion"), "unknown --optimizer 'lion' (adamw, adam, sgd)",
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::Schedule>("step"), "unknown --schedule 'step' (cosine, constant)",
                               std::runtime_error);
  auto c = ex::recipe(ex::Recipe::kCSRNet);
  nlohmann::json j = c;
  DOCTEST_CHECK(j.at("loss") == "euclidean");
  DOCTEST_CHECK(j.at("optimizer") == "sgd");
  j["loss"] = "l1";  // a damaged configuration
  DOCTEST_CHECK_THROWS_WITH_AS(j.get<ex::TrainConfig>(),
                               "unknown --loss 'l1' (l2, pml, sanet, euclidean, dm-count, bayesian)",
                               std::runtime_error);
}

TEST_CASE_TEMPLATE("config: JSON keeps every saved setting, and a key a checkpoint lacks takes the default", Config,
                   ex::TrainConfig, ex::DetectConfig) {
  Config c;
  c.width = 0.5, c.lr = 0.25, c.epochs = 3, c.seed = 12345678901234ull, c.amp = ex::Amp::kBF16;
  const nlohmann::json j = c;
  DOCTEST_CHECK(j.at("lr") == 0.25);
  DOCTEST_CHECK(j.at("seed") == 12345678901234ull);
  DOCTEST_CHECK(j.contains(Config::kIdentifyingKey));
  DOCTEST_CHECK(j.at("amp") == "bf16");                 // choices are stored by name
  DOCTEST_CHECK(nlohmann::json(j.get<Config>()) == j);  // every saved field reads back
  auto old = j;
  old.erase("amp");  // a checkpoint from before --amp existed
  old.erase("lr");
  const auto read = old.get<Config>();
  DOCTEST_CHECK(read.amp == Config().amp);
  DOCTEST_CHECK(read.lr == Config().lr);
  DOCTEST_CHECK(read.epochs == 3);
}

TEST_CASE("trainer: check_config rejects each bad option, naming it and its value, before anything is touched") {
  DOCTEST_CHECK_NOTHROW(ex::check_config(ex::recipe(ex::Recipe::kPML)));
  const auto rejects = [](const std::function<void(ex::TrainConfig&)>& change, const std::string& message) {
    auto c = ex::recipe(ex::Recipe::kPML);
    change(c);
    try {
      ex::check_config(c);
      FAIL("accepted a configuration that should fail with: " << message);
    } catch (const std::runtime_error& e) {
      DOCTEST_CHECK(std::string(e.what()).find(message) != std::string::npos);
    }
  };
  rejects([](ex::TrainConfig& c) { c.amp = ex::Amp::kFP16; }, "--amp fp16 needs --device cuda");
  rejects([](ex::TrainConfig& c) { c.device = "tpu"; }, "unknown --device 'tpu'");
  rejects([](ex::TrainConfig& c) { c.width = 1.5; }, "--width must be in (0, 1], got 1.5");
  rejects([](ex::TrainConfig& c) { c.lr = 0; }, "--lr must be > 0, got 0");
  rejects([](ex::TrainConfig& c) { c.epochs = 0; }, "--epochs must be >= 1, got 0");
  rejects([](ex::TrainConfig& c) { c.batch = -2; }, "--batch must be >= 1, got -2");
  rejects([](ex::TrainConfig& c) { c.workers = 0; }, "--workers must be >= 1, got 0");
  DOCTEST_CHECK(ex::parse_data_spec("--data", "coco:a:b.json", {"coco"}).path == "a:b.json");
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_data_spec("--val", "cocoo:x", {"synthetic", "coco"}),
                               "unknown --val format 'cocoo' (synthetic, coco)", std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_data_spec("--data", "train.json", {"coco"}),
                               "--data: expected FORMAT:PATH with FORMAT one of coco, got 'train.json'",
                               std::runtime_error);
}

TEST_CASE("trainer: density overlays show people per pixel on a shared scale, labelled with the count") {
  const auto image = torch::full({40, 60, 3}, 100, torch::kUInt8);
  // Nothing to draw: the image with its count.
  DOCTEST_CHECK(ex::density_overlay(image, torch::zeros({5, 6})).equal(ex::label_image(image, "0.0")));
  // One person per pixel, as a stride-10 map (100 per cell) or a full-resolution one.
  const auto coarse = torch::full({4, 6}, 100.0f), fine = torch::ones({40, 60});
  DOCTEST_CHECK(ex::density_per_pixel(coarse, 40, 60).allclose(torch::ones({40, 60})));
  DOCTEST_CHECK(ex::overlay_scale(fine, 40, 60) == doctest::Approx(1.0));
  DOCTEST_CHECK(ex::density_overlay(image, coarse, 1.0).equal(ex::density_overlay(image, fine, 1.0)));
  // On the ground truth's scale a faint prediction stays faint; on its own it would be full colour.
  const auto faint = torch::full({4, 6}, 0.1f);                                           // 0.001 people per pixel
  const auto below = [](const at::Tensor& t) { return t.slice(0, 21).to(torch::kInt); };  // under the label
  DOCTEST_CHECK((below(ex::density_overlay(image, faint, 1.0)) - below(image)).abs().max().item<int>() <= 1);
  DOCTEST_CHECK((below(ex::density_overlay(image, faint)) - below(image)).abs().max().item<int>() > 50);
  // The label: "1" in the 3×5 font at scale 1, one pixel of margin, on black.
  const auto one = ex::label_image(torch::full({8, 8, 3}, 100, torch::kUInt8), "1", 1);
  DOCTEST_CHECK(one[1][2][0].item<int>() == 255);  // the top of the 1
  DOCTEST_CHECK(one[1][1][0].item<int>() == 0);
  DOCTEST_CHECK(one[5][1][0].item<int>() == 255);  // its foot
  DOCTEST_CHECK(one[5][3][0].item<int>() == 255);
  DOCTEST_CHECK(one[7][7][0].item<int>() == 100);  // outside the label
}

TEST_CASE("amp: AutocastGuard turns autocast on for its scope, nests, and restores the previous state") {
  using ex::autocast_enabled;
  using ex::AutocastGuard;
  for (const auto device : {c10::kCPU, c10::kCUDA}) {  // only thread-local flags: no CUDA needed
    INFO("device " << device);
    const auto dtype_before = ex::autocast_dtype(device);
    DOCTEST_REQUIRE_FALSE(autocast_enabled(device));
    {
      AutocastGuard outer(device, at::kBFloat16);
      DOCTEST_CHECK(autocast_enabled(device));
      DOCTEST_CHECK((ex::autocast_dtype(device) == at::kBFloat16));
      {
        AutocastGuard inner(device, at::kBFloat16, /*enabled=*/false);
        DOCTEST_CHECK_FALSE(autocast_enabled(device));
      }
      DOCTEST_CHECK(autocast_enabled(device));
    }
    DOCTEST_CHECK_FALSE(autocast_enabled(device));
    DOCTEST_CHECK((ex::autocast_dtype(device) == dtype_before));
  }
  // On the CPU the guard really changes what a matmul computes in.
  const auto a = torch::rand({4, 4});
  {
    AutocastGuard guard(c10::kCPU, at::kBFloat16);
    DOCTEST_CHECK((torch::mm(a, a).scalar_type() == at::kBFloat16));
  }
  DOCTEST_CHECK((torch::mm(a, a).scalar_type() == at::kFloat));
  crowdloss_test::check_error([] { AutocastGuard guard(c10::kMeta, at::kHalf); }, {"autocast", "meta"});
}

TEST_CASE("amp: the loss scaler unscales, skips overflowing steps, backs off and grows") {
  auto p = torch::ones({3}, torch::requires_grad());
  ex::LossScaler scaler(true, 1024.0, /*growth_interval=*/2);
  scaler.scale((p * 2).sum()).backward();
  DOCTEST_CHECK(scaler.unscale_and_check({p}));
  DOCTEST_CHECK(torch::allclose(p.grad(), torch::full({3}, 2.0)));  // 1024·2, unscaled
  p.mutable_grad().zero_();
  scaler.scale((p * std::numeric_limits<float>::max()).sum()).backward();  // overflows to inf
  DOCTEST_CHECK_FALSE(scaler.unscale_and_check({p}));
  DOCTEST_CHECK(scaler.current_scale() == 512.0);
  DOCTEST_CHECK(scaler.good_steps() == 0);
  for (int i = 0; i < 2; ++i) {
    p.mutable_grad().zero_();
    scaler.scale(p.sum()).backward();
    DOCTEST_CHECK(scaler.unscale_and_check({p}));
  }
  DOCTEST_CHECK(scaler.current_scale() == 1024.0);  // two good steps in a row: doubled
  ex::LossScaler off(false);
  DOCTEST_CHECK(off.scale(torch::ones({})).item<double>() == 1.0);

  DOCTEST_CHECK_FALSE(ex::amp_dtype(ex::Amp::kOff, torch::kCPU).has_value());
  DOCTEST_CHECK((ex::amp_dtype(ex::Amp::kBF16, torch::kCPU) == at::kBFloat16));
  DOCTEST_CHECK_THROWS_WITH_AS(ex::amp_dtype(ex::Amp::kFP16, torch::kCPU), doctest::Contains("--device cuda"),
                               std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::parse_choice<ex::Amp>("fp8"),
                               doctest::Contains("unknown --amp 'fp8' (off, bf16, fp16)"), std::runtime_error);
}

TEST_CASE("amp: training under bf16 autocast runs the model in bf16 and lowers the loss") {
  const auto dir = fixture_dir("train_amp");
  const auto train = tiny_set(dir / "train", 8, 5), val = tiny_set(dir / "val", 2, 6);
  auto c = tiny_count_config(ex::CountLoss::kPML);
  c.amp = ex::Amp::kBF16, c.epochs = 4, c.cosine_t_max = 4;
  {
    auto m = ex::make_model(c);
    ex::AmpScope scope(torch::kCPU, at::kBFloat16);
    DOCTEST_CHECK((m.module.forward(torch::rand({1, 3, 32, 32})).scalar_type() == at::kBFloat16));
  }
  ex::train(c, train, val, dir / "out", ex::ExistingRun::kRefuse, true);
  const auto lines = read_metrics(dir / "out");
  REQUIRE(lines.size() == 4);
  DOCTEST_CHECK(lines.back().at("amp").at("dtype") == "BFloat16");
  DOCTEST_CHECK(lines.back().at("train_loss").get<double>() < lines.front().at("train_loss").get<double>());
  DOCTEST_CHECK(ex::checkpoint_config(dir / "out" / "last.pt").amp == ex::Amp::kBF16);
}

TEST_CASE("make_model: the Bayesian loss's models end in |·| and start from a positive output bias") {
  for (const auto model : {ex::CountModel::kCSRNet, ex::CountModel::kSANet}) {
    INFO("model " << ex::name_of(model));
    auto c = tiny_count_config(ex::CountLoss::kBayesian);
    c.model = model;
    torch::manual_seed(1);
    auto m = ex::make_model(c);
    c.loss = ex::CountLoss::kL2;
    torch::manual_seed(1);
    auto plain = ex::make_model(c);
    const auto bias = model == ex::CountModel::kCSRNet ? m.ptr->as<ex::CSRNetImpl>()->output->bias
                                                       : m.ptr->as<ex::SANetImpl>()->output_bias();
    DOCTEST_CHECK(torch::all(bias == ex::kAbsOutputBias).item<bool>());
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({1, 3, 32, 32});
    const auto y = m.forward(x), z = plain.forward(x);
    DOCTEST_CHECK(y.min().item<double>() >= 0);
    // Only the output bias differs from the L2 model of the same seed: CSRNet's density is that
    // model's output shifted by the bias, under |·|; SANet's final ReLU comes before |·|, so its
    // density is relu(a + bias) where the other's is relu(a): at most the bias above it.
    if (model == ex::CountModel::kCSRNet) {
      DOCTEST_CHECK(torch::allclose(y, (z + ex::kAbsOutputBias).abs()));
    } else {
      DOCTEST_CHECK((y - z).min().item<double>() >= 0);
      DOCTEST_CHECK((y - z).max().item<double>() <= ex::kAbsOutputBias * (1 + 1e-5));
    }
    DOCTEST_CHECK(y.mean().item<double>() > 0.5 * ex::kAbsOutputBias);
  }
}
