"""The coordinate-wise LSTM that both learned networks are (torch).

One LSTM cell, shared by every coordinate, runs on a batch of size d with a state
(h, c) per coordinate (Andrychowicz et al., 2016; Ruan et al., ICLR 2020), so one
weight set serves any dimension. What the network reads and how its output becomes
a step is the design's (:mod:`zominimize.learned.designs`).
"""

from __future__ import annotations

import torch
from torch import nn

#: Hidden size of the LSTM (the paper's).
HIDDEN = 10
#: The head's weights are scaled by this at initialisation, so the first outputs are small.
HEAD_SCALE = 0.1
#: The type that holds the state (h, c) between steps: the cell computes in float32 and
#: rounds its new state to float16, which halves the state's memory (at d = 10^6 the two
#: learned nets' states are the largest part of a run's memory). h lies in (-1, 1) and c
#: changes by less than 1 a step, so it cannot overflow: beyond 2048, where float16's
#: spacing is 2, such a change rounds away.
STATE_DTYPE = torch.float16


class _LSTMWeights(nn.Module):
    """The weights of a bias-free LSTM cell, laid out as torch.nn.LSTMCell's.

    ``weight_ih`` (4H, n) and ``weight_hh`` (4H, H), gate rows in the order
    input, forget, cell, output, initialised U(-1/sqrt(H), 1/sqrt(H)): the same
    parameters, names and state-dict as ``nn.LSTMCell(n, H, bias=False)``.
    """

    def __init__(self, n_inputs: int, hidden: int):
        super().__init__()
        bound = hidden ** -0.5
        self.hidden_size = hidden
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, n_inputs).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-bound, bound))


class CoordinateLSTM(nn.Module):
    """One LSTM cell shared by all coordinates, with a linear head to ``outputs`` numbers.

    As in the paper: no biases, hidden size 10, head weights scaled by 0.1 at
    initialisation so that the first outputs are small. Coordinates run along the
    last axis: inputs (..., n, d), states (..., H, d), outputs (..., d) for one
    output and (..., outputs, d) for several. With d contiguous, each gate is one
    contiguous block, so the cell runs as fast as memory allows at large d (the
    same arithmetic as ``nn.LSTMCell``).

    Parameters
    ----------
    n_inputs : int
        Inputs per coordinate.
    hidden : int
        Hidden size.
    outputs : int
        Outputs per coordinate.
    """

    def __init__(self, n_inputs: int, hidden: int = HIDDEN, outputs: int = 1):
        super().__init__()
        self.cell = _LSTMWeights(n_inputs, hidden)
        self.head = nn.Linear(hidden, outputs, bias=False)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_SCALE)

    @property
    def hidden(self) -> int:
        return self.cell.hidden_size

    def forward(self, inputs: torch.Tensor, state):
        """inputs (..., n, d) float32 -> (output, new (h, c) of shape (..., H, d)).

        The new state holds float16 values (:data:`STATE_DTYPE`); the output reads the
        unrounded h. Without autograd the state is float16 and the gates are computed in
        place from one matrix product (the same arithmetic to float32 rounding; a test
        checks that both paths agree). Under autograd the state stays float32, holding the
        same rounded values, and the gradient passes the rounding unchanged, so that
        meta-training sees the values inference sees while its gradients keep float32's
        range. A large d runs through :func:`zominimize.learned.blocks.per_coordinate` in
        blocks.
        """
        if torch.is_grad_enabled():
            out, (h, c) = self._step(inputs, state)
            return out, (_rounded(h), _rounded(c))
        h, c = state
        weights = torch.cat([self.cell.weight_ih, self.cell.weight_hh], dim=1)  # (4H, n + H)
        gates = torch.matmul(weights, torch.cat([inputs, h.float()], dim=-2))
        h_new, c_new = self._step_into(gates, c.float())
        out = self._squeezed(torch.matmul(self.head.weight, h_new))
        return out, (h_new.to(STATE_DTYPE), c_new.to(STATE_DTYPE))

    def _squeezed(self, out: torch.Tensor) -> torch.Tensor:
        return out.squeeze(-2) if self.head.out_features == 1 else out

    def _step_into(self, gates, c):
        """The arithmetic of :meth:`_step` from the gates' pre-activations, in place in
        gates (no autograd): the new (h, c), float32."""
        k = self.hidden
        gates.narrow(-2, 0, 2 * k).sigmoid_()                # input and forget gates
        gates.narrow(-2, 3 * k, k).sigmoid_()                # output gate
        cell = _tanh_(gates.narrow(-2, 2 * k, k))            # cell candidate
        c_new = torch.addcmul(gates.narrow(-2, k, k) * c, gates.narrow(-2, 0, k), cell)
        h_new = _tanh_(cell.copy_(c_new)).mul_(gates.narrow(-2, 3 * k, k))
        return h_new, c_new

    def _step(self, inputs: torch.Tensor, state):
        h, c = (part.float() for part in state)
        hidden = self.hidden
        gates = torch.matmul(self.cell.weight_hh, h)
        gates = gates + torch.matmul(self.cell.weight_ih, inputs)
        i, f, g, o = (gates.narrow(-2, k * hidden, hidden) for k in range(4))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self._squeezed(torch.matmul(self.head.weight, h)), (h, c)


def _rounded(x: torch.Tensor) -> torch.Tensor:
    """x with the values of x.to(STATE_DTYPE), in float32, and the gradient of the
    identity (straight through the rounding)."""
    return x + (x.to(STATE_DTYPE).float() - x).detach()


def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place as 2 sigmoid(2x) - 1: the same function to float32 rounding (an
    absolute error below 1e-7), and cheaper than torch.tanh on the CPU."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)
