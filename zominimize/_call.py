"""A ZO call resolved once: the method that runs, its checked options and its settings.

``minimize``, the public method callables and ``ZOOptimizer`` all start here, so the
method name is looked up, the options are checked and the learned weights are loaded
exactly once per call; the optimizer and the run loop receive the resulting ``Call``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning

from . import estimators
from ._bounds import Box, clip_x0, standardize_bounds
from ._options import DRIVER_OPTIONS, SOLVER_OPTIONS, parse_options
from ._registry import MethodSpec, MethodUnavailable, get_method, method_options
from ._warn import warn
from .errors import FallbackWarning

#: Default smoothing radius in units of x_scale.
MU_RELATIVE = 1e-4


@dataclass(frozen=True)
class Call:
    """One call of a ZO method, resolved.

    Attributes
    ----------
    requested : MethodSpec
        The method the caller named.
    spec : MethodSpec
        The method that runs: ``requested``, or its fallback when it cannot start.
    fallback : str or None
        Why ``requested`` could not start, or None.
    settings : dict
        The solver options of ``spec`` (and of its fallback), checked, with the automatic
        defaults filled in: ``x_scale``, ``mu``, ``maxfev``, and ``d`` and ``step`` (the
        method's default per-coordinate step). The seed is kept apart.
    seed : int, numpy.random.Generator or None
        The ``seed`` option.
    run : dict
        The run options of ``minimize`` (``disp``, ``return_all``, ``maxtime``,
        ``vectorized``, ``workers``), checked; empty for ask/tell.
    x0 : numpy.ndarray
        The starting point: a float copy of the caller's, inside the bounds.
    box : Box
        The bounds.
    parts : object
        What the running method loaded to start (the learned networks), or None.
    """

    requested: MethodSpec
    spec: MethodSpec
    fallback: str | None
    settings: dict
    seed: Any
    run: dict
    x0: np.ndarray
    box: Box
    parts: Any = None


def resolve(method: str, x0, bounds, options: dict, *, run_options: bool) -> Call:
    """Resolve a call of the ZO method ``method``.

    ``run_options`` says whether the run options of ``minimize`` are allowed: then an
    unknown option is warned about and ignored, as scipy does; otherwise (ask/tell) it
    is a TypeError.

    Raises
    ------
    ValueError, TypeError
        For an unknown method, a bad option value, or a bad x0 or bounds (the message
        names the argument and the value).
    ImportError, WeightsError
        When a learned method cannot start and its fallback is not allowed.
    """
    requested = get_method(method)
    solver_table = {**SOLVER_OPTIONS, **method_options(requested)}
    known = {**solver_table, **DRIVER_OPTIONS} if run_options else solver_table
    unknown = sorted(set(options) - set(known))
    if unknown and not run_options:
        raise TypeError(f"unknown option(s) for method {requested.name!r}: "
                        f"{', '.join(unknown)}")
    if unknown:
        warn(f"Unknown solver options: {', '.join(unknown)}", OptimizeWarning)
    settings = parse_options(solver_table, options)
    run = parse_options(DRIVER_OPTIONS, options) if run_options else {}
    x = as_start_point(x0)
    box = standardize_bounds(bounds, x.size)
    x = clip_x0(x, box)
    spec, parts, reason = _start(requested, {**settings, "d": x.size})
    seed = settings.pop("seed")
    return Call(requested=requested, spec=spec, fallback=reason,
                settings=resolve_settings(spec, settings, x, box), seed=seed, run=run,
                x0=x, box=box, parts=parts)


def _start(requested: MethodSpec, settings: dict) -> tuple[MethodSpec, Any, str | None]:
    """(spec that runs, what it loaded, why the requested one could not start or None)."""
    if requested.load is None:
        return requested, None, None
    try:
        return requested, requested.load(settings), None
    except MethodUnavailable as exc:
        running = get_method(requested.fallback)
        warn(f"method {requested.name!r} cannot run ({exc}); running {running.name!r} "
             f"instead", FallbackWarning)
        return running, None, str(exc)


def as_start_point(x0: Any) -> np.ndarray:
    """Check x0 and return it as a new 1-D float64 array (0-d input becomes length 1)."""
    arr = np.asarray(x0)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"x0 must be an array of real numbers, got dtype {arr.dtype}")
    arr = np.atleast_1d(arr).astype(float)  # always a copy of the user's data
    if arr.ndim != 1:
        raise ValueError(f"x0 must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("x0 must not be empty, got shape (0,)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"x0 must be finite, got {arr[bad[0]]} at index {bad[0]}")
    return arr


def default_x_scale(x0: np.ndarray, box: Box) -> float:
    """A quarter of the RMS box width when every bound is finite, else max(RMS(x0), 1)."""
    width = box.upper - box.lower
    if np.isfinite(width).all():
        rms_width = _rms(width)
        if rms_width > 0:
            return rms_width / 4
    return max(_rms(x0), 1.0)


def _rms(v: np.ndarray) -> float:
    """The root mean square of ``v``, computed without overflow for huge entries."""
    peak = float(np.max(np.abs(v)))
    if peak == 0:
        return 0.0
    return peak * float(np.sqrt(np.mean((v / peak) ** 2)))


def default_step(base_step: float, x_scale, q: int, d: int):
    """A method's default per-coordinate step: base_step * x_scale * sqrt(q / (q + d)).

    ``x_scale`` may be a float or a tensor (meta-training computes it per task).
    """
    return base_step * x_scale * math.sqrt(q / (q + d))


def resolve_settings(spec: MethodSpec, settings: dict, x0: np.ndarray, box: Box) -> dict:
    """Fill in the automatic defaults (x_scale, mu, step, maxfev) and check maxfev.

    ``step`` is the method's default per-coordinate step,
    base_step * x_scale * sqrt(q / (q + d)).
    """
    settings = dict(settings)
    d, q = x0.size, settings["q"]
    if settings["x_scale"] is None:
        settings["x_scale"] = default_x_scale(x0, box)
    if settings["mu"] is None:
        settings["mu"] = MU_RELATIVE * settings["x_scale"]
    settings["d"] = d
    settings["step"] = float(default_step(spec.base_step, settings["x_scale"], q, d))
    per_iteration = estimators.evaluations_per_iteration(settings["estimator"], q)
    if settings["maxfev"] is None:
        settings["maxfev"] = settings["maxiter"] * per_iteration
    elif settings["maxfev"] < per_iteration:
        raise ValueError(f"maxfev must allow at least one iteration "
                         f"({per_iteration} evaluations with q={q} and the "
                         f"{settings['estimator']} estimator), got {settings['maxfev']}")
    return settings
