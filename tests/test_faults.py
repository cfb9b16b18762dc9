"""When fun misbehaves: NaN/inf values, exceptions, KeyboardInterrupt.

A non-finite value is never reported as success; an exception inside fun
propagates with the best point so far attached as ``exc.partial_result``;
KeyboardInterrupt ends the run with status 6 and the best point so far.
"""

import numpy as np
import pytest
from scipy.optimize import OptimizeResult

import zominimize
from conftest import D, SMALL, Recorder, per_iteration, run_zo
from objectives import shift, shifted_quadratic
from zominimize import Status

# ---------------------------------------------------------------- non-finite values


def nan_beyond(limit=0.5, bad=np.nan):
    """shifted_quadratic, but ``bad`` where x[i] > limit, i the coordinate of the
    minimiser's largest entry (> limit): the run is bound to run into the wall."""
    i = int(np.argmax(shift(D)))
    assert shift(D)[i] > limit

    def fun(x):
        return bad if x[i] > limit else shifted_quadratic(x)

    fun.coordinate = i
    return fun


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("estimator", ["forward", "antithetic"])
def test_omit_drops_non_finite_queries_and_goes_on(method, bad, estimator):
    fun = Recorder(nan_beyond(0.5, bad))
    res = run_zo(method, fun, x0=np.zeros(D), maxiter=300, estimator=estimator)
    assert np.isfinite(res.fun)
    assert fun.fun(res.x) == res.fun
    assert res.x[fun.fun.coordinate] <= 0.5
    nonfinite = sum(not np.isfinite(v) for v in fun.values)
    assert res.nfev_nonfinite == nonfinite > 0
    assert res.nfev == fun.calls
    assert res.fun < shifted_quadratic(np.zeros(D))  # it still made progress
    assert res.status != Status.NONFINITE


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fun_non_finite_everywhere_is_never_success(method, bad):
    res = run_zo(method, lambda x: bad, maxiter=20)
    assert res.success is False
    assert not np.isfinite(res.fun)
    assert res.nfev_nonfinite == res.nfev > 0
    assert "No finite value was found" in res.message


def test_fun_nan_everywhere_stops_at_once_with_status_nonfinite(method):
    """Nothing finite at the start point: there is no best point to go back to, so
    the run should end with status 5 (NONFINITE) after the first iteration instead of
    burning the whole budget."""
    fun = Recorder(lambda x: np.nan)
    res = run_zo(method, fun, maxiter=200)
    assert res.success is False
    assert res.status == Status.NONFINITE
    assert res.nit == 1 and fun.calls == per_iteration("forward", SMALL["q"])


@pytest.mark.parametrize("policy", ["omit", "stop", "raise"])
def test_non_finite_result_is_never_success_with_f_target(method, policy):
    # f_target can never be met by NaN; the run must not claim success.
    try:
        res = run_zo(method, lambda x: np.nan, maxiter=10, f_target=1e300, nan_policy=policy)
    except zominimize.NonFiniteValueError as exc:
        res = exc.partial_result
    assert res.success is False


def test_nan_policy_raise(method):
    fun = Recorder(nan_beyond(0.5))
    with pytest.raises(zominimize.NonFiniteValueError, match="nan_policy='raise'") as info:
        run_zo(method, fun, maxiter=300, nan_policy="raise")
    exc = info.value
    assert isinstance(exc, zominimize.ObjectiveValueError) and isinstance(exc, ValueError)
    partial = exc.partial_result
    assert isinstance(partial, OptimizeResult)
    assert partial.success is False
    assert np.isfinite(partial.fun) and fun.fun(partial.x) == partial.fun
    assert partial.nfev == fun.calls
    assert partial.nfev_nonfinite >= 1


def test_nan_policy_stop(method):
    fun = Recorder(nan_beyond(0.5))
    res = run_zo(method, fun, maxiter=300, nan_policy="stop")
    assert res.status == Status.NONFINITE == 5
    assert res.success is False
    assert np.isfinite(res.fun) and fun.fun(res.x) == res.fun  # the best finite point
    assert res.nfev == fun.calls and res.nfev_nonfinite >= 1
    assert not np.isfinite(fun.values[-per_iteration("forward", SMALL["q"]):]).all()


def test_nan_at_the_iterate_goes_back_to_the_best_point(method):
    """A transient NaN at the iterate (omit) must not end or derail the run."""
    calls = []

    def flaky(x):
        calls.append(1)
        return np.nan if len(calls) == 6 else shifted_quadratic(x)  # row 0 of iteration 2

    res = run_zo(method, flaky, maxiter=50, ftol=0)
    clean = run_zo(method, maxiter=50, ftol=0)
    assert res.nit == 50 and res.status == Status.MAXITER
    assert res.nfev_nonfinite == 1
    assert np.isfinite(res.fun) and shifted_quadratic(res.x) == res.fun
    assert res.fun < shifted_quadratic(np.zeros(D))
    assert clean.nfev_nonfinite == 0


# ---------------------------------------------------------------- exceptions inside fun


class Boom(RuntimeError):
    pass


def failing_after(n, error=Boom, best_before=False):
    """fun that raises ``error`` at call n; with best_before, call n-1 returns -100."""
    fun = Recorder()

    def wrapped(x):
        fun(x)
        if fun.calls == n:
            raise error("fun failed")
        if best_before and fun.calls == n - 1:
            fun.values[-1] = -100.0
            return -100.0
        return fun.values[-1]

    wrapped.recorder = fun
    return wrapped


@pytest.mark.parametrize("n", [5, 8, 13, 21])  # q=4: batches of 5; 8 and 13 are mid-batch
def test_exception_in_fun_propagates_with_the_best_point(method, n):
    fun = failing_after(n)
    with pytest.raises(Boom, match="fun failed") as info:
        run_zo(method, fun)
    partial = info.value.partial_result
    seen = fun.recorder.values[:-1]
    assert isinstance(partial, OptimizeResult)
    assert partial.status == Status.ERROR and partial.success is False
    assert np.isfinite(partial.fun)
    assert partial.fun == min(seen)
    assert shifted_quadratic(partial.x) == partial.fun
    assert partial.nfev == n
    assert any("partial_result" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("n", [8, 9])
def test_exception_mid_batch_keeps_the_values_already_computed(method, n):
    """The best value was found in the batch the exception cut short."""
    fun = failing_after(n, best_before=True)
    with pytest.raises(Boom) as info:
        run_zo(method, fun)
    partial = info.value.partial_result
    assert partial.fun == -100.0
    np.testing.assert_array_equal(partial.x, fun.recorder.points[n - 2])
    assert partial.nfev == n


def test_exception_at_the_very_first_call(method):
    fun = failing_after(1)
    with pytest.raises(Boom) as info:
        run_zo(method, fun)
    partial = info.value.partial_result
    assert partial.success is False and partial.nfev == 1
    np.testing.assert_array_equal(partial.x, np.zeros(D))


def test_objective_value_error_also_carries_a_partial_result(method):
    calls = []

    def fun(x):
        calls.append(1)
        return "oops" if len(calls) == 12 else shifted_quadratic(x)

    with pytest.raises(zominimize.ObjectiveValueError) as info:
        run_zo(method, fun)
    partial = info.value.partial_result
    assert np.isfinite(partial.fun) and shifted_quadratic(partial.x) == partial.fun


def test_exception_in_callback_propagates(method):
    def callback(intermediate_result):
        if intermediate_result.nit == 2:
            raise Boom("callback failed")

    with pytest.raises(Boom, match="callback failed") as info:
        run_zo(method, callback=callback)
    assert info.value.partial_result.nit == 2


# ---------------------------------------------------------------- KeyboardInterrupt


@pytest.mark.parametrize("n", [5, 7, 16, 33])
def test_keyboard_interrupt_returns_the_best_point_with_status_6(method, n):
    fun = failing_after(n, error=KeyboardInterrupt)
    res = run_zo(method, fun)
    seen = fun.recorder.values[:-1]
    assert isinstance(res, OptimizeResult)
    assert res.status == Status.INTERRUPTED == 6
    assert res.success is False
    assert "KeyboardInterrupt" in res.message
    assert res.fun == min(seen) and shifted_quadratic(res.x) == res.fun
    assert res.nfev == n


def test_keyboard_interrupt_mid_batch_keeps_the_values_already_computed(method):
    fun = failing_after(9, error=KeyboardInterrupt, best_before=True)
    res = run_zo(method, fun)
    assert res.status == 6 and res.fun == -100.0
    np.testing.assert_array_equal(res.x, fun.recorder.points[7])


def test_keyboard_interrupt_with_return_all(method):
    fun = failing_after(12, error=KeyboardInterrupt)
    res = run_zo(method, fun, return_all=True)
    assert res.status == 6
    assert len(res.allvecs) == res.nit == 2
    assert all(len(v) == res.nit for v in res.history.values())
