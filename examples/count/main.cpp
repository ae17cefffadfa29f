// crowdloss-count: train, evaluate and run crowd-counting models (CSRNet, SANet) with the
// crowdloss density losses, and the project's main job (`demo`, examples/count/demo.hpp).
//
//   crowdloss-count demo   [--out DIR] [--quick] [--seeds N] [--threads N] [--device cpu|cuda]
//   crowdloss-count train  --data FORMAT:PATH --val FORMAT:PATH [--recipe pml|csrnet|sanet|dm-count|bayesian] [options]
//   crowdloss-count bench  [--recipe pml|csrnet|sanet|dm-count|bayesian] [options] [--steps N] [--json FILE]
//   crowdloss-count eval   --checkpoint DIR/best.pt --data FORMAT:PATH
//   crowdloss-count predict --checkpoint DIR/best.pt --out DIR IMAGE...
//
// FORMAT:PATH is synthetic:DIR (generated there if absent), coco:FILE.json, shanghaitech:DIR,
// qnrf:DIR, nwpu:DIR or jhu:DIR.
#include "count/demo.hpp"
#include "program.hpp"
#include "synthetic.hpp"
#include "trainer.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;

namespace {

/// The counting data sets (program.hpp's Data).
struct CountData {
  using Sample = ex::CrowdSample;
  using Synthetic = ex::SyntheticOptions;
  static const std::vector<std::string>& formats() {
    static const std::vector<std::string> f = {"synthetic", "coco", "shanghaitech", "qnrf", "nwpu", "jhu"};
    return f;
  }
  static constexpr const char* format_note = "";
  static std::vector<Sample> generate(const fs::path& path, int64_t count, const Synthetic& o, ex::ExistingSet e) {
    return ex::write_synthetic_dataset(path, count, o, e);
  }
  static std::vector<Sample> read(const std::string& format, const fs::path& path, ex::BadSamples* bad,
                                  bool allow_outside) {
    return ex::read_dataset(format, path, {}, bad, allow_outside);
  }
};

/// The recipe named on the command line (--recipe NAME or --recipe=NAME; default pml), found
/// before parsing because its settings are the defaults that the other options override.
ex::Recipe recipe_of(int argc, char** argv) {
  std::string name = "pml";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--recipe" && i + 1 < argc) name = argv[i + 1];
    if (a.rfind("--recipe=", 0) == 0) name = a.substr(9);
  }
  return ex::parse_choice<ex::Recipe>(name);
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(ex::default_threads());  // the cores, shared among this machine's ranks
  CLI::App app{"crowdloss-count: crowd counting with the crowdloss density losses"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows each option's default
  ex::ProgramOptions o;
  o.out = "crowdloss-results";
  auto recipe = ex::Recipe::kPML;
  try {
    recipe = recipe_of(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "crowdloss-count: " << e.what() << "\n";
    return 2;
  }
  ex::TrainConfig c = ex::recipe(recipe);

  auto* demo_cmd =
      ex::add_demo_command(app, o, "generate the synthetic set, train with L2, with PML and with DM-Count, compare");
  int64_t seeds = 1;
  demo_cmd->add_option("--seeds", seeds, "train each loss with seeds 1..N and report mean ± standard deviation");

  // The model and its objective, on train and bench alike.
  const auto add_model_options = [&](CLI::App& cmd) {
    ex::add_choice_option(cmd, recipe, "the papers' settings, applied before the other options");
    ex::add_choice_option(cmd, c.model, "the counting model");
    cmd.add_option("--width", c.width, "CSRNet channel multiplier in (0, 1]");
    ex::add_choice_option(cmd, c.loss, "the training objective");
    ex::add_choice_option(cmd, c.schedule, "the learning-rate schedule");
    cmd.add_option("--t-max", c.cosine_t_max, "cosine period in epochs");
    cmd.add_option("--vgg-weights", c.vgg_weights, "torchvision VGG-16 state dict for the CSRNet front end");
  };
  auto* train_cmd = ex::add_train_command<CountData>(app, o, "train a counting model");
  add_model_options(*train_cmd);
  ex::add_run_options(*train_cmd, o, c);

  ex::ThroughputOptions throughput;
  std::string bench_json;
  auto* bench_cmd = ex::add_bench_command(app, o, throughput, bench_json, CountData::formats());
  add_model_options(*bench_cmd);
  ex::add_step_options(*bench_cmd, o, c);

  auto* eval_cmd = ex::add_eval_command<CountData>(app, o, "MAE and RMSE of a checkpoint on a dataset");
  auto* predict_cmd =
      ex::add_predict_command(app, o, "count images and write density overlays", "folder for the overlay PNGs");

  return ex::run_program("crowdloss-count", app, argc, argv, o, [&](ex::BadSamples& bad) {
    if (*demo_cmd) {
      ex::check_value(seeds >= 1, "--seeds", seeds, ">= 1");
      ex::check_device(o.device);
      ex::set_demo_threads(o.threads);
      return ex::count_demo(o.out, ex::count_demo_plan(o.device, o.quick), o.device, o.quick, seeds);
    }
    if (*train_cmd) {
      // Every option is checked before any file is read or written.
      ex::check_config(c);
      if (ex::should_launch(o.launch)) return ex::launch_local("crowdloss-count", argv, o.launch);
      const auto ranks = ex::join_train_run(o.launch, c.device);
      if (o.resume)
        c = ex::resumed(c, o.out, [&](const std::string& key) { return ex::given_option(*train_cmd, key); });
      const auto [train_set, val_set] = ex::load_train_and_val<CountData>(*train_cmd, o, bad, ranks.get());
      const auto best = ex::train(c, train_set, val_set, o.out, ex::existing_run(o.resume, o.overwrite),
                                  /*quiet=*/false, &bad, ranks);
      if (!ranks || ranks->main())
        std::printf("best validation MAE %.2f RMSE %.2f; checkpoints in %s\n", best.mae, best.rmse, o.out.c_str());
    } else if (*bench_cmd) {
      ex::check_bench_options(throughput);
      ex::check_config(c);
      ex::CountTraining training(c, ex::load_bench_data<CountData>(o, throughput.steps * c.batch, bad), {}, &bad);
      return ex::run_bench("crowdloss-count", training, c, c.device, throughput, bench_json);
    } else if (*eval_cmd) {
      ex::parse_data_spec("--data", o.data, CountData::formats());
      ex::check_device(o.device);
      const torch::Device device(o.device);
      const auto amp = ex::amp_dtype(o.amp, device);
      auto model = ex::load_model(o.checkpoint, o.device);
      ex::LoaderOptions lo;
      lo.batch = 1, lo.stride = std::max<int64_t>(model.stride, 8), lo.bad = &bad;
      const auto m = ex::evaluate(model, ex::Loader(ex::load_eval_data<CountData>(o, bad), lo), device, amp);
      std::printf("MAE %.2f RMSE %.2f\n", m.mae, m.rmse);
    } else if (*predict_cmd) {
      ex::check_device(o.device);
      auto model = ex::load_model(o.checkpoint, o.device);
      fs::create_directories(o.out);
      torch::NoGradGuard no_grad;
      for (const auto& path : o.images) {
        const auto image = ex::load_image(path);
        const auto x = ex::pad_to_multiple({ex::to_chw_float(image), torch::zeros({0, 2})}, 8).image;
        const auto density = model.forward(ex::normalize(x).unsqueeze(0).to(torch::Device(o.device)))[0][0].cpu();
        const auto png = (fs::path(o.out) / (fs::path(path).stem().string() + "_density.png")).string();
        ex::save_png(png, ex::density_overlay(image, density));
        std::printf("%s: %.1f people, density overlay %s\n", path.c_str(), density.sum().item<double>(), png.c_str());
      }
    }
    return 0;
  });
}
