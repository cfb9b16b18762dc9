"""Paired runs with and without the QueryRNN on common random numbers (issue 18, goal 3).

The package draws the QueryRNN's coin (``query_ratio``) from the run's generator, so
``l2l-zo`` and its ablation ``l2l-zo-update`` draw different directions from the second
iteration on, and a paired comparison of the two compares unrelated runs. This script runs
the package's l2l-zo rule and QueryRNN sampler in a plain ZO loop (no guard, no bounds) in
which the coin comes from a generator of its own: with and without the sampler, a run
draws the same eps every iteration, so the pair differs only by the scales. Each variant
(the shipped QueryRNN or a weight set's; scales of an oracle) runs on the benchmark's
LeNet5 attack, foolbox images 0 to 19 x ``--seeds`` seeds, 4,200 evaluations; the table
gives the median best f and how many pairs the variant ends lower in than the ablation,
with the sign test's p. Run from the repository root::

    python research/query_pairs.py --weights research/runs/query-es --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.problems import build  # noqa: E402
from zominimize import estimators  # noqa: E402
from zominimize._call import resolve  # noqa: E402
from zominimize._registry import get_method  # noqa: E402

BUDGET = 4200


def run(image: int, seed: int, weights: str | None, sampler_on: bool) -> float:
    """The best f of one l2l-zo run on the attack; the QueryRNN's scales when
    ``sampler_on`` (its coin from its own generator), N(0, I) directions otherwise."""
    problem = build({"family": "attack", "image": image, "source": "foolbox"})
    x = problem.x0.copy()
    options = {} if weights is None else {"weights": weights}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = resolve("l2l-zo", x, None, options, run_options=True).settings
    spec = get_method("l2l-zo")
    parts = spec.load(settings)
    rule = spec.make_rule(settings, parts)
    sampler = spec.make_sampler(settings, parts) if sampler_on else None
    state = rule.init(x.size)
    query = sampler.init(x.size) if sampler else None
    q, mu = settings["q"], settings["mu"]
    rng, coins = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    best, used = np.inf, 0
    while used + q + 1 <= BUDGET:
        directions = rng.standard_normal((q, x.size))
        scales = sampler.scales(query, coins) if sampler else None
        if scales is not None:
            directions *= scales
        points = np.vstack([x, x + mu * directions])
        values = problem.batch_fun(points)
        used += q + 1
        best = min(best, float(np.min(values)))
        g, _ = estimators.estimate_gradient(x, points, values, mu, "forward")
        step, state = rule.update(g, float(values[0]), state)
        if sampler:
            query = sampler.observe(query, g, step)
        x = x + step
    return best


def _run(args):
    return run(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[],
                        help="weight sets whose QueryRNN to try (besides the shipped one)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pairs = [(image, seed) for image in range(20) for seed in range(args.seeds)]
    variants = {"ablation (no QueryRNN)": (None, False), "shipped QueryRNN": (None, True)}
    variants.update({f"QueryRNN of {w}": (w, True) for w in args.weights})
    with ProcessPoolExecutor(args.workers) as pool:
        finals = {name: np.array(list(pool.map(_run, [(i, s, w, on) for i, s in pairs])))
                  for name, (w, on) in variants.items()}
    base = finals["ablation (no QueryRNN)"]
    print(f"| variant | median best f ({len(pairs)} runs) | lower than the ablation | p |")
    print("|---|---|---|---|")
    for name, values in finals.items():
        decided = int((values != base).sum())
        wins = int((values < base).sum())
        p = binomtest(wins, decided).pvalue if decided else float("nan")
        print(f"| {name} | {np.median(values):.3g} | {wins} of {decided} | {p:.2g} |")


if __name__ == "__main__":
    main()
