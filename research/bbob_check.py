"""A quick BBOB reading of research methods against zo-adamm and l2l-zo (default lr).

For each of the 24 BBOB functions at dimension d, the median over instances 4 to 3 + n
(held out like the goals run's) of the final distance to the optimum (floored at 1e-8,
COCO's final target) at a budget of 1,000 d evaluations, one seed per instance. Prints
per method the number of functions on which it is no worse than zo-adamm and the median
over the functions of its ratio to zo-adamm's and to l2l-zo's; ``--weights FOLDER`` adds
l2l-zo on that weight set ("l2l-zo (FOLDER)"). Run from the repository
root::

    python research/bbob_check.py --dims 10 40 --instances 3 [--weights FOLDER]
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zominimize  # noqa: E402
from benchmarks.problems import build  # noqa: E402

PRECISION = 1e-8


def final_gap(method: str, fid: int, d: int, instance: int, weights: str | None) -> float:
    problem = build({"family": "bbob", "fid": fid, "dim": d, "instance": instance})
    options = {"seed": instance, "maxfev": 1000 * d, "maxiter": 1000 * d}
    if weights:
        options["weights"] = weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = zominimize.minimize(problem.fun, problem.x0, method=method, options=options)
    return max(float(res.fun) - problem.f_opt, PRECISION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="")
    parser.add_argument("--weights", help="also l2l-zo on the weight set in this folder")
    parser.add_argument("--dims", type=int, nargs="+", default=[10])
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args()
    runs = {"zo-adamm": ("zo-adamm", None), "l2l-zo": ("l2l-zo", None),
            **{m: (m, None) for m in args.methods.split(",") if m}}
    if args.weights:
        runs[f"l2l-zo ({args.weights})"] = ("l2l-zo", args.weights)
    methods = list(runs)
    for d in args.dims:
        medians = {m: [] for m in methods}
        for fid in range(1, 25):
            for m in methods:
                medians[m].append(float(np.median(
                    [final_gap(runs[m][0], fid, d, i, runs[m][1])
                     for i in range(4, 4 + args.instances)])))
            print(f"d={d} f{fid:02d} " + " ".join(f"{m}={medians[m][-1]:.3g}" for m in methods),
                  flush=True)
        adamm, l2l = np.array(medians["zo-adamm"]), np.array(medians["l2l-zo"])
        for m in methods:
            own = np.array(medians[m])
            print(f"d={d} {m}: no worse than zo-adamm on {int(np.sum(own <= adamm))}/24, "
                  f"median ratio to zo-adamm {np.median(own / adamm):.3g}, "
                  f"to l2l-zo {np.median(own / l2l):.3g}", flush=True)


if __name__ == "__main__":
    main()
