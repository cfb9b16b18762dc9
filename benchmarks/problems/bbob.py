"""COCO's BBOB functions through ``cocoex`` (coco-experiment 2.8.2): evaluation only.

Each problem starts at the origin (the centre of BBOB's region of interest
[-5, 5]^d), is unconstrained, and is measured by f - f_opt at COCO's standard
targets 10^2 ... 10^-8.
"""

from __future__ import annotations

import numpy as np

from . import Problem

#: COCO's fixed targets on f - f_opt (a subset of its 51 log-uniform ones).
TARGET_PRECISIONS = (1e2, 1e1, 1e0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-8)
FUNCTIONS = tuple(range(1, 25))


class BBOBFunction:
    """A picklable handle on one cocoex problem (re-created in each process)."""

    def __init__(self, fid: int, dim: int, instance: int):
        self.args = (fid, dim, instance)
        self._problem = None

    def _get(self):
        if self._problem is None:
            import cocoex
            self._problem = cocoex.BareProblem("bbob", *self.args)
        return self._problem

    def __call__(self, x: np.ndarray) -> float:
        return float(self._get()(x))

    def best_value(self) -> float:
        return float(self._get().best_value())

    def __getstate__(self):
        return {"args": self.args}

    def __setstate__(self, state):
        self.args, self._problem = state["args"], None


def make(fid: int, dim: int, instance: int) -> Problem:
    fun = BBOBFunction(fid, dim, instance)
    f_opt = fun.best_value()
    return Problem(family="bbob", name=f"bbob-f{fid:02d}-i{instance:02d}-d{dim}",
                   suite=f"bbob d={dim}", x0=np.zeros(dim), fun=fun, batch_fun=None,
                   scale=2.0, targets=[f_opt + t for t in TARGET_PRECISIONS], f_opt=f_opt,
                   meta={"fid": fid, "instance": instance})
