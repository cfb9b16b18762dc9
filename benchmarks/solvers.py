"""The solvers the suite compares: every registered zominimize method, and peers.

A solver runs one problem under a Tracker (which enforces the budget) from the
problem's x0. zominimize methods come from ``zominimize.method_names()``, so a
newly registered method appears here with no change. Peers are what a user
would pick instead: CMA-ES (full, and diagonal/sep-CMA at high dimension), scipy's
Nelder-Mead, Powell and COBYQA where the dimension allows, and nevergrad.

Settings handed to peers: CMA-ES sigma0, the Nelder-Mead initial simplex and
COBYQA's initial trust radius are the problem's ``scale``; everything else is the
peer's default. zominimize methods run with their default options (or a tuned lr).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

import zominimize
from benchmarks.problems import Problem
from benchmarks.tracking import BudgetExhausted, Tracker


@dataclass(frozen=True)
class Solver:
    """A named way to minimise a Problem within a Tracker's budget.

    ``run(problem, tracker, seed, options)`` returns a dict of facts about the run
    (e.g. the method that actually ran); ``applies(problem)`` says whether the
    solver is meant for that problem (dimension limits).
    """

    name: str
    group: str
    run: Callable[[Problem, Tracker, int, dict], dict]
    applies: Callable[[Problem], bool] = lambda problem: True
    tunable: bool = False
    deterministic: bool = False  # the seed changes nothing: run it once per problem


def _zominimize(method: str) -> Callable:
    def run(problem: Problem, tracker: Tracker, seed: int, options: dict) -> dict:
        batched = problem.batch_fun is not None
        fun = tracker.batch if batched else tracker
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zominimize.FallbackWarning)
            res = zominimize.minimize(
                fun, problem.x0, method=method,
                options={"seed": seed, "maxfev": tracker.budget, "maxiter": tracker.budget,
                         "ftol": 0.0, "vectorized": batched, **options})
        return {"method_ran": res.method, "fallback": res.fallback, "status": res.status}
    return run


def _cma(diagonal: bool) -> Callable:
    def run(problem: Problem, tracker: Tracker, seed: int, options: dict) -> dict:
        import cma
        es = cma.CMAEvolutionStrategy(problem.x0, problem.scale, {
            "seed": seed + 1, "maxfevals": tracker.budget, "verbose": -9,
            "CMA_diagonal": diagonal})
        while not es.stop():
            points = es.ask()
            values = tracker.batch(np.array(points))
            es.tell(points, list(values))
        return {"stop": {k: str(v) for k, v in es.stop().items()}}
    return run


def _scipy(method: str) -> Callable:
    def run(problem: Problem, tracker: Tracker, seed: int, options: dict) -> dict:
        from scipy.optimize import minimize
        d, x0, scale = problem.dim, problem.x0, problem.scale
        opts = {"maxfev": tracker.budget} if method != "COBYQA" else {
            "maxfev": tracker.budget, "initial_tr_radius": scale}
        if method == "Nelder-Mead":
            opts["initial_simplex"] = np.vstack([x0, x0 + scale * np.eye(d)])
        res = minimize(tracker, x0, method=method, options=opts)
        return {"message": str(res.message)}
    return run


def _nevergrad(name: str) -> Callable:
    def run(problem: Problem, tracker: Tracker, seed: int, options: dict) -> dict:
        import nevergrad as ng
        param = ng.p.Array(init=problem.x0).set_mutation(sigma=problem.scale)
        param.random_state = np.random.RandomState(seed)
        optimizer = ng.optimizers.registry[name](parametrization=param, budget=tracker.budget)
        optimizer.minimize(tracker)
        return {}
    return run


def _at_most(d: int) -> Callable[[Problem], bool]:
    return lambda problem: problem.dim <= d


def all_solvers() -> dict[str, Solver]:
    """Every solver of the suite, by name: zominimize's methods first."""
    solvers = [Solver(m, "zominimize", _zominimize(m),
                      tunable=zominimize.get_method(m).ablation_of is None)
               for m in zominimize.method_names()]
    solvers += [
        Solver("cma-es", "peer", _cma(diagonal=False), _at_most(100)),
        Solver("sep-cma-es", "peer", _cma(diagonal=True)),
        Solver("nelder-mead", "peer", _scipy("Nelder-Mead"), _at_most(100), deterministic=True),
        Solver("powell", "peer", _scipy("Powell"), _at_most(1000), deterministic=True),
        Solver("cobyqa", "peer", _scipy("COBYQA"), _at_most(10), deterministic=True),
        Solver("ng-ngopt", "peer", _nevergrad("NGOpt"), _at_most(1000)),
        Solver("ng-oneplusone", "peer", _nevergrad("OnePlusOne"), _at_most(1000)),
    ]
    return {s.name: s for s in solvers}


def run_solver(solver: Solver, problem: Problem, budget: int, seed: int,
               options: dict | None = None) -> tuple[Tracker, dict, str | None]:
    """Run ``solver`` once; return the tracker, the solver's facts and an error or None.

    Running out of budget is the normal end for most solvers, not an error. Any
    other exception is caught and returned as text, so a failing solver shows as
    failing in the report instead of stopping the suite.
    """
    tracker = Tracker(problem.fun, budget, problem.batch_fun)
    facts, error = {}, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            facts = solver.run(problem, tracker, seed, options or {})
    except BudgetExhausted:
        pass
    except Exception as exc:  # a peer that breaks is reported, not fatal
        error = f"{type(exc).__name__}: {exc}"
    return tracker, facts, error
