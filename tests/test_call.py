"""A call is resolved once: one lookup of the method, one check of each option, one load
of the weights, whatever path (minimize, the public callables, ask/tell) it takes."""

import numpy as np
import pytest
import scipy.optimize

import zominimize
from zominimize import _call, _options, _registry
from zominimize.learned import weights

pytest.importorskip("torch")

ENTRY_POINTS = {
    "minimize": lambda method, options: zominimize.minimize(
        lambda x: float(x @ x), np.ones(4), method=method, options=options),
    "scipy": lambda method, options: scipy.optimize.minimize(
        lambda x: float(x @ x), np.ones(4),
        method=getattr(zominimize, method.replace("-", "_")), options=options),
    "ask/tell": lambda method, options: zominimize.ZOOptimizer(method, np.ones(4), **options),
}


@pytest.fixture
def counted(monkeypatch):
    """Counts of the method lookups, of the checks of option q, and of weight loads."""
    counts = {"lookup": 0, "q": 0, "load": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(_call, "get_method", counting("lookup", _registry.get_method))
    q = _options.SOLVER_OPTIONS["q"]
    monkeypatch.setitem(_options.SOLVER_OPTIONS, "q", q.__class__(
        q.name, q.default, counting("q", q.check), q.doc))
    monkeypatch.setattr(weights, "load", counting("load", weights.load))
    return counts


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("method", ["l2l-zo", "zo-adamm"])
def test_a_call_is_resolved_once(counted, entry, method):
    ENTRY_POINTS[entry](method, {"seed": 0, "maxiter": 3, "q": 3})
    loads = 1 if method == "l2l-zo" else 0
    assert counted == {"lookup": 1, "q": 1, "load": loads}


def test_the_resolved_call_holds_what_runs():
    call = _call.resolve("L2L-ZO", np.zeros(3), [(-1, 1)] * 3, {"q": 4}, run_options=True)
    assert call.requested.name == call.spec.name == "l2l-zo" and call.fallback is None
    assert call.settings["d"] == 3 and call.settings["x_scale"] == 0.5  # a quarter of 2
    assert call.run["workers"] == 1 and "seed" not in call.settings
    assert call.parts is not None  # the networks, loaded once for the run


def test_ask_tell_refuses_run_options_that_minimize_accepts():
    with pytest.raises(TypeError, match="unknown option.*workers"):
        zominimize.ZOOptimizer("zo-adamm", np.ones(3), workers=2)
    with pytest.warns(scipy.optimize.OptimizeWarning, match="Unknown solver options: bogus"):
        zominimize.minimize(lambda x: float(x @ x), np.ones(3), method="zo-adamm",
                            options={"bogus": 1, "maxiter": 2})
