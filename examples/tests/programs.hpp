#pragma once
// Running the example programs (crowdloss-count, crowdloss-detect; paths from CMake in
// CROWDLOSS_COUNT_EXE and CROWDLOSS_DETECT_EXE) from the tests as child processes, POSIX only:
// start with the output going to a log file, poll, kill, wait.
#include "fixtures.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace crowdloss_examples_test {

/// The tests' environment for a child, with OMP_WAIT_POLICY=PASSIVE unless it is set: OpenMP
/// threads that spin while they wait make LibTorch many times slower when ctest runs tests side
/// by side on few cores, and the results do not depend on it.
inline std::vector<std::string> child_environment() {
  std::vector<std::string> env;
  bool wait_policy = false;
  for (char** e = environ; *e != nullptr; ++e) {
    env.emplace_back(*e);
    wait_policy = wait_policy || env.back().rfind("OMP_WAIT_POLICY=", 0) == 0;
  }
  if (!wait_policy) env.emplace_back("OMP_WAIT_POLICY=PASSIVE");
  return env;
}

/// A running program: `argv` (argv[0], the program's path, included) with stdout and stderr
/// going to `log`, in child_environment() plus `extra_env` ("NAME=value" each). The destructor
/// kills (SIGKILL) and reaps it if it still runs, so a failing test leaves no process behind.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::filesystem::path& log,
        const std::vector<std::string>& extra_env = {}) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const auto pointers = [](const std::vector<std::string>& strings) {
      std::vector<char*> p;
      for (const auto& x : strings) p.push_back(const_cast<char*>(x.c_str()));
      p.push_back(nullptr);
      return p;
    };
    auto env = child_environment();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    auto args = pointers(argv), envp = pointers(env);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + argv.at(0) + ": " + std::strerror(rc));
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }

  /// Whether it still runs (does not wait).
  bool running() {
    if (status_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
    return !status_;
  }

  /// Sends `signal`.
  void kill(int signal) { ::kill(pid_, signal); }

  /// Waits for the end; the exit code, or −signal when a signal ended it.
  int wait() {
    while (!status_) {
      int status = 0;
      if (::waitpid(pid_, &status, 0) == pid_)
        status_ = status;
      else if (errno != EINTR)
        throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    }
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -WTERMSIG(*status_);
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// A finished run: its exit code (−signal when killed) and its output (stdout and stderr).
struct Finished {
  int code;
  std::string output;
};

/// Runs `argv` to its end with the output in `log`.
inline Finished run_program(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  Child child(argv, log);
  const int code = child.wait();
  return {code, read_text(log)};
}

/// Polls `done()` every 10 ms until it holds (true) or `timeout` has passed (false).
template <typename Fn>
bool wait_until(Fn&& done, std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace crowdloss_examples_test
