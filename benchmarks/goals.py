"""Does the learned optimizer win? The four goals of l2l-zo, checked on a benchmark run.

Each goal compares l2l-zo with default options against the classic ZO methods
(zo-sgd, zo-signsgd, zo-adamm) on problems the weights never saw:

1. ``nclsq`` suites: l2l-zo's median number of evaluations to reach the loss that the
   best *tuned* classic method reaches at its full budget (its median final) is at
   most half the budget, over at least :data:`MIN_RUNS` runs.
2. ``attack``: against the tuned classic method with the lowest mean final loss, l2l-zo's
   mean loss curve reaches that method's final mean loss in at most half the budget
   (2x fewer queries), its own final mean loss is lower, and its success rate is at
   least as high.
3. BBOB suites: on at least :data:`BBOB_WINS` of the 24 functions, l2l-zo's median
   final distance to the optimum is no worse than zo-adamm's (default options). The
   goal is stated for a budget of 1000 d evaluations (``--full``); other budgets are
   reported but marked so.
4. Every suite (every function, for BBOB): l2l-zo's median final loss (above the
   optimum, where it is known) is not above zo-adamm's 75th percentile (default options).

On BBOB a distance below :data:`BBOB_PRECISION` counts as that precision: COCO's final
target, below which a function counts as solved. Both methods end there on the sphere
(f1, d = 10), where the finite differences (``mu`` = 1e-4 ``x_scale``) set the floor;
how far below it a run lands says nothing about the optimizer.

Only run records are read (see :mod:`benchmarks.measures`); a goal whose solvers are
missing from the run is left out.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.measures import Group, SuiteRuns, best_at, fmt_loss, plural, quantiles
from benchmarks.problems.bbob import TARGET_PRECISIONS

LEARNED = "l2l-zo"
REFERENCE = "zo-adamm"
CLASSICS = ("zo-sgd", "zo-signsgd", "zo-adamm")
MIN_RUNS = 10
BBOB_WINS = 20
BBOB_BUDGET_PER_DIM = 1000
#: COCO's final target: BBOB distances to the optimum below it count as it (solved).
BBOB_PRECISION = min(TARGET_PRECISIONS)


def _group(suite: SuiteRuns, solver: str, variant: str) -> Group | None:
    return next((g for g in suite.groups if g.solver == solver and g.variant == variant), None)


def evaluations_to_reach(run: dict, level: float) -> float:
    """Evaluations after which the run's best value is <= ``level`` (inf if never)."""
    hits = np.flatnonzero(run["trace_best"] <= level)
    return float(run["trace_nfev"][hits[0]]) if hits.size else math.inf


def mean_curve(runs: list[dict], grid: np.ndarray) -> np.ndarray:
    """The mean over runs of the best value after each number of evaluations in ``grid``."""
    return np.mean([best_at(r, grid) for r in runs], axis=0)


def _best_tuned_classic(suite: SuiteRuns, score) -> Group | None:
    tuned = [g for g in (_group(suite, s, "tuned") for s in CLASSICS) if g and g.runs]
    return min(tuned, key=score) if tuned else None


def _row(goal: int, suite: SuiteRuns, met: bool, figure: str, detail: str) -> dict:
    return {"goal": goal, "suite": suite.key, "met": bool(met), "figure": figure,
            "detail": detail}


def nclsq_goal(suite: SuiteRuns) -> dict | None:
    """Goal 1 on one nclsq suite."""
    learned = _group(suite, LEARNED, "default")
    rival = _best_tuned_classic(suite, lambda g: float(quantiles([r["final"] for r in g.runs], 50)))
    if learned is None or rival is None:
        return None
    level = float(quantiles([r["final"] for r in rival.runs], 50))
    needed = float(quantiles([evaluations_to_reach(r, level) for r in learned.runs], 50))
    runs = len(learned.runs)
    half = suite.budget / 2
    figure = (f"{needed:.0f} of {suite.budget} evaluations" if math.isfinite(needed)
              else "not reached")
    detail = (f"level {fmt_loss(level)} = median final of {rival.short_label} "
              f"(lr {rival.lr:.2g}); goal <= {half:.0f}; {plural(runs, 'run')}"
              + ("" if runs >= MIN_RUNS else f" (fewer than {MIN_RUNS})"))
    return _row(1, suite, needed <= half and runs >= MIN_RUNS, figure, detail)


def _success_rate(runs: list[dict]) -> float:
    return float(np.mean([bool(r["assess"].get("success")) for r in runs]))


def attack_goal(suite: SuiteRuns) -> dict | None:
    """Goal 2 on the attack suite."""
    learned = _group(suite, LEARNED, "default")
    rival = _best_tuned_classic(suite, lambda g: float(np.mean([r["final"] for r in g.runs])))
    if learned is None or rival is None:
        return None
    level = float(np.mean([r["final"] for r in rival.runs]))
    grid = np.unique(np.concatenate([r["trace_nfev"] for r in learned.runs] + [[suite.budget]]))
    curve = mean_curve(learned.runs, grid)
    hits = np.flatnonzero(curve <= level)
    needed = float(grid[hits[0]]) if hits.size else math.inf
    speedup = suite.budget / needed
    final = float(curve[-1])
    ours, theirs = _success_rate(learned.runs), _success_rate(rival.runs)
    met = speedup >= 2 and final < level and ours >= theirs
    figure = f"{speedup:.2f}x fewer queries" if math.isfinite(needed) else "level not reached"
    detail = (f"vs {rival.short_label} (lr {rival.lr:.2g}): mean final {fmt_loss(final)} vs "
              f"{fmt_loss(level)}; success {ours:.0%} vs {theirs:.0%}; goal >= 2x, lower final, "
              f"success at least as high")
    return _row(2, suite, met, figure, detail)


def _gap(run: dict) -> float:
    """The run's final value above the problem's optimum, at least BBOB_PRECISION (its
    final value when the optimum is unknown): BBOB instances of one function have optima
    at other values."""
    if run["f_opt"] is None:
        return run["final"]
    return max(run["final"] - run["f_opt"], BBOB_PRECISION)


def _median_gap_by_function(group: Group) -> dict[int, float]:
    gaps: dict[int, list[float]] = {}
    for r in group.runs:
        gaps.setdefault(r["fid"], []).append(_gap(r))
    return {fid: float(quantiles(v, 50)) for fid, v in gaps.items()}


def bbob_goal(suite: SuiteRuns) -> dict | None:
    """Goal 3 on one BBOB suite."""
    learned, reference = _group(suite, LEARNED, "default"), _group(suite, REFERENCE, "default")
    if learned is None or reference is None:
        return None
    ours, theirs = _median_gap_by_function(learned), _median_gap_by_function(reference)
    common = sorted(set(ours) & set(theirs))
    wins = sum(ours[f] <= theirs[f] for f in common)
    worse = [f for f in common if ours[f] > theirs[f]]
    per_dim = suite.budget / suite.dim if suite.dim else math.nan
    stated = math.isclose(per_dim, BBOB_BUDGET_PER_DIM)
    detail = (f"budget {per_dim:.0f} d" + ("" if stated else
                                           f" (the goal is stated at {BBOB_BUDGET_PER_DIM} d)")
              + f"; goal >= {BBOB_WINS}; worse on f" + ",".join(map(str, worse)))
    return _row(3, suite, wins >= BBOB_WINS and stated and len(common) == 24,
                f"{wins}/{len(common)} functions", detail)


def safety_goal(suite: SuiteRuns) -> dict | None:
    """Goal 4 on one suite (each function separately for BBOB)."""
    learned, reference = _group(suite, LEARNED, "default"), _group(suite, REFERENCE, "default")
    if learned is None or reference is None:
        return None
    key = (lambda r: r["fid"]) if suite.is_bbob else (lambda r: suite.key)
    problems = sorted({key(r) for r in learned.runs})
    unsafe = []
    for p in problems:
        ours = quantiles([_gap(r) for r in learned.runs if key(r) == p], 50)
        limit = quantiles([_gap(r) for r in reference.runs if key(r) == p], 75)
        if ours > limit:
            unsafe.append(p)
    figure = f"{len(problems) - len(unsafe)}/{len(problems)} " + (
        "functions" if suite.is_bbob else "suite") + " safe"
    detail = ("l2l-zo median final <= zo-adamm 75th percentile"
              + (f"; above it on f{','.join(map(str, unsafe))}" if unsafe and suite.is_bbob
                 else ""))
    return _row(4, suite, not unsafe, figure, detail)


def evaluate(suites: list[SuiteRuns]) -> list[dict]:
    """Every goal that the run's suites can check, in goal order."""
    rows = []
    for suite in suites:
        if suite.family == "nclsq":
            rows.append(nclsq_goal(suite))
        elif suite.family == "attack":
            rows.append(attack_goal(suite))
        elif suite.is_bbob:
            rows.append(bbob_goal(suite))
    rows += [safety_goal(s) for s in suites]
    return sorted((r for r in rows if r is not None), key=lambda r: r["goal"])
