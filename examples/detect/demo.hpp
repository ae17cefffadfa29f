#pragma once
// `crowdloss-detect demo`: the same small detector trained with each label assignment under the
// same budget on the synthetic dense-pedestrian set, compared on held-out scenes.
#include "detect_trainer.hpp"
#include "image_io.hpp"
#include "program.hpp"
#include "report.hpp"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace crowdloss_examples {

constexpr const char* kDetectQuickNote =
    "\n--quick: a smoke run that only checks that everything runs (1 epoch on 8 scenes); its numbers say\n"
    "nothing about the assignments. The full demo (without --quick) is the comparison.\n";

/// Runs the demo with its results in `out`; `quick`: the smoke run.
inline int detect_demo(const std::filesystem::path& out, bool quick) {
  const DemoFrame frame("detection", quick, kDetectQuickNote);
  PedestrianOptions syn;
  const int64_t n_train = quick ? 8 : 200, n_val = quick ? 4 : 40, n_test = quick ? 4 : 60;
  std::cout << "Synthetic dense pedestrians (" << syn.height << "x" << syn.width << "): " << n_train << " training, "
            << n_val << " validation and " << n_test << " test scenes in " << (out / "data").string() << "\n";
  const auto [train_set, val_set, test_set] =
      frame.splits(out, {n_train, n_val, n_test}, syn, write_synthetic_pedestrians);

  DetectConfig c;
  c.backbone = "resnet18", c.width = 0.25, c.fpn_channels = 64, c.optimizer = Optimizer::kAdamW, c.lr = 1e-3,
  c.weight_decay = 1e-4;
  c.epochs = quick ? 1 : 10, c.batch = 8, c.warmup = quick ? 1 : 50, c.min_lr = 1e-5, c.clip = 10, c.workers = 2,
  c.seed = 1;
  std::cout << "Model: FCOS with a ResNet-18 at width " << c.width << " and " << c.fpn_channels
            << " FPN channels (a CPU-sized network), from scratch, " << c.epochs << " epochs, batch " << c.batch
            << ", AdamW " << c.lr
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
    auto [net, config] = load_detector(out / mode_name / "best.pt", "cpu");
    auto m = evaluate_detector(config, net, test_loader);
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
  }
  std::string notes = "Detection on " + std::to_string(test_set.size()) + " synthetic test scenes (" +
                      std::to_string(rows.at(0).m.ground_truths) +
                      " people), CrowdHuman protocol, ignore regions honoured. AP50 and recall: higher is better; mMR"
                      " (log-average miss rate): lower is better.";
  if (quick) notes += " --quick: a smoke run, its numbers mean nothing.";
  return frame.finish(out, quick ? "crowdloss-detect demo --quick" : "crowdloss-detect demo", table, notes, json,
                      "Test scene 0, ground truth | fcos | poto | poto-3dmf-aux | lla\n(scores > 0.3): " +
                          out.string() + "/test_scene0.png",
                      "Per-epoch metrics: " + out.string() + "/<assignment>/metrics.jsonl.");
}

}  // namespace crowdloss_examples
