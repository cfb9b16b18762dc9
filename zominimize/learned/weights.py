"""Learned-optimizer weights on disk: the manifest, integrity checks and safe loading.

A weights folder holds ``manifest.json`` and one ``.pt`` file per weight set. The
manifest records the format version and, for each named set, its file, sha256,
architecture, feature set, step form (absent for sets written before step forms
existed: "direct"), and how it was trained (configuration, task families,
command, final metrics). Files are read with ``torch.load(weights_only=True)``: no
pickled code is ever executed. The hash and the architecture are checked before
the tensors are used; every problem raises WeightsError naming the file and what
is wrong.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
from pathlib import Path

from ..errors import WeightsError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SET = "l2l-zo"


def architecture(step_form: str = "direct", features: str = "rms") -> dict:
    """The architecture this version of zominimize builds for a step form and feature set
    (compared with the manifest's). The "adam" form's UpdateRNN has two outputs per
    coordinate, and the coherence features give it a third input; the "adam"
    forms record the multiplier's range, the "adam-scale" form its name, and the
    blend forms also the blend's offset and the fast moment's decay ("adam-blend-slow":
    and the blend weight's decay)."""
    from .nets import (BETA_FAST, BETA_W, BLEND_FORMS, BLEND_OFFSET, HEAD_SCALE, HIDDEN,
                       LOG_RANGE, UPDATE_INPUTS, UPDATE_OUTPUTS)
    layout = {"cell": "lstm", "hidden": HIDDEN, "inputs": 2, "bias": False,
              "head_scale": HEAD_SCALE, "nets": ["update", "query"]}
    if step_form == "adam":
        layout.update(update_outputs=UPDATE_OUTPUTS[step_form], log_range=LOG_RANGE)
    elif step_form == "adam-scale":
        layout.update(update_step="adam-scale", log_range=LOG_RANGE)
    elif step_form in BLEND_FORMS:
        layout.update(update_step=step_form, update_outputs=UPDATE_OUTPUTS[step_form],
                      log_range=LOG_RANGE, blend_offset=BLEND_OFFSET, beta_fast=BETA_FAST)
        if step_form == "adam-blend-slow":
            layout.update(beta_w=BETA_W)
    if UPDATE_INPUTS.get(features, 2) != 2:
        layout.update(update_inputs=UPDATE_INPUTS[features])
    return layout


def shipped_dirs() -> list[Path]:
    """Where shipped weights live: in the installed package, then in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    return [package / "pretrained", package.parent / "pretrained"]


def find_manifest(location: str | Path | None = None) -> Path:
    """The manifest at ``location`` (a manifest file or its folder), or the shipped one.

    Raises
    ------
    WeightsError
        If there is none.
    """
    if location is not None:
        path = Path(location)
        path = path / MANIFEST if path.is_dir() else path
        if not path.is_file():
            raise WeightsError(f"no weights manifest at {path}")
        return path
    for folder in shipped_dirs():
        if (folder / MANIFEST).is_file():
            return folder / MANIFEST
    raise WeightsError("no pretrained weights found (no manifest.json in "
                       + ", ".join(str(p) for p in shipped_dirs()) + ")")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: format_version {manifest.get('format_version')!r} "
                           f"is not {FORMAT_VERSION}" if isinstance(manifest, dict)
                           else f"{path}: the manifest is not a JSON object")
    if not isinstance(manifest.get("weights"), dict) or not manifest["weights"]:
        raise WeightsError(f"{path}: the manifest lists no weight sets")
    return manifest


@functools.lru_cache(maxsize=16)
def load(location: str | None = None, name: str | None = None) -> tuple[dict, dict]:
    """Load one weight set: (its manifest entry, {"update": state_dict, "query": ...}).

    ``name`` picks the set (default "l2l-zo"); a user's folder (``location``) that
    holds a single set provides it whatever its name. The file's sha256 and the
    architecture must match the manifest and this version's networks.
    """
    import torch

    manifest_path = find_manifest(location)
    manifest = read_manifest(manifest_path)
    sets = manifest["weights"]
    name = name or DEFAULT_SET
    if name not in sets and location is not None and len(sets) == 1:
        name = next(iter(sets))  # a user's own training holds one set, whatever its name
    if name not in sets:
        raise WeightsError(f"{manifest_path}: no weight set {name!r} (has {', '.join(sets)})")
    entry = sets[name]
    file = manifest_path.parent / entry["file"]
    if not file.is_file():
        raise WeightsError(f"{file}: missing (listed in {manifest_path})")
    actual = sha256(file)
    if actual != entry.get("sha256"):
        raise WeightsError(f"{file}: sha256 {actual} does not match the manifest's "
                           f"{entry.get('sha256')} (corrupt or replaced file)")
    from .nets import check_design
    try:
        check_design(entry.get("features", "rms"), entry.get("step_form", "direct"))
    except ValueError as exc:
        raise WeightsError(f"{file}: {exc}") from None
    expected = architecture(entry.get("step_form", "direct"), entry.get("features", "rms"))
    if entry.get("architecture") != expected:
        raise WeightsError(f"{file}: architecture {entry.get('architecture')} does not "
                           f"match this zominimize's {expected}")
    try:
        tensors = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{file}: cannot be loaded safely ({type(exc).__name__}: {exc})") from None
    if not isinstance(tensors, dict) or set(tensors) != {"update", "query"}:
        raise WeightsError(f"{file}: expected the state dicts 'update' and 'query', "
                           f"got {sorted(tensors) if isinstance(tensors, dict) else type(tensors)}")
    return {**entry, "name": name, "path": str(file)}, tensors


def build_nets(entry: dict, tensors: dict, device):
    """The (UpdateRNN, QueryRNN) of a loaded weight set, on ``device``, in eval mode."""
    from .nets import make_nets
    update, query = make_nets(entry.get("features", "rms"), entry.get("step_form", "direct"))
    for net, key in ((update, "update"), (query, "query")):
        try:
            net.load_state_dict(tensors[key])
        except RuntimeError as exc:
            raise WeightsError(f"{entry['path']}: the {key} network's tensors do not fit: "
                               f"{str(exc).splitlines()[0]}") from None
        net.to(device).eval()
        net.requires_grad_(False)
    return update, query


def save(folder: Path, name: str, nets: tuple, features: str, step_form: str,
         training: dict) -> Path:
    """Write a weight set and its manifest entry (the format :func:`load` reads).

    Other sets already in the folder's manifest are kept.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.pt"
    update, query = nets
    torch.save({"update": {k: v.detach().cpu() for k, v in update.state_dict().items()},
                "query": {k: v.detach().cpu() for k, v in query.state_dict().items()}}, file)
    manifest_path = folder / MANIFEST
    with open(folder / ".manifest.lock", "w") as lock:  # two trainings may finish together
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = (read_manifest(manifest_path) if manifest_path.is_file()
                    else {"format_version": FORMAT_VERSION, "weights": {}})
        manifest["weights"][name] = {"file": file.name, "sha256": sha256(file),
                                     "architecture": architecture(step_form, features),
                                     "features": features, "step_form": step_form,
                                     "training": training}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    load.cache_clear()
    return manifest_path
