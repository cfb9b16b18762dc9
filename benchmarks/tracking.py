"""Budget accounting shared by every solver: one Tracker per run.

Every solver, ours or a peer, evaluates the problem only through a Tracker. It
counts evaluations (one per point, whether the point came alone or in a batch),
refuses to go past the budget, and records the best value after each improvement,
so all solvers are charged and measured the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


class BudgetExhausted(Exception):
    """Raised by a Tracker asked for more evaluations than the budget allows."""


@dataclass
class Trace:
    """What one run produced: the best value as a step function of evaluations.

    ``nfev[i]`` evaluations had been spent when the best value became ``best[i]``.
    """

    nfev: list[int] = field(default_factory=list)
    best: list[float] = field(default_factory=list)

    def best_at(self, budgets: np.ndarray) -> np.ndarray:
        """Best value after each of ``budgets`` evaluations (NaN before the first)."""
        nfev = np.asarray(self.nfev)
        index = np.searchsorted(nfev, budgets, side="right") - 1
        best = np.asarray(self.best + [np.nan])  # index -1 -> NaN
        return best[index]

    def first_reaching(self, level: float) -> int | None:
        """Evaluations spent when the best value first reached ``<= level``, or None."""
        for n, b in zip(self.nfev, self.best):
            if b <= level:
                return n
        return None


class Tracker:
    """Wraps a problem's objective for one run under a fixed evaluation budget.

    Call it with one point, or use :meth:`batch` with a (k, d) array. Non-finite
    values count as evaluations and never become the best.
    """

    def __init__(self, fun, budget: int, batch_fun=None):
        self.fun = fun
        self.batch_fun = batch_fun
        self.budget = budget
        self.nfev = 0
        self.best = np.inf
        self.best_x: np.ndarray | None = None
        self.trace = Trace()
        self.started = time.perf_counter()

    def __call__(self, x) -> float:
        if self.nfev >= self.budget:
            raise BudgetExhausted
        x = np.array(x, dtype=float)
        value = float(self.fun(x))
        self.nfev += 1
        self._record(x, value)
        return value

    def batch(self, points) -> np.ndarray:
        """Values of the rows of ``points``: one batched call when the problem has one."""
        points = np.array(points, dtype=float, ndmin=2)
        if self.nfev + len(points) > self.budget:
            raise BudgetExhausted
        if self.batch_fun is None:
            return np.array([self(p) for p in points])
        values = np.asarray(self.batch_fun(points), dtype=float)
        for p, v in zip(points, values):
            self.nfev += 1
            self._record(p, float(v))
        return values

    def _record(self, x: np.ndarray, value: float) -> None:
        if np.isfinite(value) and value < self.best:
            self.best, self.best_x = value, x
            self.trace.nfev.append(self.nfev)
            self.trace.best.append(value)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
