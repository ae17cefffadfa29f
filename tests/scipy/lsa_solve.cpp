// Reads cost matrices from a binary file and writes crowdloss's assignment of each, by the dense
// search with the best instruction set, by the dense search with the baseline set, and by the
// sparse search, for lsa_vs_scipy_test.py to compare with SciPy's.
//
//   lsa_solve IN OUT
// IN:  records of int64 rows, int64 cols, int64 maximize, then rows·cols float64, row-major.
// OUT: per record and search (in that order): int64 n then n int64 columns, one per row
//      of the result; n = −1 for "infeasible", −2 for "invalid numeric entries".
#include <crowdloss/assign/linear_sum_assignment.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: lsa_solve IN OUT\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::ofstream out(argv[2], std::ios::binary);
  const auto put = [&](int64_t x) { out.write(reinterpret_cast<const char*>(&x), sizeof x); };
  int64_t header[3];
  while (in.read(reinterpret_cast<char*>(header), sizeof header)) {
    const int64_t rows = header[0], cols = header[1];
    std::vector<double> m(static_cast<size_t>(rows * cols));
    in.read(reinterpret_cast<char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(double)));
    using crowdloss::detail::CpuCapability;
    using crowdloss::detail::LsapSearch;
    const CpuCapability best = crowdloss::detail::cpu_capability();
    const std::pair<LsapSearch, CpuCapability> runs[] = {
        {LsapSearch::dense, best}, {LsapSearch::dense, CpuCapability::baseline}, {LsapSearch::sparse, best}};
    for (const auto& run : runs) {
      crowdloss::detail::cpu_capability() = run.second;
      try {
        const auto a = crowdloss::detail::solve_lsap<double>({m.data(), rows, cols, cols, 1}, header[2] != 0,
                                                             "linear_sum_assignment", run.first);
        put(static_cast<int64_t>(a.cols.size()));
        for (const int64_t c : a.cols) put(c);
      } catch (const c10::Error& e) {
        put(std::string(e.what()).find("infeasible") != std::string::npos ? -1 : -2);
      }
    }
    crowdloss::detail::cpu_capability() = best;
  }
  return out ? 0 : 1;
}
