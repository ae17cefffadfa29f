#!/usr/bin/env python3
"""crowdloss's point-supervised losses beside their authors' PyTorch code, forward + backward.

    python3 bench/point_losses_vs_authors.py build/bench/bench_density DM_COUNT_DIR BAYESIAN_DIR [repetitions]

DM_COUNT_DIR is a checkout of cvlab-stonybrook/DM-Count, BAYESIAN_DIR one of
ZhihengCV/Bayesian-Crowd-Counting (their `losses/` packages are loaded from there). Each case is
bench_density's: 8×1×S×S float32 density maps at stride 8 (crops of 8S pixels), 200 heads per
image, made from torch.manual_seed(0) in the same order as the C++ benchmark, so both sides get
the same numbers. One thread on both sides.

- DM-Count: its training step's loss as `train_helper.py` composes it: the normalised map
  (`models.py`: mu / (Σmu + 1e-6)), `OT_Loss` (100 Sinkhorn iterations, reg 10) × 0.1, the count
  L1 and the TV term × 0.01 against the normalised discrete head map. The discrete map is made by
  their data loader, so it is made here once, outside the timing.
- Bayesian loss: `Post_Prob` (σ 8, the background term, ratio 1, st_size 8S) then `Bay_Loss`, as
  their trainer calls them every step.

crowdloss's times are bench_density's own (BM_dm_count_loss, BM_bayesian_loss; median of 5); the
authors' are the best and the median of `repetitions` runs. Prints a markdown table. Needs
Debian's python3-torch.
"""
import importlib
import importlib.util
import os
import re
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

from bench_common import medians_ms, timed  # noqa: E402

SIDES = (64, 128)  # bench_density's Args
STRIDE, HEADS, BATCH = 8, 200, 8


def load_losses(package, checkout, modules):
    """The authors' `losses/<module>.py` files of `checkout`, as the package `package`."""
    folder = os.path.join(checkout, "losses")
    spec = importlib.util.spec_from_file_location(package, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    sys.modules[package] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[package])
    return [importlib.import_module(f"{package}.{m}") for m in modules]


def inputs(side):
    """bench_density's point_loss_forward_backward inputs."""
    torch.manual_seed(0)
    pred = torch.rand(BATCH, 1, side, side).requires_grad_(True)
    heads = [torch.rand(HEADS, 2) * float(STRIDE * side) for _ in range(BATCH)]
    return pred, heads


def dm_count_step(ot_module, side):
    pred, heads = inputs(side)
    crop = STRIDE * side
    ot = ot_module.OT_Loss(crop, STRIDE, False, "cpu", num_of_iter_in_ot=100, reg=10.0)
    counts = torch.tensor([float(len(h)) for h in heads])
    # Their data loader's target: heads per stride block, normalised by the image's count.
    discrete = torch.zeros(BATCH, 1, side, side)
    for b, h in enumerate(heads):
        cells = (h / STRIDE).long().clamp(0, side - 1)
        discrete[b, 0].index_put_((cells[:, 1], cells[:, 0]), torch.ones(len(h)), accumulate=True)
    discrete_normed = discrete / (counts.view(-1, 1, 1, 1) + 1e-6)
    tv = torch.nn.L1Loss(reduction="none")
    mae = torch.nn.L1Loss()

    def step():
        pred.grad = None
        normed = pred / (pred.sum((1, 2, 3), keepdim=True) + 1e-6)
        ot_loss, _, _ = ot(normed, pred, heads)
        count_loss = mae(pred.sum(1).sum(1).sum(1), counts)
        tv_loss = (tv(normed, discrete_normed).sum(1).sum(1).sum(1) * counts).mean(0) * 0.01
        (ot_loss * 0.1 + count_loss + tv_loss).backward()

    return step


def bayesian_step(post_prob_module, bay_loss_module, side):
    pred, heads = inputs(side)
    crop = STRIDE * side
    post_prob = post_prob_module.Post_Prob(8.0, crop, STRIDE, 1.0, True, "cpu")
    loss = bay_loss_module.Bay_Loss(True, "cpu")
    st_sizes = torch.full((BATCH,), float(crop))
    targets = [torch.ones(len(h)) for h in heads]

    def step():
        pred.grad = None
        loss(post_prob(heads, st_sizes), targets, pred).backward()

    return step


def crowdloss_ms(exe):
    """{(name, side): median ms} from bench_density's own run."""
    times = {}
    for name, ms in medians_ms(exe, "BM_(dm_count|bayesian)_loss").items():
        m = re.fullmatch(r"BM_(dm_count|bayesian)_loss/(\d+)(?:/manual_time)?", name)
        if m:
            times[(m.group(1), int(m.group(2)))] = ms
    return times


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    exe, dm_count_dir, bayesian_dir = sys.argv[1:4]
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    torch.set_num_threads(1)
    (ot_module,) = load_losses("dm_count_losses", dm_count_dir, ["ot_loss"])
    post_prob_module, bay_loss_module = load_losses("bayesian_losses", bayesian_dir, ["post_prob", "bay_loss"])
    ours = crowdloss_ms(exe)
    print(f"torch {torch.__version__}, one thread; 8×1×S×S float32 at stride 8, {HEADS} heads per image; "
          f"crowdloss: median of 5, authors: best / median of {reps}\n")
    print("| loss | map | crowdloss | authors best | authors median | authors / crowdloss |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, label, make in (("dm_count", "DM-Count", lambda s: dm_count_step(ot_module, s)),
                              ("bayesian", "Bayesian (+ background)",
                               lambda s: bayesian_step(post_prob_module, bay_loss_module, s))):
        for side in SIDES:
            _, best, median = timed(make(side), reps)
            mine = ours.get((name, side), float("nan"))
            print(f"| {label} | {side}² | {mine:.1f} ms | {best:.1f} ms | {median:.1f} ms | {median / mine:.2f}× |")


if __name__ == "__main__":
    main()
