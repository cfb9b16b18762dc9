"""Speed and memory of the optimizer itself, printed as ratios measured in one run.

* overhead: seconds per iteration of a ZO method at d = 10^6, q = 20 with a
  trivial fun, against the floor, the time numpy takes to draw the q x d Gaussian
  directions (``rng.standard_normal((q, d))``). Goal: zo-adamm <= 1.5x.
* memory: peak resident memory of a fresh process running that optimization,
  against (q + 10) * d * 8 bytes + 300 MB.
* workers: ``workers=2`` on a fun that sleeps 20 ms, against serial. Goal >= 1.8x.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

import zominimize

GOAL_OVERHEAD = 1.5
GOAL_WORKERS = 1.8
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


def overhead_per_iteration(method: str, d: int, q: int, iterations: int) -> float:
    """Median seconds per iteration of ``method`` with a trivial fun, after a warm-up."""
    opt = zominimize.ZOOptimizer(method, np.ones(d), q=q, seed=0, maxiter=iterations + 1,
                                 ftol=0.0)
    times = []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        points = opt._ask_view()
        values = [first_coordinate(np.array(p)) for p in points]
        opt.tell(points, values)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


MEMORY_SCRIPT = """
import json, resource, sys, warnings
import numpy as np
import zominimize
from benchmarks.speed import first_coordinate
warnings.simplefilter("ignore")
method, d, q, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
zominimize.minimize(first_coordinate, np.ones(d), method=method,
                    options={"q": q, "maxiter": iters, "seed": 0, "ftol": 0.0})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak, "after_import_bytes": base}))
"""


def peak_memory(method: str, d: int, q: int, iterations: int) -> dict:
    """Peak RSS (bytes) of a fresh Python process that imports zominimize and runs."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, method, str(d), str(q),
                          str(iterations)], capture_output=True, text=True, check=True)
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


def run(quick: bool = True) -> dict:
    """Run the speed suite, print a table, and return the records."""
    d, q = 10 ** 6, 20
    iterations = 4 if quick else 10
    methods = [m for m in zominimize.method_names() if m != "l2l-zo"]
    floor = draw_floor(d, q, repeats=5)
    records = {"d": d, "q": q, "floor_draw_s": floor, "methods": {}}
    print(f"\nOptimizer overhead per iteration, d = {d:,}, q = {q} (fun = x[0])")
    print(f"floor: rng.standard_normal((q, d)) = {floor * 1e3:.0f} ms")
    print("| method | ms / iteration | ratio to floor | peak RSS (MB) | memory bound (MB) |")
    print("|---|---|---|---|---|")
    bound = (q + 10) * d * 8 + MEMORY_SLACK
    for method in methods:
        per_iter = overhead_per_iteration(method, d, q, iterations)
        memory = peak_memory(method, d, q, 3)
        records["methods"][method] = {"s_per_iteration": per_iter, "ratio": per_iter / floor,
                                      **memory, "memory_bound_bytes": bound}
        print(f"| {method} | {per_iter * 1e3:.0f} | {per_iter / floor:.2f} | "
              f"{memory['peak_bytes'] / 1e6:.0f} | {bound / 1e6:.0f} |")
    ratio = records["methods"]["zo-adamm"]["ratio"]
    print(f"zo-adamm overhead ratio {ratio:.2f} (goal <= {GOAL_OVERHEAD}): "
          f"{'met' if ratio <= GOAL_OVERHEAD else 'MISSED'}")
    peak = records["methods"]["zo-adamm"]["peak_bytes"]
    print(f"zo-adamm peak memory {peak / 1e6:.0f} MB (goal < {bound / 1e6:.0f} MB): "
          f"{'met' if peak < bound else 'MISSED'}")
    speed = workers_speedup(iterations=8 if quick else 16)
    records["workers"] = speed
    print(f"workers=2 on a 20 ms fun: serial {speed['serial_s']:.2f} s, "
          f"2 workers {speed['workers2_s']:.2f} s, speed-up {speed['speedup']:.2f}x "
          f"(goal >= {GOAL_WORKERS}): {'met' if speed['speedup'] >= GOAL_WORKERS else 'MISSED'}")
    return records
