#pragma once
// Image files through stb (Debian's libstb: stb_image for decoding JPEG/PNG/BMP/…,
// stb_image_write for PNG). Images are H×W×3 uint8 tensors.
#include <torch/torch.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace crowdloss_examples {

/// The most pixels `load_image` decodes: 64 Mpx (64,000,000, e.g. 8000×8000) unless the program's
/// `--max-megapixels` sets another limit. A larger image is refused from its header, before any
/// decoding: a small, well-compressed PNG can declare 20000×20000 pixels, 1.2 GB decoded and
/// 4.8 GB as the float tensor the loaders make of it.
inline std::atomic<int64_t>& max_image_pixels() {
  static std::atomic<int64_t> limit{64'000'000};
  return limit;
}

/// Decodes an image file to an H×W×3 uint8 tensor. Throws std::runtime_error naming the file
/// when it is missing or cannot be decoded, or when its header declares more pixels than
/// `max_image_pixels()` (naming the size and the limit).
inline at::Tensor load_image(const std::string& path) {
  int w = 0, h = 0, channels = 0;
  if (!stbi_info(path.c_str(), &w, &h, &channels))
    throw std::runtime_error("cannot read image " + path + ": " + stbi_failure_reason());
  const int64_t pixels = static_cast<int64_t>(w) * h, limit = max_image_pixels();
  if (pixels > limit) {
    char text[160];
    std::snprintf(text, sizeof text,
                  " is %d×%d pixels (%.3g Mpx), above the limit of %.3g Mpx (--max-megapixels raises it)", w, h,
                  static_cast<double>(pixels) / 1e6, static_cast<double>(limit) / 1e6);
    throw std::runtime_error("image " + path + text);
  }
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &channels, 3);
  if (data == nullptr) throw std::runtime_error("cannot read image " + path + ": " + stbi_failure_reason());
  auto image = torch::from_blob(data, {h, w, 3}, torch::kUInt8).clone();
  stbi_image_free(data);
  return image;
}

/// The {height, width} of an image file without decoding its pixels.
inline std::array<int64_t, 2> image_size(const std::string& path) {
  int w = 0, h = 0, channels = 0;
  if (!stbi_info(path.c_str(), &w, &h, &channels))
    throw std::runtime_error("cannot read image header " + path + ": " + stbi_failure_reason());
  return {h, w};
}

/// Writes an H×W×3 (or H×W) uint8 tensor as PNG. Throws std::runtime_error naming the file.
inline void save_png(const std::string& path, const at::Tensor& image) {
  const auto img = image.dim() == 2 ? image.unsqueeze(2) : image;
  if (img.scalar_type() != torch::kUInt8 || img.dim() != 3)
    throw std::runtime_error("save_png " + path + ": expected an H×W×C uint8 tensor");
  const auto c = img.contiguous();
  const int h = static_cast<int>(c.size(0)), w = static_cast<int>(c.size(1)), ch = static_cast<int>(c.size(2));
  if (!stbi_write_png(path.c_str(), w, h, ch, c.data_ptr<uint8_t>(), w * ch))
    throw std::runtime_error("cannot write PNG " + path);
}

}  // namespace crowdloss_examples
