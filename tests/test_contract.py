"""The scipy.optimize.minimize contract, for every registered ZO method.

See /work/shared/design/scipy-contract.md: result fields, the hard maxfev cap,
callbacks and StopIteration, warnings for unknown options and ignored
arguments, user data never modified, tol/ftol/f_target, return_all, disp,
show_options, and the public scipy-style callables.
"""

import contextlib
import copy
import math
import time

import numpy as np
import pytest
import scipy.optimize
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

import zominimize
from conftest import (D, ESTIMATORS, METHODS, RESULT_FIELDS, SMALL, Recorder,
                      assert_same_run, per_iteration, run_zo)
from objectives import shifted_quadratic, weighted_sphere

# ---------------------------------------------------------------- the result


def test_result_is_an_optimize_result_with_documented_fields(method):
    res = run_zo(method)
    assert isinstance(res, OptimizeResult)
    for name in RESULT_FIELDS:
        assert name in res, name
    assert isinstance(res.x, np.ndarray) and res.x.shape == (D,) and res.x.dtype == float
    assert isinstance(res.x_last, np.ndarray) and res.x_last.shape == (D,)
    assert isinstance(res.fun, float)
    for name in ("nfev", "nit", "status", "nfev_nonfinite"):
        assert isinstance(res[name], int) and not isinstance(res[name], bool), name
    assert isinstance(res.success, bool)
    assert isinstance(res.message, str) and res.message
    assert res.method in METHODS
    assert res.fallback is None or isinstance(res.fallback, str)
    assert res.nfev_nonfinite == 0
    assert 1 <= res.nit <= SMALL["maxiter"]


def test_fun_at_result_x_is_result_fun_exactly(method):
    res = run_zo(method)
    assert shifted_quadratic(res.x) == res.fun
    assert res.fun < shifted_quadratic(np.zeros(D))


def test_result_x_is_the_best_point_evaluated(method):
    fun = Recorder()
    res = run_zo(method, fun)
    best = int(np.argmin(fun.values))
    assert res.fun == min(fun.values)
    np.testing.assert_array_equal(res.x, fun.points[best])


# ---------------------------------------------------------------- budgets


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("maxfev", [8, 9, 23, 41, 50])
def test_maxfev_is_a_hard_cap(method, estimator, maxfev):
    # q=4: a forward iteration costs 5, an antithetic one 8; none of these
    # budgets but 50 / 8 and 5 is a multiple, so the last iteration is partial.
    fun = Recorder()
    res = run_zo(method, fun, q=4, maxfev=maxfev, maxiter=10_000, ftol=0,
                 estimator=estimator)
    assert fun.calls == res.nfev <= maxfev
    # The budget is used up: what is left cannot pay for even one direction.
    assert res.nfev >= maxfev - 1
    assert res.status == zominimize.Status.MAXFEV
    assert res.success is False
    full = maxfev // per_iteration(estimator, 4)
    assert res.nit in (full, full + 1)
    assert res.nit == full + (res.nfev > full * per_iteration(estimator, 4))


def test_last_iteration_uses_fewer_directions(method):
    # forward, q=4, maxfev=23: four iterations of 5 points, then one of 3 (2 directions).
    sizes = []

    def batch(X):
        sizes.append(X.shape[0])
        return np.array([shifted_quadratic(x) for x in X])

    res = run_zo(method, batch, q=4, maxfev=23, maxiter=100, ftol=0, vectorized=True)
    assert sizes == [5, 5, 5, 5, 3]
    assert res.nfev == 23 and res.nit == 5


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_maxiter_is_respected(method, estimator):
    fun = Recorder()
    res = run_zo(method, fun, maxiter=7, ftol=0, estimator=estimator)
    assert res.nit == 7
    assert res.status == zominimize.Status.MAXITER
    assert res.success is False
    assert res.nfev == fun.calls == 7 * per_iteration(estimator, SMALL["q"])


@pytest.mark.parametrize("maxiter", [10.1, 10.9, 10.0, np.int64(10), np.float32(10.5)])
def test_non_integer_maxiter_is_accepted(method, maxiter):
    res = run_zo(method, maxiter=maxiter, ftol=0)
    assert res.nit == 10
    assert res.status == zominimize.Status.MAXITER


# ---------------------------------------------------------------- callbacks


def test_new_style_callback_receives_an_optimize_result(method):
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result)

    res = run_zo(method, callback=callback, maxiter=8, ftol=0)
    assert len(seen) == res.nit == 8
    for i, r in enumerate(seen, start=1):
        assert isinstance(r, OptimizeResult)
        assert isinstance(r.x, np.ndarray) and r.x.shape == (D,)
        assert shifted_quadratic(r.x) == r.fun
        assert r.nit == i
    assert seen[-1].fun == res.fun
    # The best value reported never gets worse.
    funs = [r.fun for r in seen]
    assert funs == sorted(funs, reverse=True)


def test_old_style_callback_receives_a_fresh_array(method):
    seen = []

    def callback(xk):
        seen.append(xk)
        xk[:] = 1e9  # writing into it must not disturb the run

    res = run_zo(method, callback=callback, maxiter=8, ftol=0)
    clean = run_zo(method, maxiter=8, ftol=0)
    assert_same_run(res, clean)
    assert len(seen) == 8
    assert all(isinstance(xk, np.ndarray) and xk.shape == (D,) for xk in seen)
    assert len({id(xk) for xk in seen}) == len(seen)
    assert not any(np.shares_memory(xk, res.x) or np.shares_memory(xk, res.x_last)
                   for xk in seen)


def test_old_style_callback_with_two_parameters_is_called_with_x(method):
    seen = []

    def callback(xk, extra=None):
        seen.append((np.array(xk), extra))

    res = run_zo(method, callback=callback, maxiter=3, ftol=0)
    assert len(seen) == res.nit == 3
    assert all(extra is None and xk.shape == (D,) for xk, extra in seen)


@pytest.mark.parametrize("style", ["new", "old"])
def test_stop_iteration_in_callback_ends_the_run(method, style):
    calls = []

    def new(intermediate_result):
        calls.append(1)
        if len(calls) == 3:
            raise StopIteration

    def old(xk):
        calls.append(1)
        if len(calls) == 3:
            raise StopIteration

    res = run_zo(method, callback=new if style == "new" else old, maxiter=50)
    assert res.status == 99
    assert res.success is False
    assert res.message == "`callback` raised `StopIteration`."
    assert res.nit == 3 and len(calls) == 3
    assert shifted_quadratic(res.x) == res.fun


# ---------------------------------------------------------------- warnings


def test_unknown_option_warns_with_its_name(method):
    with pytest.warns(OptimizeWarning, match="not_an_option"):
        res = run_zo(method, not_an_option=3)
    # and the run still happens, as if the option had not been given
    assert_same_run(res, run_zo(method))


def test_known_options_do_not_warn_as_unknown(method, recwarn):
    run_zo(method, maxiter=3, mu=1e-3, lr=0.01, x_scale=1.0, estimator="forward",
           directions="gaussian", f_target=-1.0, ftol=1e-9, patience=5,
           nan_policy="omit", maxfev=1000, disp=False, return_all=False,
           maxtime=100.0, vectorized=False, workers=1)
    assert not [w for w in recwarn if issubclass(w.category, OptimizeWarning)]


@pytest.mark.parametrize("argument, value", [
    ("jac", lambda x: 2 * x),
    ("jac", "2-point"),
    ("hess", lambda x: np.eye(x.size)),
    ("hessp", lambda x, p: p),
    ("constraints", [{"type": "ineq", "fun": lambda x: 1.0 - x[0]}]),
    ("constraints", scipy.optimize.LinearConstraint(np.ones((1, D)), -1.0, 1.0)),
])
def test_ignored_arguments_warn(method, argument, value):
    with pytest.warns(RuntimeWarning, match="jac|hess|constraints") as record:
        res = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                                  options=SMALL, **{argument: value})
    name = "constraints" if argument == "constraints" else argument
    assert any(name in str(w.message) for w in record)
    assert_same_run(res, run_zo(method))


def test_jac_true_with_fun_returning_value_and_gradient(method):
    def fun_and_grad(x):
        return shifted_quadratic(x), 2 * x

    with pytest.warns(RuntimeWarning, match="jac"):
        res = zominimize.minimize(fun_and_grad, np.zeros(D), method=method, jac=True,
                                  options=SMALL)
    assert isinstance(res.fun, float)
    assert_same_run(res, run_zo(method))


WARNING_CASES = {
    "unknown-option": (OptimizeWarning, {"options": {**SMALL, "bogus": 1}}),
    "x0-clipped": (OptimizeWarning, {"bounds": [(0.5, 1.0)] * D}),
    "jac": (RuntimeWarning, {"jac": lambda x: 2 * x}),
    "constraints": (RuntimeWarning, {"constraints": [{"type": "eq", "fun": lambda x: x[0]}]}),
}


@pytest.mark.parametrize("how", ["zominimize", "scipy"])
@pytest.mark.parametrize("case", list(WARNING_CASES))
def test_warnings_point_at_the_callers_line(method, case, how):
    category, kwargs = WARNING_CASES[case]
    kwargs = {"options": SMALL, **kwargs}
    entry = zominimize.minimize if how == "zominimize" else scipy.optimize.minimize
    chosen = method if how == "zominimize" else public_callable(method)
    with pytest.warns(category) as record:
        entry(shifted_quadratic, np.zeros(D), method=chosen, **kwargs)
    ours = [w for w in record if issubclass(w.category, category)]
    assert ours and all(w.filename == __file__ for w in ours), [w.filename for w in ours]


def test_jac_true_through_scipy_equals_jac_true_by_name(method):
    def fun_and_grad(x):
        return shifted_quadratic(x), 2 * x

    with pytest.warns(RuntimeWarning, match="jac"):
        via_scipy = scipy.optimize.minimize(fun_and_grad, np.zeros(D), jac=True,
                                            method=public_callable(method), options=SMALL)
    with pytest.warns(RuntimeWarning, match="jac"):
        by_name = zominimize.minimize(fun_and_grad, np.zeros(D), jac=True, method=method,
                                      options=SMALL)
    assert_same_run(via_scipy, by_name)


# ---------------------------------------------------------------- user data is left alone


def test_fun_that_writes_into_its_argument_does_not_corrupt_the_run(method):
    def vandal(x):
        value = shifted_quadratic(x)
        x[:] = 1e9
        return value

    assert_same_run(run_zo(method, vandal), run_zo(method))


def test_vectorized_fun_that_writes_into_its_argument_does_not_corrupt_the_run(method):
    def vandal(X):
        values = np.array([shifted_quadratic(x) for x in X])
        X[:] = 1e9
        return values

    assert_same_run(run_zo(method, vandal, vectorized=True), run_zo(method))


@pytest.mark.parametrize("bounds", [None, [(-0.5, 0.5)] * D])
def test_x0_is_never_modified(method, bounds):
    x0 = np.full(D, 0.25)
    if bounds is not None:
        x0[0] = 3.0  # outside: it is clipped, but on a copy
    before = x0.copy()
    with pytest.warns(OptimizeWarning) if bounds else contextlib.nullcontext():
        res = run_zo(method, x0=x0, bounds=bounds)
    np.testing.assert_array_equal(x0, before)
    assert not np.shares_memory(res.x, x0) and not np.shares_memory(res.x_last, x0)


def test_x0_as_list_of_ints_is_accepted(method):
    x0 = [0, 0, 0, 0, 0]
    res = run_zo(method, x0=x0)
    assert x0 == [0, 0, 0, 0, 0]
    assert_same_run(res, run_zo(method))


def test_scalar_x0_is_a_one_dimensional_problem(method):
    res = zominimize.minimize(lambda x: float((x[0] - 2.0) ** 2), 0.0, method=method,
                              options={**SMALL, "maxiter": 200})
    assert res.x.shape == (1,) and res.x_last.shape == (1,)
    assert res.fun < 4.0


@pytest.mark.parametrize("make_bounds", [
    lambda: Bounds(np.full(D, -0.5), np.full(D, 0.5)),
    lambda: Bounds(-0.5, 0.5),
    lambda: Bounds(np.full(D, -0.5), np.full(D, np.inf)),
    lambda: [(-0.5, 0.5)] * D,
    lambda: [[-0.5, None]] * D,
    lambda: np.array([[-0.5, 0.5]] * D),
], ids=["Bounds-arrays", "Bounds-scalars", "Bounds-half-open", "pairs", "lists-None", "array"])
def test_bounds_are_not_modified(method, make_bounds):
    bounds = make_bounds()
    before = copy.deepcopy(bounds)
    run_zo(method, bounds=bounds)
    if isinstance(bounds, Bounds):
        np.testing.assert_array_equal(bounds.lb, before.lb)
        np.testing.assert_array_equal(bounds.ub, before.ub)
    elif isinstance(bounds, np.ndarray):
        np.testing.assert_array_equal(bounds, before)
    else:
        assert bounds == before


def test_args_are_passed_through(method):
    weights = np.arange(1.0, D + 1)
    received = []

    def fun(x, w, offset):
        received.append((w, offset))
        return weighted_sphere(x, w, offset)

    x0 = np.ones(D)
    res = run_zo(method, fun, x0=x0, args=(weights, 2.5))
    assert all(w is weights and offset == 2.5 for w, offset in received)
    closure = run_zo(method, lambda x: weighted_sphere(x, weights, 2.5), x0=x0)
    assert_same_run(res, closure)
    assert weighted_sphere(res.x, weights, 2.5) == res.fun


def test_a_single_non_tuple_arg_is_passed_as_one_argument(method):
    weights = np.arange(1.0, D + 1)
    res = run_zo(method, weighted_sphere, x0=np.ones(D), args=weights)
    assert weighted_sphere(res.x, weights) == res.fun


# ---------------------------------------------------------------- stopping tests


def test_f_target_stops_with_success(method):
    f0 = shifted_quadratic(np.zeros(D))
    target = 0.8 * f0
    fun = Recorder()
    res = run_zo(method, fun, f_target=target, maxiter=1000)
    assert res.status == zominimize.Status.F_TARGET == 3
    assert res.success is True
    assert res.fun <= target
    assert res.nit < 1000
    # It stops at the first iteration that reached the target.
    per_it = per_iteration("forward", SMALL["q"])
    assert min(fun.values[:-per_it]) > target


@pytest.mark.parametrize("how", ["ftol", "tol"])
def test_ftol_stops_with_status_0(method, how):
    kwargs = {"ftol": 1e-3} if how == "ftol" else {"tol": 1e-3}
    res = run_zo(method, maxiter=5000, patience=10, **kwargs)
    assert res.status == zominimize.Status.FTOL == 0
    assert res.success is True
    assert res.nit < 5000
    assert np.isfinite(res.fun)
    assert "success" in res.message.lower()


def test_tol_and_ftol_option_are_the_same(method):
    assert_same_run(run_zo(method, tol=1e-3, maxiter=5000, patience=10),
                    run_zo(method, ftol=1e-3, maxiter=5000, patience=10))


def test_ftol_zero_disables_the_test(method):
    res = run_zo(method, maxiter=60, ftol=0, patience=1)
    assert res.nit == 60 and res.status == zominimize.Status.MAXITER


def test_maxtime_stops_the_run(method):
    def slow(x):
        time.sleep(0.002)
        return shifted_quadratic(x)

    res = run_zo(method, slow, maxtime=0.05, maxiter=10_000, ftol=0)
    assert res.status == zominimize.Status.MAXTIME
    assert res.success is False
    assert 1 <= res.nit < 10_000


# ---------------------------------------------------------------- return_all, disp, show_options


def test_return_all_gives_allvecs_and_history(method):
    x0 = np.full(D, 0.1)
    res = run_zo(method, x0=x0, return_all=True, maxiter=12, ftol=0)
    assert len(res.allvecs) == res.nit == 12
    np.testing.assert_array_equal(res.allvecs[0], x0)
    assert all(v.shape == (D,) for v in res.allvecs)
    assert set(res.history) >= {"nfev", "fun", "fun_best"}
    for key, values in res.history.items():
        assert isinstance(values, np.ndarray) and values.shape == (res.nit,), key
    assert res.history["nfev"][-1] == res.nfev
    assert np.all(np.diff(res.history["nfev"]) > 0)
    assert np.all(np.diff(res.history["fun_best"]) <= 0)
    assert res.history["fun_best"][-1] == res.fun
    # history['fun'] is f at the iterate of each iteration (forward estimator: measured)
    for k in range(res.nit):
        assert res.history["fun"][k] == shifted_quadratic(res.allvecs[k])


def test_without_return_all_there_is_no_history(method):
    res = run_zo(method)
    assert "allvecs" not in res and "history" not in res


def test_disp_prints_a_summary(method, capsys):
    res = run_zo(method, disp=True, maxiter=5)
    out = capsys.readouterr().out
    assert out.strip()
    assert str(res.nit) in out and str(res.nfev) in out
    run_zo(method, disp=False, maxiter=5)
    assert capsys.readouterr().out == ""


OPTION_NAMES = ["maxiter", "maxfev", "q", "mu", "lr", "x_scale", "directions", "estimator",
                "seed", "f_target", "ftol", "patience", "nan_policy", "disp", "return_all",
                "maxtime", "vectorized", "workers"]


def test_show_options_documents_every_option(method, capsys):
    text = zominimize.show_options(method, disp=False)
    assert isinstance(text, str)
    assert capsys.readouterr().out == ""
    for name in OPTION_NAMES:
        assert name in text, name
    assert method in text
    if method in ("zo-adamm", "l2l-zo"):
        for name in ("beta1", "beta2", "eps"):
            assert name in text, name
    assert zominimize.show_options(method) is None
    assert capsys.readouterr().out.strip() == text.strip()


def test_show_options_without_a_method_lists_every_method():
    text = zominimize.show_options(disp=False)
    for name in METHODS:
        assert name in text


def test_show_options_forwards_scipy_methods(capsys):
    ours = zominimize.show_options("Nelder-Mead", disp=False)
    assert ours == scipy.optimize.show_options("minimize", "Nelder-Mead", disp=False)


# ---------------------------------------------------------------- the scipy-style callables


def public_callable(name):
    return getattr(zominimize, name.replace("-", "_"))


def test_every_method_has_a_public_callable(method):
    assert callable(public_callable(method))


@pytest.mark.parametrize("tol", [None, 1e-4])
def test_callable_through_scipy_equals_minimize_by_name(method, tol):
    options = {"seed": 3, "maxiter": 300, "q": 6}
    x0 = np.full(D, 0.5)
    via_scipy = scipy.optimize.minimize(shifted_quadratic, x0, method=public_callable(method),
                                        tol=tol, options=options)
    by_name = zominimize.minimize(shifted_quadratic, x0, method=method, tol=tol,
                                  options=options)
    assert isinstance(via_scipy, OptimizeResult)
    assert_same_run(via_scipy, by_name)
    assert via_scipy.method == by_name.method


def test_callable_through_scipy_honours_bounds_and_callback(method):
    bounds = Bounds(-0.2, 0.2)
    fun = Recorder()
    stops = []

    def callback(intermediate_result):
        stops.append(intermediate_result.nit)
        if intermediate_result.nit == 4:
            raise StopIteration

    res = scipy.optimize.minimize(fun, np.zeros(D), method=public_callable(method),
                                  bounds=bounds, callback=callback, options=SMALL)
    assert res.status == 99 and res.message == "`callback` raised `StopIteration`."
    assert stops == [1, 2, 3, 4]
    points = np.array(fun.points)
    assert points.min() >= -0.2 and points.max() <= 0.2


def test_callable_through_scipy_warns_about_unknown_options(method):
    with pytest.warns(OptimizeWarning, match="bogus"):
        scipy.optimize.minimize(shifted_quadratic, np.zeros(D), method=public_callable(method),
                                options={**SMALL, "bogus": 1})


@pytest.mark.parametrize("how", ["None", "omitted"])
def test_default_method_is_l2l_zo(how):
    x0 = np.zeros(D)
    if how == "None":
        res = zominimize.minimize(shifted_quadratic, x0, method=None, options=SMALL)
    else:
        res = zominimize.minimize(shifted_quadratic, x0, options=SMALL)
    expected = run_zo("l2l-zo")
    assert_same_run(res, expected)
    assert res.method == expected.method and res.fallback == expected.fallback


def test_method_names_are_case_insensitive(method):
    assert_same_run(run_zo(method.upper()), run_zo(method))


def test_status_table():
    from zominimize._result import MESSAGES
    Status = zominimize.Status
    assert {s.name: int(s) for s in Status if s != Status.RUNNING} == {
        "FTOL": 0, "MAXITER": 1, "MAXFEV": 2, "F_TARGET": 3, "MAXTIME": 4,
        "NONFINITE": 5, "INTERRUPTED": 6, "ERROR": 7, "CALLBACK": 99}
    assert all(isinstance(MESSAGES[s], str) and MESSAGES[s] for s in Status)
    assert MESSAGES[Status.CALLBACK] == "`callback` raised `StopIteration`."


def test_budget_accounting_is_consistent(method):
    res = run_zo(method, maxiter=9, ftol=0)
    assert res.nfev == 9 * per_iteration("forward", SMALL["q"])
    assert math.isfinite(res.fun)
