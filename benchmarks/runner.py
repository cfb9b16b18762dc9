"""Run a list of benchmark runs (in parallel processes) and turn each into a record.

A run is a plain dict: ``{"problem": spec, "solver": name, "seed": int,
"budget": int, "options": dict, "variant": "default" | "tuned"}``. Its record
(JSON-serialisable) holds the spec's fields plus:

``suite, family, name, dim``  the problem's table, family, instance and dimension;
``f0, f_opt, targets``       value at x0, known optimum (or None), target levels;
``nfev, final``              evaluations spent and best value at the end;
``trace``                    {"nfev": [...], "best": [...]}, best value after each improvement;
``reached``                  evaluations to reach each target (None if never);
``seconds``                  wall time of the run;
``error``                    None, or the exception that stopped a failing solver;
``facts``                    what the solver reported (e.g. the method that ran);
``assess``                   the problem's extra figures at the best point (attack: success...).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache

import numpy as np

from benchmarks.problems import Problem, build
from benchmarks.solvers import all_solvers, run_solver


@lru_cache(maxsize=64)
def _problem(spec_json: str) -> Problem:
    return build(json.loads(spec_json))


def problem_for(spec: dict) -> Problem:
    """The Problem of ``spec``, built once per process."""
    return _problem(json.dumps(spec, sort_keys=True))


def execute(run: dict) -> dict:
    """Carry out one run and return its record."""
    problem = problem_for(run["problem"])
    solver = all_solvers()[run["solver"]]
    tracker, facts, error = run_solver(solver, problem, run["budget"], run["seed"],
                                       run.get("options"))
    f0 = float(problem.fun(problem.x0))
    assess = {}
    if problem.assess is not None and tracker.best_x is not None:
        assess = problem.assess(tracker.best_x)
    return {
        **run,
        "suite": problem.suite, "family": problem.family, "name": problem.name,
        "dim": problem.dim, "f0": f0, "f_opt": problem.f_opt, "targets": problem.targets,
        "nfev": tracker.nfev, "final": float(tracker.best) if np.isfinite(tracker.best) else None,
        "trace": {"nfev": tracker.trace.nfev, "best": tracker.trace.best},
        "reached": [tracker.trace.first_reaching(t) for t in problem.targets],
        "seconds": tracker.seconds, "error": error, "facts": _plain(facts), "assess": _plain(assess),
    }


def _plain(obj):
    """JSON-friendly copy: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _init_worker() -> None:
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


def run_all(runs: list[dict], workers: int, label: str = "runs") -> list[dict]:
    """Execute ``runs`` on ``workers`` processes (one BLAS thread each), with a progress bar."""
    if not runs:
        return []
    if workers <= 1:
        return [execute(r) for r in _progress(runs, label)]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    context = multiprocessing.get_context("spawn")  # fresh BLAS settings in each worker
    records: list[dict | None] = [None] * len(runs)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(execute, run): i for i, run in enumerate(runs)}
        for future in _progress(as_completed(futures), label, total=len(runs)):
            records[futures[future]] = future.result()
    return records


def _progress(iterable, label: str, total: int | None = None):
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=label, total=total, file=sys.stderr, leave=False,
                disable=None, dynamic_ncols=True)
