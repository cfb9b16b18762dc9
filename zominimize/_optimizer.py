"""ZOOptimizer: the ask/tell object behind every ZO method.

One iteration: ``ask()`` draws the query directions and returns the points to
evaluate (the iterate first, for forward differences); ``tell(points, values)``
estimates the gradient, applies the method's update rule, projects onto the
bounds and checks the stopping tests. ``minimize`` is a loop over these two calls.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

import numpy as np

from ._warn import warn
from . import estimators, samplers
from ._bounds import Box, clip_x0, standardize_bounds
from ._options import SOLVER_OPTIONS, parse_options
from ._registry import MethodSpec, get_method, method_options
from ._result import Status, build_result
from ._state import StateReader, restore_generator
from .errors import FallbackWarning, NonFiniteValueError, ObjectiveValueError, OptimizerStateError

STATE_FORMAT_VERSION = 2


def as_start_point(x0: Any) -> np.ndarray:
    """Check x0 and return it as a new 1-D float64 array (0-d input becomes length 1)."""
    arr = np.asarray(x0)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"x0 must be an array of real numbers, got dtype {arr.dtype}")
    arr = np.atleast_1d(arr).astype(float)  # always a copy of the user's data
    if arr.ndim != 1:
        raise ValueError(f"x0 must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("x0 must not be empty, got shape (0,)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"x0 must be finite, got {arr[bad[0]]} at index {bad[0]}")
    return arr


def resolve_method(name: str, options: dict) -> tuple[MethodSpec, MethodSpec, str | None]:
    """Return (requested spec, spec that runs, reason for the fallback or None).

    Warns with FallbackWarning when the requested method cannot run.
    """
    requested = get_method(name)
    if requested.unavailable is None:
        return requested, requested, None
    known = {**SOLVER_OPTIONS, **method_options(requested)}
    checked = parse_options(known, {k: v for k, v in options.items() if k in known})
    reason = requested.unavailable(checked)
    if reason is None:
        return requested, requested, None
    running = get_method(requested.fallback)
    warn(f"method {requested.name!r} cannot run ({reason}); running "
                  f"{running.name!r} instead", FallbackWarning)
    return requested, running, reason


def default_x_scale(x0: np.ndarray, box: Box) -> float:
    """A quarter of the RMS box width when every bound is finite, else max(RMS(x0), 1)."""
    width = box.upper - box.lower
    if np.isfinite(width).all():
        rms_width = _rms(width)
        if rms_width > 0:
            return rms_width / 4
    return max(_rms(x0), 1.0)


def _rms(v: np.ndarray) -> float:
    """The root mean square of ``v``, computed without overflow for huge entries."""
    peak = float(np.max(np.abs(v)))
    if peak == 0:
        return 0.0
    return peak * float(np.sqrt(np.mean((v / peak) ** 2)))


#: Default smoothing radius in units of x_scale.
MU_RELATIVE = 1e-4


def default_step(base_step: float, x_scale, q: int, d: int):
    """A method's default per-coordinate step: base_step * x_scale * sqrt(q / (q + d)).

    ``x_scale`` may be a float or a tensor (meta-training computes it per task).
    """
    return base_step * x_scale * math.sqrt(q / (q + d))


def resolve_settings(spec: MethodSpec, settings: dict, x0: np.ndarray, box: Box) -> dict:
    """Fill in the automatic defaults (x_scale, mu, step, maxfev) and check maxfev.

    ``step`` is the method's default per-coordinate step,
    base_step * x_scale * sqrt(q / (q + d)).
    """
    settings = dict(settings)
    d, q = x0.size, settings["q"]
    if settings["x_scale"] is None:
        settings["x_scale"] = default_x_scale(x0, box)
    if settings["mu"] is None:
        settings["mu"] = MU_RELATIVE * settings["x_scale"]
    settings["d"] = d
    settings["step"] = float(default_step(spec.base_step, settings["x_scale"], q, d))
    per_iteration = estimators.evaluations_per_iteration(settings["estimator"], q)
    if settings["maxfev"] is None:
        settings["maxfev"] = settings["maxiter"] * per_iteration
    elif settings["maxfev"] < per_iteration:
        raise ValueError(f"maxfev must allow at least one iteration "
                         f"({per_iteration} evaluations with q={q} and the "
                         f"{settings['estimator']} estimator), got {settings['maxfev']}")
    return settings


def _make_rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return copy.deepcopy(seed)  # the user's generator is never advanced
    return np.random.default_rng(seed)


class ZOOptimizer:
    """Ask/tell zeroth-order optimizer.

    Parameters
    ----------
    method : str
        A registered ZO method ("zo-sgd", "zo-signsgd", "zo-adamm", "l2l-zo").
    x0 : array_like of shape (d,)
        Starting point (copied; clipped into the bounds with a warning).
    bounds : None, scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints; every query and iterate stays inside.
    **options
        The solver options of ``show_options(method)``. Run-level options of
        ``minimize`` (workers, vectorized, maxtime, disp, return_all) do not apply.

    Examples
    --------
    >>> import numpy as np
    >>> opt = ZOOptimizer("zo-adamm", np.ones(5), seed=0, maxiter=50)
    >>> while opt.status is None:
    ...     points = opt.ask()
    ...     opt.tell(points, [float(p @ p) for p in points])
    >>> res = opt.result()
    >>> bool(res.fun < 5.0)
    True
    """

    def __init__(self, method: str = "zo-adamm", x0=None, bounds=None, **options):
        if x0 is None:
            raise ValueError("x0 is required")
        requested, spec, reason = resolve_method(method, options)
        allowed = {**SOLVER_OPTIONS, **method_options(requested)}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise TypeError(f"unknown option(s) for method {requested.name!r}: "
                            f"{', '.join(unknown)}")
        x = as_start_point(x0)
        self._box = standardize_bounds(bounds, x.size)
        x = clip_x0(x, self._box)
        settings = resolve_settings(spec, parse_options(allowed, options), x, self._box)
        self._seed = settings.pop("seed")
        self._spec = spec
        self._settings = settings
        self._fallback = reason
        self._fallback_at = None if reason is None else 0
        self._rule, self._sampler = self._components(fallen_back=False)
        self._x0 = x
        self._reset(x)

    # ------------------------------------------------------------ state

    def _reset(self, x: np.ndarray) -> None:
        self._x = x.copy()
        self._rule_state = self._rule.init(x.size)
        self._sampler_state = self._sampler.init(x.size)
        self._f_start = np.nan
        self._since_improvement = 0
        self._rng = _make_rng(self._seed)
        self._nit = 0
        self._nfev = 0
        self._nfev_nonfinite = 0
        self._nfev_outliers = 0
        self._x_best: np.ndarray | None = None
        self._f_best = np.inf
        self._best_is_outlier = False
        self._f_iterate = np.nan
        self._best_trace: deque = deque(maxlen=self._settings["patience"] + 1)
        self._step_scale = 1.0
        self._status: Status | None = None
        self._pending: np.ndarray | None = None
        self._workspace: np.ndarray | None = None  # the points buffer, reused
        self._rng_state_at_ask: dict | None = None

    @property
    def method(self) -> str:
        """The method that runs (the fallback's name when the requested one could not)."""
        return self._spec.name

    @property
    def fallback(self) -> str | None:
        """Why the requested method was replaced by its fallback, or None."""
        return self._fallback

    @property
    def fallback_at(self) -> int | None:
        """Iteration from which the fallback ran (0: from the start), or None."""
        return self._fallback_at

    @property
    def status(self) -> Status | None:
        """None while the run goes on, else why it stopped."""
        return self._status

    @property
    def nit(self) -> int:
        return self._nit

    @property
    def nfev(self) -> int:
        return self._nfev

    @property
    def x(self) -> np.ndarray:
        """The current iterate (a copy)."""
        return self._x.copy()

    @property
    def f_iterate(self) -> float:
        """f at the last evaluated iterate (antithetic: the mean of the pairs)."""
        return self._f_iterate

    @property
    def f_best(self) -> float:
        """The lowest finite value evaluated so far (inf before any)."""
        return self._f_best

    @property
    def settings(self) -> dict:
        """The resolved settings (defaults filled in), as a new dict."""
        return dict(self._settings)

    # ------------------------------------------------------------ ask / tell

    def ask(self) -> np.ndarray:
        """Return the points of the next iteration, shape (k, d), as a new array.

        Asking again before ``tell`` returns the same points.
        """
        return self._ask_view().copy()

    def _ask_view(self) -> np.ndarray:
        """The pending points themselves (no copy): for drivers that copy anyway.

        The array is a workspace that the next iteration overwrites.
        """
        if self._status is not None:
            raise OptimizerStateError(f"the run has stopped (status {int(self._status)}: "
                                      f"{self._status.name}); ask() is not allowed")
        if self._pending is None:
            s = self._settings
            self._rng_state_at_ask = copy.deepcopy(self._rng.bit_generator.state)
            q = estimators.directions_for_budget(s["estimator"], s["q"],
                                                 s["maxfev"] - self._nfev)
            scales = self._sampler.scales(self._sampler_state, self._rng)
            if scales is not None and not (np.isfinite(scales).all() and (scales > 0).all()):
                if self._can_hand_over():
                    self._hand_over("non-finite or non-positive query scales")
                    # a resumed run draws from here, with the standard sampler
                    self._rng_state_at_ask = copy.deepcopy(self._rng.bit_generator.state)
                else:
                    self._sampler = samplers.standard()
                    self._sampler_state = self._sampler.init(self._x.size)
                scales = None
            self._pending = self._workspace = estimators.query_points(
                self._rng, self._x, q, s["mu"], s["directions"], s["estimator"], self._box,
                out=self._workspace, scales=scales)
        return self._pending

    def tell(self, points, values) -> None:
        """Report the values of the points returned by ``ask()`` and take one step.

        Raises
        ------
        OptimizerStateError
            If no points are pending or ``points`` differ from them.
        ObjectiveValueError
            If ``values`` is not one real number per point.
        NonFiniteValueError
            If a value is NaN or infinite and ``nan_policy='raise'``.
        """
        pending = self._pending
        if pending is None:
            raise OptimizerStateError("tell() called without a pending ask()")
        if points is not pending:
            points = np.asarray(points, dtype=float)
            if points.shape != pending.shape or not np.array_equal(points, pending):
                raise OptimizerStateError("tell() got points that differ from those of "
                                          "the last ask()")
        values = self._check_values(values, pending.shape[0])
        self._pending = None
        self._rng_state_at_ask = None
        self._nfev += values.size
        finite = np.isfinite(values)
        self._nfev_nonfinite += int(values.size - finite.sum())
        usable = finite & ~self._outliers(values)
        self._update_best(pending, values, finite, usable)
        self._nit += 1
        if not finite.all() and self._settings["nan_policy"] != "omit":
            self._status = Status.NONFINITE
            if self._settings["nan_policy"] == "raise":
                i = int(np.flatnonzero(~finite)[0])
                raise NonFiniteValueError(f"fun returned {values[i]} at point {i} of "
                                          f"iteration {self._nit - 1} (nan_policy='raise')")
            return
        self._best_trace.append(self._f_best)
        usable_values = values if usable.all() else np.where(usable, values, np.nan)
        self._status = self._step(pending, usable_values) or self._stop_status()

    def _check_values(self, values, k: int) -> np.ndarray:
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError, OverflowError):
            raise ObjectiveValueError(f"values must be {k} real numbers, got "
                                      f"{values!r:.200}") from None
        if arr.size != k or arr.ndim > 2:
            raise ObjectiveValueError(f"values must be {k} real numbers (one per point), "
                                      f"got shape {arr.shape}")
        return arr.reshape(k)

    def _outliers(self, values: np.ndarray) -> np.ndarray:
        """Mask of the values too far from the others to enter the estimate (see the
        ``outlier_factor`` option)."""
        far = estimators.outliers(values, self._settings["outlier_factor"])
        self._nfev_outliers += int(far.sum())
        return far

    def _update_best(self, points, values, finite, usable) -> None:
        self._since_improvement += 1
        if not finite.any():
            return
        i = int(np.argmin(np.where(finite, values, np.inf)))
        if values[i] < self._f_best:
            self._f_best = float(values[i])
            self._x_best = points[i].copy()
            self._best_is_outlier = not usable[i]
            self._since_improvement = 0

    def _step(self, points, values) -> Status | None:
        """Estimate, update and project; return NONFINITE if no usable point is left."""
        s = self._settings
        self._f_iterate = estimators.value_at_iterate(values, s["estimator"])
        if np.isnan(self._f_start):
            self._f_start = self._f_iterate
        if not np.isfinite(self._f_iterate):
            # The iterate itself is unusable: go back to the best point, half the step.
            if self._x_best is None:
                return Status.NONFINITE
            self._back_to_best_with_half_step()
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            g, _ = estimators.estimate_gradient(self._x, points, values, s["mu"],
                                                s["estimator"])
        if not np.isfinite(g).all():
            return None  # the differences overflow: no step from this iteration
        with np.errstate(over="ignore", invalid="ignore"):
            step, rule_state = self._rule.update(g, self._f_iterate, self._rule_state)
        if not np.isfinite(step).all():
            self._reject_step()
            return None
        self._rule_state = rule_state
        self._sampler_state = self._sampler.observe(self._sampler_state, g, step)
        with np.errstate(over="ignore"):
            if self._step_scale != 1.0:
                step *= self._step_scale
            step += self._x  # the step is ours: build the new iterate in place
        self._box.project(step)
        if not np.isfinite(step).all():  # x + step overflowed
            self._reject_step()
            return None
        self._x = step
        if self._guard_on():
            self._watch()
        return None

    def _reject_step(self) -> None:
        """A step that is not finite: the learned path hands over to the fallback; a
        classic rule, whose state overflowed, starts afresh from the best point."""
        if self._can_hand_over():
            self._hand_over("non-finite step")
        else:
            self._rule_state = self._rule.init(self._x.size)
            self._back_to_best_with_half_step()

    def _guard_on(self) -> bool:
        return self._spec.guarded and self._settings["guard"]

    def _can_hand_over(self) -> bool:
        """Whether a learned part that produced non-finite numbers can be replaced by the
        fallback (whatever the ``guard`` option: that learned path cannot serve)."""
        return self._spec.fallback is not None and self._fallback_at is None

    def _hand_over(self, reason: str) -> None:
        """Switch to the fallback's rule and the standard sampler, from the best point;
        the ftol test restarts its window so the fallback gets a full one."""
        self._fallback = f"guard: {reason} at iteration {self._nit}"
        self._fallback_at = self._nit
        self._rule, self._sampler = self._components(fallen_back=True)
        self._rule_state = self._rule.init(self._x.size)
        self._sampler_state = self._sampler.init(self._x.size)
        if self._x_best is not None:
            self._x = self._x_best.copy()
        self._step_scale = 1.0
        self._best_trace.clear()

    def _watch(self) -> None:
        """The guard of a learned method: hand over to the fallback from the best point
        when the run diverges or stalls; once a guard has handed over, every further stall
        (the count of iterations without improvement runs on across the handover) sends the
        run back to its best point with half the step, as its steps are then too large to
        improve on it."""
        if self._fallback_at is None:
            reason = self._guard_reason()
            if reason is not None:
                self._hand_over(reason)
        elif self._since_improvement >= self._settings["guard_patience"]:
            self._back_to_best_with_half_step()
            self._since_improvement = 0

    def _back_to_best_with_half_step(self) -> None:
        self._x = self._x_best.copy()
        self._step_scale /= 2

    def _guard_reason(self) -> str | None:
        """Why a guarded run should hand over to its fallback now, or None.

        Diverged: the value at the iterate exceeds the starting value f0 by more
        than max(2 (f0 - f_best), |f0| / 2). Stalled: the best value has not
        improved for ``guard_patience`` iterations, or the ftol test is met (which
        ends a guarded run only once the fallback has run a full window).
        """
        f0, f, best = self._f_start, self._f_iterate, self._f_best
        if np.isfinite(f0) and f - f0 > max(2 * (f0 - best), 0.5 * abs(f0)):
            return f"diverged (f = {f:.6g} at the iterate, {f0:.6g} at the start)"
        if self._since_improvement >= self._settings["guard_patience"]:
            return f"stalled (no improvement in {self._since_improvement} iterations)"
        if self._ftol_met():
            return f"stalled (the ftol test is met over {self._settings['patience']} iterations)"
        return None

    def _components(self, fallen_back: bool):
        """(rule, sampler) of the method itself, or of its fallback after a hand-over:
        the fallback's rule with its own default step, and the standard sampler."""
        if not fallen_back or self._spec.fallback is None:
            spec, settings = self._spec, self._settings
        else:
            spec = get_method(self._spec.fallback)
            s = self._settings
            settings = dict(s, step=float(default_step(spec.base_step, s["x_scale"], s["q"],
                                                        s["d"])))
        sampler = (spec.make_sampler(settings) if spec.make_sampler and not fallen_back
                   else samplers.standard())
        return spec.make_rule(settings), sampler

    def _ftol_met(self) -> bool:
        """The best value improved by less than ftol (relative) over ``patience`` iterations,
        and is not an outlier (a run resting on one is never a success)."""
        s, trace = self._settings, self._best_trace
        if s["ftol"] == 0 or len(trace) < trace.maxlen or not np.isfinite(trace[0]) \
                or self._best_is_outlier:
            return False
        old, new = trace[0], trace[-1]
        return old - new <= s["ftol"] * max(abs(old), abs(new), 1.0)

    def _stop_status(self) -> Status | None:
        s = self._settings
        if s["f_target"] is not None and self._f_best <= s["f_target"]:
            return Status.F_TARGET
        guard_waits = self._guard_on() and self._fallback_at is None
        if not guard_waits and self._ftol_met():
            return Status.FTOL
        if self._nit >= s["maxiter"]:
            return Status.MAXITER
        left = s["maxfev"] - self._nfev
        if estimators.directions_for_budget(s["estimator"], s["q"], left) == 0:
            return Status.MAXFEV
        return None

    # ------------------------------------------------------------ results and checkpoints

    def result(self, status: Status | None = None):
        """The run's OptimizeResult so far; ``status`` overrides the optimizer's own."""
        if status is None:
            status = self._status if self._status is not None else Status.RUNNING
        found = self._x_best is not None
        return build_result(
            x=self._x_best if found else self._x0, fun=self._f_best if found else np.nan,
            x_last=self._x, nfev=self._nfev, nit=self._nit, status=status,
            method=self.method, fallback=self._fallback, fallback_at=self._fallback_at,
            nfev_nonfinite=self._nfev_nonfinite, nfev_outliers=self._nfev_outliers)

    def state_dict(self) -> dict:
        """Everything needed to resume the run exactly, as plain data (picklable).

        A pending ask() is not saved: after loading, ask() draws the same points again.
        """
        rng_state = self._rng_state_at_ask or self._rng.bit_generator.state
        return copy.deepcopy({
            "format_version": STATE_FORMAT_VERSION,
            "method": self.method,
            "settings": self._settings,
            "x": self._x,
            "rule_state": self._rule.export_state(self._rule_state),
            "sampler_state": self._sampler.export(self._sampler_state),
            "fallback": self._fallback,
            "fallback_at": self._fallback_at,
            "f_start": self._f_start,
            "since_improvement": self._since_improvement,
            "rng": {"bit_generator": type(self._rng.bit_generator).__name__,
                    "state": rng_state},
            "nit": self._nit,
            "nfev": self._nfev,
            "nfev_nonfinite": self._nfev_nonfinite,
            "nfev_outliers": self._nfev_outliers,
            "x_best": self._x_best,
            "f_best": self._f_best,
            "best_is_outlier": self._best_is_outlier,
            "f_iterate": self._f_iterate,
            "best_trace": list(self._best_trace),
            "step_scale": self._step_scale,
            "status": None if self._status is None else int(self._status),
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from ``state_dict()`` of an optimizer built the same way.

        Every field is checked before any is used: the load either succeeds
        completely or leaves the optimizer as it was.

        Raises
        ------
        OptimizerStateError
            If the format, the method or the settings (options, d) differ, or a field
            is missing or does not fit (its name is in the message).
        """
        read = StateReader(state, STATE_FORMAT_VERSION)
        if read.raw("method") != self.method:
            raise OptimizerStateError(f"state is for method {read.raw('method')!r}, this "
                                      f"optimizer runs {self.method!r}")
        saved = read.raw("settings")
        if not isinstance(saved, dict):
            read.fail("settings", f"expected a dict, got {type(saved).__name__}")
        differ = sorted(k for k in self._settings.keys() | saved.keys()
                        if self._settings.get(k) != saved.get(k))
        if differ:
            raise OptimizerStateError(
                "state was saved with other settings: " + ", ".join(
                    f"{k}={saved.get(k)!r} (here {self._settings.get(k)!r})" for k in differ))
        read.state = copy.deepcopy(state)  # nothing of the caller's is kept or changed
        d, patience = self._x.size, self._settings["patience"]
        nit = read.integer("nit")
        fallback_at = None if read.raw("fallback_at") is None else read.integer(
            "fallback_at", high=nit)
        rule, sampler = self._components(fallen_back=fallback_at is not None)
        rule_state = self._restored(read, "rule_state", d, rule.export_state(rule.init(d)),
                                    rule.restore_state)
        sampler_state = self._restored(read, "sampler_state", d,
                                       sampler.export(sampler.init(d)), sampler.restore)
        x = read.point("x", d)
        if not np.array_equal(self._box.project(x.copy()), x):
            read.fail("x", "lies outside the bounds")
        x_best = read.point("x_best", d, optional=True)
        f_best = read.real("f_best", allow_nan=False)
        if (x_best is None) != (f_best == np.inf):
            read.fail("f_best", f"{f_best!r} does not go with x_best {x_best!r:.40}")
        status = read.raw("status")
        if status is not None and status not in {int(s) for s in Status}:
            read.fail("status", f"expected None or a status code, got {status!r}")
        step_scale = read.real("step_scale", allow_nan=False, allow_inf=False)
        if step_scale <= 0:
            read.fail("step_scale", f"expected a positive number, got {step_scale!r}")
        best_is_outlier = read.raw("best_is_outlier")
        if not isinstance(best_is_outlier, bool):
            read.fail("best_is_outlier", f"expected True or False, got {best_is_outlier!r}")
        loaded = {
            "_rng": restore_generator(read),
            "_x": x,
            "_rule": rule, "_rule_state": rule_state,
            "_sampler": sampler, "_sampler_state": sampler_state,
            "_fallback": read.optional_text("fallback"),
            "_fallback_at": fallback_at,
            "_f_start": read.real("f_start", allow_inf=False),
            "_since_improvement": read.integer("since_improvement"),
            "_nit": nit,
            "_nfev": read.integer("nfev"),
            "_nfev_nonfinite": read.integer("nfev_nonfinite"),
            "_nfev_outliers": read.integer("nfev_outliers"),
            "_x_best": x_best,
            "_f_best": f_best,
            "_best_is_outlier": best_is_outlier,
            "_f_iterate": read.real("f_iterate"),
            "_best_trace": deque(read.reals("best_trace", patience + 1), maxlen=patience + 1),
            "_step_scale": step_scale,
            "_status": None if status is None else Status(status),
            "_pending": None,
            "_rng_state_at_ask": None,
        }
        for name, value in loaded.items():
            setattr(self, name, value)

    @staticmethod
    def _restored(read: StateReader, name: str, d: int, template: dict, restore):
        """A rule's or sampler's state from field ``name``, checked against a fresh state."""
        data = read.like(name, template, d)
        try:
            return restore(data)
        except Exception as exc:  # a restorer that rejects what the check let through
            read.fail(name, f"cannot be restored ({type(exc).__name__}: {exc})")
