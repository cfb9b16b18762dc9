"""Parallel and vectorized evaluation give exactly the serial result for the same seed.

The objectives live in tests/objectives.py: a process pool or a dask worker must
be able to import them by name.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import zominimize
from conftest import D, assert_same_run
from objectives import shifted_quadratic, shifted_quadratic_rows, weighted_sphere

OPTIONS = {"seed": 9, "q": 6, "maxiter": 15}


def serial(method, fun=shifted_quadratic, **kwargs):
    return zominimize.minimize(fun, np.full(D, 0.3), method=method, options=OPTIONS, **kwargs)


def parallel(method, workers, fun=shifted_quadratic, **kwargs):
    return zominimize.minimize(fun, np.full(D, 0.3), method=method,
                               options={**OPTIONS, "workers": workers}, **kwargs)


def test_process_pool_equals_serial(method):
    assert_same_run(parallel(method, 2), serial(method))


def test_process_pool_with_args_and_bounds(method):
    weights = np.arange(1.0, D + 1)
    kwargs = {"args": (weights, 1.0), "bounds": [(0.1, 1.0)] * D}
    res = parallel(method, 2, weighted_sphere, **kwargs)
    assert_same_run(res, serial(method, weighted_sphere, **kwargs))
    assert np.all(res.x >= 0.1)


def test_process_pool_respects_maxfev(method):
    res = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                              options={**OPTIONS, "workers": 2, "maxfev": 17, "ftol": 0})
    assert res.nfev <= 17
    assert_same_run(res, zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                                             options={**OPTIONS, "maxfev": 17, "ftol": 0}))


def test_builtin_map_equals_serial(method):
    assert_same_run(parallel(method, map), serial(method))


def test_executor_map_equals_serial(method):
    with ThreadPoolExecutor(max_workers=2) as pool:
        res = parallel(method, pool.map)
    assert_same_run(res, serial(method))


def test_thread_pool_executor_equals_serial(method):
    with ThreadPoolExecutor(max_workers=3) as pool:
        res = parallel(method, pool)
    assert_same_run(res, serial(method))


def test_executor_is_left_open_for_the_caller(method):
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel(method, pool)
        assert pool.submit(lambda: 41 + 1).result() == 42


def test_parallel_fun_receives_copies(method):
    def vandal(x):
        value = shifted_quadratic(x)
        x[:] = 1e9
        return value

    with ThreadPoolExecutor(max_workers=2) as pool:
        res = parallel(method, pool, vandal)
    assert_same_run(res, serial(method))


def test_vectorized_equals_serial(method):
    calls = []

    def rows(X):
        calls.append(X.shape)
        return shifted_quadratic_rows(X)

    res = zominimize.minimize(rows, np.full(D, 0.3), method=method,
                              options={**OPTIONS, "vectorized": True})
    assert_same_run(res, serial(method))
    assert len(calls) == res.nit
    assert all(shape == (OPTIONS["q"] + 1, D) for shape in calls)


def test_vectorized_with_args(method):
    weights = np.arange(1.0, D + 1)

    def rows(X, w, offset):
        return np.array([weighted_sphere(x, w, offset) for x in X])

    res = zominimize.minimize(rows, np.full(D, 0.3), args=(weights, 2.0), method=method,
                              options={**OPTIONS, "vectorized": True})
    assert_same_run(res, serial(method, weighted_sphere, args=(weights, 2.0)))


def test_parallel_exception_propagates_with_partial_result(method):
    def fails_far_out(x):
        if np.abs(x).max() > 0.31:
            raise ValueError("out of range")
        return shifted_quadratic(x)

    with ThreadPoolExecutor(max_workers=2) as pool, \
            pytest.raises(ValueError, match="out of range") as info:
        zominimize.minimize(fails_far_out, np.full(D, 0.3), method=method,
                            options={**OPTIONS, "workers": pool, "mu": 0.1})
    partial = info.value.partial_result
    assert partial.success is False


# ---------------------------------------------------------------- dask.distributed


def test_dask_client_equals_serial(method, dask_client):
    res = parallel(method, dask_client)
    assert_same_run(res, serial(method))
    assert len(dask_client.scheduler_info()["workers"]) == 2


def test_dask_client_with_args_and_antithetic(dask_client):
    weights = np.arange(1.0, D + 1)
    options = {**OPTIONS, "estimator": "antithetic"}
    res = zominimize.minimize(weighted_sphere, np.full(D, 0.3), args=(weights, 0.5),
                              method="zo-adamm", options={**options, "workers": dask_client})
    expected = zominimize.minimize(weighted_sphere, np.full(D, 0.3), args=(weights, 0.5),
                                   method="zo-adamm", options=options)
    assert_same_run(res, expected)
