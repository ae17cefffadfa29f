#pragma once
/// \file
/// crowdloss: crowd-counting losses and dense-detection label assignment for LibTorch.
/// Including this umbrella header gives the whole public API.

#include <crowdloss/version.hpp>
#include <crowdloss/detail/compat.hpp>
#include <crowdloss/reduction.hpp>

#include <crowdloss/enum.hpp>

#include <crowdloss/assign/fcos.hpp>
#include <crowdloss/assign/linear_sum_assignment.hpp>
#include <crowdloss/assign/lla.hpp>
#include <crowdloss/assign/poto.hpp>
#include <crowdloss/detection/boxes.hpp>
#include <crowdloss/detection/losses.hpp>
#include <crowdloss/detection/nms.hpp>

#include <crowdloss/density/density_map.hpp>
#include <crowdloss/density/pml.hpp>
#include <crowdloss/density/ssim.hpp>

#include <crowdloss/modules/density.hpp>
#include <crowdloss/modules/detection.hpp>
