#pragma once
// Loading the reference vectors in tests/data (see tests/data/README.md).
#include "doctest_torch.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace crowdloss_test {

using json = nlohmann::json;

inline json load_json(const std::string& file) {
  const std::string path = data_path(file);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open test data " + path);
  return json::parse(in);
}

inline double json_number(const json& v) {
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    throw std::runtime_error("unexpected string in numeric data: " + s);
  }
  return v.get<double>();
}

/// A flat JSON list of numbers → a tensor of the given shape and dtype.
inline at::Tensor tensor_from_list(const json& data, std::vector<int64_t> shape, at::ScalarType dtype) {
  std::vector<double> values;
  values.reserve(data.size());
  for (const auto& v : data) values.push_back(json_number(v));
  return torch::tensor(values, torch::kFloat64).reshape(shape).to(dtype);
}

/// A `{"shape", "dtype", "data"}` object → a tensor; `data` may come with a `scale` (value = data ·
/// scale, a power of two) or be replaced by a `fill` value (beyond.json).
inline at::Tensor tensor_from_json(const json& t) {
  const auto dtype_name = t.at("dtype").get<std::string>();
  const at::ScalarType dtype = dtype_name == "float32"   ? at::kFloat
                               : dtype_name == "float64" ? at::kDouble
                               : dtype_name == "int64"   ? at::kLong
                                                         : throw std::runtime_error("dtype " + dtype_name);
  const auto shape = t.at("shape").get<std::vector<int64_t>>();
  if (t.contains("fill")) return torch::full(shape, json_number(t.at("fill")), torch::kFloat64).to(dtype);
  const auto values = tensor_from_list(t.at("data"), shape, at::kDouble);
  return (t.contains("scale") ? values * json_number(t.at("scale")) : values).to(dtype);
}

/// |actual − expected| / |expected|, or |actual| where the expected value is 0.
inline double rel_error(double actual, double expected) {
  return expected == 0 ? std::abs(actual) : std::abs(actual - expected) / std::abs(expected);
}

/// Largest elementwise |actual − expected| divided by max(|expected|): the error relative to the
/// tensor's scale (elementwise relative error is meaningless where entries pass through zero).
/// An all-zero `expected` has no scale: only an exact match passes (0, else infinity).
inline double scaled_error(const at::Tensor& actual, const at::Tensor& expected) {
  const auto a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  const double scale = e.abs().max().item<double>();
  const double err = (a - e).abs().max().item<double>();
  if (scale > 0) return err / scale;
  return err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
}

}  // namespace crowdloss_test
