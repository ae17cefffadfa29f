// Writes the NVRTC source of each of crowdloss's CUDA kernel modules, for each element type, into
// the folder given (<module>.cu), so that tests/cuda/compile_sources.cmake can compile them as
// CUDA with Clang on a machine without CUDA.
#include <crowdloss/detail/nms_cuda.hpp>
#include <crowdloss/detail/pml_cuda.hpp>
#include <crowdloss/detail/ssim_cuda.hpp>

#include <fstream>
#include <iostream>
#include <string>
#include <utility>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: nvrtc_sources <folder>\n";
    return 2;
  }
  const std::pair<const char*, std::string (*)(at::ScalarType)> modules[] = {
      {"crowdloss_pml", &crowdloss::detail::pml_cuda_source},
      {"crowdloss_ssim", &crowdloss::detail::ssim_cuda_source},
      {"crowdloss_nms", &crowdloss::detail::nms_cuda_source}};
  for (const auto& [name, source] : modules)
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      const std::string path =
          std::string(argv[1]) + "/" + name + (dtype == at::kDouble ? "_double" : "_float") + ".cu";
      std::ofstream(path) << source(dtype);
      std::cout << path << "\n";
    }
  return 0;
}
