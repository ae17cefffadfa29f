#pragma once
// Reading state dicts saved from Python as plain dicts of tensors:
//
//   torch.save(dict(model.state_dict()), "weights.pth")   # dict(): no OrderedDict metadata
//
// `StateDictFile` loads such a file (torch::pickle_load reads torch.save's zip container) and
// copies tensors by key into a module's parameters and buffers, checking shapes. Every error is a
// std::runtime_error that names the file, and the key where there is one.
#include <torch/torch.h>

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace crowdloss_examples {

class StateDictFile {
 public:
  /// Reads `path`. `what` names the contents in the error for a file that cannot be opened
  /// ("cannot open <what> <path>"). Throws std::runtime_error naming the file when it cannot be
  /// opened, is not a pickle, or holds something other than a dict with string keys.
  explicit StateDictFile(std::string path, const std::string& what = "state dict") : path_(std::move(path)) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + what + " " + path_);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    c10::IValue loaded;
    try {
      loaded = torch::pickle_load(bytes);
    } catch (const c10::Error& e) {
      throw std::runtime_error(path_ + ": not a torch.save'd state dict (" + e.what_without_backtrace() + ")");
    }
    if (!loaded.isGenericDict())
      throw std::runtime_error(path_ + ": expected a dict of tensors, got " + loaded.tagKind());
    dict_ = loaded.toGenericDict();
    for (const auto& entry : dict_) {
      if (!entry.key().isString()) throw std::runtime_error(path_ + ": expected a dict with string keys");
    }
  }

  const std::string& path() const { return path_; }

  bool contains(const std::string& key) const { return dict_.contains(key); }

  /// The keys, in the file's order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    out.reserve(dict_.size());
    for (const auto& entry : dict_) out.push_back(entry.key().toStringRef());
    return out;
  }

  /// The tensor stored under `key`; throws naming the file and the key when it is absent or not
  /// a tensor.
  at::Tensor tensor(const std::string& key) const {
    if (!dict_.contains(key)) throw std::runtime_error(path_ + ": missing " + key);
    const auto value = dict_.at(key);
    if (!value.isTensor()) throw std::runtime_error(path_ + ": " + key + " is not a tensor");
    return value.toTensor();
  }

  /// The tensor under `key`, checked to have the shape of `target`; throws naming the file and
  /// the key when the key is absent or the shapes differ.
  at::Tensor matching(const std::string& key, const at::Tensor& target) const {
    auto value = tensor(key);
    if (value.sizes() != target.sizes())
      throw std::runtime_error(path_ + ": " + key + " has shape " + c10::str(value.sizes()) + ", expected " +
                               c10::str(target.sizes()));
    return value;
  }

  /// Copies the tensor under `key` into `target` (a parameter or buffer, written in place without
  /// recording gradients; dtype converted as by copy_). Errors as for `matching`.
  void copy_to(const std::string& key, const at::Tensor& target) const {
    const auto value = matching(key, target);
    torch::NoGradGuard no_grad;
    at::Tensor(target).copy_(value);
  }

 private:
  std::string path_;
  c10::impl::GenericDict dict_{c10::StringType::get(), c10::AnyType::get()};
};

}  // namespace crowdloss_examples
