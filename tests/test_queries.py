"""The subspace QueryRNN: unbiased split directions, its share of split iterations, its
state in checkpoints, in runs and in meta-training (its ES stage)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize.learned import queries, weights  # noqa: E402
from zominimize.learned.designs import L2L_ZO_GAIN, L2L_ZO_SUBSPACE, make_nets  # noqa: E402
from zominimize.learned.nets import CoordinateLSTM  # noqa: E402
from zominimize.learned.pieces import lstm_state  # noqa: E402
from zominimize.train.config import QueryStageConfig, TrainConfig  # noqa: E402
from zominimize.train.query_stage import PopulationLSTM  # noqa: E402

D = 12


def orthonormal_basis(d, seed=0, lead=()):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(*lead, d, generator=gen, dtype=torch.float64)
    last = torch.randn(*lead, d, generator=gen, dtype=torch.float64)
    return queries.subspace_basis(mean, last)


def test_the_basis_is_orthonormal_and_degenerate_inputs_are_not_one():
    basis, valid = orthonormal_basis(D)
    assert bool(valid)
    torch.testing.assert_close(basis @ basis.T, torch.eye(2, dtype=torch.float64))
    g, h = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    # tiny: the inner products' terms fall below float64's normal range
    for mean, last in [(torch.zeros(D), g), (g, 3 * g), (g, torch.zeros(D)),
                       (1e-160 * g, 1e-160 * h)]:
        basis, valid = queries.subspace_basis(mean.double(), last.double())
        assert not bool(valid) and not bool(basis.any())


def test_the_features_share_is_the_estimates_projection_onto_the_basis():
    """The features read the share from inner products alone; it is |B g|^2 / |g|^2 for
    the basis B that the directions use, nearly parallel estimates included (where the
    orthogonal part, a difference of squares, holds a relative error of about float64's
    epsilon / closeness^2)."""
    gen = torch.Generator().manual_seed(7)
    for closeness in (1.0, 1e-3, 1e-5):
        mean, g = (torch.randn(3, D, generator=gen, dtype=torch.float64) for _ in range(2))
        last = 2 * mean + closeness * torch.randn(3, D, generator=gen, dtype=torch.float64)
        state = queries.subspace_init((3, D))._replace(mean=mean, last=last)
        basis, valid = queries.subspace_basis(mean, last)
        assert bool(valid.all())
        share = (basis @ g.unsqueeze(-1)).square().sum((-2, -1)) / g.square().sum(-1)
        features = queries.subspace_features(g, state)
        torch.testing.assert_close(features[:, 0, 0], 2 * share - 1, rtol=0,
                                   atol=1e-14 / closeness ** 2)


def test_split_directions_measure_the_subspace_exactly_and_the_rest_without_bias():
    """For f linear, (1/q) sum (a . u) u has the basis part B a in every draw (the
    along-directions measure it, the others are orthogonal to B), and mean a."""
    q, d = 6, D
    basis, _ = orthonormal_basis(d)
    a = torch.randn(d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    total = torch.zeros(d, dtype=torch.float64)
    draws = 20000
    for _ in range(draws // 100):
        eps = torch.randn(100, q, d, generator=gen, dtype=torch.float64).movedim(1, 0)
        u = queries.split_directions(basis.expand(100, 2, d), eps)
        g = ((u @ a).unsqueeze(-1) * u).mean(0)                       # (100, d)
        torch.testing.assert_close(g @ basis.T, (basis @ a).expand(100, 2))
        total += g.sum(0)
    rest = a - basis.T @ (basis @ a)
    # the complement's estimate has sd about |a| sqrt(d / (q - 2)) per draw and coordinate
    tolerance = 4 * float(a.norm()) * (d / (q - 2) / draws) ** 0.5
    assert float((total / draws - a).abs().max()) < tolerance
    assert float(rest.norm()) > 10 * tolerance  # the complement's part is measured too


def test_in_place_split_directions_equal_the_batched_ones():
    q, d = 7, 40
    basis, _ = orthonormal_basis(d, seed=2)
    eps = torch.randn(q, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batched = queries.split_directions(basis[None], eps[:, None])[:, 0]
    with torch.no_grad():
        in_place = eps.clone()
        out = queries.split_directions(basis, in_place)
    assert out.data_ptr() == in_place.data_ptr()
    torch.testing.assert_close(out, batched)


def _zero_net():
    net = CoordinateLSTM(3)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def test_the_share_of_split_iterations_is_the_nets_and_spread_evenly():
    """A net whose output is 0 splits in a share sigmoid(SPLIT_OFFSET) of the iterations
    after the first, never twice as often in any window as the share says."""
    net, state = _zero_net(), queries.subspace_init((D,))
    gen = torch.Generator().manual_seed(0)
    splits = []
    with torch.no_grad():
        for _ in range(200):
            g = torch.randn(D, generator=gen, dtype=torch.float64)
            splits.append(bool(state.split))
            state, _ = queries.subspace_step(net, g, g, state, 0.1)
    share = 1 / (1 + np.exp(-queries.SPLIT_OFFSET))
    assert not splits[0]
    assert sum(splits) == pytest.approx(share * 199, abs=1.0)
    window = [sum(splits[i:i + 10]) for i in range(1, 190)]
    assert max(window) - min(window) <= 1


def test_features_read_the_estimates_share_in_the_subspace():
    state = queries.subspace_init((D,))
    mean, last = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    mean[0], last[1] = 1.0, 1.0
    state = state._replace(mean=mean, last=last, split=torch.ones(1, dtype=torch.bool))
    g = torch.zeros(D, dtype=torch.float64)
    g[0], g[2] = 3.0, 4.0  # a share 9 / 25 in span(e0, e1), cosine 3 / 5 with the mean
    features = queries.subspace_features(g, state)[:, 0]
    torch.testing.assert_close(features, torch.tensor([2 * 9 / 25 - 1, 0.6, 1.0],
                                                      dtype=torch.float64))


def test_the_state_goes_through_a_checkpoint_as_a_copy():
    state = queries.subspace_init((D,))
    g = torch.randn(D, dtype=torch.float64)
    with torch.no_grad():
        state, _ = queries.subspace_step(CoordinateLSTM(3), g, g, state, 0.1)
    data = queries.subspace_export(state)
    restored = queries.subspace_restore(data, "cpu")
    for got, want in zip(restored, state):
        if isinstance(want, torch.Tensor):
            assert got.dtype == want.dtype and torch.equal(got.float(), want.float())
        else:
            assert got == want
    restored.mean.mul_(2)
    np.testing.assert_array_equal(data["mean"], state.mean.numpy())


def test_population_members_step_as_their_own_lstm_would():
    torch.manual_seed(0)
    nets = [CoordinateLSTM(3) for _ in range(3)]
    theta = torch.stack([torch.nn.utils.parameters_to_vector(n.parameters()).detach()
                         for n in nets])
    population = PopulationLSTM(theta, nets[0])
    inputs = torch.randn(3, 4, 3, 7)
    h, c = lstm_state((3, 4, 7))
    h, c = h + torch.randn(h.shape).to(h.dtype) * 0.1, c + torch.randn(c.shape).to(c.dtype)
    with torch.no_grad():
        out, (h_new, c_new) = population(inputs, (h, c))
        for p, net in enumerate(nets):
            alone, (h_alone, c_alone) = net(inputs[p], (h[p], c[p]))
            torch.testing.assert_close(out[p], alone)
            assert torch.equal(h_new[p], h_alone) and torch.equal(c_new[p], c_alone)


# ------------------------------------------------------------------ in runs

@pytest.fixture
def subspace_weights(tmp_path):
    folder = tmp_path / "subspace"
    torch.manual_seed(0)
    weights.save(folder, "l2l-zo", make_nets(L2L_ZO_SUBSPACE), L2L_ZO_SUBSPACE,
                 {"note": "untrained, for tests"})
    weights.load.cache_clear()
    return folder


def quadratic(x):
    return float(0.5 * np.sum(np.arange(1, x.size + 1) * (x - 1.0) ** 2))


def test_the_manifest_names_the_query_design_and_an_unknown_one_is_refused(subspace_weights):
    entry, _ = weights.load(str(subspace_weights))
    assert entry["query"] == "subspace"
    assert entry["architecture"]["query"] == "subspace"
    assert weights.design_of(entry) is L2L_ZO_SUBSPACE
    assert weights.design_of({k: v for k, v in entry.items() if k != "query"}) is L2L_ZO_GAIN
    manifest = subspace_weights / "manifest.json"
    data = json.loads(manifest.read_text())
    data["weights"]["l2l-zo"]["query"] = "diagonal"
    manifest.write_text(json.dumps(data))
    weights.load.cache_clear()
    with pytest.raises(zominimize.WeightsError, match="query='diagonal'"):
        weights.load(str(subspace_weights))


def test_a_run_splits_its_queries_and_shares_the_draws_of_its_ablation(subspace_weights):
    """query_ratio defaults to 1 for the subspace QueryRNN: no coin is drawn, so the run
    draws what l2l-zo-update draws; its split iterations query along the basis."""
    options = dict(weights=str(subspace_weights), seed=4, device="cpu", guard=False, q=6)
    ours = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    ablation = zominimize.ZOOptimizer("l2l-zo-update", np.zeros(D), **options)
    split = 0
    for t in range(12):
        state = ours._sampler_state
        points, plain = ours.ask(), ablation.ask()
        if bool(state.split):
            split += 1
            basis, _ = queries.subspace_basis(state.mean, state.last)
            along = (points[1:3] - points[0]) / ours.settings["mu"]
            np.testing.assert_allclose(along, 6 ** 0.5 * basis.numpy(), atol=1e-8)
            np.testing.assert_allclose(along @ (points[3:] - points[0]).T, 0, atol=1e-8)
        else:
            np.testing.assert_allclose(points[1:] - points[0], plain[1:] - plain[0],
                                       atol=1e-12)
        ours.tell(points, [quadratic(p) for p in points])
        ablation.tell(plain, [quadratic(p) for p in plain])
    assert split >= 8


@pytest.mark.parametrize("estimator", ["forward", "antithetic"])
def test_the_screening_keeps_a_split_iterations_subspace_values_and_catches_a_glitch(
        subspace_weights, estimator):
    """Near the minimum nearly all of the gradient lies in the subspace, so its two values
    lie far outside the others' spread: their reach keeps them in the estimate (a clean run
    is the one without screening, bit for bit), while a hostile value among them, or
    anywhere else in a split iteration, is still left out."""
    options = dict(weights=str(subspace_weights), seed=0, device="cpu", q=5, maxiter=300,
                   estimator=estimator)
    runs = [zominimize.minimize(quadratic, np.zeros(4), method="l2l-zo",
                                options={**options, "outlier_factor": factor})
            for factor in (1e3, np.inf)]
    assert runs[0].nfev_outliers == 0 and runs[0].fun < 1e-4
    np.testing.assert_array_equal(runs[0].x_last, runs[1].x_last)
    opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(4), **options)
    while not bool(opt._sampler_state.split):  # on to the first split iteration
        points = opt.ask()
        opt.tell(points, [quadratic(p) for p in points])
    state = opt.state_dict()
    for row in range(opt.ask().shape[0]):
        glitched = zominimize.ZOOptimizer("l2l-zo", np.zeros(4), **options)
        glitched.load_state_dict(state)
        points = glitched.ask()
        values = [1e10 if i == row else quadratic(p) for i, p in enumerate(points)]
        glitched.tell(points, values)
        assert glitched.result().nfev_outliers == 1
        assert np.all(np.abs(glitched.x) < 10)


def test_a_subspace_run_resumes_exactly(subspace_weights):
    options = dict(weights=str(subspace_weights), seed=1, device="cpu", maxiter=40)
    whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    part = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    for _ in range(17):
        points = part.ask()
        part.tell(points, [quadratic(p) for p in points])
    assert part._sampler_state.count == 17
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    resumed.load_state_dict(part.state_dict())
    for opt in (whole, resumed):
        while opt.status is None:
            points = opt.ask()
            opt.tell(points, [quadratic(p) for p in points])
    assert resumed.result().fun == whole.result().fun
    np.testing.assert_array_equal(resumed.result().x, whole.result().x)


def test_non_finite_scales_hand_the_run_over_to_the_fallback(tmp_path):
    torch.manual_seed(0)
    weights.save(tmp_path, "l2l-zo", make_nets(L2L_ZO_GAIN), L2L_ZO_GAIN, {"note": "test"})
    weights.load.cache_clear()
    opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(4), weights=str(tmp_path), seed=0,
                                 maxiter=20, query_ratio=1.0, device="cpu")
    opt._sampler_state.scales.fill_(float("nan"))
    while opt.status is None:
        points = opt.ask()
        assert np.isfinite(points).all()
        opt.tell(points, [quadratic(p) for p in points])
    assert opt.fallback.startswith("guard: non-finite query directions")


# ------------------------------------------------------------------ meta-training

def test_the_config_pairs_the_query_stage_with_the_subspace_query_rnn():
    with pytest.raises(ValueError, match="query_stage trains the subspace QueryRNN"):
        TrainConfig(step_form="adam-blend-slow-gain", query_stage=QueryStageConfig(iterations=2))
    with pytest.raises(ValueError, match="stage2 trains the QueryRNN through its scales"):
        TrainConfig(step_form="adam-blend-slow-gain", query="subspace")
    with pytest.raises(ValueError, match="query_stage.pairs must be a positive integer"):
        QueryStageConfig(pairs=0)


def tiny_subspace_config(**query_stage):
    from zominimize.train.config import ControllerConfig, StageConfig
    settings = dict(iterations=4, pairs=2, steps=12, batches=1, validate_every=2)
    settings.update(query_stage)
    return TrainConfig(name="tiny", step_form="adam-blend-slow-gain", query="subspace",
                       dims=(8,), batch=2, steps=20, truncation=10,
                       families={"quadratic": 1.0, "nclsq": 1.0},
                       stage1=StageConfig(episodes=2, lr=1e-2),
                       stage2=StageConfig(episodes=0, lr=1e-2), validate_every=2,
                       validation_tasks=1,
                       controller=ControllerConfig(iterations=2, pairs=2, steps=12, batch=2,
                                                   batches=1, attack_share=0.5,
                                                   attack_sides=(8,), dims=(10,),
                                                   validate_every=2),
                       query_stage=QueryStageConfig(**settings))


def test_the_query_stage_trains_the_query_rnn_only_resumes_exactly_and_ships(tmp_path):
    from zominimize.train.trainer import Trainer
    torch.set_num_threads(1)
    config = tiny_subspace_config()
    whole = Trainer(config, tmp_path / "whole")
    start = torch.nn.utils.parameters_to_vector(whole.query_net.parameters()).detach().clone()
    whole.run(report=lambda line: None)
    assert whole.query_stage.iteration == 4
    theta = torch.nn.utils.parameters_to_vector(whole.query_net.parameters()).detach()
    assert not torch.equal(theta, start)
    torch.testing.assert_close(theta, whole.query_stage.theta.float())

    def interrupt(line):  # stop at the query stage's first validation (iteration 2)
        if line.startswith("query_stage"):
            raise KeyboardInterrupt

    first = Trainer(config, tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        first.run(report=interrupt)
    again = Trainer(config, tmp_path / "part")
    assert again.resume() and again.progress["stage"] == "query_stage"
    assert again.query_stage.iteration == 2
    again.run(report=lambda line: None)
    assert torch.equal(again.query_stage.theta, whole.query_stage.theta)
    assert torch.equal(again.controller.theta, whole.controller.theta)

    whole.write_weights("test")
    entry, tensors = weights.load(str(tmp_path / "whole"), "tiny")
    assert entry["query"] == "subspace"
    assert list(entry["training"]["query_stage"]["validation"]) == ["2", "4"]
    res = zominimize.minimize(quadratic, np.zeros(D), method="l2l-zo",
                              options={"weights": str(tmp_path / "whole"), "seed": 0,
                                       "maxiter": 30, "fallback": False})
    assert res.fallback is None and res.fun < quadratic(np.zeros(D))
