"""A learned step-size controller around a design's step: a per-run level, a per-coordinate shape.

A design's UpdateRNN proposes each coordinate's step in units of lr, and the default lr
is a guess from the start's scale that can be ten times off either way. :func:`with_gain`
multiplies the proposed step by exp(level + shape_i), adapted from evidence the run has:

* The **level**, shared by the coordinates, starts at the learned ``start`` and changes
  each iteration by -KAPPA sign(zbar) zbar^2 + RANGE tanh(o_1), within +-LIMIT. Here
  z = sqrt(d) cos(g_t, s_{t-1}) compares the fresh estimate with the last step: its noise
  is independent of that step, so z is N(0, 1) when f does not change along it and about
  sqrt(q) cos(grad f, s_{t-1}) when it does (the hypergradient of log lr, Baydin et al.
  2018); zbar is its running mean.
* The **shape**, per coordinate, starts at SHAPE_START and follows shape_i <- clip(shape_i
  (1 - r) - kappa zbar_i, +-SHAPE_LIMIT), with z_i = sign(s_{t-1,i}) g_i / rms(g_i) the same
  signal per coordinate (stochastic meta-descent, Schraudolph 1999).
* A small MLP (:class:`GainNet`) reads seven numbers per run (z, zbar, the success rate of
  f, the level, log10 f / f_0, the agreement of the z_i and the shape's mean) and sets each
  iteration the level's correction o_1, the shape's kappa = KAPPA_C exp(KAPPA_RANGE
  tanh(o_2)) and its decay r = DECAY_MAX sigmoid(o_3 - DECAY_OFFSET). Its last layer at
  zero leaves the hand-written rules above (with kappa = KAPPA_C and a slight decay).

The controller's weights are meta-trained by evolution strategies over whole runs whose
lr is drawn over two decades around the default (:mod:`zominimize.train.controller`), so
that only a controller that corrects a wrong step does well. The per-coordinate arithmetic runs
through :func:`zominimize.learned.blocks.per_coordinate`, in place at a large d.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from ..rules import ema
from .blocks import per_coordinate

KAPPA = 0.01          # the level's hand-written response to zbar
LIMIT = 6.0           # |level| <= LIMIT
RANGE = 0.3           # the MLP's correction of the level lies within +-RANGE an iteration
BETA_Z = 0.9          # decay of zbar, the zbar_i and the agreement
BETA_S = 0.9          # decay of the success rate
BETA_G = 0.99         # decay of the running mean of g_i^2 that scales z_i
SHAPE_START, SHAPE_LIMIT = -2.3, 5.0
KAPPA_C, KAPPA_RANGE = 0.1, 1.5
DECAY_MAX, DECAY_OFFSET = 0.1, 3.0
SIGNAL_CLIP = 5.0     # |z|, |z_i| and the agreement are clipped to this
HIDDEN = 16
N_FEATURES = 7
N_OUTPUTS = 3
#: What a weight set's manifest records of the controller.
ARCHITECTURE = {"hidden": HIDDEN, "features": N_FEATURES, "outputs": N_OUTPUTS,
                "kappa": KAPPA, "limit": LIMIT, "range": RANGE, "beta_z": BETA_Z,
                "beta_s": BETA_S, "beta_g": BETA_G, "shape_start": SHAPE_START,
                "shape_limit": SHAPE_LIMIT, "kappa_c": KAPPA_C, "kappa_range": KAPPA_RANGE,
                "decay_max": DECAY_MAX, "decay_offset": DECAY_OFFSET}


class GainNet(nn.Module):
    """The controller's MLP (float64): features (..., N_FEATURES) -> outputs (..., N_OUTPUTS),
    and the level's learned start. Initialised with the output layer at zero (the
    hand-written rules), the start at 0, and the first layer N(0, 1/4) from seed 0 (the
    weights of the last two features drawn after the others, the order in which the
    controller grew)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)  # drawn on the CPU, whatever the default device
        first = torch.randn(HIDDEN, N_FEATURES - 2, generator=gen, dtype=torch.float64,
                            device="cpu")
        added = torch.randn(HIDDEN, 2, generator=gen, dtype=torch.float64, device="cpu")
        self.w1 = nn.Parameter(torch.cat([first, added], 1) * 0.5)
        self.b1 = nn.Parameter(torch.zeros(HIDDEN, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.zeros(N_OUTPUTS, HIDDEN, dtype=torch.float64))
        self.b2 = nn.Parameter(torch.zeros(N_OUTPUTS, dtype=torch.float64))
        self.start = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(features @ self.w1.T + self.b1) @ self.w2.T + self.b2


class GainedUpdate(nn.Module):
    """A design's UpdateRNN (``rnn``) with its controller (``gain``): the update network
    of a design made by :func:`with_gain`."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.gain = GainNet()


class GainState(NamedTuple):
    """The controller's state around the inner design's (``inner``): per run (..., 1) the
    level, zbar, the success rate, the last and first f and the agreement; per coordinate
    (..., d) the last step, the shape, the zbar_i and the running mean of g_i^2; and the
    number of steps taken."""

    inner: Any
    level: torch.Tensor
    z_mean: torch.Tensor
    success: torch.Tensor
    f_last: torch.Tensor
    f_first: torch.Tensor
    agreement: torch.Tensor
    last_step: torch.Tensor
    shape: torch.Tensor
    z_c: torch.Tensor
    g_square: torch.Tensor
    count: int


_PER_RUN = ("level", "z_mean", "success", "f_last", "f_first", "agreement")
_PER_COORDINATE = ("last_step", "shape", "z_c", "g_square")


def signed_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(d) cos(a, b) along the last axis, as (..., 1), clipped to +-SIGNAL_CLIP; 0 where
    either is zero."""
    norms = a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)
    dot = (a.unsqueeze(-2) @ b.unsqueeze(-1)).squeeze(-1)
    z = torch.where(norms > 0, math.sqrt(a.shape[-1]) * dot / norms.clamp_min(1e-300), 0.0)
    return z.clamp(-SIGNAL_CLIP, SIGNAL_CLIP)


def coordinate_signals(g, state: GainState):
    """The running g_i^2 and zbar_i after g, and the new agreement: the running mean of
    sqrt(d) cos(z, 1) over the per-coordinate signals z_i, about -2 when the coordinates
    all want a larger step and 0 when they disagree."""
    if not state.count:
        g_square, = per_coordinate(lambda g: (g * g,), (g,), into=(state.g_square,))
        return g_square, state.z_c, state.agreement

    def signals(g, last_step, g_square, z_c):
        g_square = ema(g_square, g * g, BETA_G)
        z = (last_step.sign() * g / g_square.clamp_min(1e-300).sqrt()).clamp(-SIGNAL_CLIP,
                                                                            SIGNAL_CLIP)
        return g_square, ema(z_c, z, BETA_Z), z

    g_square, z_c, z = per_coordinate(signals, (g, state.last_step, state.g_square, state.z_c),
                                      into=(state.g_square, state.z_c, None))
    norm = z.norm(dim=-1, keepdim=True)
    cos = torch.where(norm > 0, z.sum(-1, keepdim=True) / norm.clamp_min(1e-300), 0.0)
    return g_square, z_c, ema(state.agreement, cos.clamp(-SIGNAL_CLIP, SIGNAL_CLIP), BETA_Z)


def with_gain(inner):
    """The design ``inner`` (a :class:`zominimize.learned.designs.Design`) with its steps
    under the controller, as the parts of a Design: (init, step, export, restore)."""

    def init(shape, device=None) -> GainState:
        full = torch.zeros(shape, dtype=torch.float64, device=device)
        one = torch.zeros(full.shape[:-1] + (1,), dtype=torch.float64, device=device)
        return GainState(inner.init(shape, device), one.clone(), one.clone(), one.clone(),
                         torch.full_like(one, float("nan")), torch.full_like(one, float("nan")),
                         one.clone(), full.clone(), full + SHAPE_START, full.clone(),
                         full.clone(), 0)

    def step(net: GainedUpdate, g: torch.Tensor, f, state: GainState, lr):
        first = not state.count
        f_t = torch.as_tensor(f, dtype=torch.float64, device=g.device).reshape(
            state.f_last.shape)
        f_first = f_t if first else state.f_first
        z = signed_cosine(g, state.last_step)
        z_mean = state.z_mean if first else ema(state.z_mean, z, BETA_Z)
        success = state.success if first else ema(state.success, (f_t < state.f_last).double(),
                                                  BETA_S)
        rate = (success / (1 - BETA_S ** state.count) if state.count
                else torch.full_like(f_t, 0.5))
        g_square, z_c, agreement = coordinate_signals(g, state)
        progress = torch.log10(f_t.clamp_min(1e-300) / f_first.clamp_min(1e-300))
        features = torch.cat([z / 3, z_mean / 3, 2 * rate - 1, state.level / LIMIT,
                              progress.clamp(-30, 30) / 10, agreement / 3,
                              state.shape.mean(-1, keepdim=True) / SHAPE_LIMIT], dim=-1)
        out = net.gain(features)
        if first:
            level = net.gain.start.expand_as(f_t).clone()
            kappa, keep = torch.zeros_like(f_t), torch.ones_like(f_t)
        else:
            change = -KAPPA * z_mean.sign() * z_mean.pow(2) + RANGE * torch.tanh(out[..., :1])
            level = (state.level + change).clamp(-LIMIT, LIMIT)
            kappa = KAPPA_C * torch.exp(KAPPA_RANGE * torch.tanh(out[..., 1:2]))
            keep = 1 - DECAY_MAX * torch.sigmoid(out[..., 2:3] - DECAY_OFFSET)
        inner_step, inner_state = inner.step(net.rnn, g, f, state.inner, lr)

        def apply(inner_step, shape, z_c, level, kappa, keep):
            shape = (shape * keep - kappa * z_c).clamp(-SHAPE_LIMIT, SHAPE_LIMIT)
            step = torch.exp(level + shape) * inner_step
            return shape, step, step.clone()

        shape, step, last_step = per_coordinate(
            apply, (inner_step, state.shape, z_c, level, kappa, keep),
            into=(state.shape, inner_step, state.last_step))
        return step, GainState(inner_state, level, z_mean, success, f_t, f_first, agreement,
                               last_step, shape, z_c, g_square, state.count + 1)

    def export(state: GainState) -> dict:
        gain = {key: getattr(state, key).detach().cpu().numpy().copy()
                for key in _PER_RUN + _PER_COORDINATE}
        return {**inner.export(state.inner), "gain": {**gain, "count": state.count}}

    def restore(data: dict, device) -> GainState:
        saved = data["gain"]
        tensors = {key: torch.as_tensor(saved[key]).to(device, copy=True)
                   for key in _PER_RUN + _PER_COORDINATE}
        return GainState(inner.restore(data, device), count=int(saved["count"]), **tensors)

    return init, step, export, restore
