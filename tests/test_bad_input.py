"""Bad arguments raise early, with a message naming the argument and the value.

Table-driven: each row is (id, the minimize arguments that differ from a good
call, the expected exception, a regex the message must match).
"""

import numpy as np
import pytest
from scipy.optimize import Bounds

import zominimize
from conftest import D, METHODS, SMALL
from objectives import shifted_quadratic


def call(method, x0=None, bounds=None, **options):
    x0 = np.zeros(D) if x0 is None else x0
    return zominimize.minimize(shifted_quadratic, x0, method=method, bounds=bounds,
                               options={**SMALL, **options})


BAD_ARGUMENTS = [
    # x0
    ("x0-empty", {"x0": np.array([])}, ValueError, r"x0 must not be empty"),
    ("x0-empty-list", {"x0": []}, ValueError, r"x0 must not be empty"),
    ("x0-2d", {"x0": np.zeros((2, 3))}, ValueError, r"x0 must be 1-D, got shape \(2, 3\)"),
    ("x0-nan", {"x0": np.array([0.0, np.nan, 1.0])}, ValueError,
     r"x0 must be finite, got nan at index 1"),
    ("x0-inf", {"x0": np.array([0.0, 1.0, -np.inf])}, ValueError,
     r"x0 must be finite, got -inf at index 2"),
    ("x0-strings", {"x0": ["a", "b"]}, ValueError, r"x0 must be an array of real numbers"),
    ("x0-objects", {"x0": [1.0, None]}, ValueError, r"x0 must be an array of real numbers"),
    ("x0-complex", {"x0": np.array([1 + 1j, 0])}, ValueError,
     r"x0 must be an array of real numbers"),
    # bounds
    ("bounds-lower-above-upper", {"bounds": [(0, 1)] * (D - 1) + [(1.0, 0.5)]}, ValueError,
     r"lower bound .*1\.0.* is above upper bound .*0\.5.* at index 4"),
    ("Bounds-lower-above-upper", {"bounds": Bounds(1.0, 0.0)}, ValueError,
     r"lower bound .* above upper bound"),
    ("bounds-too-many", {"bounds": [(0, 1)] * (D + 1)}, ValueError,
     rf"one \(min, max\) pair per coordinate: got {D + 1} pairs for x0 of length {D}"),
    ("bounds-too-few", {"bounds": [(0, 1)] * (D - 2)}, ValueError,
     rf"got {D - 2} pairs for x0 of length {D}"),
    ("Bounds-wrong-length", {"bounds": Bounds(np.zeros(D + 1), np.ones(D + 1))}, ValueError,
     rf"bounds.lb must be a scalar or have length {D}"),
    ("bounds-not-pairs", {"bounds": [(0, 1, 2)] * D}, ValueError,
     r"bounds\[0\] must be a \(min, max\) pair"),
    ("bounds-nan", {"bounds": [(np.nan, 1)] * D}, ValueError, r"bounds\[0\]\[0\] must not be NaN"),
    ("bounds-text", {"bounds": [("low", 1)] * D}, ValueError,
     r"bounds\[0\]\[0\] must be a number or None, got 'low'"),
    # options
    ("q-zero", {"q": 0}, ValueError, r"q must be a positive integer, got 0"),
    ("q-fraction", {"q": 2.5}, ValueError, r"q must be a positive integer, got 2\.5"),
    ("q-negative", {"q": -3}, ValueError, r"q must be a positive integer, got -3"),
    ("maxfev-below-one-iteration", {"q": 4, "maxfev": 3}, ValueError,
     r"maxfev must allow at least one iteration.*5 evaluations.*got 3"),
    ("maxfev-below-one-antithetic-iteration", {"q": 4, "maxfev": 7, "estimator": "antithetic"},
     ValueError, r"maxfev must allow at least one iteration.*8 evaluations.*got 7"),
    ("maxfev-zero", {"maxfev": 0}, ValueError, r"maxfev must be a positive integer, got 0"),
    ("maxiter-zero", {"maxiter": 0}, ValueError, r"maxiter must be a positive integer, got 0"),
    ("maxiter-nan", {"maxiter": float("nan")}, ValueError, r"maxiter must be a positive integer"),
    ("maxiter-text", {"maxiter": "100"}, TypeError,
     r"maxiter must be a positive integer, got '100'"),
    ("mu-zero", {"mu": 0.0}, ValueError, r"mu must be a positive finite number, got 0\.0"),
    ("mu-inf", {"mu": np.inf}, ValueError, r"mu must be a positive finite number, got inf"),
    ("lr-negative", {"lr": -0.1}, ValueError, r"lr must be a positive finite number, got -0\.1"),
    ("x_scale-zero", {"x_scale": 0}, ValueError, r"x_scale must be a positive finite number"),
    ("estimator-unknown", {"estimator": "central"}, ValueError,
     r"estimator must be one of 'forward', 'antithetic', got 'central'"),
    ("directions-unknown", {"directions": "uniform"}, ValueError,
     r"directions must be one of 'gaussian', 'sphere', got 'uniform'"),
    ("nan_policy-unknown", {"nan_policy": "ignore"}, ValueError,
     r"nan_policy must be one of 'omit', 'raise', 'stop', got 'ignore'"),
    ("seed-negative", {"seed": -1}, ValueError, r"seed must be None, an integer >= 0"),
    ("seed-text", {"seed": "abc"}, ValueError, r"seed must be None.*got 'abc'"),
    ("ftol-negative", {"ftol": -1.0}, ValueError, r"ftol must be a finite number >= 0, got -1\.0"),
    ("f_target-nan", {"f_target": float("nan")}, ValueError, r"f_target must be a real number"),
    ("patience-zero", {"patience": 0}, ValueError, r"patience must be a positive integer, got 0"),
    ("workers-zero", {"workers": 0}, ValueError,
     r"workers must be a positive integer or -1, got 0"),
    ("workers-text", {"workers": "two"}, ValueError,
     r"workers must be an int, a map-like callable"),
    ("maxtime-zero", {"maxtime": 0}, ValueError, r"maxtime must be a positive finite number"),
    ("disp-text", {"disp": "yes"}, ValueError, r"disp must be True or False, got 'yes'"),
    ("vectorized-2", {"vectorized": 2}, ValueError, r"vectorized must be True or False, got 2"),
]


@pytest.mark.parametrize("arguments, error, message",
                         [row[1:] for row in BAD_ARGUMENTS], ids=[row[0] for row in BAD_ARGUMENTS])
def test_bad_argument_raises_naming_it(method, arguments, error, message):
    with pytest.raises(error, match=message):
        call(method, **arguments)


def test_bounds_error_shows_plain_numbers():
    """The message reads 'lower bound 1.0 ...', not 'lower bound np.float64(1.0) ...'."""
    with pytest.raises(ValueError) as info:
        call("zo-sgd", bounds=[(0, 1)] * (D - 1) + [(1.0, 0.5)])
    assert "np.float64" not in str(info.value)
    assert "lower bound 1.0 is above upper bound 0.5 at index 4" in str(info.value)


ADAMM_BAD = [
    ("beta1-one", {"beta1": 1.0}, r"beta1 must be in \[0, 1\), got 1\.0"),
    ("beta2-negative", {"beta2": -0.1}, r"beta2 must be in \[0, 1\), got -0\.1"),
    ("eps-zero", {"eps": 0.0}, r"eps must be a positive finite number, got 0\.0"),
]


@pytest.mark.parametrize("method", ["zo-adamm", "l2l-zo"])
@pytest.mark.parametrize("options, message", [row[1:] for row in ADAMM_BAD],
                         ids=[row[0] for row in ADAMM_BAD])
def test_bad_adamm_options(method, options, message):
    with pytest.raises(ValueError, match=message):
        call(method, **options)


@pytest.mark.parametrize("name, suggestion", [
    ("zo-adam", "zo-adamm"),
    ("zo_sgd", "zo-sgd"),
    ("zo-signsg", "zo-signsgd"),
    ("l2lzo", "l2l-zo"),
    ("nelder-maed", "nelder-mead"),
])
def test_unknown_method_lists_the_known_ones_and_suggests_the_closest(name, suggestion):
    with pytest.raises(ValueError, match=rf"Unknown method '{name}'") as info:
        call(name)
    text = str(info.value)
    assert f"Did you mean '{suggestion}'?" in text
    for known in METHODS + ["nelder-mead", "bfgs", "powell"]:
        assert known in text


def test_unknown_method_without_close_match_still_lists_the_methods():
    with pytest.raises(ValueError, match="Known methods: .*zo-sgd") as info:
        call("xyzzy-something-else")
    assert "Did you mean" not in str(info.value)


def test_method_of_the_wrong_type():
    with pytest.raises(TypeError, match="method must be a str or a callable, got 3"):
        call(3)


def test_fun_not_callable(method):
    with pytest.raises(TypeError, match="fun must be callable"):
        zominimize.minimize("not a function", np.zeros(D), method=method)


def test_callback_not_callable(method):
    with pytest.raises(TypeError, match="callback must be callable"):
        zominimize.minimize(shifted_quadratic, np.zeros(D), method=method, callback=3,
                            options=SMALL)


# ---------------------------------------------------------------- what fun returns

BAD_RETURNS = [
    ("vector-of-3", lambda x: np.ones(3),
     r"fun must return a scalar, got an array of shape \(3,\)"),
    ("list-of-2", lambda x: [1.0, 2.0], r"fun must return a scalar, got an array of shape \(2,\)"),
    ("string", lambda x: "1.0", r"fun must return a real number, got str"),
    ("None", lambda x: None, r"fun must return a real number, got NoneType"),
    ("complex", lambda x: 1 + 2j, r"fun must return a real number, got complex"),
    ("complex-array", lambda x: np.array([1j]), r"fun must return a real number, got ndarray"),
    ("dict", lambda x: {"f": 1.0}, r"fun must return a real number, got dict"),
    ("empty", lambda x: np.array([]), r"fun must return a scalar, got an array of shape \(0,\)"),
]


@pytest.mark.parametrize("fun, message", [row[1:] for row in BAD_RETURNS],
                         ids=[row[0] for row in BAD_RETURNS])
def test_fun_returning_something_else_than_a_number(method, fun, message):
    with pytest.raises(zominimize.ObjectiveValueError, match=message) as info:
        zominimize.minimize(fun, np.zeros(D), method=method, options=SMALL)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [np.float32(2.5), np.array(2.5), np.array([2.5]), 2, [[3.0]],
                                   np.int64(4)])
def test_fun_returning_a_one_element_number_is_accepted(method, value):
    res = zominimize.minimize(lambda x: value, np.zeros(D), method=method,
                              options={**SMALL, "maxiter": 2})
    assert res.fun == float(np.asarray(value).reshape(()))


BAD_VECTORIZED = [
    ("too-few", lambda X: np.ones(3),
     r"vectorized fun must return 5 values \(one per row\), got shape \(3,\)"),
    ("2-columns", lambda X: np.ones((X.shape[0], 2)), r"got shape \(5, 2\)"),
    ("scalar", lambda X: 1.0, r"got shape \(\)"),
    ("strings", lambda X: ["a"] * X.shape[0], r"vectorized fun must return 5 real numbers"),
    ("3-d", lambda X: np.ones((X.shape[0], 1, 1)), r"got shape \(5, 1, 1\)"),
]


@pytest.mark.parametrize("fun, message", [row[1:] for row in BAD_VECTORIZED],
                         ids=[row[0] for row in BAD_VECTORIZED])
def test_vectorized_fun_returning_the_wrong_shape(method, fun, message):
    with pytest.raises(zominimize.ObjectiveValueError, match=message):
        zominimize.minimize(fun, np.zeros(D), method=method,
                            options={**SMALL, "q": 4, "vectorized": True})


def test_vectorized_fun_may_return_a_column(method):
    res = zominimize.minimize(lambda X: np.sum(X ** 2, axis=1, keepdims=True), np.ones(D),
                              method=method, options={**SMALL, "vectorized": True})
    assert res.fun < D


# ---------------------------------------------------------------- parallel misuse


def test_vectorized_with_workers_is_refused(method):
    with pytest.raises(ValueError, match=r"vectorized=True and workers=2 cannot be combined"):
        call(method, vectorized=True, workers=2)


def test_workers_with_an_unpicklable_fun_is_refused(method):
    with pytest.raises(ValueError, match=r"workers=2 .* picklable.*lambda"):
        zominimize.minimize(lambda x: float(x @ x), np.zeros(D), method=method,
                            options={**SMALL, "workers": 2})


# ---------------------------------------------------------------- the registry


@pytest.mark.parametrize("name, message", [
    ("zo-sgd", "already registered"),
    ("ZO-ADAMM", "already registered"),
    ("Nelder-Mead", "would shadow scipy's method"),
])
def test_registry_refuses_duplicate_and_scipy_names(name, message):
    from zominimize._registry import MethodSpec, register
    before = zominimize.method_names()
    with pytest.raises(ValueError, match=message):
        register(MethodSpec(name=name, summary="", doc="", make_rule=None))
    assert zominimize.method_names() == before
