#!/usr/bin/env python3
"""crowdloss's linear_sum_assignment against SciPy's on random matrices built to make ties and
rounding matter: both of crowdloss's searches (the dense one with each instruction set) must return
SciPy's exact column for every row, and fail where SciPy fails.

    python3 lsa_vs_scipy_test.py LSA_SOLVE [cases] [seed]
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from scipy.optimize import linear_sum_assignment
except ImportError:
    print("CROWDLOSS_SKIPPED: SciPy is not installed (Debian: python3-scipy)")
    sys.exit(77)


def matrices(rng, count):
    for k in range(count):
        kind = k % 7
        wide = rng.integers(1, 13)
        long = rng.integers(1, 300 if k % 5 == 0 else 40)
        rows, cols = (long, wide) if k % 4 == 3 else (wide, long)
        if kind == 6:    # mid-size, small integers: long paths, ties among many columns
            rows, cols = rng.integers(20, 90), rng.integers(20, 90)
        maximize = bool(k % 2)
        if kind == 0:    # uniform
            m = rng.uniform(-3, 3, (rows, cols))
        elif kind == 1:  # small integers: ties everywhere
            m = rng.integers(-2, 3, (rows, cols)).astype(np.float64)
        elif kind == 2:  # POTO-like: one value outside sparse "priors"
            m = np.full((rows, cols), -1.0 if maximize else 1.0)
            mask = rng.random((rows, cols)) < 0.05
            m[mask] = rng.random(mask.sum()) * (1 if maximize else -1)
        elif kind == 3:  # large offsets with small differences: the order of roundings decides ties
            m = 1e8 + rng.integers(0, 4, (rows, cols)) * 0.1 + rng.integers(0, 2, (rows, cols)) * 1e-8
        elif kind == 4:  # a common value per row with integer exceptions
            m = np.repeat(rng.integers(-2, 3, (rows, 1)).astype(np.float64) * 0.5, cols, axis=1)
            mask = rng.random((rows, cols)) < 0.2
            m[mask] = rng.integers(-3, 4, mask.sum())
        elif kind == 5:  # forbidden pairs (+inf, or −inf when maximising); some infeasible
            m = rng.integers(0, 5, (rows, cols)).astype(np.float64)
            m[rng.random((rows, cols)) < (0.6 if k % 3 == 0 else 0.15)] = -np.inf if maximize else np.inf
        else:
            m = rng.integers(0, 6, (rows, cols)).astype(np.float64)
        if k % 50 == 7:  # invalid entries
            m[rng.integers(0, rows), rng.integers(0, cols)] = np.nan
        yield np.ascontiguousarray(m, dtype=np.float64), maximize


def main():
    exe = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 20261122)
    cases = list(matrices(rng, count))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        with open(src, "wb") as f:
            for m, maximize in cases:
                f.write(np.array([m.shape[0], m.shape[1], int(maximize)], dtype=np.int64).tobytes())
                f.write(m.tobytes())
        subprocess.run([exe, src, dst], check=True)
        ours = np.fromfile(dst, dtype=np.int64)
    pos, failures, errors = 0, 0, 0
    for k, (m, maximize) in enumerate(cases):
        try:
            _, expected = linear_sum_assignment(m, maximize=maximize)
            expected = list(expected)
        except ValueError as e:
            expected = -1 if "infeasible" in str(e) else -2
            errors += 1
        for search in ("dense", "dense (baseline instruction set)", "sparse"):
            n = int(ours[pos])
            pos += 1
            got = n if n < 0 else [int(c) for c in ours[pos:pos + n]]
            pos += max(n, 0)
            if got != expected:
                failures += 1
                if failures <= 10:
                    print(f"case {k} ({m.shape[0]}x{m.shape[1]}, maximize={maximize}, {search}): "
                          f"SciPy {expected}, crowdloss {got}")
    print(f"{len(cases)} matrices, {errors} that SciPy rejects; {failures} differences from SciPy")
    return 1 if failures or errors == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
