// The entry point of one annotation reader's fuzzer; the CMake definition CROWDLOSS_FUZZ_READER
// names the format. The harness itself (fuzz_readers.cpp) is compiled once for all of them.
#include "fuzz_readers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return crowdloss_fuzz_reader(CROWDLOSS_FUZZ_READER, data, size);
}
