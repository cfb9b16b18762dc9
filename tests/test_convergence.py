"""Every method, with its default options, makes real progress; bounds always hold.

Thresholds are generous on purpose (the default step constants may be retuned):
with defaults and maxiter=1000 every method reaches f < 2% of f(x0) on these
problems; the tests ask for 10%.
"""

import numpy as np
import pytest
from scipy.optimize import Bounds, OptimizeWarning

from conftest import DIRECTIONS, ESTIMATORS, Recorder
from objectives import shift, shifted_quadratic
from zominimize import minimize

REDUCTION = 0.1


@pytest.mark.parametrize("d", [50, 1000])
def test_default_options_reduce_a_shifted_quadratic(method, d):
    x0 = np.zeros(d)
    f0 = shifted_quadratic(x0)
    res = minimize(shifted_quadratic, x0, method=method, options={"seed": 0, "maxiter": 1000})
    assert np.isfinite(res.fun)
    assert res.fun < REDUCTION * f0, (res.fun / f0, res.message)
    assert shifted_quadratic(res.x) == res.fun
    assert res.nit <= 1000


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("directions", DIRECTIONS)
def test_every_estimator_and_direction_law_converges(method, estimator, directions):
    d = 50
    x0 = np.zeros(d)
    f0 = shifted_quadratic(x0)
    res = minimize(shifted_quadratic, x0, method=method,
                   options={"seed": 1, "maxiter": 1000, "estimator": estimator,
                            "directions": directions})
    assert res.fun < REDUCTION * f0, (res.fun / f0, res.message)


def test_different_seeds_both_converge_but_differ(method):
    d = 50
    x0 = np.zeros(d)
    a = minimize(shifted_quadratic, x0, method=method, options={"seed": 1, "maxiter": 200})
    b = minimize(shifted_quadratic, x0, method=method, options={"seed": 2, "maxiter": 200})
    assert not np.array_equal(a.x, b.x)
    f0 = shifted_quadratic(x0)
    assert a.fun < 0.5 * f0 and b.fun < 0.5 * f0


BOUNDS = {
    "pairs": [(-0.5, 0.5)] * 20,
    "Bounds": Bounds(np.full(20, -0.5), np.full(20, 0.5)),
    "half-open": [(-0.3, None)] * 20,
    "scalar-Bounds": Bounds(-0.5, np.inf),
    "mixed": [(None, None)] * 10 + [(0.0, 0.2)] * 10,
}


def box_of(bounds, d=20):
    if isinstance(bounds, Bounds):
        return (np.broadcast_to(bounds.lb, (d,)).astype(float),
                np.broadcast_to(bounds.ub, (d,)).astype(float))
    lo = np.array([-np.inf if a is None else a for a, _ in bounds], dtype=float)
    hi = np.array([np.inf if b is None else b for _, b in bounds], dtype=float)
    return lo, hi


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", list(BOUNDS))
def test_every_query_and_the_result_stay_inside_the_bounds(method, estimator, name):
    bounds = BOUNDS[name]
    lo, hi = box_of(bounds)
    fun = Recorder()
    x0 = np.clip(np.zeros(20), lo, hi)
    res = minimize(fun, x0, method=method, bounds=bounds,
                   options={"seed": 0, "maxiter": 200, "estimator": estimator,
                            "mu": 0.05})  # a large mu: many queries hit the walls
    points = np.array(fun.points)
    assert np.all(points >= lo) and np.all(points <= hi)
    for x in (res.x, res.x_last):
        assert np.all(x >= lo) and np.all(x <= hi)
    # The bounds are active (the minimiser lies outside) and the run still improves.
    c = shift(20)
    assert np.any((c < lo) | (c > hi))
    assert res.fun < shifted_quadratic(x0)
    # and it ends near the minimiser inside the box: clip(c) for this separable problem
    best_possible = shifted_quadratic(np.clip(c, lo, hi))
    assert res.fun - best_possible < 0.5 * (shifted_quadratic(x0) - best_possible)


def test_x0_outside_bounds_is_clipped_with_a_warning(method):
    x0 = np.array([2.0, -3.0, 0.1, 0.0])
    fun = Recorder()
    with pytest.warns(OptimizeWarning, match="clipped"):
        res = minimize(fun, x0, method=method, bounds=[(-1, 1)] * 4,
                       options={"seed": 0, "maxiter": 5, "return_all": True})
    clipped = np.array([1.0, -1.0, 0.1, 0.0])
    np.testing.assert_array_equal(fun.points[0], clipped)  # forward: the iterate comes first
    np.testing.assert_array_equal(res.allvecs[0], clipped)
    assert np.all(np.abs(np.array(fun.points)) <= 1)


def test_x0_inside_bounds_gives_no_warning(method, recwarn):
    minimize(shifted_quadratic, np.zeros(4), method=method, bounds=[(-1, 1)] * 4,
             options={"seed": 0, "maxiter": 3})
    assert not [w for w in recwarn if issubclass(w.category, OptimizeWarning)]


def test_fixed_variables_stay_fixed(method):
    bounds = [(0.3, 0.3)] + [(-1, 1)] * 4
    fun = Recorder()
    res = minimize(fun, np.full(5, 0.3), method=method, bounds=bounds,
                   options={"seed": 0, "maxiter": 20})
    assert all(p[0] == 0.3 for p in fun.points)
    assert res.x[0] == 0.3
