"""Shared helpers for the zominimize test suite.

* ``METHODS``: every registered ZO method; most tests are parametrised over it
  through the ``method`` fixture.
* ``l2l-zo`` currently falls back to ``zo-adamm`` with a FallbackWarning. That
  warning is ignored everywhere except in test_fallback.py, which checks it
  explicitly (``pytest.warns`` and ``catch_warnings(record=True)`` still see it).
* ``Recorder`` wraps an objective to count its calls and keep every point it got.
* ``run_zo`` runs one small seeded ZO minimisation; ``assert_same_run`` compares
  two results exactly (same seed must mean bit-identical results).
* ``dask_client`` (two worker processes) and ``dask_threads`` (one worker, two
  threads): dask clusters on loopback, started once per test session.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from scipy.optimize import OptimizeResult

import zominimize

sys.path.insert(0, os.path.dirname(__file__))  # so `import objectives` always works

from objectives import shifted_quadratic  # noqa: E402

METHODS = zominimize.method_names()
ESTIMATORS = ("forward", "antithetic")
DIRECTIONS = ("gaussian", "sphere")

#: Small default problem: fast, but long enough for several iterations.
D = 5
SMALL = {"seed": 0, "maxiter": 30, "q": 4}

RESULT_FIELDS = ("x", "fun", "nfev", "nit", "status", "success", "message",
                 "x_last", "method", "fallback", "nfev_nonfinite", "nfev_outliers")


def pytest_collection_modifyitems(items):
    for item in items:
        if "test_fallback" not in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings("ignore::zominimize.FallbackWarning"))


@pytest.fixture(params=METHODS)
def method(request) -> str:
    """Each registered ZO method in turn."""
    return request.param


def per_iteration(estimator: str, q: int) -> int:
    """Evaluations of one full iteration."""
    return q + 1 if estimator == "forward" else 2 * q


class Recorder:
    """Wrap ``fun``: count its calls and keep a copy of every point and value."""

    def __init__(self, fun=shifted_quadratic):
        self.fun = fun
        self.points: list[np.ndarray] = []
        self.values: list[float] = []

    @property
    def calls(self) -> int:
        return len(self.points)

    def __call__(self, x, *args):
        self.points.append(np.array(x, copy=True))
        value = self.fun(x, *args)
        self.values.append(value)
        return value


def run_zo(method: str, fun=shifted_quadratic, x0=None, *, d: int = D, args=(),
           bounds=None, callback=None, tol=None, **options) -> OptimizeResult:
    """``zominimize.minimize`` on a small seeded problem; keyword options override SMALL."""
    x0 = np.zeros(d) if x0 is None else x0
    return zominimize.minimize(fun, x0, args=args, method=method, bounds=bounds,
                               callback=callback, tol=tol, options={**SMALL, **options})


def assert_same_run(a: OptimizeResult, b: OptimizeResult) -> None:
    """Two results are bit-identical (x, fun, x_last, nfev, nit, status)."""
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.x_last, b.x_last)
    assert a.fun == b.fun or (np.isnan(a.fun) and np.isnan(b.fun))
    assert (a.nfev, a.nit, a.status, a.success) == (b.nfev, b.nit, b.status, b.success)


def _dask_cluster(**cluster_options):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(dashboard_address=":0", **cluster_options)  # any free port
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="session")
def dask_client():
    """A dask client of two single-threaded worker processes on loopback."""
    yield from _dask_cluster(n_workers=2, threads_per_worker=1, processes=True,
                             host="127.0.0.1")


@pytest.fixture(scope="session")
def dask_threads():
    """A dask client of one in-process worker with two threads."""
    yield from _dask_cluster(n_workers=1, threads_per_worker=2, processes=False)
