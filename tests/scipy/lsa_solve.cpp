// Reads cost matrices from a binary file and writes crowdloss's assignment of each, by the dense
// and by the sparse search, for lsa_vs_scipy_test.py to compare with SciPy's.
//
//   lsa_solve IN OUT
// IN:  records of int64 rows, int64 cols, int64 maximize, then rows·cols float64, row-major.
// OUT: per record and search (dense, then sparse): int64 n then n int64 columns, one per row
//      of the result; n = −1 for "infeasible", −2 for "invalid numeric entries".
#include <crowdloss/assign/linear_sum_assignment.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
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
    for (const auto search : {crowdloss::detail::LsapSearch::dense, crowdloss::detail::LsapSearch::sparse}) {
      try {
        const auto a = crowdloss::detail::solve_lsap<double>({m.data(), rows, cols, cols, 1}, header[2] != 0,
                                                             "linear_sum_assignment", search);
        put(static_cast<int64_t>(a.cols.size()));
        for (const int64_t c : a.cols) put(c);
      } catch (const c10::Error& e) {
        put(std::string(e.what()).find("infeasible") != std::string::npos ? -1 : -2);
      }
    }
  }
  return out ? 0 : 1;
}
