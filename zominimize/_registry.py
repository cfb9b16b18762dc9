"""The method registry: each ZO method is a MethodSpec, registered once by name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from ._options import Option
from .rules import Rule
from .samplers import Sampler

# scipy.optimize.minimize's own method names, passed straight through to scipy.
SCIPY_METHODS = (
    "nelder-mead", "powell", "cg", "bfgs", "newton-cg", "l-bfgs-b", "tnc", "cobyla",
    "cobyqa", "slsqp", "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov",
)


@dataclass(frozen=True)
class MethodSpec:
    """Everything zominimize knows about one method.

    Attributes
    ----------
    name : str
        The name users pass as ``method``.
    summary : str
        One line for listings.
    doc : str
        The update in math, its reference, and what its options mean.
    make_rule : callable
        ``make_rule(settings, parts) -> Rule`` from the resolved settings (lr, x_scale,
        q, d, step and the method's own options) and what ``load`` returned (None for a
        method without ``load``).
    base_step : float
        Default per-coordinate step in units of x_scale * sqrt(q / (q + d)).
    options : dict of Option
        The method's own options, on top of the shared ones.
    fallback : str or None
        Method that runs instead when ``load`` raises MethodUnavailable, and that the
        guard hands over to.
    load : callable or None
        ``load(settings) -> parts``: what the method needs before it can start (the
        learned networks), loaded once per call; ``settings`` are the parsed options and
        ``d``. It raises MethodUnavailable when the method cannot start and falling back
        is allowed, or the error itself otherwise.
    make_sampler : callable or None
        ``make_sampler(settings, parts) -> Sampler`` for a method that chooses its query
        distribution; None for the standard one.
    guarded : bool
        Watch the run and switch to ``fallback`` from the best point when it
        diverges or stalls (see ZOOptimizer).
    ablation_of : str or None
        The method this one takes apart (benchmarks compare them; they do not tune it).
    weight_set : str or None
        The pretrained weight set a learned method reads (its ``weights`` option
        replaces it); None for the classic methods.
    """

    name: str
    summary: str
    doc: str
    make_rule: Callable[[dict, Any], Rule]
    base_step: float = 0.0
    options: dict[str, Option] = field(default_factory=dict)
    fallback: str | None = None
    load: Callable[[dict], Any] | None = None
    make_sampler: Callable[[dict, Any], Sampler] | None = None
    guarded: bool = False
    ablation_of: str | None = None
    weight_set: str | None = None


class MethodUnavailable(Exception):
    """Raised by a method's ``load`` when it cannot start here and its fallback may run
    instead; the message says why."""


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry; a name may be registered only once."""
    key = spec.name.lower()
    if key in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    if key in SCIPY_METHODS:
        raise ValueError(f"method {spec.name!r} would shadow scipy's method of that name")
    _REGISTRY[key] = spec
    return spec


def method_names() -> list[str]:
    """Names of the registered ZO methods, in registration order."""
    return [spec.name for spec in _REGISTRY.values()]


def get_method(name: str) -> MethodSpec:
    """The spec registered as ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        Naming the unknown method, listing the known ones and suggesting the closest.
    """
    if not isinstance(name, str):
        raise TypeError(f"method must be a str or a callable, got {name!r}")
    spec = _REGISTRY.get(name.lower())
    if spec is None:
        known = method_names() + [m for m in SCIPY_METHODS]
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known methods: "
                         f"{', '.join(method_names())} (zominimize) and "
                         f"{', '.join(SCIPY_METHODS)} (scipy).")
    return spec


def method_options(spec: MethodSpec) -> dict[str, Option]:
    """The method's own options and those of its fallback (which may run in its place)."""
    options = dict(spec.options)
    if spec.fallback:
        options.update(get_method(spec.fallback).options)
    return options
