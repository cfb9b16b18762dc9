"""Hand-written per-run step-size adaptation around an update rule (research methods).

The question these answer before any meta-training: does the evidence a ZO run has
suffice to correct a step that is 10x wrong? :func:`register_methods` registers
"hyper-adamm" (ZO-AdaMM) and "hyper-l2l" (the shipped l2l-zo UpdateRNN, Gaussian
queries), both with their step multiplied by a per-run gain exp(log_gain).

The signal: the estimate g_t is drawn with fresh directions, so its noise is
independent of the previous step s_{t-1}, and E[g_t . s_{t-1}] = grad f(x_t) . s_{t-1},
the derivative of f(x_t) in log(lr) along the last step (the hypergradient of Baydin
et al., 2018). z = sqrt(d) cos(g_t, s_{t-1}) is N(0, 1) without signal and about
sqrt(q) cos(grad f, s_{t-1}) with it, whatever d. The gain follows
log_gain -= kappa sign(z_bar) |z_bar|^power (times ``down`` when it shrinks), z_bar a
running mean of z, from ``start``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from zominimize._bounds import standardize_bounds
from zominimize._options import Option, positive_float, unit_interval_closed
from zominimize._registry import MethodSpec, method_names, register
from zominimize.methods import ADAMM_OPTIONS, LEARNED_OPTIONS, L2L_ZO, ZO_ADAMM
from zominimize.estimators import estimate_gradient, query_points
from zominimize.rules import Rule, ema


class GainState(NamedTuple):
    inner: Any
    log_gain: float
    z_mean: float
    last_step: Any  # the previous step (None before the first)


def with_gain(inner: Rule, kappa, beta_z, limit, start, power, down=1.0) -> Rule:
    """``inner`` with its steps scaled by a per-run gain driven by the hypergradient."""

    def init(d):
        return GainState(inner.init(d), start, 0.0, None)

    def update(g, f, state):
        log_gain, z_mean = state.log_gain, state.z_mean
        if state.last_step is not None:
            norms = np.linalg.norm(g) * np.linalg.norm(state.last_step)
            if norms > 0:
                z = np.sqrt(g.size) * float(g @ state.last_step) / norms
                z_mean = ema(z_mean, np.clip(z, -5, 5), beta_z)
                change = -kappa * np.sign(z_mean) * abs(z_mean) ** power
                log_gain = float(np.clip(log_gain + (down if change < 0 else 1.0) * change,
                                         -limit, limit))
        step, inner_state = inner.update(g, f, state.inner)
        step = np.exp(log_gain) * step
        return step, GainState(inner_state, log_gain, z_mean, step)

    return Rule(init, update, GainState)


class CoordinateGainState(NamedTuple):
    inner: Any
    log_gain: Any     # (d,) per-coordinate log gains
    z_mean: Any       # (d,) running mean of the per-coordinate signal
    g_square: Any     # (d,) running mean of g^2 (the signal's scale)
    last_step: Any    # the previous step (None before the first)


def with_coordinate_gain(inner: Rule, kappa, beta_z, limit, start) -> Rule:
    """``inner`` with each coordinate's step scaled by its own gain (stochastic
    meta-descent per coordinate, Schraudolph 1999, on a ZO estimate): z_i = sign(s_i)
    g_i / rms(g_i), with s the previous step, is the hypergradient of f along coordinate
    i's step, positive when that step overshot; log_gain_i -= kappa z_bar_i, from
    ``start``, within +-``limit``."""

    def init(d):
        return CoordinateGainState(inner.init(d), np.full(d, float(start)), np.zeros(d),
                                   np.zeros(d), None)

    def update(g, f, state):
        g_square = ema(state.g_square, g * g, 0.99) if state.last_step is not None \
            else g * g
        log_gain, z_mean = state.log_gain, state.z_mean
        if state.last_step is not None:
            z = np.sign(state.last_step) * g / np.sqrt(np.maximum(g_square, 1e-300))
            z_mean = ema(z_mean, np.clip(z, -5, 5), beta_z)
            log_gain = np.clip(log_gain - kappa * z_mean, -limit, limit)
        step, inner_state = inner.update(g, f, state.inner)
        step = np.exp(log_gain) * step
        return step, CoordinateGainState(inner_state, log_gain, z_mean, g_square, step)

    return Rule(init, update, CoordinateGainState)


def _real(name, value):
    return float(value)


GAIN_OPTIONS = {o.name: o for o in [
    Option("kappa", 0.03, positive_float, "gain of log lr per unit of z"),
    Option("beta_z", 0.9, unit_interval_closed, "decay of z's running mean"),
    Option("limit", 6.0, positive_float, "bound of |log gain|"),
    Option("start", -2.3, _real, "log gain at the start"),
    Option("power", 2.0, positive_float, "response kappa sign(z) |z|^power"),
    Option("down", 1.0, _real, "weight of the shrinking changes (z_bar > 0)"),
]}


GLOBAL_OPTIONS = {o.name: o for o in [
    Option("global_kappa", 0.02, positive_float, "the per-run gain's kappa"),
    Option("global_start", 0.0, _real, "the per-run log gain at the start"),
    Option("global_limit", 10.0, positive_float, "bound of the per-run |log gain|"),
    Option("global_down", 0.1, _real, "weight of the per-run gain's shrinking changes"),
]}


def _coordinate_and_global(s, inner):
    """``inner`` with per-coordinate gains, then a per-run gain on top."""
    return with_gain(with_coordinate_gain(inner, s["kappa"], s["beta_z"], s["limit"],
                                          s["start"]),
                     s["global_kappa"], 0.9, s["global_limit"], s["global_start"], 2.0,
                     s["global_down"])


def _gain(s, inner):
    return with_gain(inner, s["kappa"], s["beta_z"], s["limit"], s["start"], s["power"],
                     s["down"])


def register_methods() -> None:
    """Register "hyper-adamm", "hyper-l2l", "coord-adamm", "coord-l2l" and
    "coord-hyper-adamm" (no guard), once per process."""
    if "hyper-adamm" in method_names():
        return
    register(MethodSpec(
        name="coord-l2l", summary="research: l2l-zo's UpdateRNN with per-coordinate gains",
        doc="research", base_step=0.1, options={**LEARNED_OPTIONS, **GAIN_OPTIONS},
        make_rule=lambda s, parts: with_coordinate_gain(
            L2L_ZO.make_rule(s, parts), s["kappa"], s["beta_z"], s["limit"], s["start"]),
        load=L2L_ZO.load, fallback="zo-adamm", weight_set="l2l-zo"))
    register(MethodSpec(
        name="coord-hyper-adamm",
        summary="research: ZO-AdaMM with per-coordinate gains and a per-run gain",
        doc="research", base_step=0.1,
        options={**ADAMM_OPTIONS, **GAIN_OPTIONS, **GLOBAL_OPTIONS},
        make_rule=lambda s, parts: _coordinate_and_global(s, ZO_ADAMM.make_rule(s, parts))))
    register(MethodSpec(
        name="coord-adamm", summary="research: ZO-AdaMM with per-coordinate hypergradient gains",
        doc="research", base_step=0.1, options={**ADAMM_OPTIONS, **GAIN_OPTIONS},
        make_rule=lambda s, parts: with_coordinate_gain(
            ZO_ADAMM.make_rule(s, parts), s["kappa"], s["beta_z"], s["limit"], s["start"])))
    register(MethodSpec(
        name="hyper-adamm", summary="research: ZO-AdaMM with a hypergradient gain",
        doc="research", base_step=0.1, options={**ADAMM_OPTIONS, **GAIN_OPTIONS},
        make_rule=lambda s, parts: _gain(s, ZO_ADAMM.make_rule(s, parts))))
    register(MethodSpec(
        name="hyper-l2l", summary="research: l2l-zo's UpdateRNN with a hypergradient gain",
        doc="research", base_step=0.1, options={**LEARNED_OPTIONS, **GAIN_OPTIONS},
        make_rule=lambda s, parts: _gain(s, L2L_ZO.make_rule(s, parts)),
        load=L2L_ZO.load, fallback="zo-adamm", weight_set="l2l-zo"))


#: The step multipliers a start probe tries (log-spaced over two decades each way).
PROBE_FACTORS = tuple(10.0 ** (k / 2) for k in range(-4, 5))


def probe_factor(fun, x0: np.ndarray, lr: float, q: int, mu: float, seed: int,
                 factors=PROBE_FACTORS) -> tuple[float, int]:
    """The lr multiplier whose first ZO-AdaMM step (a sign step of length lr: the first
    step of Adam's normalisation) lowers f the most, and the evaluations it took.

    One forward-difference estimate at x0 (q + 1 evaluations) and one evaluation per
    factor: a start that is far too small or too large shows in the first step already.
    """
    rng = np.random.default_rng([seed, 18])
    points = query_points(rng, x0, q, mu, "gaussian", "forward", standardize_bounds(None, x0.size))
    evaluated = np.array([fun(point) for point in points])
    f0, (g, _) = evaluated[0], estimate_gradient(x0, points, evaluated, mu, "forward")
    values = [fun(x0 - factor * lr * np.sign(g)) for factor in factors]
    best = int(np.argmin(values))
    if not values[best] < f0:
        return 1.0, q + 1 + len(factors)
    return factors[best], q + 1 + len(factors)
