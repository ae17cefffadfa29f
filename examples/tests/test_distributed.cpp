// Data-parallel training (distributed.hpp, docs/distributed.md): two Gloo ranks on localhost
// train as one process with their global batch does, and a rank that dies, stops or hangs stops
// the other with an error naming it, after which --resume reproduces the uninterrupted run. The programs run as
// child processes (programs.hpp); skipped visibly where the build has no Gloo.
#include "support/checks.hpp"
#include "fault_support.hpp"
#include "fixtures.hpp"
#include "programs.hpp"
#include "detect_trainer.hpp"
#include "trainer.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ex = crowdloss_examples;
namespace fs = std::filesystem;
using namespace crowdloss_examples_test;

namespace {

/// Whether this build trains data-parallel; prints the skip marker when it does not.
bool gloo_or_skip(const char* what) {
#if CROWDLOSS_EXAMPLES_HAVE_GLOO
  (void)what;
  return true;
#else
  MESSAGE("CROWDLOSS_SKIPPED " << what << ": the examples were built without Gloo (Debian: libgloo-dev)");
  return false;
#endif
}

/// ‖a − b‖ / ‖a‖ over all the parameters of two models of one architecture (each model's
/// parameters as one vector), and the parameter tensor whose difference is the largest. Over the
/// whole model rather than per element: the two runs sum in other orders (other batch sizes, so
/// other kernels), and Adam turns a rounding-level difference in a near-zero gradient into a
/// visible one in that element's step, which says nothing about the training.
std::pair<double, std::string> weight_difference(const torch::nn::Module& x, const torch::nn::Module& y) {
  const auto px = x.named_parameters(), py = y.named_parameters();
  double diff = 0, norm = 0, largest = -1;
  std::string where;
  for (const auto& item : px) {
    const auto u = item.value().to(torch::kDouble), v = py[item.key()].to(torch::kDouble);
    const double d = (u - v).square().sum().item<double>();
    diff += d, norm += u.square().sum().item<double>();
    if (d > largest) largest = d, where = item.key();
  }
  return {std::sqrt(diff / std::max(norm, 1e-300)), where};
}

/// weight_difference of two checkpoints of the counting model.
std::pair<double, std::string> weight_difference(const fs::path& a, const fs::path& b) {
  return weight_difference(*ex::load_model(a, "cpu").ptr, *ex::load_model(b, "cpu").ptr);
}

/// A counting run's command line on the sets in `dir` (PML, CSRNet at width 0.125, 64² crops).
std::vector<std::string> count_args(const fs::path& dir, int64_t batch, int64_t epochs,
                                    const std::string& loss = "pml") {
  return {"train",
          "--data",
          "synthetic:" + (dir / "train").string(),
          "--val",
          "synthetic:" + (dir / "val").string(),
          "--loss",
          loss,
          "--width",
          "0.125",
          "--crop",
          "64",
          "--batch",
          std::to_string(batch),
          "--lr",
          "1e-3",
          "--workers",
          "1",
          "--seed",
          "5",
          "--epochs",
          std::to_string(epochs)};
}

/// The metrics of `dir`/metrics.jsonl that do not depend on the machine's speed.
std::vector<std::vector<double>> metric_values(const fs::path& dir) {
  std::vector<std::vector<double>> values;
  for (const auto& line : read_metrics(dir))
    values.push_back({line.at("train_loss").get<double>(), line.at("val_mae").get<double>(),
                      line.at("val_rmse").get<double>(), line.at("lr").get<double>()});
  return values;
}

void check_close(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b, double rtol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t k = 0; k < a[i].size(); ++k) {
      INFO("epoch " << i + 1 << ", value " << k);
      DOCTEST_CHECK(std::abs(a[i][k] - b[i][k]) <= rtol * std::max({std::abs(a[i][k]), std::abs(b[i][k]), 1e-3}));
    }
}

/// The environment torchrun gives rank `rank` of 2 on one machine, with the store at `port` and
/// collectives waiting `timeout` s. LOCAL_WORLD_SIZE makes each rank take 1 of the 2 cores, as
/// launched ranks do (another thread count would sum in another order).
std::vector<std::string> torchrun_env(int rank, int port, int timeout) {
  return {"RANK=" + std::to_string(rank),
          "LOCAL_RANK=" + std::to_string(rank),
          "WORLD_SIZE=2",
          "LOCAL_WORLD_SIZE=2",
          "MASTER_ADDR=127.0.0.1",
          "MASTER_PORT=" + std::to_string(port),
          "CROWDLOSS_DIST_TIMEOUT=" + std::to_string(timeout)};
}

/// Waits until rank 0's log `log` shows epoch 2 under way (required within 300 s).
void wait_for_epoch_2(Child& rank0, const fs::path& log) {
  const bool underway =
      wait_until([&] { return !rank0.running() || contains(read_text(log), "epoch 2/"); }, std::chrono::seconds(300));
  REQUIRE_MESSAGE(underway, "epoch 2 did not start within 300 s:\n" << read_text(log));
}

}  // namespace

TEST_CASE("distributed: two Gloo ranks at batch 4 train the counting model as one process at batch 8") {
  if (!gloo_or_skip("two-rank training")) return;
  const auto dir = fixture_dir("distributed_count");
  small_synthetic_set(dir / "train", 16, 80, 80, 60, 1);
  small_synthetic_set(dir / "val", 4, 80, 80, 60, 2);
  // PML reduces its sums over the ranks; DM-Count and the Bayesian loss train from the points,
  // sharded with the images.
  // (Its OT term, a sum over images, is scaled by the ranks; this run is too short for its
  // gradient to show whether it is.)
  for (const std::string loss : {"pml", "dm-count", "bayesian"}) {
    INFO("--loss " << loss);
    const auto one = run_program(
        command(CROWDLOSS_COUNT_EXE, count_args(dir, 8, 2, loss), {"--out", (dir / (loss + "-one")).string()}),
        dir / (loss + "-one.log"));
    REQUIRE_MESSAGE(one.code == 0, one.output);
    const auto two =
        run_program(command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 2, loss),
                            {"--out", (dir / (loss + "-two")).string(), "--nproc-per-node", "2", "--master-port",
                             loss == "pml"        ? "29611"
                             : loss == "dm-count" ? "29612"
                                                  : "29613"}),
                    dir / (loss + "-two.log"));
    REQUIRE_MESSAGE(two.code == 0, two.output);
    DOCTEST_CHECK(occurrences(two.output, "best validation MAE") == 1);  // rank 0 alone reports
    const auto [worst, where] = weight_difference(dir / (loss + "-one") / "last.pt", dir / (loss + "-two") / "last.pt");
    MESSAGE(loss << ": relative weight difference " << worst << " (largest in " << where << ")");
    DOCTEST_CHECK(worst < 1e-5);
    check_close(metric_values(dir / (loss + "-one")), metric_values(dir / (loss + "-two")), 1e-5);
  }
}

TEST_CASE("distributed: a killed rank stops the other, naming it, and --resume reproduces the uninterrupted run") {
  if (!gloo_or_skip("losing a rank")) return;
  const auto dir = fixture_dir("distributed_kill");
  small_synthetic_set(dir / "train", 32, 80, 80, 60, 3);
  small_synthetic_set(dir / "val", 4, 80, 80, 60, 4);
  const auto straight =
      run_program(command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 3),
                          {"--out", (dir / "straight").string(), "--nproc-per-node", "2", "--master-port", "29621"}),
                  dir / "straight.log");
  REQUIRE_MESSAGE(straight.code == 0, straight.output);
  // The ranks started as torchrun starts them, so that the test can kill rank 1 alone.
  const auto rank = command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 3), {"--out", (dir / "killed").string()});
  Child rank0(rank, dir / "rank0.log", torchrun_env(0, 29631, 120));
  Child rank1(rank, dir / "rank1.log", torchrun_env(1, 29631, 120));
  wait_for_epoch_2(rank0, dir / "rank0.log");
  rank1.kill(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  REQUIRE(rank1.wait() == -SIGKILL);
  const bool stopped = wait_until([&] { return !rank0.running(); }, std::chrono::seconds(60));
  REQUIRE_MESSAGE(stopped, "rank 0 still runs 60 s after rank 1 was killed:\n" << read_text(dir / "rank0.log"));
  const auto log0 = read_text(dir / "rank0.log");
  DOCTEST_CHECK(rank0.wait() == 1);
  INFO(log0);
  DOCTEST_CHECK(contains(log0, "lost rank 1"));
  MESSAGE("rank 0 stopped " << std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count()
                            << " s after rank 1 was killed");
  const auto resumed = run_program(
      command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 3),
              {"--out", (dir / "killed").string(), "--resume", "--nproc-per-node", "2", "--master-port", "29641"}),
      dir / "resumed.log");
  REQUIRE_MESSAGE(resumed.code == 0, resumed.output);
  DOCTEST_CHECK(weight_difference(dir / "straight" / "last.pt", dir / "killed" / "last.pt").first == 0);
  check_close(metric_values(dir / "straight"), metric_values(dir / "killed"), 0);
}

TEST_CASE("distributed: two Gloo ranks at batch 2 train the detector (POTO, frozen batch norms) as one at batch 4") {
  if (!gloo_or_skip("two-rank detector training")) return;
  const auto dir = fixture_dir("distributed_detect");
  small_pedestrian_set(dir / "train", 8, 96, 96, 6, 1);
  small_pedestrian_set(dir / "val", 2, 96, 96, 6, 2);
  auto args = detect_train(dir / "train", dir / "val", 2);
  args.insert(args.end(), {"--assign", "poto", "--freeze-bn"});
  // At detect_train's lr of 1e-3 the two runs part after a few steps: a rounding-level difference
  // flips one of POTO's matches (a discrete choice), and that gradient then differs in full. At
  // 1e-4 the matches stay the same over both epochs.
  const auto with_batch = [&](const std::string& batch) {
    auto a = args;
    for (size_t i = 0; i + 1 < a.size(); ++i) {
      if (a[i] == "--batch") a[i + 1] = batch;
      if (a[i] == "--lr") a[i + 1] = "1e-4";
    }
    return a;
  };
  const auto one =
      run_program(command(CROWDLOSS_DETECT_EXE, with_batch("4"), {"--out", (dir / "one").string()}), dir / "one.log");
  REQUIRE_MESSAGE(one.code == 0, one.output);
  const auto two =
      run_program(command(CROWDLOSS_DETECT_EXE, with_batch("2"),
                          {"--out", (dir / "two").string(), "--nproc-per-node", "2", "--master-port", "29651"}),
                  dir / "two.log");
  REQUIRE_MESSAGE(two.code == 0, two.output);
  auto a = ex::load_detector(dir / "one" / "last.pt", "cpu"), b = ex::load_detector(dir / "two" / "last.pt", "cpu");
  const auto [worst, where] = weight_difference(*a.first, *b.first);
  MESSAGE("relative weight difference " << worst << " (largest in " << where << ")");
  DOCTEST_CHECK(worst < 1e-5);
  const auto la = read_metrics(dir / "one"), lb = read_metrics(dir / "two");
  REQUIRE(la.size() == lb.size());
  for (size_t i = 0; i < la.size(); ++i)
    for (const char* key : {"ap50", "mmr", "recall"}) {
      INFO("epoch " << i + 1 << " " << key);
      DOCTEST_CHECK(la[i].at(key).get<double>() == doctest::Approx(lb[i].at(key).get<double>()).epsilon(1e-5));
    }
}

TEST_CASE("distributed: a stopped rank makes the other stop within --dist-timeout, naming it") {
  if (!gloo_or_skip("a stopped rank")) return;
  const auto dir = fixture_dir("distributed_stop");
  small_synthetic_set(dir / "train", 32, 80, 80, 60, 5);
  small_synthetic_set(dir / "val", 4, 80, 80, 60, 6);
  const auto args = command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 3), {"--out", (dir / "run").string()});
  Child rank0(args, dir / "rank0.log", torchrun_env(0, 29661, 10));
  Child rank1(args, dir / "rank1.log", torchrun_env(1, 29661, 10));
  wait_for_epoch_2(rank0, dir / "rank0.log");
  rank1.kill(SIGSTOP);  // hangs: alive, but neither computing nor answering
  const auto stopped_at = std::chrono::steady_clock::now();
  const bool ended = wait_until([&] { return !rank0.running(); }, std::chrono::seconds(60));
  rank1.kill(SIGKILL);
  REQUIRE_MESSAGE(ended, "rank 0 still runs 60 s after rank 1 was stopped:\n" << read_text(dir / "rank0.log"));
  const auto log0 = read_text(dir / "rank0.log");
  INFO(log0);
  DOCTEST_CHECK(rank0.wait() == 1);
  DOCTEST_CHECK(contains(log0, "lost rank 1"));
  MESSAGE("rank 0 stopped " << std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count()
                            << " s after rank 1 was stopped (timeout 10 s)");
}

// A rank that hangs while its process lives (its heartbeat thread still beats): here its loader
// blocks opening an image that has become a FIFO with no writer, as on a stuck network file
// system. The other rank's collective times out, and the marks of the collectives each rank has
// entered name the rank behind.
TEST_CASE("distributed: a rank hung with its heartbeat running is named as behind within --dist-timeout") {
  if (!gloo_or_skip("a hung rank")) return;
  const auto dir = fixture_dir("distributed_hang");
  const auto samples = small_synthetic_set(dir / "train", 96, 80, 80, 60, 7);
  small_synthetic_set(dir / "val", 4, 80, 80, 60, 8);
  // The image rank 1 loads last in epoch 3 (its batch 12 of 12): the trainer's schedule.
  const ex::BatchSchedule schedule(96, 4, /*shuffle=*/true, /*workers=*/1, /*seed=*/5, ex::Shard{1, 2, true});
  const auto order = schedule.epoch_order(2);
  const auto& image = samples.at(static_cast<size_t>(schedule.sample_at(order, schedule.positions(11).back()))).image;
  const auto args = command(CROWDLOSS_COUNT_EXE, count_args(dir, 4, 3), {"--out", (dir / "run").string()});
  Child rank0(args, dir / "rank0.log", torchrun_env(0, 29671, 10));
  Child rank1(args, dir / "rank1.log", torchrun_env(1, 29671, 10));
  wait_for_epoch_2(rank0, dir / "rank0.log");
  fs::remove(image);
  REQUIRE(mkfifo(image.c_str(), 0600) == 0);  // opening it for reading now blocks
  const auto blocked_at = std::chrono::steady_clock::now();
  const bool ended = wait_until([&] { return !rank0.running(); }, std::chrono::seconds(120));
  MESSAGE("rank 0 stopped " << std::chrono::duration<double>(std::chrono::steady_clock::now() - blocked_at).count()
                            << " s after rank 1's image became a FIFO (timeout 10 s; epoch 3 starts after that)");
  const bool hung = rank1.running();
  rank1.kill(SIGKILL);
  REQUIRE_MESSAGE(ended, "rank 0 still runs 120 s after epoch 2 began:\n" << read_text(dir / "rank0.log"));
  const auto log0 = read_text(dir / "rank0.log");
  INFO(log0);
  DOCTEST_CHECK(hung);
  DOCTEST_CHECK(rank0.wait() == 1);
  DOCTEST_CHECK(contains(log0, "rank 1 did not arrive within 10 s (it has not reached this collective: hung or slow)"));
  DOCTEST_CHECK(!contains(log0, "lost rank"));
  DOCTEST_CHECK(read_metrics(dir / "run").size() == 2);  // epochs 1 and 2 kept
}
