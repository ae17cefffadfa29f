// The annotation-reader fuzz harness (fuzz_readers.cpp), shared by every reader's executable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

/// Writes the bytes as the annotation file of the format `reader` (coco, odgt, nwpu, jhu or mat)
/// and reads it back; aborts where the reader's exception does not name the file.
int crowdloss_fuzz_reader(std::string_view reader, const uint8_t* data, size_t size);
