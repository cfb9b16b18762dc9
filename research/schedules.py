"""Budget-aware step schedules around the package's rules (research methods).

The question: the benchmark's problems reward a large early step (the attack's start is a
shallow basin) and a small late one (after the margin reaches 0 the L1 term makes a fixed
step oscillate), and no one-step signal found that schedule (experiment log, issue 18).
The run knows its budget, so the schedule can be a function of the fraction of it spent,
as a learned optimizer fed the training progress is (VeLO, Metz et al. 2022). A wide
schedule also sweeps the step through every value between its ends, which is what a
user's lr set 10x off needs.

:func:`register_methods` registers "sched-<base>" for base in zo-adamm, zo-sgd,
zo-signsgd (its halving off) and l2l-zo: the base method's step times
peak * h(t / T), T the iterations the budget allows and h a cosine from 1 to floor.
``warmup`` is the fraction of T over which h first rises from floor to 1.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from zominimize import estimators
from zominimize._options import Option, positive_float, unit_interval_closed
from zominimize._registry import MethodSpec, get_method, method_names, register
from zominimize.rules import Rule


class ScheduleState(NamedTuple):
    inner: Any
    t: int


def multiplier(fraction: float, peak: float, floor: float, warmup: float,
               shape: str = "cosine") -> float:
    """The step multiplier at this fraction of the budget: peak * h(fraction)."""
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup > 0 and fraction < warmup:
        return peak * (floor + (1 - floor) * fraction / warmup)
    rest = (fraction - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if shape == "exp":  # log-linear: every decade of step gets the same share of T
        return peak * floor ** rest
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * rest)))


def with_schedule(inner: Rule, iterations: int, peak: float, floor: float,
                  warmup: float, shape: str) -> Rule:
    """``inner`` with its t-th step times multiplier(t / iterations, ...)."""

    def init(d):
        return ScheduleState(inner.init(d), 0)

    def update(g, f, state):
        step, inner_state = inner.update(g, f, state.inner)
        factor = multiplier(state.t / max(iterations - 1, 1), peak, floor, warmup, shape)
        return factor * step, ScheduleState(inner_state, state.t + 1)

    return Rule(init, update, ScheduleState)


def _real(name, value):
    return float(value)


def _shape(name, value):
    if value not in ("cosine", "exp"):
        raise ValueError(f"{name} must be 'cosine' or 'exp', got {value!r}")
    return value


SCHEDULE_OPTIONS = {o.name: o for o in [
    Option("peak", 1.0, positive_float, "step multiplier at the top of the schedule"),
    Option("floor", 0.01, positive_float, "h at the end, a fraction of peak"),
    Option("warmup", 0.0, unit_interval_closed, "fraction of T over which h rises"),
    Option("shape", "cosine", _shape, "'cosine' or 'exp' (log-linear) decay"),
]}


def iterations(settings: dict) -> int:
    """The iterations the run's budget allows (maxiter or maxfev, whichever binds)."""
    per = estimators.evaluations_per_iteration(settings["estimator"], settings["q"])
    return max(1, min(settings["maxiter"], settings["maxfev"] // per))


def _scheduled(base: str, fixed: dict) -> MethodSpec:
    spec = get_method(base)

    def make_rule(s, parts):
        inner = spec.make_rule({**s, **fixed}, parts)
        return with_schedule(inner, iterations(s), s["peak"], s["floor"], s["warmup"],
                             s["shape"])

    return MethodSpec(name=f"sched-{base}", summary=f"research: {base} on a schedule",
                      doc="research", base_step=spec.base_step,
                      options={**spec.options, **SCHEDULE_OPTIONS}, make_rule=make_rule,
                      make_sampler=spec.make_sampler, load=spec.load,
                      fallback=spec.fallback, weight_set=spec.weight_set)


def register_methods() -> None:
    """Register the sched-* methods (unguarded), once per process."""
    if "sched-zo-adamm" in method_names():
        return
    for base, fixed in (("zo-adamm", {}), ("zo-sgd", {}), ("zo-signsgd", {"halve_after": 0}),
                        ("l2l-zo", {}), ("l2l-zo-update", {})):
        register(_scheduled(base, fixed))
