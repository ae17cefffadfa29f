#pragma once
/// \file
/// crowdloss: crowd-counting losses and dense-detection label assignment for LibTorch.
/// Including this umbrella header gives the whole public API.

#include <crowdloss/version.hpp>
#include <crowdloss/detail/compat.hpp>
#include <crowdloss/reduction.hpp>
#include <crowdloss/cuda_kernels.hpp>

#include <crowdloss/enum.hpp>

#include <crowdloss/assign/assignment.hpp>
#include <crowdloss/assign/fcos.hpp>
#include <crowdloss/assign/linear_sum_assignment.hpp>
#include <crowdloss/assign/lla.hpp>
#include <crowdloss/assign/point_match.hpp>
#include <crowdloss/assign/poto.hpp>
#include <crowdloss/detection/boxes.hpp>
#include <crowdloss/detection/losses.hpp>
#include <crowdloss/detection/nms.hpp>

#include <crowdloss/density/bayesian.hpp>
#include <crowdloss/density/density_map.hpp>
#include <crowdloss/density/dm_count.hpp>
#include <crowdloss/density/ms_ssim.hpp>
#include <crowdloss/density/pml.hpp>
#include <crowdloss/density/ssim.hpp>

#include <crowdloss/modules/density.hpp>
#include <crowdloss/modules/detection.hpp>

/// \namespace crowdloss
/// Crowd-counting losses and dense-detection label assignment for LibTorch.
///
/// Conventions shared by the whole API:
/// - A loss or assignment is a free function `crowdloss::xxx(inputs…, options = {})` that takes
///   and returns `at::Tensor`; each loss also has a `torch::nn` module `crowdloss::Xxx` (its
///   `XxxImpl` holds the options) in `<crowdloss/modules/density.hpp>` or
///   `<crowdloss/modules/detection.hpp>`.
/// - Options are structs of torch `TORCH_ARG`s named after what takes them, as LibTorch names
///   its own: `<Function>Options` for a function (`sigmoid_focal_loss` → `SigmoidFocalLossOptions`,
///   `poto_assign` → `POTOAssignOptions`, `points_to_density` → `PointsToDensityOptions`) and
///   `<Module>Options` for a module (`SSIMLoss` → `SSIMLossOptions`, the same type as the
///   `SSIMOptions` of `ssim`). This reference lists each one as a member `T name = default`; in
///   code, `opts.name(value)` sets it and returns the options, so calls chain, and `opts.name()`
///   reads it. crowdloss 0.1's other names (`FocalLossOptions`, `POTOOptions`,
///   `AuxAssignOptions`, `LLAOptions`, `DensityOptions`) are deprecated aliases until 0.3.
/// - The tensors of one call share a device, CPU or CUDA. The losses compute float16 and
///   bfloat16 in float32 and return their input's dtype.
/// - Bad inputs throw `c10::Error` (`TORCH_CHECK`) with a message naming the function, the
///   argument and the offending value.
/// - Reductions are torch's tags (`crowdloss::Reduction`); crowdloss's own tags are the constants
///   in `<crowdloss/enum.hpp>` (`crowdloss::kGIoU`, …). Each default is that of the code the
///   function reproduces: the detection losses default to `kNone`, as torchvision's
///   `sigmoid_focal_loss` and cvpods' IoU loss do (detectors normalise the elementwise sum by the
///   foreground count themselves), while `ssim`, `sanet_loss` and `pml_loss` default to `kMean` (or
///   return a scalar), as pytorch-msssim, the SANet ports and PyTorch's own losses do.
///
/// Example:
/// ```cpp
/// auto opts = crowdloss::PMLLossOptions().grids({1, 2, 4, 8}).pixel_mse_weight(1.0);
/// double w = opts.pixel_mse_weight();                    // 1.0
/// at::Tensor loss = crowdloss::pml_loss(pred, target, opts);
/// ```
