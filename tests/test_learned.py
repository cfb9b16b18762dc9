"""The learned optimizer: weights I/O, inference = training, the designs' pieces, one
ZO-AdaMM, guard, device, meta-training."""

import copy
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize import FallbackWarning, WeightsError  # noqa: E402
from zominimize.learned import blocks, designs, gain, nets as learned_nets, queries, weights  # noqa: E402
from zominimize.learned.designs import L2L_ZO, L2L_ZO_GAIN, L2L_ZO_SUBSPACE, PAPER  # noqa: E402
from zominimize.learned.rule import AUTO_CUDA_MIN_DIM, resolve_device  # noqa: E402
from zominimize.rules import AdaMMState, adamm, adamm_moments, adamm_step  # noqa: E402
from zominimize.train import tasks  # noqa: E402
from zominimize.train.config import (RETIRED_KEYS, StageConfig, TrainConfig,  # noqa: E402
                                     load_config, with_defaults)
from zominimize.train.trainer import Trainer, validate, validation_set  # noqa: E402
from zominimize.train.unroll import (ZO_ADAMM, Stepper, UnrollSettings,  # noqa: E402
                                     initial_state, step_sizes, unroll_step)

D = 12
DESIGNS = [L2L_ZO, L2L_ZO_GAIN, PAPER]
IDS = [design.name for design in DESIGNS]
PRETRAINED = Path(__file__).parent.parent / "pretrained"


def quadratic_np(x):
    return float(0.5 * np.sum(np.arange(1, x.size + 1) * (x - 1.0) ** 2))


def finish(*optimizers) -> None:
    """Run each ask/tell optimizer to its end on ``quadratic_np``."""
    for opt in optimizers:
        while opt.status is None:
            points = opt.ask()
            opt.tell(points, [quadratic_np(p) for p in points])


def quadratic_torch(x):
    scale = torch.arange(1, x.shape[-1] + 1, dtype=torch.float64)
    return 0.5 * (scale * (x - 1.0) ** 2).sum(-1)


def random_nets(design, seed=0):
    torch.manual_seed(seed)
    update, query = designs.make_nets(design)
    with torch.no_grad():  # larger heads than at initialisation, so the nets matter
        rnn = update.rnn if isinstance(update, gain.GainedUpdate) else update
        rnn.head.weight.mul_(30)
        query.head.weight.mul_(30)
        if rnn is not update:  # and a controller whose outputs move
            update.gain.w2.normal_(0.0, 1.0)
            update.gain.start.fill_(0.5)
    return update, query


@pytest.fixture(params=DESIGNS, ids=IDS)
def design(request):
    return request.param


@pytest.fixture
def weights_dir(tmp_path, design):
    folder = tmp_path / "weights"
    weights.save(folder, "l2l-zo", random_nets(design), design, {"note": "random, for tests"})
    weights.load.cache_clear()
    return folder


def run(weights_dir, method="l2l-zo", **options):
    return zominimize.minimize(quadratic_np, np.zeros(D), method=method,
                               options={"weights": str(weights_dir), "seed": 0, "maxiter": 30,
                                        "device": "cpu", **options})


# ------------------------------------------------------------------ weights

def test_saved_weights_load_back_identical(weights_dir, design):
    entry, tensors = weights.load(str(weights_dir), "l2l-zo")
    update, query = random_nets(design)
    for key, value in update.state_dict().items():
        assert torch.equal(tensors["update"][key], value)
    for key, value in query.state_dict().items():
        assert torch.equal(tensors["query"][key], value)
    assert weights.design_of(entry) is design
    assert entry["training"] == {"note": "random, for tests"}


def test_the_shipped_weights_load_as_their_designs():
    for name, design in (("l2l-zo", L2L_ZO_SUBSPACE), ("l2l-zo-paper", PAPER)):
        parts = zominimize.learned.load_parts(name, None, "cpu")
        assert parts.design is design and parts.entry["name"] == name
        rnn = parts.update.rnn if design.inner is not None else parts.update
        assert rnn.cell.weight_ih.shape == (40, design.n_inputs)


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


def _other_design(entry):
    other = PAPER if entry["features"] == L2L_ZO.features else L2L_ZO
    entry.update(features=other.features, step_form=other.step_form)


@pytest.mark.parametrize("damage, message", [
    (_corrupt, "sha256"),
    (lambda f: (f / "l2l-zo.pt").unlink(), "missing"),
    (lambda f: _edit_manifest(f, lambda e: e["architecture"].update(hidden=20)), "architecture"),
    (lambda f: _edit_manifest(f, lambda e: e.update(step_form="sideways")), "step_form"),
    (lambda f: _edit_manifest(f, _other_design), "architecture"),
    (lambda f: _edit_manifest(f, lambda e: e.update(features="rms", step_form="adam")),
     "research/experiment-log.md"),
    (lambda f: (f / "manifest.json").write_text("{not json"), "JSON"),
    (lambda f: (f / "manifest.json").unlink(), "no weights manifest"),
], ids=["sha256", "missing", "architecture", "step_form", "other-design", "retired-design",
        "json", "no-manifest"])
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
    weights.save(folder, "l2l-zo", random_nets(PAPER), PAPER, {})

    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickled code ran')",))

    torch.save({"update": Payload(), "query": {}}, folder / "l2l-zo.pt")
    _edit_manifest(folder, lambda e: e.update(sha256=weights.sha256(folder / "l2l-zo.pt")))
    weights.load.cache_clear()
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        run(folder)


# ------------------------------------------------------------------ inference = training

def test_one_inference_step_equals_one_training_unroll_step(weights_dir, design):
    q = 6
    opt = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), weights=str(weights_dir), seed=3,
                                 q=q, query_ratio=1.0, device="cpu", guard=False)
    settings = opt.settings
    update, query = random_nets(design)
    unroll = UnrollSettings(q=q, use_query=True, design=design)
    x0 = torch.zeros(1, D, dtype=torch.float64)
    lr, mu = step_sizes(x0, unroll)
    assert lr.item() == pytest.approx(settings["step"]) and mu.item() == pytest.approx(settings["mu"])
    state = initial_state(x0, unroll)
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


@pytest.mark.parametrize("n_inputs, outputs", [(2, 1), (4, 2)])
def test_the_in_place_lstm_arithmetic_equals_the_differentiable_one(n_inputs, outputs):
    torch.manual_seed(0)
    net = learned_nets.CoordinateLSTM(n_inputs, outputs=outputs)
    inputs, h, c = torch.randn(n_inputs, 300), torch.randn(10, 300), torch.randn(10, 300)
    with torch.no_grad():
        fast = net(inputs, (h, c))
    differentiable = net(inputs, (h, c))
    torch.testing.assert_close(fast[0], differentiable[0].detach())
    for kept, rounded in zip(fast[1], differentiable[1]):
        assert kept.dtype == learned_nets.STATE_DTYPE
        # the same float16 values, but where float32 rounding tips a value over a tie
        torch.testing.assert_close(kept.float(), rounded.detach(), rtol=1e-3, atol=1e-5)


def test_the_lstm_state_holds_float16_values_and_the_gradient_passes_the_rounding():
    torch.manual_seed(0)
    net = learned_nets.CoordinateLSTM(2)
    inputs = torch.randn(2, 50, requires_grad=True)
    _, (h, c) = net(inputs, (torch.zeros(10, 50), torch.zeros(10, 50)))
    for part in (h, c):
        assert part.dtype == torch.float32
        torch.testing.assert_close(part, part.half().float(), rtol=0, atol=0)
    h.sum().backward()
    unrounded = net._step(inputs, (torch.zeros(10, 50), torch.zeros(10, 50)))[1][0]
    expected, = torch.autograd.grad(unrounded.sum(), inputs)
    torch.testing.assert_close(inputs.grad, expected)


def _clone(state):
    """A deep copy of a design's or the QueryRNN's state (tensors cloned)."""
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, tuple):
        items = [_clone(item) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple):
        return [t for item in state for t in _tensors(item)]
    return []


def test_blocked_in_place_steps_equal_the_differentiable_ones(design):
    """At a large d without autograd, the design's step and the QueryRNN's run in blocks
    and overwrite the state's own tensors; from the same state they give the numbers that
    the differentiable whole-array arithmetic gives, at each of several steps."""
    torch.manual_seed(0)
    update, query = random_nets(design)
    d = 3 * blocks.BLOCK + 123  # blocks, with a ragged last one
    with torch.no_grad():
        assert blocks.blocked(d) and not blocks.blocked(2 * blocks.BLOCK)
    assert not blocks.blocked(d)  # autograd: whole arrays
    gen = torch.Generator().manual_seed(1)
    in_place = (design.init((d,)), queries.query_init((d,)))
    for t in range(4):
        g = torch.randn(d, generator=gen, dtype=torch.float64) * 10.0 ** (-t)
        f = 1.0 / (t + 1)
        before = _clone(in_place)
        with torch.no_grad():
            step, state = design.step(update, g, f, in_place[0], 0.01)
            query_state, _ = queries.query_step(query, g, step, in_place[1], 0.01)
        if t:  # after the first step, which allocates its placeholders, nothing new
            kept = {tensor.data_ptr() for tensor in _tensors(in_place)}
            assert {tensor.data_ptr() for tensor in _tensors((state, query_state))
                    if tensor.numel() > 1} <= kept
        in_place = (state, query_state)
        expected, reference_state = design.step(update, g, f, before[0], 0.01)
        reference = (reference_state,
                     queries.query_step(query, g, expected, before[1], 0.01)[0])
        # float32 nets: the two arithmetics agree to float32 rounding, which can tip the
        # float16 rounding of the LSTMs' states by one unit
        torch.testing.assert_close(step, expected.detach(), rtol=1e-4, atol=1e-5)
        for got, want in zip(_tensors(in_place), _tensors(reference)):
            if got.dtype == learned_nets.STATE_DTYPE:  # reference: float32, the same values
                torch.testing.assert_close(got.float(), want.detach(), rtol=1e-3, atol=1e-5)
            else:
                torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-5)


def _threads_per_block() -> list:
    """The torch thread count each block of a three-block step ran with (the step's
    result checked on the way)."""
    seen = []

    def double(x):
        seen.append(torch.get_num_threads())
        return (x * 2,)

    x = torch.ones(3 * blocks.BLOCK)
    with torch.no_grad():
        out, = blocks.per_coordinate(double, (x,), into=(None,))
    assert torch.equal(out, x * 2)
    return seen


def test_blocks_on_a_cpu_run_on_one_torch_thread_and_restore_the_count():
    """The blocked CPU path runs its blocks on one torch thread (their operations are too
    small for intra-op threads to pay) and leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _threads_per_block() == [1, 1, 1] and torch.get_num_threads() == 2
        with pytest.raises(ZeroDivisionError), blocks.one_torch_thread():
            1 / 0
        assert torch.get_num_threads() == 2  # restored after an error too
    finally:
        torch.set_num_threads(before)


def test_blocks_in_another_thread_leave_torchs_thread_count_alone():
    """Only the main thread changes torch's (global) thread count: blocks stepped in
    another thread run with the count as it is, and a fresh thread still sees it."""
    before = torch.get_num_threads()
    seen = []

    def step():
        seen.extend(_threads_per_block())
        seen.append(("after", torch.get_num_threads()))

    try:
        torch.set_num_threads(2)
        worker = threading.Thread(target=step, daemon=True)
        worker.start()
        worker.join(60)
        assert seen == [2, 2, 2, ("after", 2)] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_restored_state_does_not_share_the_checkpoints_memory():
    state = queries.query_init((5,))
    data = queries.query_export(state)
    restored = queries.query_restore(data, "cpu")
    restored.scales.mul_(2)
    np.testing.assert_array_equal(data["scales"], np.ones(5))


# ------------------------------------------------------------------ one ZO-AdaMM

def _estimates(shape, steps=60, seed=0):
    """Estimates that shrink, so that v^ (max-corrected) and v part."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen, dtype=torch.float64) * 10.0 ** (-t / 10)
            for t in range(steps)]


def test_one_zo_adamm_gives_the_same_numbers_on_numpy_and_torch():
    """rules.adamm (numpy, (d,)) and the same functions on torch tensors of (B, d), as the
    learned design's features and meta-training's reference run them: the moments
    bit-identical, the steps within 2 units in the last place (torch's vectorised CPU
    square root is not always correctly rounded, numpy's is)."""
    lr = torch.tensor([[0.1], [0.02]], dtype=torch.float64)
    rules = [adamm(float(lr[b]), 0.9, 0.999, 1e-8) for b in range(2)]
    numpy_states = [rule.init(7) for rule in rules]
    zeros = torch.zeros(2, 7, dtype=torch.float64)
    state = AdaMMState(0, zeros, zeros, zeros)
    for g in _estimates((2, 7)):
        state = adamm_moments(state, g, 0.9, 0.999)
        step = adamm_step(state, lr, 0.9, 0.999, 1e-8)
        for b, rule in enumerate(rules):
            numpy_step, numpy_states[b] = rule.update(g[b].numpy(), 0.0, numpy_states[b])
            np.testing.assert_array_max_ulp(step[b].numpy(), numpy_step, maxulp=2)
            for name in ("m", "v", "v_max"):
                np.testing.assert_array_equal(getattr(state, name)[b].numpy(),
                                              getattr(numpy_states[b], name))
    assert not torch.equal(state.v, state.v_max)


def test_the_l2l_zo_features_keep_zo_adamms_moments():
    net, _ = designs.make_nets(L2L_ZO)
    state, moments = L2L_ZO.init((5,)), adamm(0.1, 0.9, 0.999, 1e-8).init(5)
    for t, g in enumerate(_estimates((5,), steps=20)):
        with torch.no_grad():
            _, state = L2L_ZO.step(net, g, 1.0 / (t + 1), state, 0.1)
        moments = adamm_moments(moments, g.numpy(), 0.9, 0.999)
        for name in ("m", "v", "v_max"):
            np.testing.assert_array_equal(getattr(state.adamm, name).numpy(),
                                          getattr(moments, name))


def test_the_reference_unroll_is_the_zo_adamm_rule():
    """Meta-training's reference steps as the zo-adamm rule on each task (to rounding: see
    above)."""
    gen = torch.Generator().manual_seed(3)
    task = tasks.sample(gen, "quadratic", 2, 6)
    settings = UnrollSettings(q=5, design=ZO_ADAMM)
    lr, mu = step_sizes(task.x0, settings)
    state = initial_state(task.x0, settings)
    rules = [adamm(float(lr[b]), 0.9, 0.999, 1e-8) for b in range(2)]
    x, rule_states = task.x0.numpy().copy(), [rule.init(6) for rule in rules]
    for _ in range(10):
        eps = torch.randn(5, 2, 6, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            state, g, *_ = unroll_step(task.fun, state, eps, None, None, lr, mu, settings)
        for b, rule in enumerate(rules):
            step, rule_states[b] = rule.update(g[b].numpy(), 0.0, rule_states[b])
            x[b] = x[b] + step
    np.testing.assert_allclose(state.x.numpy(), x, rtol=1e-13, atol=0)


# ------------------------------------------------------------------ the designs' pieces

def test_zero_headed_l2l_zo_is_zo_adamm_times_the_growing_blend():
    """An untrained l2l-zo net (zero head) steps as ZO-AdaMM times (rms / rms_fast)^w_t,
    w_t = (1 - BETA_W^t) sigmoid(-BLEND_OFFSET)."""
    update, _ = designs.make_nets(L2L_ZO)
    with torch.no_grad():
        update.head.weight.zero_()
    rule = adamm(0.1, designs.BETA1, designs.BETA2, 0.0)
    state, reference = L2L_ZO.init((6,)), rule.init(6)
    w_zero_head = 1 / (1 + math.exp(designs.BLEND_OFFSET))
    for t, g in enumerate(_estimates((6,), steps=30, seed=1), start=1):
        with torch.no_grad():
            step, state = L2L_ZO.step(update, g, 1.0 - t, state, 0.1)
        adamm_step_, reference = rule.update(g.numpy(), 1.0 - t, reference)
        w = (1 - designs.BETA_W ** t) * w_zero_head
        torch.testing.assert_close(state.blend, torch.full((6,), w, dtype=torch.float64))
        rms = designs.floored(torch.sqrt(state.adamm.v_max / (1 - designs.BETA2 ** t)),
                              designs.peak_rms(state.adamm.v_max, designs.BETA2, t))
        log_fast = designs.log_fast_ratio(state.v_fast, t, rms,
                                          designs.peak_rms(state.v_fast, designs.BETA_FAST, t))
        expected = torch.as_tensor(adamm_step_) * torch.exp(-w * log_fast)
        torch.testing.assert_close(step, expected, rtol=1e-5, atol=0)


def test_the_fast_moment_bounds_the_blended_step():
    """With BETA_FAST = BETA1, |m^| <= rms_fast (Cauchy-Schwarz over the same weights), so
    a fully blended step is at most exp(LOG_RANGE) lr per coordinate, whatever g did."""
    state = L2L_ZO.init((50,))
    moments, v_fast = state.adamm, state.v_fast
    for g in _estimates((50,)):
        moments = adamm_moments(moments, g, designs.BETA1, designs.BETA2)
        v_fast = designs.ema(v_fast, g * g, designs.BETA_FAST)
        t = moments.count
        rms = designs.floored(torch.sqrt(moments.v_max / (1 - designs.BETA2 ** t)),
                              designs.peak_rms(moments.v_max, designs.BETA2, t))
        m_normalised = moments.m / (1 - designs.BETA1 ** t) / rms
        log_fast = designs.log_fast_ratio(v_fast, t, rms,
                                          designs.peak_rms(v_fast, designs.BETA_FAST, t))
        assert float((m_normalised.abs() * torch.exp(-log_fast)).max()) <= 1 + 1e-9
    # g fell 10^6-fold; the fast RMS followed it, the max-corrected one did not
    assert float(log_fast.max()) < -1.5


def _coherences(estimates):
    state, rows = L2L_ZO.init(tuple(estimates[0].shape)), []
    running = state.coherence
    moments = state.adamm
    for g in estimates:
        running = designs.coherence_update(running, g, moments)
        moments = adamm_moments(moments, g, designs.BETA1, designs.BETA2)
        rows.append(designs.corrected_since_second_step(running, designs.BETA_C,
                                                        moments.count, 0.0))
    return rows


def test_coherence_is_scale_free_and_tells_signal_from_noise():
    """The running mean of cos(g_t, m_{t-1}): 0 at the first step, unchanged when g is
    rescaled, near 0 for pure noise, near 1 for a clean estimate, negative when each
    step undoes the last."""
    noise = list(torch.randn(100, 2, 500, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64))
    first = _coherences(noise)
    for scale in (1e-6, 1e6):
        for a, b in zip(first, _coherences([scale * g for g in noise])):
            torch.testing.assert_close(a, b)
    assert first[0].shape == (2, 1) and float(first[0].abs().max()) == 0.0
    assert float(first[-1].abs().max()) < 0.1
    clean = _coherences([torch.ones(2, 500, dtype=torch.float64) + 0.1 * g for g in noise])
    assert float(clean[-1].min()) > 0.9
    flipping = _coherences([(-1) ** t * torch.ones(2, 500, dtype=torch.float64)
                            for t in range(30)])
    assert float(flipping[-1].max()) < -0.5


def _success_rows(values):
    rate, f_last = torch.zeros(2, 1, dtype=torch.float64), torch.full((2, 1), math.nan,
                                                                        dtype=torch.float64)
    rows = []
    for count, f in enumerate(values):
        rate, f_last = designs.success_update(rate, f_last, f, count)
        rows.append(2 * designs.corrected_since_second_step(rate, designs.BETA_S, count + 1,
                                                            0.5) - 1)
    return rows


def test_success_rate_is_read_off_the_order_of_f():
    """2 r - 1, r the running rate of f(x_t) < f(x_{t-1}): 0 at the first step, +1 while f
    falls and -1 while it rises, unchanged by any increasing transform of f."""
    falling = [torch.tensor([10.0 - t, 5.0 - t], dtype=torch.float64) for t in range(40)]
    rows = _success_rows(falling)
    assert float(rows[0].abs().max()) == 0.0
    torch.testing.assert_close(rows[1], torch.ones(2, 1, dtype=torch.float64))
    assert float(_success_rows([-f for f in falling])[-1].max()) == pytest.approx(-1.0)
    mixed = [torch.tensor([(-1.0) ** t + t / 100, 0.0], dtype=torch.float64) for t in range(40)]
    for a, b in zip(_success_rows(mixed), _success_rows([torch.exp(3 * f) - 7 for f in mixed])):
        torch.testing.assert_close(a, b)
    assert abs(float(_success_rows(mixed)[-1][0, 0])) < 0.2  # falls every other step


def test_the_step_multiplier_is_bounded_and_inference_arithmetic_agrees():
    a = torch.tensor([1e6, -1e6, 0.0], dtype=torch.float32)
    m = torch.ones(3, dtype=torch.float32)
    bound = math.exp(designs.LOG_RANGE)
    for log_factor in (torch.zeros(3), torch.tensor([0.0, 1.0, -1.0])):
        step = designs.scaled_adam_step(a.clone().requires_grad_(), m, log_factor).detach()
        expected = -torch.tensor([bound, 1 / bound, 1.0]) * torch.exp(log_factor)
        torch.testing.assert_close(step, expected)
        with torch.no_grad():
            torch.testing.assert_close(designs.scaled_adam_step(a.clone(), m, log_factor), step)


def test_slow_blend_weight_is_a_running_mean_of_the_proposals():
    """w starts at 0 and follows sigmoid(b - BLEND_OFFSET) with decay BETA_W, so a
    proposal that flips between the ends every step moves w by at most 1 - BETA_W; the
    log-multiplier is -w log(rms_fast / rms)."""
    beta = designs.BETA_W
    log_fast = torch.full((2,), -5.0, dtype=torch.float64)
    blend, ws = torch.zeros(1, dtype=torch.float64), []
    for t in range(40):
        b = torch.tensor([math.inf, math.inf if t % 2 else -math.inf])
        log_factor, blend = designs.slow_blend(b, log_fast, blend)
        ws.append(blend.clone())
        torch.testing.assert_close(log_factor, (5.0 * blend).float())
    w = torch.stack(ws)
    np.testing.assert_allclose(w[:, 0].numpy(), 1 - beta ** np.arange(1, 41), rtol=1e-12)
    assert float(w[1:, 1].diff().abs().max()) <= 1 - beta + 1e-12
    assert 0.4 < float(w[-1, 1]) < 0.6


def test_the_paper_design_steps_by_the_raw_output():
    update, _ = designs.make_nets(PAPER)
    g = torch.randn(7, dtype=torch.float64)
    state = PAPER.init((7,))
    step, after = PAPER.step(update, g, 0.0, state, 123.0)  # lr is not read
    out, (h, c) = update(torch.stack([g, torch.zeros_like(g)]).float(), (state.h, state.c))
    assert torch.equal(step, out.double()) and torch.equal(after.h, h)


def _gained_steps(update, design, gradients, values, lr=0.01):
    """The steps and states of ``design`` for the given estimates and values of f."""
    state, out = design.init(tuple(gradients[0].shape)), []
    with torch.no_grad():
        for g, f in zip(gradients, values):
            step, state = design.step(update, g, f, state, lr)
            out.append((step, state))
    return out


def _draws(d=40, steps=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gradients = [torch.randn(d, generator=gen, dtype=torch.float64) + 1.0 for _ in range(steps)]
    return gradients, [3.0 / (t + 1) for t in range(steps)]


def test_the_controller_scales_the_inner_step_by_exp_level_plus_shape():
    update, _ = random_nets(L2L_ZO_GAIN)
    gradients, values = _draws()
    gained = _gained_steps(update, L2L_ZO_GAIN, gradients, values)
    inner = _gained_steps(update.rnn, L2L_ZO, gradients, values)
    first = gained[0][1]
    assert float(first.level) == 0.5 and torch.all(first.shape == gain.SHAPE_START)
    for (step, state), (inner_step, _) in zip(gained, inner):
        torch.testing.assert_close(step, torch.exp(state.level + state.shape) * inner_step)
        assert torch.all(state.shape.abs() <= gain.SHAPE_LIMIT)
        assert float(state.level.abs()) <= gain.LIMIT
    assert not torch.allclose(gained[-1][1].shape, gained[1][1].shape)  # the shape moved


def test_a_silent_controller_follows_the_hand_written_rules():
    """With its output layer at zero, the level moves by -KAPPA sign(zbar) zbar^2 and the
    shape decays by DECAY_MAX sigmoid(-DECAY_OFFSET) and moves by -KAPPA_C zbar_i."""
    update, _ = designs.make_nets(L2L_ZO_GAIN)
    gradients, values = _draws()
    states = [state for _, state in _gained_steps(update, L2L_ZO_GAIN, gradients, values)]
    keep = 1 - gain.DECAY_MAX * torch.sigmoid(torch.tensor(-gain.DECAY_OFFSET,
                                                           dtype=torch.float64))
    assert float(states[0].level) == 0.0
    for before, after in zip(states, states[1:]):
        z_mean = after.z_mean
        torch.testing.assert_close(after.level,
                                   before.level - gain.KAPPA * z_mean.sign() * z_mean ** 2)
        torch.testing.assert_close(after.shape, before.shape * keep - gain.KAPPA_C * after.z_c)


def test_the_controlled_steps_do_not_depend_on_the_scale_of_f_and_g():
    update, _ = random_nets(L2L_ZO_GAIN)
    gradients, values = _draws()
    plain = _gained_steps(update, L2L_ZO_GAIN, gradients, values)
    scaled = _gained_steps(update, L2L_ZO_GAIN, [1e4 * g for g in gradients],
                           [1e4 * f for f in values])
    for (step, _), (scaled_step, _) in zip(plain, scaled):
        torch.testing.assert_close(scaled_step, step, rtol=1e-5, atol=1e-12)


def test_the_level_grows_a_step_that_is_far_too_small():
    """On a quadratic whose optimum lies far beyond the first steps, the estimates keep
    agreeing with the last step, and the hand-written level rule grows the step."""
    update, _ = designs.make_nets(L2L_ZO_GAIN)
    gen = torch.Generator().manual_seed(0)
    x, state = torch.zeros(30, dtype=torch.float64), L2L_ZO_GAIN.init((30,))
    with torch.no_grad():
        for _ in range(60):
            g = (x - 10.0) + 0.3 * torch.randn(30, generator=gen, dtype=torch.float64)
            step, state = L2L_ZO_GAIN.step(update, g, float(((x - 10.0) ** 2).sum()), state,
                                           1e-3)
            x = x + step
    assert float(state.level) > 0.5 and float(state.z_mean) < 0


def test_unknown_and_retired_designs_name_the_setting():
    with pytest.raises(ValueError, match="step_form='sideways'"):
        designs.design_for("raw", "sideways")
    with pytest.raises(ValueError, match="8adf837"):
        designs.design_for("rms", "adam")
    with pytest.raises(ValueError, match="features='rms-coherence'"):
        TrainConfig(features="rms-coherence", step_form="adam-scale")


# ------------------------------------------------------------------ states in checkpoints

def test_states_in_the_layout_of_earlier_versions_resume(design, tmp_path):
    """Earlier versions wrote every moment of a shared state, d-sized where this one writes
    a size-1 placeholder: such a state loads and the run goes on as the one that saved it."""
    folder = tmp_path / "w"
    weights.save(folder, "l2l-zo", random_nets(design), design, {})
    options = dict(weights=str(folder), seed=2, maxiter=12, device="cpu", query_ratio=1.0,
                   guard=False)
    whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    for _ in range(5):
        points = whole.ask()
        whole.tell(points, [quadratic_np(p) for p in points])
    state = copy.deepcopy(whole.state_dict())
    for part in ("rule_state", "sampler_state"):
        moments = state[part]["moments"]
        assert set(moments) >= {"count", "m", "v", "coherence", "success", "f_last", "v_fast",
                                "blend"}
        moments["count"] = 5  # earlier versions counted, and kept d-sized m and v, in all
        for key in ("m", "v"):
            if moments[key].shape == (1,):
                moments[key] = np.full(D, 0.5)
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    resumed.load_state_dict(state)
    finish(whole, resumed)
    np.testing.assert_array_equal(whole.x, resumed.x)


# ------------------------------------------------------------------ guard and device

def sabotaged_weights(folder, head):
    update, query = random_nets(PAPER)
    with torch.no_grad():
        update.head.weight.fill_(head)
    weights.save(folder, "l2l-zo", (update, query), PAPER, {})
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


@pytest.mark.parametrize("design", [PAPER], ids=["l2l-zo-paper"])
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
    assert ends[50].fun < 0.01 * ends[3000].fun


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
    finish(whole, resumed)
    np.testing.assert_array_equal(whole.result().x, resumed.result().x)
    assert resumed.result().fallback == whole.result().fallback


def test_learned_run_resumes_exactly(weights_dir):
    options = dict(weights=str(weights_dir), seed=2, maxiter=20, device="cpu", guard=False,
                   query_ratio=1.0)
    whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    part = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    for _ in range(7):
        points = part.ask()
        part.tell(points, [quadratic_np(p) for p in points])
    state = part.state_dict()
    assert isinstance(state["rule_state"]["h"], np.ndarray)  # plain data, device-free
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), **options)
    resumed.load_state_dict(state)
    finish(whole, resumed)
    np.testing.assert_array_equal(whole.result().x, resumed.result().x)
    np.testing.assert_array_equal(whole.x, resumed.x)


@pytest.mark.parametrize("saved_on, resumed_on",
                         [("cpu", "auto")] + ([("cuda", "cpu"), ("cpu", "cuda")]
                                              if torch.cuda.is_available() else []))
def test_a_run_resumes_on_another_device(weights_dir, saved_on, resumed_on):
    options = dict(weights=str(weights_dir), seed=2, maxiter=20, guard=False, query_ratio=1.0)
    part = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), device=saved_on, **options)
    for _ in range(7):
        points = part.ask()
        part.tell(points, [quadratic_np(p) for p in points])
    resumed = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), device=resumed_on, **options)
    resumed.load_state_dict(part.state_dict())
    assert resumed.nit == 7 and resumed.settings["device"] == resumed_on
    if resolve_device(saved_on, D) == resolve_device(resumed_on, D):
        whole = zominimize.ZOOptimizer("l2l-zo", np.zeros(D), device=saved_on, **options)
        finish(whole, resumed)
        np.testing.assert_array_equal(whole.result().x, resumed.result().x)
    else:  # float32 kernels differ in their last bits between devices
        finish(resumed)
        assert resumed.nit == 20 and np.isfinite(resumed.result().fun)


def test_device_selection(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with monkeypatch.context() as patch:  # "auto" weighs d: a GPU only pays at large d
        patch.setattr(torch.cuda, "is_available", lambda: True)
        assert resolve_device("auto", AUTO_CUDA_MIN_DIM - 1).type == "cpu"
        assert resolve_device("auto", AUTO_CUDA_MIN_DIM).type == "cuda"
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


def _design_keys(design):
    return dict(features=design.features, step_form=design.step_form)


def test_tiny_training_lowers_the_meta_loss_and_writes_loadable_weights(tmp_path, design):
    torch.set_num_threads(1)
    config = tiny_config(stage1=StageConfig(episodes=20, lr=1e-2), **_design_keys(design))
    trainer = Trainer(config, tmp_path)
    references = trainer.baseline()
    before = references["untrained"]["meta_loss"]
    progress = trainer.run(report=lambda line: None)
    after = progress["best"]["stage1"]["score"]["meta_loss"]
    assert after < before - 0.03
    trainer.write_weights("test", references)
    entry, _ = weights.load(str(tmp_path), "tiny")
    assert entry["training"]["validation"]["stage1"]["meta_loss"] == after
    assert weights.design_of(entry) is design
    res = zominimize.minimize(quadratic_np, np.zeros(D), method="l2l-zo",
                              options={"weights": str(tmp_path / "manifest.json"), "seed": 0,
                                       "maxiter": 5, "fallback": False})
    assert res.fun < quadratic_np(np.zeros(D)) or res.fallback is not None


def test_training_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(stage1=StageConfig(episodes=10, lr=3e-3), meta_loss="vs-best",
                         behind_penalty=3.0, cells_per_episode=2, dims=(8, 12),
                         validate_every=5)
    whole = Trainer(config, tmp_path / "whole")
    whole.run(report=lambda line: None)
    first = Trainer(config, tmp_path / "part")

    reports = []

    def interrupt(line):  # stop right after the second checkpoint (episode 5)
        reports.append(line)
        if len(reports) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.run(report=interrupt)
    again = Trainer(config, tmp_path / "part")
    assert again.resume() and again.progress["episode"] == 5
    again.run(report=lambda line: None)
    for a, b in zip(whole.update_net.state_dict().values(), again.update_net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(whole.query_net.state_dict().values(), again.query_net.state_dict().values()):
        assert torch.equal(a, b)


CONFIGS = sorted(PRETRAINED.glob("*.toml"))


def test_a_recorded_config_reads_keys_added_since_as_their_defaults():
    now = TrainConfig().as_dict()
    recorded = copy.deepcopy(now)
    del recorded["seed"], recorded["controller"]["average_last"]
    assert with_defaults(recorded) == now
    recorded["controller"]["pairs"] = 3
    assert with_defaults(recorded)["controller"] == {**now["controller"], "pairs": 3}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_the_shipped_configs_are_what_trained_the_shipped_weights(path):
    """Each shipped config loads, names its weight set's design, and holds the values the
    manifest recorded for the training (keys of retired experiments aside)."""
    config = load_config(path)
    entry = json.loads((PRETRAINED / "manifest.json").read_text())["weights"][config.name]
    assert weights.design_of(entry) is config.design
    # keys added to the tables since the training read as their defaults: they must
    # change nothing
    original = entry["training"]["config"]
    recorded = json.loads(json.dumps(with_defaults(original)))
    now = json.loads(json.dumps(config.as_dict()))
    assert {k: recorded[k] for k in original if k not in RETIRED_KEYS} == \
        {k: now[k] for k in original if k not in RETIRED_KEYS}
    assert f"--config pretrained/{path.name} " in entry["training"]["command"]
    assert entry["training"]["command"] in path.read_text()  # the command in its header


@pytest.mark.parametrize("text, message", [
    ('meta_gradient = "zo"\n', "'meta_gradient' was retired"),
    ("max_lead = 5.0\n", "'max_lead' was retired"),
    ("safe_margin = 0.1\n", "'safe_margin' was retired"),
    ('task_sampling = "adaptive"\n', "'task_sampling' was retired"),
    ("adaptive_sharpness = 20.0\n", "'adaptive_sharpness' was retired"),
    ('meta_loss = "vs-adam"\n', "meta_loss 'vs-adam' was retired"),
    ('selection = "safe"\n', "selection 'safe' was retired"),
    ('features = "rms"\nstep_form = "adam"\n', "features='rms' with step_form='adam'"),
    ('meta_loss = "squared"\n', "meta_loss must be one of"),
    ("behind_penalty = 1.0\n", "needs meta_loss='vs-best'"),
    ('colour = "red"\n', "unknown config keys"),
    ("[controller]\niterations = 10\n", "trains a step-size controller, which"),
    ('step_form = "adam-blend-slow-gain"\n[controller]\npairs = 0\n',
     "controller.pairs must be a positive integer, got 0"),
    ("[controller]\nrounds = 3\n", "unexpected keyword argument 'rounds'"),
    ('step_form = "adam-blend-slow-gain"\n[controller]\niterations = 4\naverage_last = 5\n',
     "controller.average_last must be an integer from 0 to iterations \\(4\\), got 5"),
], ids=["meta_gradient", "max_lead", "safe_margin", "task_sampling", "adaptive_sharpness",
        "vs-adam", "safe", "design", "meta_loss", "behind_penalty", "unknown",
        "controller-without-gain", "controller-pairs", "controller-unknown",
        "controller-average"])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_config(path)
    if "retired" in message or "step_form" in message:
        assert "research/experiment-log.md" in str(info.value)
        assert "8adf837" in str(info.value)


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


def test_max_samples_caps_the_data_driven_families():
    gen = torch.Generator().manual_seed(0)
    for family in ("nclsq", "logistic", "softl1", "l1reg"):
        capped = tasks.sample(gen, family, 2, 10, max_samples=5)
        full = tasks.sample(gen, family, 2, 10)
        assert (capped.samples, full.samples) == (5, 20)
        assert capped.fun(capped.x0).shape == full.fun(full.x0).shape == (2,)
    assert tasks.sample(gen, "quadratic", 2, 10, max_samples=5).samples is None


def test_batch_per_dimension(tmp_path):
    """``batch`` may give one number of tasks per entry of ``dims`` (large d costs less)."""
    config = tiny_config(dims=(8, 12), batch=(4, 2), validation_tasks=2,
                         stage1=StageConfig(episodes=6, lr=3e-3), validate_every=3,
                         stage2=StageConfig(episodes=0, lr=5e-3))
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


def _lagging_step(net, g, f, state, lr):
    step, state = ZO_ADAMM.step(net, g, f, state, lr)
    return 0.38 * step, state


#: zo-adamm with every step 0.38 times as long: it lags zo-adamm.
LAGGING = Stepper("lagging", ZO_ADAMM.init, _lagging_step)


def test_vs_best_scores_each_task_against_the_better_of_zo_adamm_and_zo_signsgd():
    """zo-adamm is never ahead of the "vs-best" reference: it scores log 2 where it is the
    better one and more where sign steps win, while "worst_behind_adam" (against zo-adamm
    alone) reads log 2 for it; its own path is that of the "log" meta-loss."""
    base = dict(max_samples=16, families={"quadratic": 1.0, "nclsq": 1.0})
    held_out = validation_set(tiny_config(**base))
    best = validate(None, None, tiny_config(meta_loss="vs-best", **base), "stage1", held_out,
                    stepper=ZO_ADAMM)
    plain = validate(None, None, tiny_config(**base), "stage1", held_out, stepper=ZO_ADAMM)
    assert best["worst_behind_adam"] == pytest.approx(np.log(2), rel=1e-12)
    assert best["final_log_ratio"] == plain["final_log_ratio"]
    assert best["meta_loss"] > np.log(2) + 0.01


def test_behind_penalty_weighs_only_the_steps_behind_the_reference():
    """Against zo-adamm alone ("worst_behind_adam") zo-adamm scores log 2 with any penalty;
    a stepper that lags it scores higher with the penalty than without."""
    base = dict(meta_loss="vs-best", max_samples=6)
    scores = {}
    for penalty in (0.0, 3.0):
        config = tiny_config(behind_penalty=penalty, **base)
        held_out = validation_set(config)
        adamm_score = validate(None, None, config, "stage1", held_out, stepper=ZO_ADAMM)
        assert adamm_score["worst_behind_adam"] == pytest.approx(np.log(2), rel=1e-12)
        lagging = validate(None, None, config, "stage1", held_out, stepper=LAGGING)
        scores[penalty] = lagging["meta_loss"]
        assert lagging["worst_batch"] in {f"{f} d=8" for f in config.families}
    assert np.log(2) < scores[0.0] < scores[3.0]


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


def test_the_nets_a_stage_starts_from_compete_for_its_checkpoint(tmp_path):
    """Validation scores the nets before a stage trains (episode 0); if no later checkpoint
    beats them, the stage hands them on unchanged."""
    torch.set_num_threads(1)
    config = tiny_config(stage1=StageConfig(episodes=10, lr=3e-3), validate_every=5,
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
