"""Command line of the benchmark suite: ``python -m benchmarks [--quick | --full | --goals]``.

Runs the speed suite and the problem suites (the L2L paper's non-convex least
squares, the black-box attack on a real MNIST LeNet5, COCO/BBOB), tunes each
zominimize method's lr on separate instances, and writes raw records (JSON),
markdown tables and PNG plots to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import zominimize

from benchmarks import speed
from benchmarks.runner import problem_for, run_all
from benchmarks.solvers import all_solvers
from benchmarks.suites import GRID, Suite, goal_suites, on_bbob_instances, suites
from benchmarks.goals import LR_FACTORS
from benchmarks.tuning import best_lrs, default_lr, tuning_runs


def plan_runs(suite: Suite, lrs: dict[str, dict]) -> list[dict]:
    """Every (problem, solver, seed) of a suite, plus the tuned-lr variants and, for the
    suite's ``sensitivity`` solvers, the variants with lr at 1/10 and 10 times its default
    on that problem."""
    runs = []
    solvers = [s for s in all_solvers().values() if s.name not in suite.exclude]
    for spec in suite.test:
        problem = problem_for(spec)
        for solver in solvers:
            if not solver.applies(problem):
                continue
            for seed in suite.seeds[:1] if solver.deterministic else suite.seeds:
                base = {"problem": spec, "solver": solver.name, "seed": seed,
                        "budget": suite.budget, "suite_key": suite.key}
                runs.append({**base, "options": {}, "variant": "default"})
                if solver.name in lrs:
                    runs.append({**base, "options": {"lr": lrs[solver.name]["lr"]},
                                 "variant": "tuned"})
                if solver.name in suite.sensitivity:
                    lr = default_lr(solver.name, spec)
                    runs += [{**base, "options": {"lr": factor * lr}, "variant": variant}
                             for variant, factor in LR_FACTORS.items() if lr is not None]
    return runs


def with_learned_options(runs: list[dict], options: dict) -> list[dict]:
    """``runs`` with ``options`` added to the options of the zominimize methods that read
    the "l2l-zo" weight set (unchanged when ``options`` is empty)."""
    if not options:
        return runs
    readers = {name for name in zominimize.method_names()
               if zominimize.get_method(name).weight_set == "l2l-zo"}
    return [{**run, "options": {**run["options"], **options}}
            if run["solver"] in readers else run for run in runs]


def run_suite(suite: Suite, quick: bool, workers: int, learned: dict | None = None) -> dict:
    """Tune, then run, one suite (the l2l-zo solvers with the ``learned`` options, if
    given); return its tuning summary and records."""
    learned = learned or {}
    tunable = [s.name for s in all_solvers().values() if s.tunable and s.name not in suite.exclude]
    tuning = run_all(with_learned_options(tuning_runs(tunable, suite.tune, suite.budget,
                                                      GRID[quick]), learned),
                     workers, f"{suite.key}: tuning lr")
    lrs = best_lrs(tuning)
    records = run_all(with_learned_options(plan_runs(suite, lrs), learned), workers, suite.key)
    return {"tuned_lr": lrs, "records": records}


def weights_folder(text: str) -> str:
    """A folder holding an "l2l-zo" weight set that loads (for --weights), as an absolute path."""
    from zominimize.learned import weights
    try:
        weights.load(text, "l2l-zo")
    except Exception as error:  # noqa: BLE001 - any reason it cannot load is the answer
        raise argparse.ArgumentTypeError(f"--weights must be a folder with l2l-zo weights "
                                         f"that load, got {text!r}: {error}") from None
    return str(Path(text).resolve())


def learned_option(text: str) -> tuple[str, object]:
    """'NAME=VALUE' -> (NAME, checked value), for --l2l-option: an option of the learned
    methods other than ``weights`` (--weights sets that); VALUE is read as JSON (true,
    50, 0.5), else kept as text."""
    from zominimize.methods import LEARNED_OPTIONS
    name, equals, raw = text.partition("=")
    settable = sorted(set(LEARNED_OPTIONS) - {"weights"})
    if not equals or name not in settable:
        raise argparse.ArgumentTypeError(f"--l2l-option must be NAME=VALUE with NAME one of "
                                         f"{', '.join(settable)}, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    try:
        return name, LEARNED_OPTIONS[name].parse(value)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"--l2l-option {text!r}: {error}") from None


def instance_range(text: str) -> range:
    """'FIRST-LAST' (1 <= FIRST <= LAST) -> range(FIRST, LAST + 1), for --bbob-instances."""
    first, _, last = text.partition("-")
    try:
        span = range(int(first), int(last or first) + 1)
    except ValueError:
        span = range(0)
    if not span or span.start < 1:
        raise argparse.ArgumentTypeError(f"--bbob-instances must be FIRST-LAST with "
                                         f"1 <= FIRST <= LAST, got {text!r}")
    return span


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the short run (default, ~5 min)")
    size.add_argument("--full", action="store_true", help="the long run")
    size.add_argument("--goals", action="store_true",
                      help="the suites and solvers that the learned optimizer's goals "
                           "compare (nclsq d=100/1000, attack, BBOB d=10/40 on held-out "
                           "instances, the cost at d=10^6): checks those goals")
    parser.add_argument("--only", action="append", metavar="KEY",
                        help="run only suites whose key starts with KEY (speed, nclsq, "
                             "attack, bbob; repeatable)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes for the runs (default: one per core)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder for the records, tables and plots")
    parser.add_argument("--bbob-instances", type=instance_range, metavar="FIRST-LAST",
                        help="run the BBOB suites on these instances, one seed each, instead "
                             "of their own (4 and up: held out from every other run); "
                             "results go to <out>/<mode>-bbob-FIRST-LAST")
    parser.add_argument("--weights", type=weights_folder, metavar="FOLDER",
                        help="run l2l-zo and its ablations on the weight set in FOLDER (as "
                             "written by python -m zominimize.train) instead of the shipped "
                             "one; results go to <out>/<mode>[-bbob-...]-weights-<FOLDER name>")
    parser.add_argument("--l2l-option", type=learned_option, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="run l2l-zo and its ablations with this option (guard=false, "
                             "guard_patience=50, ...; repeatable); results go to "
                             "<out>/<mode>[-bbob-...][-weights-...]-NAME-VALUE")
    args = parser.parse_args(argv)
    quick = not (args.full or args.goals)
    mode = "quick" if quick else "full" if args.full else "goals"
    plan = goal_suites() if args.goals else suites(quick)
    label = mode
    if args.bbob_instances:
        plan = [on_bbob_instances(suite, args.bbob_instances) for suite in plan]
        span = args.bbob_instances
        label = f"{mode}-bbob-{span.start}-{span.stop - 1}"
    learned = dict(args.l2l_option)
    if args.weights:
        label += f"-weights-{Path(args.weights).name}"
        learned["weights"] = args.weights
    for name, value in args.l2l_option:
        label += f"-{name}-{str(value).lower()}"
    out = args.out / label
    out.mkdir(parents=True, exist_ok=True)
    wanted = lambda key: not args.only or any(key.startswith(o) for o in args.only)  # noqa: E731
    started = time.perf_counter()
    results = {"mode": mode, "python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "command": " ".join(["python -m benchmarks",
                                    *(argv if argv is not None else sys.argv[1:])]),
               "suites": {}}

    def save() -> None:
        """Write the records so far: a run stopped part-way keeps its finished suites."""
        results["seconds"] = time.perf_counter() - started
        (out / "records.json").write_text(json.dumps(results))

    if wanted("speed"):
        results["speed"] = speed.cost() if args.goals else speed.run(quick=quick)
        save()
    for suite in plan:
        if wanted(suite.key):
            t = time.perf_counter()
            results["suites"][suite.key] = run_suite(suite, quick, args.workers, learned)
            print(f"{suite.key}: {len(results['suites'][suite.key]['records'])} runs "
                  f"in {time.perf_counter() - t:.0f} s", flush=True)
            save()
    save()
    from benchmarks.report import write_report
    report = write_report(results, out)
    print(f"\n{report}\nrecords, tables and plots written to {out} "
          f"({results['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
