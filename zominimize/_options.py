"""Option tables: each option's default, its check, and its documentation.

Every option is declared once here (or on a method's spec, for method-specific
ones); validation, defaults and ``show_options`` are all derived from these tables.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Option:
    """One option: its name, default, checker and one-paragraph documentation.

    ``check(value)`` returns the normalised value or raises ValueError/TypeError
    naming the option and the value. ``None`` defaults mean "chosen automatically"
    and are always accepted.
    """

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str

    def parse(self, value: Any) -> Any:
        if value is None and self.default is None:
            return None
        return self.check(self.name, value)


# ---------------------------------------------------------------- checkers

def shown(value: Any) -> str:
    """``repr`` of a value for an error message, numpy scalars as plain numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1 (a float such as 100.1 is truncated, as scipy does for maxiter)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive integer, got {shown(value)}")
    if not np.isfinite(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {shown(value)}")
    return int(value)


def nonnegative_int(name: str, value: Any) -> int:
    """An integer >= 0 given as an integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {shown(value)}")
    return int(value)


def strict_positive_int(name: str, value: Any) -> int:
    """An integer >= 1 given as an integer (no truncation)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {shown(value)}")
    return int(value)


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {shown(value)}")
    return float(value)


def positive_or_inf(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number or inf, got {shown(value)}")
    return float(value)


def nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not value >= 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {shown(value)}")
    return float(value)


def real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value):
        raise ValueError(f"{name} must be a real number, got {shown(value)}")
    return float(value)


def unit_interval_open(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {shown(value)}")
    return float(value)


def unit_interval_closed(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {shown(value)}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_, int)) or value not in (0, 1):
        raise ValueError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def one_of(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                             f"got {shown(value)}")
        return value.lower()
    return check


def seed_like(name: str, value: Any):
    """An int >= 0 or a numpy Generator (kept as is; it is copied when used)."""
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ValueError(f"{name} must be None, an integer >= 0 or a numpy.random.Generator, "
                     f"got {shown(value)}")


def workers_like(name: str, value: Any):
    """1 (serial), an int of processes (-1: all cores), a map-like callable or an executor."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value == -1:
            return os.cpu_count() or 1
        if value >= 1:
            return int(value)
        raise ValueError(f"{name} must be a positive integer or -1, got {shown(value)}")
    if hasattr(value, "submit") or callable(value):
        return value
    raise ValueError(f"{name} must be an int, a map-like callable or an object with "
                     f"submit() (a concurrent.futures.Executor, a dask Client), got {shown(value)}")


# ---------------------------------------------------------------- tables

SOLVER_OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("maxiter", 1000, positive_int,
           "Maximum number of iterations (one iteration = one gradient estimate and one step)."),
    Option("maxfev", None, positive_int,
           "Hard cap on the number of points evaluated (nfev), so fun is never called "
           "more often. Default: maxiter times the evaluations of one iteration. The "
           "last iteration uses fewer query directions when the budget left is short."),
    Option("q", 20, strict_positive_int,
           "Query directions per iteration. Forward differences cost q + 1 evaluations "
           "an iteration, antithetic ones 2q."),
    Option("mu", None, positive_float,
           "Smoothing radius of the finite differences, in units of x. Default: "
           "1e-4 * x_scale, which keeps float32 objectives out of round-off noise."),
    Option("lr", None, positive_float,
           "Learning rate. Default: scale-aware, 'base_step' * x_scale * sqrt(q / (q + d)) "
           "per coordinate, with each method's own 'base_step' (see the method's doc)."),
    Option("x_scale", None, positive_float,
           "Typical magnitude of the coordinates, used for the defaults of mu and lr. "
           "Default: a quarter of the RMS width of the box when every bound is finite, "
           "else max(RMS(x0), 1)."),
    Option("directions", "gaussian", one_of("gaussian", "sphere"),
           "Query direction law: 'gaussian' (u ~ N(0, I)) or 'sphere' (uniform on the "
           "sphere of radius sqrt(d), the same second moment I with fixed length)."),
    Option("estimator", "forward", one_of("forward", "antithetic"),
           "'forward': [f(x + mu u) - f(x)] / mu, q + 1 evaluations, f(x) once. "
           "'antithetic': [f(x + mu u) - f(x - mu u)] / (2 mu), 2q evaluations."),
    Option("seed", None, seed_like,
           "Seed of every random draw: an int, or a numpy.random.Generator (copied, "
           "never advanced). The same seed gives the same run. None: fresh entropy."),
    Option("f_target", None, real,
           "Stop with success as soon as a value <= f_target has been evaluated. "
           "None: no target."),
    Option("ftol", 1e-8, nonnegative_float,
           "Stop with success when the best value improved by less than "
           "ftol * max(abs(f_old), abs(f_new), 1) over the last 'patience' iterations. "
           "0 disables the test. The scipy argument tol sets it too."),
    Option("patience", 100, positive_int,
           "Iterations over which the ftol test measures improvement."),
    Option("nan_policy", "omit", one_of("omit", "raise", "stop"),
           "What a NaN or infinite value of fun does. 'omit': the query is dropped from "
           "the estimate (a non-finite value at the iterate sends the run back to the "
           "best point with half the step); 'raise': NonFiniteValueError; 'stop': the "
           "run ends with status 5. A non-finite result is never reported as success."),
    Option("outlier_factor", 1e3, positive_or_inf,
           "A finite value farther from the median of its iteration's values than "
           "outlier_factor times their median absolute deviation is an outlier, provided "
           "fewer than half of the iteration's values are (it takes 3 values or more); a "
           "value that a learned QueryRNN measured along the run's recent estimates is "
           "judged by the difference those estimates allow instead of the spread. It "
           "is left out of the estimate like a non-finite value under nan_policy='omit' "
           "(an outlier at the iterate sends the run back to the best point with half the "
           "step), and counted in result.nfev_outliers: one glitch, overflow or penalty "
           "value never poisons the step. res.fun is still the lowest value fun returned, "
           "but a run whose best value is an outlier never stops with success. "
           "inf: no screening."),
]}

DRIVER_OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("disp", False, flag, "Print a summary at the end of the run."),
    Option("return_all", False, flag,
           "Also return 'allvecs' (the iterates) and 'history' (per-iteration nfev, "
           "value at the iterate and best value)."),
    Option("maxtime", None, positive_float,
           "Wall-clock limit in seconds, checked between iterations. None: no limit."),
    Option("vectorized", False, flag,
           "fun takes a (k, d) array and returns k values: one call per iteration."),
    Option("workers", 1, workers_like,
           "Parallel evaluation of the points of one iteration: 1 (serial), an int "
           "of local processes (-1: one per core; fun must be picklable), a map-like "
           "callable map(fun, points), or an executor with submit() (a "
           "concurrent.futures executor, a dask.distributed Client)."),
]}


def parse_options(table: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Check the given options against ``table`` and fill in the defaults.

    Names not in the table are ignored here; the caller decides about them.
    """
    return {name: opt.parse(given[name]) if name in given else opt.default
            for name, opt in table.items()}
