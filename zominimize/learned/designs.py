"""The learned designs, each a short step function composed of small pieces.

A design says what the UpdateRNN reads and how its output becomes a step; it owns its
state, and its ``step`` is used as it is by inference (:mod:`zominimize.learned.rule`)
and by meta-training (:mod:`zominimize.train`), so that an inference step is a step of
the training unroll. A design names its QueryRNN (:mod:`zominimize.learned.queries`).

* ``L2L_ZO`` ("l2l-zo-plain"): ZO-AdaMM's moments, the coherence of the estimates and the
  success rate of f feed the LSTM, whose two outputs rescale ZO-AdaMM's step and move its
  normalisation slowly towards a fast RMS (sign-like steps at that end).
* ``L2L_ZO_GAIN`` ("l2l-zo-scales"): that step under a learned step-size controller, a
  per-run level and a per-coordinate shape (:mod:`zominimize.learned.gain`); its
  UpdateRNN is a :class:`~zominimize.learned.gain.GainedUpdate`, the LSTM and the
  controller; with the paper's per-coordinate QueryRNN, for weight sets that name it.
* ``L2L_ZO_SUBSPACE`` (weight set "l2l-zo"): that update with the subspace QueryRNN.
* ``PAPER`` (weight set "l2l-zo-paper"): the paper's design, the raw estimate in and an
  absolute step out.

Designs that were tried and not shipped are described in research/experiment-log.md.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from ..rules import AdaMMState, adamm_moments, adamm_rms, ema
from . import gain
from .blocks import per_coordinate
from .gain import GainedUpdate, GainState, with_gain
from .nets import CoordinateLSTM
from .queries import SCALES, SUBSPACE, QueryDesign
from .pieces import (checkpoint_moments, cosine, floored, lstm_state, numpy_copy, peak_rms,
                     restored_lstm_state, tensor_copy)

#: ZO-AdaMM's decays (those of the ``zo-adamm`` method's defaults).
BETA1, BETA2 = 0.9, 0.999
#: Decays of the running coherence and success rate.
BETA_C, BETA_S = 0.9, 0.9
#: Decay of the fast second moment (BETA1's, so that |m^| <= rms_fast).
BETA_FAST = BETA1
#: Decay of the running blend weight.
BETA_W = 0.9
#: The blend weight is sigmoid(b - BLEND_OFFSET), so that an untrained net stays near ZO-AdaMM.
BLEND_OFFSET = 4.0
#: The step multiplier exp(LOG_RANGE tanh(a / LOG_RANGE)) lies within exp(+-LOG_RANGE).
LOG_RANGE = 3.0


class Design(NamedTuple):
    """A learned update rule: what the UpdateRNN reads and how its output becomes a step.

    Attributes
    ----------
    name : str
        The design's name (for a design that ships, its weight set's).
    features, step_form : str
        How a weight set's manifest entry names the design.
    n_inputs, n_outputs : int
        Inputs and outputs per coordinate of the UpdateRNN.
    state_type : type
        The NamedTuple of its state.
    init : callable
        ``init(shape, device) -> state``: the state before the first step, for
        coordinates of ``shape`` ((d,) at inference, (tasks, d) in training).
    step : callable
        ``step(net, g, f, state, lr) -> (step, state)``: the step (float64, the shape of
        g) for the estimate g (float64) and the value f at the iterate (a number, or a
        tensor per task), with the run's step size lr.
    export, restore : callable
        ``export(state) -> dict`` of numpy arrays and numbers, and
        ``restore(dict, device) -> state``: the state in a checkpoint (see
        :func:`checkpoint_moments`).
    architecture : dict
        What the manifest's "architecture" records for this design beyond the layout
        shared by all (see :func:`zominimize.learned.weights.architecture`).
    make_update : callable
        ``make_update() -> torch.nn.Module``: a fresh UpdateRNN (the ``net`` its step reads).
    inner : Design or None
        For a design under a step-size controller (:mod:`zominimize.learned.gain`), the
        design whose steps it scales (its UpdateRNN is ``net.rnn``); None otherwise.
    query : QueryDesign
        Its QueryRNN (:mod:`zominimize.learned.queries`).
    """

    name: str
    features: str
    step_form: str
    n_inputs: int
    n_outputs: int
    state_type: type
    init: Callable[..., Any]
    step: Callable[..., tuple]
    export: Callable[[Any], dict]
    restore: Callable[[dict, Any], Any]
    architecture: dict
    make_update: Callable[[], torch.nn.Module]
    inner: Any = None
    query: QueryDesign = SCALES


def make_nets(design: Design) -> tuple[torch.nn.Module, CoordinateLSTM]:
    """A fresh (UpdateRNN, QueryRNN) pair for ``design``."""
    return design.make_update(), design.query.make_net()


# ---------------------------------------------------------------- pieces

def corrected_since_second_step(running: torch.Tensor, beta: float, count: int,
                                before: float) -> torch.Tensor:
    """A running mean (decay ``beta``) over the count - 1 steps after the first,
    bias-corrected; ``before`` until there is one."""
    observed = max(count - 1, 0)
    if observed == 0:
        return torch.full_like(running, before)
    return running / (1 - beta ** observed)


def coherence_update(running: torch.Tensor, g: torch.Tensor,
                     moments: AdaMMState) -> torch.Tensor:
    """The running coherence after g: the mean of cos(g_t, m_{t-1}) with the momentum
    before it takes in g (unchanged at the first step, which has none). Consecutive
    estimates share the gradient and not the noise, so the coherence tells how much of
    a step is signal, and turns negative when the steps overshoot."""
    if not moments.count:
        return running
    return ema(running, cosine(g, moments.m), BETA_C)


def success_update(rate: torch.Tensor, f_last: torch.Tensor, f,
                   count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The running rate of 1[f < f_last] and the new f_last, from the value f at the
    iterate (a number or a tensor per task): whether the steps still pay."""
    f = torch.as_tensor(f, dtype=f_last.dtype, device=f_last.device).reshape(f_last.shape)
    if not count:
        return rate, f
    return ema(rate, (f < f_last).double(), BETA_S), f


def log_fast_ratio(v_fast: torch.Tensor, count: int, rms: torch.Tensor,
                   peak_fast: torch.Tensor) -> torch.Tensor:
    """log(rms_fast / rms) per coordinate, rms_fast the bias-corrected RMS of the fast
    second moment, floored by its largest value ``peak_fast``."""
    fast = floored(torch.sqrt(v_fast / (1 - BETA_FAST ** count)), peak_fast)
    return torch.log(fast) - torch.log(rms)


def slow_blend(b: torch.Tensor, log_fast: torch.Tensor,
               blend: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The blend's log-multiplier of Adam's step, -w log(rms_fast / rms), and the new w: the
    running mean (decay BETA_W) of the net's proposals sigmoid(b - BLEND_OFFSET). A slow w
    does not flicker with the noise of the inputs near an optimum, where rms / rms_fast
    grows."""
    w = ema(blend, torch.sigmoid(b - BLEND_OFFSET).double(), BETA_W)
    return -(w * log_fast).to(b.dtype), w


def scaled_adam_step(a: torch.Tensor, m_normalised: torch.Tensor,
                     log_factor: torch.Tensor) -> torch.Tensor:
    """Adam's step in units of lr, -m^ / rms, times exp(LOG_RANGE tanh(a / LOG_RANGE) +
    log_factor): the net's bounded multiplier, and the blend. Every coordinate keeps the
    sign of Adam's step."""
    if torch.is_grad_enabled():
        return -torch.exp(LOG_RANGE * torch.tanh(a / LOG_RANGE) + log_factor) * m_normalised
    # the same arithmetic in place, for inference at large d
    exponent = torch.tanh(a / LOG_RANGE).mul_(LOG_RANGE).add_(log_factor)
    return exponent.exp_().mul_(m_normalised).neg_()


# ---------------------------------------------------------------- l2l-zo

class L2LZOState(NamedTuple):
    """The state of the l2l-zo design: the LSTM's (h, c), ZO-AdaMM's moments (float64,
    per coordinate), the running coherence, success rate and last f (per run: (..., 1)),
    the fast second moment and the blend weight (per coordinate; (..., 1) zeros before
    the first step)."""

    h: torch.Tensor
    c: torch.Tensor
    adamm: AdaMMState
    coherence: torch.Tensor
    success: torch.Tensor
    f_last: torch.Tensor
    v_fast: torch.Tensor
    blend: torch.Tensor


def l2l_zo_init(shape, device=None) -> L2LZOState:
    """Zero state (f_last NaN) for coordinates of ``shape`` (..., d); every tensor its own,
    as a step may overwrite them (see :mod:`zominimize.learned.blocks`)."""
    zeros = torch.zeros(shape, dtype=torch.float64, device=device)
    one = torch.zeros(zeros.shape[:-1] + (1,), dtype=torch.float64, device=device)
    return L2LZOState(*lstm_state(shape, device),
                      AdaMMState(0, zeros, zeros.clone(), zeros.clone()), one.clone(),
                      one.clone(), torch.full_like(one, float("nan")), one.clone(), one.clone())


def l2l_zo_step(net: CoordinateLSTM, g: torch.Tensor, f, state: L2LZOState,
                lr) -> tuple[torch.Tensor, L2LZOState]:
    """One step of the l2l-zo design.

    The UpdateRNN reads, per coordinate, g and ZO-AdaMM's bias-corrected momentum m^,
    both over ZO-AdaMM's RMS (scale-free), and two inputs shared by all coordinates:
    the coherence and 2 r - 1 from the success rate r. Its outputs (a, b) give the step
    -lr exp(A tanh(a / A)) m^ / (rms^(1 - w) rms_fast^w), w the slow blend of
    sigmoid(b - BLEND_OFFSET): a zero head is close to ZO-AdaMM.

    The shared inputs come first; the per-coordinate arithmetic then runs through
    :func:`per_coordinate` in two passes (the moments, then the rest, which needs the
    largest RMS over all coordinates), in place at inference with a large d.
    """
    coherence = coherence_update(state.coherence, g, state.adamm)
    success, f_last = success_update(state.success, state.f_last, f, state.adamm.count)
    count = state.adamm.count + 1
    shared = [corrected_since_second_step(coherence, BETA_C, count, 0.0),
              2 * corrected_since_second_step(success, BETA_S, count, 0.5) - 1]

    def moments(g, m, v, v_max, v_fast):
        new = adamm_moments(AdaMMState(count - 1, m, v, v_max), g, BETA1, BETA2)
        return new.m, new.v, new.v_max, ema(v_fast, g * g, BETA_FAST)

    old = state.adamm
    m, v, v_max, v_fast = per_coordinate(moments, (g, old.m, old.v, old.v_max, state.v_fast),
                                         into=(old.m, old.v, old.v_max, state.v_fast))
    peak, peak_fast = peak_rms(v_max, BETA2, count), peak_rms(v_fast, BETA_FAST, count)

    def update(g, m, v_max, v_fast, h, c, blend):
        rms = floored(adamm_rms(AdaMMState(count, m, None, v_max), BETA2), peak)
        m_normalised = (m / (1 - BETA1 ** count)) / rms
        inputs = torch.stack([g / rms, m_normalised, *(row.expand_as(g) for row in shared)],
                             dim=-2).float()
        out, (h, c) = net(inputs, (h, c))
        log_factor, blend = slow_blend(out[..., 1, :],
                                       log_fast_ratio(v_fast, count, rms, peak_fast), blend)
        step = scaled_adam_step(out[..., 0, :], inputs[..., 1, :], log_factor).double()
        return step.mul_(lr), h, c, blend

    step, h, c, blend = per_coordinate(
        update, (g, m, v_max, v_fast, state.h, state.c, state.blend),
        into=(None, state.h, state.c, state.blend))
    return step, L2LZOState(h, c, AdaMMState(count, m, v, v_max), coherence, success, f_last,
                            v_fast, blend)


def _l2l_zo_export(state: L2LZOState) -> dict:
    moments = state.adamm
    kept = dict(m=moments.m, v=moments.v, coherence=state.coherence, success=state.success,
                f_last=state.f_last, v_fast=state.v_fast, blend=state.blend)
    if moments.count:  # v_max is v itself until the first step
        kept["v_max"] = moments.v_max
    return {"h": numpy_copy(state.h), "c": numpy_copy(state.c),
            "moments": checkpoint_moments(moments.count, **kept)}


def _l2l_zo_restore(data: dict, device) -> L2LZOState:
    saved = data["moments"]
    v = tensor_copy(saved["v"], device)
    v_max = tensor_copy(saved["v_max"] if "v_max" in saved else saved["v"], device)
    return L2LZOState(*restored_lstm_state(data, device),
                      AdaMMState(int(saved["count"]), tensor_copy(saved["m"], device), v, v_max),
                      *(tensor_copy(saved[key], device)
                        for key in ("coherence", "success", "f_last", "v_fast", "blend")))


L2L_ZO = Design(
    name="l2l-zo-plain", features="rms-max-coherence-success", step_form="adam-blend-slow",
    n_inputs=4, n_outputs=2, state_type=L2LZOState, init=l2l_zo_init, step=l2l_zo_step,
    export=_l2l_zo_export, restore=_l2l_zo_restore,
    architecture={"update_step": "adam-blend-slow", "update_outputs": 2, "update_inputs": 4,
                  "log_range": LOG_RANGE, "blend_offset": BLEND_OFFSET,
                  "beta_fast": BETA_FAST, "beta_w": BETA_W},
    make_update=lambda: CoordinateLSTM(4, outputs=2))


# ---------------------------------------------------------------- l2l-zo with its controller

L2L_ZO_GAIN = Design(
    "l2l-zo-scales", L2L_ZO.features, "adam-blend-slow-gain", L2L_ZO.n_inputs,
    L2L_ZO.n_outputs, GainState, *with_gain(L2L_ZO),
    architecture={**L2L_ZO.architecture, "update_step": "adam-blend-slow-gain",
                  "gain": gain.ARCHITECTURE},
    make_update=lambda: GainedUpdate(L2L_ZO.make_update()), inner=L2L_ZO)

#: The same update with the subspace QueryRNN (the shipped weight set "l2l-zo").
L2L_ZO_SUBSPACE = L2L_ZO_GAIN._replace(name="l2l-zo", query=SUBSPACE)


# ---------------------------------------------------------------- the paper's design

class PaperState(NamedTuple):
    """The state of the paper's design: the LSTM's (h, c)."""

    h: torch.Tensor
    c: torch.Tensor


def paper_init(shape, device=None) -> PaperState:
    """Zero (h, c) for coordinates of ``shape`` (..., d)."""
    return PaperState(*lstm_state(shape, device))


def paper_step(net: CoordinateLSTM, g: torch.Tensor, f, state: PaperState,
               lr) -> tuple[torch.Tensor, PaperState]:
    """One step of the paper's design: the raw g in (and a zero second input), the
    output itself out as the step. f and lr are not read: the absolute step ties the
    weights to the scale of the problems they were trained on."""

    def update(g, h, c):
        out, (h, c) = net(torch.stack([g, torch.zeros_like(g)], dim=-2).float(), (h, c))
        return out.double(), h, c

    step, h, c = per_coordinate(update, (g, state.h, state.c), into=(None, state.h, state.c))
    return step, PaperState(h, c)


def _paper_export(state: PaperState) -> dict:
    return {"h": numpy_copy(state.h), "c": numpy_copy(state.c), "moments": checkpoint_moments()}


def _paper_restore(data: dict, device) -> PaperState:
    return PaperState(*restored_lstm_state(data, device))


PAPER = Design(name="l2l-zo-paper", features="raw", step_form="direct", n_inputs=2,
               n_outputs=1, state_type=PaperState, init=paper_init, step=paper_step,
               export=_paper_export, restore=_paper_restore, architecture={},
               make_update=lambda: CoordinateLSTM(2))


#: The designs by (features, step form, QueryRNN), as a weight set's manifest entry names
#: them.
DESIGNS = {(design.features, design.step_form, design.query.name): design
           for design in (L2L_ZO, L2L_ZO_GAIN, L2L_ZO_SUBSPACE, PAPER)}


def design_for(features: str, step_form: str, query: str = "scales") -> Design:
    """The design that a manifest entry or a training config names.

    Raises
    ------
    ValueError
        For a combination that is not a design of this zominimize (the retired ones are
        described in research/experiment-log.md and reproduced at commit 8adf837).
    """
    try:
        return DESIGNS[(features, step_form, query)]
    except KeyError:
        known = ", ".join(f"features={f!r} with step_form={s!r} and query={q!r}"
                          for f, s, q in DESIGNS)
        raise ValueError(f"features={features!r} with step_form={step_form!r} and "
                         f"query={query!r} is not a design of this zominimize (it has "
                         f"{known}); designs that did not ship were retired: see "
                         f"research/experiment-log.md (reproduce at commit 8adf837)") from None
