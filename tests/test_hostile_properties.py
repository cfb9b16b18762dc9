"""Property: one hostile evaluation at a random call never wrecks a run.

For random runs of every method on every evaluation path (serial, vectorized,
process pool, map, dask on loopback), a single NaN, infinite, huge, raising or
interrupting evaluation leaves every query finite and inside the bounds, nfev
equal to the real number of calls, res.fun == fun(res.x), no hostile value
reported as success, and the run ends (a timeout turns a hang into a failure).
"""

import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zominimize
from conftest import METHODS
from objectives import HostileQuadratic, shifted_quadratic
from zominimize import Status

PATHS = ("serial", "vectorized", "processes", "map", "threads", "dask")
KINDS = ("nan", "inf", "-inf", "huge", "max", "raise", "interrupt")
TIMEOUT_S = 60

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def thread_pool():
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout(f"the run did not end within {TIMEOUT_S} s")


@st.composite
def runs(draw):
    d = draw(st.integers(1, 5))
    q = draw(st.integers(1, 5))
    estimator = draw(st.sampled_from(["forward", "antithetic"]))
    per_iteration = q + 1 if estimator == "forward" else 2 * q
    maxiter = draw(st.integers(1, 12))
    bounded = draw(st.booleans())
    return {
        "method": draw(st.sampled_from(METHODS)),
        "d": d,
        "kind": draw(st.sampled_from(KINDS)),
        "at": draw(st.integers(1, maxiter * per_iteration)),
        "bounds": (-0.5, 0.7) if bounded else None,
        "options": {"seed": draw(st.integers(0, 2**16)), "q": q, "estimator": estimator,
                    "maxiter": maxiter, "mu": draw(st.sampled_from([1e-4, 0.1]))},
    }


def run_hostile(run, path, tmp_path, workers) -> tuple:
    log = tmp_path / f"calls-{np.random.default_rng().integers(1 << 60)}.log"
    lower, upper = run["bounds"] or (None, None)
    fun = HostileQuadratic(str(log), run["at"], run["kind"], lower, upper)
    options = dict(run["options"])
    if path == "vectorized":
        objective, options["vectorized"] = fun.rows, True
    else:
        objective = fun
        if path != "serial":
            options["workers"] = workers
    bounds = None if run["bounds"] is None else [run["bounds"]] * run["d"]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        res = zominimize.minimize(objective, np.full(run["d"], 0.2), method=run["method"],
                                  bounds=bounds, options=options)
    except ValueError as exc:
        assert run["kind"] == "raise" and "hostile call" in str(exc)
        res = exc.partial_result
        assert res.status == Status.ERROR
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = log.read_text().splitlines() if log.exists() else []
    return res, lines


@pytest.mark.parametrize("path", PATHS)
def test_one_hostile_evaluation_never_wrecks_a_run(path, tmp_path, request):
    workers = {"processes": 2, "map": map,
               "threads": request.getfixturevalue("thread_pool") if path == "threads" else None,
               "dask": request.getfixturevalue("dask_client") if path == "dask" else None
               }.get(path)

    @SETTINGS
    @given(run=runs())
    def check(run):
        res, lines = run_hostile(run, path, tmp_path, workers)
        assert lines and all(line == "ok" for line in lines), "a query was non-finite or outside"
        assert res.nfev == len(lines)
        assert np.isfinite(res.x_last).all()
        if run["kind"] == "interrupt" and len(lines) >= run["at"]:
            assert res.status == Status.INTERRUPTED
        if np.isfinite(res.fun):
            assert res.fun == shifted_quadratic(res.x)
        else:
            assert not res.success
        if run["kind"] in ("huge", "max") and len(lines) >= run["at"]:
            assert res.fun < 1e300

    check()
