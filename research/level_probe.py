"""What l2l-zo's step-size controller does on one benchmark problem, iteration by iteration.

Runs ``minimize(method="l2l-zo")`` with default options on a BBOB function (the benchmark's
problem builder) and prints, at a few iterations, the controller's level, the mean of its
per-coordinate shape, the success rate of f and zbar (zominimize.learned.gain). Run from
the repository root::

    python research/level_probe.py --fid 3 --dim 10 --instances 4 5
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zominimize  # noqa: E402
from benchmarks.problems import build  # noqa: E402
from zominimize.learned import rule  # noqa: E402


def recording(rows: list):
    """learned_rule, with each step's (level, shape mean, success, zbar) appended to rows."""
    plain = rule.learned_rule

    def learned_rule(net, design, lr, device):
        made = plain(net, design, lr, device)

        def update(g, f, state):
            step, state = made.update(g, f, state)
            rows.append((float(state.level), float(state.shape.mean()),
                         float(state.success), float(state.z_mean)))
            return step, state

        return made._replace(update=update)

    return learned_rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fid", type=int, default=3)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[4, 5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list = []
    rule.learned_rule = recording(rows)
    for instance in args.instances:
        problem = build({"family": "bbob", "fid": args.fid, "dim": args.dim,
                         "instance": instance})
        rows.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = zominimize.minimize(problem.fun, problem.x0, method="l2l-zo",
                                      options={"seed": 0, "maxfev": 1000 * args.dim})
        table = np.array(rows)
        print(f"f{args.fid} d={args.dim} instance {instance}: final {res.fun:.4g}")
        for i in sorted({0, 10, 50, 100, 200, len(table) - 1}):
            if i < len(table):
                level, shape, success, zbar = table[i]
                print(f"  iteration {i}: level {level:.2f}, shape mean {shape:.2f}, "
                      f"success {success:.2f}, zbar {zbar:.2f}")


if __name__ == "__main__":
    main()
