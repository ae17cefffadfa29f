// crowdloss-detect: train, evaluate and run the FCOS-style dense-pedestrian detector with the
// crowdloss label assignments (fcos, poto, poto-3dmf-aux, lla), and a CPU demo comparing them.
//
//   crowdloss-detect demo    [--out DIR] [--quick] [--threads N]
//   crowdloss-detect train   --data FORMAT:PATH --val FORMAT:PATH [--assign MODE] [options]
//   crowdloss-detect eval    --checkpoint DIR/best.pt --data FORMAT:PATH
//   crowdloss-detect predict --checkpoint DIR/best.pt --out DIR IMAGE...
//
// FORMAT:PATH is synthetic:DIR (generated there if absent), crowdhuman:FILE.odgt (images in
// Images/ beside it) or coco:FILE.json.
#include "cli.hpp"
#include "detect_trainer.hpp"
#include "image_io.hpp"
#include "report.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <thread>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kFormats = {"synthetic", "crowdhuman", "coco"};

/// The data set `spec`: a synthetic one is generated with `synthetic_count` images unless its
/// folder holds one, which is used as it is (another count is an error when `count_given`).
std::vector<ex::DetectionSample> load_data(const ex::DataSpec& spec, int64_t synthetic_count, bool count_given,
                                           const ex::PedestrianOptions& synthetic, ex::BadSamples& bad,
                                           bool allow_outside) {
  if (spec.format == "synthetic")
    return ex::write_synthetic_pedestrians(spec.path, synthetic_count, synthetic,
                                           count_given ? ex::ExistingSet::kError : ex::ExistingSet::kUseExisting);
  return ex::read_detection_dataset(spec.format, spec.path, &bad, allow_outside);
}

/// The detections scoring above `threshold` (for drawing).
ex::Detections confident(const ex::Detections& d, double threshold) {
  const auto keep = (d.scores > threshold).nonzero().squeeze(1);
  return {d.boxes.index_select(0, keep), d.scores.index_select(0, keep)};
}

/// Runs `net` on one image file and returns its detections in the image's pixels.
ex::Detections predict_image(const ex::DetectConfig& c, ex::FCOS& net, const at::Tensor& image) {
  torch::NoGradGuard no_grad;
  const auto x = ex::pad_to_multiple(ex::Sample{ex::to_chw_float(image), torch::zeros({0, 2})}, 32).image;
  const auto out = net->forward(ex::normalize(x).unsqueeze(0).to(torch::Device(c.device)));
  return ex::detect(c, out, ex::anchor_points(out), {{image.size(0), image.size(1)}}).at(0);
}

constexpr const char* kQuickNote =
    "\n--quick: a smoke run that only checks that everything runs (1 epoch on 8 scenes); its numbers say\n"
    "nothing about the assignments. The full demo (without --quick) is the comparison.\n";

// The demo: the same small detector trained with each assignment under the same budget on the
// synthetic dense-pedestrian set, evaluated on held-out scenes.
int demo(const fs::path& out, bool quick) {
  const auto start = std::chrono::steady_clock::now();
  ex::PedestrianOptions syn;
  const int64_t n_train = quick ? 8 : 200, n_val = quick ? 4 : 40, n_test = quick ? 4 : 60;
  std::cout << "crowdloss " << CROWDLOSS_VERSION_STRING << " detection demo (LibTorch " << TORCH_VERSION << ", "
            << at::get_num_threads() << " threads)\n";
  std::cout << "Synthetic dense pedestrians (" << syn.height << "x" << syn.width << "): " << n_train << " training, "
            << n_val << " validation and " << n_test << " test scenes in " << (out / "data").string() << "\n";
  const auto split = [&](const char* name, int64_t count, uint64_t seed) {
    auto o = syn;
    o.seed = seed;
    return ex::write_synthetic_pedestrians(out / "data" / name, count, o, ex::ExistingSet::kReplace);
  };
  const auto train_set = split("train", n_train, 1), val_set = split("val", n_val, 1001),
             test_set = split("test", n_test, 2001);

  ex::DetectConfig c;
  c.backbone = "resnet18", c.width = 0.25, c.fpn_channels = 64, c.optimizer = ex::Optimizer::kAdamW, c.lr = 1e-3,
  c.weight_decay = 1e-4;
  c.epochs = quick ? 1 : 10, c.batch = 8, c.warmup = quick ? 1 : 50, c.min_lr = 1e-5, c.clip = 10, c.workers = 2,
  c.seed = 1;
  std::cout << "Model: FCOS with a ResNet-18 at width " << c.width << " and " << c.fpn_channels
            << " FPN channels (a CPU-sized network), from scratch, " << c.epochs << " epochs, batch " << c.batch
            << ", AdamW " << c.lr
            << " with warm-up and cosine decay; the same budget and seed for every assignment; the epoch with the"
            << " best validation AP50 is kept.\n"
            << (quick ? kQuickNote : "") << "\n";
  struct Row {
    ex::AssignMode mode;
    ex::DetectorMetrics m;
    int64_t epoch;
    double seconds;
  };
  std::vector<Row> rows;
  ex::DetectionLoaderOptions lo;
  lo.batch = 4;
  const ex::DetectionLoader test_loader(test_set, lo);
  const auto image = ex::load_image(test_set.at(0).image);
  const auto& shown = test_set.at(0);
  std::vector<at::Tensor> panels = {
      ex::draw_detections(image, {shown.boxes, torch::ones({shown.boxes.size(0)})}, shown.ignore)};
  for (const auto& [mode, mode_name] : ex::Choices<ex::AssignMode>::names) {
    c.assign = mode;
    std::cout << "training with --assign " << mode_name << "\n";
    const auto t0 = std::chrono::steady_clock::now();
    const auto best = ex::train_detector(c, train_set, val_set, out / mode_name, ex::ExistingRun::kOverwrite);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto [net, config] = ex::load_detector(out / mode_name / "best.pt", "cpu");
    auto m = ex::evaluate_detector(config, net, test_loader);
    m.assign_ms_per_batch = best.assign_ms_per_batch;
    rows.push_back({mode, m, best.epoch, seconds});
    panels.push_back(ex::draw_detections(image, confident(predict_image(config, net, image), 0.3), shown.ignore));
  }
  ex::save_png((out / "test_scene0.png").string(), torch::cat(panels, 1));
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ex::Table table;
  table.header = {"assignment", "NMS", "AP50", "mMR", "recall", "best epoch", "assignment per batch / train time"};
  nlohmann::json json = {{"demo", "detect"}, {"quick", quick}, {"test_scenes", test_set.size()}};
  for (const auto& r : rows) {
    c.assign = r.mode;
    const std::string name = ex::name_of(r.mode);
    table.rows.push_back({"`" + name + "`", ex::uses_nms(c) ? "0.6" : "none", ex::fixed(r.m.ap50, 3),
                          ex::fixed(r.m.mmr, 3), ex::fixed(r.m.recall, 3), std::to_string(r.epoch),
                          ex::fixed(r.m.assign_ms_per_batch, 1) + " ms / " + ex::fixed(r.seconds, 0) + " s"});
    json["modes"][name] = r.m;
    json["modes"][name]["best_epoch"] = r.epoch, json["modes"][name]["train_seconds"] = r.seconds;
  }
  std::string notes = "Detection on " + std::to_string(test_set.size()) + " synthetic test scenes (" +
                      std::to_string(rows.at(0).m.ground_truths) +
                      " people), CrowdHuman protocol, ignore regions honoured. AP50 and recall: higher is better; mMR"
                      " (log-average miss rate): lower is better.";
  if (quick) notes += " --quick: a smoke run, its numbers mean nothing.";
  const std::string md =
      ex::write_results(out, quick ? "crowdloss-detect demo --quick" : "crowdloss-detect demo", table, notes, json);
  std::printf(
      "\n%s\nAlso in %s/results.md and results.json. Test scene 0, ground truth | fcos | poto | poto-3dmf-aux | lla\n"
      "(scores > 0.3): %s/test_scene0.png\nPer-epoch metrics: %s/<assignment>/metrics.jsonl. Total time %.0f s.\n",
      md.c_str(), out.string().c_str(), out.string().c_str(), out.string().c_str(), total);
  if (quick) std::printf("%s", kQuickNote);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CLI::App app{"crowdloss-detect: dense-pedestrian detection with the crowdloss label assignments"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  std::string out = "crowdloss-detect-results", data, val, checkpoint, device = "cpu";
  auto amp = ex::Amp::kOff;
  bool quick = false, resume = false, overwrite = false, skip_bad = false, allow_outside = false;
  double max_megapixels = static_cast<double>(ex::max_image_pixels()) / 1e6;
  int64_t synthetic_count = 400;
  std::vector<std::string> images;
  ex::DetectConfig c;

  auto* demo_cmd =
      app.add_subcommand("demo", "train the same detector with each assignment on synthetic pedestrians, compare");
  demo_cmd->add_option("--out", out, "results folder");
  demo_cmd->add_flag("--quick", quick, "a smoke run on a tiny budget (for tests): its numbers mean nothing");
  int64_t threads = at::get_num_threads();
  demo_cmd->add_option("--threads", threads, "LibTorch's threads (the results depend on it; default: the cores)");

  auto* train_cmd = app.add_subcommand("train", "train a detector");
  const auto formats =
      "FORMAT:PATH, FORMAT one of " + ex::join(kFormats) +
      " (synthetic:DIR is generated there if absent; crowdhuman:FILE.odgt reads images from Images/ beside it)";
  train_cmd->add_option("--data", data, "training set, " + formats)->required();
  train_cmd->add_option("--val", val, "validation set, " + formats)->required();
  train_cmd->add_option("--out", out, "output folder (checkpoints, metrics.jsonl)");
  ex::add_choice_option(*train_cmd, c.assign, "the label assignment");
  train_cmd->add_option("--backbone", c.backbone, "resnet18 | resnet34 | resnet50");
  train_cmd->add_option("--width", c.width, "backbone channel multiplier in (0, 1]");
  train_cmd->add_option("--fpn-channels", c.fpn_channels, "FPN and head channels (a multiple of 32)");
  train_cmd->add_option("--backbone-weights", c.backbone_weights, "torchvision ResNet state dict (torch.save'd dict)");
  train_cmd->add_flag("--freeze-bn", c.freeze_bn, "keep the backbone's batch norms frozen (with pretrained weights)");
  ex::add_choice_option(*train_cmd, c.optimizer, "the optimizer");
  train_cmd->add_option("--lr", c.lr, "peak learning rate (after the warm-up, before the cosine decay)");
  train_cmd->add_option("--weight-decay", c.weight_decay, "the optimizer's weight decay");
  train_cmd->add_option("--momentum", c.momentum, "SGD momentum");
  train_cmd->add_option("--min-lr", c.min_lr, "end of the cosine schedule");
  train_cmd->add_option("--warmup", c.warmup, "linear warm-up iterations");
  train_cmd->add_option("--clip", c.clip, "gradient-norm clip (0: off)");
  train_cmd->add_option("--epochs", c.epochs, "epochs to train (with --resume: in all)");
  train_cmd->add_option("--batch", c.batch, "images per training batch");
  train_cmd->add_option("--longest-side", c.longest_side, "resize so the longer side is this (0: keep)");
  train_cmd->add_option("--crop", c.crop, "random square crop side when augmenting (0: none)");
  train_cmd->add_option("--workers", c.workers, "threads decoding and augmenting images, beside the training thread");
  train_cmd->add_option("--seed", c.seed, "seed of the weights, the shuffling and the augmentation");
  train_cmd->add_option("--device", c.device, "cpu | cuda");
  ex::add_choice_option(*train_cmd, c.amp, "mixed precision (fp16: CUDA, with dynamic loss scaling)");
  ex::add_choice_option(*train_cmd, c.nms, "NMS at inference: auto (for fcos and lla), on or off");
  train_cmd->add_option("--synthetic-count", synthetic_count,
                        "images to generate for synthetic:DIR sets (validation: a quarter); without it, a set already "
                        "in DIR is used as it is");
  ex::add_run_folder_flags(*train_cmd, resume, overwrite);
  ex::add_bad_data_options(
      *train_cmd, skip_bad,
      "leave out images and annotations that cannot be read, with a warning naming each, and count them", allow_outside,
      max_megapixels);
  train_cmd->footer(ex::kFaultsHelp);

  auto* eval_cmd = app.add_subcommand("eval", "AP50, mMR and recall of a checkpoint on a dataset");
  eval_cmd->add_option("--checkpoint", checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  eval_cmd->add_option("--data", data, formats)->required();
  eval_cmd->add_option("--device", device, "cpu | cuda");
  ex::add_choice_option(*eval_cmd, amp, "mixed precision");
  ex::add_bad_data_options(*eval_cmd, skip_bad,
                           "leave out images and annotations that cannot be read, with a warning naming each",
                           allow_outside, max_megapixels);

  auto* predict_cmd = app.add_subcommand("predict", "detect people in images and draw the boxes");
  predict_cmd->add_option("--checkpoint", checkpoint, "a checkpoint written by train (best.pt or last.pt)")->required();
  predict_cmd->add_option("--out", out, "folder for the drawn PNGs");
  predict_cmd->add_option("--device", device, "cpu | cuda");
  ex::add_max_megapixels_option(*predict_cmd, max_megapixels);
  predict_cmd->add_option("images", images, "image files")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    const ex::PedestrianOptions syn;
    ex::BadSamples bad(skip_bad);
    ex::set_max_megapixels(max_megapixels);
    if (*demo_cmd) {
      ex::set_demo_threads(threads);
      return demo(out, quick);
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
          ex::train_detector(c, train_set, val_set, out, ex::existing_run(resume, overwrite), /*quiet=*/false, &bad);
      std::printf("best validation AP50 %.3f mMR %.3f recall %.3f; checkpoints in %s\n", best.ap50, best.mmr,
                  best.recall, out.c_str());
    } else if (*eval_cmd) {
      const auto spec = ex::parse_data_spec("--data", data, kFormats);
      ex::check_device(device);
      ex::amp_dtype(amp, torch::Device(device));
      auto [net, config] = ex::load_detector(checkpoint, device);
      ex::DetectionLoaderOptions lo;
      lo.batch = config.batch, lo.longest_side = config.longest_side, lo.bad = &bad;
      const auto set = load_data(spec, synthetic_count, /*count_given=*/false, syn, bad, allow_outside);
      ex::check_not_empty("--data", data, set.size());
      const auto m =
          ex::evaluate_detector(config, net, ex::DetectionLoader(set, lo), ex::amp_dtype(amp, torch::Device(device)));
      std::printf("AP50 %.4f mMR %.4f recall %.4f (%lld people, %lld detections)\n", m.ap50, m.mmr, m.recall,
                  static_cast<long long>(m.ground_truths), static_cast<long long>(m.detections));
    } else if (*predict_cmd) {
      ex::check_device(device);
      auto [net, config] = ex::load_detector(checkpoint, device);
      fs::create_directories(out);
      for (const auto& path : images) {
        const auto image = ex::load_image(path);
        const auto d = predict_image(config, net, image);
        const auto shown = confident(d, 0.3);
        const auto png = (fs::path(out) / (fs::path(path).stem().string() + "_detections.png")).string();
        ex::save_png(png, ex::draw_detections(image, shown));
        std::printf("%s: %lld people (score > 0.3, drawn in %s), %lld candidates above %.2f\n", path.c_str(),
                    static_cast<long long>(shown.boxes.size(0)), png.c_str(), static_cast<long long>(d.boxes.size(0)),
                    config.score_threshold);
      }
    }
    if (skip_bad) std::printf("%s\n", bad.summary().c_str());
  } catch (const std::exception& e) {
    std::cerr << "crowdloss-detect: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
