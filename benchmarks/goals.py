"""Does the learned optimizer win? Its goals for l2l-zo, checked on one run.

l2l-zo runs with default options (variant "default") on problems its weights never saw.
"Final" is a run's best value at the end of its budget, less the optimum where it is known
(BBOB), and every comparison is between medians over the suite's runs:

1. **Level.** On each nclsq suite and on the attack, l2l-zo's median final is at or below
   that of the best tuned classic method (of zo-sgd, zo-signsgd and zo-adamm with the lr
   tuned on held-out instances, the one with the lowest median final); on the attack it is
   also below sep-CMA-ES's. On each BBOB suite, at a budget of :data:`BBOB_BUDGET_PER_DIM`
   d, the median over the 24 functions of (l2l-zo's median final / the best tuned classic's)
   is at most 1, the best tuned classic being the one with the lowest mean log10 median
   final over the functions.
2. **It adapts.** On nclsq and the attack, with ``lr`` set 10x too small and 10x too large
   (variants :data:`SMALL` and :data:`LARGE`), l2l-zo's median final is within
   :data:`ADAPT_RATIO` times its own default result (above it at most that much; below it
   is fine). zo-adamm's ratio is reported beside it.
3. **The query RNN earns its place.** On the attack and nclsq d = 1,000 the ablation without
   it, ``l2l-zo-update``, ends measurably worse: its median final is above l2l-zo's, and
   l2l-zo ends lower in more of the paired runs (same problem, same seed) than chance
   allows (one-sided sign test, p < :data:`SIGN_TEST_P`; ties left out).
4. **Safe.** On every suite (every function, for BBOB) l2l-zo's median final is not above
   zo-adamm's 75th percentile (default options); on BBOB also, l2l-zo's median is no worse
   than zo-adamm's on at least :data:`BBOB_WINS` of the 24 functions.
5. **Cost.** At d = 10^6, q = 20 on the CPU, l2l-zo's overhead per iteration and its peak
   memory are at most :data:`COST_RATIO` times zo-adamm's (from the speed records).

The goals are stated as medians over at least :data:`MIN_RUNS` runs (12 on BBOB,
instances 4 to 15); a goal read from fewer runs is reported and marked missed.

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
from scipy import stats

from benchmarks.measures import Group, SuiteRuns, fmt_loss, plural, quantiles
from benchmarks.problems.bbob import TARGET_PRECISIONS

LEARNED = "l2l-zo"
ABLATION = "l2l-zo-update"
REFERENCE = "zo-adamm"
CLASSICS = ("zo-sgd", "zo-signsgd", "zo-adamm")
PEER = "sep-cma-es"
#: The variants that run a method with lr at 1/10 and at 10 times its default.
SMALL, LARGE = "lr/10", "lr x10"
LR_FACTORS = {SMALL: 0.1, LARGE: 10.0}
ADAPT_RATIO = 1.5
SIGN_TEST_P = 0.05
COST_RATIO = 2.0
MIN_RUNS = 10
MIN_BBOB_RUNS = 12
BBOB_WINS = 20
BBOB_BUDGET_PER_DIM = 1000
#: COCO's final target: BBOB distances to the optimum below it count as it (solved).
BBOB_PRECISION = min(TARGET_PRECISIONS)


def _group(suite: SuiteRuns, solver: str, variant: str = "default") -> Group | None:
    group = next((g for g in suite.groups if g.solver == solver and g.variant == variant), None)
    return group if group is not None and group.runs else None


def _row(goal: int, suite: str, met: bool, figure: str, detail: str) -> dict:
    return {"goal": goal, "suite": suite, "met": bool(met), "figure": figure, "detail": detail}


def final(run: dict) -> float:
    """The run's final value above the problem's optimum, at least BBOB_PRECISION (its
    final value when the optimum is unknown): BBOB instances of one function have optima
    at other values."""
    if run["f_opt"] is None:
        return run["final"]
    return max(run["final"] - run["f_opt"], BBOB_PRECISION)


def median_final(group: Group) -> float:
    return float(quantiles([final(r) for r in group.runs], 50))


def _median_by_function(group: Group) -> dict[int, float]:
    finals: dict[int, list[float]] = {}
    for r in group.runs:
        finals.setdefault(r["fid"], []).append(final(r))
    return {fid: float(quantiles(v, 50)) for fid, v in finals.items()}


def _runs_note(runs: int, least: int) -> str:
    return plural(runs, "run") + ("" if runs >= least else f" (fewer than {least})")


def _best_tuned_classic(suite: SuiteRuns, score) -> Group | None:
    tuned = [g for g in (_group(suite, s, "tuned") for s in CLASSICS) if g]
    return min(tuned, key=score) if tuned else None


def level_goal(suite: SuiteRuns) -> dict | None:
    """Goal 1 on one nclsq, attack or BBOB suite."""
    learned = _group(suite, LEARNED)
    if learned is None:
        return None
    if suite.is_bbob:
        return _bbob_level(suite, learned)
    rival = _best_tuned_classic(suite, median_final)
    if rival is None:
        return None
    ours, theirs = median_final(learned), median_final(rival)
    met = ours <= theirs and len(learned.runs) >= MIN_RUNS
    detail = f"{rival.label}: {fmt_loss(theirs)}"
    peer = _group(suite, PEER) if suite.family == "attack" else None
    if peer is not None:
        peer_median = median_final(peer)
        met = met and ours < peer_median
        detail += f"; {PEER}: {fmt_loss(peer_median)}"
    detail += f"; {_runs_note(len(learned.runs), MIN_RUNS)}"
    return _row(1, suite.key, met, f"{fmt_loss(ours)} ({ours / theirs:.2f}x)", detail)


def _bbob_level(suite: SuiteRuns, learned: Group) -> dict | None:
    def score(group: Group) -> float:
        return float(np.mean(np.log10(list(_median_by_function(group).values()))))

    rival = _best_tuned_classic(suite, score)
    if rival is None:
        return None
    ours, theirs = _median_by_function(learned), _median_by_function(rival)
    common = sorted(set(ours) & set(theirs))
    ratio = float(np.median([ours[f] / theirs[f] for f in common]))
    per_dim = suite.budget / suite.dim if suite.dim else math.nan
    stated = math.isclose(per_dim, BBOB_BUDGET_PER_DIM)
    met = ratio <= 1 and stated and len(common) == 24
    detail = (f"median over {len(common)} functions of l2l-zo / {rival.label}; budget "
              f"{per_dim:.0f} d" + ("" if stated else
                                    f" (the goal is stated at {BBOB_BUDGET_PER_DIM} d)"))
    return _row(1, suite.key, met, f"{ratio:.2f}", detail)


def _worst_ratio(suite: SuiteRuns, solver: str) -> tuple[float, str] | None:
    """The larger of the median finals at lr/10 and lr x10 over the default's, and the
    three medians as text; None when a variant is missing."""
    groups = [_group(suite, solver, v) for v in (SMALL, "default", LARGE)]
    if any(g is None for g in groups):
        return None
    small, default, large = (median_final(g) for g in groups)
    worst = max(small, large) / default if default > 0 else math.inf
    return worst, f"{fmt_loss(small)} / {fmt_loss(default)} / {fmt_loss(large)}"


def adapt_goal(suite: SuiteRuns) -> dict | None:
    """Goal 2 on one nclsq or attack suite."""
    ours = _worst_ratio(suite, LEARNED)
    if ours is None:
        return None
    runs = len(_group(suite, LEARNED).runs)
    detail = f"{LEARNED} at lr/10, default, lr x10: {ours[1]}"
    reference = _worst_ratio(suite, REFERENCE)
    if reference is not None:
        detail += f"; {REFERENCE}: {reference[1]} ({reference[0]:.3g}x)"
    detail += f"; goal <= {ADAPT_RATIO}x; {_runs_note(runs, MIN_RUNS)}"
    return _row(2, suite.key, ours[0] <= ADAPT_RATIO and runs >= MIN_RUNS,
                f"{ours[0]:.3g}x", detail)


def query_goal(suite: SuiteRuns) -> dict | None:
    """Goal 3 on one suite: l2l-zo against its ablation without the query RNN."""
    learned, ablation = _group(suite, LEARNED), _group(suite, ABLATION)
    if learned is None or ablation is None:
        return None
    theirs = {(r["name"], r["seed"]): final(r) for r in ablation.runs}
    pairs = [(final(r), theirs[(r["name"], r["seed"])]) for r in learned.runs
             if (r["name"], r["seed"]) in theirs]
    wins = sum(a < b for a, b in pairs)
    decided = sum(a != b for a, b in pairs)
    p = float(stats.binomtest(wins, decided, 0.5, alternative="greater").pvalue) if decided \
        else 1.0
    ours_median, theirs_median = median_final(learned), median_final(ablation)
    met = theirs_median > ours_median and p < SIGN_TEST_P and len(pairs) >= MIN_RUNS
    detail = (f"{ABLATION}: {fmt_loss(theirs_median)} against {fmt_loss(ours_median)}; "
              f"{LEARNED} lower in {wins} of {decided} decided pairs (sign test p = {p:.2g}, "
              f"goal < {SIGN_TEST_P}); {_runs_note(len(pairs), MIN_RUNS)}")
    return _row(3, suite.key, met, f"{theirs_median / ours_median:.2f}x", detail)


def safety_goal(suite: SuiteRuns) -> dict | None:
    """Goal 4's percentile check on one suite (each function separately for BBOB)."""
    learned, reference = _group(suite, LEARNED), _group(suite, REFERENCE)
    if learned is None or reference is None:
        return None
    key = (lambda r: r["fid"]) if suite.is_bbob else (lambda r: suite.key)
    problems = sorted({key(r) for r in learned.runs})
    unsafe = []
    for p in problems:
        ours = quantiles([final(r) for r in learned.runs if key(r) == p], 50)
        limit = quantiles([final(r) for r in reference.runs if key(r) == p], 75)
        if ours > limit:
            unsafe.append(p)
    figure = f"{len(problems) - len(unsafe)}/{len(problems)} " + (
        "functions" if suite.is_bbob else "suite") + " safe"
    detail = ("l2l-zo median final <= zo-adamm 75th percentile"
              + (f"; above it on f{','.join(map(str, unsafe))}" if unsafe and suite.is_bbob
                 else ""))
    return _row(4, suite.key, not unsafe, figure, detail)


def bbob_wins_goal(suite: SuiteRuns) -> dict | None:
    """Goal 4's count on one BBOB suite: functions where l2l-zo's median is no worse than
    zo-adamm's."""
    learned, reference = _group(suite, LEARNED), _group(suite, REFERENCE)
    if learned is None or reference is None:
        return None
    ours, theirs = _median_by_function(learned), _median_by_function(reference)
    common = sorted(set(ours) & set(theirs))
    worse = [f for f in common if ours[f] > theirs[f]]
    per_function = min(sum(r["fid"] == f for r in learned.runs) for f in common)
    met = len(common) == 24 and len(common) - len(worse) >= BBOB_WINS \
        and per_function >= MIN_BBOB_RUNS
    detail = (f"median no worse than zo-adamm's; goal >= {BBOB_WINS}; "
              f"{_runs_note(per_function, MIN_BBOB_RUNS)} per function"
              + (f"; worse on f{','.join(map(str, worse))}" if worse else ""))
    return _row(4, suite.key, met, f"{len(common) - len(worse)}/{len(common)} functions", detail)


def cost_goals(speed: dict | None) -> list[dict]:
    """Goal 5 from the speed records: l2l-zo's overhead per iteration and peak memory at
    the largest d, over zo-adamm's."""
    if not speed:
        return []
    rows = []
    for name, field in (("overhead per iteration", "overhead_s"), ("peak memory", "peak_bytes")):
        by_method = speed.get(field) or {}
        if LEARNED not in by_method or REFERENCE not in by_method:
            continue
        d = max(by_method[LEARNED], key=int)
        ours, theirs = by_method[LEARNED][d], by_method[REFERENCE].get(d)
        if not theirs:
            continue
        ratio = ours / theirs
        unit = (lambda v: f"{v * 1e3:.0f} ms") if field == "overhead_s" else \
            (lambda v: f"{v / 1e6:.0f} MB")
        rows.append(_row(5, "speed", ratio <= COST_RATIO, f"{ratio:.2f}x",
                         f"{name} at d = {int(d):,}, q = {speed.get('q', '?')}: {LEARNED} "
                         f"{unit(ours)}, {REFERENCE} {unit(theirs)}; goal <= {COST_RATIO}x"))
    return rows


def evaluate(suites: list[SuiteRuns], speed: dict | None = None) -> list[dict]:
    """Every goal that the run's suites (and speed records) can check, in goal order."""
    rows = []
    for suite in suites:
        rows.append(level_goal(suite))
        if not suite.is_bbob:
            rows.append(adapt_goal(suite))
        if suite.family == "attack" or suite.key == "nclsq-d1000":
            rows.append(query_goal(suite))
        rows.append(safety_goal(suite))
        if suite.is_bbob:
            rows.append(bbob_wins_goal(suite))
    rows += cost_goals(speed)
    return sorted((r for r in rows if r is not None), key=lambda r: r["goal"])
