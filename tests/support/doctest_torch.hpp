#pragma once
// Test support header, and the tests' precompiled header. Order matters: Debian's LibTorch is
// built with glog, whose CHECK / CHECK_EQ / ... macros would clobber doctest's, so torch comes
// first, glog's macros are removed, and doctest comes last.
#include <torch/torch.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#undef CHECK_NOTNULL

#include <doctest/doctest.h>

#include <iostream>
#include <string>

// Note: compare dtypes inside parentheses, CHECK((a.scalar_type() == b)): doctest's stringifier
// would find c10::toString(ScalarType) by argument-dependent lookup, which returns a const char*.

namespace crowdloss_test {

/// Directory of the checked-in reference data (tests/data), passed in by CMake.
inline std::string data_path(const std::string& file) { return std::string(CROWDLOSS_TEST_DATA_DIR) + "/" + file; }

/// True when a CUDA device is usable; otherwise prints the marker that ctest turns into "Skipped"
/// (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt), naming the test that could not run.
inline bool cuda_or_skip(const char* what) {
  if (torch::cuda::is_available()) return true;
  std::cout << "CROWDLOSS_SKIPPED: no CUDA device, " << what << " not run\n";
  return false;
}

}  // namespace crowdloss_test
