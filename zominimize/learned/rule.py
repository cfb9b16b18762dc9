"""A design's UpdateRNN as an update rule, and the QueryRNN as a query sampler.

The states stay torch tensors on the run's device; x and the estimate stay float64
numpy arrays, the networks run in float32 and keep their (h, c) in float16.
``export``/``restore`` turn the states into numpy arrays for ``state_dict()`` and back
(copies), so a checkpoint taken on a GPU resumes on a CPU. At a large d a step
overwrites the state it is given instead of allocating a second one
(:mod:`zominimize.learned.blocks`): a learned rule's state belongs to its run.
"""

from __future__ import annotations

import numpy as np
import torch

from ..rules import Rule
from ..samplers import Sampler
from .designs import Design, QueryState, query_export, query_init, query_restore, query_step
from .nets import CoordinateLSTM


#: The smallest d at which "auto" runs the networks on a GPU: below it, the GPU's fixed
#: latency per step (tens of small kernels and two copies) costs more than the networks'
#: work on the CPU.
AUTO_CUDA_MIN_DIM = 10_000


def resolve_device(device: str, d: int | None = None) -> torch.device:
    """The torch device for the ``device`` option.

    Parameters
    ----------
    device : str
        "auto" (CUDA when torch sees a GPU and d is at least :data:`AUTO_CUDA_MIN_DIM`,
        else the CPU), "cpu" or "cuda".
    d : int, optional
        The problem's dimension; None counts as large.

    Raises
    ------
    ValueError
        For "cuda" when torch sees no CUDA device.
    """
    if device == "auto":
        large = d is None or d >= AUTO_CUDA_MIN_DIM
        return torch.device("cuda" if large and torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device")
    return torch.device(device)


def learned_rule(net: CoordinateLSTM, design: Design, lr: float, device) -> Rule:
    """The UpdateRNN ``net`` of ``design`` as a Rule with step size ``lr``."""

    def init(d: int):
        return design.init((d,), device)

    @torch.no_grad()
    def update(g: np.ndarray, f: float, state):
        step, state = design.step(net, torch.as_tensor(g, device=device), float(f), state, lr)
        return step.cpu().numpy(), state

    return Rule(init, update, design.state_type, design.export,
                lambda data: design.restore(data, device))


def learned_sampler(net: CoordinateLSTM, lr: float, ratio: float, device) -> Sampler:
    """The QueryRNN ``net`` as a Sampler: its scales with probability ``ratio``, else s = 1.

    The coin is drawn from the run's generator, so one seed fixes it too.
    """

    def scales(state: QueryState, rng: np.random.Generator):
        if ratio == 0 or rng.random() >= ratio:
            return None
        return state.scales.cpu().numpy()

    @torch.no_grad()
    def observe(state: QueryState, g: np.ndarray, step: np.ndarray) -> QueryState:
        return query_step(net, torch.as_tensor(g, device=device),
                          torch.as_tensor(step, device=device), state, lr)[0]

    return Sampler(lambda d: query_init((d,), device), scales, observe, query_export,
                   lambda data: query_restore(data, device))
