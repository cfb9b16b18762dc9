"""The QueryRNNs: where a learned optimizer queries, in two designs.

A query design turns the q standard draws eps of an iteration (rows, E[eps eps^T] = I)
into its directions u, keeping E[(1/q) sum_i u_i u_i^T] = I, so that the forward
difference estimate (1/q) sum_i [f(x + mu u_i) - f(x)] / mu u_i stays an unbiased
estimate of the gradient (to O(mu)) whatever the QueryRNN chooses. After each step the
QueryRNN reads the estimate and the step and sets up the next iteration. Its functions
work on any leading axes: (d,) at inference, (tasks, d) or (members, tasks, d) in
meta-training, with the draws (q, ..., d).

* :data:`SCALES` (the paper's): per-coordinate standard deviations, u = eps * s, from a
  coordinate-wise LSTM that reads the estimate and the step; trained, if at all, by
  backpropagation through the queries (stage 2 of ``zominimize.train``).
* :data:`SUBSPACE`: in some iterations k = 2 of the q directions run along an orthonormal
  basis of the running mean of the estimates and the last estimate (the gradient's part
  in that subspace, measured exactly), the others are Gaussian in its orthogonal
  complement (Meier et al. 2019, "Improving gradient estimation in evolutionary
  strategies with past descent directions"; Guided ES, Maheswaranathan et al. 2019). An
  LSTM over three numbers shared by the run (how much of the estimate lies in the
  subspace, its agreement with the running mean, whether the iteration split) sets the
  share of such iterations: the subspace pays where successive gradients agree and
  wastes k queries where they do not. It is trained by evolution strategies over whole
  runs (``zominimize.train.query_stage``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from ..rules import ema
from .blocks import blocked, per_coordinate
from .nets import CoordinateLSTM
from .pieces import (checkpoint_moments, cosine, floored, inner, lstm_state, numpy_copy,
                     peak_rms, restored_lstm_state, tensor_copy)

#: Adam's second-moment decay, which the scales design's input normalisation uses.
BETA2 = 0.999
#: Directions along the subspace in a split iteration (its basis: the running mean of the
#: estimates and the last estimate).
SUBSPACE_DIRECTIONS = 2
#: Decay of the running mean of the estimates.
BETA_MEAN = 0.9
#: A basis vector is kept when its part orthogonal to the earlier ones is at least this
#: fraction of its length (else the iteration does not split).
BASIS_TOLERANCE = 1e-6
#: The smallest squared length of a basis vector: float64's smallest normal number over
#: its epsilon, so that inner products of the estimates, whose terms may fall below the
#: normal range, still hold their precision.
SQUARE_FLOOR = torch.finfo(torch.float64).tiny / torch.finfo(torch.float64).eps
#: The share of split iterations is sigmoid(o + SPLIT_OFFSET), o the LSTM's output: an
#: untrained net (o near 0) splits in most iterations.
SPLIT_OFFSET = 2.0


class QueryDesign(NamedTuple):
    """A QueryRNN: what it reads, how it shapes the draws, and its state.

    Attributes
    ----------
    name : str
        "scales" or "subspace", as a weight set's architecture records it.
    n_inputs : int
        Inputs per cell of its LSTM.
    init : callable
        ``init(shape, device) -> state`` for coordinates of ``shape`` (..., d).
    directions : callable
        ``directions(state, eps) -> (u, reach)``: the directions (q, ..., d) from the
        standard draws eps (float64), in place in eps when eps is (q, d) and no autograd
        runs. The draws may lie on another device than the state (the CPU at inference):
        what they need of the state (O(d) numbers) goes to theirs. ``reach`` is None
        when every direction is random (always in batched calls), else a numpy array
        (q,): for each direction chosen from the run's estimates, how large the
        estimates let its difference quotient |f(x + mu u) - f(x)| / mu be; 0 for the
        random ones (see :func:`zominimize.estimators.outliers`).
    usable : callable
        ``usable(state) -> bool``: whether its directions are finite and of full rank.
    observe : callable
        ``observe(net, g, step, state, lr) -> (state, o)`` after a step: the state for
        the next iteration and the net's raw output o.
    export, restore : callable
        ``export(state) -> dict`` of numpy arrays and numbers, ``restore(dict, device)
        -> state``.
    default_ratio : float
        The share of iterations that use its directions when the ``query_ratio`` option
        is left at None.
    architecture : dict
        What a weight set's manifest records of it.
    """

    name: str
    n_inputs: int
    init: Callable[..., Any]
    directions: Callable[..., torch.Tensor]
    usable: Callable[[Any], bool]
    observe: Callable[..., tuple]
    export: Callable[[Any], dict]
    restore: Callable[[dict, Any], Any]
    default_ratio: float
    architecture: dict

    def make_net(self) -> CoordinateLSTM:
        """A fresh QueryRNN."""
        return CoordinateLSTM(self.n_inputs)


# ---------------------------------------------------------------- scales (the paper's)

class QueryState(NamedTuple):
    """The scales QueryRNN's state: (h, c), the step count and second moment of g (float64)
    that normalise its input, and the standard deviations for the next iteration (float64)."""

    h: torch.Tensor
    c: torch.Tensor
    count: int
    v: torch.Tensor
    scales: torch.Tensor


def query_init(shape, device=None) -> QueryState:
    """Zero state and s = 1 for coordinates of ``shape`` (..., d)."""
    return QueryState(*lstm_state(shape, device), 0,
                      torch.zeros(shape, dtype=torch.float64, device=device),
                      torch.ones(shape, dtype=torch.float64, device=device))


def normalised_scales(s: torch.Tensor) -> torch.Tensor:
    """Standard deviations ``s`` rescaled to ||s||_2 = sqrt(d) along the last axis, so that
    the covariance diag(s^2) has trace d, as N(0, I)'s (in place in blocked mode)."""
    d = s.shape[-1]
    factor = d ** 0.5 / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return s.mul_(factor) if blocked(d, s.device) else s * factor


def query_step(net: CoordinateLSTM, g: torch.Tensor, step: torch.Tensor, state: QueryState,
               lr) -> tuple[QueryState, torch.Tensor]:
    """One scales QueryRNN step after an iteration: the new state (with the scales of the
    next iteration) and the raw output o (meta-training penalises ||o||^2).

    It reads the estimate over its running (plain Adam's) RMS and the step in units of lr;
    the scales are s = |1 + o| (float64), normalised by :func:`normalised_scales`. Like the
    designs' steps, it runs through :func:`per_coordinate`.
    """
    count = state.count + 1
    v, = per_coordinate(lambda g, v: (ema(v, g * g, BETA2),), (g, state.v), into=(state.v,))
    peak = peak_rms(v, BETA2, count)

    def observe(g, step, v, h, c):
        rms = floored(torch.sqrt(v / (1 - BETA2 ** count)), peak)
        out, (h, c) = net(torch.stack([g / rms, step / lr], dim=-2).float(), (h, c))
        return (1 + out.double()).abs(), out, h, c

    s, out, h, c = per_coordinate(observe, (g, step, v, state.h, state.c),
                                  into=(state.scales, None, state.h, state.c))
    return QueryState(h, c, count, v, normalised_scales(s)), out


def _scaled(state: QueryState, eps: torch.Tensor) -> tuple[torch.Tensor, None]:
    scales = state.scales.to(eps.device)
    if eps.dim() == 2 and not torch.is_grad_enabled():
        return eps.mul_(scales), None
    return eps * scales, None


def _scales_usable(state: QueryState) -> bool:
    return bool(torch.isfinite(state.scales).all() and (state.scales > 0).all())


def query_export(state: QueryState) -> dict:
    """The scales QueryRNN's state in a checkpoint."""
    return {"h": numpy_copy(state.h), "c": numpy_copy(state.c),
            "moments": checkpoint_moments(state.count, v=state.v),
            "scales": numpy_copy(state.scales)}


def query_restore(data: dict, device) -> QueryState:
    """The scales QueryRNN's state from a checkpoint."""
    return QueryState(*restored_lstm_state(data, device),
                      int(data["moments"]["count"]), tensor_copy(data["moments"]["v"], device),
                      tensor_copy(data["scales"], device))


SCALES = QueryDesign(
    name="scales", n_inputs=2, init=query_init, directions=_scaled, usable=_scales_usable,
    observe=query_step, export=query_export, restore=query_restore, default_ratio=0.5,
    architecture={})


# ---------------------------------------------------------------- subspace

class SubspaceState(NamedTuple):
    """The subspace QueryRNN's state: its LSTM's (h, c) over one cell per run, (..., H, 1);
    the running mean of the estimates and the last estimate (float64, (..., d)); the
    credit of split iterations, (..., 1), and whether the next iteration splits, (..., 1)
    bool."""

    h: torch.Tensor
    c: torch.Tensor
    count: int
    mean: torch.Tensor
    last: torch.Tensor
    credit: torch.Tensor
    split: torch.Tensor


def subspace_init(shape, device=None) -> SubspaceState:
    """Zero state: no estimate yet, so the first iteration does not split."""
    *lead, _ = shape
    zeros = torch.zeros(shape, dtype=torch.float64, device=device)
    one = torch.zeros(*lead, 1, dtype=torch.float64, device=device)
    return SubspaceState(*lstm_state((*lead, 1), device), 0, zeros, zeros.clone(), one,
                         torch.zeros(one.shape, dtype=torch.bool, device=device))


class SubspaceFrame(NamedTuple):
    """Gram-Schmidt of (mean, last) in inner products alone, each (..., 1): |mean|, |last|,
    last's component along mean's direction, the length of its part orthogonal to mean,
    and whether the two span a plane (that part at least BASIS_TOLERANCE |last|, both
    squared lengths at least SQUARE_FLOOR). No array of size d is made, so that an
    iteration's features and reach at d = 10^6 cost passes over the data, not memory."""

    norm_mean: torch.Tensor
    norm_last: torch.Tensor
    along: torch.Tensor
    across: torch.Tensor
    valid: torch.Tensor


def subspace_frame(mean: torch.Tensor, last: torch.Tensor) -> SubspaceFrame:
    """The :class:`SubspaceFrame` of ``mean`` and ``last``."""
    mean_sq, last_sq = inner(mean, mean), inner(last, last)
    along = inner(mean, last) / mean_sq.sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    across_sq = (last_sq - along.square()).clamp_min(0.0)
    valid = ((mean_sq >= SQUARE_FLOOR) & (across_sq >= SQUARE_FLOOR)
             & (across_sq > BASIS_TOLERANCE ** 2 * last_sq))
    return SubspaceFrame(mean_sq.sqrt(), last_sq.sqrt(), along, across_sq.sqrt(), valid)


def subspace_basis(mean: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An orthonormal basis of span(mean, last) by Gram-Schmidt, (..., 2, d), and whether
    it is one, (..., 1) bool (see :class:`SubspaceFrame`). Rows that are not a basis are
    zero."""
    frame = subspace_frame(mean, last)
    tiny = torch.finfo(torch.float64).tiny
    first = mean / frame.norm_mean.clamp_min(tiny)
    rest = last - frame.along * first
    second = rest / rest.norm(dim=-1, keepdim=True).clamp_min(tiny)
    basis = torch.stack([first, second], dim=-2)
    return torch.where(frame.valid.unsqueeze(-1), basis, 0.0), frame.valid


def _basis_into(out: torch.Tensor, mean: torch.Tensor, last: torch.Tensor,
                frame: SubspaceFrame) -> torch.Tensor:
    """:func:`subspace_basis` of one run whose frame is valid, written into ``out`` (2, d)
    without temporaries of size d."""
    first = torch.div(mean, frame.norm_mean, out=out[0])
    second = out[1].copy_(last).add_(first, alpha=-float(frame.along))
    second.div_(second.norm())
    return out


def split_directions(basis: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The directions of a split iteration from the draws eps (q, ..., d), q > 2, and an
    orthonormal ``basis`` (..., 2, d): rows 0 and 1 are sqrt(q) times the basis vectors,
    rows 2..q-1 the draws projected onto the basis's orthogonal complement and scaled by
    sqrt(q / (q - 2)), so that (1/q) sum u u^T has mean B B^T + (I - B B^T) = I.

    For eps (q, d) without autograd the directions are written into eps itself (the
    basis may be eps's first two rows).
    """
    q, k = eps.shape[0], basis.shape[-2]
    grow = (q / (q - k)) ** 0.5
    if eps.dim() == 2 and not torch.is_grad_enabled():
        rest = eps[k:]
        rest.addmm_(rest @ basis.T, basis, alpha=-1).mul_(grow)
        eps[:k].copy_(basis).mul_(q ** 0.5)
        return eps
    rest = eps[k:]
    coefficients = torch.einsum("q...d,...kd->q...k", rest, basis)
    rest = (rest - torch.einsum("q...k,...kd->q...d", coefficients, basis)) * grow
    along = (basis * q ** 0.5).movedim(-2, 0)
    lead = torch.broadcast_shapes(rest.shape[1:], along.shape[1:])
    return torch.cat([along.expand(k, *lead), rest.expand(q - k, *lead)])


def _subspace_directions(state: SubspaceState,
                         eps: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
    """Split directions in the runs whose state says so, the draws in the others.

    The reach of a split iteration's subspace directions is sqrt(q) max(|mean|, |last|):
    |grad f . b| <= |grad f| for a unit vector b, and the estimates' norms stand for
    |grad f| (a ZO estimate's norm is, on average, at least the gradient's).
    """
    q = eps.shape[0]
    if q <= SUBSPACE_DIRECTIONS or not bool(state.split.any()):
        return eps, None
    mean, last = state.mean.to(eps.device), state.last.to(eps.device)
    if eps.dim() == 2 and not torch.is_grad_enabled():
        frame = subspace_frame(mean, last)
        if not bool(state.split.to(eps.device) & frame.valid):
            return eps, None
        basis = _basis_into(eps[:SUBSPACE_DIRECTIONS], mean, last, frame)
        reach = np.zeros(q)
        reach[:SUBSPACE_DIRECTIONS] = q ** 0.5 * float(torch.maximum(frame.norm_mean,
                                                                     frame.norm_last))
        return split_directions(basis, eps), reach
    basis, valid = subspace_basis(mean, last)
    return torch.where(state.split.to(eps.device) & valid,
                       split_directions(basis, eps), eps), None


def subspace_features(g: torch.Tensor, state: SubspaceState) -> torch.Tensor:
    """The LSTM's inputs (..., 3, 1) after an iteration with estimate g: 2 r - 1, r the
    share of |g|^2 in the span of the iteration's basis (0 without one); the cosine
    between g and the running mean of the earlier estimates; +1 if the iteration split,
    -1 if not. Computed from inner products (:class:`SubspaceFrame`), without the basis."""
    frame = subspace_frame(state.mean, state.last)
    on_first = inner(g, state.mean) / torch.where(frame.valid, frame.norm_mean, 1.0)
    on_second = ((inner(g, state.last) - frame.along * on_first)
                 / torch.where(frame.valid, frame.across, 1.0))
    norm2 = inner(g, g).clamp_min(torch.finfo(torch.float64).tiny)
    share = torch.where(frame.valid, (on_first.square() + on_second.square()) / norm2, 0.0)
    split = torch.where(state.split & frame.valid, 1.0, -1.0)
    return torch.stack([2 * share - 1, cosine(g, state.mean), split], dim=-2)


def subspace_step(net: CoordinateLSTM, g: torch.Tensor, step: torch.Tensor,
                  state: SubspaceState, lr) -> tuple[SubspaceState, torch.Tensor]:
    """One subspace QueryRNN step after an iteration with estimate g: the new state and the
    LSTM's raw output o, (..., 1).

    The share of split iterations is p = sigmoid(o + SPLIT_OFFSET); they are spread
    evenly (error diffusion: a credit grows by p each iteration and a split spends 1),
    so the choice draws nothing from the run's generator. ``step`` and ``lr`` are not
    read.
    """
    out, (h, c) = net(subspace_features(g, state).float(), (state.h, state.c))
    share = torch.sigmoid(out.double() + SPLIT_OFFSET)
    credit = state.credit + torch.where(torch.isfinite(share), share, 0.0)
    split = credit >= 1
    credit = torch.where(split, credit - 1, credit)
    if g.dim() == 1 and not torch.is_grad_enabled():  # inference: the run's own tensors
        mean, last = state.mean.mul_(BETA_MEAN).add_(g, alpha=1 - BETA_MEAN), state.last.copy_(g)
    else:
        mean, last = ema(state.mean, g, BETA_MEAN), g.clone()
    return SubspaceState(h, c, state.count + 1, mean, last, credit, split), out


def subspace_export(state: SubspaceState) -> dict:
    """The subspace QueryRNN's state in a checkpoint."""
    return {"h": numpy_copy(state.h), "c": numpy_copy(state.c), "count": state.count,
            "mean": numpy_copy(state.mean), "last": numpy_copy(state.last),
            "credit": numpy_copy(state.credit), "split": numpy_copy(state.split)}


def subspace_restore(data: dict, device) -> SubspaceState:
    """The subspace QueryRNN's state from a checkpoint."""
    return SubspaceState(*restored_lstm_state(data, device), int(data["count"]),
                         *(tensor_copy(data[key], device).double()
                           for key in ("mean", "last", "credit")),
                         tensor_copy(data["split"], device).bool())


SUBSPACE = QueryDesign(
    name="subspace", n_inputs=3, init=subspace_init, directions=_subspace_directions,
    usable=lambda state: True, observe=subspace_step, export=subspace_export,
    restore=subspace_restore, default_ratio=1.0,
    architecture={"query": "subspace", "query_inputs": 3, "subspace_directions":
                  SUBSPACE_DIRECTIONS, "beta_mean": BETA_MEAN, "split_offset": SPLIT_OFFSET})
