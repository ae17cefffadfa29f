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

/// One training run of the counting demo: a row of its table.
struct CountDemoRun {
  std::string method;  // its name in results.json and its folder: l2, pml, dm-count, sanet-l2, sanet-loss
  std::string label;   // its name in the table
  std::string versus;  // the method it is compared with over several seeds ("": none)
  TrainConfig config;
};

/// What `crowdloss-count demo` trains where: the scenes, the number of training, validation and
/// test scenes, the runs (each with the same seed and budget as the others on its model) and the
/// paragraph that describes them.
struct CountDemoPlan {
  SyntheticOptions scenes;
  std::array<int64_t, 3> sizes{};
  std::vector<CountDemoRun> runs;
  std::string description;
};

/// The demo's plan on `device` ("cpu", or "cuda" / "cuda:N"), `quick`: the smoke run's budget.
/// - On the CPU: a narrow CSRNet (width 0.25) from scratch on 256² scenes with 128² crops, 20
///   epochs of AdamW 1e-3 with cosine decay, trained with pixel L2, with PML + pixel L2 and with
///   DM-Count: a network small enough to train in minutes on two cores.
/// - On a GPU: the papers' full-size models on 512² scenes with 256² crops, bf16 autocast: CSRNet
///   (width 1) with the PML paper's recipe (AdamW 1e-4, cosine decay over the run), trained with
///   PML + pixel L2 and with pixel L2; SANet with SANet's recipe (Adam 1e-5), trained with the
///   SANet loss (L2 + 0.001·(1 − SSIM)) and with pixel L2. 24 epochs of 400 scenes each, a budget
///   chosen to finish within 4 minutes on an H200.
inline CountDemoPlan count_demo_plan(const std::string& device, bool quick) {
  CountDemoPlan plan;
  if (!torch::Device(device).is_cuda()) {
    plan.sizes = {quick ? 16 : 320, quick ? 4 : 40, quick ? 4 : 80};
    TrainConfig c;
    c.model = CountModel::kCSRNet, c.width = 0.25, c.optimizer = Optimizer::kAdamW, c.lr = 1e-3;
    c.weight_decay = 1e-6, c.schedule = Schedule::kCosine;
    c.epochs = quick ? 2 : 20, c.cosine_t_max = c.epochs, c.min_lr = 1e-5, c.batch = 8, c.crop = 128, c.clip = 10;
    c.workers = 2, c.device = device;
    const auto with = [&c](CountLoss loss) {
      auto x = c;
      x.loss = loss;
      return x;
    };
    plan.runs = {{"l2", "pixel L2 (mse_loss)", "", with(CountLoss::kL2)},
                 {"pml", "PML + pixel L2 (crowdloss)", "l2", with(CountLoss::kPML)},
                 {"dm-count", "DM-Count (crowdloss)", "l2", with(CountLoss::kDMCount)}};
    plan.description =
        "Model: CSRNet at width 0.25 (channels / 4: the paper's network is too slow to train on a CPU in"
        " minutes), from scratch, " +
        std::to_string(c.epochs) + " epochs of 128x128 crops, batch 8, AdamW 0.001 with cosine decay";
    return plan;
  }
  plan.scenes.height = plan.scenes.width = 512;
  plan.sizes = {quick ? 16 : 400, quick ? 4 : 50, quick ? 4 : 100};
  const int64_t epochs = quick ? 2 : 24;
  const auto full_size = [&](Recipe r, CountLoss loss) {
    auto c = recipe(r);
    c.width = 1, c.loss = loss, c.epochs = epochs, c.cosine_t_max = epochs, c.crop = 256, c.longest_side = 0;
    c.batch = 8, c.workers = 8, c.amp = Amp::kBF16, c.device = device;
    return c;
  };
  plan.runs = {
      {"l2", "CSRNet, pixel L2 (mse_loss)", "", full_size(Recipe::kPML, CountLoss::kL2)},
      {"pml", "CSRNet, PML + pixel L2 (crowdloss)", "l2", full_size(Recipe::kPML, CountLoss::kPML)},
      {"sanet-l2", "SANet, pixel L2 (mse_loss)", "", full_size(Recipe::kSANet, CountLoss::kL2)},
      {"sanet-loss", "SANet, SANet loss (crowdloss)", "sanet-l2", full_size(Recipe::kSANet, CountLoss::kSANet)}};
  plan.description =
      "Models: the papers' full-size CSRNet (width 1; the PML recipe, AdamW 0.0001 with cosine decay) and"
      " SANet (its recipe, Adam 1e-05), from scratch, " +
      std::to_string(epochs) + " epochs of 256x256 crops, batch 8, bf16 autocast";
  return plan;
}

/// Runs the demo `plan` on `device` with its results in `out`: each run under the same budget,
/// each checkpoint chosen on a validation set and reported on a separate test set, against the
/// predict-the-mean baseline; with `seeds` > 1, once per seed 1…seeds (initial weights, data order
/// and augmentation; the same scenes), reported as mean ± standard deviation. `quick`: the smoke
/// run. Writes OUT/results.md and results.json, whose "rows" list each run's method, mean test
/// MAE and RMSE and training seconds.
inline int count_demo(const std::filesystem::path& out, const CountDemoPlan& plan, const std::string& device,
                      bool quick, int64_t seeds) {
  const DemoFrame frame("counting", device, quick, kCountQuickNote);
  const SyntheticOptions& syn = plan.scenes;
  const auto [n_train, n_val, n_test] = plan.sizes;
  std::cout << "Synthetic crowds (" << syn.height << "x" << syn.width << ", 0-" << syn.max_count
            << " heads each): " << n_train << " training, " << n_val << " validation and " << n_test
            << " test scenes in " << (out / "data").string() << "\n";
  const auto [train_set, val_set, test_set] = frame.splits(out, plan.sizes, syn, write_synthetic_dataset);
  std::cout << plan.description << "; the same budget and seed for every loss"
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
  const auto& runs_planned = plan.runs;
  std::vector<std::vector<Run>> runs(runs_planned.size());
  LoaderOptions test_options;
  test_options.batch = 1;
  const Loader test_loader(test_set, test_options);
  const torch::Device on(device);
  std::vector<CountingModel> models;  // each run's best checkpoint of seed 1
  for (int64_t seed = 1; seed <= seeds; ++seed)
    for (size_t i = 0; i < runs_planned.size(); ++i) {
      auto c = runs_planned[i].config;
      c.seed = static_cast<uint64_t>(seed);
      const std::string& name = runs_planned[i].method;
      const auto dir = seeds == 1 ? out / name : out / ("seed" + std::to_string(seed)) / name;
      std::cout << "training with " << runs_planned[i].label
                << (seeds > 1 ? ", seed " + std::to_string(seed) : std::string()) << "\n";
      const auto t0 = std::chrono::steady_clock::now();
      const auto best = train(c, train_set, val_set, dir, ExistingRun::kOverwrite);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto model = load_model(dir / "best.pt", device);
      runs[i].push_back({evaluate(model, test_loader, on, amp_dtype(c.amp, on)), best.epoch, seconds});
      if (seed == 1) models.push_back(std::move(model));
    }
  // Three test scenes side by side: image | ground truth (adaptive kernels) | each run's model.
  for (size_t i = 0; i < std::min<size_t>(3, test_set.size()); ++i) {
    // Every panel on the ground truth's colour scale, so that a faint prediction looks faint.
    const auto image = load_image(test_set[i].image);
    const int64_t H = image.size(0), W = image.size(1);
    const auto truth =
        crowdloss::points_to_density(test_set[i].points, H, W, crowdloss::PointsToDensityOptions().adaptive(true));
    const double scale = overlay_scale(truth, H, W);
    std::vector<at::Tensor> panels = {image, density_overlay(image, truth, scale)};
    torch::NoGradGuard no_grad;
    const auto x = normalize(to_chw_float(image)).unsqueeze(0).to(on);
    for (auto& m : models) panels.push_back(density_overlay(image, m.forward(x)[0][0].cpu(), scale));
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
  std::string methods;
  for (size_t i = 0; i < runs_planned.size(); ++i) {
    const auto& rs = runs[i];
    const auto& label = runs_planned[i].label;
    std::vector<double> mae, rmse;
    double seconds = 0;
    for (const auto& r : rs) mae.push_back(r.test.mae), rmse.push_back(r.test.rmse), seconds += r.seconds;
    seconds /= static_cast<double>(rs.size());
    const std::string time = fixed(seconds, 0) + " s";
    if (seeds == 1)
      table.rows.push_back(
          {label, fixed(rs[0].test.mae, 1), fixed(rs[0].test.rmse, 1), std::to_string(rs[0].epoch), time});
    else
      table.rows.push_back({label, spread(rs, &Metrics::mae), spread(rs, &Metrics::rmse),
                            joined(rs, [](const Run& r) { return fixed(r.test.mae, 1); }),
                            joined(rs, [](const Run& r) { return std::to_string(r.epoch); }), time});
    const auto& method = runs_planned[i].method;
    methods += (methods.empty() ? "" : ",") + method;
    auto& j = json["losses"][method];
    j["name"] = label;
    for (const auto& r : rs)
      j["runs"].push_back({{"test_mae", r.test.mae},
                           {"test_rmse", r.test.rmse},
                           {"best_epoch", r.epoch},
                           {"train_seconds", r.seconds}});
    json["rows"].push_back(
        {{"method", method}, {"mae", mean_std(mae).first}, {"rmse", mean_std(rmse).first}, {"seconds", seconds}});
  }
  std::string notes = "Test counting error on " + std::to_string(test_set.size()) + " synthetic scenes (mean count " +
                      fixed(mean_of(test_set), 1) + "); lower is better.";
  if (seeds > 1) {
    notes += " Seeds 1–" + std::to_string(seeds) + " (initial weights, data order and augmentation; the same scenes):";
    for (size_t i = 0; i < runs_planned.size(); ++i) {
      const auto& versus = runs_planned[i].versus;
      if (versus.empty()) continue;
      const auto k = static_cast<size_t>(
          std::find_if(runs_planned.begin(), runs_planned.end(), [&](const auto& r) { return r.method == versus; }) -
          runs_planned.begin());
      int64_t mae_wins = 0, rmse_wins = 0;
      for (int64_t s = 0; s < seeds; ++s) {
        mae_wins += runs[i][s].test.mae < runs.at(k)[s].test.mae;
        rmse_wins += runs[i][s].test.rmse < runs.at(k)[s].test.rmse;
      }
      notes += " " + runs_planned[i].label + " has a lower test MAE than " + runs_planned[k].label + " with " +
               std::to_string(mae_wins) + " of " + std::to_string(seeds) + " seeds and a lower RMSE with " +
               std::to_string(rmse_wins) + ".";
    }
  }
  if (quick) notes += " --quick: a smoke run, its numbers mean nothing.";
  std::string command = "crowdloss-count demo";
  if (on.is_cuda()) command += " --device " + device;
  if (quick) command += " --quick";
  if (seeds > 1) command += " --seeds " + std::to_string(seeds);
  const std::string folder = out.string() + (seeds > 1 ? "/seed*" : "");
  std::string panels;
  for (const auto& r : runs_planned) panels += " | " + r.label;
  return frame.finish(out, command, table, notes, json,
                      "Test scenes as image | ground truth" + panels +
                          " (seed 1), each panel labelled with its count"
                          " and coloured on the ground truth's scale: " +
                          out.string() + "/test_scene*.png",
                      "Per-epoch metrics: " + folder + "/{" + methods + "}/metrics.jsonl.");
}

}  // namespace crowdloss_examples
