"""The learned ZO optimizer (Ruan et al., ICLR 2020): UpdateRNN and QueryRNN.

``nets`` holds the networks and their features (shared with meta-training),
``weights`` the safe loading of the shipped or user-trained weights, ``rule`` the
adapters that make the networks an update rule and a query sampler. This module
says whether a learned method can run here and builds its parts; torch is
imported only when a learned method actually runs.
"""

from __future__ import annotations

import importlib.util

from ..errors import WeightsError
from . import weights


def fallback_allowed(options: dict) -> bool:
    """Whether a failure to load falls back (default) or raises (default with weights=)."""
    choice = options.get("fallback")
    return options.get("weights") is None if choice is None else bool(choice)


def availability(weight_set: str):
    """``unavailable(options)`` for the learned methods that use ``weight_set``.

    Returns why the method cannot run (torch missing, weights missing, corrupt or
    of another architecture) when falling back is allowed, and raises otherwise
    (ImportError, WeightsError). It loads the weights and builds the networks (as the
    run will, from the same cache), so that every problem with a weight set meets
    the fallback policy here rather than escaping it later.
    """

    def unavailable(options: dict) -> str | None:
        if importlib.util.find_spec("torch") is None:
            reason = "torch is not installed; pip install 'zominimize[learned]'"
            if not fallback_allowed(options):
                raise ImportError(reason)
            return reason
        try:
            location = options.get("weights")
            nets_for(None if location is None else str(location), weight_set,
                     options.get("device", "auto"))
        except WeightsError as exc:
            if not fallback_allowed(options):
                raise
            return str(exc)
        return None

    return unavailable


#: Networks built so far: (file, sha256, features, step form, device) -> (device, nets).
_NETS: dict[tuple, tuple] = {}
_CACHED_NETS = 8


def nets_for(location: str | None, weight_set: str, device: str):
    """(manifest entry, UpdateRNN, QueryRNN, torch device) for a run.

    The weights are loaded (and so checked) on every call; the networks are built
    once per file content, feature set, step form and device, so a file changed on
    disk never runs on networks built from its former content.
    """
    entry, tensors = weights.load(location, weight_set)
    key = (entry["path"], entry["sha256"], entry.get("features", "rms"),
           entry.get("step_form", "direct"), device)
    if key not in _NETS:
        from .rule import resolve_device
        torch_device = resolve_device(device)
        update, query = weights.build_nets(entry, tensors, torch_device)
        if len(_NETS) >= _CACHED_NETS:
            _NETS.pop(next(iter(_NETS)))
        _NETS[key] = (torch_device, update, query)
    torch_device, update, query = _NETS[key]
    return entry, update, query, torch_device


#: Forget the built networks (as the former lru_cache's method did).
nets_for.cache_clear = _NETS.clear


def parts(settings: dict, weight_set: str):
    """(entry, update net, query net, device, lr) for a run with these settings."""
    location = settings["weights"]
    entry, update, query, device = nets_for(None if location is None else str(location),
                                            weight_set, settings["device"])
    lr = settings["lr"] if settings["lr"] is not None else settings["step"]
    return entry, update, query, device, lr


def update_rule(weight_set: str):
    """``make_rule(settings)`` for a method that steps with the UpdateRNN."""

    def make_rule(settings: dict):
        from .rule import learned_rule
        entry, update, _, device, lr = parts(settings, weight_set)
        return learned_rule(update, lr, entry.get("features", "rms"),
                            entry.get("step_form", "direct"), device)

    return make_rule


def query_sampler(weight_set: str):
    """``make_sampler(settings)`` for a method that queries with the QueryRNN."""

    def make_sampler(settings: dict):
        from .rule import learned_sampler
        _, _, query, device, lr = parts(settings, weight_set)
        return learned_sampler(query, lr, settings["query_ratio"], device)

    return make_sampler
