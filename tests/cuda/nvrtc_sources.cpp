// Writes the NVRTC source of each of crowdloss's CUDA kernel modules, for each element type it is
// compiled for, into the folder given (<module>.cu), so that tests/cuda/compile_sources.cmake can
// compile them as CUDA with Clang on a machine without CUDA.
#include <crowdloss/detail/nms_cuda.hpp>
#include <crowdloss/detail/pml_cuda.hpp>
#include <crowdloss/detail/ssim_cuda.hpp>

#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: nvrtc_sources <folder>\n";
    return 2;
  }
  using crowdloss::detail::cuda_jit::KernelSource;
  const std::vector<at::ScalarType> all = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
  const std::vector<at::ScalarType> boxes = {at::kFloat, at::kDouble};  // NMS computes half boxes in float
  const std::vector<std::pair<KernelSource, std::vector<at::ScalarType>>> modules = {
      {crowdloss::detail::kPmlKernels, all},
      {crowdloss::detail::kSsimKernels, all},
      {crowdloss::detail::kNmsKernels, boxes}};
  for (const auto& [module, dtypes] : modules)
    for (const auto dtype : dtypes) {
      const std::string path = std::string(argv[1]) + "/" + module.name(dtype) + ".cu";
      std::ofstream(path) << module.source(dtype);
      std::cout << path << "\n";
    }
  return 0;
}
