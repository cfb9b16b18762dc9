"""The run loop shared by every ZO method: scipy's calling convention around ZOOptimizer."""

from __future__ import annotations

import inspect
import time
from typing import Callable

import numpy as np
from scipy.optimize import OptimizeResult

from ._warn import warn
from ._evaluation import Evaluator, describe
from ._call import resolve
from ._optimizer import ZOOptimizer
from ._result import MESSAGES, Status
from .errors import ObjectiveValueError


class FirstOfPair:
    """``fun`` for ``jac=True``: the objective returns (f, gradient); keep f."""

    def __init__(self, fun: Callable):
        self.fun = fun

    def __call__(self, x, *args):
        pair = self.fun(x, *args)
        try:
            return pair[0]
        except (TypeError, IndexError, KeyError):
            raise ObjectiveValueError(f"with jac=True, fun must return (f, gradient), got "
                                      f"{describe(pair)}") from None


def solve(method: str, fun: Callable, x0, args=(), jac=None, hess=None, hessp=None,
          bounds=None, constraints=(), callback=None, options: dict | None = None
          ) -> OptimizeResult:
    """Run the ZO method ``method`` with scipy's arguments; see ``zominimize.minimize``."""
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {fun!r}")
    if not isinstance(args, tuple):
        args = (args,)
    options = dict(options or {})
    tol = options.pop("tol", None)
    if tol is not None:
        options.setdefault("ftol", tol)
    call = resolve(method, x0, bounds, options, run_options=True)
    _warn_ignored(call.requested.name, jac, hess, hessp, constraints)
    if jac is True:
        fun = FirstOfPair(fun)
    result = _loop(ZOOptimizer._from_call(call), fun, args, callback, call.run)
    if call.run["disp"]:
        _print_summary(result)
    return result


def _warn_ignored(name, jac, hess, hessp, constraints) -> None:
    if jac is not None and jac is not False:
        warn(f"Method {name} does not use gradient information (jac): it is "
                      f"ignored.", RuntimeWarning)
    if hess is not None:
        warn(f"Method {name} does not use Hessian information (hess): it is "
                      f"ignored.", RuntimeWarning)
    if hessp is not None:
        warn(f"Method {name} does not use Hessian-vector product information "
                      f"(hessp): it is ignored.", RuntimeWarning)
    if constraints is not None and np.any(constraints):
        warn(f"Method {name} cannot handle constraints: they are ignored.",
                      RuntimeWarning)


def _loop(optimizer: ZOOptimizer, fun, args, callback, run: dict) -> OptimizeResult:
    notify = _wrap_callback(callback)
    history = {"nfev": [], "fun": [], "fun_best": []} if run["return_all"] else None
    allvecs: list[np.ndarray] = []
    started = time.perf_counter()
    status = None
    evaluating = False
    with Evaluator(fun, args, run["vectorized"], run["workers"]) as evaluate:
        try:
            while optimizer.status is None:
                if history is not None:
                    allvecs.append(optimizer.x)
                points = optimizer._ask_view()
                evaluating = True
                values = evaluate(points)
                evaluating = False
                optimizer.tell(points, values)
                if history is not None:
                    history["nfev"].append(optimizer.nfev)
                    history["fun"].append(optimizer.f_iterate)
                    history["fun_best"].append(optimizer.f_best)
                if notify is not None and notify(optimizer.result()):
                    status = Status.CALLBACK
                    break
                if run["maxtime"] is not None and time.perf_counter() - started >= run["maxtime"]:
                    status = Status.MAXTIME
                    break
        except KeyboardInterrupt:
            result = optimizer.result(Status.INTERRUPTED)
            if evaluating:
                result = _with_partial(result, points, evaluate)
            return _finish(result, history, allvecs)
        except BaseException as exc:  # SystemExit from a worker carries the result too
            result = optimizer.result(Status.ERROR)
            if evaluating:
                result = _with_partial(result, points, evaluate)
            _attach(exc, _finish(result, history, allvecs))
            raise
    return _finish(optimizer.result(status), history, allvecs)


def _with_partial(result: OptimizeResult, points, evaluator: Evaluator) -> OptimizeResult:
    """Fold the batch an exception cut short into ``result``: the values that came
    back (a better one becomes the best point) and the calls that really ran."""
    values, returned = evaluator.batch_values, evaluator.batch_returned
    result.nfev += evaluator.batch_calls
    finite = returned & np.isfinite(values)
    result.nfev_nonfinite += int(np.sum(returned & ~finite))
    if finite.any():
        i = int(np.argmin(np.where(finite, values, np.inf)))
        if not values[i] >= result.fun:  # also when no finite value was known before
            result.x, result.fun = np.array(points[i], dtype=float), float(values[i])
    return result


def _finish(result: OptimizeResult, history, allvecs) -> OptimizeResult:
    if history is not None:
        result.allvecs = allvecs[:len(history["nfev"])]
        result.history = {k: np.array(v) for k, v in history.items()}
    return result


def _attach(exc: BaseException, result: OptimizeResult) -> None:
    """Give ``exc`` the best point found so far, as ``exc.partial_result``."""
    try:
        exc.partial_result = result
        exc.add_note(f"zominimize: the best point so far (fun={result.fun:.6g}, "
                     f"nfev={result.nfev}) is attached as exc.partial_result")
    except (AttributeError, TypeError):
        pass  # an exception type that takes no attributes


def _wrap_callback(callback) -> Callable[[OptimizeResult], bool] | None:
    """Return notify(result) -> True when the callback asked to stop (StopIteration).

    Scipy's conventions, after each iteration:

    * ``callback(intermediate_result)`` (the only parameter, so named) receives the
      OptimizeResult so far: x, fun = the best point so far, nit, nfev, and x_last =
      the current iterate.
    * ``callback(xk, state)`` (two required positional parameters, trust-constr's
      style) receives a copy of the current iterate and that OptimizeResult.
    * Any other callback, ``callback(xk)``, receives a copy of the current iterate.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    try:
        params = list(inspect.signature(callback).parameters.values())
    except (TypeError, ValueError):
        params = []
    new_style = [p.name for p in params] == ["intermediate_result"]
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    with_state = len(required) >= 2

    def notify(result: OptimizeResult) -> bool:
        try:
            if new_style:
                callback(intermediate_result=result)
            elif with_state:
                callback(np.copy(result.x_last), result)
            else:
                callback(np.copy(result.x_last))
        except StopIteration:
            return True
        return False

    return notify


def _print_summary(result: OptimizeResult) -> None:
    print(result.message if result.status != Status.MAXITER else
          "Warning: " + MESSAGES[Status.MAXITER])
    print(f"         Current function value: {result.fun:.6f}")
    print(f"         Iterations: {result.nit}")
    print(f"         Function evaluations: {result.nfev}")
    if result.fallback:
        print(f"         Method run: {result.method} (fallback: {result.fallback})")


