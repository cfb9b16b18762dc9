"""Does measuring the subspace by central differences lift the subspace QueryRNN's floor?

A split iteration of the subspace QueryRNN (zominimize.learned.queries) queries x + mu s b
along the unit basis vectors b of its subspace, s = sqrt(q), and uses the forward
difference [f(x + mu s b) - f(x)] / mu. Its second-order term does not average out as
that of a random direction does: each split iteration adds mu s^2 (b' H b) / 2 * s b / q =
mu sqrt(q) (b' H b) / 2 b to the estimate, along the recent estimates, so the iterate
stalls where |grad f| is of that size (on the sphere at |x - x*| ~ mu sqrt(q) / 2, which
is BBOB f1's final distance with the forward design). Variants:

* forward: the package's design (2 queries along b1, b2);
* central2: 4 queries, +-sqrt(q / 2) b1 and +-sqrt(q / 2) b2, the rest (q - 4) in the
  complement scaled by sqrt(q / (q - 4));
* central1: 2 queries, +-sqrt(q / 2) b1 (the running mean's direction), the rest in b1's
  complement scaled by sqrt(q / (q - 2)).

Each keeps E[(1/q) sum u u'] = I. The script runs l2l-zo (defaults, the weight set given)
with each variant on the 24 BBOB functions at d (instances 4 to 3 + n, one seed each, as
research/bbob_check.py) and on nclsq d = 100 (10 problems, seeds), and prints per suite the
median final value and how many paired runs each variant wins against forward. Run from
the repository root::

    python research/central_subspace.py --weights research/runs/pipeline-subspace
"""

from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zominimize  # noqa: E402
from benchmarks.problems import build  # noqa: E402
from zominimize.learned import designs, queries  # noqa: E402

PRECISION = 1e-8
VARIANTS = ("forward", "central2", "central1")


def central_directions(pairs: int):
    """The subspace design's ``directions`` with ``pairs`` basis vectors measured by +-
    pairs (inference only: eps (q, d), no autograd)."""

    def directions(state, eps):
        q = eps.shape[0]
        k = 2 * pairs
        if q <= k or not bool(state.split):
            return eps, None
        mean, last = state.mean.to(eps.device), state.last.to(eps.device)
        basis, valid = queries.subspace_basis(mean, last)
        if not bool(valid):
            return eps, None
        basis = basis[:pairs]
        rest = eps[k:]
        rest.addmm_(rest @ basis.T, basis, alpha=-1).mul_((q / (q - k)) ** 0.5)
        along = basis * (q / 2) ** 0.5
        eps[0:k:2], eps[1:k:2] = along, -along
        reach = np.zeros(q)
        reach[:k] = (q / 2) ** 0.5 * float(torch.maximum(mean.norm(), last.norm()))
        return eps, reach

    return directions


def use_variant(variant: str) -> None:
    """Make the subspace design of this process query as ``variant``."""
    if variant == "forward":
        return
    key = (designs.L2L_ZO_SUBSPACE.features, designs.L2L_ZO_SUBSPACE.step_form, "subspace")
    query = queries.SUBSPACE._replace(directions=central_directions(int(variant[-1])))
    designs.DESIGNS[key] = designs.L2L_ZO_SUBSPACE._replace(query=query)


def final_value(job: tuple) -> float:
    spec, seed, budget, weights = job
    problem = build(spec)
    options = {"seed": seed, "maxfev": budget, "maxiter": budget, "weights": weights}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = zominimize.minimize(problem.fun, problem.x0, method="l2l-zo", options=options)
    if spec["family"] == "bbob":
        return max(float(res.fun) - problem.f_opt, PRECISION)
    return float(res.fun)


def suites(args) -> dict[str, list[tuple[dict, int, int]]]:
    bbob = [({"family": "bbob", "fid": f, "dim": d, "instance": i}, i, 1000 * d)
            for d in args.dims for f in range(1, 25) for i in range(4, 4 + args.instances)]
    nclsq = [({"family": "nclsq", "d": 100, "instance": p}, s, 4200)
             for p in range(args.nclsq) for s in range(args.seeds)]
    return {"bbob": bbob, "nclsq d=100": nclsq}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dims", type=int, nargs="+", default=[10])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--nclsq", type=int, default=10, help="nclsq problems")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per nclsq problem")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    variants = args.variants.split(",")
    for name, runs in suites(args).items():
        jobs = [(spec, seed, budget, args.weights) for spec, seed, budget in runs]
        values = []
        for v in variants:  # a pool per variant: the networks are cached per process
            with ProcessPoolExecutor(args.workers, initializer=use_variant,
                                     initargs=(v,)) as pool:
                values.append(list(pool.map(final_value, jobs, chunksize=4)))
        values = np.array(values)
        for v, row in zip(variants, values):
            wins = int(np.sum(row < values[0]))
            losses = int(np.sum(row > values[0]))
            print(f"{name} {v}: median {np.median(row):.3g}, against {variants[0]}: "
                  f"lower in {wins}, higher in {losses} of {len(runs)}", flush=True)
        if name == "bbob":
            for v, row in zip(variants, values):
                per_f = np.median(row.reshape(-1, args.instances), axis=1)
                print(f"  {v} per-function medians: "
                      + " ".join(f"{x:.2g}" for x in per_f), flush=True)

if __name__ == "__main__":
    main()
