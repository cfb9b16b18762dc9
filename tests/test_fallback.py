"""result.method and result.fallback; l2l-zo falls back to zo-adamm when it cannot run.

This module sees the FallbackWarning (conftest ignores it everywhere else).
"""

import importlib.util
import warnings

import numpy as np
import pytest
import scipy.optimize

import zominimize
from conftest import D, SMALL, assert_same_run, run_zo
from objectives import shifted_quadratic
from zominimize import FallbackWarning



def test_reason_names_missing_torch(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(zominimize.learned.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    res, _ = fallback_warnings(lambda: run_zo("l2l-zo"))
    assert res.method == "zo-adamm" and "torch" in res.fallback


def test_without_torch_fallback_false_raises_import_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(zominimize.learned.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ImportError, match="torch is not installed"):
        run_zo("l2l-zo", fallback=False)


def test_reason_names_missing_weights(monkeypatch):
    monkeypatch.setattr(zominimize.learned.importlib.util, "find_spec", lambda name, *a: object())

    def no_weights(location, name):
        raise zominimize.WeightsError("no pretrained weights found (no manifest.json in ...)")
    monkeypatch.setattr(zominimize.learned.weights, "load", no_weights)
    res, _ = fallback_warnings(lambda: run_zo("l2l-zo"))
    assert res.method == "zo-adamm" and "weights" in res.fallback


@pytest.fixture(autouse=True)
def no_shipped_weights(monkeypatch, tmp_path):
    """Every test here runs as on an install without pretrained weights."""
    load = zominimize.learned.weights.load
    monkeypatch.setattr(zominimize.learned.weights, "shipped_dirs", lambda: [tmp_path])
    load.cache_clear()
    yield
    load.cache_clear()


def fallback_warnings(call):
    """Run ``call()`` recording every warning; return (its result, the FallbackWarnings)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = call()
    return result, [w for w in record if issubclass(w.category, FallbackWarning)]


@pytest.mark.parametrize("method", ["zo-sgd", "zo-signsgd", "zo-adamm"])
def test_classic_methods_run_themselves_without_warning(method):
    res, fallbacks = fallback_warnings(lambda: run_zo(method))
    assert res.method == method
    assert res.fallback is None
    assert fallbacks == []


def test_l2l_zo_falls_back_to_zo_adamm():
    res, fallbacks = fallback_warnings(lambda: run_zo("l2l-zo"))
    assert res.method == "zo-adamm"
    assert isinstance(res.fallback, str) and res.fallback.strip()
    assert "torch" in res.fallback or "weights" in res.fallback
    assert len(fallbacks) == 1
    message = str(fallbacks[0].message)
    assert "l2l-zo" in message and "zo-adamm" in message
    assert issubclass(FallbackWarning, UserWarning)


def test_fallback_warning_is_issued_once_per_call():
    for _ in range(3):
        _, fallbacks = fallback_warnings(lambda: run_zo("l2l-zo", maxiter=50))
        assert len(fallbacks) == 1
    _, fallbacks = fallback_warnings(
        lambda: scipy.optimize.minimize(shifted_quadratic, np.zeros(D), method=zominimize.l2l_zo,
                                        options=SMALL))
    assert len(fallbacks) == 1
    _, fallbacks = fallback_warnings(lambda: zominimize.ZOOptimizer("l2l-zo", np.zeros(D)))
    assert len(fallbacks) == 1


def test_fallback_warning_can_be_caught_with_pytest_warns():
    with pytest.warns(FallbackWarning, match="cannot run"):
        run_zo("l2l-zo")


@pytest.mark.parametrize("options", [{}, {"beta1": 0.5, "eps": 1e-6},
                                     {"estimator": "antithetic", "lr": 0.05}])
def test_fallback_result_equals_zo_adamm(options):
    (res, _), (adamm, _) = (fallback_warnings(lambda: run_zo("l2l-zo", **options)),
                            fallback_warnings(lambda: run_zo("zo-adamm", **options)))
    assert_same_run(res, adamm)
    assert adamm.fallback is None


@pytest.mark.parametrize("how", ["minimize", "scipy", "ZOOptimizer"])
def test_fallback_warning_points_at_the_callers_line(how):
    calls = {
        "minimize": lambda: zominimize.minimize(shifted_quadratic, np.zeros(D), method="l2l-zo",
                                                options=SMALL),
        "scipy": lambda: scipy.optimize.minimize(shifted_quadratic, np.zeros(D),
                                                 method=zominimize.l2l_zo, options=SMALL),
        "ZOOptimizer": lambda: zominimize.ZOOptimizer("l2l-zo", np.zeros(D)),
    }
    _, fallbacks = fallback_warnings(calls[how])
    assert [w.filename for w in fallbacks] == [__file__]


def test_fallback_in_ask_tell():
    with pytest.warns(FallbackWarning):
        opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), seed=0)
    assert opt.method == "zo-adamm"
    assert opt.fallback and opt.result().fallback == opt.fallback
    assert opt.result().method == "zo-adamm"


def test_disp_mentions_the_fallback(capsys):
    fallback_warnings(lambda: run_zo("l2l-zo", disp=True, maxiter=3))
    out = capsys.readouterr().out
    assert "zo-adamm" in out and "fallback" in out


@pytest.mark.filterwarnings("ignore::zominimize.FallbackWarning")
def test_result_method_is_a_registered_method(method):
    res = run_zo(method)
    assert res.method in zominimize.method_names()
    assert (res.method == method) == (res.fallback is None)
