#pragma once
// `crowdloss-detect demo`: the same small detector trained with each label assignment under the
// same budget on the synthetic dense-pedestrian set, compared on held-out scenes.
#include "detect_trainer.hpp"
#include "image_io.hpp"
#include "program.hpp"
#include "report.hpp"

#include <array>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace crowdloss_examples {

constexpr const char* kDetectQuickNote =
    "\n--quick: a smoke run that only checks that everything runs (1 epoch on 8 scenes); its numbers say\n"
    "nothing about the assignments. The full demo (without --quick) is the comparison.\n";

/// What `crowdloss-detect demo` trains where: the scenes, the number of training, validation and
/// test scenes, the configuration every assignment mode is trained with, and its description.
struct DetectDemoPlan {
  PedestrianOptions scenes;
  std::array<int64_t, 3> sizes{};
  DetectConfig config;
  std::string description;
};

/// The demo's plan on `device` ("cpu", or "cuda" / "cuda:N"), `quick`: the smoke run's budget.
/// - On the CPU: FCOS with a ResNet-18 at width 0.25 and 64 FPN channels on 256² scenes, 10 epochs
///   of 200 scenes with AdamW 1e-3: a network small enough to train in minutes on two cores.
/// - On a GPU: the full-size detector (ResNet-50, 256 FPN channels) on 512² scenes, bf16
///   autocast, 12 epochs of 240 scenes with AdamW 1e-4: a budget chosen to finish within 4
///   minutes on an H200.
/// Both train from scratch with warm-up and cosine decay, batch 8, every mode with the same seed.
inline DetectDemoPlan detect_demo_plan(const std::string& device, bool quick) {
  DetectDemoPlan plan;
  auto& c = plan.config;
  c.optimizer = Optimizer::kAdamW, c.weight_decay = 1e-4, c.batch = 8, c.min_lr = 1e-5, c.clip = 10, c.seed = 1;
  c.device = device;
  if (!torch::Device(device).is_cuda()) {
    plan.sizes = {quick ? 8 : 200, quick ? 4 : 40, quick ? 4 : 60};
    c.backbone = "resnet18", c.width = 0.25, c.fpn_channels = 64, c.lr = 1e-3;
    c.epochs = quick ? 1 : 10, c.warmup = quick ? 1 : 50, c.workers = 2;
    plan.description =
        "Model: FCOS with a ResNet-18 at width 0.25 and 64 FPN channels (a CPU-sized network), from"
        " scratch, " +
        std::to_string(c.epochs) + " epochs, batch 8, AdamW 0.001";
    return plan;
  }
  plan.scenes.height = plan.scenes.width = 512;
  plan.sizes = {quick ? 8 : 240, quick ? 4 : 40, quick ? 4 : 60};
  c.backbone = "resnet50", c.width = 1, c.fpn_channels = 256, c.lr = 1e-4, c.amp = Amp::kBF16;
  c.epochs = quick ? 1 : 12, c.warmup = quick ? 1 : 100, c.workers = 8;
  plan.description = "Model: FCOS with a full-size ResNet-50 and 256 FPN channels, from scratch, " +
                     std::to_string(c.epochs) + " epochs, batch 8, bf16 autocast, AdamW 0.0001";
  return plan;
}

/// Runs the demo `plan` on `device` with its results in `out`: the same detector trained with each
/// assignment mode, the checkpoint with the best validation AP50 reported on the test scenes;
/// `quick`: the smoke run. Writes OUT/results.md and results.json, whose "rows" list each mode's
/// AP50, mMR, recall and training seconds.
inline int detect_demo(const std::filesystem::path& out, const DetectDemoPlan& plan, const std::string& device,
                       bool quick) {
  const DemoFrame frame("detection", device, quick, kDetectQuickNote);
  const PedestrianOptions& syn = plan.scenes;
  const auto [n_train, n_val, n_test] = plan.sizes;
  std::cout << "Synthetic dense pedestrians (" << syn.height << "x" << syn.width << "): " << n_train << " training, "
            << n_val << " validation and " << n_test << " test scenes in " << (out / "data").string() << "\n";
  const auto [train_set, val_set, test_set] = frame.splits(out, plan.sizes, syn, write_synthetic_pedestrians);

  DetectConfig c = plan.config;
  std::cout << plan.description
            << " with warm-up and cosine decay; the same budget and seed for every assignment; the epoch with the"
            << " best validation AP50 is kept.\n"
            << frame.quick_note() << "\n";
  struct Row {
    AssignMode mode;
    DetectorMetrics m;
    int64_t epoch;
    double seconds;
  };
  std::vector<Row> rows;
  DetectionLoaderOptions lo;
  lo.batch = 4;
  const DetectionLoader test_loader(test_set, lo);
  const auto image = load_image(test_set.at(0).image);
  const auto& shown = test_set.at(0);
  std::vector<at::Tensor> panels = {
      draw_detections(image, {shown.boxes, torch::ones({shown.boxes.size(0)})}, shown.ignore)};
  for (const auto& [mode, mode_name] : Choices<AssignMode>::names) {
    c.assign = mode;
    std::cout << "training with --assign " << mode_name << "\n";
    const auto t0 = std::chrono::steady_clock::now();
    const auto best = train_detector(c, train_set, val_set, out / mode_name, ExistingRun::kOverwrite);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto [net, config] = load_detector(out / mode_name / "best.pt", device);
    auto m = evaluate_detector(config, net, test_loader, amp_dtype(config.amp, torch::Device(device)));
    m.assign_ms_per_batch = best.assign_ms_per_batch;
    rows.push_back({mode, m, best.epoch, seconds});
    panels.push_back(draw_detections(image, confident(predict_image(config, net, image), 0.3), shown.ignore));
  }
  save_png((out / "test_scene0.png").string(), torch::cat(panels, 1));
  Table table;
  table.header = {"assignment", "NMS", "AP50", "mMR", "recall", "best epoch", "assignment per batch / train time"};
  nlohmann::json json = {{"demo", "detect"}, {"quick", quick}, {"test_scenes", test_set.size()}};
  for (const auto& r : rows) {
    c.assign = r.mode;
    const std::string name = name_of(r.mode);
    table.rows.push_back({"`" + name + "`", uses_nms(c) ? "0.6" : "none", fixed(r.m.ap50, 3), fixed(r.m.mmr, 3),
                          fixed(r.m.recall, 3), std::to_string(r.epoch),
                          fixed(r.m.assign_ms_per_batch, 1) + " ms / " + fixed(r.seconds, 0) + " s"});
    json["modes"][name] = r.m;
    json["modes"][name]["best_epoch"] = r.epoch, json["modes"][name]["train_seconds"] = r.seconds;
    json["rows"].push_back(
        {{"method", name}, {"ap50", r.m.ap50}, {"mmr", r.m.mmr}, {"recall", r.m.recall}, {"seconds", r.seconds}});
  }
  std::string notes = "Detection on " + std::to_string(test_set.size()) + " synthetic test scenes (" +
                      std::to_string(rows.at(0).m.ground_truths) +
                      " people), CrowdHuman protocol, ignore regions honoured. AP50 and recall: higher is better; mMR"
                      " (log-average miss rate): lower is better.";
  if (quick) notes += " --quick: a smoke run, its numbers mean nothing.";
  std::string command = "crowdloss-detect demo";
  if (torch::Device(device).is_cuda()) command += " --device " + device;
  if (quick) command += " --quick";
  return frame.finish(out, command, table, notes, json,
                      "Test scene 0, ground truth | fcos | poto | poto-3dmf-aux | lla\n(scores > 0.3): " +
                          out.string() + "/test_scene0.png",
                      "Per-epoch metrics: " + out.string() + "/<assignment>/metrics.jsonl.");
}

}  // namespace crowdloss_examples
