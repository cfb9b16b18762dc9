"""How often a method *as good as* zo-adamm fails the BBOB goals by chance alone.

``python -m benchmarks.chance`` simulates two methods whose final values follow one
continuous distribution, n runs each per function, and prints how often goal 4's test
(our median above their 75th percentile) fails on one function, and how often all 24
functions pass. Ties (both methods in the same basin) make real runs pass more often.
"""

from __future__ import annotations

import argparse

import numpy as np

FUNCTIONS = 24


def unsafe_probability(runs: int, trials: int = 200_000, seed: int = 0) -> float:
    """P(median of ``runs`` draws > 75th percentile of ``runs`` other draws), simulated."""
    if runs < 1 or trials < 1:
        raise ValueError(f"runs and trials must be >= 1, got runs={runs!r}, trials={trials!r}")
    rng = np.random.default_rng(seed)
    ours, theirs = rng.standard_normal((2, trials, runs))
    return float(np.mean(np.median(ours, axis=1) > np.percentile(theirs, 75, axis=1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[6, 12],
                        help="runs per function and method (the goals run has 6)")
    args = parser.parse_args(argv)
    print("| runs per function | P(one function unsafe) | P(all 24 safe) |")
    print("|---:|---:|---:|")
    for runs in args.runs:
        p = unsafe_probability(runs)
        print(f"| {runs} | {p:.3f} | {(1 - p) ** FUNCTIONS:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
