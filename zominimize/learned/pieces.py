"""Small pieces that the learned designs and the QueryRNNs share: LSTM states, the floored
RMS that normalises their inputs, the inner product and cosine of two estimates, and the
copies a checkpoint takes and restores."""

from __future__ import annotations

import numpy as np
import torch

from .nets import HIDDEN, STATE_DTYPE

#: Floor of a normalising RMS, relative to its largest value over the coordinates.
RELATIVE_FLOOR = 1e-12


def lstm_state(shape, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero (h, c) of shape (..., HIDDEN, d) for coordinates of ``shape`` (..., d), in the
    type the LSTM keeps its state in."""
    *lead, d = shape
    zeros = torch.zeros(*lead, HIDDEN, d, dtype=STATE_DTYPE, device=device)
    return zeros, zeros.clone()


def peak_rms(v: torch.Tensor, beta: float, count: int) -> torch.Tensor:
    """The largest bias-corrected RMS sqrt(v / (1 - beta^count)) over the coordinates, as
    (..., 1) (the RMS is monotone in v, so this is the RMS of the largest v)."""
    return torch.sqrt(v.amax(dim=-1, keepdim=True) / (1 - beta ** count))


def floored(rms: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """``rms`` plus RELATIVE_FLOOR times its largest value over the coordinates (``peak``,
    from :func:`peak_rms`): an RMS to divide by that keeps the quotient scale-free and
    finite."""
    return rms + RELATIVE_FLOOR * peak.clamp_min(torch.finfo(torch.float64).tiny)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The inner product along the last axis, kept as a size-1 axis (without a product
    array of size d)."""
    return torch.linalg.vecdot(a, b).unsqueeze(-1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) along the last axis, kept as a size-1 axis; 0 where either is zero."""
    norms = a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, inner(a, b) / norms.clamp_min(torch.finfo(torch.float64).tiny),
                       0.0)


# ---------------------------------------------------------------- checkpoints

def numpy_copy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of ``tensor``, for a checkpoint."""
    return tensor.detach().cpu().numpy().copy()


def tensor_copy(data, device) -> torch.Tensor:
    """A copy of ``data`` on ``device``: a restored state is the run's own (its step may
    overwrite it) and never shares memory with the caller's checkpoint."""
    return torch.as_tensor(data).to(device, copy=True)


def restored_lstm_state(data: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, c) from a checkpoint's ``data``, in the type the LSTM keeps its state in."""
    return tuple(tensor_copy(data[key], device).to(STATE_DTYPE) for key in ("h", "c"))


#: What a checkpoint's "moments" holds for a value a design does not keep.
_PLACEHOLDERS = {"m": 0.0, "v": 0.0, "coherence": 0.0, "success": 0.0, "f_last": np.nan,
                 "v_fast": 0.0, "blend": 0.0}


def checkpoint_moments(count: int = 0, **kept: torch.Tensor) -> dict:
    """The "moments" of a design's state in a checkpoint (``state_dict()``).

    Every design writes the same keys, count, m, v, coherence, success, f_last, v_fast
    and blend (and v_max once it is ZO-AdaMM's own), as zominimize did when all
    designs shared one state: the values it keeps, and a size-1 placeholder for the
    others, so that checkpoints written before and after load in either version.
    """
    data = {"count": count, **{key: np.full(1, value) for key, value in _PLACEHOLDERS.items()}}
    data.update({key: numpy_copy(value) for key, value in kept.items()})
    return data
