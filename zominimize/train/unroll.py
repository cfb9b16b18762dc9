"""The learned optimizer unrolled on a batch of training tasks, graph kept for meta-gradients.

One step does what ``ZOOptimizer`` does with the learned rule and sampler (the
same functions of ``zominimize.learned``): draw q directions u = eps * s, form the
forward-difference estimate g at x, step with the UpdateRNN, and let the QueryRNN
choose the next scales. What differs is only what the meta-gradient may see:

* g is a constant with respect to x (the usual learning-to-learn truncation);
* stage 1 (training the UpdateRNN): queries are N(0, I) and g is a constant;
* stage 2 (training the QueryRNN): g depends on the QueryRNN through u, so the
  gradient reaches it through the queries, as in the paper.

The meta-gradient of f(x_{t+1}) comes from autograd through the (white-box)
training task, or, with ``meta_gradient="zo"``, from coordinate-wise central
differences (the paper's black-box option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .._optimizer import MU_RELATIVE, default_step
from ..learned.nets import CoordinateLSTM, initial_moments
from ..learned.rule import QueryState, UpdateState, query_step, update_step


@dataclass(frozen=True)
class UnrollSettings:
    """How the optimizer runs inside the unroll (the inference defaults)."""

    q: int = 20
    base_step: float = 0.1        # lr = base_step * x_scale * sqrt(q / (q + d))
    mu_relative: float = MU_RELATIVE  # mu = mu_relative * x_scale
    features: str = "rms"
    step_form: str = "direct"
    use_query: bool = False       # queries along the QueryRNN's scales
    train_query: bool = False     # let the meta-gradient reach the QueryRNN
    meta_gradient: str = "autograd"


class RunState(NamedTuple):
    x: torch.Tensor               # (B, d) float64
    update: UpdateState
    query: QueryState


def step_sizes(x0: torch.Tensor, settings: UnrollSettings):
    """(lr, mu), each (B, 1), from x_scale = max(RMS(x0), 1) as ZOOptimizer's default."""
    d = x0.shape[-1]
    x_scale = x0.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1.0)
    lr = default_step(settings.base_step, x_scale, settings.q, d)
    return lr, settings.mu_relative * x_scale


def initial_state(x0: torch.Tensor, update_net: CoordinateLSTM,
                  query_net: CoordinateLSTM) -> RunState:
    """Zero LSTM states and moments, s = 1: every run starts from scratch."""
    shape, device = tuple(x0.shape), x0.device
    update = UpdateState(*update_net.initial_state(shape, device), initial_moments(shape, device))
    ones = torch.ones(shape, dtype=torch.float64, device=device)
    query = QueryState(*query_net.initial_state(shape, device), initial_moments(shape, device), ones)
    return RunState(x0.clone(), update, query)


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


def unroll_step(fun, state: RunState, eps: torch.Tensor, update_net: CoordinateLSTM,
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
    step, update = update_step(update_net, g, f_x, state.update, lr, settings.features,
                               settings.step_form)
    query, out = state.query, None
    if settings.use_query:
        query, out = query_step(query_net, g.detach(), step.detach(), state.query, lr)
    return RunState(state.x + step, update, query), g, step, out


class _CentralDifferenceValue(torch.autograd.Function):
    """f(x) whose backward pass uses coordinate-wise central differences."""

    @staticmethod
    def forward(ctx, x, fun, h):
        ctx.save_for_backward(x.detach())
        ctx.fun, ctx.h = fun, h
        with torch.no_grad():
            return fun(x.detach())

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        d = x.shape[-1]
        eye = torch.eye(d, dtype=x.dtype, device=x.device).unsqueeze(1)  # (d, 1, d)
        with torch.no_grad():
            diff = ctx.fun(x + ctx.h * eye) - ctx.fun(x - ctx.h * eye)    # (d, B)
            h = torch.as_tensor(ctx.h, dtype=x.dtype).reshape(-1)          # (B,) or (1,)
            grad = (diff / (2 * h)).transpose(0, 1)                       # (B, d)
        return grad * grad_out.unsqueeze(-1), None, None


def value(fun, x: torch.Tensor, mu, settings: UnrollSettings) -> torch.Tensor:
    """f(x) for the meta-loss, differentiable by autograd or by central differences."""
    if settings.meta_gradient == "zo":
        return _CentralDifferenceValue.apply(x, fun, mu)
    return fun(x)
