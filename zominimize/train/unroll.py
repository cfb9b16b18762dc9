"""The learned optimizer unrolled on a batch of training tasks, graph kept for meta-gradients.

One step does what ``ZOOptimizer`` does with the learned rule and sampler (the same
design step and QueryRNN step of :mod:`zominimize.learned.designs`): draw q directions
u = eps * s, form the forward-difference estimate g at x, step with the design, and let
the QueryRNN choose the next scales. What differs is only what the meta-gradient may
see: g is a constant with respect to x (the usual learning-to-learn truncation), so in
stage 1 (training the UpdateRNN, N(0, I) queries) the gradient reaches the nets through
the steps only, and in stage 2 (training the QueryRNN) also through the queries u, as
in the paper. The meta-gradient of f(x_{t+1}) comes from autograd through the
(white-box) training task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from .._call import MU_RELATIVE, default_step
from ..learned.designs import L2L_ZO, Design, QueryState, query_init, query_step
from ..learned.nets import CoordinateLSTM
from ..rules import AdaMMState, adamm_moments, adamm_step


class Stepper(NamedTuple):
    """What the unroll steps with in a design's place: ``init(shape, device) -> state``
    and ``step(net, g, f, state, lr) -> (step, state)``, as a Design's."""

    name: str
    init: Callable[..., Any]
    step: Callable[..., tuple]


@dataclass(frozen=True)
class UnrollSettings:
    """How the optimizer runs inside the unroll (the inference defaults)."""

    q: int = 20
    base_step: float = 0.1        # lr = base_step * x_scale * sqrt(q / (q + d))
    mu_relative: float = MU_RELATIVE  # mu = mu_relative * x_scale
    design: Design | Stepper = L2L_ZO  # what steps: a learned design, or ZO_ADAMM
    use_query: bool = False       # queries along the QueryRNN's scales
    train_query: bool = False     # let the meta-gradient reach the QueryRNN


class RunState(NamedTuple):
    """The unroll's state: the iterates (B, d) float64 and the design's and the
    QueryRNN's states."""

    x: torch.Tensor
    update: Any
    query: QueryState


def step_sizes(x0: torch.Tensor, settings: UnrollSettings):
    """(lr, mu), each (B, 1), from x_scale = max(RMS(x0), 1) as ZOOptimizer's default."""
    d = x0.shape[-1]
    x_scale = x0.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1.0)
    lr = default_step(settings.base_step, x_scale, settings.q, d)
    return lr, settings.mu_relative * x_scale


def initial_state(x0: torch.Tensor, settings: UnrollSettings) -> RunState:
    """Zero states and s = 1: every run starts from scratch."""
    shape, device = tuple(x0.shape), x0.device
    return RunState(x0.clone(), settings.design.init(shape, device), query_init(shape, device))


def detach(state):
    """Cut the graph at a truncation boundary: every tensor of the (nested) state, detached."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach(value) for value in state))
    return state


def forward_difference(f_x: torch.Tensor, f_q: torch.Tensor, u: torch.Tensor,
                       mu: torch.Tensor) -> torch.Tensor:
    """The estimate g (B, d) from f at x (B,), at the q queries x + mu u (q, B) and the
    directions u (q, B, d); mu (B, 1)."""
    return (((f_q - f_x) / mu.reshape(-1)).unsqueeze(-1) * u).mean(0)


def unroll_step(fun, state: RunState, eps: torch.Tensor, update_net: CoordinateLSTM | None,
                query_net: CoordinateLSTM, lr, mu, settings: UnrollSettings):
    """One optimizer step on the batch; eps (q, B, d) are the standard draws.

    Returns (new state, estimate g, step, QueryRNN output o or None).
    """
    u = eps * state.query.scales if settings.use_query else eps
    if not settings.train_query:
        u = u.detach()
    x = state.x.detach()
    with torch.no_grad():
        f_x = fun(x)
    f_q = fun(x + mu * u)
    if not settings.train_query:
        f_q = f_q.detach()
    g = forward_difference(f_x, f_q, u, mu)
    step, update = settings.design.step(update_net, g, f_x, state.update, lr)
    query, out = state.query, None
    if settings.use_query:
        query, out = query_step(query_net, g.detach(), step.detach(), state.query, lr)
    return RunState(state.x + step, update, query), g, step, out


# ---------------------------------------------------------------- the zo-adamm reference

#: The decays and eps of the reference, the ``zo-adamm`` method's defaults.
REFERENCE_BETAS, REFERENCE_EPS = (0.9, 0.999), 1e-8


def _adamm_init(shape, device=None) -> AdaMMState:
    zeros = torch.zeros(shape, dtype=torch.float64, device=device)
    return AdaMMState(0, zeros, zeros, zeros)


def _adamm_design_step(net, g, f, state: AdaMMState, lr):
    state = adamm_moments(state, g, *REFERENCE_BETAS)
    return adamm_step(state, lr, *REFERENCE_BETAS, REFERENCE_EPS), state


#: The package's zo-adamm, stepped by the unroll in a design's place (its step reads no
#: net): the reference that validation and the "vs-best" meta-loss compare the learned
#: design with, on the same draws. Its arithmetic is the zo-adamm rule's
#: (zominimize.rules.adamm_moments and adamm_step).
ZO_ADAMM = Stepper("zo-adamm", _adamm_init, _adamm_design_step)
