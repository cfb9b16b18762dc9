"""``minimize`` and ``show_options``: scipy's entry points, extended with ZO methods."""

from __future__ import annotations

import scipy.optimize
from scipy.optimize import OptimizeResult

from ._driver import solve
from ._registry import SCIPY_METHODS, get_method, method_names
from .methods import method_doc  # importing methods registers the ZO methods

DEFAULT_METHOD = "l2l-zo"


def minimize(fun, x0, args=(), method=DEFAULT_METHOD, jac=None, hess=None, hessp=None,
             bounds=None, constraints=(), tol=None, callback=None, options=None
             ) -> OptimizeResult:
    """Minimize a scalar function of one or more variables, without its gradient.

    A drop-in for :func:`scipy.optimize.minimize`: scipy's own method names and
    callables go straight to scipy; the zeroth-order methods ("l2l-zo", the default,
    "zo-adamm", "zo-sgd", "zo-signsgd") run here.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``. It receives a copy of x (with
        ``options={"vectorized": True}``, a (k, d) array and returns k values).
    x0 : array_like of shape (d,)
        Starting point; never modified.
    args : tuple, optional
        Extra arguments of fun.
    method : str or callable, optional
        A ZO method, a scipy method name or a callable. None means "l2l-zo".
    jac, hess, hessp : optional
        Accepted for compatibility; ZO methods ignore them with a RuntimeWarning
        (``jac=True``: fun returns (f, grad) and the gradient is dropped).
    bounds : None, scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints, honoured by every query and iterate.
    constraints : optional
        Ignored by ZO methods, with a RuntimeWarning.
    tol : float, optional
        Sets ``ftol`` for ZO methods.
    callback : callable, optional
        Called after each iteration, as in scipy. ``callback(intermediate_result)``
        (that parameter name only) receives the OptimizeResult so far (``x``, ``fun``:
        the best point so far; ``nit``, ``nfev``; ``x_last``: the current iterate).
        ``callback(xk)`` receives a copy of the current iterate, and
        ``callback(xk, state)`` (two required positional parameters, as for
        trust-constr) that copy and the OptimizeResult so far. Raising StopIteration
        ends the run with status 99.
    options : dict, optional
        See ``show_options(method)``.

    Returns
    -------
    OptimizeResult
        ``x`` (best point evaluated), ``fun``, ``nfev``, ``nit``, ``status``,
        ``success``, ``message``, ``x_last``, ``method`` (the method that ran),
        ``fallback``, ``nfev_nonfinite``, and with ``return_all`` also
        ``allvecs`` and ``history``.

    Examples
    --------
    >>> import numpy as np
    >>> from zominimize import minimize
    >>> res = minimize(lambda x: float(np.sum((x - 1) ** 2)), np.zeros(100),
    ...                method="zo-adamm", options={"seed": 0, "maxiter": 2000})
    >>> bool(res.fun < 1.0)
    True
    """
    if method is None:
        method = DEFAULT_METHOD
    if callable(method) or (isinstance(method, str) and method.lower() in SCIPY_METHODS):
        return scipy.optimize.minimize(fun, x0, args=args, method=method, jac=jac, hess=hess,
                                       hessp=hessp, bounds=bounds, constraints=constraints,
                                       tol=tol, callback=callback, options=options)
    options = dict(options or {})
    if tol is not None:
        options.setdefault("tol", tol)
    return solve(method, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                 bounds=bounds, constraints=constraints, callback=callback, options=options)


def show_options(method: str | None = None, disp: bool = True) -> str | None:
    """Document a ZO method's options (all ZO methods when ``method`` is None).

    Scipy method names are forwarded to :func:`scipy.optimize.show_options`.
    Prints the text when ``disp`` is True, else returns it.
    """
    if isinstance(method, str) and method.lower() in SCIPY_METHODS:
        return scipy.optimize.show_options("minimize", method, disp=disp)
    names = method_names() if method is None else [get_method(method).name]
    text = "\n\n".join(method_doc(name) for name in names)
    if disp:
        print(text)
        return None
    return text
