"""scipy's own methods and callables go straight to scipy.optimize.minimize, untouched."""

import numpy as np
import pytest
import scipy.optimize
from scipy.optimize import OptimizeResult, rosen, rosen_der

import zominimize

X0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])


def assert_identical(ours: OptimizeResult, theirs: OptimizeResult) -> None:
    assert set(ours) == set(theirs)
    np.testing.assert_array_equal(ours.x, theirs.x)
    assert ours.fun == theirs.fun
    for key in ("nfev", "nit", "status", "success", "message"):
        if key in theirs:
            assert ours[key] == theirs[key], key


@pytest.mark.parametrize("method, kwargs", [
    ("Nelder-Mead", {}),
    ("nelder-mead", {"tol": 1e-6}),
    ("BFGS", {"jac": rosen_der}),
    ("BFGS", {}),
    ("powell", {"bounds": [(0, 2)] * 5}),
    ("L-BFGS-B", {"bounds": scipy.optimize.Bounds(0, 2)}),
], ids=["Nelder-Mead", "nelder-mead-tol", "BFGS-jac", "BFGS", "powell-bounds", "L-BFGS-B"])
def test_scipy_method_names_pass_through(method, kwargs):
    ours = zominimize.minimize(rosen, X0, method=method, options={"maxiter": 200}, **kwargs)
    theirs = scipy.optimize.minimize(rosen, X0, method=method, options={"maxiter": 200},
                                     **kwargs)
    assert_identical(ours, theirs)
    assert "fallback" not in ours  # a scipy result, not one of ours


def test_scipy_callback_and_args_pass_through():
    seen_ours, seen_theirs = [], []

    def fun(x, a):
        return rosen(x) + a

    zominimize.minimize(fun, X0, args=(1.0,), method="Nelder-Mead",
                        callback=lambda xk: seen_ours.append(np.copy(xk)),
                        options={"maxiter": 20})
    scipy.optimize.minimize(fun, X0, args=(1.0,), method="Nelder-Mead",
                            callback=lambda xk: seen_theirs.append(np.copy(xk)),
                            options={"maxiter": 20})
    assert len(seen_ours) == len(seen_theirs) > 10
    np.testing.assert_array_equal(seen_ours, seen_theirs)


def test_scipy_unknown_options_warning_is_scipys():
    with pytest.warns(scipy.optimize.OptimizeWarning, match="bogus"):
        zominimize.minimize(rosen, X0, method="Nelder-Mead", options={"bogus": 1, "maxiter": 5})


def custom_method(fun, x0, args=(), maxiter=10, callback=None, **unknown):
    """A tiny custom method in scipy's calling convention: coordinate halving."""
    x = np.array(x0, dtype=float)
    best = fun(x, *args)
    nfev = 1
    for _ in range(maxiter):
        for i in range(x.size):
            for step in (0.1, -0.1):
                y = x.copy()
                y[i] += step
                value = fun(y, *args)
                nfev += 1
                if value < best:
                    x, best = y, value
    return OptimizeResult(x=x, fun=best, nfev=nfev, nit=maxiter, success=True, status=0,
                          message="done", seen=sorted(unknown))


def test_a_plain_callable_method_passes_through():
    ours = zominimize.minimize(rosen, X0, method=custom_method, options={"maxiter": 5})
    theirs = scipy.optimize.minimize(rosen, X0, method=custom_method, options={"maxiter": 5})
    assert_identical(ours, theirs)
    assert ours.seen == theirs.seen


def test_scipy_result_for_zo_callable_is_the_same_as_for_the_name():
    opts = {"seed": 11, "maxiter": 50}
    a = scipy.optimize.minimize(rosen, X0, method=zominimize.zo_sgd, options=opts)
    b = zominimize.minimize(rosen, X0, method=zominimize.zo_sgd, options=opts)
    c = zominimize.minimize(rosen, X0, method="zo-sgd", options=opts)
    for r in (b, c):
        np.testing.assert_array_equal(a.x, r.x)
        assert (a.fun, a.nfev, a.nit, a.status) == (r.fun, r.nfev, r.nit, r.status)
