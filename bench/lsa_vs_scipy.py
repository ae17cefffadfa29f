#!/usr/bin/env python3
"""crowdloss's linear_sum_assignment beside SciPy's on the very same matrices.

    python3 bench/lsa_vs_scipy.py build/bench/bench_assign [repetitions]

Asks bench_assign to write its matrices (--dump-matrices), times
scipy.optimize.linear_sum_assignment on each (best and median of the repetitions, one thread),
checks that SciPy picks the same column for every row, runs bench_assign's own timings of the same
cases, and prints a markdown table. Needs numpy and scipy (Debian: python3-scipy).
"""
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from bench_common import medians_ms, timed  # noqa: E402


def ms(t):
    """A time in ms with three significant digits (two decimals from 1 ms up)."""
    return f"{t:.3g} ms" if t < 1 else f"{t:.2f} ms"


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/bench/bench_assign"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([exe, f"--dump-matrices={tmp}"], check=True)
        scipy_ms, same = {}, {}
        for name in sorted(f for f in os.listdir(tmp) if f.endswith(".f64")):
            kind, rows, cols = re.match(r"(\w+)_(\d+)x(\d+)\.f64", name).groups()
            m = np.fromfile(os.path.join(tmp, name), dtype=np.float64).reshape(int(rows), int(cols))
            ours = np.fromfile(os.path.join(tmp, name[:-4] + ".cols.i64"), dtype=np.int64)
            maximize = kind == "poto"
            (_, theirs), best, median = timed(lambda: linear_sum_assignment(m, maximize=maximize), reps)
            key = (kind, int(rows), int(cols))
            scipy_ms[key] = (best, median)
            same[key] = bool(np.array_equal(theirs, ours))
    ours_ms = {}
    for name, t in medians_ms(exe, "lsap").items():
        m = re.fullmatch(r"BM_lsap_(dense|poto_shaped)/(\d+)(?:/(\d+))?", name)
        if m:
            kind = "dense" if m.group(1) == "dense" else "poto"
            rows = int(m.group(2))
            cols = int(m.group(3)) if m.group(3) else rows
            ours_ms[(kind, rows, cols)] = t
    print(f"SciPy {scipy.__version__}, NumPy {np.__version__}; crowdloss: median of 5, SciPy: best / median of {reps}\n")
    print("| matrix | crowdloss | SciPy best | SciPy median | SciPy / crowdloss | same assignment |")
    print("| --- | ---: | ---: | ---: | ---: | :---: |")
    for key in sorted(scipy_ms):
        kind, rows, cols = key
        label = f"{'dense uniform' if kind == 'dense' else 'POTO-shaped (maximise)'} {rows}×{cols}"
        best, median = scipy_ms[key]
        ours = ours_ms.get(key, float("nan"))
        print(f"| {label} | {ms(ours)} | {ms(best)} | {ms(median)} | {median / ours:.2f}× | {'yes' if same[key] else 'NO'} |")


if __name__ == "__main__":
    main()
