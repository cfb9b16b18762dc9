"""Checks of l2l-zo's CUDA path on a machine with a GPU: same results as the CPU, resume
across devices, and the cost at large d.

    python research/gpu_check.py [--dims 1000000,10000000] [--seeds 3]

1. Parity: l2l-zo with ``device="cuda"`` and ``device="cpu"`` from the same seeds on a
   noisy-free least-squares problem (nclsq d = 100 and 1,000, the benchmark's family) and on
   Rosenbrock d = 50. The networks run in float32 on both, but the kernels differ in their
   last bits, so the runs agree to rounding at first and may part later: the medians are
   compared, not the runs.
2. Resume across devices: a run is stopped on the GPU, its ``state_dict()`` restored into
   an optimizer on the CPU (and the other way round), and finished there.
3. Cost: seconds per iteration and peak memory (resident, and torch's on the GPU) of
   l2l-zo on CUDA and on the CPU against zo-adamm at each d of ``--dims``, q = 20.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.optimize import rosen

import zominimize
from benchmarks import speed
from benchmarks.problems.nclsq import make as make_nclsq


def run(fun, x0, seed: int, device: str, maxiter: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zominimize.minimize(fun, x0, method="l2l-zo",
                                   options={"seed": seed, "maxiter": maxiter, "device": device})


def parity(seeds: int) -> None:
    print("## parity: l2l-zo final f, device cuda against cpu (same seeds)", flush=True)
    problems = {}
    for d, maxiter in ((100, 400), (1000, 200)):
        problem = make_nclsq(d, instance=0)
        problems[f"nclsq d={d}"] = (problem.fun, problem.x0, maxiter)
    problems["rosenbrock d=50"] = (rosen, np.zeros(50), 400)
    for name, (fun, x0, maxiter) in problems.items():
        finals = {}
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            results = [run(fun, x0, seed, device, maxiter) for seed in range(seeds)]
            finals[device] = [r.fun for r in results]
            print(f"{name} {device}: median {np.median(finals[device]):.4g} "
                  f"({time.perf_counter() - start:.1f} s, nfev {results[0].nfev})", flush=True)
        first = abs(finals["cuda"][0] - finals["cpu"][0]) / max(abs(finals["cpu"][0]), 1e-300)
        ratio = np.median(finals["cuda"]) / np.median(finals["cpu"])
        print(f"{name}: median cuda / cpu {ratio:.3f}; seed 0 relative difference {first:.2e}",
              flush=True)


def resume_across_devices() -> None:
    print("## resume across devices", flush=True)
    problem = make_nclsq(100, instance=0)
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        opt = zominimize.ZOOptimizer("l2l-zo", problem.x0, seed=3, maxiter=100, device=first)
        for _ in range(50):
            opt.tell(*evaluate(opt, problem.fun))
        state = opt.state_dict()
        resumed = zominimize.ZOOptimizer("l2l-zo", problem.x0, seed=3, maxiter=100,
                                         device=second)
        resumed.load_state_dict(state)
        while resumed.status is None:
            resumed.tell(*evaluate(resumed, problem.fun))
        result = resumed.result()
        print(f"{first} -> {second}: nit {result.nit}, f {result.fun:.4g} (f at the stop "
              f"{opt.result().fun:.4g})", flush=True)


def evaluate(opt, fun):
    points = opt.ask()
    return points, [fun(p) for p in points]


def cost(dims: list[int]) -> None:
    print(f"## cost, q = 20: {torch.cuda.get_device_name(0)}", flush=True)
    for d in dims:
        speed.cost(d=d, q=20, methods=("zo-adamm", "l2l-zo"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="1000000",
                        type=lambda s: [int(float(v)) for v in s.split(",")])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device: nothing to check")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
          f"{torch.get_num_threads()} CPU threads", flush=True)
    parity(args.seeds)
    resume_across_devices()
    cost(args.dims)


if __name__ == "__main__":
    main()
