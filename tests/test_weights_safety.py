"""Weight sets that must be refused: non-finite or misshapen tensors, malformed manifests,
paths that leave the weight folder, unsafe pickles, and files changed after a run.

Every refusal is a WeightsError naming the file and the problem, and follows the fallback
policy: it raises with ``weights=`` given, and with ``fallback=True`` (or the shipped set)
warns with FallbackWarning and runs zo-adamm. The shipped weights are never touched:
tests that need them tamper with a copy.
"""

import builtins
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize import FallbackWarning, WeightsError  # noqa: E402
from zominimize import learned  # noqa: E402
from zominimize.learned import designs, weights  # noqa: E402
from zominimize.learned.designs import PAPER  # noqa: E402

D = 4


def objective(x):
    return float(np.sum(np.arange(1, x.size + 1) * (x - 1.0) ** 2))


def random_nets(seed=0):
    """The paper design's networks with heads large enough that the weights matter."""
    torch.manual_seed(seed)
    update, query = designs.make_nets(PAPER)
    with torch.no_grad():
        update.head.weight.mul_(30)
        query.head.weight.mul_(30)
    return update, query


@pytest.fixture
def folder(tmp_path):
    """A user's weight folder holding one good set, "l2l-zo" (of the paper's design)."""
    path = tmp_path / "weights"
    weights.save(path, "l2l-zo", random_nets(), PAPER, {"note": "test"})
    return path


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the shipped weights, which the shipped-weights lookup now finds."""
    source = weights.find_manifest().parent
    copy = tmp_path / "pretrained"
    shutil.copytree(source, copy)
    monkeypatch.setattr(weights, "shipped_dirs", lambda: [copy])
    return copy


def run(location, **options):
    if location is not None:
        options["weights"] = str(location)
    return zominimize.minimize(objective, np.zeros(D), method="l2l-zo",
                               options={"maxiter": 5, "seed": 0, "device": "cpu", **options})


def edit_manifest(folder, change):
    """Apply ``change`` to the whole manifest (a dict) of ``folder``; it may return a new one."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    changed = change(manifest)
    path.write_text(json.dumps(manifest if changed is None else changed))


def edit_entry(folder, change, name="l2l-zo"):
    """Apply ``change`` to the manifest entry of set ``name`` in ``folder``."""
    def apply(manifest):
        change(manifest["weights"][name])
    edit_manifest(folder, apply)


def rehash(folder, name="l2l-zo"):
    """Record the set's file's current sha256 in the manifest, past the hash check."""
    edit_entry(folder, lambda e: e.update(sha256=weights.sha256(folder / e["file"])), name)


def rewrite_tensors(folder, change, name="l2l-zo"):
    """Apply ``change`` to the tensors of a set, save and rehash. ``change`` edits them in
    place or returns a new top-level dict or list to save instead."""
    file = folder / json.loads((folder / "manifest.json").read_text())["weights"][name]["file"]
    tensors = torch.load(file, weights_only=True)
    changed = change(tensors)
    torch.save(changed if isinstance(changed, (dict, list)) else tensors, file)
    rehash(folder, name)


def expect_refused(location, *parts):
    """Check the set is refused (WeightsError) and that fallback=True runs zo-adamm;
    return the error message, which names each of ``parts``."""
    with pytest.raises(WeightsError) as info:
        run(location, fallback=False)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    with pytest.warns(FallbackWarning):
        res = run(location, fallback=True)
    assert res.method == "zo-adamm" and res.fallback == message
    return message


# ------------------------------------------------------------------ tensors

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensors_are_refused_naming_the_network_and_tensor(folder, value):
    def poison(tensors):
        tensors["query"]["head.weight"][0, 3] = value
    rewrite_tensors(folder, poison)
    expect_refused(folder, "l2l-zo.pt", "query network", "'head.weight'", "non-finite")


def _as_float64(tensors):
    tensors["update"]["cell.weight_hh"] = tensors["update"]["cell.weight_hh"].double()


def _wrong_shape(tensors):
    tensors["update"]["head.weight"] = torch.zeros(2, 10)


def _missing_tensor(tensors):
    del tensors["query"]["cell.weight_ih"]


def _extra_tensor(tensors):
    tensors["query"]["cell.bias"] = torch.zeros(40)


def _number_not_tensor(tensors):
    tensors["update"]["head.weight"] = 3.0


@pytest.mark.parametrize("change, parts", [
    (lambda t: {"update": t["update"]["head.weight"], "query": t["query"]["head.weight"]},
     ["update network is not a state dict"]),
    (lambda t: [t["update"], t["query"]], ["expected the state dicts"]),
    (lambda t: {"update": t["update"]}, ["expected the state dicts"]),
    (_as_float64, ["update network", "'cell.weight_hh'", "torch.float64"]),
    (_wrong_shape, ["update network", "'head.weight'", "shape (2, 10)"]),
    (_missing_tensor, ["query network", "cell.weight_ih"]),
    (_extra_tensor, ["query network", "cell.bias"]),
    (_number_not_tensor, ["update network", "'head.weight'", "not a dense tensor"]),
], ids=["tensors-not-state-dicts", "list", "no-query", "float64", "shape", "missing",
        "extra", "number"])
def test_tensors_that_are_not_the_networks_are_refused(folder, change, parts):
    rewrite_tensors(folder, change)
    expect_refused(folder, "l2l-zo.pt", *parts)


def test_a_failure_to_build_the_nets_follows_the_fallback_policy(folder, monkeypatch):
    def broken(entry, tensors, device):
        raise WeightsError(f"{entry['path']}: the update network's tensors do not fit")
    monkeypatch.setattr(weights, "build_nets", broken)
    expect_refused(folder, "l2l-zo.pt", "do not fit")


# ------------------------------------------------------------------ manifest fields

@pytest.mark.parametrize("change, part", [
    (lambda e: e.pop("file"), "'file'"),
    (lambda e: e.update(file=123), "'file'"),
    (lambda e: e.update(file=None), "'file'"),
    (lambda e: e.pop("sha256"), "'sha256'"),
    (lambda e: e.update(sha256=123), "'sha256'"),
    (lambda e: e.update(sha256=["a"] * 64), "'sha256'"),
    (lambda e: e.update(features=5), "'features'"),
    (lambda e: e.update(features=["rms"]), "'features'"),
    (lambda e: e.update(step_form={"form": "direct"}), "'step_form'"),
    (lambda e: e.update(architecture="lstm"), "'architecture'"),
    (lambda e: e.pop("architecture"), "'architecture'"),
    (lambda e: e.update(training="yesterday"), "'training'"),
], ids=["no-file", "file-int", "file-null", "no-sha256", "sha256-int", "sha256-list",
        "features-int", "features-list", "step_form-dict", "architecture-str",
        "no-architecture", "training-str"])
def test_manifest_fields_of_the_wrong_type_are_refused(folder, change, part):
    edit_entry(folder, change)
    expect_refused(folder, str(folder / "manifest.json"), "'l2l-zo'", part)


@pytest.mark.parametrize("change, part", [
    (lambda m: m["weights"].update({"l2l-zo": "l2l-zo.pt"}), "not a JSON object"),
    (lambda m: m["weights"].update({"l2l-zo": None}), "not a JSON object"),
    (lambda m: [m], "not a JSON object"),
    (lambda m: m.update(weights=[m["weights"]["l2l-zo"]]), "lists no weight sets"),
    (lambda m: m.update(weights={}), "lists no weight sets"),
    (lambda m: m.update(format_version="1"), "format_version"),
], ids=["entry-str", "entry-null", "manifest-list", "weights-list", "weights-empty",
        "version-str"])
def test_malformed_manifests_are_refused(folder, change, part):
    edit_manifest(folder, change)
    expect_refused(folder, str(folder / "manifest.json"), part)


def test_deeply_nested_manifest_is_refused(folder):
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    expect_refused(folder, str(folder / "manifest.json"), "not a readable JSON manifest")


def test_a_weight_file_that_is_a_directory_is_refused(folder):
    (folder / "l2l-zo.pt").unlink()
    (folder / "l2l-zo.pt").mkdir()
    expect_refused(folder, "l2l-zo.pt", "not a regular file")


# ------------------------------------------------------------------ paths

@pytest.fixture
def opened(monkeypatch):
    """The resolved paths of every file opened from now on (builtins.open and io.open)."""
    paths = []
    real = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            paths.append(Path(os.fsdecode(file)).resolve())
        return real(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    return paths


def test_a_path_out_of_the_folder_is_never_opened_or_hashed(folder, tmp_path, opened):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for zominimize\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    escape = os.path.relpath(secret, folder)
    edit_entry(folder, lambda e: e.update(file=escape))
    opened.clear()
    message = expect_refused(folder, "plain file name", repr(escape))
    assert digest not in message
    assert secret.resolve() not in opened


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_weights_outside_the_folder_do_not_load_even_with_a_matching_hash(folder, tmp_path,
                                                                          how):
    outside = tmp_path / "outside.pt"
    shutil.copy(folder / "l2l-zo.pt", outside)
    (folder / "l2l-zo.pt").unlink()
    if how == "symlink":
        (folder / "link.pt").symlink_to(outside)
        edit_entry(folder, lambda e: e.update(file="link.pt"))
        expect_refused(folder, "link.pt", "outside")
    else:
        name = "../outside.pt" if how == "relative" else str(outside)
        edit_entry(folder, lambda e: e.update(file=name))
        expect_refused(folder, "plain file name", repr(name))


@pytest.mark.parametrize("name", ["", ".", "..", "sub/l2l-zo.pt", "sub\\l2l-zo.pt",
                                  "C:l2l-zo.pt", "l2l-zo.pt\x00"])
def test_only_plain_file_names_are_accepted(folder, name):
    edit_entry(folder, lambda e: e.update(file=name))
    expect_refused(folder, "plain file name")


def test_a_symlink_inside_the_folder_is_accepted(folder):
    (folder / "alias.pt").symlink_to(folder / "l2l-zo.pt")
    edit_entry(folder, lambda e: e.update(file="alias.pt"))
    res = run(folder, guard=False)  # the random nets' steps would trip the guard
    assert res.method == "l2l-zo" and res.fallback is None


def test_an_unsafe_pickle_is_refused_without_advice_to_load_it_unsafely(folder):
    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickled code ran')",))

    torch.save({"update": Payload(), "query": {}}, folder / "l2l-zo.pt")
    rehash(folder)
    message = expect_refused(folder, "l2l-zo.pt", "objects other than tensors",
                             "cannot be loaded safely")
    assert "weights_only" not in message and "False" not in message


# ------------------------------------------------------------------ files changed after a run

def _flip_a_byte(folder):
    path = folder / "l2l-zo.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_file_corrupted_after_a_run_is_checked_again(folder):
    assert run(folder).method == "l2l-zo"
    _flip_a_byte(folder)  # same size, and likely the same mtime
    expect_refused(folder, "l2l-zo.pt", "sha256")


def test_a_file_poisoned_after_a_run_is_checked_again(folder):
    assert run(folder).method == "l2l-zo"
    rewrite_tensors(folder, lambda t: t["update"]["head.weight"].fill_(float("nan")))
    expect_refused(folder, "update network", "non-finite")


def test_a_file_replaced_after_a_run_runs_its_new_nets(folder):
    first = run(folder, guard=False)
    update, query = random_nets(seed=1)
    torch.save({"update": update.state_dict(), "query": query.state_dict()},
               folder / "l2l-zo.pt")
    rehash(folder)
    second = run(folder, guard=False)
    learned.clear_cache()
    fresh = run(folder, guard=False)
    assert second.method == first.method == "l2l-zo"
    np.testing.assert_array_equal(second.x_last, fresh.x_last)
    assert not np.array_equal(first.x_last, second.x_last)


# ------------------------------------------------------------------ shipped weights

@pytest.mark.parametrize("damage", [
    lambda s: edit_entry(s, lambda e: e.update(file=123)),
    lambda s: edit_entry(s, lambda e: e.pop("file")),
    lambda s: edit_manifest(s, lambda m: m["weights"].update({"l2l-zo": "l2l-zo.pt"})),
    lambda s: edit_entry(s, lambda e: e.update(file="../../../../etc/passwd")),
    lambda s: (s / "manifest.json").write_text("{not json"),
    lambda s: rewrite_tensors(s, lambda t: t["query"]["cell.weight_hh"].fill_(float("nan"))),
], ids=["file-int", "no-file", "entry-str", "escape", "not-json", "nan"])
def test_a_broken_shipped_set_warns_and_runs_zo_adamm(shipped, damage):
    damage(shipped)
    with pytest.warns(FallbackWarning, match="zo-adamm"):
        res = run(None)
    assert res.method == "zo-adamm" and str(shipped) in res.fallback
    with pytest.raises(WeightsError):
        run(None, fallback=False)


def test_the_intact_shipped_copy_runs(shipped):
    assert run(None).method == "l2l-zo"


# ------------------------------------------------------------------ portability

def test_import_and_save_work_without_fcntl(tmp_path):
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import zominimize\n"
            "from zominimize.learned import designs, weights\n"
            "weights.save(sys.argv[1], 'l2l-zo', designs.make_nets(designs.PAPER), "
            "designs.PAPER, {})\n"
            "print(weights.load(sys.argv[1])[0]['name'])\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "l2l-zo"
