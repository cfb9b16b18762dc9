"""Does a method adapt its step? Final loss with lr at 1/10, 1 and 10 times its default.

Issue 18's second requirement: with ``lr`` set 10x too small and 10x too large, a learned
optimizer that adapts ends within 1.5x of its own default result. This script measures it
on the benchmark's nclsq (d = 100) and LeNet5 attack problems, at the benchmark's budget
of 4,200 evaluations, for l2l-zo and zo-adamm or the methods named (the research methods
of adaptive_rules.py too). Run from the repository root::

    python research/lr_sensitivity.py [--nclsq 3] [--seeds 2] [--images 2]
    python research/lr_sensitivity.py --methods hyper-adamm --option kappa=0.02
    python research/lr_sensitivity.py --methods l2l-zo --option weights=FOLDER
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zominimize  # noqa: E402
from research import adaptive_rules, schedules  # noqa: E402
from zominimize._call import resolve  # noqa: E402
from zominimize._options import SOLVER_OPTIONS  # noqa: E402
from zominimize._registry import get_method, method_options  # noqa: E402

from benchmarks.problems import build  # noqa: E402

BUDGET = 4200
FACTORS = (0.1, 1.0, 10.0)


def default_settings(method: str, x0: np.ndarray) -> dict:
    """The method's resolved settings for this start with default options (its default
    step as "step", and q and mu)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve(method, x0, None, {}, run_options=True).settings


def default_lr(method: str, x0: np.ndarray) -> float:
    """The method's default per-coordinate step for this start (its lr when lr is unset)."""
    return default_settings(method, x0)["step"]


def final_loss(method: str, spec: dict, seed: int, factor: float, options: dict,
               probe: bool = False) -> float:
    problem = build(spec)
    settings = default_settings(method, problem.x0)
    lr = factor * settings["step"]
    known = {**SOLVER_OPTIONS, **method_options(get_method(method))}
    options = {name: value for name, value in options.items() if name in known}
    budget = BUDGET if spec["family"] != "nclsq" or spec["d"] <= 100 else 5 * BUDGET
    if probe:  # the start probe's evaluations count against the budget
        multiplier, used = adaptive_rules.probe_factor(problem.fun, problem.x0, lr,
                                                       settings["q"], settings["mu"], seed)
        lr, budget = lr * multiplier, budget - used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = zominimize.minimize(problem.fun, problem.x0, method=method,
                                  options={"seed": seed, "maxfev": budget, "lr": lr,
                                           "maxiter": budget, **options})
    return float(res.fun)


def _value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nclsq", type=int, default=3, help="nclsq instances per dimension")
    parser.add_argument("--dims", type=int, nargs="+", default=[100],
                        help="nclsq dimensions (budget: 4,200 evaluations at d = 100, "
                             "the benchmark's 21,000 above)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per nclsq instance")
    parser.add_argument("--images", type=int, default=2, help="attack images")
    parser.add_argument("--methods", default="l2l-zo,zo-adamm",
                        help="comma-separated methods (research/adaptive_rules.py's too)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option for each method that has it (repeatable; "
                             "weights=FOLDER runs the learned methods on that weight set)")
    parser.add_argument("--probe", action="store_true",
                        help="choose each run's lr multiplier by adaptive_rules.probe_factor "
                             "first (its evaluations count)")
    args = parser.parse_args()
    adaptive_rules.register_methods()
    schedules.register_methods()
    options = {name: _value(value) for name, value in
               (item.split("=", 1) for item in args.option)}
    problems = {
        **{f"nclsq d={d}": [({"family": "nclsq", "d": d, "instance": i}, s)
                            for i in range(args.nclsq) for s in range(args.seeds)]
           for d in args.dims},
        "attack": [({"family": "attack", "image": i, "source": "foolbox"}, 0)
                   for i in range(args.images)],
    }
    print("| problem | method | lr / 10 | default lr | lr x 10 | worst ratio to default |")
    print("|---|---|---|---|---|---|")
    for name, runs in problems.items():
        if not runs:
            continue
        for method in args.methods.split(","):
            medians = [float(np.median([final_loss(method, spec, seed, f, options, args.probe)
                                        for spec, seed in runs])) for f in FACTORS]
            worst = max(medians[0], medians[2]) / medians[1]
            print(f"| {name} ({len(runs)} runs) | {method} | {medians[0]:.3g} | "
                  f"{medians[1]:.3g} | {medians[2]:.3g} | {worst:.3g} |", flush=True)


if __name__ == "__main__":
    main()
