#pragma once
// crowdloss-count's main job, `crowdloss-count demo`: the same narrow CSRNet trained with pixel
// L2, with PML (+ pixel L2) and with DM-Count (from the head points) on the synthetic crowd set,
// compared on held-out scenes.
#include "program.hpp"
#include "report.hpp"
#include "synthetic.hpp"
#include "trainer.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace crowdloss_examples {

constexpr const char* kCountQuickNote =
    "\n--quick: a smoke run that only checks that everything runs (2 epochs on 16 scenes); its numbers say\n"
    "nothing about the losses. The full demo (without --quick) is the comparison.\n";

/// Runs the demo with its results in `out`: the three losses under the same budget, each checkpoint
/// chosen on a validation set and reported on a separate test set, against the predict-the-mean
/// baseline; with `seeds` > 1, once per seed 1…seeds (initial weights, data order and
/// augmentation; the same scenes), reported as mean ± standard deviation. `quick`: the smoke run.
inline int count_demo(const std::filesystem::path& out, bool quick, int64_t seeds) {
  const DemoFrame frame("counting", quick, kCountQuickNote);
  SyntheticOptions syn;  // 256×256 scenes, 0–2,000 heads
  const int64_t n_train = quick ? 16 : 320, n_val = quick ? 4 : 40, n_test = quick ? 4 : 80;
  std::cout << "Synthetic crowds (" << syn.height << "x" << syn.width << ", 0-" << syn.max_count
            << " heads each): " << n_train << " training, " << n_val << " validation and " << n_test
            << " test scenes in " << (out / "data").string() << "\n";
  const auto [train_set, val_set, test_set] = frame.splits(out, {n_train, n_val, n_test}, syn, write_synthetic_dataset);

  TrainConfig c;
  c.model = CountModel::kCSRNet, c.width = 0.25, c.optimizer = Optimizer::kAdamW, c.lr = 1e-3;
  c.weight_decay = 1e-6, c.schedule = Schedule::kCosine;
  c.epochs = quick ? 2 : 20, c.cosine_t_max = c.epochs, c.min_lr = 1e-5, c.batch = 8, c.crop = 128, c.clip = 10;
  c.workers = 2;
  std::cout << "Model: CSRNet at width " << c.width << " (channels / 4: the paper's network is too slow to train on a"
            << " CPU in minutes), from scratch, " << c.epochs << " epochs of 128x128 crops, batch " << c.batch
            << ", AdamW " << c.lr << " with cosine decay; the same budget and seed for every loss"
            << (seeds > 1 ? " (seeds 1-" + std::to_string(seeds) + ")" : std::string()) << "; the epoch with"
            << " the best validation MAE is kept.\n"
            << frame.quick_note() << "\n";
  const auto mean_of = [](const std::vector<CrowdSample>& set) {
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
    Metrics test;
    int64_t epoch;
    double seconds;
  };
  const std::vector<std::pair<CountLoss, std::string>> losses = {{CountLoss::kL2, "pixel L2 (mse_loss)"},
                                                                 {CountLoss::kPML, "PML + pixel L2 (crowdloss)"},
                                                                 {CountLoss::kDMCount, "DM-Count (crowdloss)"}};
  std::vector<std::vector<Run>> runs(losses.size());
  LoaderOptions test_options;
  test_options.batch = 1;
  const Loader test_loader(test_set, test_options);
  std::vector<CountingModel> models;  // each loss's best checkpoint of seed 1
  for (int64_t seed = 1; seed <= seeds; ++seed)
    for (size_t i = 0; i < losses.size(); ++i) {
      c.loss = losses[i].first, c.seed = static_cast<uint64_t>(seed);
      const std::string name = name_of(c.loss);
      const auto dir = seeds == 1 ? out / name : out / ("seed" + std::to_string(seed)) / name;
      std::cout << "training with " << losses[i].second
                << (seeds > 1 ? ", seed " + std::to_string(seed) : std::string()) << "\n";
      const auto t0 = std::chrono::steady_clock::now();
      const auto best = train(c, train_set, val_set, dir, ExistingRun::kOverwrite);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto model = load_model(dir / "best.pt", "cpu");
      runs[i].push_back({evaluate(model, test_loader, torch::kCPU), best.epoch, seconds});
      if (seed == 1) models.push_back(std::move(model));
    }
  // Three test scenes side by side: image | ground truth (adaptive kernels) | L2 | PML | DM-Count.
  for (size_t i = 0; i < std::min<size_t>(3, test_set.size()); ++i) {
    // Every panel on the ground truth's colour scale, so that a faint prediction looks faint.
    const auto image = load_image(test_set[i].image);
    const int64_t H = image.size(0), W = image.size(1);
    const auto truth =
        crowdloss::points_to_density(test_set[i].points, H, W, crowdloss::PointsToDensityOptions().adaptive(true));
    const double scale = overlay_scale(truth, H, W);
    std::vector<at::Tensor> panels = {image, density_overlay(image, truth, scale)};
    torch::NoGradGuard no_grad;
    const auto x = normalize(to_chw_float(image)).unsqueeze(0);
    for (auto& m : models) panels.push_back(density_overlay(image, m.forward(x)[0][0], scale));
    save_png((out / ("test_scene" + std::to_string(i) + ".png")).string(), torch::cat(panels, 1));
  }

  // The table: one seed as it is; several as mean ± standard deviation, with each seed's MAE.
  Table table;
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
  const auto spread = [&](const std::vector<Run>& rs, double Metrics::*field) {
    std::vector<double> v;
    for (const auto& r : rs) v.push_back(r.test.*field);
    const auto [m, sd] = mean_std(v);
    return fixed(m, 1) + " ± " + fixed(sd, 1);
  };
  if (seeds == 1) {
    table.header = {"method", "test MAE", "test RMSE", "best epoch", "train time"};
    table.rows.push_back(
        {"predict the training mean", fixed(base_abs / n, 1), fixed(std::sqrt(base_sq / n), 1), "–", "–"});
  } else {
    table.header = {"method",
                    "test MAE, mean ± std",
                    "test RMSE, mean ± std",
                    "test MAE per seed",
                    "best epoch per seed",
                    "train time per seed"};
    table.rows.push_back(
        {"predict the training mean", fixed(base_abs / n, 1), fixed(std::sqrt(base_sq / n), 1), "–", "–", "–"});
  }
  for (size_t i = 0; i < losses.size(); ++i) {
    const auto& rs = runs[i];
    double seconds = 0;
    for (const auto& r : rs) seconds += r.seconds;
    const std::string time = fixed(seconds / static_cast<double>(rs.size()), 0) + " s";
    if (seeds == 1)
      table.rows.push_back(
          {losses[i].second, fixed(rs[0].test.mae, 1), fixed(rs[0].test.rmse, 1), std::to_string(rs[0].epoch), time});
    else
      table.rows.push_back({losses[i].second, spread(rs, &Metrics::mae), spread(rs, &Metrics::rmse),
                            joined(rs, [](const Run& r) { return fixed(r.test.mae, 1); }),
                            joined(rs, [](const Run& r) { return std::to_string(r.epoch); }), time});
    auto& j = json["losses"][name_of(losses[i].first)];
    j["name"] = losses[i].second;
    for (const auto& r : rs)
      j["runs"].push_back({{"test_mae", r.test.mae},
                           {"test_rmse", r.test.rmse},
                           {"best_epoch", r.epoch},
                           {"train_seconds", r.seconds}});
  }
  std::string notes = "Test counting error on " + std::to_string(test_set.size()) + " synthetic scenes (mean count " +
                      fixed(mean_of(test_set), 1) + "); lower is better.";
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
  const std::string folder = out.string() + (seeds > 1 ? "/seed*" : "");
  return frame.finish(
      out, command, table, notes, json,
      "Test scenes as image | ground truth | L2 | PML | DM-Count (seed 1), each\npanel labelled with its count "
      "and "
      "coloured on the ground truth's scale: " +
          out.string() + "/test_scene*.png",
      "Per-epoch metrics: " + folder + "/{l2,pml,dm-count}/metrics.jsonl.");
}

}  // namespace crowdloss_examples
