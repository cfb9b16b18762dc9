"""Errors and warnings raised by zominimize.

Every class also derives from the builtin a user would expect, so code can catch
either the zominimize class or the builtin (``except ValueError`` still works).
"""

from scipy.optimize import OptimizeWarning

__all__ = [
    "ZOMinimizeError",
    "ObjectiveValueError",
    "NonFiniteValueError",
    "OptimizerStateError",
    "WeightsError",
    "FallbackWarning",
    "OptimizeWarning",
]


class ZOMinimizeError(Exception):
    """Base class of every error zominimize raises on its own account."""


class ObjectiveValueError(ZOMinimizeError, ValueError):
    """The objective returned something that is not one real number."""


class NonFiniteValueError(ObjectiveValueError):
    """The objective returned NaN or infinity and ``nan_policy='raise'``."""


class OptimizerStateError(ZOMinimizeError, RuntimeError):
    """An ask/tell call out of order, or a state dict that does not fit."""


class FallbackWarning(UserWarning):
    """The requested method could not run, so its fallback method ran instead."""


class WeightsError(ZOMinimizeError, RuntimeError):
    """Learned-optimizer weights that are missing, corrupt or do not fit the networks."""
