#pragma once
// The main() of the single-threaded benchmarks that can also write their inputs for a Python
// comparison (bench_assign, bench_detect): one torch thread; with `<dump_flag>DIR` as the first
// argument, calls dump(DIR) and exits; otherwise runs Google Benchmark on the other arguments.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>

inline int single_thread_main(int argc, char** argv, const char* dump_flag, void (*dump)(const std::string& dir)) {
  at::set_num_threads(1);
  const size_t length = std::strlen(dump_flag);
  if (argc > 1 && std::strncmp(argv[1], dump_flag, length) == 0) {
    dump(argv[1] + length);
    return 0;
  }
  benchmark::AddCustomContext("torch_threads", "1");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
