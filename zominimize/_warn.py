"""Warnings that point at the user's line, not at zominimize's or scipy's internals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import scipy.optimize

_INTERNAL = (str(Path(__file__).resolve().parent), str(Path(scipy.optimize.__file__).parent))


def warn(message: str, category: type[Warning]) -> None:
    """Issue ``warnings.warn`` attributed to the first frame outside zominimize and scipy."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is our caller
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
