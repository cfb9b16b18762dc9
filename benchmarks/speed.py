"""Speed and memory of the optimizer itself, printed as ratios measured in one run.

* overhead: seconds per iteration of a ZO method at d = 10^6, q = 20 with a
  trivial fun, against the floor, the time numpy takes to draw the q x d Gaussian
  directions (``rng.standard_normal((q, d))``). Goal: zo-adamm <= 1.5x.
* memory: peak resident memory of a fresh process running that optimization,
  against (q + 10) * d * 8 bytes + 300 MB.
* workers: ``workers=2`` on a fun that sleeps 20 ms, against serial. Goal >= 1.8x.

Every method is timed on the CPU (a learned method with ``device="cpu"``), which is what
the goals are stated on. Where torch sees a GPU, the learned methods are also timed with
``device="cuda"`` (at each d of the speed suite, at the one d of the cost goal), recorded
as "<method> (cuda)", with the GPU's peak memory beside the process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np

import zominimize
from zominimize._registry import get_method, method_options

GOAL_OVERHEAD = 1.5
GOAL_WORKERS = 1.8
GOAL_LEARNED = 2.5
MEMORY_SLACK = 300e6


def first_coordinate(x: np.ndarray) -> float:
    """The cheapest objective that still reads its input: f(x) = x[0]."""
    return float(x[0])


def sleepy_sphere(x: np.ndarray) -> float:
    """A 20 ms objective standing in for a slow simulator."""
    time.sleep(0.02)
    return float(x @ x)


def draw_floor(d: int, q: int, repeats: int) -> float:
    """Median seconds for numpy to draw the q x d standard Gaussian directions."""
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rng.standard_normal((q, d))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def method_ran(method: str) -> str:
    """The method that actually runs for ``method`` here (a fallback shows as its target)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zominimize.FallbackWarning)
        return zominimize.ZOOptimizer(method, np.ones(2)).method


def device_options(method: str, device: str) -> dict:
    """``{"device": device}`` for a method that takes a device (a learned one), else {}."""
    return {"device": device} if "device" in method_options(get_method(method)) else {}


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def takes_device(method: str) -> bool:
    """Whether ``method`` runs networks that can be placed on a GPU."""
    return bool(device_options(method, "cpu"))


def overhead_per_iteration(method: str, d: int, q: int, iterations: int,
                           device: str = "cpu") -> float:
    """Median seconds per iteration of ``method`` with a trivial fun, after a warm-up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zominimize.FallbackWarning)
        opt = zominimize.ZOOptimizer(method, np.ones(d), q=q, seed=0, maxiter=iterations + 1,
                                     ftol=0.0, **device_options(method, device))
    times = []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        points = opt._ask_view()
        values = [first_coordinate(np.array(p)) for p in points]
        opt.tell(points, values)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


MEMORY_SCRIPT = """
import json, sys, warnings
import numpy as np
import zominimize
from benchmarks.speed import device_options, first_coordinate, peak_rss
warnings.simplefilter("ignore")
method, device = sys.argv[1], sys.argv[5]
d, q, iters = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = peak_rss()
zominimize.minimize(first_coordinate, np.ones(d), method=method,
                    options={"q": q, "maxiter": iters, "seed": 0, "ftol": 0.0,
                             **device_options(method, device)})
out = {"peak_bytes": peak_rss(), "after_import_bytes": base}
if device == "cuda":
    import torch
    out["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
print(json.dumps(out))
"""


def peak_rss() -> int:
    """Peak resident memory of this process, in bytes.

    Linux's VmHWM belongs to the process image, so it starts afresh at exec; the
    rusage maximum (the fallback elsewhere) carries over the parent's size at
    fork, which would charge a child for the memory of the benchmark itself.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(method: str, d: int, q: int, iterations: int, device: str = "cpu") -> dict:
    """Peak RSS (bytes) of a fresh Python process that imports zominimize and runs, and
    with ``device="cuda"`` also the GPU's peak allocated bytes (``gpu_peak_bytes``)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, method, str(d), str(q),
                          str(iterations), device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def workers_speedup(iterations: int) -> dict:
    """Wall time of minimize with workers=2 against serial on a 20 ms objective."""
    times = {}
    for workers in (1, 2):
        start = time.perf_counter()
        res = zominimize.minimize(sleepy_sphere, np.ones(10), method="zo-adamm",
                                  options={"seed": 0, "maxiter": iterations, "ftol": 0.0,
                                           "workers": workers})
        times[workers] = time.perf_counter() - start
        nfev = res.nfev
    return {"serial_s": times[1], "workers2_s": times[2], "nfev": nfev,
            "speedup": times[1] / times[2]}


def add_cuda_timings(records: dict, methods, d: int, q: int, iterations: int,
                     memory: bool = True) -> None:
    """Where torch sees a GPU, time each learned method of ``methods`` at ``d`` with
    ``device="cuda"`` into ``records`` as "<method> (cuda)": ``overhead_s`` and, with
    ``memory``, ``peak_bytes`` (the process's resident memory) and ``gpu_peak_bytes``
    (torch's peak allocation)."""
    if not cuda_available():
        return
    for method in filter(takes_device, methods):
        key = f"{method} (cuda)"
        seconds = overhead_per_iteration(method, d, q, iterations, "cuda")
        records["overhead_s"].setdefault(key, {})[d] = seconds
        line = f"{key} at d={d:,}, q={q}: {seconds * 1e3:.1f} ms per iteration"
        if memory:
            peak = peak_memory(method, d, q, 3, "cuda")
            records["peak_bytes"].setdefault(key, {})[d] = peak["peak_bytes"]
            records.setdefault("gpu_peak_bytes", {}).setdefault(key, {})[d] = \
                peak["gpu_peak_bytes"]
            line += (f", peak {peak['peak_bytes'] / 1e6:.0f} MB resident, "
                     f"{peak['gpu_peak_bytes'] / 1e6:.0f} MB on the GPU")
        print(line, flush=True)


def memory_bound(d: int, q: int) -> float:
    """The issue's memory goal: (q + 10) * d * 8 bytes + 300 MB."""
    return (q + 10) * d * 8 + MEMORY_SLACK


def iterations_at(d: int, q: int) -> int:
    """Iterations timed at dimension ``d``: about 10^7 drawn numbers, 3 to 50 of them."""
    return max(3, min(50, 10 ** 7 // (d * q)))


#: Iterations timed per round and rounds per method for the cost goal: a 2x threshold
#: needs more than the 3 iterations of :func:`iterations_at` on a shared machine.
COST_ITERATIONS, COST_ROUNDS = 8, 3


def cost(d: int = 10 ** 6, q: int = 20, methods=("zo-adamm", "l2l-zo")) -> dict:
    """The learned optimizer's cost goal: seconds per iteration and peak memory of
    ``methods`` at dimension ``d`` on the CPU (and on CUDA, see :func:`add_cuda_timings`),
    in the layout of :func:`run`'s records (``q``, ``dims``, ``overhead_s`` and
    ``peak_bytes`` by method and d, ``ran``).

    The methods are timed in alternating rounds (the median of the rounds' medians), so
    that a change in the machine's speed during the measurement touches both alike.
    """
    rounds = {m: [] for m in methods}
    for _ in range(COST_ROUNDS):
        for m in methods:
            rounds[m].append(overhead_per_iteration(m, d, q, COST_ITERATIONS))
    records = {"q": q, "dims": [d], "ran": {m: method_ran(m) for m in methods},
               "floor_s": {d: draw_floor(d, q, repeats=COST_ITERATIONS)},
               "overhead_s": {m: {d: float(np.median(rounds[m]))} for m in methods},
               "peak_bytes": {m: {d: peak_memory(m, d, q, 3)["peak_bytes"]} for m in methods}}
    for m in methods:
        print(f"{m} at d={d:,}, q={q}: {records['overhead_s'][m][d] * 1e3:.0f} ms per "
              f"iteration, peak {records['peak_bytes'][m][d] / 1e6:.0f} MB", flush=True)
    add_cuda_timings(records, methods, d, q, COST_ITERATIONS)
    return records


def run(quick: bool = True) -> dict:
    """Run the speed suite, print its goals, and return the records.

    Records: ``dims``; ``floor_s`` {d: draw time}; ``overhead_s`` {method: {d: s per
    iteration}}; ``peak_bytes`` {method: {d: peak RSS}}; ``memory_bound_bytes`` {d};
    ``workers`` (serial and workers=2 wall times); ``goals`` (each goal, its
    measured value and whether it was met).
    """
    q = 20
    dims = [10 ** 2, 10 ** 4, 10 ** 6] if quick else [10 ** k for k in range(2, 7)]
    memory_dims = [10 ** 6] if quick else dims
    methods = zominimize.method_names()
    records = {"q": q, "dims": dims, "floor_s": {}, "overhead_s": {m: {} for m in methods},
               "ran": {m: method_ran(m) for m in methods},
               "peak_bytes": {m: {} for m in methods},
               "memory_bound_bytes": {d: memory_bound(d, q) for d in dims}}
    for d in dims:
        iterations = iterations_at(d, q)
        records["floor_s"][d] = draw_floor(d, q, repeats=max(3, min(20, iterations)))
        for method in methods:
            records["overhead_s"][method][d] = overhead_per_iteration(method, d, q, iterations)
            if d in memory_dims:
                records["peak_bytes"][method][d] = peak_memory(method, d, q, 3)["peak_bytes"]
        add_cuda_timings(records, methods, d, q, iterations, memory=d in memory_dims)
    big = dims[-1]
    records["workers"] = workers_speedup(iterations=8 if quick else 16)
    ratio = records["overhead_s"]["zo-adamm"][big] / records["floor_s"][big]
    peak = records["peak_bytes"]["zo-adamm"][big]
    records["goals"] = [
        {"goal": f"zo-adamm overhead per iteration at d={big:,}, q={q} / time to draw the "
                 f"q x d directions", "value": ratio, "limit": f"<= {GOAL_OVERHEAD}",
         "met": ratio <= GOAL_OVERHEAD},
        {"goal": f"zo-adamm peak memory at d={big:,} (MB)", "value": peak / 1e6,
         "limit": f"< {memory_bound(big, q) / 1e6:.0f}", "met": peak < memory_bound(big, q)},
        {"goal": "workers=2 speed-up on a 20 ms objective", "value": records["workers"]["speedup"],
         "limit": f">= {GOAL_WORKERS}", "met": records["workers"]["speedup"] >= GOAL_WORKERS},
    ]
    if "l2l-zo" in methods:
        learned = records["overhead_s"]["l2l-zo"][big] / records["overhead_s"]["zo-adamm"][big]
        records["goals"].append(
            {"goal": f"l2l-zo overhead per iteration at d={big:,} / zo-adamm's (CPU)",
             "value": learned, "limit": f"<= {GOAL_LEARNED}", "met": learned <= GOAL_LEARNED,
             "ran": records["ran"]["l2l-zo"]})
    print(f"\nSpeed (q = {q}): ms per iteration, fun = x[0]; floor = drawing the directions")
    print("| d | floor | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for d in dims:
        cells = [f"{records['overhead_s'][m][d] * 1e3:.2f} ({records['overhead_s'][m][d] / records['floor_s'][d]:.2f}x)"
                 for m in methods]
        print(f"| {d:,} | {records['floor_s'][d] * 1e3:.2f} | " + " | ".join(cells) + " |")
    for goal in records["goals"]:
        print(f"{goal['goal']}: {goal['value']:.2f} (goal {goal['limit']}): "
              f"{'met' if goal['met'] else 'MISSED'}")
    return records
