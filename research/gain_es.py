"""A learned per-run step-size controller, meta-trained by ES over full unrolls.

Issue 18's directions 2 and 4: a controller shared by the coordinates changes the run's
log step size each iteration from evidence the run has, and is trained by antithetic
evolution strategies (no truncation: the objective is the best f at the end of a
benchmark-length run), on tasks whose lr is drawn 10^U(-LR_DECADES, LR_DECADES) times
the default, so that only a controller that adapts does well on all of them.

The controller wraps a frozen inner rule (the shipped l2l-zo UpdateRNN, or zo-adamm):
step = exp(log_gain) * inner step, and

    log_gain_0 = start,
    log_gain <- clip(log_gain - KAPPA sign(z_bar) z_bar^2 + RANGE tanh(mlp(features)))

with the hand-written hypergradient rule of research/adaptive_rules.py as the prior
(z = sqrt(d) cos(g_t, s_{t-1}), z_bar its running mean) and a small MLP's bounded
correction; the MLP's last layer starts at zero, so an untrained controller is the prior.
Features (per run): z, z_bar, 2 r - 1 for the success rate r of f at the iterate,
log_gain / LIMIT and log10(f / f_0) / 10; with ``--time``, also the fraction of the run's
iterations spent, 2 t / (T - 1) - 1 (T from the budget, maxfev // (q + 1), at inference),
as the schedulers of learned optimizers read the training progress (Celo, VeLO).

With ``--coordinate 1`` the step also carries per-coordinate log gains (the shape,
research/adaptive_rules.py's stochastic meta-descent: shape_i -= kappa z_bar_i from
SHAPE_START, within +-SHAPE_LIMIT), and the controller has a second output that sets the
shape's kappa, KAPPA_C exp(KAPPA_RANGE tanh(out_2)), per run and iteration; with
``--coordinate 2`` a third output lets the shape decay towards 0 (the level alone) at a
rate DECAY_MAX sigmoid(out_3 - DECAY_OFFSET) an iteration. The controller reads two
more features, the running mean of sqrt(d) cos(z, 1) over the per-coordinate signals z_i
(about -2 on nclsq, whose coordinates all want a larger step, and 0 on an attack, whose
coordinates disagree) and the shape's mean / SHAPE_LIMIT. The hand rules could serve
only one of nclsq and the attack at a time; the controller is to tell them apart.

Every population member runs on the same tasks and draws (common random numbers), as an
extra leading batch axis. Run from the repository root::

    python research/gain_es.py --out research/runs/gain-es [--resume] [--iterations 300]
    python research/gain_es.py --validate prior research/runs/gain-es/controller.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zominimize import learned  # noqa: E402
from zominimize.learned.designs import L2L_ZO  # noqa: E402
from zominimize.train import tasks  # noqa: E402
from zominimize.train.unroll import (ZO_ADAMM, RunState, Stepper, UnrollSettings,  # noqa: E402
                                     step_sizes, unroll_step)
from zominimize.learned.designs import query_init  # noqa: E402

from zominimize.train import attacks as digits_attack  # noqa: E402

KAPPA = 0.01      # the prior's gain
LIMIT = 6.0       # |log_gain| <= LIMIT
RANGE = 0.3       # the MLP's correction per iteration lies within +-RANGE
BETA_Z = 0.9      # decay of z_bar
BETA_S = 0.9      # decay of the success rate
HIDDEN = 16
N_FEATURES = 5   # without the time feature
N_SHAPE_FEATURES = 2  # the features --coordinate adds
SHAPE_START, SHAPE_LIMIT = -2.3, 5.0  # the shape's start and bound (coord-adamm's best)
KAPPA_C, KAPPA_RANGE = 0.1, 1.5       # the shape's kappa: KAPPA_C exp(+-KAPPA_RANGE)
BETA_G = 0.99                         # decay of the running mean of g_i^2
DECAY_MAX, DECAY_OFFSET = 0.1, 3.0    # the shape's decay: DECAY_MAX sigmoid(out_3 - OFFSET)
LR_DECADES = 1.2  # lr factor 10^U(-LR_DECADES, LR_DECADES)
ATTACK_SIDES = (8, 16, 28)
AUGMENTATION = tasks.Augmentation(x_scale_range=(-1.0, 1.0), coordinate_scale_range=(-0.5, 0.5),
                                  box_fraction=0.2, minority_fraction=0.2)


# ---------------------------------------------------------------- the controller

def n_features(theta: torch.Tensor, outputs: int = 1) -> int:
    """The number of features a parameter vector (or population, last axis) reads."""
    return (theta.shape[-1] - (1 + outputs) * HIDDEN - outputs - 1) // HIDDEN


def initial_params(start: float = -1.15, time: bool = False,
                   coordinate: int = 0) -> torch.Tensor:
    """W1 small random, b1 zero, the output layer zero (the prior alone), the start."""
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(HIDDEN, N_FEATURES, generator=gen, dtype=torch.float64) * 0.5
    extra = (N_SHAPE_FEATURES if coordinate else 0) + (1 if time else 0)
    if extra:  # the added columns drawn after the others, so the rest matches the base set
        w1 = torch.cat([w1, torch.randn(HIDDEN, extra, generator=gen,
                                        dtype=torch.float64) * 0.5], 1)
    outputs = 1 + int(coordinate)
    rest = torch.zeros(HIDDEN + outputs * HIDDEN + outputs, dtype=torch.float64)
    return torch.cat([w1.reshape(-1), rest, torch.tensor([start], dtype=torch.float64)])


def unpack(theta: torch.Tensor, outputs: int = 1):
    """theta (P, n) -> W1 (P, H, F), b1 (P, H), w2 (P, O, H), b2 (P, O), start (P,)."""
    p, features = theta.shape[0], n_features(theta, outputs)
    i = 0
    w1 = theta[:, i:i + HIDDEN * features].reshape(p, HIDDEN, features)
    i += HIDDEN * features
    b1 = theta[:, i:i + HIDDEN]
    i += HIDDEN
    w2 = theta[:, i:i + outputs * HIDDEN].reshape(p, outputs, HIDDEN)
    i += outputs * HIDDEN
    return w1, b1, w2, theta[:, i:i + outputs], theta[:, i + outputs]


class GainState(NamedTuple):
    inner: Any
    log_gain: torch.Tensor  # (P, B, 1)
    z_mean: torch.Tensor
    success: torch.Tensor
    f_last: torch.Tensor
    f_first: torch.Tensor
    last_step: torch.Tensor  # (P, B, d), zero before the first step
    count: int
    shape: torch.Tensor | None = None     # (P, B, d) per-coordinate log gains (--coordinate)
    z_c: torch.Tensor | None = None       # (P, B, d) running mean of the per-coordinate z_i
    g_square: torch.Tensor | None = None  # (P, B, d) running mean of g_i^2
    agreement: torch.Tensor | None = None  # (P, B, 1) running mean of sqrt(d) cos(z, 1)


def controller(theta: torch.Tensor, inner: Stepper | Any, horizon: int,
               coordinate: int = 0) -> Stepper:
    """A Stepper for states of shape (P, B, d): population member p uses theta[p];
    ``horizon`` is the run's number of iterations (read only with the time feature);
    ``coordinate``: 0, no shape; 1, the shape and its kappa as a second output; 2, also
    the shape's decay as a third."""
    outputs = 1 + int(coordinate)
    w1, b1, w2, b2, start = unpack(theta, outputs)
    base = N_FEATURES + (N_SHAPE_FEATURES if coordinate else 0)
    timed = n_features(theta, outputs) > base

    def init(shape, device=None):
        zeros = torch.zeros(shape[:-1] + (1,), dtype=torch.float64)
        log_gain = start.reshape(-1, *([1] * (len(shape) - 1))).expand_as(zeros).clone()
        full = torch.zeros(shape, dtype=torch.float64)
        shape_state = (full + SHAPE_START, full.clone(), full.clone(), zeros.clone()) \
            if coordinate else (None, None, None, None)
        return GainState(inner.init(shape, device), log_gain, zeros.clone(), zeros.clone(),
                         zeros + float("nan"), zeros + float("nan"), full.clone(), 0,
                         *shape_state)

    def shape_signals(g, state: GainState, first: bool):
        """The per-coordinate running means after g, and the features they add."""
        g_square = g * g if first else BETA_G * state.g_square + (1 - BETA_G) * g * g
        z_c, agreement = state.z_c, state.agreement
        if not first:
            z = (state.last_step.sign() * g / g_square.clamp_min(1e-300).sqrt()).clamp(-5, 5)
            z_c = BETA_Z * z_c + (1 - BETA_Z) * z
            norm = z.norm(dim=-1, keepdim=True)
            cos = torch.where(norm > 0, z.sum(-1, keepdim=True) / norm.clamp_min(1e-300), 0.0)
            agreement = BETA_Z * agreement + (1 - BETA_Z) * cos.clamp(-5, 5)
        return g_square, z_c, agreement, [agreement / 3,
                                          state.shape.mean(-1, keepdim=True) / SHAPE_LIMIT]

    def step(net, g, f, state: GainState, lr):
        f = f.unsqueeze(-1)
        first = state.count == 0
        f_first = f if first else state.f_first
        d = g.shape[-1]
        norms = g.norm(dim=-1, keepdim=True) * state.last_step.norm(dim=-1, keepdim=True)
        z = torch.where(norms > 0, math.sqrt(d) * (g * state.last_step).sum(-1, keepdim=True)
                        / norms.clamp_min(1e-300), 0.0).clamp(-5, 5)
        z_mean = state.z_mean if first else BETA_Z * state.z_mean + (1 - BETA_Z) * z
        success = state.success if first else (
            BETA_S * state.success + (1 - BETA_S) * (f < state.f_last).double())
        r = success / (1 - BETA_S ** state.count) if state.count else torch.full_like(f, 0.5)
        columns = [z / 3, z_mean / 3, 2 * r - 1, state.log_gain / LIMIT,
                   torch.log10(f.clamp_min(1e-300) / f_first.clamp_min(1e-300)).clamp(-30, 30)
                   / 10]
        if coordinate:
            g_square, z_c, agreement, added = shape_signals(g, state, first)
            columns += added
        if timed:
            spent = min(state.count / max(horizon - 1, 1), 1.0)
            columns.append(torch.full_like(f, 2 * spent - 1))
        features = torch.cat(columns, dim=-1)  # (P, B, F)
        hidden = torch.tanh(torch.einsum("phf,pbf->pbh", w1, features) + b1[:, None, :])
        out = torch.einsum("poh,pbh->pbo", w2, hidden) + b2[:, None, :]  # (P, B, O)
        change = -KAPPA * z_mean.sign() * z_mean.pow(2) + RANGE * torch.tanh(out[..., :1])
        log_gain = state.log_gain if first else (state.log_gain + change).clamp(-LIMIT, LIMIT)
        inner_step, inner_state = inner.step(net, g, f.squeeze(-1), state.inner, lr)
        if not coordinate:
            step = torch.exp(log_gain) * inner_step
            return step, GainState(inner_state, log_gain, z_mean, success, f, f_first, step,
                                   state.count + 1)
        shape = state.shape
        if not first:
            kappa = KAPPA_C * torch.exp(KAPPA_RANGE * torch.tanh(out[..., 1:2]))
            if coordinate >= 2:
                shape = shape * (1 - DECAY_MAX * torch.sigmoid(out[..., 2:3] - DECAY_OFFSET))
            shape = (shape - kappa * z_c).clamp(-SHAPE_LIMIT, SHAPE_LIMIT)
        step = torch.exp(log_gain + shape) * inner_step
        return step, GainState(inner_state, log_gain, z_mean, success, f, f_first, step,
                               state.count + 1, shape, z_c, g_square, agreement)

    return Stepper("gain", init, step)


# ---------------------------------------------------------------- unrolls

def run(task: tasks.TaskBatch, stepper, net, lr, eps_gen_seed: int, steps: int, population: int,
        q: int) -> torch.Tensor:
    """The best true f over the run, (P, B): every member on the same draws."""
    b, d = task.size
    settings = UnrollSettings(q=q, design=stepper)
    _, mu = step_sizes(task.x0, settings, task.box)
    shape = (population, b, d)
    x = task.x0.expand(shape).clone()
    state = RunState(x, stepper.init(shape), query_init(shape))
    gen = torch.Generator().manual_seed(eps_gen_seed)
    best = task.fun(x)
    for _ in range(steps):
        eps = torch.randn(q, 1, b, d, generator=gen, dtype=torch.float64)
        z = None
        if task.noise is not None:
            z = torch.randn(q + 1, 1, b, generator=gen, dtype=torch.float64)
        state, *_ = unroll_step(task.fun, state, eps, net, None, lr, mu, settings, task.box,
                                task.noise, z)
        best = torch.minimum(best, task.fun(state.x))
    return best


def draw_batch(gen: torch.Generator, dims, b: int, attack_share: float = 0.0):
    """A task batch and its lr factors: with probability ``attack_share`` attacks on the
    digits classifier (zominimize/train/attacks.py, d = 64, 256 or 784), else a family of
    zominimize.train.tasks, augmented."""
    if attack_share and float(torch.rand((), generator=gen, dtype=torch.float64)) < attack_share:
        side = ATTACK_SIDES[int(torch.randint(len(ATTACK_SIDES), (), generator=gen))]
        task = digits_attack.sample(gen, b, side)
    else:
        family = tasks.FAMILIES[int(torch.randint(len(tasks.FAMILIES), (), generator=gen))]
        d = dims[int(torch.randint(len(dims), (), generator=gen))]
        task = tasks.sample(gen, family, b, d, augmentation=AUGMENTATION)
    factor = torch.exp(math.log(10) * LR_DECADES * (2 * torch.rand(b, 1, generator=gen,
                                                                    dtype=torch.float64) - 1))
    return task, factor


@torch.no_grad()
def log_ratios(theta, inner, net, task, factor, seed, steps, q,
               coordinate: int = 0) -> torch.Tensor:
    """log(best f / zo-adamm's best f at the default lr) per member and task, (P, B): the
    controllers theta (P, n) run at lr times ``factor`` (B, 1)."""
    lr, _ = step_sizes(task.x0, UnrollSettings(q=q), task.box)
    reference = run(task, ZO_ADAMM, None, lr, seed, steps, 1, q)[0]
    best = run(task, controller(theta, inner, steps, coordinate), net, lr * factor, seed,
               steps, theta.shape[0], q)
    tiny = 1e-300
    return torch.log(best.clamp_min(tiny)) - torch.log(reference.clamp_min(tiny))


def objective(theta, inner, net, task, factor, seed, steps, q,
              coordinate: int = 0) -> torch.Tensor:
    """The ES objective per member: the mean of :func:`log_ratios` over the tasks."""
    return log_ratios(theta, inner, net, task, factor, seed, steps, q, coordinate).mean(-1)


VALIDATION_FACTORS = (0.1, 1.0, 10.0)


def validation_set(dims, seed: int = 10000, attacks: bool = False):
    """One batch per family and d, its three tasks at lr factors 0.1, 1 and 10; with
    ``attacks``, also one batch of digits attacks per side."""
    gen = torch.Generator().manual_seed(seed)
    factor = torch.tensor(VALIDATION_FACTORS, dtype=torch.float64).reshape(-1, 1)
    b = len(VALIDATION_FACTORS)
    out = [(tasks.sample(gen, family, b, d, augmentation=AUGMENTATION), factor, seed + i)
           for i, (family, d) in enumerate((f, d) for f in tasks.FAMILIES for d in dims)]
    if attacks:
        out += [(digits_attack.sample(gen, b, side), factor, seed + len(out) + i)
                for i, side in enumerate(ATTACK_SIDES)]
    return out


@torch.no_grad()
def validate(theta: torch.Tensor, inner, net, dims, steps: int, q: int,
             attacks: bool = False, coordinate: int = 0) -> dict:
    """Per validation batch, log(best f / zo-adamm's at the default lr) per lr factor, and
    the means per factor."""
    rows = {}
    for task, factor, seed in validation_set(dims, attacks=attacks):
        rows[f"{task.family}-d{task.size[1]}"] = log_ratios(
            theta.reshape(1, -1), inner, net, task, factor, seed, steps, q,
            coordinate)[0].tolist()
    means = [sum(r[i] for r in rows.values()) / len(rows) for i in range(len(VALIDATION_FACTORS))]
    return {"batches": rows, "mean_by_factor": dict(zip(map(str, VALIDATION_FACTORS), means))}


def inner_rule(name: str):
    if name == "adamm":
        return ZO_ADAMM, None
    parts = learned.load_parts("l2l-zo", None, "cpu")
    return L2L_ZO, parts.update


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    inner, net = inner_rule(args.inner)
    theta = initial_params(start=args.start, time=args.time, coordinate=args.coordinate)
    moments = (torch.zeros_like(theta), torch.zeros_like(theta))
    history, start = [], 0
    if args.resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        theta, moments, history, start = (saved["theta"], saved["moments"], saved["history"],
                                          saved["iteration"])
    gen = torch.Generator().manual_seed(args.seed)
    def draws():
        batches = [draw_batch(gen, args.dims, args.batch, args.attack_share)
                   for _ in range(args.batches)]
        seeds = [int(torch.randint(2 ** 31, (), generator=gen)) for _ in batches]
        return batches, seeds, torch.randn(args.pairs, theta.numel(), generator=gen,
                                            dtype=torch.float64)

    for _ in range(start):  # the same task stream on resume
        draws()
    m, v = moments
    t0 = time.time()
    for it in range(start, args.iterations):
        batches, seeds, noise = draws()
        population = torch.cat([theta + args.sigma * noise, theta - args.sigma * noise,
                                theta[None]])
        scores = sum(objective(population, inner, net, task, factor, seed, args.steps, args.q,
                               args.coordinate)
                     for (task, factor), seed in zip(batches, seeds)) / len(batches)
        plus, minus, centre = scores[:args.pairs], scores[args.pairs:-1], float(scores[-1])
        # ranks within the pairs (fitness shaping), then the antithetic estimate
        ranks = torch.cat([plus, minus]).argsort().argsort().double()
        ranks = ranks / (ranks.numel() - 1) - 0.5
        grad = ((ranks[:args.pairs] - ranks[args.pairs:])[:, None] * noise).mean(0) / args.sigma
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        k = it + 1
        theta = theta - args.lr * (m / (1 - 0.9 ** k)) / ((v / (1 - 0.999 ** k)).sqrt() + 1e-8)
        history.append({"iteration": k, "tasks": [f"{t.family}-d{t.size[1]}" for t, _ in batches],
                        "centre": centre, "mean": float(scores[:-1].mean()),
                        "start": float(theta[-1]), "seconds": time.time() - t0})
        if args.validate_every and k % args.validate_every == 0:
            result = validate(theta, inner, net, args.dims, args.steps, args.q,
                              attacks=args.attack_share > 0, coordinate=args.coordinate)
            history[-1]["validation"] = result["mean_by_factor"]
            history[-1]["validation_attacks"] = {
                key: value for key, value in result["batches"].items()
                if key.startswith("digits-attack")}
            mean = sum(result["mean_by_factor"].values()) / len(VALIDATION_FACTORS)
            best = min((row["validation_mean"] for row in history[:-1]
                        if "validation_mean" in row), default=math.inf)
            history[-1]["validation_mean"] = mean
            if mean < best:  # checkpoint selection: the lowest validation mean so far
                torch.save({"theta": theta, "inner": args.inner, "iteration": k,
                            "coordinate": args.coordinate}, out / "best.pt")
        print(json.dumps(history[-1]), flush=True)
        if k % args.save_every == 0 or k == args.iterations:
            torch.save({"theta": theta, "moments": (m, v), "history": history, "iteration": k,
                        "inner": args.inner, "coordinate": args.coordinate}, ckpt)
            torch.save({"theta": theta, "inner": args.inner, "coordinate": args.coordinate},
                       out / "controller.pt")


def register_method(path: str | Path, name: str = "gain-l2l") -> None:
    """Register the controller saved at ``path`` around its inner rule as method ``name``
    (Gaussian queries, no guard), for research/lr_sensitivity.py."""
    import numpy as np

    from zominimize._registry import MethodSpec, register
    from zominimize.methods import LEARNED_OPTIONS, _lr
    from zominimize.rules import Rule

    from research import schedules

    saved = torch.load(path, weights_only=False)
    theta = saved["theta"].reshape(1, -1)
    inner, net = inner_rule(saved["inner"])

    def make_rule(settings, parts):
        lr = _lr(settings)
        stepper = controller(theta, inner, schedules.iterations(settings),
                             int(saved.get("coordinate", 0)))

        def init(d):
            return stepper.init((1, 1, d))

        @torch.no_grad()
        def update(g, f, state):
            step, state = stepper.step(net, torch.as_tensor(g).reshape(1, 1, -1),
                                       torch.tensor([[float(f)]], dtype=torch.float64),
                                       state, lr)
            return step.reshape(-1).numpy().astype(np.float64), state

        return Rule(init, update, GainState)

    register(MethodSpec(name=name, summary="research: a learned per-run gain", doc="research",
                        base_step=0.1, options=LEARNED_OPTIONS, make_rule=make_rule))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="research/runs/gain-es")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--inner", choices=("l2l-zo", "adamm"), default="l2l-zo")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--q", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="tasks per batch")
    parser.add_argument("--batches", type=int, default=1, help="task batches per iteration")
    parser.add_argument("--validate-every", type=int, default=0)
    parser.add_argument("--attack-share", type=float, default=0.0,
                        help="share of batches that attack the digits classifier (and "
                             "validation on them)")
    parser.add_argument("--time", action="store_true",
                        help="the controller also reads the fraction of the run spent")
    parser.add_argument("--coordinate", type=int, choices=(0, 1, 2), default=0,
                        help="1: per-coordinate gains too, their kappa the controller's "
                             "second output; 2: also their decay, a third")
    parser.add_argument("--start", type=float, default=-1.15,
                        help="the per-run log gain's start (learned from there)")
    parser.add_argument("--dims", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--validate", nargs="+", metavar="CONTROLLER",
                        help="print the validation figures of saved controllers ('prior': "
                             "the untrained one) instead of training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.validate:
        for path in args.validate:
            if path == "prior":
                theta, inner_name = initial_params(args.start, args.time, args.coordinate), \
                    args.inner
                coordinate = args.coordinate
            else:
                saved = torch.load(path, weights_only=False)
                theta, inner_name = saved["theta"], saved["inner"]
                coordinate = int(saved.get("coordinate", 0))
            inner, net = inner_rule(inner_name)
            result = validate(theta, inner, net, args.dims, args.steps, args.q,
                              attacks=args.attack_share > 0, coordinate=coordinate)
            print(path, json.dumps(result["mean_by_factor"]), flush=True)
            if args.attack_share > 0:
                print("  attacks", json.dumps({k: v for k, v in result["batches"].items()
                                               if k.startswith("digits-attack")}))
        return
    train(args)


if __name__ == "__main__":
    main()
