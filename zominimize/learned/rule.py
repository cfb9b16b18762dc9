"""The learned networks as an update rule and a query sampler for ZOOptimizer.

Each keeps its LSTM state (and the running moments its features need) as torch
tensors on the run's device; x and the estimate stay float64 numpy arrays, the
networks run in float32. ``export``/``restore`` turn the states into numpy arrays
for ``state_dict()`` and back, so a checkpoint taken on a GPU resumes on a CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..rules import Rule
from ..samplers import Sampler
from .nets import (BLEND_FORMS, NORMALISED_FEATURES, CoordinateLSTM, Moments,
                   adam_corrected_step, blend_log_factor, initial_moments, log_fast_ratio,
                   normalised, query_inputs, query_scales, update_inputs)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU; 'cpu' and 'cuda' force it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device")
    return torch.device(device)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _moments_data(m: Moments) -> dict:
    data = {"count": m.count, "m": _numpy(m.m), "v": _numpy(m.v),
            "coherence": _numpy(m.coherence), "success": _numpy(m.success),
            "f_last": _numpy(m.f_last), "v_fast": _numpy(m.v_fast), "blend": _numpy(m.blend)}
    if m.v_max is not m.v:  # only max-corrected features keep a v_max of their own
        data["v_max"] = _numpy(m.v_max)
    return data


def _moments(data: dict, device) -> Moments:
    # states saved before the coherence, the success rate, the fast moment or the blend
    # weight existed come from designs that never read them
    shared = {key: torch.as_tensor(data.get(key, default), device=device)
              for key, default in (("coherence", np.zeros(1)), ("success", np.zeros(1)),
                                   ("f_last", np.full(1, np.nan)), ("v_fast", np.zeros(1)),
                                   ("blend", np.zeros(1)))}
    v = torch.as_tensor(data["v"], device=device)
    v_max = torch.as_tensor(data["v_max"], device=device) if "v_max" in data else v
    return Moments(int(data["count"]), torch.as_tensor(data["m"], device=device), v,
                   v_max=v_max, **shared)


class UpdateState(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    moments: Moments


def update_step(net: CoordinateLSTM, g: torch.Tensor, f, state: UpdateState,
                lr: float, features: str, step_form: str) -> tuple[torch.Tensor, UpdateState]:
    """One UpdateRNN step: the step (float64, d) for the estimate g and the value f at the
    iterate (a number, or a tensor per task in training), and the new state.

    The "adam" step forms (``nets.ADAM_FORMS``): lr times Adam's step corrected by
    the output (see ``nets.adam_corrected_step``); "direct" with normalised features:
    lr * output; "direct" with 'raw' features (the paper's): the output itself.
    """
    blend = step_form in BLEND_FORMS
    inputs, moments, rms = update_inputs(g, f, state.moments, features, fast=blend)
    out, (h, c) = net(inputs, (state.h, state.c))
    if step_form != "direct":
        log_factor = None
        if blend:
            log_factor, moments = blend_log_factor(out[..., 1, :], log_fast_ratio(moments, rms),
                                                   moments, step_form)
        step = adam_corrected_step(out, inputs[..., 1, :], step_form,
                                   log_factor).double().mul_(lr)
    else:
        step = out.double() * (lr if features in NORMALISED_FEATURES else 1.0)
    return step, UpdateState(h, c, moments)


def learned_rule(net: CoordinateLSTM, lr: float, features: str, step_form: str,
                 device) -> Rule:
    """The UpdateRNN as a Rule."""

    def init(d: int) -> UpdateState:
        return UpdateState(*net.initial_state(d, device), initial_moments(d, device))

    @torch.no_grad()
    def update(g: np.ndarray, f: float, state: UpdateState):
        step, state = update_step(net, torch.as_tensor(g, device=device), float(f), state, lr,
                                  features, step_form)
        return step.cpu().numpy(), state

    def export(state: UpdateState) -> dict:
        return {"h": _numpy(state.h), "c": _numpy(state.c),
                "moments": _moments_data(state.moments)}

    def restore(data: dict) -> UpdateState:
        return UpdateState(torch.as_tensor(data["h"], device=device),
                           torch.as_tensor(data["c"], device=device),
                           _moments(data["moments"], device))

    return Rule(init, update, UpdateState, export, restore)


class QueryState(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    moments: Moments
    scales: torch.Tensor  # the standard deviations for the next iteration (float64)


def query_step(net: CoordinateLSTM, g: torch.Tensor, step: torch.Tensor, state: QueryState,
               lr) -> tuple[QueryState, torch.Tensor]:
    """One QueryRNN step after an iteration: the new state (with the scales of the
    next iteration) and the raw output o (meta-training penalises ||o||^2)."""
    estimate = normalised(g, state.moments)
    out, (h, c) = net(query_inputs(estimate.g, step / lr), (state.h, state.c))
    return QueryState(h, c, estimate.moments, query_scales(out)), out


def learned_sampler(net: CoordinateLSTM, lr: float, ratio: float, device) -> Sampler:
    """The QueryRNN as a Sampler: its scales with probability ``ratio``, else s = 1.

    The coin is drawn from the run's generator, so one seed fixes it too.
    """

    def init(d: int) -> QueryState:
        h, c = net.initial_state(d, device)
        ones = torch.ones(d, dtype=torch.float64, device=device)
        return QueryState(h, c, initial_moments(d, device), ones)

    def scales(state: QueryState, rng: np.random.Generator):
        if ratio == 0 or rng.random() >= ratio:
            return None
        return state.scales.cpu().numpy()

    @torch.no_grad()
    def observe(state: QueryState, g: np.ndarray, step: np.ndarray) -> QueryState:
        return query_step(net, torch.as_tensor(g, device=device),
                          torch.as_tensor(step, device=device), state, lr)[0]

    def export(state: QueryState) -> dict:
        return {"h": _numpy(state.h), "c": _numpy(state.c),
                "moments": _moments_data(state.moments), "scales": _numpy(state.scales)}

    def restore(data: dict) -> QueryState:
        return QueryState(torch.as_tensor(data["h"], device=device),
                          torch.as_tensor(data["c"], device=device),
                          _moments(data["moments"], device),
                          torch.as_tensor(data["scales"], device=device))

    return Sampler(init, scales, observe, export, restore)
