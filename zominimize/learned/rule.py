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

from .. import estimators
from ..rules import Rule
from ..samplers import Sampler
from .designs import Design
from .nets import CoordinateLSTM
from .queries import QueryDesign


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


def learned_sampler(net: CoordinateLSTM, query: QueryDesign, lr: float, ratio: float,
                    device) -> Sampler:
    """The QueryRNN ``net`` of the design ``query`` as a Sampler: its directions with
    probability ``ratio``, else the draws of the law as they are.

    The coin is drawn from the run's generator before the directions, so one seed fixes
    it too; at ``ratio`` 0 or 1 no coin is drawn, so that the run's draws are those of
    the same run without the QueryRNN.
    """

    def draw(state, rng: np.random.Generator, law: str, rows: np.ndarray) -> np.ndarray | None:
        use = ratio == 1 or (ratio > 0 and rng.random() < ratio)
        if use and not query.usable(state):
            return None
        estimators.draw_directions(rng, law, rows)
        reach = None
        if use:
            directions = torch.from_numpy(rows)  # the design writes into the rows
            with torch.no_grad():
                shaped, reach = query.directions(state, directions)
            if shaped is not directions:
                rows[...] = shaped.numpy()
        return np.zeros(rows.shape[0]) if reach is None else reach

    @torch.no_grad()
    def observe(state, g: np.ndarray, step: np.ndarray):
        return query.observe(net, torch.as_tensor(g, device=device),
                             torch.as_tensor(step, device=device), state, lr)[0]

    return Sampler(lambda d: query.init((d,), device), draw, observe, query.export,
                   lambda data: query.restore(data, device))
