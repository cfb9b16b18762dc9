"""The L2L paper's synthetic task: binary classification with a non-convex least squares loss.

f(x) = 1/n sum_i (y_i - sigmoid(a_i^T x))^2, with a_i ~ N(0, I_d) and labels
y_i = 1[a_i^T x* > 0] from a planted x* ~ N(0, I_d). f(0) = 0.25 and the infimum
is 0 (approached along x*). Instances are numbered by ``instance`` (the seed).
"""

from __future__ import annotations

import numpy as np

from . import Problem

#: Targets as fractions of f(x0) = 0.25.
RELATIVE_TARGETS = (0.5, 0.2, 0.1, 0.05)


class NonConvexLeastSquares:
    """The loss of one instance, for single points and (k, d) batches."""

    def __init__(self, d: int, n: int, instance: int):
        rng = np.random.default_rng([20200426, d, n, instance])
        self.a = rng.standard_normal((n, d))
        self.planted = rng.standard_normal(d)
        self.y = (self.a @ self.planted > 0).astype(float)

    def __call__(self, x: np.ndarray) -> float:
        return float(np.mean((self.y - _sigmoid(self.a @ x)) ** 2))

    def batch(self, points: np.ndarray) -> np.ndarray:
        margins = points @ self.a.T  # (k, n)
        return np.mean((self.y - _sigmoid(margins)) ** 2, axis=1)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def make(d: int, instance: int, n: int | None = None) -> Problem:
    """Instance ``instance`` in dimension d with n samples (default: 2d, at most 2000)."""
    n = n or min(2 * d, 2000)
    loss = NonConvexLeastSquares(d, n, instance)
    x0 = np.zeros(d)
    f0 = loss(x0)
    return Problem(family="nclsq", name=f"nclsq-d{d}-i{instance}", suite=f"nclsq d={d}",
                   x0=x0, fun=loss, batch_fun=loss.batch, scale=1.0,
                   targets=[f0 * r for r in RELATIVE_TARGETS],
                   meta={"n": n, "instance": instance, "f0": f0})
