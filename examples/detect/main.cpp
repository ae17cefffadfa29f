// crowdloss-detect: train, evaluate and run the FCOS-style dense-pedestrian detector with the
// crowdloss label assignments (fcos, poto, poto-3dmf-aux, lla), and a demo comparing them
// (examples/detect/demo.hpp).
//
//   crowdloss-detect demo    [--out DIR] [--quick] [--threads N] [--device cpu|cuda]
//   crowdloss-detect train   --data FORMAT:PATH --val FORMAT:PATH [--assign MODE] [options]
//   crowdloss-detect bench   [--assign MODE] [options] [--steps N] [--json FILE]
//   crowdloss-detect eval    --checkpoint DIR/best.pt --data FORMAT:PATH
//   crowdloss-detect predict --checkpoint DIR/best.pt --out DIR IMAGE...
//
// FORMAT:PATH is synthetic:DIR (generated there if absent), crowdhuman:FILE.odgt (images in
// Images/ beside it) or coco:FILE.json.
#include "detect/demo.hpp"
#include "detect_trainer.hpp"
#include "image_io.hpp"
#include "program.hpp"

#include <cstdio>
#include <thread>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;

namespace {

/// The detection data sets (program.hpp's Data).
struct DetectData {
  using Sample = ex::DetectionSample;
  using Synthetic = ex::PedestrianOptions;
  static const std::vector<std::string>& formats() {
    static const std::vector<std::string> f = {"synthetic", "crowdhuman", "coco"};
    return f;
  }
  static constexpr const char* format_note = "; crowdhuman:FILE.odgt reads images from Images/ beside it";
  static std::vector<Sample> generate(const fs::path& path, int64_t count, const Synthetic& o, ex::ExistingSet e) {
    return ex::write_synthetic_pedestrians(path, count, o, e);
  }
  static std::vector<Sample> read(const std::string& format, const fs::path& path, ex::BadSamples* bad,
                                  bool allow_outside) {
    return ex::read_detection_dataset(format, path, bad, allow_outside);
  }
};

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(ex::default_threads());  // the cores, shared among this machine's ranks
  CLI::App app{"crowdloss-detect: dense-pedestrian detection with the crowdloss label assignments"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  ex::ProgramOptions o;
  o.out = "crowdloss-detect-results";
  ex::DetectConfig c;

  auto* demo_cmd =
      ex::add_demo_command(app, o, "train the same detector with each assignment on synthetic pedestrians, compare");

  // The detector and its assignment, on train and bench alike.
  const auto add_model_options = [&](CLI::App& cmd) {
    ex::add_choice_option(cmd, c.assign, "the label assignment");
    cmd.add_option("--backbone", c.backbone, "resnet18 | resnet34 | resnet50");
    cmd.add_option("--width", c.width, "backbone channel multiplier in (0, 1]");
    cmd.add_option("--fpn-channels", c.fpn_channels, "FPN and head channels (a multiple of 32)");
    cmd.add_option("--backbone-weights", c.backbone_weights, "torchvision ResNet state dict (torch.save'd dict)");
    cmd.add_flag("--freeze-bn", c.freeze_bn, "keep the backbone's batch norms frozen (with pretrained weights)");
    cmd.add_option("--momentum", c.momentum, "SGD momentum");
    cmd.add_option("--warmup", c.warmup, "linear warm-up iterations");
  };
  auto* train_cmd = ex::add_train_command<DetectData>(app, o, "train a detector");
  add_model_options(*train_cmd);
  ex::add_choice_option(*train_cmd, c.nms, "NMS at inference: auto (for fcos and lla), on or off");
  ex::add_run_options(*train_cmd, o, c);

  ex::ThroughputOptions throughput;
  std::string bench_json;
  auto* bench_cmd = ex::add_bench_command(app, o, throughput, bench_json, DetectData::formats());
  add_model_options(*bench_cmd);
  ex::add_step_options(*bench_cmd, o, c);

  auto* eval_cmd = ex::add_eval_command<DetectData>(app, o, "AP50, mMR and recall of a checkpoint on a dataset");
  auto* predict_cmd =
      ex::add_predict_command(app, o, "detect people in images and draw the boxes", "folder for the drawn PNGs");

  return ex::run_program("crowdloss-detect", app, argc, argv, o, [&](ex::BadSamples& bad) {
    if (*demo_cmd) {
      ex::check_device(o.device);
      ex::set_demo_threads(o.threads);
      return ex::detect_demo(o.out, ex::detect_demo_plan(o.device, o.quick), o.device, o.quick);
    }
    if (*train_cmd) {
      // Every option is checked before any file is read or written.
      ex::check_config(c);
      if (ex::should_launch(o.launch)) return ex::launch_local("crowdloss-detect", argv, o.launch);
      const auto ranks = ex::join_train_run(o.launch, c.device);
      if (o.resume)
        c = ex::resumed(c, o.out, [&](const std::string& key) { return ex::given_option(*train_cmd, key); });
      const auto [train_set, val_set] = ex::load_train_and_val<DetectData>(*train_cmd, o, bad, ranks.get());
      const auto best = ex::train_detector(c, train_set, val_set, o.out, ex::existing_run(o.resume, o.overwrite),
                                           /*quiet=*/false, &bad, ranks);
      if (!ranks || ranks->main())
        std::printf("best validation AP50 %.3f mMR %.3f recall %.3f; checkpoints in %s\n", best.ap50, best.mmr,
                    best.recall, o.out.c_str());
    } else if (*bench_cmd) {
      ex::check_bench_options(throughput);
      ex::check_config(c);
      ex::DetectTraining training(c, ex::load_bench_data<DetectData>(o, throughput.steps * c.batch, bad), {}, &bad);
      return ex::run_bench("crowdloss-detect", training, c, c.device, throughput, bench_json);
    } else if (*eval_cmd) {
      ex::parse_data_spec("--data", o.data, DetectData::formats());
      ex::check_device(o.device);
      const auto amp = ex::amp_dtype(o.amp, torch::Device(o.device));
      auto [net, config] = ex::load_detector(o.checkpoint, o.device);
      ex::DetectionLoaderOptions lo;
      lo.batch = config.batch, lo.longest_side = config.longest_side, lo.bad = &bad;
      const auto m =
          ex::evaluate_detector(config, net, ex::DetectionLoader(ex::load_eval_data<DetectData>(o, bad), lo), amp);
      std::printf("AP50 %.4f mMR %.4f recall %.4f (%lld people, %lld detections)\n", m.ap50, m.mmr, m.recall,
                  static_cast<long long>(m.ground_truths), static_cast<long long>(m.detections));
    } else if (*predict_cmd) {
      ex::check_device(o.device);
      auto [net, config] = ex::load_detector(o.checkpoint, o.device);
      fs::create_directories(o.out);
      for (const auto& path : o.images) {
        const auto image = ex::load_image(path);
        const auto d = ex::predict_image(config, net, image);
        const auto shown = ex::confident(d, 0.3);
        const auto png = (fs::path(o.out) / (fs::path(path).stem().string() + "_detections.png")).string();
        ex::save_png(png, ex::draw_detections(image, shown));
        std::printf("%s: %lld people (score > 0.3, drawn in %s), %lld candidates above %.2f\n", path.c_str(),
                    static_cast<long long>(shown.boxes.size(0)), png.c_str(), static_cast<long long>(d.boxes.size(0)),
                    config.score_threshold);
      }
    }
    return 0;
  });
}
