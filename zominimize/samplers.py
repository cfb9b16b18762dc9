"""Query samplers: where the directions of each iteration are drawn.

A sampler scales the standard directions coordinate by coordinate: u = eps * s
with eps drawn by the estimator's law (Gaussian or sphere) and s a vector of
per-coordinate standard deviations, or None for s = 1. Like a rule, it is a pair
of pure functions around an explicit state:

* ``scales(state, rng) -> s or None`` before the points of an iteration are drawn;
* ``observe(state, g, step) -> state`` after the step, with that iteration's
  estimate g and the step taken.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class Sampler(NamedTuple):
    init: Callable[[int], Any]
    scales: Callable[[Any, np.random.Generator], np.ndarray | None]
    observe: Callable[[Any, np.ndarray, np.ndarray], Any]
    export: Callable[[Any], dict]
    restore: Callable[[dict], Any]


def standard() -> Sampler:
    """Directions with identity covariance (s = 1): the classic ZO methods' sampler."""
    return Sampler(init=lambda d: None, scales=lambda state, rng: None,
                   observe=lambda state, g, step: None, export=lambda state: {},
                   restore=lambda data: None)
