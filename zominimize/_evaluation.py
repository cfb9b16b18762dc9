"""Calling the user's function: copies, value checks, and batch evaluation.

Every evaluation goes through an :class:`Objective`, which hands ``fun`` a fresh
copy of each point and checks that it returns one real number. An
:class:`Evaluator` evaluates the points of one iteration: one by one, as one
vectorized call, or spread over workers (local processes, a map-like callable, or
an executor with ``submit`` such as a ``dask.distributed`` client).
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np

from .errors import ObjectiveValueError


def as_real_scalar(value: Any) -> float:
    """Return ``value`` as a float, or raise ObjectiveValueError saying what it was."""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return float(value)
    try:
        arr = np.asarray(value)
    except Exception:  # an object numpy cannot even wrap
        arr = np.asarray(None)
    if arr.dtype.kind not in "biuf":
        raise ObjectiveValueError(f"fun must return a real number, got "
                                  f"{type(value).__name__}: {value!r:.80}")
    if arr.size != 1:
        raise ObjectiveValueError(f"fun must return a scalar, got an array of shape {arr.shape}")
    return float(arr.reshape(()))


class Objective:
    """``fun(x, *args)`` as a picklable callable returning a float."""

    def __init__(self, fun: Callable, args: tuple = ()):
        self.fun = fun
        self.args = args

    def __call__(self, x: np.ndarray) -> float:
        return as_real_scalar(self.fun(x, *self.args))


class VectorizedObjective(Objective):
    """``fun(X, *args)`` for a (k, d) batch X, returning k floats."""

    def __call__(self, points: np.ndarray) -> np.ndarray:
        raw = self.fun(points, *self.args)
        k = points.shape[0]
        try:
            values = np.asarray(raw)
        except Exception:
            values = np.asarray(None)
        if values.dtype.kind not in "biuf":
            raise ObjectiveValueError(f"vectorized fun must return {k} real numbers, got "
                                      f"{type(raw).__name__}: {raw!r:.80}")
        if values.size != k or (values.ndim == 2 and 1 not in values.shape) or values.ndim > 2:
            raise ObjectiveValueError(f"vectorized fun must return {k} values (one per row), "
                                      f"got shape {values.shape}")
        return values.astype(float).reshape(k)


class Evaluator:
    """Evaluates the rows of a (k, d) array; use as a context manager.

    ``completed`` holds the values of the current batch computed so far (serial
    evaluation), so a run that fails half-way through a batch loses none of them.
    """

    def __init__(self, fun: Callable, args: tuple = (), vectorized: bool = False,
                 workers: Any = 1):
        if vectorized and workers != 1:
            raise ValueError(f"vectorized=True and workers={workers!r} cannot be combined: "
                             f"a vectorized fun receives the whole batch in one call")
        self.vectorized = vectorized
        self.objective = (VectorizedObjective if vectorized else Objective)(fun, args)
        self.workers = workers
        self.completed: list[float] = []
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Evaluator":
        if isinstance(self.workers, int) and self.workers > 1:
            try:
                pickle.dumps(self.objective)
            except Exception as exc:
                raise ValueError(f"workers={self.workers} evaluates fun in other processes, so "
                                 f"fun and args must be picklable (a module-level function, "
                                 f"not a lambda or closure): {exc}") from None
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=exc_info[0] is None, cancel_futures=True)
            self._pool = None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Return the values of the rows of ``points``; fun sees copies only."""
        self.completed = []
        if self.vectorized:
            return self.objective(np.array(points))
        if isinstance(self.workers, int) and self._pool is None:
            for row in points:
                self.completed.append(self.objective(np.array(row)))
            return np.array(self.completed)
        rows = [np.array(row) for row in points]
        if self._pool is not None:
            return np.array(list(self._pool.map(self.objective, rows)))
        if hasattr(self.workers, "submit"):
            futures = [self.workers.submit(self.objective, row) for row in rows]
            return np.array([float(f.result()) for f in futures])
        return np.array([float(v) for v in self.workers(self.objective, rows)])
