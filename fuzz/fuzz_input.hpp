#pragma once
// Turns a fuzzer's bytes into the values a harness needs. Reads past the end give zeros, so every
// input, however short, is a valid test case.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace crowdloss_fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  /// An integer in [lo, hi].
  int64_t integer(int64_t lo, int64_t hi) {
    const auto span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(raw<uint32_t>() % span);
  }

  bool flag() { return (byte() & 1) != 0; }

  /// A double that is often a special value: NaN, ±inf, 0, −0, huge, tiny, the extremes of
  /// float, or else a value in [−scale, scale] or any bit pattern.
  double number(double scale = 1.0) {
    switch (byte() % 16) {
      case 0:
        return std::numeric_limits<double>::quiet_NaN();
      case 1:
        return std::numeric_limits<double>::infinity();
      case 2:
        return -std::numeric_limits<double>::infinity();
      case 3:
        return 0.0;
      case 4:
        return -0.0;
      case 5:
        return 1e300;
      case 6:
        return -1e300;
      case 7:
        return 1e-300;
      case 8:
        return std::numeric_limits<float>::max();
      case 9:
        return std::numeric_limits<double>::denorm_min();
      case 10:
        return raw<double>();
      default:
        return scale * (2.0 * raw<uint32_t>() / 4294967295.0 - 1.0);
    }
  }

  /// A value in [0, scale] (finite inputs for the differential checks).
  double unit(double scale = 1.0) { return scale * raw<uint32_t>() / 4294967295.0; }

  /// Everything not read yet.
  std::string rest() {
    std::string out(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
    pos_ = size_;
    return out;
  }

 private:
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }

  template <typename T>
  T raw() {
    unsigned char bytes[sizeof(T)];
    for (auto& b : bytes) b = byte();
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace crowdloss_fuzz
