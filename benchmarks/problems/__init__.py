"""Benchmark problems: each family turns a small, picklable spec into a Problem.

A spec is a plain dict ``{"family": ..., **parameters}`` so that runs can be sent to
worker processes and recorded as JSON; :func:`build` makes the Problem from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Problem:
    """One benchmark problem instance.

    Attributes
    ----------
    family, name : str
        Family ("nclsq", "attack", "bbob") and a unique instance name.
    suite : str
        The table and plot this problem belongs to, e.g. "nclsq d=100".
    x0 : ndarray
        The starting point every solver gets.
    fun : callable
        f(x) -> float.
    batch_fun : callable or None
        f(X) -> values for a (k, d) array, when batching is cheaper.
    scale : float
        Typical step length, handed to peers that ask for one (CMA-ES sigma0,
        the Nelder-Mead simplex, COBYQA's trust radius). ZO methods with default
        options do not get it.
    targets : list of float
        Loss levels for "queries to reach the target".
    f_opt : float or None
        The known optimal value, when there is one.
    assess : callable or None
        ``assess(x) -> dict`` of extra figures at the final best point.
    """

    family: str
    name: str
    suite: str
    x0: np.ndarray
    fun: Callable[[np.ndarray], float]
    batch_fun: Callable[[np.ndarray], np.ndarray] | None
    scale: float
    targets: list[float]
    f_opt: float | None = None
    assess: Callable[[np.ndarray], dict] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.x0.size)


def build(spec: dict) -> Problem:
    """The Problem described by ``spec`` (``spec["family"]`` picks the module)."""
    family = spec["family"]
    params = {k: v for k, v in spec.items() if k != "family"}
    if family == "nclsq":
        from .nclsq import make
    elif family == "attack":
        from .attack import make
    elif family == "bbob":
        from .bbob import make
    else:
        raise ValueError(f"unknown problem family {family!r}")
    return make(**params)
