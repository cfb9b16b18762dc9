"""Time and minor page faults per iteration of a learned method at a large d, per process.

Each process builds ``--optimizers`` runs one after the other and prints, per iteration,
the milliseconds and the thousands of minor page faults; ``--threads`` sets torch's
intra-op threads first. Run from the repository root, several times (a process either
stays fast or slow)::

    python research/thread_probe.py --threads 2
    python research/thread_probe.py --threads 1
"""
import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zominimize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="l2l-zo")
    parser.add_argument("--d", type=int, default=10 ** 6)
    parser.add_argument("--q", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--optimizers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = {"device": "cpu"} if args.method.startswith("l2l") else {}
    for _ in range(args.optimizers):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zominimize.FallbackWarning)
            opt = zominimize.ZOOptimizer(args.method, np.ones(args.d), q=args.q, seed=0,
                                         maxiter=args.iterations + 1, ftol=0.0, **device)
        cells = []
        for _ in range(args.iterations):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            points = opt._ask_view()  # as benchmarks/speed.py times it: no copy
            opt.tell(points, [float(p[0]) for p in points])
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            cells.append(f"{(time.perf_counter() - start) * 1e3:.0f} ms/{faults // 1000}k")
        print(args.method, " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
