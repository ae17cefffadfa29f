#!/usr/bin/env python3
"""The Python references of bench_density's CUDA cases, forward + backward, same protocol.

    python3 bench/density_reference.py OUT.json [--device cuda] [--sides 128,512,1024,2048]
                                       [--compile-sides 512,1024] [--min-time 0.5]

Each case is bench_density's: pred and target 8×1×S×S float32, target = rand, pred = target +
0.1·randn (made on the CPU from torch.manual_seed(0) and moved to the device), one forward +
backward per iteration timed by wall clock with a device synchronisation, repeated until
--min-time seconds have passed (at least 10 iterations after 3 warm-up ones); the median is
reported. The references, written here from the papers' code's op order (not copied from it):

- `mse_loss`: F.mse_loss, the baseline.
- `authors_pml`: the PML authors' Cascade_MSE_Loss as their code computes it: at every grid
  g in (1, 2, 4, 8, 16, 32), einops' block sums of pred and of target to B×C×g×g, their summed
  squared difference over the batch size, log(m₀ + 1) and log(relu(mᵢ − (gᵢ₋₁/gᵢ)²·mᵢ₋₁) + 1)
  summed; `authors_pml_compiled` is the same under torch.compile.
- `msssim_ssim`: SSIM with pytorch-msssim's semantics (11-tap Gaussian window, σ 1.5, two valid
  separable convolutions per moment, data range 1, K = (0.01, 0.03)), mean over everything.
- `msssim_sanet_loss`: SANet's loss on it, mse + 0.001·(1 − ssim); `…_compiled` under
  torch.compile.

Writes {"<name>/<side>": {"median_us": …, "iterations": …}} and a "context" entry (torch, CUDA,
device name), and prints the same as a markdown table. torch.compile cases run only for
--compile-sides (each shape compiles anew).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

try:
    import einops
except ImportError:  # einops' reduce is a reshape and a sum; the same ops without it
    einops = None

GRIDS = (1, 2, 4, 8, 16, 32)


def block_sums(x, g):
    if einops is not None:
        return einops.reduce(x, "B C (h1 h2) (w1 w2) -> B C h1 w1", "sum", h1=g, w1=g)
    b, c, h, w = x.shape
    return x.reshape(b, c, g, h // g, g, w // g).sum(dim=(3, 5))


def authors_pml(pred, target):
    terms, previous = [], None
    for i, g in enumerate(GRIDS):
        m = F.mse_loss(block_sums(target, g), block_sums(pred, g), reduction="sum") / pred.shape[0]
        if i == 0:
            terms.append(torch.log(m + 1))
        else:
            ratio = (GRIDS[i - 1] / g) ** 2
            terms.append(torch.log(F.relu(m - ratio * previous) + 1))
        previous = m
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    return loss


def gaussian_window(size=11, sigma=1.5, device=None):
    coords = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).view(1, 1, 1, size)


def gaussian_filter(x, window):
    channels = x.shape[1]
    w = window.expand(channels, 1, 1, window.shape[-1])
    x = F.conv2d(x, w, groups=channels)
    return F.conv2d(x, w.transpose(2, 3), groups=channels)


def msssim_ssim(pred, target, window):
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu1, mu2 = gaussian_filter(pred, window), gaussian_filter(target, window)
    mu1_sq, mu2_sq, mu12 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    s1 = gaussian_filter(pred * pred, window) - mu1_sq
    s2 = gaussian_filter(target * target, window) - mu2_sq
    s12 = gaussian_filter(pred * target, window) - mu12
    cs = (2 * s12 + c2) / (s1 + s2 + c2)
    return (((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs).mean()


def sanet_loss(pred, target, window):
    return F.mse_loss(pred, target) + 0.001 * (1 - msssim_ssim(pred, target, window))


def median_us(loss_fn, side, device, min_time):
    torch.manual_seed(0)
    target = torch.rand(8, 1, side, side).to(device)
    pred = (target + 0.1 * torch.randn(8, 1, side, side).to(device)).requires_grad_(True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        pred.grad = None
        loss_fn(pred, target).backward()
    sync()
    times, spent = [], 0.0
    while len(times) < 10 or spent < min_time:
        start = time.perf_counter()
        pred.grad = None
        loss_fn(pred, target).backward()
        sync()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    times.sort()
    return times[len(times) // 2] * 1e6, len(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sides", default="128,512,1024,2048")
    parser.add_argument("--compile-sides", default="512,1024")
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()
    sides = [int(s) for s in args.sides.split(",") if s]
    compile_sides = {int(s) for s in args.compile_sides.split(",") if s}
    window = gaussian_window(device=args.device)
    eager = {
        "mse_loss": F.mse_loss,
        "authors_pml": authors_pml,
        "msssim_ssim": lambda p, t: msssim_ssim(p, t, window),
        "msssim_sanet_loss": lambda p, t: sanet_loss(p, t, window),
    }
    compiled = {}
    if compile_sides and hasattr(torch, "compile"):
        compiled = {
            "authors_pml_compiled": torch.compile(authors_pml),
            "msssim_sanet_loss_compiled": torch.compile(lambda p, t: sanet_loss(p, t, window)),
        }
    results = {"context": {"torch": torch.__version__, "cuda": torch.version.cuda, "device": args.device,
                           "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                           "einops": einops is not None, "min_time_s": args.min_time}}
    for side in sides:
        cases = dict(eager)
        if side in compile_sides:
            cases.update(compiled)
        for name, fn in cases.items():
            us, n = median_us(fn, side, args.device, args.min_time)
            results[f"{name}/{side}"] = {"median_us": round(us, 1), "iterations": n}
            print(f"{name}/{side}: {us:.1f} us ({n} iterations)", flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    names = list(eager) + list(compiled)
    print("\n| 8×1×S×S, µs | " + " | ".join(f"S = {s}" for s in sides) + " |")
    print("| --- |" + " ---: |" * len(sides))
    for name in names:
        cells = [f"{results[f'{name}/{s}']['median_us']:.0f}" if f"{name}/{s}" in results else "–" for s in sides]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
