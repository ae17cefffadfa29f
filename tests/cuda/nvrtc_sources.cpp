// Writes the NVRTC source of each of crowdloss's CUDA kernel modules, for each element type it is
// compiled for, into the folder given (<module>.cu), so that tests/cuda/compile_sources.cmake can
// compile them as CUDA with Clang on a machine without CUDA.
#include <crowdloss/detail/nms_cuda.hpp>
#include <crowdloss/detail/pml_cuda.hpp>
#include <crowdloss/detail/ssim_cuda.hpp>

#include <fstream>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: nvrtc_sources <folder>\n";
    return 2;
  }
  for (const auto& module :
       {crowdloss::detail::kPmlKernels, crowdloss::detail::kSsimKernels, crowdloss::detail::kNmsKernels})
    for (const auto dtype : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
      if (module.element(dtype) == nullptr) continue;  // NMS computes half boxes in float
      const std::string path = std::string(argv[1]) + "/" + module.name(dtype) + ".cu";
      std::ofstream(path) << module.source(dtype);
      std::cout << path << "\n";
    }
  return 0;
}
