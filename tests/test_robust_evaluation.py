"""Every evaluation path keeps what a failing batch computed, and counts real calls.

When fun raises in a batch (serial, vectorized, a map-like callable, a process
pool, a dask client with processes or threads), the result attached to the
exception (or returned, for KeyboardInterrupt) holds the best point including the
values of that batch that came back, and nfev is the number of calls that really
ran (counted by the objectives in a lock-protected file). Nothing hangs. Also:
every dask query is a real call, foreign real numbers are accepted, and callbacks
follow scipy's convention.
"""

import decimal
import fractions
import sys
import threading
from concurrent.futures import Future

import numpy as np
import pytest
from scipy.optimize import OptimizeResult

import zominimize
from conftest import D, SMALL, run_zo
from objectives import FailingQuadratic, HostileQuadratic, shifted_quadratic
from zominimize import ObjectiveValueError, Status
from zominimize._evaluation import Evaluator, as_real_scalar

RUN_TIMEOUT_S = 30  # SMALL runs zo-adamm in batches of q + 1 = 5 points


def calls_in(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def run_failing(tmp_path, at, kind, timeout=RUN_TIMEOUT_S, vectorized=False, **options):
    """Run zo-adamm with call number ``at`` failing with ``kind``, in a thread joined
    with a timeout (a hang fails the test); return (result, exception, calls)."""
    log = tmp_path / f"calls-{kind}-{at}.log"
    fun = FailingQuadratic(str(log), at, kind)
    outcome = {}

    def target():
        try:
            outcome["result"] = zominimize.minimize(
                fun.rows if vectorized else fun, np.zeros(D), method="zo-adamm",
                options={**SMALL, **options, "vectorized": vectorized})
        except BaseException as exc:  # noqa: B036 - SystemExit is an outcome here
            outcome["error"] = exc
            outcome["result"] = getattr(exc, "partial_result", None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"minimize did not end within {timeout} s"
    return outcome["result"], outcome.get("error"), calls_in(log)


def assert_consistent(res, calls):
    assert isinstance(res, OptimizeResult)
    assert res.nfev == calls
    assert np.isfinite(res.fun) and res.fun == shifted_quadratic(res.x)
    assert res.success is False


# ---------------------------------------------------------------- fixtures


def workers_for(path, request):
    return {"map": map, "processes": 2}.get(path) or request.getfixturevalue(path)


# ---------------------------------------------------------------- 4: partial results


def test_map_keeps_the_values_of_the_failing_batch(tmp_path):
    """Call 2 raises: before the fix nfev was 1 and fun NaN although call 1 was finite."""
    res, error, calls = run_failing(tmp_path, 2, "raise", workers=map)
    assert isinstance(error, ValueError) and res.status == Status.ERROR
    assert calls == 2  # map stops calling fun once a call of the batch failed
    assert_consistent(res, calls)
    assert res.fun == shifted_quadratic(np.zeros(D))


@pytest.mark.parametrize("path", ["processes", "dask_client", "dask_threads"])
@pytest.mark.parametrize("kind", ["raise", "interrupt"])
def test_workers_keep_the_best_point_and_the_true_count(tmp_path, request, path, kind):
    """Call 33 (mid-batch) fails: nfev counts every call that ran (before the fix,
    workers=2 reported 31 of 35; a KeyboardInterrupt in a dask thread hung)."""
    res, error, calls = run_failing(tmp_path, 33, kind, workers=workers_for(path, request))
    if kind == "interrupt":
        assert error is None and res.status == Status.INTERRUPTED
    else:
        assert isinstance(error, ValueError) and "hostile call 33" in str(error)
        assert res.status == Status.ERROR
    assert calls >= 33
    assert_consistent(res, calls)


def test_vectorized_call_that_raises_counts_its_rows(tmp_path):
    """Call 8 is in the second batch of 5 rows: 10 points were passed to fun (before: 6)."""
    res, error, calls = run_failing(tmp_path, 8, "raise", vectorized=True)
    assert isinstance(error, ValueError)
    assert res.nfev == 10 and calls == 10  # the objective logs every row it was passed
    assert np.isfinite(res.fun) and res.fun == shifted_quadratic(res.x)


def test_serial_partial_result_counts_non_finite_values(tmp_path):
    """A NaN returned in the batch that then raised is counted (before: 0)."""
    seen = []

    def fun(x):
        seen.append(1)
        if len(seen) == 7:
            raise RuntimeError("late failure")
        return np.nan if len(seen) == 6 else shifted_quadratic(x)

    with pytest.raises(RuntimeError) as info:
        run_zo("zo-adamm", fun)
    partial = info.value.partial_result
    assert partial.nfev == 7 and partial.nfev_nonfinite == 1


def test_system_exit_in_a_worker_carries_the_partial_result(tmp_path):
    res, error, calls = run_failing(tmp_path, 12, "exit", workers=2)
    assert isinstance(error, SystemExit) and res.status == Status.ERROR
    assert_consistent(res, calls)


def test_unpicklable_exception_in_a_worker_becomes_a_runtime_error(tmp_path):
    res, error, calls = run_failing(tmp_path, 7, "unpicklable", workers=2)
    assert type(error) is RuntimeError
    assert "UnpicklableError" in str(error) and "hostile call 7" in str(error)
    assert_consistent(res, calls)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_worker_exception_carries_the_worker_traceback(tmp_path):
    _, error, _ = run_failing(tmp_path, 3, "raise", workers=2)
    assert any("Traceback in the worker process" in note and "hostile call 3" in note
               for note in error.__notes__)


@pytest.mark.parametrize("extra", [-2, 1])
def test_map_returning_the_wrong_number_of_values_is_refused(extra):
    def bad_map(fn, rows):
        rows = list(rows)
        return [fn(row) for row in rows[:len(rows) + extra]] + [fn(rows[0])] * max(extra, 0)

    with pytest.raises(ObjectiveValueError, match=r"workers=.* returned (3|6) values for 5"):
        run_zo("zo-adamm", workers=bad_map)


def test_map_returning_something_else_than_fn_of_x_is_refused():
    with pytest.raises(ObjectiveValueError, match="must return fn\\(x\\) for each point"):
        run_zo("zo-adamm", workers=lambda fn, rows: [0.5 for _ in rows])


# ---------------------------------------------------------------- 5: every query is a call


def test_dask_computes_identical_points_once_each(tmp_path, dask_client):
    """Four identical points are four calls (before: dask computed one, reused 4 times)."""
    log = tmp_path / "calls.log"
    evaluate = Evaluator(HostileQuadratic(str(log), 0, "nan"), workers=dask_client)
    with evaluate:
        values = evaluate(np.zeros((4, D)))
    assert calls_in(log) == 4 == evaluate.batch_calls
    np.testing.assert_array_equal(values, shifted_quadratic(np.zeros(D)))


class PureExecutor:
    """An executor whose submit takes ``pure`` (as dask's does), recording it."""

    def __init__(self):
        self.pure = []

    def submit(self, fn, *args, pure=True):
        self.pure.append(pure)
        future = Future()
        future.set_result(fn(*args))
        return future


def test_pure_false_only_where_submit_takes_it():
    executor = PureExecutor()
    res = run_zo("zo-adamm", workers=executor, maxiter=3)
    assert executor.pure == [False] * res.nfev


# ---------------------------------------------------------------- 15: foreign real numbers


@pytest.mark.parametrize("value", [fractions.Fraction(1, 2), decimal.Decimal("0.5"),
                                   np.float32(0.5), [fractions.Fraction(1, 2)],
                                   np.array(decimal.Decimal("0.5"), dtype=object)])
def test_any_real_number_is_accepted(value):
    assert as_real_scalar(value) == 0.5


@pytest.mark.parametrize("value", [10**400, -10**5000, fractions.Fraction(10**400, 3),
                                   [10**400]], ids=["int", "int-unprintable", "fraction", "list"])
def test_too_large_a_number_names_the_value(value):
    with pytest.raises(ObjectiveValueError, match="too large for a float") as info:
        as_real_scalar(value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("value", ["0.5", 1 + 0j, decimal.Decimal("sNaN"), None])
def test_non_real_values_are_refused(value):
    with pytest.raises(ObjectiveValueError, match="real number"):
        as_real_scalar(value)


def test_minimize_with_fraction_and_decimal_values():
    res = run_zo("zo-adamm", lambda x: fractions.Fraction(shifted_quadratic(x)))
    assert res.fun == shifted_quadratic(res.x) < shifted_quadratic(np.zeros(D))
    rows = run_zo("zo-adamm", lambda X: [decimal.Decimal(shifted_quadratic(x)) for x in X],
                  vectorized=True)
    assert rows.fun == res.fun


def test_vectorized_huge_int_is_refused():
    with pytest.raises(ObjectiveValueError, match="too large for a float"):
        run_zo("zo-adamm", lambda X: [10**400] * len(X), vectorized=True)


# ---------------------------------------------------------------- 16: callbacks


def test_old_style_callback_receives_the_current_iterate():
    iterates, xs, old = [], [], []
    run_zo("zo-adamm", callback=lambda intermediate_result: (
        iterates.append(intermediate_result.x_last), xs.append(intermediate_result.x)))
    run_zo("zo-adamm", callback=lambda xk: old.append(xk))
    np.testing.assert_array_equal(old, iterates)
    assert not np.array_equal(iterates, xs)  # the iterate is not always the best point


def test_callback_with_state_receives_the_iterate_and_the_result():
    seen = []

    def callback(xk, state):
        seen.append((xk, state))

    res = run_zo("zo-adamm", callback=callback, maxiter=4)
    assert len(seen) == res.nit == 4
    for i, (xk, state) in enumerate(seen, start=1):
        assert isinstance(state, OptimizeResult) and state.nit == i
        np.testing.assert_array_equal(xk, state.x_last)
        assert not np.shares_memory(xk, state.x_last)
    assert seen[-1][1].fun == res.fun


@pytest.mark.filterwarnings("ignore:Method zo-adamm does not use gradient:RuntimeWarning")
def test_jac_true_with_a_scalar_return_names_the_value():
    """Before: a bare TypeError ('float' object is not subscriptable)."""
    with pytest.raises(ObjectiveValueError, match=r"jac=True.*\(f, gradient\).*float: 0\.5"):
        zominimize.minimize(lambda x: 0.5, np.zeros(D), method="zo-adamm", jac=True,
                            options=SMALL)
