"""Calling the user's function: copies, value checks, and batch evaluation.

Every evaluation goes through an :class:`Objective`, which hands ``fun`` a fresh
copy of each point and checks that it returns one real number. An
:class:`Evaluator` evaluates the points of one iteration: one by one, as one
vectorized call, or spread over workers (local processes, a map-like callable, or
an executor with ``submit`` such as a ``dask.distributed`` client). Whatever the
path, it knows afterwards which values came back and how many calls really ran,
so a batch cut short by an exception loses none of them.
"""

from __future__ import annotations

import decimal
import inspect
import numbers
import os
import pickle
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np

from .errors import ObjectiveValueError

#: Real numbers that ``float()`` converts although numpy may not (Fraction, Decimal, ...).
REAL_TYPES = (numbers.Real, decimal.Decimal)

# Tags of the outcome of one parallel call (see GuardedCall).
VALUE, ERROR, SKIPPED, LOST = "value", "error", "skipped", "lost"


def describe(value: Any, limit: int = 80) -> str:
    """``type: repr`` of ``value``, shortened, for error messages (never raises)."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__, or an int too long to print
        text = f"<{type(value).__name__} object>"
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(value).__name__}: {text}"


def real_to_float(value: Any, what: str = "fun must return a real number") -> float:
    """``float(value)`` for a real number of any type, or raise ObjectiveValueError.

    Scipy accepts whatever ``float()`` converts, so Fraction, Decimal and other
    ``numbers.Real`` are accepted too; one too large for a float is refused.
    """
    try:
        return float(value)
    except OverflowError:
        raise ObjectiveValueError(f"{what}, got one too large for a float: "
                                  f"{describe(value)}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ObjectiveValueError(f"{what}, got {describe(value)} ({exc})") from None


def as_real_scalar(value: Any) -> float:
    """Return ``value`` as a float, or raise ObjectiveValueError saying what it was.

    Accepted: a real number of any type (int, float, numpy scalar, Fraction,
    Decimal, ...), or an array or list holding exactly one. Refused: str, complex,
    None, arrays of other sizes.
    """
    if isinstance(value, REAL_TYPES):
        return real_to_float(value)
    try:
        arr = np.asarray(value)
    except Exception:  # an object numpy cannot even wrap
        arr = np.asarray(None)
    if arr.dtype.kind == "O" and arr.size == 1 and isinstance(arr.flat[0], REAL_TYPES):
        return real_to_float(arr.flat[0])
    if arr.dtype.kind not in "biuf":
        raise ObjectiveValueError(f"fun must return a real number, got {describe(value)}")
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
        what = f"vectorized fun must return {k} real numbers"
        if values.dtype.kind == "O" and all(isinstance(v, REAL_TYPES) for v in values.flat):
            values = np.array([real_to_float(v, what) for v in values.flat]).reshape(values.shape)
        if values.dtype.kind not in "biuf":
            raise ObjectiveValueError(f"{what}, got {describe(raw)}")
        if values.size != k or (values.ndim == 2 and 1 not in values.shape) or values.ndim > 2:
            raise ObjectiveValueError(f"vectorized fun must return {k} values (one per row), "
                                      f"got shape {values.shape}")
        return values.astype(float).reshape(k)


class GuardedCall:
    """``objective(x)`` for workers: returns an outcome and never raises.

    The outcome is ``(VALUE, float)``, ``(ERROR, exception)`` (any BaseException,
    KeyboardInterrupt and SystemExit included, so none can kill or hang a worker) or
    ``(SKIPPED, None)``: once a call has failed, the calls of the batch that run
    later in this process are skipped, as serial evaluation would stop there. An
    exception raised in another process must travel back pickled: it gets the
    worker's traceback as a note, and one that cannot be pickled is replaced by a
    RuntimeError holding its repr.
    """

    def __init__(self, objective: Objective):
        self.objective = objective
        self.pid = os.getpid()
        self.failed = False

    def __call__(self, x: np.ndarray) -> tuple:
        if self.failed:
            return SKIPPED, None
        try:
            return VALUE, self.objective(x)
        except BaseException as exc:  # noqa: B036 - the point is to capture everything
            self.failed = True
            return ERROR, exc if os.getpid() == self.pid else self._portable(exc)

    @staticmethod
    def _portable(exc: BaseException) -> BaseException:
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note("Traceback in the worker process:\n"
                         + "".join(traceback.format_exception(exc)).rstrip())
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception as problem:
            return RuntimeError(f"fun raised {describe(exc, 300)} in a worker process; it "
                                f"cannot be pickled back ({problem!r:.200})")


def accepts_keyword(method: Callable, name: str) -> bool:
    """True when ``method`` has a parameter ``name`` that can be passed by keyword."""
    try:
        parameter = inspect.signature(method).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                                        parameter.KEYWORD_ONLY)


class Evaluator:
    """Evaluates the rows of a (k, d) array; use as a context manager.

    After each call, also when it raised, ``batch_values`` holds the values of the
    batch that came back (NaN for the others), ``batch_returned`` marks them, and
    ``batch_calls`` is the number of points fun was really called on: serial, the
    calls made including one that raised; vectorized, all k rows of the call;
    workers, every call that ran (a worker that failed is not counted). With
    workers, a failing call does not stop the batch: all outcomes are collected,
    then the first failing point's exception is raised.
    """

    def __init__(self, fun: Callable, args: tuple = (), vectorized: bool = False,
                 workers: Any = 1):
        if vectorized and workers != 1:
            raise ValueError(f"vectorized=True and workers={workers!r} cannot be combined: "
                             f"a vectorized fun receives the whole batch in one call")
        self.vectorized = vectorized
        self.objective = (VectorizedObjective if vectorized else Objective)(fun, args)
        self.workers = workers
        self.batch_values = np.empty(0)
        self.batch_returned = np.zeros(0, dtype=bool)
        self.batch_calls = 0
        self._pool: ProcessPoolExecutor | None = None
        # A dask client computes identical "pure" tasks once; every query must be a call.
        self._submit_kwargs = ({"pure": False} if hasattr(workers, "submit")
                               and accepts_keyword(workers.submit, "pure") else {})

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
        k = points.shape[0]
        self.batch_values = np.full(k, np.nan)
        self.batch_returned = np.zeros(k, dtype=bool)
        self.batch_calls = 0
        if self.vectorized:
            self.batch_calls = k
            self.batch_values = self.objective(np.array(points))
            self.batch_returned[:] = True
        elif isinstance(self.workers, int) and self._pool is None:
            for i, row in enumerate(points):
                self.batch_calls = i + 1
                self.batch_values[i] = self.objective(np.array(row))
                self.batch_returned[i] = True
        else:
            self._parallel([np.array(row) for row in points])
        return self.batch_values.copy()

    def _parallel(self, rows: list) -> None:
        call = GuardedCall(self.objective)
        errors: dict[int, BaseException] = {}
        executor = self._pool if self._pool is not None else self.workers
        if hasattr(executor, "submit"):
            futures = []
            try:
                for row in rows:
                    futures.append(executor.submit(call, row, **self._submit_kwargs))
                for i, future in enumerate(futures):
                    self._take(i, self._outcome(future), errors)
            except BaseException:  # Ctrl-C while waiting, a submit that failed
                for future in futures:
                    future.cancel()
                raise
        else:
            count = 0
            for outcome in self.workers(call, rows):
                if count < len(rows):
                    self._take(count, outcome, errors)
                count += 1
            if count != len(rows):
                self.batch_values[:] = np.nan  # which value belongs to which point is unknown
                self.batch_returned[:] = False
                raise ObjectiveValueError(f"workers={self.workers!r} returned {count} values "
                                          f"for {len(rows)} points: a map-like callable must "
                                          f"return fn(x) for each x, in order")
        if errors:
            raise errors[min(errors)]

    @staticmethod
    def _outcome(future) -> tuple:
        try:
            return future.result()
        except Exception as exc:  # the worker, not fun, failed (fun never raises here)
            return LOST, exc

    def _take(self, i: int, outcome: Any, errors: dict) -> None:
        """Record the outcome of point i."""
        if not (isinstance(outcome, tuple) and len(outcome) == 2
                and outcome[0] in (VALUE, ERROR, SKIPPED, LOST)):
            raise ObjectiveValueError(f"workers={self.workers!r} must return fn(x) for each "
                                      f"point x, got {describe(outcome)}")
        tag, payload = outcome
        if tag in (VALUE, ERROR):
            self.batch_calls += 1
        if tag == VALUE:
            self.batch_values[i] = payload
            self.batch_returned[i] = True
        elif tag in (ERROR, LOST):
            errors[i] = payload
