"""The learned optimizer: weights I/O, inference = training, guard, device, meta-training."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize import FallbackWarning, WeightsError  # noqa: E402
from zominimize.learned import nets as learned_nets  # noqa: E402
from zominimize.learned import weights  # noqa: E402
from zominimize.learned.rule import UpdateState, resolve_device, update_step  # noqa: E402
from zominimize.train import tasks  # noqa: E402
from zominimize.train.config import StageConfig, TrainConfig, load_config  # noqa: E402
from zominimize.train.trainer import AdamInFeatures, Trainer  # noqa: E402
from zominimize.train.unroll import (UnrollSettings, initial_state, step_sizes,  # noqa: E402
                                     unroll_step)

D = 12


def quadratic_np(x):
    return float(0.5 * np.sum(np.arange(1, x.size + 1) * (x - 1.0) ** 2))


def quadratic_torch(x):
    scale = torch.arange(1, x.shape[-1] + 1, dtype=torch.float64)
    return 0.5 * (scale * (x - 1.0) ** 2).sum(-1)


def random_nets(seed=0, features="rms", step_form="direct"):
    torch.manual_seed(seed)
    update, query = learned_nets.make_nets(features, step_form)
    with torch.no_grad():  # larger heads than at initialisation, so the nets matter
        update.head.weight.mul_(30)
        query.head.weight.mul_(30)
    return update, query


#: (features, step_form) pairs that weight sets are built with.
DESIGNS = [("rms", "direct"), ("rms", "adam"), ("rms-coherence", "adam"),
           ("rms-coherence", "adam-scale"), ("rms-max-coherence", "adam-scale"),
           ("rms-max-coherence-success", "adam-scale"),
           ("rms-max-coherence-success", "adam-blend"),
           ("rms-max-coherence-success", "adam-blend-slow")]


@pytest.fixture(params=DESIGNS, ids=["-".join(d) for d in DESIGNS])
def weights_dir(tmp_path, request):
    features, step_form = request.param
    folder = tmp_path / "weights"
    weights.save(folder, "l2l-zo", random_nets(features=features, step_form=step_form),
                 features, step_form, {"note": "random, for tests"})
    weights.load.cache_clear()
    return folder


def design_of(folder) -> dict:
    """{"features": ..., "step_form": ...} of the weight set in ``folder``."""
    entry = json.loads((folder / "manifest.json").read_text())["weights"]["l2l-zo"]
    return {"features": entry["features"], "step_form": entry["step_form"]}


def run(weights_dir, method="l2l-zo", **options):
    return zominimize.minimize(quadratic_np, np.zeros(D), method=method,
                               options={"weights": str(weights_dir), "seed": 0, "maxiter": 30,
                                        "device": "cpu", **options})


# ------------------------------------------------------------------ weights

def test_saved_weights_load_back_identical(weights_dir):
    entry, tensors = weights.load(str(weights_dir), "l2l-zo")
    update, query = random_nets(**design_of(weights_dir))
    for key, value in update.state_dict().items():
        assert torch.equal(tensors["update"][key], value)
    for key, value in query.state_dict().items():
        assert torch.equal(tensors["query"][key], value)
    assert entry["features"] == design_of(weights_dir)["features"]
    assert entry["training"] == {"note": "random, for tests"}


def test_learned_method_runs_with_user_weights(weights_dir):
    res = run(weights_dir, guard=False)
    assert res.method == "l2l-zo" and res.fallback is None and res.fallback_at is None
    assert np.isfinite(res.fun) and res.fun == quadratic_np(res.x)


def _corrupt(folder):
    path = folder / "l2l-zo.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest["weights"]["l2l-zo"])
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, message", [
    (_corrupt, "sha256"),
    (lambda f: (f / "l2l-zo.pt").unlink(), "missing"),
    (lambda f: _edit_manifest(f, lambda e: e["architecture"].update(hidden=20)), "architecture"),
    (lambda f: _edit_manifest(f, lambda e: e.update(step_form="sideways")), "step_form"),
    (lambda f: _edit_manifest(f, lambda e: e.update(  # another feature set: other inputs
        features={"rms": "rms-coherence", "rms-coherence": "rms",
                  "rms-max-coherence": "rms", "rms-max-coherence-success": "rms-max-coherence"
                  }[e["features"]])),
     "architecture"),
    (lambda f: (f / "manifest.json").write_text("{not json"), "JSON"),
    (lambda f: (f / "manifest.json").unlink(), "no weights manifest"),
])
def test_damaged_weights_raise_naming_the_file(weights_dir, damage, message):
    weights.load.cache_clear()
    damage(weights_dir)
    with pytest.raises(WeightsError, match=message):
        run(weights_dir)
    with pytest.warns(FallbackWarning, match=message):
        res = run(weights_dir, fallback=True)
    assert res.method == "zo-adamm" and message.lower() in res.fallback.lower()
    assert res.fallback_at == 0


def test_pickled_code_is_never_executed(tmp_path):
    folder = tmp_path / "evil"
    weights.save(folder, "l2l-zo", random_nets(), "rms", "direct", {})

    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickled code ran')",))

    torch.save({"update": Payload(), "query": {}}, folder / "l2l-zo.pt")
    _edit_manifest(folder, lambda e: e.update(sha256=weights.sha256(folder / "l2l-zo.pt")))
    weights.load.cache_clear()
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        run(folder)


# ------------------------------------------------------------------ inference = training

def test_one_inference_step_equals_one_training_unroll_step(weights_dir):
    q = 6
    opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), weights=str(weights_dir), seed=3,
                                 q=q, query_ratio=1.0, device="cpu")
    settings = opt.settings
    design = design_of(weights_dir)
    update, query = random_nets(**design)
    unroll = UnrollSettings(q=q, use_query=True, **design)
    x0 = torch.zeros(1, D, dtype=torch.float64)
    lr, mu = step_sizes(x0, unroll)
    assert lr.item() == pytest.approx(settings["step"]) and mu.item() == pytest.approx(settings["mu"])
    state = initial_state(x0, update, query)
    for _ in range(3):
        x_before = opt.x
        points = opt.ask()
        scales = state.query.scales.numpy()[0]
        eps = (points[1:] - x_before) / settings["mu"] / scales
        opt.tell(points, [quadratic_np(p) for p in points])
        with torch.no_grad():
            state, *_ = unroll_step(quadratic_torch, state,
                                    torch.as_tensor(eps).unsqueeze(1), update, query, lr, mu,
                                    unroll)
        np.testing.assert_allclose(opt.x, state.x.numpy()[0], rtol=1e-6, atol=1e-9)
        inference_scales = opt.state_dict()["sampler_state"]["scales"]
        np.testing.assert_allclose(inference_scales, state.query.scales.numpy()[0], rtol=1e-6)
    assert not np.allclose(inference_scales, 1.0)  # the QueryRNN path was exercised


# ------------------------------------------------------------------ guard and device

def sabotaged_weights(folder, head):
    update, query = random_nets()
    with torch.no_grad():
        update.head.weight.fill_(head)
    weights.save(folder, "l2l-zo", (update, query), "rms", "direct", {})
    weights.load.cache_clear()
    return folder


def test_guard_switches_on_divergence_from_the_best_point(tmp_path):
    folder = sabotaged_weights(tmp_path / "w", head=-50.0)  # huge steps
    res = run(folder, maxiter=40)
    assert res.fallback.startswith("guard: diverged") and res.fallback_at >= 1
    assert res.method == "l2l-zo" and res.fun <= quadratic_np(np.zeros(D))
    unguarded = run(folder, maxiter=40, guard=False)
    assert unguarded.fallback is None and unguarded.fun >= res.fun


def test_guard_switches_on_stall(weights_dir):
    res = zominimize.minimize(lambda x: 1.0, np.zeros(D), method="l2l-zo",
                              options={"weights": str(weights_dir), "seed": 0, "maxiter": 30,
                                       "guard_patience": 5, "ftol": 0})
    assert res.fallback.startswith("guard: stalled") and res.fallback_at == 6


def test_guard_halves_the_step_from_the_best_point_at_each_later_stall(weights_dir):
    """Stall at iteration 6 (as above); the count runs on across the switch, so the next
    iteration is a stall too, then every 5 iterations without improvement."""
    opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), weights=str(weights_dir), seed=0,
                                 maxiter=30, guard_patience=5, ftol=0)
    scales = {}
    while opt.status is None:
        points = opt.ask()
        opt.tell(points, np.ones(len(points)))  # a flat f: its first point stays the best
        state = opt.state_dict()
        scales[state["nit"]] = state["step_scale"]
        if state["nit"] in (7, 12):
            np.testing.assert_array_equal(state["x"], state["x_best"])
    assert opt.fallback_at == 6
    cuts = [it for it in scales if it > 1 and scales[it] < scales[it - 1]]
    assert cuts == [7, 12, 17, 22, 27] and scales[30] == 0.5 ** 5


def test_refining_after_the_switch_ends_lower_on_a_noise_floor(weights_dir):
    """On a sphere the ZO estimate's noise sets a floor in proportion to the step: each
    stall's halving lowers it, while a run that never stalls long enough stays on it."""
    def sphere(x):
        return float(np.sum((x - 0.3) ** 2))

    ends = {patience: zominimize.minimize(
        sphere, np.zeros(D), method="l2l-zo",
        options={"weights": str(weights_dir), "seed": 3, "maxiter": 3000, "ftol": 0,
                 "guard_patience": patience}) for patience in (50, 3000)}
    assert ends[50].fallback.startswith("guard")
    assert ends[50].fun < 0.01 * ends[3000].fun  # measured: 1e-10 against 1e-7 or more


def test_guarded_run_resumes_exactly_after_the_switch(tmp_path):
    folder = sabotaged_weights(tmp_path / "w", head=-50.0)
    options = dict(weights=str(folder), seed=1, maxiter=40, device="cpu")
    whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    half = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    for opt in (whole, half):
        for _ in range(20):
            points = opt.ask()
            opt.tell(points, [quadratic_np(p) for p in points])
    assert whole.fallback_at is not None
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    resumed.load_state_dict(half.state_dict())
    for opt in (whole, resumed):
        while opt.status is None:
            points = opt.ask()
            opt.tell(points, [quadratic_np(p) for p in points])
    np.testing.assert_array_equal(whole.result().x, resumed.result().x)
    assert resumed.result().fallback == whole.result().fallback


def test_learned_run_resumes_exactly(weights_dir):
    options = dict(weights=str(weights_dir), seed=2, maxiter=20, device="cpu", guard=False)
    whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    part = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    for _ in range(7):
        points = part.ask()
        part.tell(points, [quadratic_np(p) for p in points])
    state = part.state_dict()
    assert isinstance(state["rule_state"]["h"], np.ndarray)  # plain data, device-free
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    resumed.load_state_dict(state)
    for opt in (whole, resumed):
        while opt.status is None:
            points = opt.ask()
            opt.tell(points, [quadratic_np(p) for p in points])
    np.testing.assert_array_equal(whole.result().x, resumed.result().x)
    np.testing.assert_array_equal(whole.x, resumed.x)


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")


def test_bad_learned_options_name_the_argument(weights_dir):
    with pytest.raises(ValueError, match="query_ratio"):
        run(weights_dir, query_ratio=1.5)
    with pytest.raises(ValueError, match="device"):
        run(weights_dir, device="tpu")
    with pytest.raises(ValueError, match="weights"):
        run(weights_dir, weights=3)


@pytest.mark.parametrize("method", ["l2l-zo-update", "l2l-zo-query"])
def test_ablations_run_their_half(weights_dir, method):
    res = run(weights_dir, method=method, guard=False)
    assert res.method == method and res.fallback is None
    opt = zominimize.ZOOptimizer(method, np.zeros(D), weights=str(weights_dir), seed=0)
    points = opt.ask()
    opt.tell(points, [quadratic_np(p) for p in points])
    state = opt.state_dict()
    assert ("h" in state["rule_state"]) == (method == "l2l-zo-update")
    assert ("scales" in state["sampler_state"]) == (method == "l2l-zo-query")


# ------------------------------------------------------------------ meta-training

def tiny_config(**changes):
    base = dict(name="tiny", steps=40, truncation=20, batch=4, dims=(8,),
                families={"quadratic": 1.0, "nclsq": 1.0}, validate_every=10,
                validation_tasks=1, stage1=StageConfig(episodes=20, lr=3e-3),
                stage2=StageConfig(episodes=4, lr=5e-3, penalty=0.005))
    base.update(changes)
    return TrainConfig(**base)


@pytest.mark.parametrize("features, step_form", DESIGNS)
def test_tiny_training_lowers_the_meta_loss_and_writes_loadable_weights(tmp_path, features,
                                                                        step_form):
    torch.set_num_threads(1)
    # outer lr 1e-2: the "adam-scale" form, which only rescales Adam's steps, moves slowest
    config = tiny_config(features=features, step_form=step_form,
                         stage1=StageConfig(episodes=20, lr=1e-2))
    trainer = Trainer(config, tmp_path)
    references = trainer.baseline()
    before = references["untrained"]["meta_loss"]
    progress = trainer.run(report=lambda line: None)
    after = progress["best"]["stage1"]["score"]["meta_loss"]
    assert after < before - 0.03
    trainer.write_weights("test", references)
    entry, _ = weights.load(str(tmp_path), "tiny")
    assert entry["training"]["validation"]["stage1"]["meta_loss"] == after
    res = zominimize.minimize(quadratic_np, np.zeros(D), method="l2l-zo",
                              options={"weights": str(tmp_path / "manifest.json"), "seed": 0,
                                       "maxiter": 5, "fallback": False})
    assert res.fun < quadratic_np(np.zeros(D)) or res.fallback is not None


@pytest.mark.parametrize("sampling", [{}, dict(task_sampling="adaptive", meta_loss="vs-adam",
                                              dims=(8, 12))], ids=["uniform", "adaptive"])
def test_training_resumes_to_the_same_weights(tmp_path, sampling):
    torch.set_num_threads(1)
    config = tiny_config(stage1=StageConfig(episodes=20, lr=3e-3), **sampling)
    whole = Trainer(config, tmp_path / "whole")
    whole.run(report=lambda line: None)
    first = Trainer(config, tmp_path / "part")

    reports = []

    def interrupt(line):  # stop right after the second checkpoint (episode 10)
        reports.append(line)
        if len(reports) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.run(report=interrupt)
    again = Trainer(config, tmp_path / "part")
    assert again.resume() and again.progress["episode"] == 10
    again.run(report=lambda line: None)
    for a, b in zip(whole.update_net.state_dict().values(), again.update_net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(whole.query_net.state_dict().values(), again.query_net.state_dict().values()):
        assert torch.equal(a, b)


CONFIGS = sorted((Path(__file__).parent.parent / "pretrained").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recorded_training_config_still_loads(path):
    """The shipped configs and those of pretrained/experiments/ stay runnable commands."""
    config = load_config(path)
    learned_nets.check_design(config.features, config.step_form)


def test_task_families_are_differentiable_and_nonnegative():
    gen = torch.Generator().manual_seed(0)
    for family in tasks.FAMILIES:
        task = tasks.sample(gen, family, 3, 6)
        x = task.x0.clone().requires_grad_(True)
        values = task.fun(x)
        assert values.shape == (3,) and bool((values >= 0).all())
        values.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert task.fun(torch.zeros(5, 3, 6, dtype=torch.float64)).shape == (5, 3)


@pytest.mark.parametrize("features, step_form", [("rms", "adam"), ("rms-coherence", "adam"),
                                                 ("rms-coherence", "adam-scale"),
                                                 ("rms-max-coherence", "adam-scale"),
                                                 ("rms-max-coherence-success", "adam-scale")])
def test_adam_step_forms_with_a_zero_head_are_zo_adam(features, step_form):
    """The "adam" forms start as ZO-Adam: with zero head weights they take Adam's steps."""
    update, query = learned_nets.make_nets(features, step_form)
    with torch.no_grad():
        update.head.weight.zero_()
    gen = torch.Generator().manual_seed(0)
    task = tasks.sample(gen, "quadratic", 2, 7)
    paths = []
    for net, form in ((update, step_form), (AdamInFeatures("direct"), "direct")):
        settings = UnrollSettings(q=4, step_form=form, features=features)
        lr, mu = step_sizes(task.x0, settings)
        state = initial_state(task.x0, net, query)
        draws = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for _ in range(5):
                eps = torch.randn(4, 2, 7, generator=draws, dtype=torch.float64)
                state, *_ = unroll_step(task.fun, state, eps, net, query, lr, mu, settings)
        paths.append(state.x)
    torch.testing.assert_close(paths[0], paths[1])
    assert not torch.equal(paths[0], task.x0)


def test_max_corrected_features_with_a_zero_head_step_as_the_zo_adamm_method():
    """With "rms-max-coherence" a zero head takes zo-adamm's steps (the package's rule, its
    second moment max-corrected); "rms-coherence" takes plain Adam's, which differ once the
    estimates shrink."""
    from zominimize.learned.rule import learned_rule
    from zominimize.rules import adamm
    net, _ = learned_nets.make_nets("rms-max-coherence", "adam-scale")
    with torch.no_grad():
        net.head.weight.zero_()
    rng = np.random.default_rng(0)
    estimates = [rng.standard_normal(50) * 10.0 ** -(t / 500) for t in range(3000)]  # shrinking
    paths = {}
    for name, rule in (("max", learned_rule(net, 0.1, "rms-max-coherence", "adam-scale", "cpu")),
                       ("plain", learned_rule(net, 0.1, "rms-coherence", "adam-scale", "cpu")),
                       ("zo-adamm", adamm(0.1, 0.9, 0.999, 1e-12))):
        state, steps = rule.init(50), []
        for g in estimates:
            step, state = rule.update(g.copy(), 1.0, state)
            steps.append(np.asarray(step, dtype=np.float64))
        paths[name] = np.array(steps)
    np.testing.assert_allclose(paths["max"], paths["zo-adamm"], rtol=1e-5, atol=1e-12)
    assert np.abs(paths["plain"][-100:]).mean() > 3 * np.abs(paths["max"][-100:]).mean()


def test_coherence_feature_is_one_row_for_all_coordinates_and_scale_free():
    """"rms-coherence" adds the running mean of cos(g_t, m_{t-1}): 0 at the first step,
    the same for every coordinate, unchanged when g is rescaled, near 0 for pure noise,
    near 1 for a clean estimate, and the "rms" rows are left as they were."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(100, 2, 500, generator=gen, dtype=torch.float64)

    def last_inputs(estimates):
        moments = learned_nets.initial_moments((2, 500))
        history = []
        for g in estimates:
            inputs, moments, _ = learned_nets.update_inputs(g, None, moments, "rms-coherence")
            history.append(inputs)
        return history

    for scale in (1e-6, 1.0, 1e6):
        history = last_inputs(scale * noise)
        assert history[0].shape == (2, 3, 500)
        torch.testing.assert_close(history[0][:, 2], torch.zeros(2, 500))
        coherence = history[-1][:, 2]
        assert bool((coherence == coherence[:, :1]).all())
        assert abs(float(coherence[0, 0])) < 0.1
    clean = last_inputs(torch.ones(2, 500, dtype=torch.float64) + 0.1 * noise)
    assert float(clean[-1][0, 2, 0]) > 0.9
    flipping = last_inputs([(-1) ** t * torch.ones(2, 500, dtype=torch.float64)
                            for t in range(30)])  # overshooting: each step undoes the last
    assert float(flipping[-1][0, 2, 0]) < -0.5
    rms_inputs, *_ = learned_nets.update_inputs(noise[0], None,
                                               learned_nets.initial_moments((2, 500)), "rms")
    torch.testing.assert_close(rms_inputs, last_inputs(noise[:1])[0][:, :2])


def test_success_feature_is_one_row_read_off_the_order_of_f():
    """"rms-max-coherence-success" adds 2 r - 1, r the running rate of f(x_t) < f(x_{t-1}):
    0 at the first step, the same for every coordinate, +1 while f falls and -1 while it
    rises, unchanged by any increasing transform of f, and the other rows are those of
    "rms-max-coherence"."""
    gen = torch.Generator().manual_seed(0)
    estimates = torch.randn(40, 2, 30, generator=gen, dtype=torch.float64)

    def history(values, features="rms-max-coherence-success"):
        moments, rows = learned_nets.initial_moments((2, 30)), []
        for g, f in zip(estimates, values):
            inputs, moments, _ = learned_nets.update_inputs(g, f, moments, features)
            rows.append(inputs)
        return rows

    falling = [torch.tensor([10.0 - t, 5.0 - t], dtype=torch.float64) for t in range(40)]
    rows = history(falling)
    assert rows[0].shape == (2, 4, 30)
    torch.testing.assert_close(rows[0][:, 3], torch.zeros(2, 30))
    assert bool((rows[-1][:, 3] == rows[-1][:, 3, :1]).all())
    torch.testing.assert_close(rows[1][:, 3], torch.ones(2, 30))  # bias-corrected at once
    assert float(rows[-1][0, 3, 0]) == pytest.approx(1.0)
    rising = history([-f for f in falling])
    assert float(rising[-1][1, 3, 0]) == pytest.approx(-1.0)
    mixed = [torch.tensor([(-1.0) ** t + t / 100, 0.0], dtype=torch.float64) for t in range(40)]
    transformed = [torch.exp(3 * f) - 7 for f in mixed]
    for a, b in zip(history(mixed), history(transformed)):
        torch.testing.assert_close(a, b)
    assert abs(float(history(mixed)[-1][0, 3, 0])) < 0.2  # falls every other step
    for a, b in zip(history(mixed), history(mixed, "rms-max-coherence")):
        torch.testing.assert_close(a[:, :3], b)


def test_adam_step_form_bounds_the_multiplier():
    out = torch.tensor([[1e6, -1e6, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    step = learned_nets.adam_corrected_step(out, torch.ones(3, dtype=torch.float64), "adam")
    bound = np.exp(learned_nets.LOG_RANGE)
    torch.testing.assert_close(step, torch.tensor([-bound, -1 / bound, -0.5],
                                                  dtype=torch.float64))
    scaled = learned_nets.adam_corrected_step(out[0], -torch.ones(3, dtype=torch.float64),
                                              "adam-scale")
    torch.testing.assert_close(scaled, torch.tensor([bound, 1 / bound, 1.0],
                                                    dtype=torch.float64))
    with torch.no_grad():  # the in-place inference arithmetic gives the same numbers
        torch.testing.assert_close(learned_nets.adam_corrected_step(
            out, torch.ones(3, dtype=torch.float64), "adam"), step)
        torch.testing.assert_close(learned_nets.adam_corrected_step(
            out[0], -torch.ones(3, dtype=torch.float64), "adam-scale"), scaled)


def test_adam_blend_moves_the_normalisation_from_the_max_rms_to_the_fast_one():
    """w = sigmoid(b - BLEND_OFFSET): b -> -inf is ZO-AdaMM's step (times the multiplier),
    b -> +inf divides it by rms_fast / rms, and the inference arithmetic agrees."""
    m_n = torch.tensor([0.5, -0.01, 0.2], dtype=torch.float64)
    log_fast = torch.log(torch.tensor([1.0, 0.01, 0.5], dtype=torch.float64))
    a = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    moments = learned_nets.initial_moments((3,))
    adam = -np.exp(learned_nets.LOG_RANGE * np.tanh(a.numpy() / learned_nets.LOG_RANGE)) \
        * m_n.numpy()
    for b, expected in ((-math.inf, adam), (math.inf, adam / [1.0, 0.01, 0.5]),
                        (learned_nets.BLEND_OFFSET, adam / np.sqrt([1.0, 0.01, 0.5]))):
        out = torch.stack([a, torch.full_like(a, b)])
        log_factor, after = learned_nets.blend_log_factor(out[1], log_fast, moments,
                                                          "adam-blend")
        assert after is moments  # "adam-blend" keeps no blend weight
        step = learned_nets.adam_corrected_step(out, m_n, "adam-blend", log_factor)
        np.testing.assert_allclose(step.numpy(), expected, rtol=1e-12)
        with torch.no_grad():
            torch.testing.assert_close(
                learned_nets.adam_corrected_step(out, m_n, "adam-blend", log_factor), step)


def test_slow_blend_weight_is_a_running_mean_of_the_proposals():
    """"adam-blend-slow": w starts at 0 and follows sigmoid(b - BLEND_OFFSET) with decay
    BETA_W, so a proposal that flips between the ends every step moves w by at most
    1 - BETA_W; the log-multiplier is -w log(rms_fast / rms)."""
    beta = learned_nets.BETA_W
    log_fast = torch.full((2,), -5.0, dtype=torch.float64)
    moments = learned_nets.initial_moments((2,))
    ws = []
    for t in range(40):
        b = torch.tensor([math.inf, math.inf if t % 2 else -math.inf], dtype=torch.float64)
        log_factor, moments = learned_nets.blend_log_factor(b, log_fast, moments,
                                                            "adam-blend-slow")
        ws.append(moments.blend.clone())
        torch.testing.assert_close(log_factor, 5.0 * moments.blend)
    w = torch.stack(ws)
    # always at the sign-like end: w_t = 1 - BETA_W^t
    np.testing.assert_allclose(w[:, 0].numpy(), 1 - beta ** np.arange(1, 41), rtol=1e-12)
    # flipping every step: w settles between the ends instead of flipping with it
    assert float(w[1:, 1].diff().abs().max()) <= 1 - beta + 1e-12
    assert 0.4 < float(w[-1, 1]) < 0.6


def test_zero_headed_slow_blend_is_zo_adamm_times_the_growing_blend():
    """An untrained "adam-blend-slow" net (zero head) steps as ZO-AdaMM times
    (rms / rms_fast)^w_t, w_t = (1 - BETA_W^t) sigmoid(-BLEND_OFFSET) (at most 0.018), and the
    ZO-Adam reference keeps w = 0 exactly."""
    features, form = "rms-max-coherence-success", "adam-blend-slow"
    update, _ = learned_nets.make_nets(features, form)
    with torch.no_grad():
        update.head.weight.zero_()
    adam_net = AdamInFeatures(form)
    gen = torch.Generator().manual_seed(1)
    state = UpdateState(*update.initial_state((6,)), learned_nets.initial_moments((6,)))
    reference = UpdateState(*adam_net.initial_state((6,)), learned_nets.initial_moments((6,)))
    w_zero_head = 1 / (1 + math.exp(learned_nets.BLEND_OFFSET))
    for t in range(1, 31):
        g = torch.randn(6, generator=gen, dtype=torch.float64) * 0.8 ** t
        step, state = update_step(update, g, 1.0 - t, state, 0.1, features, form)
        adam, reference = update_step(adam_net, g, 1.0 - t, reference, 0.1, features, form)
        w = (1 - learned_nets.BETA_W ** t) * w_zero_head
        torch.testing.assert_close(state.moments.blend, torch.full((6,), w, dtype=torch.float64))
        assert float(reference.moments.blend.abs().max()) == 0.0
        log_fast = learned_nets.log_fast_ratio(state.moments,
                                               learned_nets.normalising_rms(state.moments))
        expected = adam * torch.exp(-w * log_fast)
        torch.testing.assert_close(step, expected, rtol=1e-5, atol=0)


def test_the_fast_moment_bounds_the_blended_step():
    """With BETA_FAST = BETA1, |m^| <= rms_fast (Cauchy-Schwarz over the same weights), so
    a fully blended step is at most exp(LOG_RANGE) lr per coordinate, whatever g did."""
    gen = torch.Generator().manual_seed(0)
    moments = learned_nets.initial_moments((50,))
    for t in range(60):
        g = torch.randn(50, generator=gen, dtype=torch.float64) * 10.0 ** (-t / 10)
        _, m_n, rms, moments = learned_nets.normalised(g, moments, max_corrected=True, fast=True)
        blended = m_n.abs() * torch.exp(-learned_nets.log_fast_ratio(moments, rms))
        assert float(blended.max()) <= 1 + 1e-9
    # g fell 10^6-fold; the fast RMS followed it, the max-corrected one only fell
    # with its bias correction (1 - BETA2^t grows 60-fold)
    assert float(learned_nets.log_fast_ratio(moments, rms).max()) < -1.5


@pytest.mark.parametrize("features, step_form, message", [
    ("raw", "adam", "step_form='adam'"), ("rms", "sideways", "step_form"),
    ("scaled", "direct", "features")])
def test_bad_designs_name_the_setting(features, step_form, message):
    with pytest.raises(ValueError, match=message):
        learned_nets.make_nets(features, step_form)
    with pytest.raises(ValueError, match=message):
        tiny_config(features=features, step_form=step_form)


def test_zo_meta_gradient_matches_autograd():
    from zominimize.train.unroll import value
    x = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64, requires_grad=True)
    auto = torch.autograd.grad(value(quadratic_torch, x, 1e-5, UnrollSettings()).sum(), x)[0]
    zo = torch.autograd.grad(value(quadratic_torch, x, 1e-5,
                                   UnrollSettings(meta_gradient="zo")).sum(), x)[0]
    torch.testing.assert_close(zo, auto, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n_inputs, outputs", [(2, 1), (2, 2), (3, 2)])
def test_blocked_inference_path_equals_the_differentiable_one(n_inputs, outputs):
    torch.manual_seed(0)
    net = learned_nets.CoordinateLSTM(n_inputs, outputs=outputs)
    d = 3 * learned_nets.CHUNK + 123  # large enough for blocks, with a ragged last one
    inputs, h, c = torch.randn(n_inputs, d), torch.randn(10, d), torch.randn(10, d)
    with torch.no_grad():
        blocked = net(inputs, (h, c))
    differentiable = net(inputs, (h, c))
    torch.testing.assert_close(blocked[0], differentiable[0].detach())
    torch.testing.assert_close(blocked[1][0], differentiable[1][0].detach())
    torch.testing.assert_close(blocked[1][1], differentiable[1][1].detach())


def test_vs_adam_meta_loss_scores_zo_adam_at_log_2(tmp_path):
    """The "vs-adam" meta-loss compares with ZO-Adam on the same draws: ZO-Adam itself
    scores log(1 + 1) at every step, and a trained net below that is ahead of it."""
    from zominimize.train.trainer import validate, validation_set
    config = tiny_config(meta_loss="vs-adam", step_form="adam", max_samples=6)
    _, query = learned_nets.make_nets("rms", "adam")
    held_out = validation_set(config)
    score = validate(AdamInFeatures("adam"), query, config, "stage1", held_out)
    assert score["meta_loss"] == pytest.approx(np.log(2), rel=1e-12)
    trainer = Trainer(config, tmp_path)
    trainer.run(report=lambda line: None)
    trained = trainer.progress["best"]["stage1"]["score"]["meta_loss"]
    assert trained < np.log(2)


def test_max_samples_caps_the_data_driven_families():
    gen = torch.Generator().manual_seed(0)
    for family in ("nclsq", "logistic", "softl1", "l1reg"):
        capped = tasks.sample(gen, family, 2, 10, max_samples=5)
        full = tasks.sample(gen, family, 2, 10)
        assert (capped.samples, full.samples) == (5, 20)
        assert capped.fun(capped.x0).shape == full.fun(full.x0).shape == (2,)
    assert tasks.sample(gen, "quadratic", 2, 10, max_samples=5).samples is None
    with pytest.raises(ValueError, match="meta_loss"):
        tiny_config(meta_loss="squared")


def test_batch_per_dimension(tmp_path):
    """``batch`` may give one number of tasks per entry of ``dims`` (large d costs less)."""
    from zominimize.train.config import load_config
    from zominimize.train.trainer import validation_set
    config = tiny_config(dims=(8, 12), batch=(4, 2), validation_tasks=2,
                         stage1=StageConfig(episodes=6, lr=3e-3), validate_every=3)
    assert [task.size for task in validation_set(config)][:2] == [(4, 8), (2, 12)]
    trainer = Trainer(config, tmp_path)
    trainer.run(report=lambda line: None)
    assert {(h["episode"], h["stage"]) for h in trainer.progress["history"]} >= {(5, "stage1")}
    path = tmp_path / "config.toml"
    path.write_text('dims = [8, 12]\nbatch = [4, 2]\n')
    assert load_config(path).batch_for(12) == 2
    with pytest.raises(ValueError, match="one size per entry of dims"):
        tiny_config(dims=(8, 12), batch=(4, 2, 1))
    with pytest.raises(ValueError, match="positive integers"):
        tiny_config(batch=0)


def test_behind_penalty_weighs_only_the_steps_behind_zo_adam():
    """ZO-Adam itself is never behind itself: it scores log 2 with any penalty, and a net
    that lags it scores higher with the penalty than without."""
    from zominimize.train.trainer import validate, validation_set
    base = dict(meta_loss="vs-adam", step_form="adam-scale", features="rms-coherence",
                max_samples=6)
    _, query = learned_nets.make_nets("rms-coherence", "adam-scale")
    scores = {}
    for penalty in (0.0, 3.0):
        config = tiny_config(behind_penalty=penalty, **base)
        held_out = validation_set(config)
        adam = validate(AdamInFeatures("adam-scale"), query, config, "stage1", held_out)
        assert adam["meta_loss"] == pytest.approx(np.log(2), rel=1e-12)
        assert adam["worst_meta_loss"] == pytest.approx(np.log(2), rel=1e-12)
        lagging = validate(LaggingAdam(), query, config, "stage1", held_out)
        scores[penalty] = lagging["meta_loss"]
        assert lagging["worst_batch"] in {f"{f} d=8" for f in config.families}
    assert np.log(2) < scores[0.0] < scores[3.0]


def test_vs_best_scores_each_task_against_the_better_of_zo_adam_and_zo_signsgd():
    """Under "vs-best" ZO-Adam is never ahead of the reference (the better of itself and
    ZO-signSGD on each task and step): it scores log 2 where it is that better one and more
    where sign steps win (here, early on, on both families), while safety
    ("worst_behind_adam") still reads log 2 for it."""
    from zominimize.train.trainer import validate, validation_set
    base = dict(step_form="adam-scale", features="rms-max-coherence", max_samples=16,
                families={"quadratic": 1.0, "nclsq": 1.0})
    _, query = learned_nets.make_nets("rms-max-coherence", "adam-scale")
    held_out = validation_set(tiny_config(meta_loss="vs-best", **base))
    best = validate(AdamInFeatures("adam-scale"), query,
                    tiny_config(meta_loss="vs-best", **base), "stage1", held_out)
    only_adam = validate(AdamInFeatures("adam-scale"), query,
                         tiny_config(meta_loss="vs-adam", **base), "stage1", held_out)
    assert only_adam["meta_loss"] == pytest.approx(np.log(2), rel=1e-12)
    assert best["worst_behind_adam"] == pytest.approx(np.log(2), rel=1e-12)
    assert best["final_log_ratio"] == pytest.approx(only_adam["final_log_ratio"], rel=1e-12)
    assert best["meta_loss"] > np.log(2) + 0.01
    assert best["worst_meta_loss"] > only_adam["worst_meta_loss"]


def test_max_lead_holds_the_vs_best_reference_near_zo_adam():
    """max_lead = K keeps the reference at or above e^-K times ZO-Adam's f: with K = 0 the
    "vs-best" meta-loss is the "vs-adam" one, and a larger K lets it lead further."""
    from zominimize.train.trainer import validate, validation_set
    base = dict(step_form="adam-scale", features="rms-max-coherence", max_samples=16,
                behind_penalty=3.0)
    _, query = learned_nets.make_nets("rms-max-coherence", "adam-scale")
    held_out = validation_set(tiny_config(meta_loss="vs-adam", **base))
    scores = {lead: validate(LaggingAdam(), query,
                             tiny_config(meta_loss="vs-best", max_lead=lead, **base),
                             "stage1", held_out)["meta_loss"] for lead in (0.0, 0.5, None)}
    only_adam = validate(LaggingAdam(), query, tiny_config(meta_loss="vs-adam", **base),
                         "stage1", held_out)["meta_loss"]
    assert scores[0.0] == pytest.approx(only_adam, rel=1e-12)
    assert scores[0.0] < scores[0.5] <= scores[None]
    for bad in (dict(meta_loss="vs-adam", max_lead=1.0), dict(meta_loss="vs-best", max_lead=-1.0),
                dict(meta_loss="vs-best", max_lead=math.nan)):
        with pytest.raises(ValueError, match="max_lead"):
            tiny_config(**bad)


def test_sign_step_is_the_packages_zo_signsgd_step():
    from zominimize.rules import sign_sgd
    from zominimize.train.trainer import sign_step
    gen = torch.Generator().manual_seed(3)
    task = tasks.sample(gen, "quadratic", 2, 6)
    eps = torch.randn(5, 2, 6, generator=gen, dtype=torch.float64)
    lr, mu = torch.tensor([[0.1], [0.2]], dtype=torch.float64), torch.full((2, 1), 1e-4,
                                                                            dtype=torch.float64)
    x = sign_step(task.fun, task.x0, eps, lr, mu)
    for b in range(2):
        f = lambda z: float(task.fun(torch.as_tensor(z).expand(2, 6))[b])
        x0, u = task.x0[b].numpy(), eps[:, b].numpy()
        g = np.mean([(f(x0 + 1e-4 * ui) - f(x0)) / 1e-4 * ui for ui in u], axis=0)
        rule = sign_sgd(float(lr[b]), halve_after=0)  # the fixed-step form training compares with
        step, _ = rule.update(g, f(x0), rule.init(6))
        np.testing.assert_allclose(x[b].numpy(), x0 + step, rtol=0, atol=1e-12)


class LaggingAdam(torch.nn.Module):
    """An "adam-scale" net with a = -1: every step 0.38 times ZO-Adam's, so it lags."""

    hidden = 1

    def initial_state(self, shape, device=None):
        return AdamInFeatures("adam-scale").initial_state(shape, device)

    def forward(self, inputs, state):
        return torch.full_like(inputs[..., 0, :], -1.0), state


def test_the_nets_a_stage_starts_from_compete_for_its_checkpoint(tmp_path):
    """Validation scores the nets before a stage trains (episode 0); if no later checkpoint
    beats them, the stage hands them on unchanged."""
    torch.set_num_threads(1)
    config = tiny_config(stage1=StageConfig(episodes=10, lr=3e-3), validate_every=5,
                         meta_loss="vs-adam", step_form="adam-scale", selection="safe",
                         stage2=StageConfig(episodes=5, lr=1.0, penalty=0.005))
    trainer = Trainer(config, tmp_path)
    lines = []
    start = copy.deepcopy(trainer.query_net.state_dict())
    trainer.run(report=lines.append)
    assert [line.split(":")[0] for line in lines] == [
        "stage1 episode 0/10", "stage1 episode 5/10", "stage1 episode 10/10",
        "stage2 episode 0/5", "stage2 episode 5/5"]
    # an outer lr of 1.0 wrecks the QueryRNN: the one the stage started from is kept
    assert trainer.progress["best"]["stage2"]["episode"] == 0
    for key, value in start.items():
        assert torch.equal(trainer.query_net.state_dict()[key], value)


def test_episodes_of_several_cells_train_on_their_mean_and_record_each(tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(cells_per_episode=3, stage1=StageConfig(episodes=4, lr=3e-3),
                         stage2=StageConfig(episodes=1, lr=5e-3), validate_every=4)
    trainer = Trainer(config, tmp_path)
    trainer.run(report=lambda line: None)
    stage1 = [h for h in trainer.progress["history"] if h["stage"] == "stage1"]
    assert [h["episode"] for h in stage1] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(np.isfinite(h["loss"]) and h["dim"] == 8 for h in stage1)
    assert {h["family"] for h in stage1} == {"quadratic", "nclsq"}
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="cells_per_episode"):
            tiny_config(cells_per_episode=bad)


def test_adaptive_sampling_leans_towards_the_cells_behind_zo_adam():
    """"uniform": family weights over dims; "adaptive": cells whose episodes of this stage
    were behind ZO-Adam (meta-loss > log 2) gain probability, every cell keeps at least its
    UNIFORM_SHARE of the base, a diverged episode (inf) is capped, other stages are ignored."""
    from zominimize.train.trainer import UNIFORM_SHARE, cell_probabilities
    families = {"quadratic": 1.0, "nclsq": 3.0}
    uniform = tiny_config(families=families, dims=(8, 16))
    base = cell_probabilities(uniform, [], "stage1")
    assert base == pytest.approx({("quadratic", 8): 0.125, ("quadratic", 16): 0.125,
                                  ("nclsq", 8): 0.375, ("nclsq", 16): 0.375})
    adaptive = tiny_config(families=families, dims=(8, 16), meta_loss="vs-adam",
                           task_sampling="adaptive")
    assert cell_probabilities(adaptive, [], "stage1") == pytest.approx(base)
    history = [{"stage": "stage1", "episode": i, "family": "quadratic", "dim": 16,
                "loss": loss} for i, loss in enumerate([0.8, 0.9, math.inf])]
    history += [{"stage": "stage1", "episode": 3, "family": "nclsq", "dim": 8, "loss": 0.5},
                {"stage": "stage2", "episode": 0, "family": "quadratic", "dim": 8,
                 "loss": math.inf}]
    leaning = cell_probabilities(adaptive, history, "stage1")
    assert sum(leaning.values()) == pytest.approx(1.0)
    assert max(leaning, key=leaning.get) == ("quadratic", 16) and leaning[("quadratic", 16)] > 0.5
    assert leaning[("nclsq", 8)] < leaning[("nclsq", 16)]  # ahead of ZO-Adam: less often
    assert all(leaning[c] >= UNIFORM_SHARE * base[c] for c in base)
    assert cell_probabilities(adaptive, history, "stage2")[("quadratic", 8)] > 0.5
    for bad, message in ((dict(task_sampling="worst"), "task_sampling"),
                         (dict(task_sampling="adaptive"), "vs-adam"),
                         (dict(adaptive_sharpness=-1.0), "adaptive_sharpness")):
        with pytest.raises(ValueError, match=message):
            tiny_config(**bad)


def test_safe_selection_prefers_the_checkpoint_never_behind_zo_adam():
    from zominimize.train.trainer import selection_key
    even = {"meta_loss": 0.60, "worst_behind_adam": 0.69}    # ahead on average, never behind
    lopsided = {"meta_loss": 0.50, "worst_behind_adam": 0.80}  # further ahead, behind on one
    assert selection_key(lopsided, "mean") < selection_key(even, "mean")
    assert selection_key(even, "safe") < selection_key(lopsided, "safe")
    better = {"meta_loss": 0.55, "worst_behind_adam": 0.68}
    assert selection_key(better, "safe") < selection_key(even, "safe")
    # within a margin of 0.15 above log 2 the lopsided one counts as safe and wins by its mean
    assert selection_key(lopsided, "safe", margin=0.15) < selection_key(better, "safe",
                                                                        margin=0.15)
    assert selection_key(better, "safe", margin=0.05) < selection_key(lopsided, "safe",
                                                                      margin=0.05)
    for bad, message in ((dict(selection="best"), "selection"),
                         (dict(selection="safe"), "vs-adam"),
                         (dict(behind_penalty=1.0), "vs-adam"),
                         (dict(behind_penalty=-1.0, meta_loss="vs-adam"), "behind_penalty"),
                         (dict(safe_margin=-0.1, meta_loss="vs-adam", selection="safe"),
                          "safe_margin"),
                         (dict(safe_margin=0.1), "safe_margin")):
        with pytest.raises(ValueError, match=message):
            tiny_config(**bad)
