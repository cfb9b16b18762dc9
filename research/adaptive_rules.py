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
from zominimize._options import (Option, one_of, positive_float, unit_interval_closed,
                                 unit_interval_open)
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


class SplitGainState(NamedTuple):
    inner: Any
    level: float      # the shared log gain (the step's level)
    shape: Any        # (d,) per-coordinate log gains (centred to mean zero by default)
    z_mean: Any       # (d,) running mean of the per-coordinate signal
    g_square: Any     # (d,) running mean of g^2 (the per-coordinate signal's scale)
    level_z: float    # running mean (or cumulative path) of the per-run signal
    last_step: Any    # the previous step (None before the first)


def coordinate_signal(g, g_square, last_step):
    """z_i = sign(s_i) g_i / rms(g_i), clipped to +-5: the hypergradient along coordinate
    i's previous step s_i, positive when it overshot (``with_coordinate_gain``'s)."""
    return np.clip(np.sign(last_step) * g / np.sqrt(np.maximum(g_square, 1e-300)), -5, 5)


def cosine_signal(g, last_step, z):
    """sqrt(d) cos(g_t, s_{t-1}): ``with_gain``'s per-run signal, N(0, 1) without signal."""
    norms = np.linalg.norm(g) * np.linalg.norm(last_step)
    return np.sqrt(g.size) * float(g @ last_step) / norms if norms > 0 else 0.0


def mean_signal(g, last_step, z):
    """sqrt(d) mean(z_i) / rms(z_i) = sqrt(d) cos(z, 1): the per-coordinate statistics
    read as one per-run statistic (about N(0, 1) without signal), so that the level and
    the shape answer to one measurement, scale-free as z's own scale drifts."""
    norm = np.linalg.norm(z)
    return float(np.sum(z)) / norm if norm > 0 else 0.0


LEVEL_SIGNALS = {"cos": cosine_signal, "mean": mean_signal}


def with_split_gain(inner: Rule, kappa, beta_z, limit, level_kappa, level_start,
                    level_limit, level_down, level_signal="cos", level_path=0.0,
                    level_power=2.0, power=1.0, rms_beta=0.99, floor=None,
                    centre=True, gate=0.0, shape_decay=0.05) -> Rule:
    """``inner`` with its step scaled by exp(level + shape_i): a shared level and a
    per-coordinate shape.

    The shape is ``with_coordinate_gain``'s stochastic meta-descent, shape_i -= kappa
    sign(z_bar_i) |z_bar_i|^``power`` (``power`` 2: a dead zone for the noise, whose z_bar_i
    is about 0.2), with rms(g_i) a running mean of decay ``rms_beta`` (0.99 as there, which
    lets z_i fade as the gradient shrinks). With ``centre`` it is re-centred to mean zero in
    log after each update, so that it only redistributes the level; without, and with
    ``limit`` near 0, it only damps the coordinates that overshoot, and the level is that
    of the best ones. It is bounded by [-``floor``, ``limit``] (``floor`` None or 0:
    ``limit``).

    The level, from ``level_start``: level -= level_kappa sign(a) |a|^level_power (times
    ``level_down`` when it shrinks), within +-``level_limit``, where a is the per-run signal
    (``level_signal``: "cos", sqrt(d) cos(g_t, s_{t-1}) on the full step; "mean",
    sqrt(d) cos(z, 1) of the per-coordinate statistics) averaged as a running mean (decay
    0.9, ``level_path`` 0) or as a cumulative path a <- (1 - c) a + sqrt(c (2 - c)) z
    (``level_path`` c > 0, CSA's normalisation: N(0, 1) without signal, sqrt((2 - c) / c)
    times a steady z with it, so that a steadily too-small step grows faster).

    With ``gate`` g > 0 the shape adapts only as far as the level's signal a says that
    the step is not too small for all coordinates alike: with open = clip(1 + a / g, 0,
    1), shape_i <- (1 - (1 - open) ``shape_decay``) shape_i - open kappa ..., so a run whose
    every coordinate wants a larger step (a about -2 on nclsq) lets its shape decay to 0
    and grows the level alone, while a run whose coordinates disagree (a about 0 on the
    attack) keeps its per-coordinate shape.

    Measured in research/experiment-log.md: a sparse upward shape (a few coordinates e^5
    above the rest) is what the attack needs and what nclsq cannot bear.
    """
    signal = LEVEL_SIGNALS[level_signal]
    low = limit if floor is None or floor <= 0 else floor
    c = float(level_path)
    weight = np.sqrt(c * (2 - c)) if c > 0 else 0.1
    decay = 1 - c if c > 0 else 0.9

    def init(d):
        return SplitGainState(inner.init(d), float(level_start), np.zeros(d), np.zeros(d),
                              np.zeros(d), 0.0, None)

    def update(g, f, state):
        level, shape, z_mean, level_z = (state.level, state.shape, state.z_mean,
                                         state.level_z)
        if state.last_step is None:
            g_square = g * g
        else:
            g_square = ema(state.g_square, g * g, rms_beta)
            z = coordinate_signal(g, g_square, state.last_step)
            z_mean = ema(z_mean, z, beta_z)
            level_z = decay * level_z + weight * np.clip(signal(g, state.last_step, z), -5, 5)
            open_ = float(np.clip(1 + level_z / gate, 0, 1)) if gate > 0 else 1.0
            shape = ((1 - (1 - open_) * shape_decay) * shape
                     - open_ * kappa * np.sign(z_mean) * np.abs(z_mean) ** power)
            shape = np.clip(shape - shape.mean() if centre else shape, -low, limit)
            change = -level_kappa * np.sign(level_z) * abs(level_z) ** level_power
            level = float(np.clip(level + (level_down if change < 0 else 1.0) * change,
                                  -level_limit, level_limit))
        step, inner_state = inner.update(g, f, state.inner)
        step = np.exp(level + shape) * step
        return step, SplitGainState(inner_state, level, shape, z_mean, g_square, level_z,
                                    step)

    return Rule(init, update, SplitGainState)


SPLIT_OPTIONS = {o.name: o for o in [
    Option("kappa", 0.1, positive_float, "the shape's gain of log lr per unit of z_i"),
    Option("beta_z", 0.9, unit_interval_closed, "decay of z_i's running mean"),
    Option("limit", 5.0, positive_float, "bound of |shape_i| (log, around the level)"),
    Option("level_kappa", 0.02, positive_float, "the level's gain per unit of its signal"),
    Option("level_start", -2.3, _real, "the level (log) at the start"),
    Option("level_limit", 10.0, positive_float, "bound of |level|"),
    Option("level_down", 0.1, _real, "weight of the level's shrinking changes"),
    Option("level_signal", "cos", one_of(*LEVEL_SIGNALS), "the level's per-run signal"),
    Option("level_path", 0.0, unit_interval_closed,
           "0: the level reads a running mean of its signal; c > 0: a cumulative path"),
    Option("level_power", 2.0, positive_float, "the level's response sign(a) |a|^power"),
    Option("power", 1.0, positive_float, "the shape's response sign(z_i) |z_i|^power"),
    Option("rms_beta", 0.99, unit_interval_open, "decay of the running mean of g_i^2"),
    Option("floor", 0.0, _real, "lower bound -floor of shape_i (0: -limit)"),
    Option("centre", 1.0, _real, "1: the shape is re-centred to mean zero; 0: it is not"),
    Option("gate", 0.0, _real, "the level signal at which the shape stops adapting (0: never)"),
    Option("shape_decay", 0.05, unit_interval_closed, "the shape's decay while the gate is shut"),
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
    """Register "hyper-adamm", "hyper-l2l", "coord-adamm", "coord-l2l",
    "coord-hyper-adamm" and "split-adamm" (no guard), once per process."""
    if "hyper-adamm" in method_names():
        return
    register(MethodSpec(
        name="split-adamm",
        summary="research: ZO-AdaMM with a shared level and a centred per-coordinate shape",
        doc="research", base_step=0.1, options={**ADAMM_OPTIONS, **SPLIT_OPTIONS},
        make_rule=lambda s, parts: with_split_gain(
            ZO_ADAMM.make_rule(s, parts), s["kappa"], s["beta_z"], s["limit"],
            s["level_kappa"], s["level_start"], s["level_limit"], s["level_down"],
            s["level_signal"], s["level_path"], s["level_power"], s["power"],
            s["rms_beta"], s["floor"], bool(s["centre"]), s["gate"], s["shape_decay"])))
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
