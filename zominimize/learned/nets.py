"""The learned optimizer's networks and the features they read (torch).

Both networks are coordinate-wise LSTMs (Andrychowicz et al., 2016; Ruan et al.,
ICLR 2020): one LSTM cell, shared by every coordinate, runs on a batch of size d
with a state (h, c) per coordinate, so one weight set serves any dimension.

UpdateRNN reads, per coordinate, the ZO estimate g and its momentum normalised by
their running RMS (the RNNprop / Adam features)::

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
    inputs = [g / sqrt(v^), m^ / sqrt(v^)]      (^: bias-corrected)

which do not change when f or x is rescaled. The feature set ``"rms-max-coherence"``
normalises by ZO-AdaMM's max-corrected RMS instead, sqrt(max_t v_t / (1 - b2^t)), so
that Adam's step read off them is ZO-AdaMM's (the package's reference and fallback;
its second moment never shrinks, so its steps shrink near an optimum as plain
Adam's do not). The feature sets ``"rms-coherence"`` and ``"rms-max-coherence"`` add a
third input, the same for every coordinate: the coherence of the estimates,
a running mean (decay BETA_C) of the cosine between g_t and the momentum m_{t-1}.
Consecutive estimates share the gradient and not the noise, so the coherence falls as
the estimate's noise grows (along ZO-Adam's path on the L2L paper's task with q = 20:
0.16 to 0.37 at d = 100, 0.02 to 0.05 at d = 1,000), and turns negative when the
steps overshoot. It is scale-free, does not
change with the size of the gradient (as m^/rms does, through v's long memory), and
tells the net what per-coordinate features cannot: how much of a step is signal.
The feature set ``"rms-max-coherence-success"`` adds a fourth shared input, the success
rate: a running mean (decay BETA_S) of 1[f(x_t) < f(x_{t-1})], read as 2 rate - 1. It
is the one input taken from f rather than from the estimates: whether the steps still
pay. Along ZO-AdaMM's path it stays at 1.00 on the L2L paper's task (d = 100 and 1,000)
and on a sphere (d = 100) until the noise floor, where it falls to 0.47; so it is a
feedback signal (grow the steps while they keep paying, as the success rules of
evolution strategies do) rather than a label of the problem.

What the UpdateRNN outputs depends on the step form:

* ``"adam"``: two numbers (a, b) per coordinate that correct ZO-Adam's step,
  x <- x + lr * (-exp(A tanh(a / A)) m^ / rms + b), A = LOG_RANGE. With a zero head
  this *is* ZO-Adam, so training starts from a sound method and the multiplier of
  Adam's step stays within exp(+-A).
* ``"adam-scale"``: the multiplier alone, x <- x - lr * exp(A tanh(a / A)) m^ / rms:
  a learned step size per coordinate and iteration. Every step keeps the sign of
  Adam's, so the net can neither add noise of its own nor turn a step around.
* ``"adam-blend"``: two numbers (a, b): the multiplier and how far the step's
  normalisation moves from ZO-AdaMM's max-corrected RMS towards a fast RMS (decay
  BETA_FAST) of the recent estimates, x <- x - lr exp(A tanh(a / A)) m^ / (rms^(1 - w)
  rms_fast^w), w = sigmoid(b - BLEND_OFFSET) (0.018 for a zero head: close to ZO-AdaMM).
  With w = 1 the step is a fast-forgetting Adam's, whose length stays as the gradient
  vanishes, as sign steps do. On the training tasks at d = 100, after 400 steps with the
  default lr, such steps end e^12 lower than ZO-AdaMM's on the L2L paper's separable task
  (f keeps falling along x* while the gradient shrinks) and e^5 higher on a quadratic
  (they stay on its noise floor). Every coordinate's step keeps the sign of Adam's, and
  |m^| <= rms_fast bounds it by lr exp(A).
* ``"adam-blend-slow"``: "adam-blend" with w a running mean (decay BETA_W, from 0) of
  sigmoid(b - BLEND_OFFSET) rather than the net's latest proposal. As the gradient
  vanishes rms / rms_fast grows (e^5 along a sphere at d = 10), so a w that flickers
  with the noise of the inputs throws the iterate off the optimum; a slow w cannot.
* ``"direct"``: one number, the step in units of the run's step size,
  x <- x + lr * out. (The paper's net reads the raw g and outputs an absolute
  step, which ties the weights to one problem scale; ``features="raw"`` keeps
  that design for the ablation.)

QueryRNN reads the previous normalised estimate and the previous step (in units of
lr) and outputs o; the query directions are u = eps * |s| with eps ~ N(0, I) and
s = 1 + o rescaled to ||s|| = sqrt(d) (the covariance diag(s^2) has trace d).

These functions are used as they are by inference (``rule.py``) and by meta-training
(``zominimize.train``), so one inference step equals one step of the training unroll.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

HIDDEN = 10
#: Coordinates per block when a large d runs without autograd (see CoordinateLSTM.forward).
CHUNK = 16384
HEAD_SCALE = 0.1
FEATURE_SETS = ("rms", "rms-coherence", "rms-max-coherence", "rms-max-coherence-success", "raw")
#: Feature sets normalised by the running RMS (those the "adam" step forms can read).
NORMALISED_FEATURES = ("rms", "rms-coherence", "rms-max-coherence", "rms-max-coherence-success")
#: Feature sets with the coherence as a third input.
COHERENCE_FEATURES = ("rms-coherence", "rms-max-coherence", "rms-max-coherence-success")
#: Feature sets normalised by the max-corrected second moment (ZO-AdaMM's).
MAX_FEATURES = ("rms-max-coherence", "rms-max-coherence-success")
#: Feature sets with the success rate of f at the iterate as a fourth input.
SUCCESS_FEATURES = ("rms-max-coherence-success",)
STEP_FORMS = ("direct", "adam", "adam-scale", "adam-blend", "adam-blend-slow")
#: The step forms that correct ZO-Adam's step, read off the normalised features.
ADAM_FORMS = ("adam", "adam-scale", "adam-blend", "adam-blend-slow")
#: The step forms that blend the normalisation towards the fast RMS.
BLEND_FORMS = ("adam-blend", "adam-blend-slow")
#: Inputs per coordinate of the UpdateRNN for each feature set (the QueryRNN always reads 2).
UPDATE_INPUTS = {"rms": 2, "rms-coherence": 3, "rms-max-coherence": 3,
                 "rms-max-coherence-success": 4, "raw": 2}
#: Outputs per coordinate of the UpdateRNN for each step form.
UPDATE_OUTPUTS = {"direct": 1, "adam": 2, "adam-scale": 1, "adam-blend": 2, "adam-blend-slow": 2}
#: The "adam" step forms multiply Adam's step by at most exp(LOG_RANGE) (or divide it).
LOG_RANGE = 3.0
#: Decays of the running moments the "rms" features are normalised by, of the coherence and
#: of the success rate.
BETA1, BETA2, BETA_C, BETA_S = 0.9, 0.999, 0.9, 0.9
#: Decay of the fast second moment of the blend step forms (BETA1's: |m^| <= rms_fast).
BETA_FAST = BETA1
#: The blend forms: w = sigmoid(b - BLEND_OFFSET), so the untrained net stays near ZO-AdaMM.
BLEND_OFFSET = 4.0
#: Decay of the running blend weight w of "adam-blend-slow".
BETA_W = 0.9
#: Floor of the normalising RMS, relative to the largest RMS of the step (float64).
RELATIVE_FLOOR = 1e-12


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
    output and (..., outputs, d) for several. With d
    contiguous, each gate is one contiguous block, which makes the cell about
    as fast as memory allows at d = 10^6 (the same arithmetic as nn.LSTMCell).
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

    def initial_state(self, shape, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c) for coordinates of ``shape`` ((d,), or (tasks, d) in training)."""
        *lead, d = (shape,) if isinstance(shape, int) else tuple(shape)
        zeros = torch.zeros(*lead, self.hidden, d, device=device)
        return zeros, zeros.clone()

    def forward(self, inputs: torch.Tensor, state):
        """inputs (..., n, d) float32 -> (output, new (h, c) of shape (..., H, d)).

        Without autograd and for large d, the coordinates go through in blocks of
        CHUNK, computed in place, so that the gates stay in cache (three times as
        fast at d = 10^6); a test checks that both paths agree.
        """
        d = inputs.shape[-1]
        if torch.is_grad_enabled() or d <= 2 * CHUNK:
            return self._step(inputs, state)
        h, c = state
        n = inputs.shape[-2]
        weights = torch.cat([self.cell.weight_ih, self.cell.weight_hh], dim=1)  # (4H, n + H)
        stacked = inputs.new_empty(inputs.shape[:-2] + (n + self.hidden, CHUNK))
        out = inputs.new_empty(inputs.shape[:-2] + (self.head.out_features, d))
        h_new, c_new = torch.empty_like(h), torch.empty_like(c)
        for start in range(0, d, CHUNK):
            block = slice(start, start + CHUNK)
            width = min(CHUNK, d - start)
            xh = stacked[..., :width]
            xh[..., :n, :] = inputs[..., block]
            xh[..., n:, :] = h[..., block]
            self._step_into(torch.matmul(weights, xh), c[..., block],
                            h_new[..., block], c_new[..., block])
            out[..., block] = torch.matmul(self.head.weight, h_new[..., block])
        return self._squeezed(out), (h_new, c_new)

    def _squeezed(self, out: torch.Tensor) -> torch.Tensor:
        return out.squeeze(-2) if self.head.out_features == 1 else out

    def _step_into(self, gates, c, h_out, c_out) -> None:
        """The arithmetic of :meth:`_step` from the gates' pre-activations, in place into
        h_out and c_out (no autograd)."""
        k = self.hidden
        gates.narrow(-2, 0, 2 * k).sigmoid_()                # input and forget gates
        gates.narrow(-2, 3 * k, k).sigmoid_()                # output gate
        cell = _tanh_(gates.narrow(-2, 2 * k, k))            # cell candidate
        torch.addcmul(gates.narrow(-2, k, k) * c, gates.narrow(-2, 0, k), cell, out=c_out)
        torch.mul(gates.narrow(-2, 3 * k, k), _tanh_(c_out.clone()), out=h_out)

    def _step(self, inputs: torch.Tensor, state):
        h, c = state
        hidden = self.hidden
        gates = torch.matmul(self.cell.weight_hh, h)
        gates = gates + torch.matmul(self.cell.weight_ih, inputs)
        i, f, g, o = (gates.narrow(-2, k * hidden, hidden) for k in range(4))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self._squeezed(torch.matmul(self.head.weight, h)), (h, c)


def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place as 2 sigmoid(2x) - 1: the same function to float32 rounding (an
    absolute error below 1e-7), and three times cheaper than torch.tanh on the CPU."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


class Moments(NamedTuple):
    """Running first and second moments of g (float64, one per coordinate), the largest
    second moment so far (the same tensor as v unless the features are max-corrected),
    the running coherence and success rate (one per run: shape (..., 1), not
    bias-corrected), the last value of f at the iterate (..., 1; NaN before the first),
    the fast second moment (decay BETA_FAST; advanced only by the blend forms, shape
    (..., 1) until then, so that the other forms hold no d-vector for it) and the running
    blend weight of "adam-blend-slow" (likewise (..., 1) zero until that form advances it)."""

    count: int
    m: torch.Tensor
    v: torch.Tensor
    coherence: torch.Tensor
    v_max: torch.Tensor
    success: torch.Tensor
    f_last: torch.Tensor
    v_fast: torch.Tensor
    blend: torch.Tensor


def initial_moments(shape, device=None) -> Moments:
    zeros = torch.zeros(shape, dtype=torch.float64, device=device)
    v = zeros.clone()
    return Moments(0, zeros, v, zeros[..., :1].clone(), v, zeros[..., :1].clone(),
                   torch.full_like(zeros[..., :1], float("nan")), zeros[..., :1].clone(),
                   zeros[..., :1].clone())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) along the last axis, kept as a size-1 axis; 0 where either is zero."""
    norms = a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)
    dot = (a * b).sum(-1, keepdim=True)
    return torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def _since_second_step(running: torch.Tensor, beta: float, count: int,
                       before: float) -> torch.Tensor:
    """A running mean (decay ``beta``) over the count - 1 steps after the first,
    bias-corrected; ``before`` until there is one."""
    observed = max(count - 1, 0)
    if observed == 0:
        return torch.full_like(running, before)
    return running / (1 - beta ** observed)


def coherence(moments: Moments) -> torch.Tensor:
    """The bias-corrected coherence (..., 1): the running mean of cos(g_t, m_{t-1}) over the
    count - 1 steps that had a previous momentum (0 before the second step)."""
    return _since_second_step(moments.coherence, BETA_C, moments.count, 0.0)


def success_rate(moments: Moments) -> torch.Tensor:
    """The bias-corrected success rate (..., 1) over the count - 1 steps that had a
    previous value of f (1/2 before the second step)."""
    return _since_second_step(moments.success, BETA_S, moments.count, 0.5)


def _advance_success(f: torch.Tensor, moments: Moments) -> Moments:
    """The moments with the success rate updated by 1[f < f_last] and f kept as f_last;
    f is the value at the iterate: a number, or a tensor of shape (...,) or (..., 1)."""
    f = torch.as_tensor(f, dtype=moments.f_last.dtype,
                        device=moments.f_last.device).reshape(moments.f_last.shape)
    if not moments.count:
        return moments._replace(f_last=f)
    success = BETA_S * moments.success + (1 - BETA_S) * (f < moments.f_last).double()
    return moments._replace(success=success, f_last=f)


def _floored(rms: torch.Tensor) -> torch.Tensor:
    """rms plus RELATIVE_FLOOR times its largest value over the d coordinates."""
    return rms + RELATIVE_FLOOR * rms.amax(dim=-1, keepdim=True).clamp_min(
        torch.finfo(torch.float64).tiny)


class Normalised(NamedTuple):
    """The estimate and its momentum over their running RMS (float64), that RMS, and the
    moments that gave it."""

    g: torch.Tensor        # g / rms
    m: torch.Tensor        # m^ / rms
    rms: torch.Tensor
    moments: Moments


def normalising_rms(moments: Moments) -> torch.Tensor:
    """The bias-corrected RMS the features are normalised by (max-corrected where v_max is
    kept), floored at RELATIVE_FLOOR times its largest value over the d coordinates, which
    keeps the features scale-free and finite."""
    return _floored(torch.sqrt(moments.v_max / (1 - BETA2 ** moments.count)))


def normalised(g: torch.Tensor, moments: Moments, max_corrected: bool = False,
               fast: bool = False) -> Normalised:
    """Update the moments with g (..., d) and normalise g and m^ by ``normalising_rms``.
    The coherence is left as it is (only the coherence features advance it). With
    ``max_corrected`` the RMS is ZO-AdaMM's, from the largest v so far; with ``fast``
    the fast second moment advances too.
    """
    count = moments.count + 1
    m = BETA1 * moments.m + (1 - BETA1) * g
    v = BETA2 * moments.v + (1 - BETA2) * g * g
    v_max = torch.maximum(moments.v_max, v) if max_corrected else v
    v_fast = BETA_FAST * moments.v_fast + (1 - BETA_FAST) * g * g if fast else moments.v_fast
    moments = moments._replace(count=count, m=m, v=v, v_max=v_max, v_fast=v_fast)
    rms = normalising_rms(moments)
    return Normalised(g / rms, (m / (1 - BETA1 ** count)) / rms, rms, moments)


def log_fast_ratio(moments: Moments, rms: torch.Tensor) -> torch.Tensor:
    """log(rms_fast / rms) per coordinate (float64), ``rms`` the ``normalising_rms`` of the
    same moments and rms_fast bias-corrected and floored alike."""
    fast = _floored(torch.sqrt(moments.v_fast / (1 - BETA_FAST ** moments.count)))
    return torch.log(fast) - torch.log(rms)


def _advance_coherence(g: torch.Tensor, moments: Moments) -> Moments:
    """The moments with the coherence updated by cos(g, m), m before it takes in g."""
    if not moments.count:
        return moments
    agreement = BETA_C * moments.coherence + (1 - BETA_C) * _cosine(g, moments.m)
    return moments._replace(coherence=agreement)


def update_inputs(g: torch.Tensor, f, moments: Moments, features: str, fast: bool = False):
    """UpdateRNN inputs (..., n, d) float32, the new moments and the RMS the inputs are
    normalised by (float64), from the estimate g (float64) and the value f at the iterate
    (a number or a tensor of shape (...,); only SUCCESS_FEATURES read it); ``fast``
    advances the fast second moment too.

    n = UPDATE_INPUTS[features]: [g, 0] ("raw"), [g/rms, m^/rms] ("rms"), the coherence
    broadcast to every coordinate as a third row (COHERENCE_FEATURES) and 2 rate - 1 from
    the success rate as a fourth (SUCCESS_FEATURES).
    """
    if features in COHERENCE_FEATURES:
        moments = _advance_coherence(g, moments)
    if features in SUCCESS_FEATURES:
        moments = _advance_success(f, moments)
    g_n, m_n, rms, moments = normalised(g, moments, features in MAX_FEATURES, fast)
    if features == "raw":
        rows = [g, torch.zeros_like(g)]
    elif features == "rms":
        rows = [g_n, m_n]
    else:
        rows = [g_n, m_n, coherence(moments).expand_as(m_n)]
        if features in SUCCESS_FEATURES:
            rows.append((2 * success_rate(moments) - 1).expand_as(m_n))
    return torch.stack(rows, dim=-2).float(), moments, rms


def query_inputs(g_normalised: torch.Tensor, step_in_lr: torch.Tensor) -> torch.Tensor:
    """QueryRNN inputs (..., 2, d) float32 from the last normalised estimate and step."""
    return torch.stack([g_normalised, step_in_lr], dim=-2).float()


def query_scales(output: torch.Tensor) -> torch.Tensor:
    """Standard deviations s = |1 + o| (float64), rescaled to ||s||_2 = sqrt(d) along the last axis."""
    s = (1 + output.double()).abs()
    d = s.shape[-1]
    return s * (d ** 0.5 / s.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def blend_log_factor(b: torch.Tensor, log_fast: torch.Tensor, moments: Moments,
                     step_form: str) -> tuple[torch.Tensor, Moments]:
    """The blend forms' log-multiplier of Adam's step, -w log(rms_fast / rms), and the
    moments: w = sigmoid(b - BLEND_OFFSET) ("adam-blend"), or its running mean with decay
    BETA_W, kept in the moments ("adam-blend-slow")."""
    w = torch.sigmoid(b - BLEND_OFFSET)
    if step_form != "adam-blend-slow":
        return -(w * log_fast.to(b.dtype)), moments
    w = BETA_W * moments.blend + (1 - BETA_W) * w.double()
    return -(w * log_fast).to(b.dtype), moments._replace(blend=w)


def adam_corrected_step(out: torch.Tensor, m_normalised: torch.Tensor, step_form: str,
                        log_factor: torch.Tensor | None = None) -> torch.Tensor:
    """The "adam" step forms, in units of lr: -exp(A tanh(a / A)) m^ / rms, plus b
    ("adam") or times exp(log_factor) (the blend forms: see ``blend_log_factor``).

    ``out`` holds (a, b) along axis -2 ((..., 2, d)) or a alone ("adam-scale", (..., d));
    ``m_normalised`` (..., d) is m^ / rms.
    """
    a, b = out.unbind(-2) if step_form != "adam-scale" else (out, None)
    if torch.is_grad_enabled():
        exponent = LOG_RANGE * torch.tanh(a / LOG_RANGE)
        if log_factor is not None:
            exponent = exponent + log_factor
        step = -torch.exp(exponent) * m_normalised
        return step + b if step_form == "adam" else step
    # the same arithmetic in place: a quarter of l2l-zo's time per iteration at d = 10^6
    exponent = torch.tanh(a / LOG_RANGE).mul_(LOG_RANGE)
    if log_factor is not None:
        exponent.add_(log_factor)
    step = exponent.exp_().mul_(m_normalised).neg_()
    return step.add_(b) if step_form == "adam" else step


def check_design(features: str, step_form: str) -> None:
    """Raise ValueError for an unknown feature set or step form, or a pair that cannot work."""
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    if step_form not in STEP_FORMS:
        raise ValueError(f"step_form must be one of {STEP_FORMS}, got {step_form!r}")
    if step_form in ADAM_FORMS and features not in NORMALISED_FEATURES:
        raise ValueError(f"step_form={step_form!r} corrects Adam's step, read off the "
                         f"RMS-normalised features {NORMALISED_FEATURES}; features={features!r} "
                         f"has none")


def make_nets(features: str = "rms", step_form: str = "direct"
              ) -> tuple[CoordinateLSTM, CoordinateLSTM]:
    """A fresh (UpdateRNN, QueryRNN) pair (inputs per coordinate: UPDATE_INPUTS, and 2)."""
    check_design(features, step_form)
    return (CoordinateLSTM(UPDATE_INPUTS[features], outputs=UPDATE_OUTPUTS[step_form]),
            CoordinateLSTM(2))
