"""Checking a saved optimizer state field by field, before any of it is used.

``ZOOptimizer.load_state_dict`` reads every field through a :class:`StateReader`,
so a state that does not fit raises OptimizerStateError naming the field and
what is wrong with it, and the optimizer is changed only once all fields passed.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import OptimizerStateError

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class StateReader:
    """The fields of a state dict, each checked as it is read."""

    def __init__(self, state: Any, format_version: int):
        if not isinstance(state, dict) or state.get("format_version") != format_version:
            raise OptimizerStateError(f"state must be a dict from state_dict() with "
                                      f"format_version {format_version}")
        self.state = state

    def raw(self, name: str) -> Any:
        if name not in self.state:
            raise OptimizerStateError(f"state has no field {name!r}")
        return self.state[name]

    def fail(self, name: str, problem: str):
        raise OptimizerStateError(f"state field {name!r}: {problem}")

    def integer(self, name: str, low: int = 0, high: float = np.inf) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not low <= value <= high:
            self.fail(name, f"expected an integer in [{low}, {high}], got {value!r}")
        return int(value)

    def real(self, name: str, allow_nan: bool = True, allow_inf: bool = True) -> float:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.fail(name, f"expected a real number, got {value!r}")
        value = float(value)
        if (np.isnan(value) and not allow_nan) or (np.isinf(value) and not allow_inf):
            self.fail(name, f"expected a finite number, got {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, str):
            self.fail(name, f"expected a str or None, got {value!r}")
        return value

    def point(self, name: str, d: int, optional: bool = False) -> np.ndarray | None:
        """A finite float vector of length d (a copy), or None where allowed."""
        value = self.raw(name)
        if value is None and optional:
            return None
        try:
            arr = np.array(value, dtype=float)
        except (TypeError, ValueError):
            self.fail(name, f"expected {d} real numbers, got {type(value).__name__}")
        if arr.shape != (d,):
            self.fail(name, f"expected shape ({d},), got {arr.shape}")
        if not np.isfinite(arr).all():
            self.fail(name, "contains NaN or infinity")
        return arr

    def reals(self, name: str, max_length: int) -> list[float]:
        value = self.raw(name)
        if not isinstance(value, (list, tuple)) or len(value) > max_length:
            self.fail(name, f"expected a list of at most {max_length} numbers, got {value!r:.80}")
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            self.fail(name, "expected real numbers only")
        return [float(v) for v in value]

    def like(self, name: str, template: Any, d: int) -> Any:
        """The field, checked to have the structure of ``template``: its keys (and
        others only if shaped like a sibling), and arrays of the same shape (a
        dimension of 1 there may be d here)."""
        value = self.raw(name)
        problem = _mismatch(value, template, d)
        if problem:
            self.fail(name, problem)
        return value


def _mismatch(value: Any, template: Any, d: int, where: str = "") -> str | None:
    """Why ``value`` does not have the structure of ``template``, or None."""
    if isinstance(template, dict):
        if not isinstance(value, dict) or not set(template) <= set(value):
            keys = sorted(value) if isinstance(value, dict) else type(value).__name__
            return f"{where or 'it'} must have the keys {sorted(template)}, got {keys}"
        for key in value:  # a key a fresh state lacks must look like one of its siblings
            candidates = [template[key]] if key in template else [
                t for t in template.values() if isinstance(t, np.ndarray)]
            problems = [_mismatch(value[key], t, d, f"{where}[{key!r}]") for t in candidates]
            if all(problems):
                return problems[0] if problems else f"{where}[{key!r}] is not expected"
        return None
    if isinstance(template, np.ndarray):
        arr = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
        if arr is None or arr.dtype.kind not in "biuf" or arr.ndim != template.ndim or any(
                n != t and not (t == 1 and n == d) for n, t in zip(arr.shape, template.shape)):
            shape = getattr(arr, "shape", type(value).__name__)
            return f"{where or 'it'} must be a real array of shape {template.shape}, got {shape}"
        return None
    if isinstance(template, numbers.Real):
        if isinstance(value, bool) != isinstance(template, bool) \
                or not isinstance(value, numbers.Real):
            return f"{where or 'it'} must be a number, got {value!r:.40}"
        return None
    if template is None and value is not None:
        return f"{where or 'it'} must be None, got {value!r:.40}"
    return None


def restore_generator(reader: StateReader) -> np.random.Generator:
    """The run's random generator from the state's 'rng' field."""
    data = reader.raw("rng")
    if not isinstance(data, dict) or data.get("bit_generator") not in BIT_GENERATORS:
        reader.fail("rng", f"expected {{'bit_generator': one of {', '.join(BIT_GENERATORS)}, "
                           f"'state': ...}}, got {data!r:.80}")
    bit_generator = getattr(np.random, data["bit_generator"])()
    try:
        bit_generator.state = data["state"]
    except (KeyError, TypeError, ValueError) as exc:
        reader.fail("rng", f"not a valid {data['bit_generator']} state ({exc})")
    return np.random.Generator(bit_generator)
