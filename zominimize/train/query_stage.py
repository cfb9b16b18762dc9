"""The query stage: the subspace QueryRNN, trained by ES over whole runs.

Where to query pays over a run, not in a step: a split iteration measures the gradient's
part in the subspace of recent estimates exactly and leaves fewer queries for the rest,
which is worth it where successive gradients agree and not where they do not. So the
subspace QueryRNN (:data:`zominimize.learned.queries.SUBSPACE`), which sets the share of
split iterations, is trained by the ES of :mod:`zominimize.train.evolution` after the
other stages, with the UpdateRNN and its controller frozen. A QueryRNN's score is the mean
over the tasks of log(best f / the best f of the same optimizer without the QueryRNN),
on the same draws and at the same lr: the QueryRNN's own effect, below 0 where it helps.
The population runs at once along a leading axis (:class:`PopulationLSTM`).
"""

from __future__ import annotations

import math

import torch

from ..learned.nets import STATE_DTYPE, CoordinateLSTM
from . import tasks
from .controller import ControllerNets, PopulationGain
from .evolution import EvolutionStage, best_values
from .unroll import step_sizes


class PopulationLSTM:
    """P QueryRNNs at once from parameter vectors theta (P, n) in CoordinateLSTM's
    parameter order (weight_ih, weight_hh, head): inputs (P, B, n_in, d), states
    (P, B, H, d), outputs (P, B, d); the arithmetic of CoordinateLSTM without autograd."""

    def __init__(self, theta: torch.Tensor, template: CoordinateLSTM):
        shapes = [p.shape for p in template.parameters()]
        parts = torch.split(theta.float(), [math.prod(s) for s in shapes], dim=1)
        p = theta.shape[0]
        w_ih, w_hh, head = (part.reshape(p, 1, *s) for part, s in zip(parts, shapes))
        self.weights = torch.cat([w_ih, w_hh], dim=-1)  # (P, 1, 4H, n + H)
        self.head = head                                # (P, 1, 1, H)
        self.template = template

    def __call__(self, inputs: torch.Tensor, state):
        h, c = state
        gates = torch.matmul(self.weights, torch.cat([inputs, h.float()], dim=-2))
        h_new, c_new = self.template._step_into(gates, c.float())
        out = torch.matmul(self.head, h_new).squeeze(-2)
        return out, (h_new.to(STATE_DTYPE), c_new.to(STATE_DTYPE))


class QueryStage(EvolutionStage):
    """The ES training of the subspace QueryRNN around the frozen update.

    Parameters
    ----------
    config : zominimize.train.config.TrainConfig
        Its ``query_stage`` table sets the ES, its ``controller`` table the tasks.
    update_net : zominimize.learned.gain.GainedUpdate
        The UpdateRNN and its controller, frozen.
    query_net : CoordinateLSTM
        The QueryRNN that this stage trains in place.
    """

    name = "query_stage"
    reference = "no QueryRNN"

    def __init__(self, config, update_net, query_net: CoordinateLSTM):
        self.update_net, self.query_net = update_net, query_net
        super().__init__(config, torch.nn.utils.parameters_to_vector(query_net.parameters()),
                         config.seed + 1)

    def _store(self) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(self.result().float(),
                                                self.query_net.parameters())

    @torch.no_grad()
    def log_ratios(self, theta: torch.Tensor, task: tasks.TaskBatch, factor: torch.Tensor,
                   seed: int, steps: int) -> torch.Tensor:
        """log(best f / best f without the QueryRNN), (P, B), for the QueryRNNs theta
        (P, n) at lr times ``factor``."""
        q = self.config.q
        lr, _ = step_sizes(task.x0, self.settings, task.box)
        lr = lr * factor
        gain = self.update_net.gain
        nets = ControllerNets(self.update_net.rnn, PopulationGain(
            torch.nn.utils.parameters_to_vector(gain.parameters()).detach()[None]))
        plain = best_values(task, self.design, nets, lr, seed, steps, 1, q, self.settings)[0]
        ours = best_values(task, self.design, nets, lr, seed, steps, theta.shape[0], q,
                           self.settings, query_net=PopulationLSTM(theta, self.query_net))
        return torch.log(ours.clamp_min(1e-300)) - torch.log(plain.clamp_min(1e-300))
