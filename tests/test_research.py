"""The research scripts (research/): the hand-written gains adapt (per run and per
coordinate), the ES controller starts as its prior and resumes exactly, the digits attack
tasks are well formed. Nothing here registers methods."""

import sys

import numpy as np
import pytest
import torch

from research import adaptive_rules, gain_es
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


def test_the_untrained_es_controller_is_its_prior():
    theta = gain_es.initial_params().reshape(1, -1)
    *_, w2, b2, start = gain_es.unpack(theta)
    assert float(w2.abs().sum()) == 0 and float(b2.abs().sum()) == 0
    assert float(start) == -1.15


def test_the_untrained_coordinate_controller_moves_its_shape_by_the_prior():
    """With the output layer at zero the shape follows coord-adamm's rule, times the
    small initial decay: shape <- (1 - DECAY_MAX sigmoid(-DECAY_OFFSET)) shape - KAPPA_C z_c,
    z_c the running mean of sign(s_i) g_i / rms(g_i); the first step leaves it alone."""
    from zominimize.train.unroll import ZO_ADAMM

    theta = gain_es.initial_params(0.0, coordinate=2).reshape(1, -1)
    stepper = gain_es.controller(theta, ZO_ADAMM, horizon=10, coordinate=2)
    state = stepper.init((1, 1, 3))
    g1 = torch.tensor([[[1.0, -1.0, 0.5]]], dtype=torch.float64)
    g2 = torch.tensor([[[1.0, 1.0, -0.5]]], dtype=torch.float64)
    step1, state = stepper.step(None, g1, torch.tensor([[1.0]], dtype=torch.float64), state,
                                0.1)
    assert torch.all(state.shape == gain_es.SHAPE_START)
    _, state = stepper.step(None, g2, torch.tensor([[0.5]], dtype=torch.float64), state, 0.1)
    rms = torch.sqrt(gain_es.BETA_G * g1 ** 2 + (1 - gain_es.BETA_G) * g2 ** 2)
    z_c = (1 - gain_es.BETA_Z) * step1.sign() * g2 / rms
    decay = gain_es.DECAY_MAX * torch.sigmoid(torch.tensor(-gain_es.DECAY_OFFSET))
    expected = gain_es.SHAPE_START * (1 - decay) - gain_es.KAPPA_C * z_c
    torch.testing.assert_close(state.shape, expected.double())


def _train(out, iterations, resume):
    argv = ["gain_es.py", "--out", str(out), "--inner", "adamm", "--iterations",
            str(iterations), "--pairs", "2", "--steps", "8", "--dims", "12", "--batch", "2",
            "--save-every", "1"] + (["--resume"] if resume else [])
    old, sys.argv, threads = sys.argv, argv, torch.get_num_threads()
    try:
        gain_es.main()  # it sets torch's thread count, which changes later tests' sums
    finally:
        sys.argv = old
        torch.set_num_threads(threads)
    return torch.load(out / "checkpoint.pt", weights_only=False)


def test_es_training_resumes_exactly(tmp_path, capsys):
    straight = _train(tmp_path / "straight", 3, resume=False)
    _train(tmp_path / "split", 2, resume=False)
    resumed = _train(tmp_path / "split", 3, resume=True)
    assert torch.equal(straight["theta"], resumed["theta"])
    assert [row["centre"] for row in straight["history"]] == \
        [row["centre"] for row in resumed["history"]]
    assert not torch.equal(straight["theta"], gain_es.initial_params())


def test_digits_attack_tasks_are_batched_nonnegative_and_start_unsolved():
    pytest.importorskip("sklearn")
    from zominimize.train import attacks as digits_attack

    net, right = digits_attack.classifier(8)
    assert float(right.double().mean()) > 0.95
    task = digits_attack.sample(torch.Generator().manual_seed(0), 3, 8)
    assert task.size == (3, 64)
    f0 = task.fun(task.x0)
    assert bool((f0 > 0).all())  # correctly classified: the margin term is positive
    points = task.x0 + torch.randn(5, 3, 64, dtype=torch.float64)
    values = task.fun(points)
    assert values.shape == (5, 3) and bool((values >= 0).all())
    assert torch.allclose(values[2], task.fun(points[2]))


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


def test_the_packages_gain_design_computes_what_gain_es_trains():
    """research/export_gain.py ships a gain_es.py controller as the l2l-zo-gain design:
    both give the same steps."""
    from research import export_gain
    from zominimize.learned import designs, gain

    theta = gain_es.initial_params(start=0.3, coordinate=2)
    theta = theta + 0.3 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=torch.float64)
    update = gain.GainedUpdate(designs.make_nets(designs.L2L_ZO)[0])
    update.gain = export_gain.gain_net(theta)
    stepper = gain_es.controller(theta.reshape(1, -1), designs.L2L_ZO, 50, coordinate=2)
    d, gen = 30, torch.Generator().manual_seed(0)
    state, reference = designs.L2L_ZO_GAIN.init((d,)), stepper.init((1, 1, d))
    with torch.no_grad():
        for t in range(15):
            g = torch.randn(d, generator=gen, dtype=torch.float64) + 1.0
            f = 2.0 / (t + 1)
            step, state = designs.L2L_ZO_GAIN.step(update, g, f, state, 0.01)
            expected, reference = stepper.step(update.rnn, g.reshape(1, 1, d),
                                               torch.tensor([[f]], dtype=torch.float64),
                                               reference, 0.01)
            torch.testing.assert_close(step, expected.reshape(-1), rtol=1e-12, atol=1e-15)
    assert float(state.level) == pytest.approx(float(reference.log_gain))
