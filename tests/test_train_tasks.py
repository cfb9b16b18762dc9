"""Meta-training's task augmentation: rescaled coordinates, boxes, a minority of strong
coordinates, noisy evaluations (zominimize.train.tasks), and how the unroll runs them."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize._call import resolve  # noqa: E402
from zominimize.learned.designs import L2L_ZO, make_nets  # noqa: E402
from zominimize.train import tasks  # noqa: E402
from zominimize.train.config import StageConfig, TrainConfig, load_config  # noqa: E402
from zominimize.train.trainer import (Trainer, _sample_task, run_episode,  # noqa: E402
                                      sign_step, unroll_settings, validation_set)
from zominimize.train.unroll import (ZO_ADAMM, UnrollSettings, initial_state,  # noqa: E402
                                     step_sizes, unroll_step)

ALL_ON = tasks.Augmentation(x_scale_range=(-2.0, 2.0), coordinate_scale_range=(-1.0, 1.0),
                            x_shift_range=(-1.0, 1.0), box_fraction=1.0, minority_fraction=1.0,
                            noise=1.0)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hand_quadratic(b=3, d=5, seed=0):
    """0.5 sum_i a_i (x_i - c_i)^2 with its minimiser c known."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(b, d, generator=gen, dtype=torch.float64) + 0.5
    c = torch.randn(b, d, generator=gen, dtype=torch.float64)
    task = tasks.TaskBatch("quadratic", lambda x: 0.5 * (a * (x - c) ** 2).sum(-1),
                           torch.zeros(b, d, dtype=torch.float64))
    return task, c


# ------------------------------------------------------------------ the default is unchanged

#: A tiny default-config episode (both stages, "vs-best"), recorded before the task
#: augmentation was added, and again when the LSTMs' state became float16 (the figures
#: moved at the seventh digit).
RECORDED = [
    [("logistic", 6), ("logistic", 6), ("logistic", 9)],
    [(0.7394447118653537, -0.5972018408247126, 0.6913810620365771),
     (0.7675154360410811, -0.6667052465518775, 0.6915870229147769),
     (0.7406195714451478, -0.4711639368771048, 0.6923030072866633)],
    [("logistic", 6), ("quadratic", 6), ("l1reg", 9)],
    [(0.7309017887099408, -0.5901947735745705, 0.6919286276016703),
     (3.0161082816648297, -2.8920909003060133, 0.7237599055358339),
     (1.0485022642631878, -1.6190202550077517, 0.6920719815532945)],
]


def test_a_default_config_episode_gives_the_recorded_losses():
    """Exact on the machine that recorded them; the tolerance absorbs another CPU's
    rounding (an AMD EPYC differs by up to 3e-10 relative in stage 2, whose meta-gradient
    runs through the queries), while a changed task or draw moves them at the first digits."""
    config = TrainConfig(name="tiny", steps=20, truncation=10, batch=2, dims=(6, 9),
                         meta_loss="vs-best", behind_penalty=3.0, max_samples=12)
    assert not config.augmentation.active
    torch.manual_seed(0)
    update_net, query_net = make_nets(config.design)
    gen = torch.Generator().manual_seed(0)
    got = []
    for stage, net in (("stage1", update_net), ("stage2", query_net)):
        batches = [_sample_task(config, gen) for _ in range(3)]
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
        got.append([(b.family, b.size[1]) for b in batches])
        got.append(run_episode(batches, update_net, query_net, config,
                               unroll_settings(config, stage), gen, 0.005, optimizer))
    assert got[0] == RECORDED[0] and got[2] == RECORDED[2]
    for scores, recorded in ((got[1], RECORDED[1]), (got[3], RECORDED[3])):
        for score, expected in zip(scores, recorded):
            assert score == pytest.approx(expected, rel=1e-8, abs=0)


def test_the_default_augmentation_draws_nothing_and_changes_no_task():
    for family in tasks.FAMILIES:
        gens = [torch.Generator().manual_seed(4) for _ in range(2)]
        plain = tasks.sample(gens[0], family, 2, 6)
        same = tasks.sample(gens[1], family, 2, 6, augmentation=TrainConfig().augmentation)
        assert torch.equal(gens[0].get_state(), gens[1].get_state())
        x = torch.randn(3, 2, 6, dtype=torch.float64)
        assert torch.equal(plain.fun(x), same.fun(x)) and torch.equal(plain.x0, same.x0)
        assert same.box is None and same.noise is None and same.stretch is None


# ------------------------------------------------------------------ the wrappers

def test_every_wrapped_family_stays_nonnegative_and_differentiable():
    gen = torch.Generator().manual_seed(0)
    for family in tasks.FAMILIES:
        task = tasks.sample(gen, family, 3, 8, augmentation=ALL_ON)
        assert task.box is not None and task.noise is not None and task.stretch is not None
        lower, upper = task.box
        x = (lower + (upper - lower) * torch.rand(4, 3, 8, generator=gen, dtype=torch.float64)
             ).requires_grad_(True)
        values = task.fun(x)
        seen = task.noise(values, torch.randn(4, 3, generator=gen, dtype=torch.float64))
        assert values.shape == seen.shape == (4, 3)
        assert bool((values >= 0).all()) and bool((seen >= 0).all())
        (values.sum() + seen.sum()).backward()
        assert torch.isfinite(x.grad).all()


def test_rescale_moves_the_minimiser_as_stated():
    task, c = hand_quadratic()
    gen = torch.Generator().manual_seed(1)
    stretch = torch.exp(torch.empty(3, 5, dtype=torch.float64).uniform_(-5, 5, generator=gen))
    start = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    moved = tasks.rescale(task, stretch, start)
    y_star = start + stretch * (c - task.x0)
    assert torch.equal(moved.x0, start) and torch.equal(moved.stretch, stretch)
    torch.testing.assert_close(moved.fun(start), task.fun(task.x0), rtol=1e-14, atol=0)
    assert float(moved.fun(y_star).abs().max()) < 1e-20
    y = y_star.clone().requires_grad_(True)
    grad, = torch.autograd.grad(moved.fun(y).sum(), y)
    assert float(grad.abs().max()) < 1e-10
    for bump in (1e-3, -1e-3):  # and it is the minimiser: every nearby point is higher
        assert bool((moved.fun(y_star + bump * stretch) > 0).all())


def test_the_augmented_optimum_lies_at_the_drawn_distance_and_scales():
    """x_scale_range moves the optimum's distance from x0 by 10^U(range) per task,
    coordinate_scale_range each coordinate by 10^U(range), x_shift_range sets RMS(x0)."""
    task, c = hand_quadratic(b=64, d=10)
    gen = torch.Generator().manual_seed(2)
    overall = tasks.augment(gen, task, tasks.Augmentation(x_scale_range=(-2.0, 2.0)))
    ratio = torch.log10(overall.stretch)
    assert bool((ratio[:, :1] == ratio).all()) and -2 <= float(ratio.min()) < -1.5
    assert 1.5 < float(ratio.max()) <= 2
    y_star = overall.x0 + overall.stretch * (c - task.x0)
    assert float(overall.fun(y_star).abs().max()) < 1e-16
    distance = (y_star - overall.x0).norm(dim=-1) / (c - task.x0).norm(dim=-1)
    torch.testing.assert_close(distance, overall.stretch[:, 0], rtol=1e-12, atol=0)
    per_coordinate = tasks.augment(gen, task,
                                   tasks.Augmentation(coordinate_scale_range=(-1.0, 1.0)))
    spread = torch.log10(per_coordinate.stretch)
    assert -1 <= float(spread.min()) and float(spread.max()) <= 1
    assert float((spread.max(-1).values - spread.min(-1).values).min()) > 0.5
    shifted = tasks.augment(gen, task, tasks.Augmentation(x_shift_range=(1.0, 1.0)))
    torch.testing.assert_close(shifted.x0.pow(2).mean(-1).sqrt(),
                               torch.full((64,), 10.0, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(shifted.fun(shifted.x0), task.fun(task.x0), rtol=1e-13, atol=0)


def test_a_minority_of_coordinates_carries_the_heavy_weights():
    b, d = 50, 40
    task, c = hand_quadratic(b=b, d=d)
    gen = torch.Generator().manual_seed(3)
    weighted = tasks.augment(gen, task, tasks.Augmentation(minority_fraction=1.0))
    weights = 1 / weighted.stretch  # f depends on y_i weights_i times as strongly
    heavy = weights > 1
    counts = heavy.sum(-1)
    assert int(counts.min()) >= max(1, round(0.05 * d)) and int(counts.max()) <= round(0.2 * d)
    assert float(weights[heavy].min()) >= 100 * (1 - 1e-12)
    assert float(weights[heavy].max()) <= 1000 * (1 + 1e-12)
    assert bool((weights[~heavy] == 1).all())
    # the heavy coordinates dominate the gradient at x0 as their weights say
    y = weighted.x0.clone().requires_grad_(True)
    grad, = torch.autograd.grad(weighted.fun(y).sum(), y)
    base = task.x0.clone().requires_grad_(True)
    base_grad, = torch.autograd.grad(task.fun(base).sum(), base)
    torch.testing.assert_close(grad, weights * base_grad, rtol=1e-12, atol=0)
    tiny = tasks.augment(gen, hand_quadratic(b=4, d=3)[0],
                         tasks.Augmentation(minority_fraction=1.0))
    assert bool(((tiny.stretch < 1).sum(-1) == 1).all())  # at least one coordinate


def test_noise_is_what_the_optimizer_sees_never_the_true_f():
    task, _ = hand_quadratic()
    level = torch.tensor([1e-3, 1e-2, 1e-1], dtype=torch.float64)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    z = torch.randn(4, 3, dtype=torch.float64)
    values = task.fun(x)
    multiplicative = tasks.noisy(task, "multiplicative", level)
    torch.testing.assert_close(multiplicative.noise(values, z), values * torch.exp(level * z))
    assert torch.equal(multiplicative.noise(values, torch.zeros_like(z)), values)
    additive = tasks.noisy(task, "additive", level)
    torch.testing.assert_close(additive.noise(values, z),
                               values + level * task.fun(task.x0) * z.abs())
    assert additive.fun is task.fun and multiplicative.fun is task.fun
    with pytest.raises(ValueError, match="noise kind.*'loud'"):
        tasks.noisy(task, "loud", level)
    # in the unroll, the estimate reads the noisy values
    settings = UnrollSettings(q=4, design=ZO_ADAMM)
    lr, mu = step_sizes(task.x0, settings)
    eps = torch.randn(4, 3, 5, dtype=torch.float64)
    state = initial_state(task.x0, settings)
    clean = unroll_step(task.fun, state, eps, None, None, lr, mu, settings)[1]
    zero = torch.zeros(5, 3, dtype=torch.float64)
    same = unroll_step(task.fun, state, eps, None, None, lr, mu, settings,
                       noise=multiplicative.noise, z=zero)[1]
    noisy = unroll_step(task.fun, state, eps, None, None, lr, mu, settings,
                        noise=multiplicative.noise, z=torch.randn(5, 3, dtype=torch.float64))[1]
    assert torch.equal(clean, same) and not torch.allclose(clean, noisy)


# ------------------------------------------------------------------ boxes

def test_box_tasks_keep_every_query_and_iterate_inside():
    gen = torch.Generator().manual_seed(5)
    aug = tasks.Augmentation(x_scale_range=(-1.0, 1.0), box_fraction=1.0)
    torch.manual_seed(0)
    update, query = make_nets(L2L_ZO)
    with torch.no_grad():
        update.head.weight.mul_(30)
        query.head.weight.mul_(30)
    for family in tasks.FAMILIES:
        task = tasks.sample(gen, family, 3, 8, augmentation=aug)
        lower, upper = task.box
        assert bool((lower <= task.x0).all()) and bool((task.x0 <= upper).all())
        seen = []

        def fun(x):
            seen.append(x.detach())
            return task.fun(x)

        settings = UnrollSettings(q=5, base_step=3.0, use_query=True)  # long steps: they hit
        lr, mu = step_sizes(task.x0, settings, task.box)
        state, sign_x = initial_state(task.x0, settings), task.x0
        for _ in range(15):
            eps = torch.randn(5, 3, 8, generator=gen, dtype=torch.float64)
            with torch.no_grad():
                state = unroll_step(fun, state, eps, update, query, lr, mu, settings,
                                    box=task.box)[0]
                sign_x = sign_step(fun, sign_x, eps, lr, mu, box=task.box)
            for x in (state.x, sign_x):
                assert bool((lower <= x).all()) and bool((x <= upper).all())
        points = torch.cat([p.reshape(-1, 3, 8) for p in seen])
        assert bool((lower <= points).all()) and bool((points <= upper).all())
        assert bool(((state.x == lower) | (state.x == upper)).any())  # the box was active


def test_part_of_a_box_quadratics_optimum_lies_on_the_boundary():
    """Projected gradient descent (white-box) on boxed quadratics: at the constrained
    optimum some coordinates sit on a bound, with the gradient pushing outwards."""
    gen = torch.Generator().manual_seed(6)
    aug = tasks.Augmentation(box_fraction=1.0)
    task = tasks.sample(gen, "quadratic", 8, 10, f_scale=(0.0, 0.0), augmentation=aug)
    lower, upper = task.box
    hessian = torch.autograd.functional.hessian(lambda x: task.fun(x).sum(), task.x0)
    hessian = torch.stack([hessian[i, :, i] for i in range(8)])  # (B, d, d), one per task
    x0 = task.x0.clone().requires_grad_(True)
    grad0, = torch.autograd.grad(task.fun(x0).sum(), x0)

    def gradient(x):
        return grad0 + torch.einsum("bij,bj->bi", hessian, x - task.x0)

    rate = 1 / torch.linalg.eigvalsh(hessian)[:, -1:]
    x = task.x0.clone()
    for _ in range(30000):
        x = torch.minimum(torch.maximum(x - rate * gradient(x), lower), upper)
    grad = gradient(x)
    x_check = x.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(task.fun(x_check).sum(), x_check)[0], grad)
    on_lower, on_upper = (x == lower) & (grad > 0), (x == upper) & (grad < 0)
    inside = ~(on_lower | on_upper)
    assert float(grad[inside].abs().max()) < 1e-8  # it is the optimum (KKT)
    active = (on_lower | on_upper).sum(-1)
    assert int(active.min()) >= 1 and int(active.max()) < 10


def test_box_task_runs_as_the_packages_zo_adamm_with_those_bounds():
    """One boxed task, unrolled with zo-adamm's steps, gives the package's iterates: the
    same lr and mu, the queries and iterates projected alike."""
    gen = torch.Generator().manual_seed(7)
    aug = tasks.Augmentation(x_scale_range=(1.0, 1.0), box_fraction=1.0)
    task = tasks.sample(gen, "quadratic", 1, 6, augmentation=aug)
    lower, upper = (v[0].numpy() for v in task.box)
    q = 5
    opt = zominimize.ZOOptimizer("zo-adamm", task.x0[0].numpy(), list(zip(lower, upper)),
                                 seed=3, q=q)
    settings = UnrollSettings(q=q, design=ZO_ADAMM)
    lr, mu = step_sizes(task.x0, settings, task.box)
    assert lr.item() == pytest.approx(opt.settings["step"], rel=1e-13)
    assert mu.item() == pytest.approx(opt.settings["mu"], rel=1e-13)
    state = initial_state(task.x0, settings)

    def f(p):
        return float(task.fun(torch.as_tensor(p).reshape(1, 6)))

    clipped = 0
    for _ in range(30):
        x_before = opt.x
        points = opt.ask()
        clipped += int(((points[1:] == lower) | (points[1:] == upper)).sum())
        eps = (points[1:] - x_before) / opt.settings["mu"]  # what was queried
        opt.tell(points, [f(p) for p in points])
        with torch.no_grad():
            state = unroll_step(task.fun, state, torch.as_tensor(eps).unsqueeze(1), None, None,
                                lr, mu, settings, box=task.box)[0]
        np.testing.assert_allclose(opt.x, state.x.numpy()[0], rtol=1e-9, atol=1e-12)
    assert clipped > 0 and bool(((state.x == task.box[0]) | (state.x == task.box[1])).any())


@pytest.mark.parametrize("method", ["zo-adamm", "l2l-zo"])
def test_the_unrolls_lr_and_mu_are_inferences(method):
    """step_sizes gives what zominimize's resolve gives for the same x0 and bounds:
    unbounded (x_scale max(RMS(x0), 1), below and above 1), a box (a quarter of the RMS
    width) and a box with an open side (back to RMS(x0))."""
    gen = torch.Generator().manual_seed(8)
    d, q = 7, 20
    settings = UnrollSettings(q=q)
    x0 = torch.randn(4, d, generator=gen, dtype=torch.float64) * torch.tensor(
        [[0.1], [3.0], [40.0], [0.5]], dtype=torch.float64)
    lower = x0 - torch.rand(4, d, generator=gen, dtype=torch.float64) * 10
    upper = x0 + torch.rand(4, d, generator=gen, dtype=torch.float64) * 10
    open_upper = upper.clone()
    open_upper[3, 2] = math.inf
    for box in (None, (lower, upper), (lower, open_upper)):
        lr, mu = step_sizes(x0, settings, box)
        for b in range(4):
            bounds = None if box is None else list(zip(box[0][b].tolist(), box[1][b].tolist()))
            call = resolve(method, x0[b].numpy(), bounds, {"q": q}, run_options=False)
            assert lr[b].item() == pytest.approx(call.settings["step"], rel=1e-13)
            assert mu[b].item() == pytest.approx(call.settings["mu"], rel=1e-13)
    # and for augmented tasks, as the trainer computes them
    for family in tasks.FAMILIES:
        task = tasks.sample(gen, family, 2, d, augmentation=ALL_ON)
        lr, mu = step_sizes(task.x0, settings, task.box)
        for b in range(2):
            bounds = list(zip(task.box[0][b].tolist(), task.box[1][b].tolist()))
            call = resolve(method, task.x0[b].numpy(), bounds, {"q": q}, run_options=False)
            assert lr[b].item() == pytest.approx(call.settings["step"], rel=1e-13)
            assert mu[b].item() == pytest.approx(call.settings["mu"], rel=1e-13)


# ------------------------------------------------------------------ config and training

@pytest.mark.parametrize("text, message", [
    ("x_scale_range = [2.0, -2.0]\n", r"x_scale_range .*\(2.0, -2.0\)"),
    ("coordinate_scale_range = [1.0]\n", r"coordinate_scale_range .*\(1.0,\)"),
    ("x_shift_range = [0.0, nan]\n", r"x_shift_range .*\(0.0, nan\)"),
    ("box_fraction = 1.5\n", "box_fraction must be a probability in \\[0, 1\\], got 1.5"),
    ("minority_fraction = -0.1\n", "minority_fraction .*got -0.1"),
    ('noise = "yes"\n', "noise must be a probability .*got 'yes'"),
    ("noise = true\n", "noise must be a probability .*got True"),
    ("noise_level = [-2.0, -3.0]\n", r"noise_level .*\(-2.0, -3.0\)"),
    ("minority_weight = [3.0, 2.0]\n", r"minority_weight .*\(3.0, 2.0\)"),
    ("minority_share = [0.0, 0.2]\n", r"minority_share must lie in \(0, 1\], got \(0.0, 0.2\)"),
], ids=["x_scale_range", "coordinate_scale_range", "x_shift_range", "box_fraction",
        "minority_fraction", "noise", "noise-bool", "noise_level", "minority_weight",
        "minority_share"])
def test_augmentation_config_errors_name_the_key_and_value(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_augmentation_keys_load_from_toml(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("x_scale_range = [-2.0, 2.0]\ncoordinate_scale_range = [-1, 1]\n"
                    "box_fraction = 0.25\nminority_fraction = 0.2\nnoise = 0.1\n"
                    "noise_level = [-5.0, -3.0]\n")
    config = load_config(path)
    assert config.augmentation == tasks.Augmentation(
        x_scale_range=(-2.0, 2.0), coordinate_scale_range=(-1, 1), box_fraction=0.25,
        minority_fraction=0.2, noise=0.1, noise_level=(-5.0, -3.0))


def tiny_config(**changes):
    base = dict(name="tiny", steps=20, truncation=10, batch=2, dims=(6, 9), max_samples=12,
                families={f: 1.0 for f in tasks.FAMILIES}, validate_every=1,
                validation_tasks=1, x_scale_range=(-2.0, 2.0),
                coordinate_scale_range=(-1.0, 1.0), x_shift_range=(-1.0, 1.5),
                box_fraction=0.5, minority_fraction=0.5, noise=0.5, cells_per_episode=3,
                stage1=StageConfig(episodes=1, lr=3e-3),
                stage2=StageConfig(episodes=1, lr=5e-3, penalty=0.005))
    base.update(changes)
    return TrainConfig(**base)


def test_augmented_tasks_are_the_same_for_the_same_seed():
    config = tiny_config()
    first, again = validation_set(config), validation_set(config)
    for a, b in zip(first, again):
        assert torch.equal(a.x0, b.x0) and torch.equal(a.fun(a.x0), b.fun(b.x0))
        assert (a.box is None) == (b.box is None) and (a.noise is None) == (b.noise is None)
        if a.box is not None:
            assert torch.equal(a.box[0], b.box[0]) and torch.equal(a.box[1], b.box[1])
    assert any(t.box is not None for t in first) and any(t.noise is not None for t in first)
    assert any(t.box is None for t in first) and any(t.noise is None for t in first)


@pytest.mark.parametrize("meta_loss", ["log", "vs-best"])
def test_a_tiny_augmented_training_runs_with_finite_losses(tmp_path, meta_loss):
    config = tiny_config(meta_loss=meta_loss)
    trainer = Trainer(config, tmp_path)
    progress = trainer.run(report=lambda line: None)
    losses = [h["loss"] for h in progress["history"]]
    assert len(losses) == 6 and all(np.isfinite(losses))
    for stage in ("stage1", "stage2"):
        score = progress["best"][stage]["score"]
        assert np.isfinite(score["meta_loss"]) and np.isfinite(score["final_log_ratio"])


def test_a_checkpoint_without_the_augmentation_keys_resumes(tmp_path):
    """Checkpoints written before these keys existed read them as their defaults."""
    config = TrainConfig(name="tiny", steps=20, truncation=10, batch=2, dims=(6,),
                         families={"quadratic": 1.0}, validation_tasks=1,
                         stage1=StageConfig(episodes=1, lr=3e-3),
                         stage2=StageConfig(episodes=0, lr=5e-3))
    trainer = Trainer(config, tmp_path)
    trainer.save_checkpoint()
    saved = torch.load(trainer.checkpoint, weights_only=True)
    for key in tasks.Augmentation.__dataclass_fields__:
        del saved["config"][key]
    torch.save(saved, trainer.checkpoint)
    assert Trainer(config, tmp_path).resume()
    with pytest.raises(ValueError, match="another config"):
        Trainer(tiny_config(name="tiny"), tmp_path).resume()
