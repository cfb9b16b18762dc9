"""Training tasks like a black-box attack, on a classifier that training builds itself.

Attacks have what the synthetic families lack: pixels clipped to [0, 1], so that many
coordinates do not matter, and an L1 term that decides the right step. The
classifier is trained in seconds on data a package ships, never on the benchmark's
LeNet5, MNIST digits or BBOB, which stay held out: scikit-learn's 8x8 digits (1,797
images; ``pip install scikit-learn``), upsampled bilinearly to side x side pixels, and a
one-hidden-layer network trained on them with a fixed seed (:func:`classifier`, cached
per side).

A task attacks one correctly classified image x of label y with the loss of the paper
(Carlini and Wagner's margin plus an L1 distortion):

    x' = clip(x + delta, 0, 1),
    f(delta) = max(Z_y(x') - max_{j != y} Z_j(x'), 0) + c ||x' - x||_1,

from delta_0 = 1e-4 N(0, I), c drawn 10^U(-1.5, -0.5) per task (the benchmark uses 0.1).
f >= 0, as the other families. :func:`sample` returns a :class:`TaskBatch` like the
families of :mod:`zominimize.train.tasks`, so the same unrolls run on it.
"""

from __future__ import annotations

import functools
import math

import torch

from .tasks import TaskBatch

HIDDEN = 64
EPOCHS = 300
X0_STD = 1e-4
C_RANGE = (-1.5, -0.5)


@functools.lru_cache(maxsize=None)
def digits(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as (n, side * side) float64 in [0, 1] and their labels (n,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits attack tasks need scikit-learn's digits: "
                          "pip install scikit-learn") from None

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float64).unsqueeze(1) / 16.0
    if side != 8:
        images = torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear",
                                                 align_corners=False)
    return images.reshape(len(images), -1).clamp(0, 1), torch.as_tensor(data.target)


@functools.lru_cache(maxsize=None)
def classifier(side: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The network for ``side`` (float64, frozen) and which images it classifies right."""
    x, y = digits(side)
    gen = torch.Generator().manual_seed(side)
    net = torch.nn.Sequential(torch.nn.Linear(side * side, HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN, 10)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64)
                    / math.sqrt(p.shape[-1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.enable_grad():
        for _ in range(EPOCHS):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
    net.requires_grad_(False)
    with torch.no_grad():
        right = net(x).argmax(-1) == y
    return net, right


def sample(gen: torch.Generator, b: int, side: int) -> TaskBatch:
    """B attacks in dimension side * side on images drawn from the correctly classified."""
    net, right = classifier(side)
    x, y = digits(side)
    candidates = torch.nonzero(right).reshape(-1)
    pick = candidates[torch.randint(len(candidates), (b,), generator=gen)]
    images, labels = x[pick], y[pick]  # (B, d), (B,)
    c = torch.exp(math.log(10) * (C_RANGE[0] + (C_RANGE[1] - C_RANGE[0])
                                  * torch.rand(b, generator=gen, dtype=torch.float64)))
    others = torch.ones(b, 10, dtype=torch.bool)
    others[torch.arange(b), labels] = False

    def fun(delta):
        adversarial = (images + delta).clamp(0, 1)
        logits = net(adversarial)  # (..., B, 10)
        true = logits.gather(-1, labels.expand(logits.shape[:-1]).unsqueeze(-1))
        best_other = logits.masked_fill(~others, -math.inf).amax(-1, keepdim=True)
        margin = (true - best_other).squeeze(-1).clamp_min(0)
        return margin + c * (adversarial - images).abs().sum(-1)

    x0 = X0_STD * torch.randn(b, side * side, generator=gen, dtype=torch.float64)
    return TaskBatch("digits-attack", fun, x0)
