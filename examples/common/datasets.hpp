#pragma once
// Readers for crowd-counting datasets in their native layouts, and the COCO-style JSON the PML
// authors convert everything to (one annotation per head, the point at the bbox centre).
// Every reader returns the samples sorted by image path; every missing or corrupt file is
// reported with its path, and with a `BadSamples` that skips, a bad sample is left out instead.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
#include <matio.h>
#include <zlib.h>
#endif

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace crowdloss_examples {

namespace fs = std::filesystem;

/// One annotated image: its file and its head points (N×2 float32, x then y, in pixels).
struct CrowdSample {
  std::string image;
  at::Tensor points;
};

/// `message`, with `path` in front unless it already names it.
inline std::string naming(const std::string& path, const std::string& message) {
  return message.find(path) != std::string::npos ? message : path + ": " + message;
}

/// What happens to a sample whose image or annotation cannot be read (`--skip-bad`). By default
/// the first one stops the run: `report` throws an error naming the file. With `skip`, `report`
/// writes one warning line naming the file to `log` (once per file, however often it is met)
/// and counts it, and the caller leaves the sample out. One object serves the readers and the
/// loaders of a run; thread-safe.
class BadSamples {
 public:
  explicit BadSamples(bool skip = false, std::ostream& log = std::cerr) : skip_(skip), log_(&log) {}

  bool skipping() const { return skip_; }

  /// The sample `path` (an image, or an annotation file and line) failed with `error`.
  void report(const std::string& path, const std::exception& error) {
    const auto message = naming(path, error.what());
    if (!skip_) throw std::runtime_error(message);
    std::lock_guard<std::mutex> lock(m_);
    if (paths_.insert(path).second) *log_ << "warning: skipped a bad sample: " << message << std::endl;
  }

  /// The number of different bad samples reported.
  int64_t count() const {
    std::lock_guard<std::mutex> lock(m_);
    return static_cast<int64_t>(paths_.size());
  }

  /// "skipped N bad samples".
  std::string summary() const {
    const auto n = count();
    return "skipped " + std::to_string(n) + (n == 1 ? " bad sample" : " bad samples");
  }

 private:
  bool skip_;
  std::ostream* log_;
  mutable std::mutex m_;
  std::set<std::string> paths_;
};

/// Reports a bad sample to `bad`; without one, throws the error naming `path` (see BadSamples).
inline void report_bad_sample(BadSamples* bad, const std::string& path, const std::exception& error) {
  if (bad == nullptr) throw std::runtime_error(naming(path, error.what()));
  bad->report(path, error);
}

namespace data_detail {

/// Runs `read` for the sample `path`; its exception goes to report_bad_sample. Returns whether
/// the sample was read (false: skipped).
template <typename Fn>
bool read_sample(BadSamples* bad, const std::string& path, Fn&& read) {
  try {
    read();
    return true;
  } catch (const std::exception& e) {
    report_bad_sample(bad, path, e);
    return false;
  }
}

inline at::Tensor points_tensor(const std::vector<float>& xy) {
  return torch::tensor(xy, torch::kFloat32).view({-1, 2}).clone();
}

inline nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("corrupt JSON in " + path.string() + ": " + e.what());
  }
}

/// Image files (jpg, jpeg, png) directly in `dir`, sorted.
inline std::vector<fs::path> images_in(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error("no image directory " + dir.string());
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline void sort_samples(std::vector<CrowdSample>& samples) {
  std::sort(samples.begin(), samples.end(),
            [](const CrowdSample& a, const CrowdSample& b) { return a.image < b.image; });
}

/// `root`/`name` (lexically normalised) for an image file that an annotation names. An absolute
/// `name`, or one that climbs out of `root` ("../x", "a/../../x"), is an error naming it and
/// `root` unless `allow_outside`: annotation files are data, and may come from anywhere.
inline fs::path file_in(const fs::path& root, const std::string& name, bool allow_outside) {
  const fs::path relative(name);
  const auto normal = relative.lexically_normal();
  const bool outside =
      relative.has_root_name() || relative.has_root_directory() || (!normal.empty() && *normal.begin() == "..");
  if (outside && !allow_outside)
    throw std::runtime_error("the image '" + name + "' lies outside the data set's folder " + root.string() +
                             " (--allow-outside-paths allows it)");
  return (root / relative).lexically_normal();
}

/// The images of a COCO-style JSON, {id: path} with each file_name resolved in `image_root`
/// (file_in); `invalid(what)` makes the error naming the file for a missing or malformed `images`
/// array, a file_name outside `image_root` (unless `allow_outside`) or a missing `annotations`
/// array.
template <typename Invalid>
std::map<int64_t, std::string> coco_files(const nlohmann::json& j, const fs::path& image_root, bool allow_outside,
                                          const Invalid& invalid) {
  std::map<int64_t, std::string> files;
  try {
    for (const auto& im : j.at("images"))
      files[im.at("id").get<int64_t>()] =
          file_in(image_root, im.at("file_name").get<std::string>(), allow_outside).string();
    if (!j.at("annotations").is_array()) throw std::runtime_error("'annotations' is not an array");
  } catch (const std::exception& e) {
    throw invalid(e.what());
  }
  return files;
}

/// Runs `read(annotation, image_id)` for each annotation of a COCO-style JSON `j` whose images are
/// `files` (see coco_files). An annotation that names no listed image,
/// or whose `read` throws, is a bad sample (see BadSamples): of its image when it names one, else
/// of `json_path` and its index; `invalid(what)` makes the error naming the file. Returns the ids
/// of the images left out.
template <typename Invalid, typename Read>
std::set<int64_t> read_coco_annotations(const nlohmann::json& j, const std::map<int64_t, std::string>& files,
                                        const fs::path& json_path, BadSamples* bad, const Invalid& invalid,
                                        Read&& read) {
  std::set<int64_t> dropped;
  const auto& annotations = j.at("annotations");
  for (size_t k = 0; k < annotations.size(); ++k) {
    const auto& a = annotations[k];
    const auto id = a.is_object() && a.contains("image_id") && a.at("image_id").is_number_integer()
                        ? a.at("image_id").get<int64_t>()
                        : -1;
    const bool known = files.count(id) > 0;
    const auto sample = known ? files.at(id) : json_path.string() + ": annotation " + std::to_string(k);
    const bool valid = read_sample(bad, sample, [&] {
      try {
        if (!known) throw std::runtime_error("no image_id of a listed image");
        read(a, id);
      } catch (const std::exception& e) {
        throw invalid("annotation " + std::to_string(k) + " (image_id " + std::to_string(id) + "): " + e.what());
      }
    });
    if (!valid && known) dropped.insert(id);
  }
  return dropped;
}

#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
/// An N×2 numeric MATLAB array → points; `what` names the file in errors.
inline at::Tensor mat_points(matvar_t* v, const std::string& what) {
  if (v == nullptr || v->rank != 2 || (v->dims[1] != 2 && v->dims[0] * v->dims[1] != 0))
    throw std::runtime_error(what + ": expected an N×2 array of points");
  const int64_t n = v->dims[1] == 2 ? static_cast<int64_t>(v->dims[0]) : 0;
  const size_t element = v->class_type == MAT_C_DOUBLE ? sizeof(double) : sizeof(float);
  // A damaged file can declare more points than it holds, or a complex/sparse array.
  if (n > 0 && (v->data == nullptr || v->isComplex || v->class_type == MAT_C_SPARSE ||
                v->nbytes < static_cast<size_t>(2 * n) * element))
    throw std::runtime_error(what + ": the point array is damaged (no or too little data)");
  std::vector<float> xy(static_cast<size_t>(2 * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < 2; ++j) {
      const size_t k = static_cast<size_t>(i + n * j);  // MATLAB arrays are column-major
      double value = 0;
      switch (v->class_type) {
        case MAT_C_DOUBLE:
          value = static_cast<const double*>(v->data)[k];
          break;
        case MAT_C_SINGLE:
          value = static_cast<const float*>(v->data)[k];
          break;
        default:
          throw std::runtime_error(what + ": points are not a double or single array");
      }
      xy[static_cast<size_t>(2 * i + j)] = static_cast<float>(value);
    }
  }
  return points_tensor(xy);
}

/// The number of elements of a MATLAB array (0 for a damaged one).
inline size_t mat_elements(const matvar_t* v) {
  if (v->rank <= 0 || v->dims == nullptr) return 0;
  size_t n = 1;
  for (int d = 0; d < v->rank; ++d) n *= v->dims[d];
  return n;
}

/// The first element of a cell array, or null when there is none. libmatio trusts the file's
/// declared sizes, so a damaged file's arrays are checked against the data actually read.
inline matvar_t* mat_first_element(const matvar_t* cell) {
  if (cell->data == nullptr || mat_elements(cell) == 0 || cell->nbytes < sizeof(matvar_t*)) return nullptr;
  return static_cast<matvar_t* const*>(cell->data)[0];
}

/// Field `name` of a struct's first element, or null (checked like mat_first_element).
inline matvar_t* mat_field(const matvar_t* s, const char* name) {
  const unsigned fields = Mat_VarGetNumberOfFields(const_cast<matvar_t*>(s));
  char* const* names = Mat_VarGetStructFieldnames(s);
  if (s->data == nullptr || names == nullptr || mat_elements(s) == 0 || s->nbytes < fields * sizeof(matvar_t*))
    return nullptr;
  for (unsigned i = 0; i < fields; ++i)
    if (names[i] != nullptr && std::strcmp(names[i], name) == 0) return static_cast<matvar_t* const*>(s->data)[i];
  return nullptr;
}

/// A structural check of MAT-file version 5 (and 7, its compressed form) before libmatio reads
/// it (7.3 files are HDF5, read through libhdf5; version 4 files, which no crowd data set uses,
/// are refused). libmatio trusts the sizes a file declares and allocates for them before reading: a damaged
/// or hostile file of a few hundred bytes can declare a 1×1,761,607,681 cell array, for which it
/// allocates 14 GB of element pointers. Here every data element must fit in its parent, and every
/// array must have room for what its dimensions declare (8 bytes per cell or struct element, the
/// smallest element tag; 1 byte per numeric element, the narrowest type MATLAB stores; a sparse
/// array's nzmax likewise) and for each of its parts, recursively, through the compressed elements
/// too (inflated up to a cap). Only the sizes are checked; the rest is libmatio's.
class MatCheck {
 public:
  /// Checks the file `path`; throws std::runtime_error naming it and the fault.
  static void file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open MATLAB file " + path.string());
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < 128)
      throw std::runtime_error(path.string() + ": not a MATLAB 5 file (shorter than its 128-byte header)");
    const auto version = bytes.substr(124, 4);
    if (version == std::string("\0\2IM", 4) || version == std::string("\2\0MI", 4))
      return;  // 7.3: HDF5, read by libhdf5
    if (version != std::string("\0\1IM", 4) && version != std::string("\1\0MI", 4))
      throw std::runtime_error(path.string() + ": not a MATLAB 5, 7 or 7.3 file");
    MatCheck check(path.string(), bytes[126] == 'M');
    check.elements(reinterpret_cast<const unsigned char*>(bytes.data()), 128, bytes.size(), 0);
  }

 private:
  static constexpr uint32_t kInt32 = 5, kUInt32 = 6, kMatrix = 14, kCompressed = 15;
  static constexpr uint32_t kCell = 1, kStruct = 2, kObject = 3, kSparse = 5, kLastClass = 15, kFunction = 16;
  static constexpr size_t kMaxInflated = size_t{256} << 20;  // bytes of one compressed element
  static constexpr int kMaxDepth = 32;

  struct Element {
    uint32_t type;
    size_t payload, bytes, next;  // [payload, payload + bytes); the next element at `next`
  };

  MatCheck(std::string what, bool swap) : what_(std::move(what)), swap_(swap) {}

  [[noreturn]] void fail(const std::string& fault) const {
    throw std::runtime_error(what_ + ": a damaged MATLAB file (" + fault + ")");
  }

  uint32_t u32(const unsigned char* data, size_t at) const {
    uint32_t v;
    std::memcpy(&v, data + at, 4);
    return swap_ ? __builtin_bswap32(v) : v;
  }

  /// The data element at `at`, which must end by `end`.
  Element element(const unsigned char* data, size_t at, size_t end) const {
    if (end - at < 8) fail("a data element is cut short");
    const uint32_t first = u32(data, at);
    if (first >> 16 != 0) {  // the small format: the size in the tag's upper half, the data after it
      if (first >> 16 > 4) fail("a small data element declares more than 4 bytes");
      return {first & 0xffff, at + 4, first >> 16, at + 8};
    }
    const size_t bytes = u32(data, at + 4);
    if (bytes > end - at - 8)
      fail("a data element declares " + std::to_string(bytes) + " bytes, more than it has room for");
    const size_t padded = first == kCompressed ? bytes : (bytes + 7) / 8 * 8;  // compressed ones are not padded
    return {first, at + 8, bytes, std::min(end, at + 8 + padded)};
  }

  /// The data elements in [at, end), as at the top level of a file.
  void elements(const unsigned char* data, size_t at, size_t end, int depth) const {
    while (at < end) {
      const auto e = element(data, at, end);
      if (e.type == kMatrix) matrix(data, e.payload, e.payload + e.bytes, depth);
      if (e.type == kCompressed) {
        const auto inflated = inflate(data + e.payload, e.bytes);
        elements(reinterpret_cast<const unsigned char*>(inflated.data()), 0, inflated.size(), depth + 1);
      }
      at = e.next;
    }
  }

  std::string inflate(const unsigned char* data, size_t bytes) const {
    z_stream z{};
    if (inflateInit(&z) != Z_OK) fail("zlib cannot start");
    z.next_in = const_cast<unsigned char*>(data);
    z.avail_in = static_cast<uInt>(bytes);
    std::string out;
    int status = Z_OK;
    while (status == Z_OK && out.size() < kMaxInflated) {
      const size_t done = out.size();
      out.resize(std::min(kMaxInflated, done + (size_t{1} << 16)));
      z.next_out = reinterpret_cast<unsigned char*>(&out[done]);
      z.avail_out = static_cast<uInt>(out.size() - done);
      status = ::inflate(&z, Z_NO_FLUSH);
      out.resize(out.size() - z.avail_out);
    }
    inflateEnd(&z);
    if (status != Z_STREAM_END)
      fail(out.size() >= kMaxInflated ? "a compressed element inflates beyond 256 MB" : "corrupt compressed data");
    return out;
  }

  /// A declared element count as digits: a double that a hostile header can make far larger than
  /// any integer type (casting it would be undefined behaviour).
  static std::string count_text(double n) {
    char text[400];
    std::snprintf(text, sizeof text, "%.0f", n);
    return text;
  }

  /// A matrix element's payload [at, end): array flags, dimensions, name, then its contents.
  void matrix(const unsigned char* data, size_t at, size_t end, int depth) const {
    if (at == end) return;  // an empty matrix
    if (depth > kMaxDepth) fail("arrays nested deeper than " + std::to_string(kMaxDepth));
    const auto flags = element(data, at, end);
    if (flags.type != kUInt32 || flags.bytes != 8) fail("array flags are not two uint32");
    const uint32_t type = u32(data, flags.payload) & 0xff, nzmax = u32(data, flags.payload + 4);
    // libmatio 1.5.23 leaks what it allocated for a damaged function handle, and no annotation
    // file holds one; opaque objects (MATLAB strings, tables) have another layout, left to it.
    if (type == kFunction) fail("a function handle, which no annotation file holds");
    if (type > kLastClass) return;
    const auto dims = element(data, flags.next, end);
    // int32 as the format says; some writers store uint32, which libmatio reads too.
    if ((dims.type != kInt32 && dims.type != kUInt32) || dims.bytes < 8 || dims.bytes % 4 != 0)
      fail("array dimensions are not two or more int32");
    double elements = 1;  // exact up to 2^53, far beyond any size that passes
    for (size_t k = 0; k < dims.bytes; k += 4) {
      const uint32_t d = u32(data, dims.payload + k);
      if (dims.type == kInt32 && static_cast<int32_t>(d) < 0) fail("a negative array dimension");
      elements *= d;
    }
    const auto name = element(data, dims.next, end);
    size_t at_content = name.next;
    const double room = static_cast<double>(end - at_content);
    if (type == kCell || type == kStruct || type == kObject) {
      double fields = 1;
      if (type != kCell) {
        if (type == kObject) at_content = element(data, at_content, end).next;  // the class name
        const auto length = element(data, at_content, end);
        const auto names = element(data, length.next, end);
        const uint32_t name_length = length.bytes == 4 ? u32(data, length.payload) : 0;
        fields = name_length == 0 ? 0 : static_cast<double>(names.bytes / name_length);
        at_content = names.next;
      }
      const double parts = elements * fields;
      if (parts * 8 > static_cast<double>(end - at_content))
        fail("an array declares " + count_text(parts) + " elements in " + std::to_string(end - at_content) + " bytes");
      for (int64_t k = 0; k < static_cast<int64_t>(parts); ++k) {
        const auto part = element(data, at_content, end);
        if (part.type != kMatrix) fail("a cell or field is not an array");
        matrix(data, part.payload, part.payload + part.bytes, depth + 1);
        at_content = part.next;
      }
    } else {
      if ((type == kSparse ? static_cast<double>(nzmax) : elements) > room)
        fail("an array declares " + count_text(type == kSparse ? nzmax : elements) + " elements in " +
             std::to_string(end - at_content) + " bytes");
      // The parts (real, imaginary; a sparse array's indices too) must fit as well: libmatio sizes
      // its buffer from a part's own declared byte count, read as a signed int.
      for (size_t at_part = at_content; at_part < end;) at_part = element(data, at_part, end).next;
    }
  }

  std::string what_;
  bool swap_;
};

/// Reads variable `name` of a .mat file and passes it to `extract`; closes and frees everything.
/// The file is checked first (MatCheck): libmatio would allocate whatever a damaged file declares.
template <typename Fn>
at::Tensor read_mat(const fs::path& path, const char* name, Fn extract) {
  MatCheck::file(path);
  mat_t* mat = Mat_Open(path.string().c_str(), MAT_ACC_RDONLY);
  if (mat == nullptr) throw std::runtime_error("cannot open MATLAB file " + path.string());
  matvar_t* var = Mat_VarRead(mat, name);
  Mat_Close(mat);
  if (var == nullptr) throw std::runtime_error(path.string() + ": no variable '" + name + "'");
  try {
    auto points = extract(var, path.string());
    Mat_VarFree(var);
    return points;
  } catch (...) {
    Mat_VarFree(var);
    throw;
  }
}
#else
[[noreturn]] inline void no_matio(const std::string& dataset) {
  throw std::runtime_error(dataset +
                           " annotations are MATLAB files, and this build has no libmatio support "
                           "(install libmatio-dev and reconfigure)");
}
#endif

}  // namespace data_detail

/// COCO-style JSON (the PML authors' format): `images` [{id, file_name}], `annotations`
/// [{image_id, bbox: [x, y, w, h]}]; each head's point is its bbox centre. Images without
/// annotations are kept with no points. file_name is relative to `image_root` and must stay in it
/// unless `allow_outside` (see file_in). An invalid annotation is a bad sample (its image, see
/// BadSamples); a file without valid `images` is an error either way.
inline std::vector<CrowdSample> read_coco_points(const fs::path& json_path, const fs::path& image_root,
                                                 BadSamples* bad = nullptr, bool allow_outside = false) {
  const auto j = data_detail::read_json(json_path);
  const auto invalid = [&](const std::string& what) {
    return std::runtime_error("invalid COCO-style annotations in " + json_path.string() + ": " + what);
  };
  const auto files = data_detail::coco_files(j, image_root, allow_outside, invalid);
  std::map<int64_t, std::vector<float>> points;
  const auto dropped =
      data_detail::read_coco_annotations(j, files, json_path, bad, invalid, [&](const nlohmann::json& a, int64_t id) {
        const auto box = a.at("bbox").get<std::vector<float>>();
        if (box.size() != 4) throw std::runtime_error("bbox is not [x, y, w, h]");
        points[id].push_back(box[0] + box[2] / 2);
        points[id].push_back(box[1] + box[3] / 2);
      });
  std::vector<CrowdSample> out;
  for (const auto& [id, file] : files)
    if (!dropped.count(id)) out.push_back({file, data_detail::points_tensor(points[id])});
  data_detail::sort_samples(out);
  return out;
}

/// NWPU-Crowd: `<split>/images/<id>.jpg` with `<split>/jsons/<id>.json` holding "points":
/// [[x, y], ...]. A missing or invalid annotation file is a bad sample (see BadSamples).
inline std::vector<CrowdSample> read_nwpu(const fs::path& root, BadSamples* bad = nullptr) {
  std::vector<CrowdSample> out;
  for (const auto& image : data_detail::images_in(root / "images")) {
    const auto json_path = root / "jsons" / (image.stem().string() + ".json");
    data_detail::read_sample(bad, json_path.string(), [&] {
      const auto j = data_detail::read_json(json_path);
      std::vector<float> xy;
      try {
        for (const auto& p : j.at("points")) {
          const auto v = p.get<std::vector<float>>();
          if (v.size() != 2) throw std::runtime_error("a point is not [x, y]");
          xy.insert(xy.end(), v.begin(), v.end());
        }
      } catch (const std::exception& e) {
        throw std::runtime_error("invalid NWPU annotations in " + json_path.string() + ": " + e.what());
      }
      out.push_back({image.string(), data_detail::points_tensor(xy)});
    });
  }
  return out;
}

/// JHU-Crowd++: `<split>/images/<id>.jpg` with `<split>/gt/<id>.txt`, one head per line
/// "x y w h o b" (location, box size, occlusion, blur); the point is (x, y). A missing or
/// invalid annotation file is a bad sample (see BadSamples).
inline std::vector<CrowdSample> read_jhu(const fs::path& root, BadSamples* bad = nullptr) {
  std::vector<CrowdSample> out;
  for (const auto& image : data_detail::images_in(root / "images")) {
    const auto txt = root / "gt" / (image.stem().string() + ".txt");
    data_detail::read_sample(bad, txt.string(), [&] {
      std::ifstream in(txt);
      if (!in) throw std::runtime_error("cannot open " + txt.string());
      std::vector<float> xy;
      std::string line;
      for (int line_no = 1; std::getline(in, line); ++line_no) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        std::istringstream fields(line);
        float x, y, w, h, o, b;
        if (!(fields >> x >> y >> w >> h >> o >> b))
          throw std::runtime_error(txt.string() + ":" + std::to_string(line_no) + ": expected 'x y w h o b'");
        xy.push_back(x);
        xy.push_back(y);
      }
      out.push_back({image.string(), data_detail::points_tensor(xy)});
    });
  }
  return out;
}

/// ShanghaiTech part A/B: `<split>/images/IMG_<n>.jpg` with `<split>/ground-truth/GT_IMG_<n>.mat`
/// whose `image_info` holds a struct (in a 1×1 cell) with the N×2 `location` array. A missing or
/// invalid annotation file is a bad sample (see BadSamples).
inline std::vector<CrowdSample> read_shanghaitech(const fs::path& root, BadSamples* bad = nullptr) {
#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
  std::vector<CrowdSample> out;
  for (const auto& image : data_detail::images_in(root / "images")) {
    const auto mat = root / "ground-truth" / ("GT_" + image.stem().string() + ".mat");
    data_detail::read_sample(bad, mat.string(), [&] {
      out.push_back({image.string(), data_detail::read_mat(mat, "image_info", [](matvar_t* v, const std::string& what) {
                       while (v != nullptr && v->class_type == MAT_C_CELL) v = data_detail::mat_first_element(v);
                       if (v == nullptr || v->class_type != MAT_C_STRUCT)
                         throw std::runtime_error(what + ": image_info is not a struct (in a cell)");
                       return data_detail::mat_points(data_detail::mat_field(v, "location"), what + ": location");
                     })});
    });
  }
  return out;
#else
  (void)root, (void)bad;
  data_detail::no_matio("ShanghaiTech");
#endif
}

/// UCF-QNRF: `<split>/img_<n>.jpg` with `<split>/img_<n>_ann.mat` holding the N×2 `annPoints`. A
/// missing or invalid annotation file is a bad sample (see BadSamples).
inline std::vector<CrowdSample> read_ucf_qnrf(const fs::path& root, BadSamples* bad = nullptr) {
#ifdef CROWDLOSS_EXAMPLES_HAVE_MATIO
  std::vector<CrowdSample> out;
  for (const auto& image : data_detail::images_in(root)) {
    const auto mat = root / (image.stem().string() + "_ann.mat");
    data_detail::read_sample(bad, mat.string(), [&] {
      out.push_back({image.string(), data_detail::read_mat(mat, "annPoints", [](matvar_t* v, const std::string& what) {
                       return data_detail::mat_points(v, what + ": annPoints");
                     })});
    });
  }
  return out;
#else
  (void)root, (void)bad;
  data_detail::no_matio("UCF-QNRF");
#endif
}

/// Any supported layout by name: "coco" (root = the JSON file, images beside it unless
/// `image_root` is given, and inside that folder unless `allow_outside`), "shanghaitech", "qnrf",
/// "nwpu", "jhu" (images listed from their folders); bad samples go to `bad`.
inline std::vector<CrowdSample> read_dataset(const std::string& format, const fs::path& root,
                                             const fs::path& image_root = {}, BadSamples* bad = nullptr,
                                             bool allow_outside = false) {
  if (format == "coco")
    return read_coco_points(root, image_root.empty() ? root.parent_path() : image_root, bad, allow_outside);
  if (format == "shanghaitech") return read_shanghaitech(root, bad);
  if (format == "qnrf") return read_ucf_qnrf(root, bad);
  if (format == "nwpu") return read_nwpu(root, bad);
  if (format == "jhu") return read_jhu(root, bad);
  throw std::runtime_error("unknown dataset format '" + format + "' (coco, shanghaitech, qnrf, nwpu, jhu)");
}

/// Writes samples as COCO-style JSON: one image entry per sample (file_name relative to
/// `image_root`, height and width from `sizes`), one zero-size bbox per point centred on it.
inline nlohmann::json to_coco(const std::vector<CrowdSample>& samples, const std::vector<std::array<int64_t, 2>>& sizes,
                              const fs::path& image_root) {
  nlohmann::json images = nlohmann::json::array(), annotations = nlohmann::json::array();
  int64_t ann_id = 1;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto id = static_cast<int64_t>(i + 1);
    images.push_back({{"id", id},
                      {"file_name", fs::relative(samples[i].image, image_root).generic_string()},
                      {"height", sizes[i][0]},
                      {"width", sizes[i][1]}});
    const auto p = samples[i].points.contiguous();
    for (int64_t k = 0; k < p.size(0); ++k)
      annotations.push_back({{"id", ann_id++},
                             {"image_id", id},
                             {"category_id", 1},
                             {"bbox", {p[k][0].item<float>(), p[k][1].item<float>(), 0.0, 0.0}}});
  }
  return {{"images", images}, {"annotations", annotations}, {"categories", {{{"id", 1}, {"name", "person"}}}}};
}

}  // namespace crowdloss_examples
