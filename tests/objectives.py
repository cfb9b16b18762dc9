"""Module-level objectives: picklable, so process pools and dask workers can import them.

Kept free of pytest imports so that worker processes load it cheaply.
"""

from functools import lru_cache

import numpy as np

SHIFT_SEED = 1234


@lru_cache(maxsize=None)
def shift(d: int) -> np.ndarray:
    """The minimiser of :func:`shifted_quadratic` in dimension d (fixed, seeded, read-only)."""
    c = np.random.default_rng(SHIFT_SEED).normal(size=d)
    c.flags.writeable = False
    return c


def shifted_quadratic(x):
    """sum((x - c)^2) with c = shift(len(x)); minimum 0 at c."""
    x = np.asarray(x, dtype=float)
    return float(np.sum((x - shift(x.size)) ** 2))


def shifted_quadratic_rows(X):
    """Vectorized :func:`shifted_quadratic`: one value per row of a (k, d) array.

    Row by row, so the values are bit-identical to the serial ones.
    """
    return np.array([shifted_quadratic(x) for x in np.asarray(X, dtype=float)])


def weighted_sphere(x, weights, offset=0.0):
    """sum(weights * x^2) + offset, for testing that ``args`` are passed through."""
    return float(np.sum(weights * np.asarray(x) ** 2) + offset)
