// The trainers' output folder under faults (docs/examples.md, "Faults and bad data"): a full disk
// stops a run with an error naming the file, leaving no temporary file and a log never ahead of
// last.pt; the folder is locked against a second run; a run already there is refused unless
// --resume or --overwrite; --resume keeps the checkpoint's settings; a damaged or foreign
// checkpoint is one line naming the file.
#include "support/checks.hpp"

#include "fault_support.hpp"
#include "fixtures.hpp"
#include "programs.hpp"

#include "detect_trainer.hpp"
#include "trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using namespace crowdloss_examples_test;

namespace {

/// The `fit` of these tests: a linear model over three fixed batches, validating to a constant.
/// `after_validation(epoch)` runs at the end of each epoch's validation (to inject a fault).
nlohmann::json fit_linear(const fs::path& out, ex::ExistingRun existing, int64_t epochs,
                          const std::function<void(int64_t)>& after_validation = {},
                          nlohmann::json config = {{"lr", 0.1}}) {
  torch::manual_seed(1);
  FixedBatches loader;
  for (int i = 0; i < 3; ++i) loader.data.push_back({torch::randn({4, 3}), torch::randn({4, 1})});
  torch::nn::Linear model(3, 1);
  torch::optim::SGD opt(model->parameters(), 0.1);
  ex::FitHooks<XY> hooks;
  hooks.learning_rate = [](int64_t, int64_t, int64_t) { return 0.1; };
  hooks.loss = [&](XY& b) { return std::make_pair(torch::mse_loss(model(b.first), b.second), b.first.size(0)); };
  hooks.validate = [&](int64_t epoch) {
    if (after_validation) after_validation(epoch);
    return ex::Validation{{{"val_loss", 1.0 / static_cast<double>(epoch + 1)}}, 1.0 / static_cast<double>(epoch + 1)};
  };
  ex::FitSettings s;
  s.epochs = epochs, s.out = out, s.existing = existing, s.quiet = true, s.config = std::move(config);
  return ex::fit(*model, opt, loader, hooks, s);
}

/// The epochs a checkpoint written by `fit` holds.
int64_t saved_epochs(const fs::path& last) {
  auto archive = ex::open_checkpoint(last);
  return ex::checkpoint_value(archive, last, "next_epoch").toInt();
}

/// Files in `dir` whose name ends in ".tmp".
int64_t temporary_files(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".tmp";
  return n;
}

/// Makes writing `path` fail as on a full disk: its temporary file is a link to /dev/full, where
/// every write fails with ENOSPC. False (the test then says it is skipped) where there is none.
bool fill_disk_for(const fs::path& path) {
  if (!fs::exists("/dev/full")) {
    MESSAGE("CROWDLOSS_SKIPPED: no /dev/full to stand for a full disk");
    return false;
  }
  fs::create_symlink("/dev/full", path.string() + ".tmp");
  return true;
}

}  // namespace

TEST_CASE("faults: a failed write (a full disk) throws naming the file and the cause, and leaves no temporary file") {
  const auto dir = fixture_dir("faults_atomic_file");
  const auto path = dir / "file.txt";
  ex::write_text_atomically(path, "old\n");
  DOCTEST_CHECK(read_text(path) == "old\n");
  if (!fill_disk_for(path)) return;
  const auto error = error_of([&] { ex::write_text_atomically(path, std::string(1 << 20, 'x')); });
  DOCTEST_CHECK_MESSAGE(error == "cannot write " + path.string() + ": " + std::strerror(ENOSPC), error);
  DOCTEST_CHECK(read_text(path) == "old\n");  // untouched
  DOCTEST_CHECK_FALSE(fs::exists(fs::symlink_status(path.string() + ".tmp")));
  // A checkpoint archive (the writer LibTorch aborted in, throwing from a destructor).
  torch::serialize::OutputArchive archive;
  archive.write("x", torch::rand({100000}));
  fill_disk_for(dir / "x.pt");
  DOCTEST_CHECK(error_of([&] { ex::save_atomically(archive, dir / "x.pt"); }) ==
                "cannot write " + (dir / "x.pt").string() + ": " + std::strerror(ENOSPC));
  DOCTEST_CHECK(temporary_files(dir) == 0);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "x.pt"));
  // An exception while producing the content also removes the temporary file.
  try {
    ex::AtomicFile file(dir / "y.txt");
    file.write("partial", 7);
    throw std::runtime_error("interrupted");
  } catch (const std::runtime_error&) {
  }
  DOCTEST_CHECK(temporary_files(dir) == 0);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "y.txt"));
}

TEST_CASE(
    "faults: a full disk at an epoch's checkpoint stops fit naming the file, and the log is never ahead of last.pt") {
  const auto dir = fixture_dir("faults_full_disk");
  const auto out = dir / "run";
  // The disk fills while epoch 2 validates: last.pt of epoch 2 cannot be written.
  const auto error = error_of([&] {
    fit_linear(out, ex::ExistingRun::kRefuse, 3, [&](int64_t epoch) {
      if (epoch == 1 && !fill_disk_for(out / "last.pt")) throw std::runtime_error("skipped");
    });
  });
  if (error == "skipped") return;
  DOCTEST_CHECK_MESSAGE(error == "cannot write " + (out / "last.pt").string() + ": " + std::strerror(ENOSPC), error);
  DOCTEST_CHECK(temporary_files(out) == 0);
  DOCTEST_CHECK(saved_epochs(out / "last.pt") == 1);
  DOCTEST_CHECK(read_metrics(out).size() == 1);  // epoch 2 is not logged: last.pt does not hold it
  // With space again, --resume repeats epoch 2 and goes on.
  fit_linear(out, ex::ExistingRun::kResume, 3);
  const auto lines = read_metrics(out);
  REQUIRE(lines.size() == 3);
  for (size_t e = 0; e < 3; ++e) DOCTEST_CHECK(lines[e].at("epoch") == e + 1);
  // The log cannot be written after last.pt was: the error names it; last.pt holds the epoch and
  // its log line, which --resume writes back.
  const auto out2 = dir / "run2";
  const auto log_error = error_of([&] {
    fit_linear(out2, ex::ExistingRun::kRefuse, 2, [&](int64_t epoch) {
      if (epoch == 1) fill_disk_for(out2 / "metrics.jsonl");
    });
  });
  DOCTEST_CHECK_MESSAGE(log_error == "cannot write " + (out2 / "metrics.jsonl").string() + ": " + std::strerror(ENOSPC),
                        log_error);
  DOCTEST_CHECK(saved_epochs(out2 / "last.pt") == 2);
  DOCTEST_CHECK(read_metrics(out2).size() == 1);
  fit_linear(out2, ex::ExistingRun::kResume, 2);
  DOCTEST_CHECK(read_metrics(out2).size() == 2);
}

TEST_CASE("faults: crowdloss-count train on a full disk exits 1 naming the file, not with an abort") {
  const auto dir = fixture_dir("faults_full_disk_cli");
  small_synthetic_set(dir / "train", 4, 64, 64, 50, 1);
  fs::create_directories(dir / "out");
  if (!fill_disk_for(dir / "out" / "best.pt")) return;
  const auto r = run_program(
      command(CROWDLOSS_COUNT_EXE, count_train(dir / "train", dir / "train", 2), {"--out", (dir / "out").string()}),
      dir / "run.log");
  DOCTEST_CHECK(r.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(r.output, "crowdloss-count: cannot write " + (dir / "out" / "best.pt").string() +
                                               ": " + std::strerror(ENOSPC)),
                        r.output);
  DOCTEST_CHECK_FALSE(contains(r.output, "terminate called"));
  DOCTEST_CHECK(temporary_files(dir / "out") == 0);
  DOCTEST_CHECK_FALSE(fs::exists(dir / "out" / "metrics.jsonl"));
}

TEST_CASE("faults: a run already in the output folder is refused, replaced with --overwrite, continued with --resume") {
  const auto dir = fixture_dir("faults_existing_run");
  fit_linear(dir / "run", ex::ExistingRun::kRefuse, 2);
  const auto before = read_text(dir / "run" / "metrics.jsonl");
  const auto error = error_of([&] { fit_linear(dir / "run", ex::ExistingRun::kRefuse, 2); });
  DOCTEST_CHECK_MESSAGE(error == (dir / "run").string() +
                                     " already holds a run (last.pt, best.pt, metrics.jsonl): --resume continues "
                                     "it, --overwrite replaces it, or choose another --out",
                        error);
  DOCTEST_CHECK(read_text(dir / "run" / "metrics.jsonl") == before);
  // A log alone is a run too.
  fs::create_directories(dir / "log_only");
  write_text(dir / "log_only" / "metrics.jsonl", "{}\n");
  DOCTEST_CHECK(
      contains(error_of([&] { fit_linear(dir / "log_only", ex::ExistingRun::kRefuse, 1); }), "(metrics.jsonl)"));
  // --overwrite starts afresh: nothing of the old run is left (best.pt of epoch 2 included).
  fit_linear(dir / "run", ex::ExistingRun::kOverwrite, 1);
  DOCTEST_CHECK(read_metrics(dir / "run").size() == 1);
  DOCTEST_CHECK(saved_epochs(dir / "run" / "last.pt") == 1);
  DOCTEST_CHECK(ex::checkpoint_json(dir / "run" / "best.pt") == nlohmann::json{{"lr", 0.1}});
  // The programs: refused without a word on the files; --resume and --overwrite exclude each other.
  small_synthetic_set(dir / "train", 4, 64, 64, 50, 1);
  const auto args = count_train(dir / "train", dir / "train", 1);
  const auto first =
      run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "cli").string()}), dir / "first.log");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  const auto stamp = fs::last_write_time(dir / "cli" / "last.pt");
  const auto again =
      run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "cli").string()}), dir / "again.log");
  DOCTEST_CHECK(again.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(again.output, "crowdloss-count: " + (dir / "cli").string() + " already holds a run"),
                        again.output);
  DOCTEST_CHECK(fs::last_write_time(dir / "cli" / "last.pt") == stamp);
  const auto both =
      run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "cli").string(), "--resume", "--overwrite"}),
                  dir / "both.log");
  DOCTEST_CHECK(both.code != 0);
  DOCTEST_CHECK_MESSAGE(contains(both.output, "excludes"), both.output);
  const auto replaced = run_program(
      command(CROWDLOSS_COUNT_EXE, args, {"--out", (dir / "cli").string(), "--overwrite"}), dir / "replaced.log");
  DOCTEST_CHECK_MESSAGE(replaced.code == 0, replaced.output);
}

TEST_CASE("faults: the output folder is locked, and a second run stops naming the folder and the holder") {
  const auto dir = fixture_dir("faults_lock");
  fs::create_directories(dir / "run");
  {
    const ex::FolderLock held(dir / "run");
    const auto error = error_of([&] { fit_linear(dir / "run", ex::ExistingRun::kRefuse, 1); });
    DOCTEST_CHECK_MESSAGE(contains(error, (dir / "run").string() + " is in use by another run (pid " +
                                              std::to_string(::getpid()) + " on "),
                          error);
    DOCTEST_CHECK(contains(error, "wait for it to end, or choose another --out"));
    DOCTEST_CHECK_FALSE(fs::exists(dir / "run" / "last.pt"));
    // Another process: crowdloss-detect train.
    small_pedestrian_set(dir / "train", 2, 96, 96, 8, 1);
    const auto r = run_program(
        command(CROWDLOSS_DETECT_EXE, detect_train(dir / "train", dir / "train", 1), {"--out", (dir / "run").string()}),
        dir / "detect.log");
    DOCTEST_CHECK(r.code == 1);
    DOCTEST_CHECK_MESSAGE(contains(r.output, "crowdloss-detect: " + (dir / "run").string() +
                                                 " is in use by another run (pid " + std::to_string(::getpid())),
                          r.output);
  }
  // Released with its holder (also when a process dies: the system drops the lock).
  fit_linear(dir / "run", ex::ExistingRun::kRefuse, 1);
  DOCTEST_CHECK(read_metrics(dir / "run").size() == 1);
}

TEST_CASE(
    "faults: --resume keeps the checkpoint's settings: a contradicting option is refused, an omitted one is the "
    "checkpoint's") {
  const auto last = fs::path("run") / "last.pt";
  const nlohmann::json saved = {{"loss", "l2"}, {"width", 0.25},   {"epochs", 2},
                                {"workers", 2}, {"device", "cpu"}, {"deterministic", false}};
  nlohmann::json given = saved;
  given["loss"] = "pml", given["width"] = 0.5, given["epochs"] = 5, given["workers"] = 4, given["deterministic"] = true;
  // Options left out: the checkpoint's values; the resumable ones given: the command line's.
  const auto option = [](std::vector<std::string> keys) {
    return [keys](const std::string& key) {
      return std::find(keys.begin(), keys.end(), key) != keys.end() ? "--" + key : std::string();
    };
  };
  auto expected = saved;
  expected["epochs"] = 5, expected["workers"] = 4, expected["deterministic"] = true;
  DOCTEST_CHECK(ex::resumed_config(last, saved, given, option({"epochs", "workers", "deterministic"})) == expected);
  DOCTEST_CHECK(ex::resumed_config(last, saved, given, option({})) == saved);
  // A given option that contradicts the checkpoint: an error naming both values.
  DOCTEST_CHECK(
      error_of([&] {
        ex::resumed_config(last, saved, given, option({"epochs", "width"}));
      }) == "--resume: " + last.string() +
                " was trained with --width 0.25, not 0.5; a resumed run keeps its settings (but "
                "--epochs, --device, --workers, --deterministic): leave --width out, or train afresh in another --out");
  DOCTEST_CHECK(contains(error_of([&] { ex::resumed_config(last, saved, given, option({"loss"})); }),
                         "--loss \"l2\", not \"pml\""));
  // fit itself refuses a configuration that differs from its checkpoint's but for those settings.
  const auto dir = fixture_dir("faults_resume_settings");
  fit_linear(dir / "run", ex::ExistingRun::kRefuse, 1, {}, {{"lr", 0.1}, {"epochs", 1}});
  DOCTEST_CHECK(error_of([&] {
                  fit_linear(dir / "run", ex::ExistingRun::kResume, 2, {}, {{"lr", 0.2}, {"epochs", 2}});
                }) == "cannot resume " + (dir / "run" / "last.pt").string() +
                          ": it was trained with lr 0.1, this run asks for 0.2");
  fit_linear(dir / "run", ex::ExistingRun::kResume, 2, {}, {{"lr", 0.1}, {"epochs", 2}});
  DOCTEST_CHECK(read_metrics(dir / "run").size() == 2);
  // The program: trained with --loss l2; resumed without --loss (l2 is kept, not the recipe's
  // pml), then with --loss pml (refused).
  small_synthetic_set(dir / "train", 4, 64, 64, 50, 1);
  auto args = count_train(dir / "train", dir / "train", 1);
  const auto out = (dir / "cli").string();
  const auto first = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", out, "--loss", "l2"}), dir / "first.log");
  REQUIRE_MESSAGE(first.code == 0, first.output);
  args.back() = "2";  // --epochs 2
  const auto resumed = run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", out, "--resume"}), dir / "resumed.log");
  REQUIRE_MESSAGE(resumed.code == 0, resumed.output);
  DOCTEST_CHECK(ex::checkpoint_config(dir / "cli" / "last.pt").loss == ex::CountLoss::kL2);
  DOCTEST_CHECK(read_metrics(dir / "cli").size() == 2);
  args.back() = "3";
  const auto refused =
      run_program(command(CROWDLOSS_COUNT_EXE, args, {"--out", out, "--resume", "--loss", "pml"}), dir / "refused.log");
  DOCTEST_CHECK(refused.code == 1);
  DOCTEST_CHECK_MESSAGE(contains(refused.output, "was trained with --loss \"l2\", not \"pml\""), refused.output);
  DOCTEST_CHECK(read_metrics(dir / "cli").size() == 2);
}

TEST_CASE("faults: a missing, empty, truncated, corrupt or foreign checkpoint is one line naming the file") {
  const auto dir = fixture_dir("faults_checkpoints");
  small_synthetic_set(dir / "train", 4, 64, 64, 50, 1);
  const auto trained = run_program(
      command(CROWDLOSS_COUNT_EXE, count_train(dir / "train", dir / "train", 1), {"--out", (dir / "run").string()}),
      dir / "train.log");
  REQUIRE_MESSAGE(trained.code == 0, trained.output);
  const auto good = dir / "run" / "best.pt";
  fs::copy_file(good, dir / "truncated.pt");
  truncate_half(dir / "truncated.pt");
  write_text(dir / "empty.pt", "");
  write_text(dir / "text.pt", "not a checkpoint\n");
  {
    torch::serialize::OutputArchive archive;  // a LibTorch archive, but not a trainer's
    archive.write("weights", torch::rand({3}));
    archive.save_to((dir / "foreign.pt").string());
  }
  const auto not_archive = " is not a checkpoint: not a LibTorch archive, or a damaged one (";
  const std::vector<std::pair<fs::path, std::string>> cases = {
      {dir / "absent.pt", "no checkpoint " + (dir / "absent.pt").string()},
      {dir / "empty.pt", (dir / "empty.pt").string() + not_archive},
      {dir / "truncated.pt", (dir / "truncated.pt").string() + not_archive},
      {dir / "text.pt", (dir / "text.pt").string() + not_archive},
      {dir / "foreign.pt",
       (dir / "foreign.pt").string() + " is not a checkpoint of the crowdloss trainers (it holds no 'config')"},
  };
  for (const auto& [path, message] : cases) {
    INFO(path);
    DOCTEST_CHECK_MESSAGE(contains(error_of([&] { ex::load_model(path, "cpu"); }), message),
                          error_of([&] { ex::load_model(path, "cpu"); }));
    const auto r = run_program({CROWDLOSS_COUNT_EXE, "eval", "--checkpoint", path.string(), "--data",
                                "coco:" + (dir / "train" / "annotations.json").string()},
                               dir / "eval.log");
    DOCTEST_CHECK(r.code == 1);
    DOCTEST_CHECK_MESSAGE(contains(r.output, "crowdloss-count: " + message), r.output);
    DOCTEST_CHECK_MESSAGE(occurrences(r.output, "\n") == 1, r.output);  // one line, no backtrace
  }
  // A checkpoint of the other program, and weights of another model.
  DOCTEST_CHECK(error_of([&] { ex::load_detector(good, "cpu"); }) ==
                good.string() + " is not a crowdloss-detect checkpoint (its configuration: key 'assign' not found)");
  torch::nn::Linear other(3, 1);
  DOCTEST_CHECK(contains(error_of([&] { ex::load_weights(good, *other); }),
                         good.string() + " does not hold this model's weights ("));
}
