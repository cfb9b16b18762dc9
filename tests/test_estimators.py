"""Analytic oracles for zominimize.estimators on f(x) = 0.5 x^T A x + b^T x.

For a quadratic, both the forward and the antithetic estimators are unbiased
for the gradient A x + b (the smoothed quadratic differs by a constant), with
Gaussian and with sphere directions (both have E[u u^T] = I). The antithetic
difference quotient is even exact direction by direction: it equals u u^T grad.
"""

import numpy as np
import pytest

from conftest import DIRECTIONS, ESTIMATORS, Recorder, per_iteration
from objectives import shifted_quadratic
from zominimize import estimators, minimize
from zominimize._bounds import standardize_bounds

D = 6


def quadratic_problem(seed=0, d=D):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    A = m @ m.T / d + np.eye(d)
    b = rng.normal(size=d)
    x = rng.normal(size=d)

    def f_rows(X):
        return 0.5 * np.einsum("ki,ij,kj->k", X, A, X) + X @ b

    return A, b, x, f_rows


def estimates(estimator, directions, n, q=3, mu=1e-3, seed=0, d=D):
    """n independent estimates of the gradient of the quadratic at x, shape (n, d)."""
    A, b, x, f_rows = quadratic_problem(d=d)
    rng = np.random.default_rng(seed)
    box = standardize_bounds(None, d)
    out = np.empty((n, d))
    for i in range(n):
        points = estimators.query_points(rng, x, q, mu, directions, estimator, box)
        g, used = estimators.estimate_gradient(x, points, f_rows(points), mu, estimator)
        assert used == q
        out[i] = g
    return out, A @ x + b


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("directions", DIRECTIONS)
def test_mean_estimate_matches_the_analytic_gradient(estimator, directions):
    g, grad = estimates(estimator, directions, n=3000)
    mean = g.mean(axis=0)
    stderr = g.std(axis=0, ddof=1) / np.sqrt(len(g))
    # 5 standard errors per coordinate: a false alarm has probability ~ 1e-6.
    assert np.all(np.abs(mean - grad) < 5 * stderr + 1e-9), (mean, grad, stderr)
    # and it is a useful estimate: well correlated with the gradient
    cos = mean @ grad / (np.linalg.norm(mean) * np.linalg.norm(grad))
    assert cos > 0.99


@pytest.mark.parametrize("directions", DIRECTIONS)
def test_antithetic_quotient_is_exact_on_a_quadratic(directions):
    """Each antithetic term is (u^T grad) u: no O(mu) bias at all, even for a large mu."""
    A, b, x, f_rows = quadratic_problem()
    grad = A @ x + b
    q, mu = 4, 0.5
    box = standardize_bounds(None, D)
    points = estimators.query_points(np.random.default_rng(1), x, q, mu, directions,
                                     "antithetic", box)
    u = (points[:q] - x) / mu
    np.testing.assert_allclose(points[q:], x - mu * u, rtol=0, atol=1e-12)
    g, _ = estimators.estimate_gradient(x, points, f_rows(points), mu, "antithetic")
    expected = (u @ grad) @ u / q
    np.testing.assert_allclose(g, expected, rtol=1e-9, atol=1e-9)


def test_forward_quotient_has_the_second_order_term_only():
    """Forward term: (u^T grad + mu/2 u^T A u) u, exactly, on a quadratic."""
    A, b, x, f_rows = quadratic_problem()
    grad = A @ x + b
    q, mu = 4, 0.5
    box = standardize_bounds(None, D)
    points = estimators.query_points(np.random.default_rng(2), x, q, mu, "gaussian",
                                     "forward", box)
    np.testing.assert_array_equal(points[0], x)
    u = (points[1:] - x) / mu
    g, _ = estimators.estimate_gradient(x, points, f_rows(points), mu, "forward")
    coef = u @ grad + mu / 2 * np.einsum("ki,ij,kj->k", u, A, u)
    np.testing.assert_allclose(g, coef @ u / q, rtol=1e-9, atol=1e-9)


def test_antithetic_average_is_closer_than_forward_for_large_mu():
    """With mu large, the forward bias term inflates the variance; antithetic has none."""
    g_fwd, grad = estimates("forward", "sphere", n=400, mu=1.0)
    g_anti, _ = estimates("antithetic", "sphere", n=400, mu=1.0)
    assert np.mean((g_anti - grad) ** 2) < np.mean((g_fwd - grad) ** 2)


@pytest.mark.parametrize("d", [1, 2, 7, 100, 1000])
def test_sphere_directions_have_norm_sqrt_d(d):
    out = estimators.draw_directions(np.random.default_rng(0), "sphere", np.empty((50, d)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.sqrt(d), rtol=1e-12)


def test_sphere_directions_in_query_points_have_length_mu_sqrt_d():
    d, q, mu = 30, 8, 1e-2
    x = np.linspace(-1, 1, d)
    points = estimators.query_points(np.random.default_rng(0), x, q, mu, "sphere",
                                     "forward", standardize_bounds(None, d))
    np.testing.assert_allclose(np.linalg.norm(points[1:] - x, axis=1), mu * np.sqrt(d),
                               rtol=1e-9)


@pytest.mark.parametrize("directions", DIRECTIONS)
def test_directions_have_identity_second_moment(directions):
    d = 5
    u = estimators.draw_directions(np.random.default_rng(0), directions, np.empty((20000, d)))
    np.testing.assert_allclose(u.T @ u / len(u), np.eye(d), atol=0.05)
    np.testing.assert_allclose(u.mean(axis=0), 0, atol=0.05)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("directions", DIRECTIONS)
def test_query_points_respect_the_box(estimator, directions):
    d, q = 8, 16
    lo = np.array([-1.0, 0.0, -np.inf, 2.0, -1.0, 0.0, 0.0, -5.0])
    hi = np.array([1.0, 0.0, 0.5, np.inf, 1.0, 1e-9, 1.0, 5.0])
    box = standardize_bounds(list(zip(lo, hi)), d)
    x = np.array([1.0, 0.0, 0.5, 2.0, -1.0, 0.0, 0.5, 0.0])  # mostly on the walls
    points = estimators.query_points(np.random.default_rng(0), x, q, mu=0.7,
                                     directions=directions, estimator=estimator, box=box)
    assert points.shape == (per_iteration(estimator, q), d)
    assert np.all(points >= lo) and np.all(points <= hi)
    assert np.all(points[:, 1] == 0.0)  # a fixed coordinate never moves
    if estimator == "forward":
        np.testing.assert_array_equal(points[0], x)


@pytest.mark.parametrize("q", [1, 3, 20])
def test_evaluations_per_iteration(q):
    assert estimators.evaluations_per_iteration("forward", q) == q + 1
    assert estimators.evaluations_per_iteration("antithetic", q) == 2 * q


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("q", [1, 3, 20])
def test_one_iteration_costs_the_documented_evaluations(method, estimator, q):
    fun = Recorder()
    res = minimize(fun, np.zeros(4), method=method,
                   options={"seed": 0, "q": q, "maxiter": 1, "estimator": estimator})
    assert res.nit == 1
    assert fun.calls == res.nfev == per_iteration(estimator, q)
    fun = Recorder()
    res = minimize(fun, np.zeros(4), method=method,
                   options={"seed": 0, "q": q, "maxiter": 6, "estimator": estimator,
                            "ftol": 0})
    assert fun.calls == res.nfev == 6 * per_iteration(estimator, q)


@pytest.mark.parametrize("estimator, q, budget, expected", [
    ("forward", 4, 100, 4), ("forward", 4, 5, 4), ("forward", 4, 3, 2),
    ("forward", 4, 1, 0), ("forward", 4, 0, 0),
    ("antithetic", 4, 100, 4), ("antithetic", 4, 8, 4), ("antithetic", 4, 7, 3),
    ("antithetic", 4, 1, 0),
])
def test_directions_for_budget(estimator, q, budget, expected):
    assert estimators.directions_for_budget(estimator, q, budget) == expected


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_non_finite_values_are_left_out_of_the_estimate(estimator):
    A, b, x, f_rows = quadratic_problem()
    q, mu = 4, 1e-4
    box = standardize_bounds(None, D)
    points = estimators.query_points(np.random.default_rng(3), x, q, mu, "gaussian",
                                     estimator, box)
    values = f_rows(points)
    bad = values.copy()
    bad[1] = np.nan  # forward: direction 0; antithetic: the plus side of direction 1
    g_bad, used = estimators.estimate_gradient(x, points, bad, mu, estimator)
    assert used == q - 1
    assert np.all(np.isfinite(g_bad))
    # equals the estimate over the remaining directions only
    keep = [i for i in range(q) if i != (0 if estimator == "forward" else 1)]
    if estimator == "forward":
        sub_points = points[[0] + [1 + i for i in keep]]
    else:
        sub_points = points[keep + [q + i for i in keep]]
    g_sub, _ = estimators.estimate_gradient(x, sub_points, f_rows(sub_points), mu, estimator)
    np.testing.assert_allclose(g_bad, g_sub, rtol=1e-12, atol=1e-12)


def test_all_values_non_finite_gives_a_zero_estimate():
    x = np.ones(3)
    points = np.ones((5, 3))
    g, used = estimators.estimate_gradient(x, points, np.full(5, np.nan), 1e-3, "forward")
    assert used == 0 and np.array_equal(g, np.zeros(3))


def test_value_at_iterate():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    assert estimators.value_at_iterate(values, "forward") == 1.0
    assert estimators.value_at_iterate(values, "antithetic") == pytest.approx((1 + 5 + 3 + 7) / 4)
    assert np.isnan(estimators.value_at_iterate(np.array([np.nan, 1, 2, np.inf]),
                                                "antithetic"))


def test_run_matches_hand_rolled_first_step_of_zo_sgd():
    """The first iterate of zo-sgd with a given lr is x0 - lr * (forward estimate)."""
    d, q, mu, lr = 4, 3, 1e-3, 0.05
    x0 = np.full(d, 0.5)
    res = minimize(shifted_quadratic, x0, method="zo-sgd",
                   options={"seed": 7, "q": q, "mu": mu, "lr": lr, "maxiter": 1})
    points = estimators.query_points(np.random.default_rng(7), x0, q, mu, "gaussian",
                                     "forward", standardize_bounds(None, d))
    values = np.array([shifted_quadratic(p) for p in points])
    g, _ = estimators.estimate_gradient(x0, points, values, mu, "forward")
    np.testing.assert_allclose(res.x_last, x0 - lr * g, rtol=1e-12, atol=1e-15)
