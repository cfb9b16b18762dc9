"""The research scripts (research/): the hand-written gains adapt (per run and per
coordinate), the dense query signal is the estimate's expected alignment. Nothing here
registers methods."""

import numpy as np
import pytest
import torch

from research import adaptive_rules
from zominimize.rules import adamm


def _run(rule, fun, x0, iterations, q=10, mu=1e-4, seed=0):
    """A minimal forward-difference ZO loop around ``rule``: the best f seen."""
    rng = np.random.default_rng(seed)
    x, state, best = x0.copy(), rule.init(x0.size), fun(x0)
    for _ in range(iterations):
        f = fun(x)
        u = rng.standard_normal((q, x.size))
        g = (np.array([fun(x + mu * ui) for ui in u]) - f) @ u / (q * mu)
        step, state = rule.update(g, f, state)
        x = x + step
        best = min(best, fun(x))
    return best


def test_the_hypergradient_gain_grows_a_step_that_is_far_too_small():
    centre = np.linspace(-1, 1, 30)

    def fun(x):
        return float(0.5 * np.sum((x - centre) ** 2))

    small = 1e-4
    plain = _run(adamm(small, 0.9, 0.999, 1e-8), fun, np.zeros(30), 150)
    gained = _run(adaptive_rules.with_gain(adamm(small, 0.9, 0.999, 1e-8), kappa=0.02,
                                           beta_z=0.9, limit=10.0, start=0.0, power=2.0),
                  fun, np.zeros(30), 150)
    assert plain > 0.9 * fun(np.zeros(30))  # lr 1e-4 barely moves in 150 steps
    assert gained < 0.01 * plain


def test_coordinate_gains_shrink_an_oscillating_coordinate_and_grow_a_drifting_one():
    """f = |x_0| - x_1 with its exact gradient and RMS-normalised steps without momentum:
    x_0 ends oscillating around its kink (each step overshoots), x_1 drifts the same way
    every step."""
    rule = adaptive_rules.with_coordinate_gain(adamm(0.01, 0.0, 0.999, 1e-8), kappa=0.1,
                                               beta_z=0.9, limit=5.0, start=-1.0)
    x, state = np.array([0.3, 0.0]), rule.init(2)
    for _ in range(200):
        g = np.array([np.sign(x[0]), -1.0])
        step, state = rule.update(g, abs(x[0]) - x[1], state)
        x = x + step
    assert list(state.log_gain) == [-5.0, 5.0]
    assert abs(x[0]) < 1e-3 and x[1] > 10


def test_the_dense_query_signal_is_the_estimates_expected_alignment():
    from research.query_dense import alignment, log_gain

    gen = torch.Generator().manual_seed(0)
    d, q = 12, 5
    G = torch.randn(d, generator=gen, dtype=torch.float64)
    s = torch.rand(d, generator=gen, dtype=torch.float64) + 0.2
    u = torch.randn(100000, q, d, generator=gen, dtype=torch.float64) * s
    g = ((u @ G).unsqueeze(-1) * u).mean(1)
    expected = (g @ G).mean() / (G.norm() * (g * g).sum(-1).mean().sqrt())
    assert float(alignment(s, G, q)) == pytest.approx(float(expected), rel=0.02)
    live = torch.zeros(d, dtype=torch.float64)
    live[:3] = 1.0
    # queries on the three coordinates a gradient lives on beat isotropic ones
    assert float(log_gain(live + 1e-3, G * live, q)) > 0.3  # 0.5 log 2 here
    assert float(log_gain(torch.ones(d, dtype=torch.float64), G, q)) == 0.0


def test_the_truncated_backpropagation_controller_trains_on_each_window():
    """research/controller_bptt.py: each 20-step window's meta-gradient reaches every
    controller weight, and the frozen UpdateRNN is left as it was."""
    from research.controller_bptt import train_batch
    from zominimize.learned.designs import make_nets
    from zominimize.train import tasks
    from zominimize.train.config import load_config
    from zominimize.train.unroll import UnrollSettings

    config = load_config("pretrained/l2l-zo.toml")
    update_net, _ = make_nets(config.design)
    update_net.requires_grad_(False)
    update_net.gain.requires_grad_(True)
    before = [p.clone() for p in update_net.parameters()]
    optimizer = torch.optim.Adam(update_net.gain.parameters(), lr=0.01)
    settings = UnrollSettings(q=config.q, base_step=config.base_step,
                              mu_relative=config.mu_relative, design=config.design,
                              query=config.design.query)
    task = tasks.sample(torch.Generator().manual_seed(0), "quadratic", 2, 10)
    factor = torch.tensor([[0.1], [10.0]], dtype=torch.float64)
    final = train_batch(task, factor, 0, update_net, settings, 40, 20, optimizer)
    assert final < 0  # the run lowered f
    moved = [not torch.equal(a, b) for a, b in zip(before, update_net.parameters())]
    names = [name for name, _ in update_net.named_parameters()]
    assert all(m for m, name in zip(moved, names) if name.startswith("gain."))
    assert not any(m for m, name in zip(moved, names) if name.startswith("rnn."))
