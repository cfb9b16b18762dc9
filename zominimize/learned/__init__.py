"""The learned ZO optimizer (Ruan et al., ICLR 2020): UpdateRNN and QueryRNN.

``designs`` holds the designs, ``queries`` the QueryRNNs, ``nets`` the coordinate-wise
LSTM, ``weights`` the safe loading of the shipped or user-trained weights, and ``rule``
the adapters that make a design an update rule and the QueryRNN a query sampler. This
module loads a weight set once for a run and builds those parts; torch is imported only
when a learned method actually runs.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, NamedTuple

from . import weights

#: Why a learned method cannot run without torch.
TORCH_MISSING = "torch is not installed; pip install 'zominimize[learned]'"


def fallback_allowed(options: dict) -> bool:
    """Whether a failure to load falls back (default) or raises (default with weights=)."""
    choice = options.get("fallback")
    return options.get("weights") is None if choice is None else bool(choice)


class LearnedParts(NamedTuple):
    """What a run of a learned method loaded: the weight set's manifest entry, the
    UpdateRNN and the QueryRNN (on ``device``, in eval mode), the torch device and the
    design (:class:`zominimize.learned.designs.Design`)."""

    entry: dict
    update: Any
    query: Any
    device: Any
    design: Any


#: Networks built so far: (file, sha256, design name, torch device) -> LearnedParts.
_PARTS: dict[tuple, LearnedParts] = {}
_CACHED_PARTS = 8


def load_parts(weight_set: str, location: str | os.PathLike | None,
               device: str, d: int | None = None) -> LearnedParts:
    """Load and check a weight set and build its networks, for one run.

    The weights are read and checked on every call (see :func:`weights.load`); the
    networks are built once per file content, design and device, so a file changed on
    disk never runs on networks built from its former content.

    Parameters
    ----------
    weight_set : str
        The set to load ("l2l-zo", "l2l-zo-paper"); a user's folder that holds a
        single set provides it whatever its name.
    location : str, path or None
        A weights folder or manifest; None for the shipped weights.
    device : str
        The ``device`` option: "auto", "cpu" or "cuda".
    d : int, optional
        The problem's dimension, which "auto" weighs (:func:`rule.resolve_device`).

    Returns
    -------
    LearnedParts

    Raises
    ------
    ImportError
        When torch is not installed.
    WeightsError
        For any problem with the weights.
    ValueError
        For device="cuda" without a CUDA device.
    """
    if importlib.util.find_spec("torch") is None:
        raise ImportError(TORCH_MISSING)
    entry, tensors = weights.load(None if location is None else os.fspath(location), weight_set)
    design = weights.design_of(entry)
    from .rule import resolve_device
    torch_device = resolve_device(device, d)
    key = (entry["path"], entry["sha256"], design.name, str(torch_device))
    if key not in _PARTS:
        update, query = weights.build_nets(entry, tensors, torch_device)
        if len(_PARTS) >= _CACHED_PARTS:
            _PARTS.pop(next(iter(_PARTS)))
        _PARTS[key] = LearnedParts(entry, update, query, torch_device, design)
    return _PARTS[key]._replace(entry=entry)


def clear_cache() -> None:
    """Forget the built networks and the read tensors."""
    _PARTS.clear()
    weights.load.cache_clear()


def make_update_rule(parts: LearnedParts, lr: float):
    """The UpdateRNN of ``parts`` as a :class:`zominimize.rules.Rule` with step size ``lr``."""
    from .rule import learned_rule
    return learned_rule(parts.update, parts.design, lr, parts.device)


def make_query_sampler(parts: LearnedParts, lr: float, query_ratio: float | None):
    """The QueryRNN of ``parts`` as a :class:`zominimize.samplers.Sampler`: its directions
    in a share ``query_ratio`` of the iterations (None: its design's default), the law's
    draws in the others."""
    from .rule import learned_sampler
    query = parts.design.query
    ratio = query.default_ratio if query_ratio is None else query_ratio
    return learned_sampler(parts.query, query, lr, ratio, parts.device)

