// Faults and bad data (docs/examples.md): a training run killed with SIGKILL resumes to the
// uninterrupted run's results, a non-finite loss stops training and keeps the last good
// checkpoint, and bad images or annotations stop a run naming the file, or are skipped with
// --skip-bad. The programs run as child processes (programs.hpp).
#include "support/checks.hpp"

#include "fault_support.hpp"
#include "fixtures.hpp"
#include "programs.hpp"

#include "detect_trainer.hpp"
#include "trainer.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using namespace crowdloss_examples_test;

namespace {

/// A metrics line without what depends on the machine's speed.
nlohmann::json without_timings(nlohmann::json line) {
  for (const char* key : {"seconds", "images_per_s", "eval_images_per_s", "assign_ms_per_batch"}) line.erase(key);
  return line;
}

using LoadModel = std::function<std::shared_ptr<torch::nn::Module>(const fs::path&)>;

/// Runs the training command `program` `args` (`epochs` epochs) to its end in dir/straight; runs
/// it again in dir/killed and SIGKILLs it once its first epoch's checkpoint is written and the
/// second epoch is under way; checks what the kill left (a complete last.pt and the log of its
/// epochs); resumes it with --resume. Both runs must end with the same weights (every parameter
/// and buffer of last.pt and best.pt) and the same metrics, timings aside. So this also checks
/// that two runs with one seed give the same losses (epoch 1 comes from another process).
void check_kill_and_resume(const std::string& program, const std::vector<std::string>& args, int64_t epochs,
                           const fs::path& dir, const LoadModel& load) {
  const auto straight = dir / "straight", killed = dir / "killed", log = dir / "killed.log";
  const auto t0 = std::chrono::steady_clock::now();
  const auto done = run_program(command(program, args, {"--out", straight.string()}), dir / "straight.log");
  REQUIRE_MESSAGE(done.code == 0, done.output);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    Child child(command(program, args, {"--out", killed.string()}), log);
    // The progress bar shows "epoch 2/N" after the first batch of epoch 2, which starts after
    // epoch 1's checkpoint is written.
    const bool underway =
        wait_until([&] { return !child.running() || contains(read_text(log), "epoch 2/"); }, std::chrono::seconds(300));
    REQUIRE_MESSAGE(underway, "epoch 2 did not start within 300 s:\n" << read_text(log));
    child.kill(SIGKILL);
    const int code = child.wait();
    REQUIRE_MESSAGE(code == -SIGKILL, "the run ended before the kill (" << code << "):\n" << read_text(log));
  }
  // What the kill left: a last.pt that loads, holding completed epochs only, and the log lines of
  // those epochs.
  torch::serialize::InputArchive archive;
  archive.load_from((killed / "last.pt").string());
  c10::IValue next_epoch;
  archive.read("next_epoch", next_epoch);
  const int64_t saved = next_epoch.toInt();
  MESSAGE(fs::path(program).filename().string()
          << " killed after " << saved << " of " << epochs << " epochs (" << seconds << " s for an uninterrupted run)");
  CHECK(saved >= 1);
  CHECK(saved < epochs);
  REQUIRE(load(killed / "last.pt") != nullptr);
  // The log is written after last.pt, and never ahead of it: the checkpoint's epochs, or one
  // fewer when the kill fell between the two (last.pt holds the log, and --resume restores it).
  const auto logged = occurrences(read_text(killed / "metrics.jsonl"), "\n");
  CHECK(logged <= saved);
  CHECK(logged >= saved - 1);

  const auto resumed = run_program(command(program, args, {"--out", killed.string(), "--resume"}), dir / "resumed.log");
  REQUIRE_MESSAGE(resumed.code == 0, resumed.output);
  CHECK(contains(resumed.output, "resuming"));
  const auto a = read_metrics(straight), b = read_metrics(killed);
  REQUIRE(static_cast<int64_t>(a.size()) == epochs);
  REQUIRE(static_cast<int64_t>(b.size()) == epochs);
  for (size_t e = 0; e < a.size(); ++e) CHECK(without_timings(a[e]) == without_timings(b[e]));
  for (const char* name : {"last.pt", "best.pt"}) {
    const auto differ = different_tensors(*load(straight / name), *load(killed / name));
    CHECK_MESSAGE(differ.empty(),
                  name << ": " << differ.size() << " tensors differ, the first " << (differ.empty() ? "" : differ[0]));
  }
}

/// The bad-data checks of one program on a fixture in `dir`: train/ holds the truncated image
/// `truncated`, val/ is clean, bad_val/ has a malformed annotation whose error starts with
/// `annotation_error`; `train(val)` is the training command line, `spec(set)` the FORMAT:PATH of
/// a set, and `eval_output` what eval prints with its metrics.
void check_bad_data(const std::string& program, const fs::path& dir,
                    const std::function<std::vector<std::string>(const fs::path&)>& train,
                    const std::function<std::string(const std::string&)>& spec, const fs::path& truncated,
                    const std::string& annotation_error, const std::string& eval_output) {
  const auto name = fs::path(program).filename().string();
  const auto run = [&](const std::string& log, const std::vector<std::string>& args,
                       const std::vector<std::string>& extra) {
    return run_program(command(program, args, extra), dir / (log + ".log"));
  };
  // Without --skip-bad the first bad sample stops the run, naming the file.
  const auto stopped = run("train_stop", train(dir / "val"), {"--out", (dir / "stop").string()});
  DOCTEST_CHECK(stopped.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(stopped.output, name + ": cannot read image " + truncated.string()), stopped.output);
  DOCTEST_CHECK_FALSE(contains(stopped.output, "best validation"));
  // With it, both bad samples are left out, each warned about once over the two epochs.
  const auto skipped = run("train_skip", train(dir / "bad_val"), {"--out", (dir / "skip").string(), "--skip-bad"});
  REQUIRE_MESSAGE(skipped.code == 0, skipped.output);
  DOCTEST_CHECK(occurrences(skipped.output, "warning: skipped a bad sample: ") == 2);
  DOCTEST_CHECK(contains(skipped.output, "warning: skipped a bad sample: cannot read image " + truncated.string()));
  DOCTEST_CHECK(contains(skipped.output, "warning: skipped a bad sample: " + annotation_error));
  DOCTEST_CHECK(contains(skipped.output, "skipped 2 bad samples"));
  DOCTEST_CHECK(read_metrics(dir / "skip").size() == 2);
  // The same for eval.
  const auto checkpoint = (dir / "skip" / "last.pt").string();
  const auto eval_stopped = run("eval_stop", {"eval", "--checkpoint", checkpoint, "--data", spec("bad_val")}, {});
  DOCTEST_CHECK(eval_stopped.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(eval_stopped.output, name + ": " + annotation_error), eval_stopped.output);
  const auto eval_skipped =
      run("eval_skip", {"eval", "--checkpoint", checkpoint, "--data", spec("train")}, {"--skip-bad"});
  REQUIRE_MESSAGE(eval_skipped.code == 0, eval_skipped.output);
  DOCTEST_CHECK(
      contains(eval_skipped.output, "warning: skipped a bad sample: cannot read image " + truncated.string()));
  DOCTEST_CHECK(contains(eval_skipped.output, eval_output));
  DOCTEST_CHECK(contains(eval_skipped.output, "skipped 1 bad sample\n"));
}

}  // namespace

TEST_CASE(
    "faults: crowdloss-count train killed with SIGKILL mid-epoch resumes to the uninterrupted run, weight for weight") {
  const auto dir = fixture_dir("faults_kill_count");
  small_synthetic_set(dir / "train", 16, 96, 96, 100, 1);
  small_synthetic_set(dir / "val", 4, 96, 96, 100, 2);
  check_kill_and_resume(CROWDLOSS_COUNT_EXE, count_train(dir / "train", dir / "val", 3), 3, dir,
                        [](const fs::path& p) { return ex::load_model(p, "cpu").ptr; });
}

TEST_CASE(
    "faults: crowdloss-detect train killed with SIGKILL mid-epoch resumes to the uninterrupted run, weight for "
    "weight") {
  const auto dir = fixture_dir("faults_kill_detect");
  small_pedestrian_set(dir / "train", 8, 128, 128, 12, 1);
  small_pedestrian_set(dir / "val", 4, 128, 128, 12, 2);
  check_kill_and_resume(CROWDLOSS_DETECT_EXE, detect_train(dir / "train", dir / "val", 3), 3, dir,
                        [](const fs::path& p) { return ex::load_detector(p, "cpu").first.ptr(); });
}

TEST_CASE(
    "faults: a non-finite loss stops training, naming epoch, batch and the last good checkpoint, which stays and "
    "resumes") {
  const auto dir = fixture_dir("faults_nonfinite");
  torch::manual_seed(1);
  FixedBatches loader;
  for (int i = 0; i < 3; ++i) loader.data.push_back({torch::randn({4, 3}), torch::randn({4, 1})});
  int64_t poisoned_epoch = 1, epoch_now = 0, batch_now = 0;  // the loss turns NaN at batch 2 of epoch 2
  std::vector<at::Tensor> after_epoch_1;
  const auto fit = [&](torch::nn::Linear& model, const fs::path& out, bool resume) {
    torch::optim::SGD opt(model->parameters(), 0.1);
    ex::FitHooks<XY> hooks;
    hooks.learning_rate = [&](int64_t epoch, int64_t i, int64_t) {
      epoch_now = epoch, batch_now = i;
      return 0.1;
    };
    hooks.loss = [&](XY& b) {
      auto loss = torch::mse_loss(model(b.first), b.second);
      if (epoch_now == poisoned_epoch && batch_now == 1) loss = loss * std::numeric_limits<float>::quiet_NaN();
      return std::make_pair(loss, b.first.size(0));
    };
    hooks.validate = [&](int64_t epoch) {
      if (epoch == 0)
        for (const auto& p : model->parameters()) after_epoch_1.push_back(p.detach().clone());
      return ex::Validation{{{"val_loss", 1.0}}, 1.0};
    };
    ex::FitSettings s;
    s.epochs = 3, s.out = out, s.existing = resume ? ex::ExistingRun::kResume : ex::ExistingRun::kRefuse,
    s.quiet = true;
    return ex::fit(*model, opt, loader, hooks, s);
  };
  torch::nn::Linear model(3, 1);
  const auto last = dir / "run" / "last.pt";
  const auto error = error_of([&] { fit(model, dir / "run", false); });
  DOCTEST_CHECK_MESSAGE(contains(error, "non-finite loss ("), error);
  DOCTEST_CHECK(contains(error, "nan)"));
  DOCTEST_CHECK(
      contains(error, "at epoch 2, batch 2; the last good checkpoint is " + last.string() + " (after epoch 1)"));
  // The checkpoint is epoch 1's, untouched by the step of batch 1 of epoch 2; the log has epoch 1.
  torch::nn::Linear reloaded(3, 1);
  ex::load_weights(last, *reloaded);
  const auto params = reloaded->parameters();
  REQUIRE(params.size() == after_epoch_1.size());
  for (size_t i = 0; i < params.size(); ++i) DOCTEST_CHECK(torch::equal(params[i], after_epoch_1[i]));
  DOCTEST_CHECK(read_metrics(dir / "run").size() == 1);
  // Once the cause is gone, --resume goes on from it, with the log as last.pt holds it: lines
  // after the checkpoint's epoch (here a line and a torn one) cannot survive.
  std::ofstream(dir / "run" / "metrics.jsonl", std::ios::app) << R"({"epoch": 2, "train_loss": -1})"
                                                                 "\n"
                                                                 R"({"epoch": 3, "tr)";
  poisoned_epoch = -1;
  fit(reloaded, dir / "run", /*resume=*/true);
  const auto lines = read_metrics(dir / "run");
  REQUIRE(lines.size() == 3);
  for (size_t e = 0; e < 3; ++e) DOCTEST_CHECK(lines[e].at("epoch") == e + 1);
  DOCTEST_CHECK(lines[1].at("train_loss").get<double>() >= 0);
  // In the first epoch there is no checkpoint yet, and none is left behind.
  poisoned_epoch = 0;
  torch::nn::Linear fresh(3, 1);
  DOCTEST_CHECK(contains(error_of([&] { fit(fresh, dir / "first", false); }),
                         "at epoch 1, batch 2; no checkpoint was written yet"));
  DOCTEST_CHECK_FALSE(fs::exists(dir / "first" / "last.pt"));
  // The program reports it and exits non-zero: a huge learning rate blows the weights up.
  small_synthetic_set(dir / "train", 4, 64, 64, 50, 1);
  const auto args = count_train(dir / "train", dir / "train", 1, /*lr=*/"1e30");
  const auto r = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "cli").string()}), dir / "cli.log");
  DOCTEST_CHECK(r.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(r.output, "crowdloss-count: non-finite loss"), r.output);
}

TEST_CASE("faults: BadSamples stops at the first bad sample, or skips each with one warning and counts them") {
  const auto dir = fixture_dir("faults_bad_samples");
  // COCO-style points: image 2 has a malformed bbox, an annotation names no listed image.
  write_text(dir / "ann.json", R"({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
    {"id": 3, "file_name": "c.png"}], "annotations": [{"image_id": 1, "bbox": [1, 1, 2, 2]},
    {"image_id": 2, "bbox": [1, 1, 2]}, {"image_id": 9, "bbox": [1, 1, 2, 2]}]})");
  ex::BadSamples stop;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_points(dir / "ann.json", dir, &stop),
                               doctest::Contains((dir / "b.png").string().c_str()), std::runtime_error);
  DOCTEST_CHECK_THROWS_WITH_AS(ex::read_coco_points(dir / "ann.json", dir), doctest::Contains("ann.json: annotation 1"),
                               std::runtime_error);
  std::ostringstream log;
  ex::BadSamples skip(true, log);
  const auto samples = ex::read_coco_points(dir / "ann.json", dir, &skip);
  REQUIRE(samples.size() == 2);
  DOCTEST_CHECK(samples[0].image == (dir / "a.png").string());
  DOCTEST_CHECK(samples[1].image == (dir / "c.png").string());
  DOCTEST_CHECK(skip.count() == 2);
  DOCTEST_CHECK(contains(log.str(), "warning: skipped a bad sample: " + (dir / "b.png").string()));
  DOCTEST_CHECK(contains(log.str(), "ann.json: annotation 2"));
  // The loader: of four images (batches of two, in order) the last two are corrupt, so the second
  // batch is left out entirely; each file is warned about once, however many epochs.
  std::vector<ex::CrowdSample> images;
  for (const char* name : {"a.png", "b.png", "c.png", "d.png"}) {
    write_image(dir / "images" / name);
    images.push_back({(dir / "images" / name).string(), torch::zeros({0, 2})});
  }
  write_text(images[2].image, "not a PNG");
  truncate_half(images[3].image);
  std::ostringstream loader_log;
  ex::BadSamples loader_skip(true, loader_log);
  ex::LoaderOptions lo;
  lo.batch = 2, lo.bad = &loader_skip;
  const ex::Loader loader(images, lo);
  std::vector<int64_t> seen;
  for (int64_t epoch = 0; epoch < 2; ++epoch)
    loader.run_epoch(epoch, [&](int64_t i, ex::Batch&) { seen.push_back(i); });
  DOCTEST_CHECK(seen == std::vector<int64_t>{0, 0});
  DOCTEST_CHECK(loader_skip.count() == 2);
  DOCTEST_CHECK(loader_skip.summary() == "skipped 2 bad samples");
  DOCTEST_CHECK(occurrences(loader_log.str(), "warning: ") == 2);
  DOCTEST_CHECK(contains(loader_log.str(), "d.png"));
  lo.bad = nullptr;
  DOCTEST_CHECK_THROWS_WITH_AS(ex::Loader(images, lo).run_epoch(0, [](int64_t, ex::Batch&) {}),
                               doctest::Contains("c.png"), std::runtime_error);
}

TEST_CASE(
    "faults: crowdloss-count train and eval stop at a bad image or annotation, naming it, or skip and count it "
    "(--skip-bad)") {
  const auto dir = fixture_dir("faults_bad_count");
  small_synthetic_set(dir / "train", 6, 64, 64, 50, 1);
  small_synthetic_set(dir / "val", 3, 64, 64, 50, 2);
  small_synthetic_set(dir / "bad_val", 3, 64, 64, 50, 2);
  const auto truncated = dir / "train" / "images" / "000002.png";
  truncate_half(truncated);
  // A bbox of three numbers in the first annotation of bad_val spoils its image.
  const auto json_path = dir / "bad_val" / "annotations.json";
  auto json = nlohmann::json::parse(read_text(json_path));
  REQUIRE(!json.at("annotations").empty());
  auto& first = json.at("annotations").at(0);
  first["bbox"] = {1, 2, 3};
  std::string spoiled;
  for (const auto& im : json.at("images"))
    if (im.at("id") == first.at("image_id"))
      spoiled = (dir / "bad_val" / im.at("file_name").get<std::string>()).string();
  write_text(json_path, json.dump());
  check_bad_data(
      CROWDLOSS_COUNT_EXE, dir, [&](const fs::path& val) { return count_train(dir / "train", val, 2); },
      [&](const std::string& set) { return "coco:" + (dir / set / "annotations.json").string(); }, truncated,
      spoiled + ": invalid COCO-style annotations in " + json_path.string() + ": annotation 0", "MAE ");
}

TEST_CASE(
    "faults: crowdloss-detect train and eval stop at a bad image or annotation, naming it, or skip and count it "
    "(--skip-bad)") {
  const auto dir = fixture_dir("faults_bad_detect");
  small_pedestrian_set(dir / "train", 6, 96, 96, 8, 1);
  small_pedestrian_set(dir / "val", 3, 96, 96, 8, 2);
  small_pedestrian_set(dir / "bad_val", 3, 96, 96, 8, 2);
  const auto truncated = dir / "train" / "Images" / "000001.png";
  truncate_half(truncated);
  // Line 2 of bad_val's annotations cut short.
  const auto odgt = dir / "bad_val" / "annotation.odgt";
  auto text = read_text(odgt);
  const auto line2 = text.find('\n') + 1;
  text.replace(line2, text.find('\n', line2) - line2, R"({"ID": "000001", "gtboxes": [)");
  write_text(odgt, text);
  check_bad_data(
      CROWDLOSS_DETECT_EXE, dir, [&](const fs::path& val) { return detect_train(dir / "train", val, 2); },
      [&](const std::string& set) { return "crowdhuman:" + (dir / set / "annotation.odgt").string(); }, truncated,
      odgt.string() + ":2: invalid CrowdHuman annotation", "AP50 ");
}

TEST_CASE("faults: annotation files name images inside their data set's folder, unless outside paths are allowed") {
  const auto dir = fixture_dir("faults_paths");
  write_image(dir / "set" / "a.png", 64, 64);
  write_image(dir / "outside.png", 64, 64);
  const auto coco = [&](const std::string& file_name) {
    write_text(dir / "set" / "annotations.json",
               R"({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": )" +
                   nlohmann::json(file_name).dump() + R"(}], "annotations": []})");
    return dir / "set" / "annotations.json";
  };
  for (const std::string& escape : std::vector<std::string>{"../outside.png", "sub/../../outside.png",
                                                            (dir / "outside.png").string(), "/etc/passwd"}) {
    INFO(escape);
    const auto json = coco(escape);
    const auto message = "the image '" + escape + "' lies outside the data set's folder " + (dir / "set").string() +
                         " (--allow-outside-paths allows it)";
    DOCTEST_CHECK(contains(error_of([&] { ex::read_coco_points(json, dir / "set"); }), message));
    DOCTEST_CHECK(contains(error_of([&] { ex::read_coco_boxes(json, dir / "set"); }), message));
    DOCTEST_CHECK(contains(error_of([&] { ex::read_dataset("coco", json); }), json.string()));  // the file is named too
  }
  // Allowed on request; inside paths always.
  const auto allowed = ex::read_coco_points(coco("../outside.png"), dir / "set", nullptr, /*allow_outside=*/true);
  REQUIRE(allowed.size() == 2);
  DOCTEST_CHECK(fs::equivalent(allowed[0].image, dir / "outside.png"));
  DOCTEST_CHECK(ex::read_coco_points(coco("sub/../a.png"), dir / "set").size() == 2);
  // CrowdHuman: the ID names the image in Images/.
  write_text(dir / "set" / "ann.odgt", R"({"ID": "../../outside", "gtboxes": []})"
                                       "\n");
  DOCTEST_CHECK(contains(error_of([&] { ex::read_odgt(dir / "set" / "ann.odgt", dir / "set" / "Images"); }),
                         "ann.odgt:1: invalid CrowdHuman annotation: the image '../../outside.jpg' lies outside"));
  DOCTEST_CHECK(
      ex::read_detection_dataset("crowdhuman", dir / "set" / "ann.odgt", nullptr, /*allow_outside=*/true).size() == 1);
  // The programs: refused, or read with --allow-outside-paths.
  coco("../outside.png");
  const auto t = run_program(
      command(CROWDLOSS_COUNT_EXE, count_train(dir / "set", dir / "set", 1), {"--out", (dir / "out").string()}),
      dir / "train.log");
  DOCTEST_CHECK(t.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(t.output, "lies outside the data set's folder"), t.output);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "out"));
  const auto allowed_run = run_program(command(CROWDLOSS_COUNT_EXE, count_train(dir / "set", dir / "set", 1),
                                               {"--out", (dir / "out").string(), "--allow-outside-paths"}),
                                       dir / "allowed.log");
  DOCTEST_CHECK_MESSAGE(allowed_run.code == 0, allowed_run.output);
}

TEST_CASE("faults: an image larger than --max-megapixels is refused from its header, naming the file and the limit") {
  const auto dir = fixture_dir("faults_pixels");
  write_image(dir / "big.png", 20, 30);
  const int64_t saved = ex::max_image_pixels();
  ex::max_image_pixels() = 599;
  const auto error = error_of([&] { ex::load_image((dir / "big.png").string()); });
  ex::max_image_pixels() = 600;
  DOCTEST_CHECK(ex::load_image((dir / "big.png").string()).size(0) == 20);  // the limit itself is allowed
  ex::max_image_pixels() = saved;
  DOCTEST_CHECK(error ==
                "image " + (dir / "big.png").string() +
                    " is 30×20 pixels (0.0006 Mpx), above the limit of 0.000599 Mpx (--max-megapixels raises it)");
  DOCTEST_CHECK(saved == 64'000'000);
  // The programs: train, eval and predict take --max-megapixels; 64×64 images are 0.004 Mpx.
  small_synthetic_set(dir / "set", 2, 64, 64, 20, 1);
  const auto train = run_program(command(CROWDLOSS_COUNT_EXE, count_train(dir / "set", dir / "set", 1),
                                         {"--out", (dir / "out").string(), "--max-megapixels", "0.001"}),
                                 dir / "train.log");
  DOCTEST_CHECK(train.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(train.output, "is 64×64 pixels (0.0041 Mpx), above the limit of 0.001 Mpx"),
                        train.output);
  const auto predict = run_program({CROWDLOSS_DETECT_EXE, "predict", "--checkpoint", (dir / "none.pt").string(),
                                    "--max-megapixels", "0", (dir / "set" / "images" / "000000.png").string()},
                                   dir / "predict.log");
  DOCTEST_CHECK(predict.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(predict.output, "--max-megapixels must be > 0, got 0"), predict.output);
}

TEST_CASE("faults: an empty data set is an error naming it, in train and eval of both programs") {
  const auto dir = fixture_dir("faults_empty");
  small_synthetic_set(dir / "set", 2, 64, 64, 20, 1);
  write_text(dir / "empty.json", R"({"images": [], "annotations": []})");
  const auto empty = "coco:" + (dir / "empty.json").string();
  auto args = count_train(dir / "set", dir / "set", 1);
  args[4] = empty;  // --val
  const auto no_val = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "a").string()}), dir / "a.log");
  DOCTEST_CHECK(no_val.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(no_val.output, "crowdloss-count: --val " + empty + ": the data set has no images"),
                        no_val.output);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "a"));
  args[2] = empty, args[4] = "coco:" + (dir / "set" / "annotations.json").string();  // --data empty
  const auto no_data = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "b").string()}), dir / "b.log");
  DOCTEST_CHECK(no_data.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(no_data.output, "--data " + empty + ": the data set has no images"), no_data.output);
  // eval needs a checkpoint: train one on the real set.
  args[2] = args[4];
  REQUIRE(run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "run").string()}), dir / "run.log").code ==
          0);
  const auto eval =
      run_program({CROWDLOSS_COUNT_EXE, "eval", "--checkpoint", (dir / "run" / "best.pt").string(), "--data", empty},
                  dir / "eval.log");
  DOCTEST_CHECK(eval.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(eval.output, "--data " + empty + ": the data set has no images"), eval.output);
  DOCTEST_CHECK_FALSE(contains(eval.output, "MAE"));
  // crowdloss-detect: an .odgt without lines.
  small_pedestrian_set(dir / "peds", 2, 96, 96, 8, 1);
  write_text(dir / "empty" / "annotation.odgt", "");
  auto dargs = detect_train(dir / "peds", dir / "empty", 1);
  const auto detect = run_program(command(CROWDLOSS_DETECT_EXE, dargs, {"--out", (dir / "d").string()}), dir / "d.log");
  DOCTEST_CHECK(detect.code == 1);
  DOCTEST_CHECK_MESSAGE(
      contains(detect.output, "crowdloss-detect: --val crowdhuman:" + (dir / "empty" / "annotation.odgt").string() +
                                  ": the data set has no images"),
      detect.output);
  // fit itself: no batches.
  ex::FitHooks<XY> hooks;
  torch::nn::Linear model(1, 1);
  torch::optim::SGD opt(model->parameters(), 0.1);
  ex::FitSettings s;
  s.out = dir / "fit", s.quiet = true;
  DOCTEST_CHECK(error_of([&] { ex::fit(*model, opt, FixedBatches{}, hooks, s); }) ==
                "no training data: the training set has no images");
}

TEST_CASE("faults: synthetic:DIR uses the set already in DIR as it is, and --synthetic-count must match it") {
  const auto dir = fixture_dir("faults_synthetic");
  small_synthetic_set(dir / "set", 4, 64, 64, 20, 1);  // not the program's settings (256x256, 400 images)
  const auto stamp = fs::last_write_time(dir / "set" / "annotations.json");
  const auto spec = "synthetic:" + (dir / "set").string();
  const std::vector<std::string> args = {"train", "--data",    spec, "--val",          spec, "--width",
                                         "0.125", "--crop",    "64", "--longest-side", "0",  "--batch",
                                         "2",     "--workers", "2",  "--epochs",       "1"};
  const auto used = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "a").string()}), dir / "a.log");
  DOCTEST_CHECK_MESSAGE(used.code == 0, used.output);
  DOCTEST_CHECK(fs::last_write_time(dir / "set" / "annotations.json") == stamp);
  const auto refused = run_program(
      command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "b").string(), "--synthetic-count", "400"}), dir / "b.log");
  DOCTEST_CHECK(refused.code == 1);
  DOCTEST_CHECK_MESSAGE(
      contains(refused.output,
               (dir / "set").string() + " already holds another synthetic set (count 4 where 400 was asked for"),
      refused.output);
  DOCTEST_CHECK(fs::last_write_time(dir / "set" / "annotations.json") == stamp);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "b"));
}
