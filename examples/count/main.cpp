// crowdloss-count: train, evaluate and run crowd-counting models (CSRNet, SANet) with the
// crowdloss density losses, and the project's main job (`demo`).
//
//   crowdloss-count demo   [--out DIR] [--quick] [--seeds N] [--threads N]
//   crowdloss-count train  --data FORMAT:PATH --val FORMAT:PATH [--recipe pml|csrnet|sanet] [options]
//   crowdloss-count eval   --checkpoint DIR/best.pt --data FORMAT:PATH
//   crowdloss-count predict --checkpoint DIR/best.pt --out DIR IMAGE...
//
// FORMAT:PATH is synthetic:DIR (generated there if absent), coco:FILE.json, shanghaitech:DIR,
// qnrf:DIR, nwpu:DIR or jhu:DIR.
#include "cli.hpp"
#include "report.hpp"
#include "synthetic.hpp"
#include "trainer.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <thread>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kFormats = {"synthetic", "coco", "shanghaitech", "qnrf", "nwpu", "jhu"};

/// The data set `spec`: a synthetic one is generated with `synthetic_count` images unless its
/// folder holds one, which is used as it is (another count is an error when `count_given`).
std::vector<ex::CrowdSample> load_data(const ex::DataSpec& spec, int64_t synthetic_count, bool count_given,
                                       const ex::SyntheticOptions& synthetic, ex::BadSamples& bad, bool allow_outside) {
  if (spec.format == "synthetic")
    return ex::write_synthetic_dataset(spec.path, synthetic_count, synthetic,
                                       count_given ? ex::ExistingSet::kError : ex::ExistingSet::kUseExisting);
  return ex::read_dataset(spec.format, spec.path, {}, &bad, allow_outside);
}

// The main job: the same narrow CSRNet trained with pixel L2 and with PML (+ pixel L2) on the
// synthetic crowd set under the same budget, each checkpoint chosen on a validation set and
// reported on a separate test set, against the predict-the-mean baseline; with `seeds` > 1, once
// per seed 1…seeds (initial weights, data order and augmentation; the same scenes), reported as
// mean ± standard deviation.
constexpr const char* kQuickNote =
    "\n--quick: a smoke run that only checks that everything runs (2 epochs on 16 scenes); its numbers say\n"
    "nothing about the losses. The full demo (without --quick) is the comparison.\n";

int demo(const fs::path& out, bool quick, int64_t seeds) {
  const auto start = std::chrono::steady_clock::now();
  ex::SyntheticOptions syn;  // 256×256 scenes, 0–2,000 heads
  const int64_t n_train = quick ? 16 : 320, n_val = quick ? 4 : 40, n_test = quick ? 4 : 80;
  std::cout << "crowdloss " << CROWDLOSS_VERSION_STRING << " counting demo (LibTorch " << TORCH_VERSION << ", "
            << at::get_num_threads() << " threads)\n";
  std::cout << "Synthetic crowds (" << syn.height << "x" << syn.width << ", 0-" << syn.max_count
            << " heads each): " << n_train << " training, " << n_val << " validation and " << n_test
            << " test scenes in " << (out / "data").string() << "\n";
  const auto split = [&](const char* name, int64_t count, uint64_t seed) {
    auto o = syn;
    o.seed = seed;
    return ex::write_synthetic_dataset(out / "data" / name, count, o, ex::ExistingSet::kReplace);
  };
  const auto train_set = split("train", n_train, 1), val_set = split("val", n_val, 1001),
             test_set = split("test", n_test, 2001);

  ex::TrainConfig c;
  c.model = ex::CountModel::kCSRNet, c.width = 0.25, c.optimizer = ex::Optimizer::kAdamW, c.lr = 1e-3;
  c.weight_decay = 1e-6, c.schedule = ex::Schedule::kCosine;
  c.epochs = quick ? 2 : 20, c.cosine_t_max = c.epochs, c.min_lr = 1e-5, c.batch = 8, c.crop = 128, c.clip = 10;
  c.workers = 2;
  std::cout << "Model: CSRNet at width " << c.width << " (channels / 4: the paper's network is too slow to train on a"
            << " CPU in minutes), from scratch, " << c.epochs << " epochs of 128x128 crops, batch " << c.batch
            << ", AdamW " << c.lr << " with cosine decay; the same budget and seed for both losses"
            << (seeds > 1 ? " (seeds 1-" + std::to_string(seeds) + ")" : std::string()) << "; the epoch with"
            << " the best validation MAE is kept.\n"
            << (quick ? kQuickNote : "") << "\n";
  const auto mean_of = [](const std::vector<ex::CrowdSample>& set) {
    double s = 0;
    for (const auto& x : set) s += static_cast<double>(x.points.size(0));
    return s / static_cast<double>(set.size());
  };
  const double mean = mean_of(train_set), n = static_cast<double>(test_set.size());
  double base_abs = 0, base_sq = 0;
  for (const auto& s : test_set) {
    const double e = static_cast<double>(s.points.size(0)) - mean;
    base_abs += std::abs(e), base_sq += e * e;
  }
  // One run per loss and seed: the test metrics of its best checkpoint.
  struct Run {
    ex::Metrics test;
    int64_t epoch;
    double seconds;
  };
  const std::vector<std::pair<ex::CountLoss, std::string>> losses = {
      {ex::CountLoss::kL2, "pixel L2 (mse_loss)"}, {ex::CountLoss::kPML, "PML + pixel L2 (crowdloss)"}};
  std::vector<std::vector<Run>> runs(losses.size());
  ex::LoaderOptions test_options;
  test_options.batch = 1;
  const ex::Loader test_loader(test_set, test_options);
  std::vector<ex::CountingModel> models;  // each loss's best checkpoint of seed 1
  for (int64_t seed = 1; seed <= seeds; ++seed)
    for (size_t i = 0; i < losses.size(); ++i) {
      c.loss = losses[i].first, c.seed = static_cast<uint64_t>(seed);
      const std::string name = ex::name_of(c.loss);
      const auto dir = seeds == 1 ? out / name : out / ("seed" + std::to_string(seed)) / name;
      std::cout << "training with " << losses[i].second
                << (seeds > 1 ? ", seed " + std::to_string(seed) : std::string()) << "\n";
      const auto t0 = std::chrono::steady_clock::now();
      const auto best = ex::train(c, train_set, val_set, dir, ex::ExistingRun::kOverwrite);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto model = ex::load_model(dir / "best.pt", "cpu");
      runs[i].push_back({ex::evaluate(model, test_loader, torch::kCPU), best.epoch, seconds});
      if (seed == 1) models.push_back(std::move(model));
    }
  // Three test scenes side by side: image | ground truth (adaptive kernels) | L2 | PML.
  for (size_t i = 0; i < std::min<size_t>(3, test_set.size()); ++i) {
    // Every panel on the ground truth's colour scale, so that a faint prediction looks faint.
    const auto image = ex::load_image(test_set[i].image);
    const int64_t H = image.size(0), W = image.size(1);
    const auto truth =
        crowdloss::points_to_density(test_set[i].points, H, W, crowdloss::PointsToDensityOptions().adaptive(true));
    const double scale = ex::overlay_scale(truth, H, W);
    std::vector<at::Tensor> panels = {image, ex::density_overlay(image, truth, scale)};
    torch::NoGradGuard no_grad;
    const auto x = ex::normalize(ex::to_chw_float(image)).unsqueeze(0);
    for (auto& m : models) panels.push_back(ex::density_overlay(image, m.module.forward(x)[0][0], scale));
    ex::save_png((out / ("test_scene" + std::to_string(i) + ".png")).string(), torch::cat(panels, 1));
  }

  // The table: one seed as it is; several as mean ± standard deviation, with each seed's MAE.
  ex::Table table;
  nlohmann::json json = {{"demo", "count"},
                         {"quick", quick},
                         {"seeds", seeds},
                         {"test_scenes", test_set.size()},
                         {"test_mean_count", mean_of(test_set)},
                         {"baseline", {{"mae", base_abs / n}, {"rmse", std::sqrt(base_sq / n)}}}};
  const auto joined = [](const std::vector<Run>& rs, const std::function<std::string(const Run&)>& cell) {
    std::string s;
    for (const auto& r : rs) s += (s.empty() ? "" : ", ") + cell(r);
    return s;
  };
  const auto spread = [&](const std::vector<Run>& rs, double ex::Metrics::*field) {
    std::vector<double> v;
    for (const auto& r : rs) v.push_back(r.test.*field);
    const auto [m, sd] = ex::mean_std(v);
    return ex::fixed(m, 1) + " ± " + ex::fixed(sd, 1);
  };
  if (seeds == 1) {
    table.header = {"method", "test MAE", "test RMSE", "best epoch", "train time"};
    table.rows.push_back(
        {"predict the training mean", ex::fixed(base_abs / n, 1), ex::fixed(std::sqrt(base_sq / n), 1), "–", "–"});
  } else {
    table.header = {"method",
                    "test MAE, mean ± std",
                    "test RMSE, mean ± std",
                    "test MAE per seed",
                    "best epoch per seed",
                    "train time per seed"};
    table.rows.push_back(
        {"predict the training mean", ex::fixed(base_abs / n, 1), ex::fixed(std::sqrt(base_sq / n), 1), "–", "–", "–"});
  }
  for (size_t i = 0; i < losses.size(); ++i) {
    const auto& rs = runs[i];
    double seconds = 0;
    for (const auto& r : rs) seconds += r.seconds;
    const std::string time = ex::fixed(seconds / static_cast<double>(rs.size()), 0) + " s";
    if (seeds == 1)
      table.rows.push_back({losses[i].second, ex::fixed(rs[0].test.mae, 1), ex::fixed(rs[0].test.rmse, 1),
                            std::to_string(rs[0].epoch), time});
    else
      table.rows.push_back({losses[i].second, spread(rs, &ex::Metrics::mae), spread(rs, &ex::Metrics::rmse),
                            joined(rs, [](const Run& r) { return ex::fixed(r.test.mae, 1); }),
                            joined(rs, [](const Run& r) { return std::to_string(r.epoch); }), time});
    auto& j = json["losses"][ex::name_of(losses[i].first)];
    j["name"] = losses[i].second;
    for (const auto& r : rs)
      j["runs"].push_back({{"test_mae", r.test.mae},
                           {"test_rmse", r.test.rmse},
                           {"best_epoch", r.epoch},
                           {"train_seconds", r.seconds}});
  }
  std::string notes = "Test counting error on " + std::to_string(test_set.size()) + " synthetic scenes (mean count " +
                      ex::fixed(mean_of(test_set), 1) + "); lower is better.";
  if (seeds > 1) {
    int64_t mae_wins = 0, rmse_wins = 0;
    for (int64_t s = 0; s < seeds; ++s) {
      mae_wins += runs[1][s].test.mae < runs[0][s].test.mae;
      rmse_wins += runs[1][s].test.rmse < runs[0][s].test.rmse;
    }
    notes += " Seeds 1–" + std::to_string(seeds) +
             " (initial weights, data order and augmentation; the same scenes): PML + pixel L2 has" +
             " the lower test MAE with " + std::to_string(mae_wins) + " of " + std::to_string(seeds) +
             " seeds and the lower RMSE with " + std::to_string(rmse_wins) + ".";
  }
  if (quick) notes += " --quick: a smoke run, its numbers mean nothing.";
  std::string command = "crowdloss-count demo";
  if (quick) command += " --quick";
  if (seeds > 1) command += " --seeds " + std::to_string(seeds);
  const std::string md = ex::write_results(out, command, table, notes, json);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "\n%s\nAlso in %s/results.md and results.json. Test scenes as image | ground truth | L2 | PML (seed 1), each\n"
      "panel labelled with its count and coloured on the ground truth's scale: %s/test_scene*.png\n"
      "Per-epoch metrics: %s/%s{l2,pml}/metrics.jsonl. Total time %.0f s.\n",
      md.c_str(), out.string().c_str(), out.string().c_str(), out.string().c_str(), seeds > 1 ? "seed*/" : "", total);
  if (quick) std::printf("%s", kQuickNote);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CLI::App app{"crowdloss-count: crowd counting with the crowdloss density losses"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  std::string out = "crowdloss-results", data, val, checkpoint, device = "cpu";
  auto amp = ex::Amp::kOff;
  bool quick = false, resume = false, overwrite = false, skip_bad = false, allow_outside = false;
  double max_megapixels = static_cast<double>(ex::max_image_pixels()) / 1e6;
  // A recipe sets the defaults that explicit options then override, so find it first.
  std::string recipe_name = "pml";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--recipe" && i + 1 < argc) recipe_name = argv[i + 1];
    if (a.rfind("--recipe=", 0) == 0) recipe_name = a.substr(9);
  }
  ex::TrainConfig c;
  auto recipe = ex::Recipe::kPML;
  try {
    recipe = ex::parse_choice<ex::Recipe>(recipe_name);
    c = ex::recipe(recipe);
  } catch (const std::exception& e) {
    std::cerr << "crowdloss-count: " << e.what() << "\n";
    return 2;
  }
  int64_t synthetic_count = 400;
  std::vector<std::string> images;

  auto* demo_cmd = app.add_subcommand("demo", "generate the synthetic set, train with L2 and with PML, compare");
  demo_cmd->add_option("--out", out, "results folder");
  demo_cmd->add_flag("--quick", quick, "a smoke run on a tiny budget (for tests): its numbers mean nothing");
  int64_t seeds = 1, threads = at::get_num_threads();
  demo_cmd->add_option("--seeds", seeds, "train each loss with seeds 1..N and report mean ± standard deviation");
  demo_cmd->add_option("--threads", threads, "LibTorch's threads (the results depend on it; default: the cores)");

  auto* train_cmd = app.add_subcommand("train", "train a counting model");
  ex::add_choice_option(*train_cmd, recipe, "the papers' settings, applied before the other options");
  const auto formats =
      "FORMAT:PATH, FORMAT one of " + ex::join(kFormats) + " (synthetic:DIR is generated there if absent)";
  train_cmd->add_option("--data", data, "training set, " + formats)->required();
  train_cmd->add_option("--val", val, "validation set, " + formats)->required();
  train_cmd->add_option("--out", out, "output folder (checkpoints, metrics.jsonl)");
  ex::add_choice_option(*train_cmd, c.model, "the counting model");
  train_cmd->add_option("--width", c.width, "CSRNet channel multiplier in (0, 1]");
  ex::add_choice_option(*train_cmd, c.loss, "the training objective");
  ex::add_choice_option(*train_cmd, c.optimizer, "the optimizer");
  train_cmd->add_option("--lr", c.lr, "learning rate (the cosine schedule's start)");
  train_cmd->add_option("--weight-decay", c.weight_decay, "the optimizer's weight decay");
  ex::add_choice_option(*train_cmd, c.schedule, "the learning-rate schedule");
  train_cmd->add_option("--t-max", c.cosine_t_max, "cosine period in epochs");
  train_cmd->add_option("--min-lr", c.min_lr, "end of the cosine schedule");
  train_cmd->add_option("--clip", c.clip, "gradient-norm clip (0: off)");
  train_cmd->add_option("--epochs", c.epochs, "epochs to train (with --resume: in all)");
  train_cmd->add_option("--batch", c.batch, "images per training batch");
  train_cmd->add_option("--crop", c.crop, "random square crop side (0: whole images)");
  train_cmd->add_option("--longest-side", c.longest_side, "resize so the longer side is this (0: keep)");
  train_cmd->add_option("--workers", c.workers, "threads decoding and augmenting images, beside the training thread");
  train_cmd->add_option("--seed", c.seed, "seed of the weights, the shuffling and the augmentation");
  train_cmd->add_option("--device", c.device, "cpu | cuda");
  ex::add_choice_option(*train_cmd, c.amp, "mixed precision (fp16: CUDA, with dynamic loss scaling)");
  train_cmd->add_option("--vgg-weights", c.vgg_weights, "torchvision VGG-16 state dict for the CSRNet front end");
  train_cmd->add_option("--synthetic-count", synthetic_count,
                        "images to generate for synthetic:DIR sets (validation: a quarter); without it, a set already "
                        "in DIR is used as it is");
  ex::add_run_folder_flags(*train_cmd, resume, overwrite);
  ex::add_bad_data_options(
      *train_cmd, skip_bad,
      "leave out images and annotations that cannot be read, with a warning naming each, and count them", allow_outside,
      max_megapixels);
  train_cmd->footer(ex::kFaultsHelp);

  auto* eval_cmd = app.add_subcommand("eval", "MAE and RMSE of a checkpoint on a dataset");
  eval_cmd->add_option("--checkpoint", checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  eval_cmd->add_option("--data", data, formats)->required();
  eval_cmd->add_option("--device", device, "cpu | cuda");
  ex::add_choice_option(*eval_cmd, amp, "mixed precision");
  ex::add_bad_data_options(*eval_cmd, skip_bad,
                           "leave out images and annotations that cannot be read, with a warning naming each",
                           allow_outside, max_megapixels);

  auto* predict_cmd = app.add_subcommand("predict", "count images and write density overlays");
  predict_cmd->add_option("--checkpoint", checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  predict_cmd->add_option("--out", out, "folder for the overlay PNGs");
  predict_cmd->add_option("--device", device, "cpu | cuda");
  ex::add_max_megapixels_option(*predict_cmd, max_megapixels);
  predict_cmd->add_option("images", images, "image files")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    const ex::SyntheticOptions syn;
    ex::BadSamples bad(skip_bad);
    ex::set_max_megapixels(max_megapixels);
    if (*demo_cmd) {
      ex::check_value(seeds >= 1, "--seeds", seeds, ">= 1");
      ex::set_demo_threads(threads);
      return demo(out, quick, seeds);
    }
    if (*train_cmd) {
      // Every option is checked before any file is read or written.
      ex::check_config(c);
      if (resume) c = ex::resumed(c, out, [&](const std::string& key) { return ex::given_option(*train_cmd, key); });
      const bool count_given = train_cmd->count("--synthetic-count") > 0;
      const auto [train_set, val_set] = ex::load_train_and_val(
          data, val, kFormats, synthetic_count, syn, [&](const ex::DataSpec& spec, int64_t count, const auto& o) {
            return load_data(spec, count, count_given, o, bad, allow_outside);
          });
      const auto best =
          ex::train(c, train_set, val_set, out, ex::existing_run(resume, overwrite), /*quiet=*/false, &bad);
      std::printf("best validation MAE %.2f RMSE %.2f; checkpoints in %s\n", best.mae, best.rmse, out.c_str());
    } else if (*eval_cmd) {
      const auto spec = ex::parse_data_spec("--data", data, kFormats);
      ex::check_device(device);
      ex::amp_dtype(amp, torch::Device(device));
      auto model = ex::load_model(checkpoint, device);
      ex::LoaderOptions lo;
      lo.batch = 1, lo.stride = std::max<int64_t>(model.stride, 8), lo.bad = &bad;
      const auto set = load_data(spec, synthetic_count, /*count_given=*/false, syn, bad, allow_outside);
      ex::check_not_empty("--data", data, set.size());
      const auto m =
          ex::evaluate(model, ex::Loader(set, lo), torch::Device(device), ex::amp_dtype(amp, torch::Device(device)));
      std::printf("MAE %.2f RMSE %.2f\n", m.mae, m.rmse);
    } else if (*predict_cmd) {
      ex::check_device(device);
      auto model = ex::load_model(checkpoint, device);
      fs::create_directories(out);
      torch::NoGradGuard no_grad;
      for (const auto& path : images) {
        const auto image = ex::load_image(path);
        const auto x = ex::pad_to_multiple({ex::to_chw_float(image), torch::zeros({0, 2})}, 8).image;
        const auto density = model.module.forward(ex::normalize(x).unsqueeze(0).to(torch::Device(device)))[0][0].cpu();
        const auto png = (fs::path(out) / (fs::path(path).stem().string() + "_density.png")).string();
        ex::save_png(png, ex::density_overlay(image, density));
        std::printf("%s: %.1f people, density overlay %s\n", path.c_str(), density.sum().item<double>(), png.c_str());
      }
    }
    if (skip_bad) std::printf("%s\n", bad.summary().c_str());
  } catch (const std::exception& e) {
    std::cerr << "crowdloss-count: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
