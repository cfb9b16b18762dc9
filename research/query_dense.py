"""The QueryRNN trained on a dense signal: the estimate's expected alignment each step.

Issue 18, direction 3. On a white-box training task the true gradient G is known, so the
sampler can be trained step by step on what it is for. With directions u = s * eps (eps
~ N(0, I), s the QueryRNN's per-coordinate standard deviations) and a locally linear f,
the forward-difference estimate g = 1/q sum_j (u_j . G) u_j has

    E[g . G] = A = sum s_i^2 G_i^2,
    E||g||^2 = A T / q + (1 + 1/q) B,      T = sum s_i^2,  B = sum s_i^4 G_i^2,

and the alignment J(s) = A / (|G| sqrt(E||g||^2)) (a ratio of expectations standing for
the expected cosine): sqrt(q / d) for s = 1, and up to sqrt(q / L) when the gradient lives
on L coordinates and the queries find them. The loss is the mean over steps of
-log(J(s_t) / J(1)), exact given s_t and G_t: no sampling noise in the signal itself.

The trajectory is the shipped l2l-zo's (its UpdateRNN frozen) with queries along the
QueryRNN's scales, on augmented synthetic tasks and on attacks of the digits classifier
(zominimize/train/attacks.py), whose clipped pixels make many coordinates irrelevant, as in
the benchmark's attack. Truncated backpropagation through the QueryRNN's own recurrence
over windows of ``--window`` steps; its inputs (g, the step) are constants. Run from the
repository root::

    python research/query_dense.py --out research/runs/query-dense --iterations 300
    python research/query_dense.py --out research/runs/query-dense --resume
    python research/query_dense.py --evaluate research/runs/query-dense --images 4

Each run writes ``checkpoint.pt`` (exact resume) and a weight set ``weights/`` (the
shipped UpdateRNN with the trained QueryRNN) that ``minimize(..., options={"weights":
...})`` loads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zominimize.train import attacks as digits_attack  # noqa: E402
from zominimize.learned import weights  # noqa: E402
from zominimize.learned.designs import L2L_ZO, L2L_ZO_GAIN, make_nets  # noqa: E402
from zominimize.learned.gain import GainedUpdate  # noqa: E402
from zominimize.train import tasks  # noqa: E402
from zominimize.train.unroll import (UnrollSettings, detach, initial_state,  # noqa: E402
                                     step_sizes, unroll_step)

Q = 20
TINY = 1e-300


def alignment(s: torch.Tensor, G: torch.Tensor, q: int = Q) -> torch.Tensor:
    """J(s) of the module docstring, (..., B) from scales and gradients (..., B, d)."""
    s2, G2 = s * s, G * G
    a = (s2 * G2).sum(-1)
    t = s2.sum(-1)
    b = (s2 * s2 * G2).sum(-1)
    spread = torch.sqrt((a * t / q + (1 + 1 / q) * b).clamp_min(TINY))
    return a / (G.norm(dim=-1) * spread).clamp_min(TINY)


def log_gain(s: torch.Tensor, G: torch.Tensor, q: int = Q) -> torch.Tensor:
    """log(J(s) / J(1)) per task, 0 where G = 0."""
    isotropic = alignment(torch.ones_like(G), G, q)
    gain = torch.log(alignment(s, G, q).clamp_min(TINY)) - torch.log(isotropic.clamp_min(TINY))
    return torch.where(G.norm(dim=-1) > 0, gain, torch.zeros_like(gain))


def true_gradient(fun, x: torch.Tensor) -> torch.Tensor:
    """grad f at the iterates x (B, d), by autograd through the white-box task."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(fun(x).sum(), x)[0].detach()


def shipped_update_net():
    """The shipped l2l-zo UpdateRNN (frozen) and its QueryRNN (as shipped: untrained)."""
    entry, tensors = weights.load()
    return weights.build_nets(entry, tensors, torch.device("cpu"))


def design_of(update_net):
    """The design an UpdateRNN belongs to: l2l-zo, with or without its controller."""
    return L2L_ZO_GAIN if isinstance(update_net, GainedUpdate) else L2L_ZO


#: The augmentation of the controller stage's tasks (zominimize.train.config.ControllerConfig).
AUGMENTATION = tasks.Augmentation(x_scale_range=(-1.0, 1.0), coordinate_scale_range=(-0.5, 0.5),
                                  box_fraction=0.2, minority_fraction=0.2)


ATTACK_SIDES = (16, 28)
DIMS = (100, 300)


def draw_task(gen: torch.Generator, b: int, attack_share: float) -> tasks.TaskBatch:
    """Digits attacks (d = 256 or 784) with probability ``attack_share``, else an augmented
    family of zominimize.train.tasks at d = 100 or 300."""
    if float(torch.rand((), generator=gen, dtype=torch.float64)) < attack_share:
        side = ATTACK_SIDES[int(torch.randint(len(ATTACK_SIDES), (), generator=gen))]
        return digits_attack.sample(gen, b, side)
    family = tasks.FAMILIES[int(torch.randint(len(tasks.FAMILIES), (), generator=gen))]
    d = DIMS[int(torch.randint(len(DIMS), (), generator=gen))]
    return tasks.sample(gen, family, b, d, augmentation=AUGMENTATION)


def episode(task: tasks.TaskBatch, update_net, query_net, gen: torch.Generator, steps: int,
            window: int, optimizer=None) -> float:
    """One unroll of ``steps``; with an ``optimizer``, an update of the QueryRNN after each
    window. Returns the mean log gain over the steps (higher is better)."""
    settings = UnrollSettings(q=Q, use_query=True, design=design_of(update_net))
    lr, mu = step_sizes(task.x0, settings, task.box)
    state = initial_state(task.x0, settings)
    b, d = task.x0.shape
    total, losses = 0.0, []
    for t in range(steps):
        gain = log_gain(state.query.scales, true_gradient(task.fun, state.x))
        total += float(gain.mean().detach())
        losses.append(-gain.mean())
        eps = torch.randn(Q, b, d, generator=gen, dtype=torch.float64)
        z = (torch.randn(Q + 1, b, generator=gen, dtype=torch.float64)
             if task.noise is not None else None)
        with torch.set_grad_enabled(optimizer is not None):  # the graph reaches the QueryRNN
            state, *_ = unroll_step(task.fun, state, eps, update_net, query_net, lr, mu,
                                    settings, task.box, task.noise, z)
        if optimizer is not None and ((t + 1) % window == 0 or t + 1 == steps):
            loss = torch.stack(losses).mean()
            if loss.requires_grad and torch.isfinite(loss):  # run 1 went NaN at 382
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            losses = []
            state = state._replace(query=detach(state.query))
    return total / steps


def validation_tasks(seed: int = 20000, b: int = 4):
    """Fixed held-out tasks: one batch per family at d = 100 and two digits-attack batches
    per side."""
    gen = torch.Generator().manual_seed(seed)
    out = [tasks.sample(gen, family, b, 100, augmentation=AUGMENTATION)
           for family in tasks.FAMILIES]
    out += [digits_attack.sample(gen, b, side) for side in ATTACK_SIDES for _ in range(2)]
    return out


def validate(update_net, query_net, steps: int) -> list[float]:
    """The mean log gain on each validation batch (same draws every time)."""
    return [episode(task, update_net, query_net, torch.Generator().manual_seed(7 + i), steps,
                    steps) for i, task in enumerate(validation_tasks())]


def save_weights(folder: Path, update_net, query_net, record: dict) -> None:
    weights.save(folder, "l2l-zo", (update_net, query_net), design_of(update_net),
                 {"query": "research/query_dense.py", **record})


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    update_net, shipped_query = shipped_update_net()
    query_net = make_nets(design_of(update_net))[1]
    query_net.load_state_dict(shipped_query.state_dict())
    query_net.requires_grad_(True)
    optimizer = torch.optim.Adam(query_net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    progress = {"iteration": 0, "history": [], "best": None}
    checkpoint = out / "checkpoint.pt"
    if args.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        query_net.load_state_dict(saved["query"])
        optimizer.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        progress = saved["progress"]
    log = open(out.with_suffix(".log"), "a")
    while progress["iteration"] < args.iterations:
        started = time.time()
        task = draw_task(gen, args.batch, args.attack_share)
        gain = episode(task, update_net, query_net, gen, args.steps, args.window, optimizer)
        progress["iteration"] += 1
        line = {"iteration": progress["iteration"], "family": task.family,
                "d": task.x0.shape[1], "gain": round(gain, 4),
                "seconds": round(time.time() - started, 1)}
        if progress["iteration"] % args.validate_every == 0:
            scores = validate(update_net, query_net, args.steps)
            line["validation"] = [round(v, 4) for v in scores]
            line["validation_mean"] = round(float(np.mean(scores)), 4)
            if progress["best"] is None or line["validation_mean"] > progress["best"][1]:
                progress["best"] = (progress["iteration"], line["validation_mean"])
                save_weights(out / "weights", update_net, query_net,
                             {"iteration": progress["iteration"],
                              "validation_mean": line["validation_mean"]})
        progress["history"].append(line)
        print(json.dumps(line), file=log, flush=True)
        torch.save({"query": query_net.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": gen.get_state(), "progress": progress}, checkpoint)


def evaluate(args) -> None:
    """l2l-zo with the trained QueryRNN against l2l-zo-update (no QueryRNN) on the
    benchmark's attack and nclsq, at the default lr, medians of the final loss."""
    import zominimize
    from benchmarks.problems import build

    folder = str(Path(args.evaluate) / "weights")
    suites = {"attack": [({"family": "attack", "image": i, "source": "foolbox"}, s)
                         for i in range(args.images) for s in range(args.seeds)]}
    for d in args.dims:
        suites[f"nclsq d={d}"] = [({"family": "nclsq", "d": d, "instance": i}, s)
                                  for i in range(args.nclsq) for s in range(args.seeds)]
    variants = {"l2l-zo-update": ("l2l-zo-update", {})}
    for ratio in args.ratios:
        variants[f"l2l-zo dense query_ratio {ratio:g}"] = (
            "l2l-zo", {"weights": folder, "query_ratio": ratio})
    print("| suite | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for suite, runs in suites.items():
        medians = []
        for method, options in variants.values():
            finals = []
            for spec, seed in runs:
                problem = build(spec)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = zominimize.minimize(problem.fun, problem.x0, method=method,
                                              options={"seed": seed, "maxfev": 4200,
                                                       "maxiter": 4200, **options})
                finals.append(float(res.fun))
            medians.append(float(np.median(finals)))
        print(f"| {suite} ({len(runs)}) | " + " | ".join(f"{m:.3g}" for m in medians) + " |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="research/runs/query-dense")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--attack-share", type=float, default=0.5)
    parser.add_argument("--validate-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate", metavar="RUN", help="measure a run's weights instead")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--nclsq", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--dims", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1.0])
    args = parser.parse_args()
    (evaluate if args.evaluate else train)(args)


if __name__ == "__main__":
    main()
