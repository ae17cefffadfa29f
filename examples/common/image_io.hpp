#pragma once
// Image files through stb (Debian's libstb: stb_image for decoding JPEG/PNG/BMP/…,
// stb_image_write for PNG). Images are H×W×3 uint8 tensors.
#include <torch/torch.h>

#include <stb_image.h>
#include <stb_image_write.h>

#include <array>
#include <stdexcept>
#include <string>

namespace crowdloss_examples {

/// Decodes an image file to an H×W×3 uint8 tensor. Throws std::runtime_error naming the file
/// when it is missing or cannot be decoded.
inline at::Tensor load_image(const std::string& path) {
  int w = 0, h = 0, channels = 0;
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
