"""What the Python comparison scripts in bench/ share: timing a Python callable, and reading a
Google Benchmark binary's own medians."""
import json
import subprocess
import time


def timed(fn, reps):
    """(fn's last result, best ms, median ms) over `reps` calls."""
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return result, min(times), sorted(times)[len(times) // 2]


def medians_ms(exe, benchmark_filter, repetitions=5):
    """{benchmark name: median real time in ms} of the benchmarks of `exe` that match
    `benchmark_filter`, each run `repetitions` times."""
    out = subprocess.run([exe, f"--benchmark_filter={benchmark_filter}", "--benchmark_format=json",
                          f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}
    return {b["name"][: -len("_median")]: b["real_time"] * scale[b["time_unit"]]
            for b in json.loads(out)["benchmarks"] if b["name"].endswith("_median")}
