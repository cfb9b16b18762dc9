"""Classic update rules as (init, update) pairs of pure functions.

``rule.init(d)`` returns the rule's state (a small NamedTuple of arrays and
floats); ``rule.update(g, f, state)`` returns ``(step, new_state)`` for the estimate g
and the value f at the iterate, where ``step`` is added to the iterate. Nothing is
modified in place, so a state can be saved, restored and compared freely (the learned
rules at a large d, whose states are larger than x many times over, reuse their state's
memory instead: see :mod:`zominimize.learned.blocks`).

ZO-AdaMM's arithmetic (:func:`adamm_moments`, :func:`adamm_step`) takes numpy arrays
or torch tensors, so that the learned optimizer and its meta-training use this one.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class Rule(NamedTuple):
    """An update rule: ``init(d) -> state`` and ``update(g, f, state) -> (step, state)``
    (g: the gradient estimate, f: the value at the iterate; the classic rules read g only).

    ``export(state) -> dict`` and ``restore(dict) -> state`` turn a state into plain
    data and back (numpy arrays, numbers); by default the state is a NamedTuple of
    such data already.
    """

    init: Callable[[int], Any]
    update: Callable[[np.ndarray, float, Any], tuple[np.ndarray, Any]]
    state_type: type
    export: Callable[[Any], dict] | None = None
    restore: Callable[[dict], Any] | None = None

    def export_state(self, state) -> dict:
        return self.export(state) if self.export else dict(state._asdict())

    def restore_state(self, data: dict):
        return self.restore(data) if self.restore else self.state_type(**data)


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(v))))


class SGDState(NamedTuple):
    lr: float  # NaN until the automatic learning rate has been chosen


def sgd(lr: float | None, first_step: float) -> Rule:
    """ZO-SGD: step = -lr * g.

    With ``lr=None`` the learning rate is chosen at the first non-zero estimate g_0
    so that the first step has RMS length ``first_step`` per coordinate:
    lr = first_step / RMS(g_0). It stays fixed afterwards, so the steps shrink as
    the gradient does, as in plain SGD.
    """

    def init(d: int) -> SGDState:
        return SGDState(lr=np.nan if lr is None else lr)

    def update(g: np.ndarray, f: float, state: SGDState):
        rate = state.lr
        if np.isnan(rate):
            size = _rms(g)
            if size == 0:
                return np.zeros_like(g), state
            rate = first_step / size
        return -rate * g, SGDState(lr=rate)

    return Rule(init, update, SGDState)


class SignState(NamedTuple):
    lr: float
    f_best: float  # the lowest value at the iterate so far
    since_best: int  # iterations since it improved, or since the last halving


def sign_sgd(lr: float, halve_after: int) -> Rule:
    """ZO-signSGD (Liu et al., 2019): step = -lr * sign(g), lr halved on a stall.

    A sign step keeps its length however small the gradient, so a fixed lr ends
    oscillating at a distance of about lr from the optimum. The rule therefore
    halves lr whenever the value at the iterate has not reached a new low for
    ``halve_after`` iterations (0: never), which lets it converge.
    """

    def init(d: int) -> SignState:
        return SignState(lr=lr, f_best=np.inf, since_best=0)

    def update(g: np.ndarray, f: float, state: SignState):
        rate, best, since = state
        if f < best:
            best, since = f, 0
        else:
            since += 1
            if halve_after and since >= halve_after:
                rate, since = rate / 2, 0
        return -rate * np.sign(g), SignState(rate, best, since)

    return Rule(init, update, SignState)


class AdaMMState(NamedTuple):
    """ZO-AdaMM's moments: the step count, m, v and the largest v so far (arrays of one shape)."""

    count: int
    m: Any
    v: Any
    v_max: Any


def ema(average, value, beta: float):
    """The running mean ``beta * average + (1 - beta) * value`` (numpy or torch)."""
    return beta * average + (1 - beta) * value


def _is_tensor(a) -> bool:
    """Whether ``a`` is a torch tensor (told without importing torch)."""
    return type(a).__module__.startswith("torch")


def _maximum(a, b):
    return a.maximum(b) if _is_tensor(a) else np.maximum(a, b)


def _sqrt(a):
    return a.sqrt() if _is_tensor(a) else np.sqrt(a)


def adamm_moments(state: AdaMMState, g, beta1: float, beta2: float) -> AdaMMState:
    """ZO-AdaMM's moments after the estimate ``g``.

    Written once for numpy arrays (the ``zo-adamm`` rule) and torch tensors (the learned
    design's features and meta-training's reference), of any shape: only the maximum
    and the square root (in :func:`adamm_rms`) differ between the two and are dispatched
    on the array type. The moments agree bit for bit; torch's vectorised square root on
    a CPU can differ from numpy's in the last place.
    """
    v = ema(state.v, g * g, beta2)
    return AdaMMState(state.count + 1, ema(state.m, g, beta1), v, _maximum(state.v_max, v))


def adamm_rms(state: AdaMMState, beta2: float):
    """The bias-corrected, max-corrected RMS sqrt(v^_t / (1 - b2^t)) of ``state``."""
    return _sqrt(state.v_max / (1 - beta2 ** state.count))


def adamm_step(state: AdaMMState, lr, beta1: float, beta2: float, eps: float):
    """ZO-AdaMM's step from the moments (after :func:`adamm_moments`):
    -lr [m / (1 - b1^t)] / (rms + eps). ``lr`` is a number or an array that broadcasts."""
    denom = adamm_rms(state, beta2)
    denom += eps
    step = state.m / denom
    step *= -lr / (1 - beta1 ** state.count)
    return step


def adamm(lr: float, beta1: float, beta2: float, eps: float) -> Rule:
    """ZO-AdaMM (Chen et al., 2019): Adam moments with the max-corrected second moment.

    m_t = b1 m + (1 - b1) g,  v_t = b2 v + (1 - b2) g^2,  v^_t = max(v^_{t-1}, v_t),
    step = -lr * [m_t / (1 - b1^t)] / (sqrt(v^_t / (1 - b2^t)) + eps).

    The bias corrections (as in torch's Adam with amsgrad=True) make the first
    steps about lr per coordinate, so ``lr`` means the same from the first step on.
    The arithmetic is :func:`adamm_moments` and :func:`adamm_step`, which the learned
    optimizer and its meta-training share.
    """

    def init(d: int) -> AdaMMState:
        zeros = np.zeros(d)
        return AdaMMState(count=0, m=zeros, v=zeros, v_max=zeros)

    def update(g: np.ndarray, f: float, state: AdaMMState):
        state = adamm_moments(state, g, beta1, beta2)
        return adamm_step(state, lr, beta1, beta2, eps), state

    return Rule(init, update, AdaMMState)
