"""zominimize: zeroth-order optimization with scipy's ``minimize`` interface.

``from zominimize import minimize`` replaces ``scipy.optimize.minimize``: scipy's
methods still run as before, and the zeroth-order methods ("l2l-zo", "zo-adamm",
"zo-sgd", "zo-signsgd") minimise black-box functions in thousands to millions of
dimensions from function values alone.
"""

from ._minimize import minimize, show_options
from ._optimizer import ZOOptimizer
from ._registry import get_method, method_names
from ._result import Status
from .errors import (FallbackWarning, NonFiniteValueError, ObjectiveValueError,
                     OptimizerStateError, OptimizeWarning, WeightsError, ZOMinimizeError)
from .methods import (l2l_zo, l2l_zo_paper, l2l_zo_query, l2l_zo_update, zo_adamm, zo_sgd,
                      zo_signsgd)

__version__ = "0.1.0"

__all__ = [
    "minimize", "show_options", "ZOOptimizer", "method_names", "get_method", "Status",
    "zo_sgd", "zo_signsgd", "zo_adamm", "l2l_zo", "l2l_zo_update", "l2l_zo_query",
    "l2l_zo_paper",
    "ZOMinimizeError", "ObjectiveValueError", "NonFiniteValueError",
    "OptimizerStateError", "WeightsError", "FallbackWarning", "OptimizeWarning",
]
