"""Query directions and the finite-difference gradient estimators.

Notation: x is the iterate (length d), mu the smoothing radius, u_1..u_q the
query directions with E[u u^T] = I.

* forward:    g = 1/q sum_i [f(y_i) - f(x)] / mu * w_i,             y_i = P(x + mu u_i)
* antithetic: g = 1/q sum_i [f(y+_i) - f(y-_i)] / (2 mu) * w_i,      y±_i = P(x ± mu u_i)

P projects onto the bounds and w_i is the *effective* direction, the displacement
actually evaluated divided by its nominal length: w_i = (y_i - x) / mu, or
(y+_i - y-_i) / (2 mu). Without active bounds w_i = u_i exactly; with them, the
difference quotient stays consistent with the points that were really queried.
Working from the points also means the directions need no storage of their own.
"""

from __future__ import annotations

import numpy as np

from ._bounds import Box

DIRECTIONS = ("gaussian", "sphere")
ESTIMATORS = ("forward", "antithetic")


def evaluations_per_iteration(estimator: str, q: int) -> int:
    """Number of points one iteration evaluates: q + 1 (forward) or 2q (antithetic)."""
    return q + 1 if estimator == "forward" else 2 * q


def directions_for_budget(estimator: str, q: int, budget: int) -> int:
    """Largest number of directions <= q whose iteration fits in ``budget`` evaluations."""
    fit = budget - 1 if estimator == "forward" else budget // 2
    return max(0, min(q, fit))


def draw_directions(rng: np.random.Generator, kind: str, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (shape (q, d)) with q directions of the law ``kind``; return it.

    'gaussian': u ~ N(0, I). 'sphere': u uniform on the sphere of radius sqrt(d),
    so that E[u u^T] = I as for the Gaussian, with a fixed length.
    """
    rng.standard_normal(out=out)
    if kind == "sphere":
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out *= np.sqrt(out.shape[1]) / norms
    return out


def query_points(rng: np.random.Generator, x: np.ndarray, q: int, mu: float,
                 directions: str, estimator: str, box: Box,
                 out: np.ndarray | None = None, draw=None) -> np.ndarray | None:
    """Draw q directions and return the points of one iteration.

    forward: row 0 is x, rows 1..q are P(x + mu u_i), shape (q + 1, d).
    antithetic: rows 0..q-1 are P(x + mu u_i), rows q..2q-1 are P(x - mu u_i).
    The directions are drawn straight into the returned array (no extra copy),
    which is ``out`` when that has the right shape (a workspace reused across
    iterations), else a new array. ``draw(rng, directions, rows) -> bool`` (a sampler's)
    fills the (q, d) rows with the directions; it returns False when it cannot, and
    then so does this function (None). By default the rows are drawn by the law
    ``directions`` (:func:`draw_directions`).
    """
    d = x.shape[0]
    shape = (evaluations_per_iteration(estimator, q), d)
    points = out if out is not None and out.shape == shape else np.empty(shape)
    rows = points[1:] if estimator == "forward" else points[:q]
    if draw is None:
        draw_directions(rng, directions, rows)
    elif not draw(rng, directions, rows):
        return None
    rows *= mu
    if estimator == "forward":
        rows += x
        points[0] = x
        box.project(rows)
        return points
    plus, minus = points[:q], points[q:]
    np.negative(plus, out=minus)
    minus += x
    plus += x
    return box.project(points)


def estimate_gradient(x: np.ndarray, points: np.ndarray, values: np.ndarray, mu: float,
                      estimator: str) -> tuple[np.ndarray, int]:
    """Estimate the gradient at x from the evaluated ``points`` and their ``values``.

    Non-finite values are left out: the average runs over the usable directions only.

    Returns
    -------
    g : ndarray of shape (d,)
        The estimate (zeros when no direction is usable).
    used : int
        How many directions entered the estimate.
    """
    if estimator == "forward":
        center, queries = values[0], values[1:]
        usable = np.isfinite(queries) & np.isfinite(center)
        coef = np.where(usable, queries - center, 0.0) / mu
        used = int(usable.sum())
        if used == 0:
            return np.zeros_like(x), 0
        g = coef @ points[1:]
        g -= coef.sum() * x
        g /= mu * used
        return g, used
    q = points.shape[0] // 2
    plus, minus = values[:q], values[q:]
    usable = np.isfinite(plus) & np.isfinite(minus)
    coef = np.where(usable, plus - minus, 0.0) / (2 * mu)
    used = int(usable.sum())
    if used == 0:
        return np.zeros_like(x), 0
    g = coef @ points[:q]
    g -= coef @ points[q:]
    g /= 2 * mu * used
    return g, used


def outliers(values: np.ndarray, factor: float, reach: np.ndarray | None = None) -> np.ndarray:
    """Mask of the finite ``values`` too far from the others to enter the estimate, when
    they are a minority of them; else no value.

    The values of random directions are judged against each other: one iteration's
    values scatter around f(x) by about mu |grad f|, so their spread is the median
    absolute deviation from their median, which a single hostile value (a glitch, an
    overflow, a penalty) moves neither; those farther than ``factor`` spreads from the
    median are outliers. A spread of 0 (a plateau) rejects none of them.

    ``reach`` (one number per value, or None) marks the values measured along directions
    chosen from the run's own estimates (a split iteration's subspace) with how far from
    f(x) those estimates let them lie; 0 for a random direction. Such a value can carry
    nearly all of the gradient, far outside the random directions' spread, so it does not
    enter the median and spread, and is an outlier when farther from the median than
    ``factor`` times the larger of the spread and its reach.

    With fewer than 3 finite values, or ``factor`` inf, nothing is rejected.
    """
    none = np.zeros(values.shape, dtype=bool)
    finite = np.isfinite(values)
    count = int(finite.sum())
    if factor == np.inf or count < 3:
        return none
    measured = none if reach is None else finite & (reach > 0)
    random = finite & ~measured
    kept = values[random] if not random.all() else values
    if kept.size == 0:
        return none
    center = _median(kept)
    with np.errstate(over="ignore", invalid="ignore"):  # differences of huge values: inf
        deviation = np.abs(values - center)
        spread = _median(deviation[random]) if kept.size >= 3 else 0.0
        far = random & (deviation > factor * spread) if spread > 0 else none.copy()
        if measured.any():
            far |= measured & (deviation > factor * np.maximum(spread, reach))
    if 2 * int(far.sum()) >= count:
        return none
    return far


def value_reach(reach: np.ndarray | None, mu: float, estimator: str) -> np.ndarray | None:
    """The reach of each value of an iteration (see :func:`outliers`) from that of its
    directions, a sampler's bounds on their difference quotients |f(x + mu u) - f(x)| / mu;
    None when every direction is random."""
    if reach is None or not reach.any():
        return None
    if estimator == "forward":
        return mu * np.concatenate([[0.0], reach])
    return mu * np.concatenate([reach, reach])


def _median(v: np.ndarray) -> float:
    """The median of a short vector (np.median's overhead dominates at this size)."""
    v = np.sort(v)
    half = v.size // 2
    return float(v[half]) if v.size % 2 else float((v[half - 1] + v[half]) / 2)


def value_at_iterate(values: np.ndarray, estimator: str) -> float:
    """f at the iterate: measured (forward) or the mean of the finite pairs (antithetic).

    The antithetic mean [f(x + mu u) + f(x - mu u)] / 2 is f(x) + O(mu^2).
    """
    if estimator == "forward":
        return float(values[0])
    q = values.shape[0] // 2
    pairs = (values[:q] + values[q:]) / 2
    pairs = pairs[np.isfinite(pairs)]
    return float(pairs.mean()) if pairs.size else float("nan")
