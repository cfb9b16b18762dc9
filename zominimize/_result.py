"""The status table shared by every ZO method, and the result builder."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy.optimize import OptimizeResult


class Status(IntEnum):
    """Why a run ended. ``success`` is True only for FTOL and F_TARGET with a finite value."""

    RUNNING = -1
    FTOL = 0
    MAXITER = 1
    MAXFEV = 2
    F_TARGET = 3
    MAXTIME = 4
    NONFINITE = 5
    INTERRUPTED = 6
    ERROR = 7
    CALLBACK = 99


MESSAGES = {
    Status.RUNNING: "The run has not finished.",
    Status.FTOL: "Optimization terminated successfully: the best value improved by less "
                 "than ftol over the last `patience` iterations.",
    Status.MAXITER: "Maximum number of iterations has been exceeded.",
    Status.MAXFEV: "Maximum number of function evaluations has been exceeded.",
    Status.F_TARGET: "Optimization terminated successfully: f_target reached.",
    Status.MAXTIME: "Maximum time has been exceeded.",
    Status.NONFINITE: "The objective returned a non-finite value and the run stopped "
                      "(see nan_policy).",
    Status.INTERRUPTED: "Interrupted by the user (KeyboardInterrupt).",
    Status.ERROR: "The objective raised an exception.",
    Status.CALLBACK: "`callback` raised `StopIteration`.",
}

SUCCESS = frozenset({Status.FTOL, Status.F_TARGET})


def build_result(*, x, fun, x_last, nfev, nit, status: Status, method: str,
                 fallback: str | None, fallback_at: int | None,
                 nfev_nonfinite: int, nfev_outliers: int) -> OptimizeResult:
    """Assemble the OptimizeResult every ZO method returns.

    Fields: ``x`` (best point evaluated), ``fun``, ``nfev``, ``nit``, ``status``,
    ``success``, ``message``, ``x_last`` (the current iterate), ``method`` (the
    method that ran), ``fallback`` (why another method ran instead, or None),
    ``fallback_at`` (the iteration from which it ran: 0 when the requested method
    could not start, later when a guard switched; None without fallback) and
    ``nfev_nonfinite`` (evaluations that returned NaN or infinity) and
    ``nfev_outliers`` (finite values left out of the estimate as outliers).
    """
    fun = float(fun)
    message = MESSAGES[status]
    if not np.isfinite(fun):
        message += " No finite value was found."
    return OptimizeResult(
        x=np.array(x, dtype=float), fun=fun, nfev=int(nfev), nit=int(nit),
        status=int(status), success=bool(status in SUCCESS and np.isfinite(fun)),
        message=message, x_last=np.array(x_last, dtype=float), method=method,
        fallback=fallback, fallback_at=fallback_at, nfev_nonfinite=int(nfev_nonfinite),
        nfev_outliers=int(nfev_outliers),
    )
