// libFuzzer harness: pml_loss / pml_loss_terms, ssim / ssim_map / sanet_loss with options and
// shapes from the fuzzer (invalid ones included) and values with NaN, ±inf, huge and tiny
// entries, forward and backward. Bad input must raise c10::Error. On finite inputs the CPU
// kernels must also agree with the ATen reference paths (a differential check in float64).

#include "fuzz_input.hpp"

#include <crowdloss/density/pml.hpp>
#include <crowdloss/density/ssim.hpp>

#include <torch/types.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <vector>

namespace {

using crowdloss_fuzz::Input;

void require(bool ok, const char* what, double a, double b) {
  if (!ok) {
    std::cerr << "density loss fuzz: " << what << ": " << a << " vs " << b << "\n";
    std::abort();
  }
}

/// Both tensors agree to a relative 1e-9 of the larger magnitude (or are both non-finite).
void agree(const at::Tensor& fast, const at::Tensor& reference, const char* what) {
  const double a = fast.abs().max().item<double>(),
               scale = std::max(1.0, std::max(a, reference.abs().max().item<double>()));
  const double diff = (fast - reference).abs().max().item<double>();
  require(!std::isfinite(a) || diff <= 1e-9 * scale, what, diff, scale);
}

at::Tensor map(Input& in, int64_t B, int64_t C, int64_t H, int64_t W, bool finite, torch::Dtype dtype) {
  std::vector<double> v(static_cast<size_t>(B * C * H * W));
  for (auto& x : v) x = finite ? in.unit(2.0) : in.number(10.0);
  return torch::tensor(v, torch::kFloat64).view({B, C, H, W}).to(dtype);
}

void fuzz_pml(Input& in, const at::Tensor& p, const at::Tensor& t, bool finite) {
  std::vector<int64_t> grids(static_cast<size_t>(in.integer(0, 4)));
  for (auto& g : grids) g = in.integer(-2, 40);
  auto opts = crowdloss::PMLLossOptions().grids(grids).pad_to_multiple(in.flag()).pixel_mse_weight(in.number());
  try {
    auto pred = p.clone().requires_grad_(true);
    const auto loss = crowdloss::pml_loss(pred, t, opts);
    loss.backward();
    if (finite && p.scalar_type() == torch::kFloat64) {
      auto ref = p.clone().requires_grad_(true);
      const auto reference = crowdloss::pml_loss(ref, t, crowdloss::PMLLossOptions(opts).reference_order(true));
      reference.backward();
      agree(loss.detach(), reference.detach(), "pml_loss one pass vs reference order");
      agree(pred.grad(), ref.grad(), "pml_loss gradient one pass vs reference order");
    }
    crowdloss::pml_loss_terms(p, t, opts);
  } catch (const c10::Error&) {
  }
}

void fuzz_ssim(Input& in, const at::Tensor& p, const at::Tensor& t, bool finite) {
  auto opts = crowdloss::SSIMOptions()
                  .window_size(in.integer(-1, 15))
                  .sigma(in.flag() ? 1.5 : in.number(4.0))
                  .k1(in.flag() ? 0.01 : in.number())
                  .k2(in.flag() ? 0.03 : in.number())
                  .data_range(in.flag() ? 1.0 : in.number(10.0));
  if (in.flag()) opts.padding(crowdloss::kSame);
  try {
    auto pred = p.clone().requires_grad_(true), target = t.clone().requires_grad_(in.flag());
    const auto per_channel = crowdloss::ssim(pred, target, crowdloss::SSIMOptions(opts).reduction(torch::kNone));
    (per_channel * torch::arange(1, per_channel.numel() + 1, per_channel.options()).view_as(per_channel))
        .sum()
        .backward();
    crowdloss::ssim_map(p, t, opts);
    auto sanet_pred = p.clone().requires_grad_(true);
    crowdloss::sanet_loss(sanet_pred, t, crowdloss::SANetLossOptions().alpha(in.number()).ssim(opts)).backward();
    if (finite && p.scalar_type() == torch::kFloat64) {
      auto ref_pred = p.clone().requires_grad_(true), ref_target = t.clone().requires_grad_(target.requires_grad());
      const auto s = crowdloss::detail::ssim_setup("fuzz", ref_pred, ref_target, opts);
      const auto reference = crowdloss::detail::ssim_map_aten(s).flatten(2).mean(-1);
      (reference * torch::arange(1, reference.numel() + 1, reference.options()).view_as(reference)).sum().backward();
      agree(per_channel.detach(), reference.detach(), "ssim CPU kernel vs ATen");
      agree(pred.grad(), ref_pred.grad(), "ssim gradient (x) CPU kernel vs ATen");
      if (target.requires_grad()) agree(target.grad(), ref_target.grad(), "ssim gradient (y) CPU kernel vs ATen");
    }
  } catch (const c10::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  // Shapes from empty to small; occasionally a wrong rank or mismatched target.
  const int64_t B = in.integer(0, 2), C = in.integer(1, 2), H = in.integer(0, 24), W = in.integer(0, 24);
  const bool finite = in.flag();
  const auto dtype = in.flag() ? torch::kFloat64 : (in.flag() ? torch::kFloat32 : torch::kBFloat16);
  const auto p = map(in, B, C, H, W, finite, dtype);
  auto t = map(in, B, C, H, W, finite, dtype);
  switch (in.integer(0, 7)) {
    case 0:
      t = t.flatten(2);
      break;  // wrong rank
    case 1:
      t = t.to(torch::kFloat16);
      break;  // mismatched dtype
    case 2:
      if (W > 1) t = t.narrow(3, 0, W - 1);
      break;  // mismatched shape
    case 3:
      t = t.transpose(2, 3).contiguous().transpose(2, 3);
      break;  // non-contiguous, same values
    default:
      break;
  }
  if (in.flag())
    fuzz_pml(in, p, t, finite);
  else
    fuzz_ssim(in, p, t, finite);
  return 0;
}
