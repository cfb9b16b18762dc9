"""What l2l-zo's step-size controller does on one benchmark problem, iteration by iteration.

Runs ``minimize(method="l2l-zo")`` on a BBOB function or an nclsq instance (the benchmark's
problem builder), at its default lr times each ``--lr-factors``, and prints at a few
iterations the controller's level, the mean of its per-coordinate shape, the success rate
of f and zbar (zominimize.learned.gain); with ``--every N``, every N-th iteration instead,
with the iterate's f - f_opt (f on nclsq) and the step's length, over the distance to the
optimum on BBOB f1 (where that distance is sqrt(f - f_opt)). ``--weights FOLDER`` runs
another weight set. Run from the repository root::

    python research/level_probe.py --fid 3 --dim 10 --instances 4 5
    python research/level_probe.py --fid 1 --dim 10 --instances 4 --every 8
    python research/level_probe.py --nclsq --dim 1000 --instances 0 --maxfev 21000 \
        --lr-factors 0.1 1 10
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
from research.lr_sensitivity import default_lr  # noqa: E402
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
    parser.add_argument("--fid", type=int, default=3, help="the BBOB function")
    parser.add_argument("--nclsq", action="store_true", help="nclsq instead of BBOB")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--maxfev", type=int, help="default: 1,000 dim")
    parser.add_argument("--lr-factors", type=float, nargs="+", default=[1.0])
    parser.add_argument("--every", type=int, help="print every N-th iteration, with f and the step")
    parser.add_argument("--weights", help="a weight set's folder (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list = []
    rule.learned_rule = recording(rows)
    for instance, factor in ((i, k) for i in args.instances for k in args.lr_factors):
        spec = ({"family": "nclsq", "d": args.dim, "instance": instance} if args.nclsq else
                {"family": "bbob", "fid": args.fid, "dim": args.dim, "instance": instance})
        problem = build(spec)
        lr = factor * default_lr("l2l-zo", problem.x0)
        rows.clear()
        iterates: list = []
        options = {"seed": 0, "lr": lr, "maxfev": args.maxfev or 1000 * args.dim}
        if args.weights:
            options["weights"] = args.weights
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = zominimize.minimize(
                problem.fun, problem.x0, method="l2l-zo", options=options,
                callback=lambda intermediate_result: iterates.append(
                    (intermediate_result.x_last, problem.fun(intermediate_result.x_last))))
        table = np.array(rows)
        name = "nclsq" if args.nclsq else f"f{args.fid}"
        print(f"{name} d={args.dim} instance {instance}, lr x {factor:g}: final {res.fun:.4g}")
        shown = (range(0, len(table), args.every) if args.every else
                 sorted({0, 10, 50, 100, 200, 500, len(table) - 1}))
        for i in shown:
            if i < len(table):
                level, shape, success, zbar = table[i]
                line = (f"  iteration {i}: level {level:.2f}, shape mean {shape:.2f}, "
                        f"success {success:.2f}, zbar {zbar:.2f}")
                if args.every and i + 1 < len(iterates):
                    gap = iterates[i][1] - (problem.f_opt or 0.0)
                    step = np.linalg.norm(iterates[i + 1][0] - iterates[i][0])
                    sphere = args.fid == 1 and not args.nclsq
                    line += (f", f - f_opt {gap:.2e}, "
                             + (f"step / distance {step / np.sqrt(max(gap, 1e-300)):.2f}"
                                if sphere else f"|step| {step:.2e}"))
                print(line)


if __name__ == "__main__":
    main()
