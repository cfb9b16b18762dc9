"""Learning-rate tuning of the zominimize methods, on instances kept apart from the test ones.

For each tunable method and each suite, the grid multiplies the lr the method
uses by default on that suite (read from one iteration's ``state_dict``: the
automatic lr of zo-sgd is only fixed after its first estimate). The score of an
lr is the mean over tuning runs of log10 of the final gap to the optimum (f_opt
when known, else 0), so every tuning instance weighs the same whatever its scale.
"""

from __future__ import annotations

import warnings

import numpy as np

import zominimize
from benchmarks.runner import problem_for


def default_lr(method: str, spec: dict) -> float | None:
    """The lr ``method`` runs with by default on the problem ``spec``; None if it has none.

    None also when the method would not run as itself (a fallback), so that no
    tuned duplicate of the fallback is reported under its name.
    """
    problem = problem_for(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = zominimize.ZOOptimizer(method, problem.x0, seed=0)
    if opt.method != method:
        return None
    points = opt.ask()
    values = (problem.batch_fun(points) if problem.batch_fun is not None
              else [problem.fun(p) for p in points])
    opt.tell(points, values)
    state = opt.state_dict()
    for candidate in (state["rule_state"].get("lr"), state["settings"].get("lr"),
                      state["settings"].get("step")):
        if candidate is not None and np.isfinite(candidate):
            return float(candidate)
    return None


def tuning_runs(methods: list[str], specs: list[dict], budget: int, multipliers,
                seed: int = 0) -> list[dict]:
    """One run per (method, lr on the grid, tuning problem); none without tuning problems."""
    runs = []
    if not specs:
        return runs
    for method in methods:
        center = default_lr(method, specs[0])
        if center is None:
            continue
        for m in multipliers:
            for spec in specs:
                runs.append({"problem": spec, "solver": method, "seed": seed, "budget": budget,
                             "options": {"lr": center * m}, "variant": "tuning"})
    return runs


def best_lrs(records: list[dict]) -> dict[str, dict]:
    """The lr with the best mean log10 gap, per method: {method: {"lr", "score", "grid"}}."""
    scores: dict[str, dict[float, list[float]]] = {}
    for r in records:
        gap = (r["final"] if r["final"] is not None else np.inf) - (r["f_opt"] or 0.0)
        scores.setdefault(r["solver"], {}).setdefault(r["options"]["lr"], []).append(
            float(np.log10(max(gap, 1e-12))))
    chosen = {}
    for method, by_lr in scores.items():
        grid = {lr: float(np.mean(v)) for lr, v in sorted(by_lr.items())}
        lr = min(grid, key=grid.get)
        chosen[method] = {"lr": lr, "score": grid[lr], "grid": grid}
    return chosen
