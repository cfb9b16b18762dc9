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


class UnpicklableError(RuntimeError):
    """An exception that cannot be pickled (it holds a lock)."""

    def __init__(self, message):
        super().__init__(message)
        import threading
        self.lock = threading.Lock()


class HostileQuadratic:
    """shifted_quadratic with one hostile evaluation at call number ``at`` (1-based).

    ``kind`` is a value to return ("nan", "inf", "-inf", "huge", "max") or an
    exception to raise: "raise" (ValueError), "interrupt" (KeyboardInterrupt).
    Calls are counted in the file ``log`` under a lock, so the count is exact
    across threads and processes; each call also logs whether its point was
    finite and inside the bounds ``lower``, ``upper``.
    """

    VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300,
              "max": np.finfo(float).max}
    ERRORS = {"raise": ValueError, "interrupt": KeyboardInterrupt}

    def __init__(self, log: str, at: int, kind: str, lower=None, upper=None):
        self.log, self.at, self.kind = log, at, kind
        self.lower, self.upper = lower, upper

    def _count(self, x) -> int:
        """Log one call at ``x``; return its number."""
        import fcntl
        x = np.asarray(x, dtype=float)
        inside = self.lower is None or bool(np.all((x >= self.lower) & (x <= self.upper)))
        with open(self.log, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write("ok\n" if np.isfinite(x).all() and inside else "bad point\n")
            handle.flush()
            handle.seek(0)
            return len(handle.read().splitlines())

    def _value(self, call: int, x) -> float:
        if call != self.at:
            return shifted_quadratic(x)
        if self.kind in self.ERRORS:
            raise self.ERRORS[self.kind](f"hostile call {call}")
        return float(self.VALUES[self.kind])

    def __call__(self, x):
        return self._value(self._count(x), x)

    def rows(self, points):
        """The vectorized form: every row of the batch counts as a call (it was passed to
        fun), then the rows are evaluated in order."""
        points = np.asarray(points)
        calls = [self._count(x) for x in points]
        return np.array([self._value(call, x) for call, x in zip(calls, points)])


class FailingQuadratic(HostileQuadratic):
    """HostileQuadratic with more exceptions: SystemExit ("exit") and an exception that
    cannot be pickled ("unpicklable")."""

    ERRORS = {**HostileQuadratic.ERRORS, "exit": SystemExit, "unpicklable": UnpicklableError}
