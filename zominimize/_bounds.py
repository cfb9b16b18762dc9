"""Box bounds: standardise what the user passed, clip x0, project points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, OptimizeWarning

from ._warn import warn


@dataclass(frozen=True)
class Box:
    """Lower and upper bounds, one pair per coordinate (``-inf``/``inf`` when open).

    Attributes
    ----------
    lower, upper : ndarray of shape (d,)
    """

    lower: np.ndarray
    upper: np.ndarray

    @property
    def is_bounded(self) -> bool:
        """True when at least one coordinate has a finite bound."""
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())

    def project(self, points: np.ndarray) -> np.ndarray:
        """Clip ``points`` (any shape ending in d) into the box, in place; return it."""
        if self.is_bounded:
            np.clip(points, self.lower, self.upper, out=points)
        return points


def standardize_bounds(bounds, d: int) -> Box:
    """Turn ``None``, a :class:`scipy.optimize.Bounds` or a sequence of pairs into a Box.

    Raises
    ------
    ValueError
        If the bounds do not have one pair per coordinate, contain NaN, have a
        lower bound above its upper bound, or leave a coordinate no finite value.
    """
    if bounds is None:
        return Box(np.full(d, -np.inf), np.full(d, np.inf))
    if isinstance(bounds, Bounds):
        lower = _broadcast("bounds.lb", bounds.lb, d, -np.inf)
        upper = _broadcast("bounds.ub", bounds.ub, d, np.inf)
    else:
        try:
            pairs = list(bounds)
        except TypeError:
            raise TypeError(
                f"bounds must be None, a scipy.optimize.Bounds or a sequence of "
                f"(min, max) pairs, got {type(bounds).__name__}"
            ) from None
        if len(pairs) != d:
            raise ValueError(f"bounds must have one (min, max) pair per coordinate: "
                             f"got {len(pairs)} pairs for x0 of length {d}")
        lower, upper = np.empty(d), np.empty(d)
        for i, pair in enumerate(pairs):
            try:
                lo, hi = pair
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{i}] must be a (min, max) pair, got {pair!r}") from None
            lower[i] = -np.inf if lo is None else _to_float(f"bounds[{i}][0]", lo)
            upper[i] = np.inf if hi is None else _to_float(f"bounds[{i}][1]", hi)
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"bounds: lower bound {float(lower[i])!r} is above upper bound "
                         f"{float(upper[i])!r} at index {i}")
    empty = np.flatnonzero((lower == np.inf) | (upper == -np.inf))
    if empty.size:
        i = int(empty[0])
        raise ValueError(f"bounds: ({float(lower[i])!r}, {float(upper[i])!r}) at index {i} "
                         f"leaves no finite point")
    return Box(lower, upper)


def clip_x0(x0: np.ndarray, box: Box) -> np.ndarray:
    """Return x0 clipped into the box, warning when that moved it."""
    clipped = np.clip(x0, box.lower, box.upper)
    if not np.array_equal(clipped, x0):
        warn("Initial guess is not within the specified bounds: x0 was clipped "
                      "into the bounds", OptimizeWarning)
    return clipped


def _broadcast(name, values, d, fill):
    arr = np.asarray(values, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, d)):
        raise ValueError(f"{name} must be a scalar or have length {d}, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN, got {values!r}")
    return np.broadcast_to(arr, (d,)).astype(float)


def _to_float(name, value):
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or None, got {value!r}") from None
    if np.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out
