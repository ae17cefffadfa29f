#!/usr/bin/env python3
"""crowdloss's nms / batched_nms beside torchvision's CPU kernels on the very same boxes.

    python3 bench/nms_vs_torchvision.py build/bench/bench_detect [repetitions]

Asks bench_detect to write its boxes (--dump-boxes), times torchvision.ops.nms (one class) or
torchvision.ops.batched_nms on each case (best and median of the repetitions, one thread),
checks that torchvision keeps the same boxes in the same order (see agreement), runs bench_detect's own timings
of the same cases, and prints a markdown table. Needs Debian's python3-torchvision.
"""
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.ops import batched_nms, nms  # noqa: E402

from bench_common import medians_ms, timed  # noqa: E402

THRESHOLD = 0.5  # bench_detect's


def torchvision_cases(exe, reps):
    """{(n, classes, bits): (best ms, median ms, agreement)} over bench_detect's boxes."""
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([exe, f"--dump-boxes={tmp}"], check=True)
        for name in sorted(f for f in os.listdir(tmp) if f.endswith(".boxes")):
            n, classes, bits = map(int, re.match(r"nms_(\d+)_(\d+)_f(\d+)\.boxes", name).groups())
            stem = os.path.join(tmp, name[: -len(".boxes")])
            dtype = np.float64 if bits == 64 else np.float32
            boxes = torch.from_numpy(np.fromfile(stem + ".boxes", dtype=dtype).reshape(n, 4))
            scores = torch.from_numpy(np.fromfile(stem + ".scores", dtype=dtype))
            idxs = torch.from_numpy(np.fromfile(stem + ".classes", dtype=np.int64))
            ours = np.fromfile(stem + ".keep", dtype=np.int64)
            if classes == 1:
                keep, best, median = timed(lambda: nms(boxes, scores, THRESHOLD), reps)
            else:
                keep, best, median = timed(lambda: batched_nms(boxes, scores, idxs, THRESHOLD), reps)
            cases[(n, classes, bits)] = (best, median, agreement(keep.numpy(), ours, scores.numpy()))
    return cases


def agreement(theirs, ours, scores):
    """"yes" for the same indices in the same order. torchvision's batched_nms orders its result
    with an unstable sort, so boxes of equal score may come in another order: "yes, ties
    reordered" when the kept boxes and the sequence of their scores are the same."""
    if np.array_equal(theirs, ours):
        return "yes"
    if set(theirs) == set(ours) and np.array_equal(scores[theirs], scores[ours]):
        return "yes, ties reordered"
    return "NO"


def crowdloss_ms(exe):
    """{(n, classes, bits): median ms} from bench_detect's own run."""
    times = {}
    for name, ms in medians_ms(exe, "BM_nms").items():
        m = re.fullmatch(r"BM_nms/(\d+)/(\d+)/(\d+)", name)
        if m:
            times[tuple(map(int, m.groups()))] = ms
    return times


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/bench/bench_detect"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    torch.set_num_threads(1)
    theirs = torchvision_cases(exe, reps)
    ours = crowdloss_ms(exe)
    print(f"torchvision {torchvision.__version__}, torch {torch.__version__}; threshold {THRESHOLD}, one thread; "
          f"crowdloss: median of 5, torchvision: best / median of {reps}\n")
    print("| boxes | classes | dtype | crowdloss | torchvision best | torchvision median | torchvision / crowdloss "
          "| same kept boxes |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | :---: |")
    for key in sorted(theirs, key=lambda k: (k[2], k[1], k[0])):
        n, classes, bits = key
        best, median, same = theirs[key]
        mine = ours.get(key, float("nan"))
        print(f"| {n} | {classes} | float{bits} | {mine:.2f} ms | {best:.2f} ms | {median:.2f} ms | "
              f"{median / mine:.1f}× | {same} |")


if __name__ == "__main__":
    main()
