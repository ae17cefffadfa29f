#pragma once
/// \file
/// Runtime compilation of crowdloss's CUDA kernels (docs/gpu.md): the kernels' source is
/// compiled on first use by NVRTC, the CUDA runtime compiler that CUDA builds of LibTorch ship
/// and load, and launched through the CUDA driver API, so the library stays header-only and a
/// CUDA user needs no nvcc. Nothing here needs CUDA's headers: the few NVRTC and driver entry
/// points are declared below with their C ABI and found with dlopen/dlsym at run time, so this
/// header compiles (and its failure paths run) on every build, CPU-only ones included.
///
/// Where NVRTC comes from, first found wins: the file named by $CROWDLOSS_NVRTC; the NVRTC that
/// LibTorch's own stub (libcaffe2_nvrtc.so, beside the loaded libtorch_cuda.so) links; then
/// libnvrtc.so.13, .12, .11.2, libnvrtc.so and /usr/local/cuda/lib64/libnvrtc.so.

#include <crowdloss/detail/compat.hpp>

#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/types.h>

#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/// Defines the device code `...` twice from one text: as host C++ in the enclosing namespace
/// (`CROWDLOSS_HD` is `inline` there), so that tests run the kernels' arithmetic on the CPU, and
/// as the string `name()` that the NVRTC source starts from (where `CROWDLOSS_HD` is
/// `__device__ __forceinline__`). The code may use no other macro and no header: NVRTC sees it
/// as written, after the preprocessor has dropped its comments.
#define CROWDLOSS_DEVICE_CODE(name, ...) \
  __VA_ARGS__                            \
  inline const char* name() { return #__VA_ARGS__; }
#define CROWDLOSS_HD inline

namespace crowdloss {
namespace detail {
namespace cuda_jit {

// The C ABI of the entry points used (cuda.h, nvrtc.h): handles are opaque pointers, results ints.
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
using nvrtcResult = int;
using nvrtcProgram = void*;
constexpr int kComputeCapabilityMajor = 75, kComputeCapabilityMinor = 76;  // CU_DEVICE_ATTRIBUTE_…

/// The NVRTC and driver functions, loaded once per process; `error` says why when not `ok`.
struct Api {
  bool ok = false;
  std::string error;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuCtxGetCurrent)(CUcontext*) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                             void**, void**) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  const char* (*nvrtcGetErrorString)(nvrtcResult) = nullptr;
  nvrtcResult (*nvrtcVersion)(int*, int*) = nullptr;
  nvrtcResult (*nvrtcGetNumSupportedArchs)(int*) = nullptr;
  nvrtcResult (*nvrtcGetSupportedArchs)(int*) = nullptr;
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                                    const char* const*) = nullptr;
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*) = nullptr;
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetPTX)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*) = nullptr;
};

/// The folder of the loaded shared object whose file name starts with `stem` ("" if none).
inline std::string loaded_library_folder(const char* stem) {
  struct Query {
    const char* stem;
    std::string folder;
  } query{stem, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* q = static_cast<Query*>(data);
        const std::string path = info->dlpi_name != nullptr ? info->dlpi_name : "";
        const auto slash = path.rfind('/');
        if (slash == std::string::npos || path.compare(slash + 1, std::strlen(q->stem), q->stem) != 0) return 0;
        q->folder = path.substr(0, slash);
        return 1;
      },
      &query);
  return query.folder;
}

/// The first of `candidates` that dlopen loads and that exports `symbol` (itself or through the
/// libraries it links), or null; `tried` collects what failed.
inline void* open_first(const std::vector<std::string>& candidates, const char* symbol, std::string& tried) {
  for (const auto& name : candidates) {
    if (name.empty()) continue;
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr && dlsym(handle, symbol) != nullptr) return handle;
    tried += (tried.empty() ? "" : ", ") + name;
    if (handle != nullptr) dlclose(handle);
  }
  return nullptr;
}

/// Loads the API (once; thread-safe through the static's initialisation).
inline const Api& api() {
  static const Api loaded = [] {
    Api a;
    std::string tried;
    void* driver = open_first({"libcuda.so.1", "libcuda.so"}, "cuLaunchKernel", tried);
    if (driver == nullptr) {
      a.error = "the CUDA driver library could not be loaded (tried " + tried + ")";
      return a;
    }
    std::vector<std::string> nvrtc_names;
    if (const char* path = std::getenv("CROWDLOSS_NVRTC")) nvrtc_names.emplace_back(path);
    const std::string torch_folder = loaded_library_folder("libtorch_cuda");
    if (!torch_folder.empty()) nvrtc_names.push_back(torch_folder + "/libcaffe2_nvrtc.so");
    for (const char* name :
         {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so"})
      nvrtc_names.emplace_back(name);
    tried.clear();
    void* nvrtc = open_first(nvrtc_names, "nvrtcCreateProgram", tried);
    if (nvrtc == nullptr) {
      a.error = "NVRTC could not be loaded (tried " + tried + "; set CROWDLOSS_NVRTC to its path)";
      return a;
    }
    std::string missing;
    const auto bind = [&](void* library, auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(library, name));
      if (fn == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(name);
    };
    bind(driver, a.cuInit, "cuInit");
    bind(driver, a.cuGetErrorString, "cuGetErrorString");
    bind(driver, a.cuDeviceGet, "cuDeviceGet");
    bind(driver, a.cuDeviceGetAttribute, "cuDeviceGetAttribute");
    bind(driver, a.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    bind(driver, a.cuCtxGetCurrent, "cuCtxGetCurrent");
    bind(driver, a.cuCtxSetCurrent, "cuCtxSetCurrent");
    bind(driver, a.cuModuleLoadData, "cuModuleLoadData");
    bind(driver, a.cuModuleGetFunction, "cuModuleGetFunction");
    bind(driver, a.cuLaunchKernel, "cuLaunchKernel");
    bind(driver, a.cuStreamSynchronize, "cuStreamSynchronize");
    bind(nvrtc, a.nvrtcGetErrorString, "nvrtcGetErrorString");
    bind(nvrtc, a.nvrtcVersion, "nvrtcVersion");
    bind(nvrtc, a.nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs");
    bind(nvrtc, a.nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs");
    bind(nvrtc, a.nvrtcCreateProgram, "nvrtcCreateProgram");
    bind(nvrtc, a.nvrtcCompileProgram, "nvrtcCompileProgram");
    bind(nvrtc, a.nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    bind(nvrtc, a.nvrtcGetProgramLog, "nvrtcGetProgramLog");
    bind(nvrtc, a.nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    bind(nvrtc, a.nvrtcGetCUBIN, "nvrtcGetCUBIN");
    bind(nvrtc, a.nvrtcGetPTXSize, "nvrtcGetPTXSize");
    bind(nvrtc, a.nvrtcGetPTX, "nvrtcGetPTX");
    bind(nvrtc, a.nvrtcDestroyProgram, "nvrtcDestroyProgram");
    if (!missing.empty()) {
      a.error = "the CUDA driver or NVRTC lacks " + missing + " (NVRTC 11.2 or newer is needed)";
      return a;
    }
    if (a.cuInit(0) != 0) {
      a.error = "cuInit failed: no usable CUDA driver";
      return a;
    }
    a.ok = true;
    return a;
  }();
  return loaded;
}

/// Throws c10::Error naming `what` unless a driver call succeeded.
inline void check_driver(CUresult result, const char* what) {
  if (result == 0) return;
  const char* text = nullptr;
  if (api().cuGetErrorString != nullptr) api().cuGetErrorString(result, &text);
  TORCH_CHECK(false, "crowdloss CUDA kernels: ", what, " failed: ", text != nullptr ? text : "", " (", result, ")");
}

/// Throws c10::Error naming `what` unless an NVRTC call succeeded.
inline void check_nvrtc(nvrtcResult result, const char* what) {
  TORCH_CHECK(result == 0, "crowdloss CUDA kernels: ", what, " failed: ", api().nvrtcGetErrorString(result));
}

/// While alive: `device`'s primary context (the one LibTorch's runtime calls use) is current on
/// this thread, as the driver API needs (autograd's worker threads may have none); the context
/// current before is restored at the end, so that compiling or launching for one GPU never
/// moves the thread's later runtime calls to another. `device()` is the driver's handle.
class ContextScope {
 public:
  explicit ContextScope(const at::Device& device) {
    const Api& a = api();
    check_driver(a.cuDeviceGet(&device_, device.index()), "cuDeviceGet");
    CUcontext primary = nullptr;
    {  // retained once per device and kept for the process
      static std::mutex mutex;
      static std::map<CUdevice, CUcontext> primaries;
      std::lock_guard<std::mutex> lock(mutex);
      auto& slot = primaries[device_];
      if (slot == nullptr) check_driver(a.cuDevicePrimaryCtxRetain(&slot, device_), "cuDevicePrimaryCtxRetain");
      primary = slot;
    }
    check_driver(a.cuCtxGetCurrent(&previous_), "cuCtxGetCurrent");
    if (previous_ != primary) {
      check_driver(a.cuCtxSetCurrent(primary), "cuCtxSetCurrent");
      switched_ = true;
    }
  }
  ~ContextScope() {
    if (switched_) api().cuCtxSetCurrent(previous_);
  }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
  CUdevice device() const { return device_; }

 private:
  CUdevice device_ = 0;
  CUcontext previous_ = nullptr;
  bool switched_ = false;
};

/// The NVRTC architecture option for `dev`, and whether NVRTC can emit its machine code (else
/// the newest PTX it knows, which the driver compiles on loading).
inline std::pair<std::string, bool> architecture(CUdevice dev) {
  const Api& a = api();
  int major = 0, minor = 0;
  check_driver(a.cuDeviceGetAttribute(&major, kComputeCapabilityMajor, dev), "cuDeviceGetAttribute");
  check_driver(a.cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, dev), "cuDeviceGetAttribute");
  const int wanted = major * 10 + minor;
  int count = 0;
  check_nvrtc(a.nvrtcGetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<size_t>(count));
  if (count > 0) check_nvrtc(a.nvrtcGetSupportedArchs(archs.data()), "nvrtcGetSupportedArchs");
  int best = 0;
  for (const int arch : archs)
    if (arch <= wanted && arch > best) best = arch;
  TORCH_CHECK(best > 0, "crowdloss CUDA kernels: this NVRTC supports no architecture up to the device's sm_", wanted);
  const bool cubin = best == wanted;
  return {std::string(cubin ? "--gpu-architecture=sm_" : "--gpu-architecture=compute_") + std::to_string(best), cubin};
}

/// Compiles `source` (a CUDA C++ translation unit without includes) with NVRTC for `device` and
/// loads it; returns the module. Throws c10::Error with NVRTC's log when it does not compile.
inline CUmodule compile(const std::string& source, const std::string& name, const at::Device& device) {
  const Api& a = api();
  const ContextScope context(device);
  const auto [arch, cubin] = architecture(context.device());
  nvrtcProgram program = nullptr;
  check_nvrtc(a.nvrtcCreateProgram(&program, source.c_str(), name.c_str(), 0, nullptr, nullptr), "nvrtcCreateProgram");
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> owner(&program,
                                                               [](nvrtcProgram* p) { api().nvrtcDestroyProgram(p); });
  const char* options[] = {arch.c_str(), "--std=c++17", "--fmad=false"};
  const nvrtcResult compiled = a.nvrtcCompileProgram(program, 3, options);
  if (compiled != 0) {
    size_t size = 0;
    a.nvrtcGetProgramLogSize(program, &size);
    std::string log(size, '\0');
    if (size > 0) a.nvrtcGetProgramLog(program, &log[0]);
    TORCH_CHECK(false, "crowdloss CUDA kernels: NVRTC could not compile ", name, " (", arch,
                "): ", a.nvrtcGetErrorString(compiled), "\n", log);
  }
  size_t size = 0;
  check_nvrtc(cubin ? a.nvrtcGetCUBINSize(program, &size) : a.nvrtcGetPTXSize(program, &size), "getting the code size");
  std::string image(size, '\0');
  check_nvrtc(cubin ? a.nvrtcGetCUBIN(program, &image[0]) : a.nvrtcGetPTX(program, &image[0]), "getting the code");
  CUmodule module = nullptr;
  check_driver(a.cuModuleLoadData(&module, image.data()), "cuModuleLoadData");
  return module;
}

/// A compiled module's kernels for one device, compiled once per (module name, device) and kept
/// for the process (the driver frees them at exit).
class Module {
 public:
  /// The module `name` on `device`, compiled from `source()` on the first call and cached after;
  /// null when the API is unavailable or the source does not compile, which is reported once
  /// per module and device as a warning naming the reason (the caller then takes its ATen path).
  template <class Source>
  static Module* find(const std::string& name, const Source& source, const at::Device& device) {
    static std::mutex mutex;
    static std::map<std::pair<std::string, int>, std::unique_ptr<Module>> modules;
    std::lock_guard<std::mutex> lock(mutex);
    auto& slot = modules[{name, device.index()}];
    if (!slot) {
      slot.reset(new Module());
      try {
        TORCH_CHECK(api().ok, "crowdloss CUDA kernels: ", api().error);
        TORCH_CHECK(HasNativeHandle<c10::Stream>::value,
                    "crowdloss CUDA kernels: this LibTorch's c10::Stream has no native_handle() (LibTorch 2.2 or "
                    "newer is needed)");
        slot->module_ = compile(source(), name, device);
      } catch (const c10::Error& e) {
        slot->error_ = e.what_without_backtrace();
      } catch (const std::exception& e) {
        slot->error_ = std::string("crowdloss CUDA kernels: ") + e.what();
      }
      if (!slot->error_.empty()) TORCH_WARN(slot->error_, "; using the ATen path instead");
    }
    return slot->error_.empty() ? slot.get() : nullptr;
  }

  /// Launches kernel `kernel` of this module on `device`'s current stream (LibTorch's), with
  /// `grid` blocks of `block` threads and `shared_bytes` of dynamic shared memory (at most 48 KiB);
  /// `args` point at the kernel's arguments in order. With CROWDLOSS_CUDA_SYNC=1 in the
  /// environment every launch is followed by a synchronisation of the stream, so that a fault
  /// inside a kernel is reported by the launch that caused it (for debugging; slow).
  void launch(const char* kernel, const at::Device& device, unsigned grid, unsigned block, std::vector<void*> args,
              unsigned shared_bytes = 0) {
    const Api& a = api();
    c10::DeviceGuard guard(device);
    const ContextScope context(device);
    CUfunction fn = nullptr;
    {
      std::lock_guard<std::mutex> lock(functions_mutex_);
      auto& slot = functions_[kernel];
      if (slot == nullptr) check_driver(a.cuModuleGetFunction(&slot, module_, kernel), "cuModuleGetFunction");
      fn = slot;
    }
    const CUstream stream = native_handle(c10::impl::getDeviceGuardImpl(device.type())->getStream(device));
    check_driver(a.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, shared_bytes, stream, args.data(), nullptr),
                 "cuLaunchKernel");
    static const bool sync = [] {
      const char* value = std::getenv("CROWDLOSS_CUDA_SYNC");
      return value != nullptr && std::strcmp(value, "1") == 0;
    }();
    if (sync) check_driver(a.cuStreamSynchronize(stream), kernel);
  }

 private:
  Module() = default;
  CUmodule module_ = nullptr;
  std::string error_;
  std::mutex functions_mutex_;
  std::map<std::string, CUfunction> functions_;
};

}  // namespace cuda_jit
}  // namespace detail
}  // namespace crowdloss
