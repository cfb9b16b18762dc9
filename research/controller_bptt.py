"""The controller stage's meta-gradient against truncated backpropagation, on the same budget.

Issue 18's direction 4 asks whether ES over whole runs beats the truncated backpropagation
that stage 1 uses. This script trains the step-size controller (zominimize.learned.gain)
around the shipped UpdateRNN, from the controller's initial weights, on the controller
stage's own task stream (the same draws: families, dimensions, augmentation, digits
attacks, each task's lr factor over 2.4 decades, runs of ``steps`` iterations, isotropic
queries), but by backpropagation through windows of ``--truncation`` iterations: each
window's loss is the mean over its iterations of log(f(x_t) / f(x_0)) (the paper's
meta-loss), one Adam step per window, gradients clipped elementwise to [-1, 1], the state
detached at the window's end. It stops after ``--seconds`` of training (the ES stage's
time), validates on the ES stage's held-out tasks every ``--validate-every`` iterations
and at the end, and writes a weight set to ``--out`` (the shipped QueryRNN kept), for
``python -m benchmarks --goals --weights FOLDER``. Run from the repository root::

    python research/controller_bptt.py --out research/runs/controller-bptt --seconds 600 \\
        --threads 2
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from research.controller_variant import load_shipped_nets  # noqa: E402
from zominimize.train.config import load_config  # noqa: E402
from zominimize.train.trainer import Trainer  # noqa: E402
from zominimize.train.unroll import (RunState, UnrollSettings, detach, step_sizes,  # noqa: E402
                                     unroll_step)


def train_batch(task, factor, seed, update_net, settings, steps, truncation, optimizer):
    """One run of ``steps`` iterations of the gained design on the batch at lr times
    ``factor``, an Adam step every ``truncation`` iterations; returns the final mean
    log(f_T / f_0), or NaN if the run went non-finite (the window is then dropped)."""
    b, d = task.size
    lr, mu = step_sizes(task.x0, settings, task.box)
    state = RunState(task.x0.clone(), settings.design.init((b, d)),
                     settings.query.init((b, d)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        f_start = task.fun(task.x0)
    floor = 1e-12 * f_start
    parameters = list(update_net.gain.parameters())
    window, ratio = 0.0, torch.zeros(b, dtype=torch.float64)
    for t in range(steps):
        eps = torch.randn(settings.q, b, d, generator=gen, dtype=torch.float64)
        z = None if task.noise is None else torch.randn(settings.q + 1, b, generator=gen,
                                                        dtype=torch.float64)
        state, *_ = unroll_step(task.fun, state, eps, update_net, None, lr * factor, mu,
                                settings, task.box, task.noise, z)
        ratio = torch.log((task.fun(state.x) + floor) / (f_start + floor))
        if not torch.isfinite(ratio).all():
            return math.nan
        window = window + ratio.mean() / truncation
        if (t + 1) % truncation == 0:
            optimizer.zero_grad()
            window.backward()
            torch.nn.utils.clip_grad_value_(parameters, 1.0)
            optimizer.step()
            window = 0.0
            state = detach(state)
    return float(ratio.detach().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="training time, validation excluded")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's step")
    parser.add_argument("--truncation", type=int, default=20)
    parser.add_argument("--validate-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("pretrained/l2l-zo.toml")
    trainer = Trainer(config, Path(args.out))
    stage = trainer.controller
    load_shipped_nets(trainer)
    update_net = trainer.update_net
    update_net.requires_grad_(False)
    update_net.gain.requires_grad_(True)
    optimizer = torch.optim.Adam(update_net.gain.parameters(), lr=args.lr)
    settings = UnrollSettings(q=config.q, base_step=config.base_step,
                              mu_relative=config.mu_relative, design=config.design,
                              query=config.design.query)
    spec = stage.spec

    def theta():
        return torch.nn.utils.parameters_to_vector(update_net.gain.parameters()).detach()

    def validate(iteration, spent):
        row = {"iteration": iteration, "validation": stage.validate(theta()),
               "seconds": spent}
        stage.history.append(row)
        print(f"bptt iteration {iteration} ({spent:.0f} s of training): validation log ratio "
              f"to zo-adamm by lr factor {row['validation']}", flush=True)

    validate(0, 0.0)
    spent, iteration = 0.0, 0
    while spent < args.seconds:
        started = time.perf_counter()
        batches, seeds, _, lengths = stage._draws()  # the ES stage's stream of draws
        finals = [train_batch(task, factor, seed, update_net, settings, steps,
                              args.truncation, optimizer)
                  for (task, factor), seed, steps in zip(batches, seeds, lengths)]
        spent += time.perf_counter() - started
        iteration += 1
        stage.iteration = iteration
        stage.history.append({"iteration": iteration, "final_log_ratio": finals,
                              "tasks": [f"{t.family}-d{t.size[1]}" for t, _ in batches]})
        if iteration % args.validate_every == 0:
            validate(iteration, spent)
    if iteration % args.validate_every:
        validate(iteration, spent)
    print(f"{iteration} iterations of {len(batches)} batches ({spec.steps} steps each) "
          f"in {spent:.0f} s", flush=True)
    trainer.progress["stage"] = "controller"
    trainer.write_weights("python research/controller_bptt.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
