"""The controller stage: a gained design's step-size controller, trained by ES over whole runs.

The controller's task, correcting a step that is ten times off, pays only over a whole
run, so it is trained by the ES of :mod:`zominimize.train.evolution`, with the UpdateRNN
and QueryRNN of stages 1 and 2 frozen. A controller's score is the mean over the tasks of
log(best f / zo-adamm's best f at the default lr) on the same draws, every task at its
own lr factor, so that only a controller that corrects the step does well on all of them;
the population runs at once along a leading axis (:class:`PopulationGain`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from ..learned import gain
from . import tasks
from .evolution import EvolutionStage, best_values
from .unroll import ZO_ADAMM, step_sizes


class ControllerNets(NamedTuple):
    """What a gained design's step reads as its ``net``: the frozen UpdateRNN and the
    controllers (a :class:`zominimize.learned.gain.GainNet` or a :class:`PopulationGain`)."""

    rnn: Any
    gain: Any


def parameter_shapes() -> list[tuple[int, ...]]:
    """The shapes of GainNet's parameters, in the order of its parameter vector."""
    return [(gain.HIDDEN, gain.N_FEATURES), (gain.HIDDEN,), (gain.N_OUTPUTS, gain.HIDDEN),
            (gain.N_OUTPUTS,), (1,)]


class PopulationGain:
    """P controllers at once, from parameter vectors theta (P, n) in GainNet's order:
    features (P, B, F) -> outputs (P, B, O), and the levels' starts (P, 1, 1)."""

    def __init__(self, theta: torch.Tensor):
        p = theta.shape[0]
        shapes = parameter_shapes()
        parts = torch.split(theta, [math.prod(s) for s in shapes], dim=1)
        self.w1, self.b1, self.w2, self.b2, start = (part.reshape(p, *s)
                                                     for part, s in zip(parts, shapes))
        self.start = start.reshape(p, 1, 1)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(features @ self.w1.mT + self.b1.unsqueeze(1))
        return hidden @ self.w2.mT + self.b2.unsqueeze(1)


class ControllerStage(EvolutionStage):
    """The ES training of a gained design's controller around frozen nets.

    Parameters
    ----------
    config : zominimize.train.config.TrainConfig
        Its ``controller`` table sets the stage and its tasks; ``seed``, ``q``,
        ``base_step``, ``mu_relative`` and ``families`` are the run's.
    update_net : zominimize.learned.gain.GainedUpdate
        The UpdateRNN (frozen) and the controller that this stage trains in place.
    """

    name = "controller"
    reference = "zo-adamm"

    def __init__(self, config, update_net):
        self.update_net = update_net
        super().__init__(config, torch.nn.utils.parameters_to_vector(
            update_net.gain.parameters()), config.seed)

    def _store(self) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(self.result(), self.update_net.gain.parameters())

    def row(self) -> dict:
        return {"start": float(self.theta[-1])}

    @torch.no_grad()
    def log_ratios(self, theta: torch.Tensor, task: tasks.TaskBatch, factor: torch.Tensor,
                   seed: int, steps: int) -> torch.Tensor:
        """log(best f / zo-adamm's best f at the default lr), (P, B), for the controllers
        theta (P, n) at lr times ``factor``."""
        q = self.config.q
        lr, _ = step_sizes(task.x0, self.settings, task.box)
        reference = best_values(task, ZO_ADAMM, None, lr, seed, steps, 1, q, self.settings)[0]
        net = ControllerNets(self.update_net.rnn, PopulationGain(theta))
        best = best_values(task, self.design, net, lr * factor, seed, steps, theta.shape[0], q,
                           self.settings)
        return torch.log(best.clamp_min(1e-300)) - torch.log(reference.clamp_min(1e-300))
