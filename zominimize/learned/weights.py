"""Learned-optimizer weights on disk: the manifest, integrity checks and safe loading.

A weights folder holds ``manifest.json`` and one ``.pt`` file per weight set. The
manifest records the format version and, for each named set, its file, sha256,
architecture, design (its "features" and "step_form") and how it was trained. Files
are read with ``torch.load(weights_only=True)``, so no pickled code is ever executed.
The hash, the design and the architecture are checked before the tensors are used,
and the tensors must be the networks' (names, shapes, dtype) and finite; every
problem raises WeightsError naming the file and what is wrong. A manifest may only
name plain files in its own folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

from ..errors import WeightsError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SET = "l2l-zo"


def architecture(design) -> dict:
    """The architecture this zominimize builds for ``design``, as the manifest records it
    (and as :func:`load` compares with the manifest's)."""
    from .nets import HEAD_SCALE, HIDDEN
    return {"cell": "lstm", "hidden": HIDDEN, "inputs": 2, "bias": False,
            "head_scale": HEAD_SCALE, "nets": ["update", "query"], **design.architecture,
            **design.query.architecture}


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
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict:
    """The manifest at ``path``: a JSON object of this format version listing weight sets.

    The sets' entries are checked by :func:`load`, one at a time, so that a bad entry
    does not stop the others from loading.
    """
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise WeightsError(f"{path}: the manifest is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: format_version {manifest.get('format_version')!r} "
                           f"is not {FORMAT_VERSION}")
    if not isinstance(manifest.get("weights"), dict) or not manifest["weights"]:
        raise WeightsError(f"{path}: the manifest lists no weight sets")
    return manifest


def check_entry(manifest_path: Path, name: str, entry) -> None:
    """Raise WeightsError unless the manifest entry of set ``name`` has fields of the right type.

    "file" and "sha256" are required strings, "features", "step_form" and "query"
    optional strings (by default "rms", "direct" and "scales", as written before they
    existed),
    "architecture" an object, "training" an optional object.
    """
    where = f"{manifest_path}: weight set {name!r}"
    if not isinstance(entry, dict):
        raise WeightsError(f"{where} is not a JSON object, got {type(entry).__name__}")
    if not isinstance(entry.get("file"), str):
        raise WeightsError(f"{where}: 'file' must be a file name, got {entry.get('file')!r}")
    digest = entry.get("sha256")
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        raise WeightsError(f"{where}: 'sha256' must be 64 lowercase hex digits, got {digest!r}")
    for key in ("features", "step_form", "query"):
        if key in entry and not isinstance(entry[key], str):
            raise WeightsError(f"{where}: {key!r} must be a string, got {entry[key]!r}")
    if not isinstance(entry.get("architecture"), dict):
        raise WeightsError(f"{where}: 'architecture' must be a JSON object, "
                           f"got {entry.get('architecture')!r}")
    if "training" in entry and not isinstance(entry["training"], dict):
        raise WeightsError(f"{where}: 'training' must be a JSON object, "
                           f"got {type(entry['training']).__name__}")


def weight_file(manifest_path: Path, name: str, file_name: str) -> Path:
    """The weight file ``file_name`` in the manifest's folder, refused unless it stays there.

    Only a plain file name is accepted (no separator, drive, "." or ".."), and a
    symlink must resolve inside the folder; a refused path is never opened, so a
    manifest cannot make zominimize read (or print the hash of) any other file.
    """
    folder = manifest_path.parent
    plain = (file_name not in ("", ".", "..")
             and not any(c in file_name for c in "/\\:\0"))
    if not plain:
        raise WeightsError(f"{manifest_path}: weight set {name!r}: 'file' must be a plain "
                           f"file name in {folder}, got {file_name!r}")
    file = folder / file_name
    try:
        inside = file.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise WeightsError(f"{file}: cannot be resolved ({exc})") from None
    if not inside:
        raise WeightsError(f"{file}: a link that leads outside {folder} "
                           f"(listed in {manifest_path}); refused")
    if not file.exists():
        raise WeightsError(f"{file}: missing (listed in {manifest_path})")
    if not file.is_file():
        raise WeightsError(f"{file}: not a regular file (listed in {manifest_path})")
    return file


def read_tensors(file: Path, data: bytes) -> dict:
    """The nested dict of tensors in ``data`` (the bytes of ``file``), read with
    ``torch.load(weights_only=True)``, so that no pickled code runs."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Weights only" in text:
            # torch's message advises weights_only=False, which would run the pickle's code
            raise WeightsError(f"{file}: holds objects other than tensors and cannot be "
                               f"loaded safely") from None
        first = text.splitlines()[0] if text else ""
        raise WeightsError(f"{file}: not a readable torch file "
                           f"({type(exc).__name__}: {first})") from None


def check_tensors(file: Path, tensors, design) -> None:
    """Raise WeightsError unless ``tensors`` holds the state dicts 'update' and 'query' of
    the networks of ``design``: the same tensor names, shapes and dtype, and only finite
    values (NaN weights would make every step NaN)."""
    import torch

    from .designs import make_nets
    with torch.device("meta"):  # shapes and dtypes only: no memory, no draw from torch's RNG
        nets = make_nets(design)
    if not isinstance(tensors, dict) or set(tensors) != {"update", "query"}:
        got = (sorted(map(str, tensors)) if isinstance(tensors, dict)
               else type(tensors).__name__)
        raise WeightsError(f"{file}: expected the state dicts 'update' and 'query', got {got}")
    for key, net in zip(("update", "query"), nets):
        state = tensors[key]
        where = f"{file}: the {key} network"
        if not isinstance(state, dict):
            raise WeightsError(f"{where} is not a state dict (got {type(state).__name__})")
        expected = net.state_dict()
        if set(state) != set(expected):
            raise WeightsError(f"{where} has the tensors {sorted(map(str, state))}, "
                               f"expected {sorted(expected)}")
        for tensor_name, want in expected.items():
            value = state[tensor_name]
            if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
                raise WeightsError(f"{where}'s {tensor_name!r} is not a dense tensor "
                                   f"(got {type(value).__name__})")
            if value.dtype != want.dtype or value.shape != want.shape:
                raise WeightsError(f"{where}'s {tensor_name!r} is {value.dtype} of shape "
                                   f"{tuple(value.shape)}, expected {want.dtype} of shape "
                                   f"{tuple(want.shape)}")
            if not bool(torch.isfinite(value).all()):
                raise WeightsError(f"{where}'s {tensor_name!r} holds non-finite values "
                                   f"(NaN or infinity)")


#: Tensors read and checked so far, by (the sha256 of their file's bytes, design name):
#: a changed file has another hash (see load).
_TENSORS: dict[tuple, dict] = {}
_CACHED_FILES = 16


def design_of(entry: dict):
    """The design a manifest entry names by its "features", "step_form" and "query"."""
    from .designs import design_for
    return design_for(entry.get("features", "rms"), entry.get("step_form", "direct"),
                      entry.get("query", "scales"))


def load(location: str | None = None, name: str | None = None) -> tuple[dict, dict]:
    """Load one weight set: (its manifest entry, {"update": state_dict, "query": ...}).

    ``name`` picks the set (default "l2l-zo"); a user's folder (``location``) that
    holds a single set provides it whatever its name. The manifest entry, the file's
    place and sha256, the design, the architecture and the tensors must fit the
    manifest and this version's networks. Each call reads the manifest and hashes the
    file again (a few KB), so a file changed on disk is checked again; only the
    parsed tensors are cached, by hash.

    Raises
    ------
    WeightsError
        For any problem, naming the file and what is wrong.
    """
    manifest_path = find_manifest(location)
    manifest = read_manifest(manifest_path)
    sets = manifest["weights"]
    name = name or DEFAULT_SET
    if name not in sets and location is not None and len(sets) == 1:
        name = next(iter(sets))  # a user's own training holds one set, whatever its name
    if name not in sets:
        raise WeightsError(f"{manifest_path}: no weight set {name!r} (has {', '.join(sets)})")
    entry = sets[name]
    check_entry(manifest_path, name, entry)
    file = weight_file(manifest_path, name, entry["file"])
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{file}: cannot be read ({exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise WeightsError(f"{file}: sha256 {actual} does not match the manifest's "
                           f"{entry['sha256']} (corrupt or replaced file)")
    try:
        design = design_of(entry)
    except ValueError as exc:
        raise WeightsError(f"{file}: {exc}") from None
    expected = architecture(design)
    if entry["architecture"] != expected:
        raise WeightsError(f"{file}: architecture {entry['architecture']} does not "
                           f"match this zominimize's {expected}")
    key = (actual, design.name)
    if key not in _TENSORS:
        tensors = read_tensors(file, data)
        check_tensors(file, tensors, design)
        if len(_TENSORS) >= _CACHED_FILES:
            _TENSORS.pop(next(iter(_TENSORS)))
        _TENSORS[key] = tensors
    tensors = _TENSORS[key]
    return {**entry, "name": name, "path": str(file)}, tensors


#: Forget the cached tensors (kept for callers of the former lru_cache's method).
load.cache_clear = _TENSORS.clear


def build_nets(entry: dict, tensors: dict, device):
    """The (UpdateRNN, QueryRNN) of a loaded weight set, on ``device``, in eval mode."""
    from .designs import make_nets
    update, query = make_nets(design_of(entry))
    for net, key in ((update, "update"), (query, "query")):
        try:
            net.load_state_dict(tensors[key])
        except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
            raise WeightsError(f"{entry['path']}: the {key} network's tensors do not fit: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               ) from None
        net.to(device).eval()
        net.requires_grad_(False)
    return update, query


def save(folder: Path, name: str, nets: tuple, design, training: dict) -> Path:
    """Write a weight set and its manifest entry (the format :func:`load` reads).

    Other sets already in the folder's manifest are kept. The manifest is replaced
    atomically; where the platform has ``fcntl`` (not on Windows) a lock also keeps
    two trainings that finish together from losing one of their entries.

    Parameters
    ----------
    folder : path
        The weights folder (created if needed).
    name : str
        The weight set's name (its file is ``<name>.pt``).
    nets : (torch.nn.Module, torch.nn.Module)
        The UpdateRNN and the QueryRNN.
    design : zominimize.learned.designs.Design
        Their design.
    training : dict
        How they were trained (recorded as the entry's "training").

    Returns
    -------
    pathlib.Path
        The manifest's path.
    """
    import torch

    try:
        import fcntl
    except ImportError:
        fcntl = None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.pt"
    update, query = nets
    torch.save({"update": {k: v.detach().cpu() for k, v in update.state_dict().items()},
                "query": {k: v.detach().cpu() for k, v in query.state_dict().items()}}, file)
    manifest_path = folder / MANIFEST
    with open(folder / ".manifest.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = (read_manifest(manifest_path) if manifest_path.is_file()
                    else {"format_version": FORMAT_VERSION, "weights": {}})
        manifest["weights"][name] = {"file": file.name, "sha256": sha256(file),
                                     "architecture": architecture(design),
                                     "features": design.features,
                                     "step_form": design.step_form,
                                     **({"query": design.query.name}
                                        if design.query.name != "scales" else {}),
                                     "training": training}
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, manifest_path)
    load.cache_clear()
    return manifest_path
