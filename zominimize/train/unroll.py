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

On a task with a box the queries and each new iterate are projected onto it, and the
estimate uses the displacements actually queried, as :mod:`zominimize.estimators` does;
on a noisy task the optimizer sees noisy values (the meta-loss never does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from .._call import MU_RELATIVE, default_step
from ..learned.designs import L2L_ZO, Design
from ..learned.nets import CoordinateLSTM
from ..learned.queries import SCALES, QueryDesign
from ..methods import ADAMM_OPTIONS
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
    query: QueryDesign = SCALES   # the QueryRNN's design
    use_query: bool = False       # queries along the QueryRNN's directions
    train_query: bool = False     # let the meta-gradient reach the QueryRNN


class RunState(NamedTuple):
    """The unroll's state: the iterates (B, d) float64 and the design's and the
    QueryRNN's states."""

    x: torch.Tensor
    update: Any
    query: Any


def step_sizes(x0: torch.Tensor, settings: UnrollSettings,
               box: tuple[torch.Tensor, torch.Tensor] | None = None):
    """(lr, mu), each (B, 1), from ZOOptimizer's default x_scale: max(RMS(x0), 1), or with
    a ``box`` (lower, upper), (B, d) each, a quarter of the RMS box width for a task whose
    bounds are all finite (as ``zominimize._call.default_x_scale``)."""
    d = x0.shape[-1]
    x_scale = x0.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1.0)
    if box is not None:
        width = box[1] - box[0]
        finite = torch.isfinite(width).all(-1, keepdim=True)
        quarter = torch.where(finite, width, 0.0).pow(2).mean(-1, keepdim=True).sqrt() / 4
        x_scale = torch.where(finite & (quarter > 0), quarter, x_scale)
    lr = default_step(settings.base_step, x_scale, settings.q, d)
    return lr, settings.mu_relative * x_scale


def initial_state(x0: torch.Tensor, settings: UnrollSettings) -> RunState:
    """Zero states and s = 1: every run starts from scratch."""
    shape, device = tuple(x0.shape), x0.device
    return RunState(x0.clone(), settings.design.init(shape, device),
                    settings.query.init(shape, device))


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


def project(x: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Points (..., B, d) clipped into the ``box`` (lower, upper), or as they are without
    one."""
    return x if box is None else torch.minimum(torch.maximum(x, box[0]), box[1])


def observe(fun, points: torch.Tensor, noise=None, z=None) -> torch.Tensor:
    """The values the optimizer sees at ``points``: fun's, or ``noise(values, z)``."""
    values = fun(points)
    return values if noise is None else noise(values, z)


def estimate(fun, x: torch.Tensor, u: torch.Tensor, mu, box=None, noise=None, z=None,
             keep_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward-difference estimate g (B, d) at x from the directions u (q, B, d), and
    the value at x (B,) that the optimizer sees, as the optimizer forms them.

    On a task with a ``box`` the queries are projected onto it and g uses the
    displacements queried, (P(x + mu u) - x) / mu; with ``noise`` the optimizer sees
    noisy values (``z`` (q + 1, B): row 0 for f(x), rows 1..q for the queries).
    ``keep_graph`` lets the meta-gradient reach u through the queried values.
    """
    with torch.no_grad():
        f_x = observe(fun, x, noise, None if z is None else z[0])
    if box is None:
        f_q = observe(fun, x + mu * u, noise, None if z is None else z[1:])
    else:
        queried = project(x + mu * u, box)
        f_q = observe(fun, queried, noise, None if z is None else z[1:])
        u = (queried - x) / mu
    if not keep_graph:
        f_q = f_q.detach()
    return forward_difference(f_x, f_q, u, mu), f_x


def unroll_step(fun, state: RunState, eps: torch.Tensor, update_net: CoordinateLSTM | None,
                query_net: CoordinateLSTM, lr, mu, settings: UnrollSettings, box=None,
                noise=None, z=None):
    """One optimizer step on the batch; eps (q, B, d) are the standard draws.

    Parameters
    ----------
    box : tuple of torch.Tensor, optional
        (lower, upper), (B, d) each: the queries and the new iterate are projected onto it,
        and the estimate uses the displacements queried, (P(x + mu u) - x) / mu.
    noise : callable, optional
        ``noise(values, z)``, what the optimizer sees of f (a noisy task's
        :attr:`zominimize.train.tasks.TaskBatch.noise`), with ``z`` (q + 1, B): row 0 for
        f(x), rows 1..q for the queries.

    Returns
    -------
    tuple
        (new state, estimate g, step, QueryRNN output o or None).
    """
    u = settings.query.directions(state.query, eps)[0] if settings.use_query else eps
    if not settings.train_query:
        u = u.detach()
    g, f_x = estimate(fun, state.x.detach(), u, mu, box, noise, z,
                      keep_graph=settings.train_query)
    step, update = settings.design.step(update_net, g, f_x, state.update, lr)
    query, out = state.query, None
    if settings.use_query:
        query, out = settings.query.observe(query_net, g.detach(), step.detach(), state.query,
                                            lr)
    return RunState(project(state.x + step, box), update, query), g, step, out


# ---------------------------------------------------------------- the zo-adamm reference

#: The decays and eps of the reference: the ``zo-adamm`` method's defaults, read from its
#: option table.
REFERENCE_BETAS = (ADAMM_OPTIONS["beta1"].default, ADAMM_OPTIONS["beta2"].default)
REFERENCE_EPS = ADAMM_OPTIONS["eps"].default


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
