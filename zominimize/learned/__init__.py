"""The learned ZO optimizer (Ruan et al., ICLR 2020): UpdateRNN and QueryRNN.

``nets`` holds the networks and their features (shared with meta-training),
``weights`` the safe loading of the shipped or user-trained weights, ``rule`` the
adapters that make the networks an update rule and a query sampler. This module
says whether a learned method can run here and builds its parts; torch is
imported only when a learned method actually runs.
"""

from __future__ import annotations

import functools
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
    (ImportError, WeightsError).
    """

    def unavailable(options: dict) -> str | None:
        if importlib.util.find_spec("torch") is None:
            reason = "torch is not installed; pip install 'zominimize[learned]'"
            if not fallback_allowed(options):
                raise ImportError(reason)
            return reason
        try:
            location = options.get("weights")
            weights.load(None if location is None else str(location), weight_set)
        except WeightsError as exc:
            if not fallback_allowed(options):
                raise
            return str(exc)
        return None

    return unavailable


@functools.lru_cache(maxsize=8)
def nets_for(location: str | None, weight_set: str, device: str):
    """(manifest entry, UpdateRNN, QueryRNN, torch device) for a run, built once."""
    from .rule import resolve_device
    entry, tensors = weights.load(location, weight_set)
    torch_device = resolve_device(device)
    update, query = weights.build_nets(entry, tensors, torch_device)
    return entry, update, query, torch_device


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
