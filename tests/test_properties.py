"""Hypothesis properties over random small problems, options and bounds.

For every drawn run: nfev <= maxfev (counted by the wrapper), fun(res.x) ==
res.fun, every query lies inside the bounds, success implies a finite value,
and the same seed gives an identical run.
"""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zominimize
from conftest import METHODS, Recorder, assert_same_run

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def problems(draw):
    """(method, x0, bounds or None, options, objective) for a small random run."""
    d = draw(st.integers(1, 6))
    method = draw(st.sampled_from(METHODS))
    q = draw(st.integers(1, 6))
    estimator = draw(st.sampled_from(["forward", "antithetic"]))
    per_iteration = q + 1 if estimator == "forward" else 2 * q
    options = {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "q": q,
        "estimator": estimator,
        "directions": draw(st.sampled_from(["gaussian", "sphere"])),
        "maxiter": draw(st.integers(1, 25)),
        "maxfev": draw(st.integers(per_iteration, 6 * per_iteration + 5)),
        "mu": draw(st.sampled_from([1e-4, 1e-2, 0.3])),
    }
    coords = st.floats(-5, 5, allow_nan=False, width=32)
    x0 = np.array(draw(st.lists(coords, min_size=d, max_size=d)), dtype=float)
    bounds = None
    if draw(st.booleans()):
        lo = np.array(draw(st.lists(st.floats(-3, 0, width=32), min_size=d, max_size=d)))
        width = np.array(draw(st.lists(st.floats(0, 3, width=32), min_size=d, max_size=d)))
        pairs = []
        for i in range(d):
            kind = draw(st.sampled_from(["both", "lower", "upper", "none"]))
            pairs.append((lo[i] if kind in ("both", "lower") else None,
                          lo[i] + width[i] if kind in ("both", "upper") else None))
        bounds = pairs
    centre = np.array(draw(st.lists(coords, min_size=d, max_size=d)), dtype=float)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))

    def objective(x):
        return float(scale * np.sum(np.abs(x - centre) ** 1.5))

    return method, x0, bounds, options, objective


def box(bounds, d):
    if bounds is None:
        return np.full(d, -np.inf), np.full(d, np.inf)
    lo = np.array([-np.inf if a is None else a for a, _ in bounds])
    hi = np.array([np.inf if b is None else b for _, b in bounds])
    return lo, hi


def run(method, x0, bounds, options, fun):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FallbackWarning, x0 clipped into the bounds
        return zominimize.minimize(fun, x0, method=method, bounds=bounds, options=options)


@SETTINGS
@given(problems())
def test_budget_result_and_bounds_hold(problem):
    method, x0, bounds, options, objective = problem
    x0_before = x0.copy()
    fun = Recorder(objective)
    res = run(method, x0, bounds, options, fun)

    assert fun.calls == res.nfev <= options["maxfev"]
    assert res.nit <= options["maxiter"]
    assert objective(res.x) == res.fun
    assert res.fun == min(fun.values)
    lo, hi = box(bounds, x0.size)
    points = np.array(fun.points)
    assert np.all(points >= lo) and np.all(points <= hi)
    assert np.all(res.x >= lo) and np.all(res.x <= hi)
    assert np.all(res.x_last >= lo) and np.all(res.x_last <= hi)
    np.testing.assert_array_equal(x0, x0_before)
    if res.success:
        assert np.isfinite(res.fun)


@SETTINGS
@given(problems())
def test_same_seed_same_run(problem):
    method, x0, bounds, options, objective = problem
    a, b = Recorder(objective), Recorder(objective)
    res_a = run(method, x0, bounds, options, a)
    res_b = run(method, x0, bounds, options, b)
    assert_same_run(res_a, res_b)
    np.testing.assert_array_equal(np.array(a.points), np.array(b.points))


@settings(max_examples=15, deadline=None)
@given(problems(), st.floats(0.0, 1.0))
def test_sometimes_nan_is_never_a_non_finite_success(problem, p_nan):
    """With NaN values sprinkled in (deterministically per point), the result is sane."""
    method, x0, bounds, options, objective = problem

    def spotty(x):
        u = (np.sin(1e3 * np.sum(x * np.arange(1, x.size + 1))) + 1) / 2
        return np.nan if u < p_nan else objective(x)

    fun = Recorder(spotty)
    res = run(method, x0, bounds, options, fun)
    assert fun.calls == res.nfev <= options["maxfev"]
    assert res.nfev_nonfinite == sum(not np.isfinite(v) for v in fun.values)
    if res.success:
        assert np.isfinite(res.fun)
    if np.isfinite(res.fun):
        assert spotty(res.x) == res.fun
    else:
        assert res.success is False
