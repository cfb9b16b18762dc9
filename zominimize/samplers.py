"""Query samplers: how the directions of each iteration are drawn.

A sampler draws the q directions of an iteration, keeping E[(1/q) sum_i u_i u_i^T] = I
so that the estimators stay unbiased. Like a rule, it is a set of pure functions around
an explicit state:

* ``draw(state, rng, law, rows) -> reach`` fills the (q, d) ``rows`` with the directions
  of the next iteration (``law`` is the ``directions`` option, "gaussian" or "sphere")
  and returns their reach, (q,): 0 for a random direction; for one the sampler chose
  from the run's estimates, how large those let its difference quotient
  |f(x + mu u) - f(x)| / mu be, which the outlier screening allows it
  (:func:`zominimize.estimators.outliers`). It returns None when its state cannot
  serve (non-finite);
* ``observe(state, g, step) -> state`` after the step, with that iteration's estimate g
  and the step taken.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from .estimators import draw_directions


class Sampler(NamedTuple):
    init: Callable[[int], Any]
    draw: Callable[[Any, np.random.Generator, str, np.ndarray], np.ndarray | None]
    observe: Callable[[Any, np.ndarray, np.ndarray], Any]
    export: Callable[[Any], dict]
    restore: Callable[[dict], Any]


def _draw_standard(state, rng: np.random.Generator, law: str, rows: np.ndarray) -> np.ndarray:
    draw_directions(rng, law, rows)
    return np.zeros(rows.shape[0])


def standard() -> Sampler:
    """Directions of the law alone (identity covariance): the classic ZO methods' sampler."""
    return Sampler(init=lambda d: None, draw=_draw_standard,
                   observe=lambda state, g, step: None, export=lambda state: {},
                   restore=lambda data: None)
