#pragma once
// Data-parallel training for the example trainers, on c10d (docs/distributed.md):
// - DistributedEnv: this process's place, from the torchrun environment (RANK, WORLD_SIZE,
//   LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
// - launch_local: `--nproc-per-node N` starts the local ranks itself, as torchrun does, and stops
//   them all when one fails;
// - ProcessGroup: Gloo over a TCPStore (CPU tensors), with the collectives the trainers use —
//   gradients averaged in buckets, parameters broadcast from rank 0, small sums — and heartbeats,
//   so that a collective that fails because a rank died or hangs names that rank.
// Built where LibTorch's c10d Gloo headers and gloo's own are found (CROWDLOSS_EXAMPLES_HAVE_GLOO);
// elsewhere a distributed run is refused with a message saying so.
#include "cli.hpp"

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#if CROWDLOSS_EXAMPLES_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace crowdloss_examples {

/// This process's place in a data-parallel run. A process is a rank of one when RANK is set in
/// its environment (torchrun's workers, and launch_local's); otherwise it runs alone (world 1).
struct DistributedEnv {
  int64_t rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;

  bool distributed() const { return world > 1; }
  bool main() const { return rank == 0; }

  /// From RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; throws naming the variable
  /// for a malformed or inconsistent value.
  static DistributedEnv from_environment() {
    DistributedEnv e;
    if (std::getenv("RANK") == nullptr) return e;
    const auto integer = [](const char* name, int64_t fallback) {
      const char* text = std::getenv(name);
      if (text == nullptr) return fallback;
      try {
        size_t used = 0;
        const int64_t v = std::stoll(text, &used);
        if (used == std::string(text).size()) return v;
      } catch (const std::exception&) {
      }
      throw std::runtime_error(std::string("environment variable ") + name + "='" + text + "' is not an integer");
    };
    e.rank = integer("RANK", 0), e.world = integer("WORLD_SIZE", 1), e.local_rank = integer("LOCAL_RANK", e.rank);
    e.master_port = integer("MASTER_PORT", e.master_port);
    if (const char* addr = std::getenv("MASTER_ADDR")) e.master_addr = addr;
    check_value(e.world >= 1, "WORLD_SIZE", e.world, ">= 1");
    check_value(e.rank >= 0 && e.rank < e.world, "RANK", e.rank, "in [0, WORLD_SIZE)");
    check_value(e.local_rank >= 0, "LOCAL_RANK", e.local_rank, ">= 0");
    check_value(e.master_port > 0 && e.master_port < 65536, "MASTER_PORT", e.master_port, "a port number");
    return e;
  }
};

/// LibTorch's threads for this process: the machine's cores shared among the ranks on it
/// (LOCAL_WORLD_SIZE, which torchrun and launch_local set), at least 1.
inline int default_threads() {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const char* local = std::getenv("LOCAL_WORLD_SIZE");
  const long ranks = local != nullptr ? std::max(1L, std::atol(local)) : 1L;
  return static_cast<int>(std::max(1L, static_cast<long>(cores) / ranks));
}

/// How launch_local starts the local ranks (`--nproc-per-node`, `--nnodes`, `--node-rank`,
/// `--master-addr`, `--master-port`, as torchrun names them).
struct LaunchOptions {
  int64_t nproc_per_node = 1, nnodes = 1, node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  int64_t dist_timeout = 300;  // seconds a collective may wait for the other ranks
};

/// The launcher's options on a train command.
inline void add_launch_options(CLI::App& cmd, LaunchOptions& o) {
  cmd.add_option("--nproc-per-node", o.nproc_per_node,
                 "data-parallel training: start this many ranks on this machine (torchrun's option; ignored in a "
                 "process that torchrun or this launcher started)");
  cmd.add_option("--nnodes", o.nnodes, "machines taking part, each started with the same options");
  cmd.add_option("--node-rank", o.node_rank, "this machine's index in [0, --nnodes)");
  cmd.add_option("--master-addr", o.master_addr, "the address of node 0 (its rank 0 hosts the rendezvous store)");
  cmd.add_option("--master-port", o.master_port, "the rendezvous store's port on node 0");
  cmd.add_option("--dist-timeout", o.dist_timeout,
                 "seconds a collective waits for the other ranks before the run stops, naming the late ones");
}

/// Whether this process should start the local ranks (launch_local) rather than train itself.
inline bool should_launch(const LaunchOptions& o) {
  return std::getenv("RANK") == nullptr && (o.nproc_per_node > 1 || o.nnodes > 1);
}

/// Starts `o.nproc_per_node` copies of this program (`argv`) with RANK, LOCAL_RANK, WORLD_SIZE,
/// MASTER_ADDR, MASTER_PORT and CROWDLOSS_DIST_TIMEOUT set, and waits for them. When one fails
/// (non-zero exit or a signal), the others are sent SIGTERM (SIGKILL after 30 s) and the failure
/// is reported naming the rank; SIGINT and SIGTERM to the launcher are passed on. Returns 0 when
/// every rank succeeded, else the first failure's exit status (128 + signal for a signal).
inline int launch_local(const char* program, char** argv, const LaunchOptions& o) {
  check_value(o.nproc_per_node >= 1, "--nproc-per-node", o.nproc_per_node, ">= 1");
  check_value(o.nnodes >= 1, "--nnodes", o.nnodes, ">= 1");
  check_value(o.node_rank >= 0 && o.node_rank < o.nnodes, "--node-rank", o.node_rank, "in [0, --nnodes)");
  check_value(o.master_port > 0 && o.master_port < 65536, "--master-port", o.master_port, "a port number");
  check_value(o.dist_timeout >= 1, "--dist-timeout", o.dist_timeout, ">= 1");
  const int64_t world = o.nproc_per_node * o.nnodes;
  std::map<pid_t, int64_t> ranks;  // running children: pid → rank
  for (int64_t local = 0; local < o.nproc_per_node; ++local) {
    const int64_t rank = o.node_rank * o.nproc_per_node + local;
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("cannot start rank " + std::to_string(rank) + ": fork failed");
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
      setenv("CROWDLOSS_DIST_TIMEOUT", std::to_string(o.dist_timeout).c_str(), 1);
      execv("/proc/self/exe", argv);
      std::perror("execv /proc/self/exe");
      _exit(127);
    }
    ranks[pid] = rank;
  }
  // Pass SIGINT / SIGTERM on to the ranks rather than die with them running.
  static std::atomic<int> forwarded{0};
  struct sigaction action {};
  action.sa_handler = [](int sig) { forwarded = sig; };
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  int result = 0;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::now();
  const auto stop_all = [&](int sig) {
    for (const auto& [pid, rank] : ranks) kill(pid, sig);
  };
  while (!ranks.empty()) {
    if (const int sig = forwarded.exchange(0); sig != 0 && !stopping) {
      stop_all(sig);
      stopping = true, stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      if (result == 0) result = 128 + sig;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (stopping && std::chrono::steady_clock::now() > stop_deadline) stop_all(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const auto it = ranks.find(pid);
    if (it == ranks.end()) continue;
    const int64_t rank = it->second;
    ranks.erase(it);
    const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (!failed || stopping) continue;
    result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::cerr << program << ": rank " << rank << " (pid " << pid << ") "
              << (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                    : "was killed by signal " + std::to_string(WTERMSIG(status)))
              << "; stopping the other ranks\n";
    stop_all(SIGTERM);
    stopping = true, stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  }
  return result;
}

#if CROWDLOSS_EXAMPLES_HAVE_GLOO

/// The ranks of a data-parallel run: a Gloo process group over a TCPStore hosted by rank 0, with
/// each rank's heartbeat and the number of collectives it has entered in the store, so that a
/// failed or timed-out collective names the rank that died (no heartbeat) or is late (it has not
/// reached the collective the others wait in: it hangs or is slow).
class ProcessGroup {
 public:
  /// Joins the run `env` describes; waits up to `timeout` for the others to join, and lets each
  /// collective wait that long for them.
  ProcessGroup(const DistributedEnv& env, std::chrono::seconds timeout) : env_(env), timeout_(timeout) {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.main();
    so.numWorkers = static_cast<size_t>(env.world);
    so.waitWorkers = true;
    so.timeout = timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
      so.isServer = false, so.numWorkers = c10::nullopt, so.waitWorkers = false;
      beat_store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
          env.master_addr == "localhost" ? "127.0.0.1" : env.master_addr));
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(env.rank), static_cast<int>(env.world),
                                                        options);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world) +
                               " could not join the run at " + env.master_addr + ":" + std::to_string(env.master_port) +
                               " within " + std::to_string(timeout.count()) + " s: " + first_line(e.what()));
    }
    heartbeat_ = std::thread([this] {
      const auto key = "crowdloss/alive/" + std::to_string(env_.rank);
      while (!stop_) {
        try {
          beat_store_->add(key, 1);
        } catch (const std::exception&) {
          return;  // the store is gone: the collectives will say so
        }
        for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~ProcessGroup() {
    stop_ = true;
    if (heartbeat_.joinable()) heartbeat_.join();
  }
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const { return env_.rank; }
  int64_t world() const { return env_.world; }
  bool main() const { return env_.main(); }

  /// Sums `t` (a CPU tensor) over the ranks, in place.
  void all_reduce_sum(at::Tensor& t, const char* what) {
    std::vector<at::Tensor> tensors = {t};
    run(what, [&] { pg_->allreduce(tensors)->wait(); });
  }

  /// The largest value of `t` (a CPU tensor) over the ranks, element by element, in place.
  void all_reduce_max(at::Tensor& t, const char* what) {
    std::vector<at::Tensor> tensors = {t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    run(what, [&] { pg_->allreduce(tensors, o)->wait(); });
  }

  /// Rank 0's values of `tensors` (CPU tensors) on every rank, in place.
  void broadcast(std::vector<at::Tensor>& tensors, const char* what) {
    run(what, [&] {
      for (auto& t : tensors) {
        std::vector<at::Tensor> one = {t};
        pg_->broadcast(one)->wait();
      }
    });
  }

  /// Waits until every rank has arrived.
  void barrier(const char* what) {
    run(what, [&] { pg_->barrier()->wait(); });
  }

  /// Averages the gradients of `params` over the ranks, flattened into buckets of at most
  /// `bucket_bytes` (one collective each, not one per parameter), and sums `extra` (a small
  /// float32 tensor, e.g. the step's loss and image count) with the first bucket. A parameter
  /// without a gradient counts as zeros.
  void average_gradients(const std::vector<at::Tensor>& params, at::Tensor& extra, int64_t bucket_bytes = 25 << 20) {
    std::vector<std::vector<size_t>> buckets(1);
    int64_t bytes = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t size = params[i].numel() * 4;
      if (bytes > 0 && bytes + size > bucket_bytes) buckets.emplace_back(), bytes = 0;
      buckets.back().push_back(i);
      bytes += size;
    }
    const double scale = 1.0 / static_cast<double>(env_.world);
    for (size_t b = 0; b < buckets.size(); ++b) {
      std::vector<at::Tensor> pieces;
      for (const size_t i : buckets[b]) {
        const auto& p = params[i];
        pieces.push_back(p.grad().defined() ? p.grad().detach().reshape({-1}).to(at::kFloat)
                                            : torch::zeros({p.numel()}, at::kFloat));
      }
      if (b == 0) pieces.push_back(extra.reshape({-1}).to(at::kFloat));
      auto flat = torch::cat(pieces);
      all_reduce_sum(flat, "averaging gradients");
      int64_t offset = 0;
      for (const size_t i : buckets[b]) {
        const auto& p = params[i];
        const auto part = flat.narrow(0, offset, p.numel()).view(p.sizes()) * scale;
        offset += p.numel();
        if (p.grad().defined())
          p.mutable_grad().copy_(part);
        else
          p.mutable_grad() = part.to(p.dtype()).clone();
      }
      if (b == 0) extra.copy_(flat.narrow(0, offset, extra.numel()).view(extra.sizes()));
    }
  }

 private:
  /// Runs collective `fn`, first marking it entered; a failure becomes an error naming the ranks
  /// the heartbeats and the marks say were lost or late. Every rank enters the same collectives in
  /// the same order, so a rank that has entered fewer has not reached this one.
  template <class Fn>
  void run(const char* what, Fn fn) {
    ++entered_;
    mark_entered();
    try {
      fn();
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(env_.rank) + ": " + what + " failed: " + culprits() + " (" +
                               first_line(e.what()) + ")");
    }
  }

  void mark_entered() {
    try {
      store_->set("crowdloss/entered/" + std::to_string(env_.rank), to_bytes(std::to_string(entered_)));
    } catch (const std::exception&) {
      // a lost store shows in the collective that follows
    }
  }

  static std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

  /// Which ranks were lost: those whose heartbeat stopped (died), else those that entered fewer
  /// collectives (late).
  std::string culprits() {
    try {
      std::vector<int64_t> before(static_cast<size_t>(env_.world)), entered(static_cast<size_t>(env_.world), -1);
      for (int64_t r = 0; r < env_.world; ++r) before[static_cast<size_t>(r)] = beat(r);
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      std::string dead, late;
      int64_t most = 0;
      for (int64_t r = 0; r < env_.world; ++r) {
        if (beat(r) == before[static_cast<size_t>(r)]) dead += (dead.empty() ? "" : ", ") + std::to_string(r);
        const auto key = "crowdloss/entered/" + std::to_string(r);
        if (store_->check({key})) {
          const auto v = store_->get(key);
          entered[static_cast<size_t>(r)] = std::stoll(std::string(v.begin(), v.end()));
        }
        most = std::max(most, entered[static_cast<size_t>(r)]);
      }
      if (!dead.empty()) return "lost rank " + dead + " (its heartbeat stopped: the process died or is stopped)";
      for (int64_t r = 0; r < env_.world; ++r)
        if (entered[static_cast<size_t>(r)] < most) late += (late.empty() ? "" : ", ") + std::to_string(r);
      if (!late.empty())
        return "rank " + late + " did not arrive within " + std::to_string(timeout_.count()) +
               " s (it has not reached this collective: hung or slow)";
      return "no rank is known to be lost";
    } catch (const std::exception&) {
      return "lost rank 0 (the rendezvous store at " + env_.master_addr + ":" + std::to_string(env_.master_port) +
             " is gone: the process died)";
    }
  }

  int64_t beat(int64_t r) { return store_->add("crowdloss/alive/" + std::to_string(r), 0); }

  DistributedEnv env_;
  std::chrono::seconds timeout_;
  c10::intrusive_ptr<c10d::TCPStore> store_, beat_store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
  int64_t entered_ = 0;  // collectives this rank has entered
};

#else

/// Stands in where LibTorch's c10d Gloo headers or gloo's are missing: joining a run of more
/// than one rank fails, saying why.
class ProcessGroup {
 public:
  ProcessGroup(const DistributedEnv&, std::chrono::seconds) {
    throw std::runtime_error(
        "this build has no data-parallel training: LibTorch's c10d Gloo headers or gloo's (Debian: libgloo-dev) "
        "were not found when it was configured");
  }
  int64_t rank() const { return 0; }
  int64_t world() const { return 1; }
  bool main() const { return true; }
  void all_reduce_sum(at::Tensor&, const char*) {}
  void all_reduce_max(at::Tensor&, const char*) {}
  void broadcast(std::vector<at::Tensor>&, const char*) {}
  void barrier(const char*) {}
  void average_gradients(const std::vector<at::Tensor>&, at::Tensor&, int64_t = 0) {}
};

#endif

/// The process group of this process when it is a rank of a run of several (nullptr alone), with
/// the timeout launch_local passed on (CROWDLOSS_DIST_TIMEOUT) or `timeout` seconds.
inline std::shared_ptr<ProcessGroup> join_run(int64_t timeout) {
  const auto env = DistributedEnv::from_environment();
  if (!env.distributed()) return nullptr;
  if (const char* t = std::getenv("CROWDLOSS_DIST_TIMEOUT")) timeout = std::atoll(t);
  return std::make_shared<ProcessGroup>(env, std::chrono::seconds(std::max<int64_t>(1, timeout)));
}

}  // namespace crowdloss_examples
