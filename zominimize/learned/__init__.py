"""The learned ZO optimizer (UpdateRNN + QueryRNN): availability checks.

``l2l-zo`` runs only when torch is installed and pretrained weights are found;
otherwise it falls back to ``zo-adamm`` with a FallbackWarning and the reason in
``result.fallback``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MANIFEST = "manifest.json"


def pretrained_dirs() -> list[Path]:
    """Where shipped weights may live: inside the installed package, then the source tree."""
    package = Path(__file__).resolve().parents[1]
    return [package / "pretrained", package.parent / "pretrained"]


def find_manifest() -> Path | None:
    """The first ``pretrained/manifest.json`` found, or None."""
    for folder in pretrained_dirs():
        if (folder / MANIFEST).is_file():
            return folder / MANIFEST
    return None


def unavailable_reason(options: dict) -> str | None:
    """Why the learned optimizer cannot run here, or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed; pip install 'zominimize[learned]'"
    if find_manifest() is None:
        looked = ", ".join(str(p) for p in pretrained_dirs())
        return f"no pretrained weights found (no {MANIFEST} in {looked})"
    return "this version of zominimize has no learned update rule to load the weights into"
