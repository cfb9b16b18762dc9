"""ZOOptimizer: the ask/tell object behind every ZO method.

One iteration: ``ask()`` draws the query directions and returns the points to
evaluate (the iterate first, for forward differences); ``tell(points, values)``
estimates the gradient, applies the method's update rule, projects onto the
bounds and checks the stopping tests. ``minimize`` is a loop over these two calls.
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np

from . import estimators, samplers
from ._call import Call, default_step, resolve
from ._guard import Components, Guard, GuardState, Progress
from ._registry import get_method
from ._result import Status, build_result
from ._state import StateReader, restore_generator
from .errors import NonFiniteValueError, ObjectiveValueError, OptimizerStateError

STATE_FORMAT_VERSION = 2

#: Settings that say where a run computes, not what: a state resumes under other values
#: (a checkpoint taken on a GPU goes on on a CPU; the saved states are device-free).
PLACEMENT_SETTINGS = frozenset({"device"})


def _guard_for(call: Call) -> Guard:
    """The guard of a call: a learned method's components with its fallback's (the
    fallback's own default step and the standard sampler) behind them; a classic
    method's alone."""
    spec, s = call.spec, call.settings
    sampler = (spec.make_sampler(s, call.parts) if spec.make_sampler
               else samplers.standard())
    primary = Components(spec.make_rule(s, call.parts), sampler)
    if spec.fallback is None:
        return Guard(primary)
    fallback = get_method(spec.fallback)
    fallback_settings = dict(s, step=float(default_step(fallback.base_step, s["x_scale"],
                                                        s["q"], s["d"])))
    return Guard(primary, Components(fallback.make_rule(fallback_settings, None),
                                     samplers.standard()),
                 watch=spec.guarded and s["guard"], patience=s["guard_patience"])


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
        self._start(resolve(method, x0, bounds, options, run_options=False))

    @classmethod
    def _from_call(cls, call: Call) -> "ZOOptimizer":
        """The optimizer of a call that ``zominimize._call.resolve`` has resolved."""
        optimizer = cls.__new__(cls)
        optimizer._start(call)
        return optimizer

    def _start(self, call: Call) -> None:
        self._spec = call.spec
        self._settings = call.settings
        self._seed = call.seed
        self._box = call.box
        self._guard = _guard_for(call)
        self._guard_state = self._guard.init(call.fallback)
        self._rule, self._sampler = self._guard.active(self._guard_state)
        self._x0 = call.x0
        self._reset(call.x0)

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
        self._reach: np.ndarray | None = None  # of the pending directions (see Sampler)

    @property
    def method(self) -> str:
        """The method that runs (the fallback's name when the requested one could not)."""
        return self._spec.name

    @property
    def fallback(self) -> str | None:
        """Why the requested method was replaced by its fallback, or None."""
        return self._guard_state.fallback

    @property
    def fallback_at(self) -> int | None:
        """Iteration from which the fallback ran (0: from the start), or None."""
        return self._guard_state.fallback_at

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
            points = self._query_points(q)
            if points is None:  # the sampler cannot serve: the standard one takes over
                if self._guard.can_hand_over(self._guard_state):
                    self._hand_over("non-finite query directions")
                    # a resumed run draws from here, with the standard sampler
                    self._rng_state_at_ask = copy.deepcopy(self._rng.bit_generator.state)
                else:
                    self._sampler = samplers.standard()
                    self._sampler_state = self._sampler.init(self._x.size)
                points = self._query_points(q)
            self._pending = self._workspace = points
        return self._pending

    def _query_points(self, q: int) -> np.ndarray | None:
        """The points of the next iteration, with q directions drawn by the sampler (None
        when it cannot serve); their reach is kept for the outlier screening."""
        s, state = self._settings, self._sampler_state

        def draw(rng, law, rows) -> bool:
            self._reach = self._sampler.draw(state, rng, law, rows)
            return self._reach is not None

        return estimators.query_points(self._rng, self._x, q, s["mu"], s["directions"],
                                       s["estimator"], self._box, out=self._workspace,
                                       draw=draw)

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
        s = self._settings
        reach = estimators.value_reach(self._reach, s["mu"], s["estimator"])
        far = estimators.outliers(values, s["outlier_factor"], reach)
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
        self._watch()
        return None

    def _reject_step(self) -> None:
        """A step that is not finite: the learned path hands over to the fallback; a
        classic rule, whose state overflowed, starts afresh from the best point."""
        if self._guard.can_hand_over(self._guard_state):
            self._hand_over("non-finite step")
        else:
            self._rule_state = self._rule.init(self._x.size)
            self._back_to_best_with_half_step()

    def _hand_over(self, reason: str) -> None:
        """Switch to the fallback's rule and sampler, from the best point; the ftol test
        restarts its window so the fallback gets a full one."""
        self._guard_state = self._guard.hand_over(self._guard_state, self._nit, reason)
        self._rule, self._sampler = self._guard.active(self._guard_state)
        self._rule_state = self._rule.init(self._x.size)
        self._sampler_state = self._sampler.init(self._x.size)
        if self._x_best is not None:
            self._x = self._x_best.copy()
        self._step_scale = 1.0
        self._best_trace.clear()

    def _watch(self) -> None:
        """Apply the guard's verdict after a step: hand over, or back off to the best
        point with half the step (and count the stall anew)."""
        if not self._guard.watch:
            return
        progress = Progress(self._f_start, self._f_iterate, self._f_best,
                            self._since_improvement, self._ftol_met())
        reason = self._guard.reason_to_hand_over(self._guard_state, progress)
        if reason is not None:
            self._hand_over(reason)
        elif self._guard.backs_off(self._guard_state, progress):
            self._back_to_best_with_half_step()
            self._since_improvement = 0

    def _back_to_best_with_half_step(self) -> None:
        self._x = self._x_best.copy()
        self._step_scale /= 2

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
        if not self._guard.holds_ftol(self._guard_state) and self._ftol_met():
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
            method=self.method, fallback=self.fallback, fallback_at=self.fallback_at,
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
            "fallback": self.fallback,
            "fallback_at": self.fallback_at,
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
            is missing or does not fit (its name is in the message). The ``device`` may
            differ: the state resumes on the device this optimizer was built for.
        """
        read = StateReader(state, STATE_FORMAT_VERSION)
        if read.raw("method") != self.method:
            raise OptimizerStateError(f"state is for method {read.raw('method')!r}, this "
                                      f"optimizer runs {self.method!r}")
        saved = read.raw("settings")
        if not isinstance(saved, dict):
            read.fail("settings", f"expected a dict, got {type(saved).__name__}")
        differ = sorted(k for k in (self._settings.keys() | saved.keys()) - PLACEMENT_SETTINGS
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
        guard_state = GuardState(read.optional_text("fallback"), fallback_at)
        rule, sampler = self._guard.active(guard_state)
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
            "_guard_state": guard_state,
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
