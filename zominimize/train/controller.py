"""The controller stage: a gained design's step-size controller, trained by ES over whole runs.

Stages 1 and 2 train the nets by backpropagation through 20-step windows, which favours
short-horizon greed; the controller's task, correcting a step that is ten times off,
pays only over a whole run. This stage trains it by antithetic evolution strategies
(Salimans et al. 2017), with the UpdateRNN and QueryRNN of stages 1 and 2 frozen:

* Each iteration draws ``batches`` task batches of ``batch`` tasks: with probability
  ``attack_share`` digits attacks (:mod:`zominimize.train.attacks`), else a family of the
  config (uniformly) at a dimension of ``dims``, augmented; every task gets its own lr,
  10^U(-lr_decades, lr_decades) times the default, so that only a controller that
  corrects the step does well on all of them.
* A controller's score is the mean over the tasks of log(best f / zo-adamm's best f at
  the default lr) over runs of ``steps`` iterations on the same draws. The population,
  ``pairs`` antithetic pairs theta +- sigma eps and theta itself, runs at once along a
  leading axis (:class:`PopulationGain`).
* theta follows Adam (step ``lr``) along the antithetic estimate of the gradient of the
  centred ranks (fitness shaping).

Every ``validate_every`` iterations the controller is scored on held-out tasks at lr
factors 0.1, 1 and 10 (reported and recorded). The held-out score, a few dozen runs, did
not pick the controller that did best on the benchmark's problems
(research/experiment-log.md), so the stage does not select by it: its result is the last
theta, or with ``average_last`` the mean of theta over the last iterations (Polyak
averaging), which damps the noise of the last few ES steps.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, NamedTuple

import torch

from ..learned import gain
from ..learned.designs import Design, query_init
from . import attacks, tasks
from .unroll import ZO_ADAMM, RunState, UnrollSettings, step_sizes, unroll_step

#: The lr factors of the held-out tasks.
VALIDATION_FACTORS = (0.1, 1.0, 10.0)
#: Adam's decays for theta.
BETAS = (0.9, 0.999)


class ControllerNets(NamedTuple):
    """What a gained design's step reads as its ``net``: the frozen UpdateRNN and the
    controllers (a :class:`zominimize.learned.gain.GainNet` or a :class:`PopulationGain`)."""

    rnn: Any
    gain: Any


def parameter_shapes() -> list[tuple[int, ...]]:
    """The shapes of GainNet's parameters, in the order of its parameter vector."""
    return [(gain.HIDDEN, gain.N_FEATURES), (gain.HIDDEN,), (gain.N_OUTPUTS, gain.HIDDEN),
            (gain.N_OUTPUTS,), (1,)]


class PopulationGain:
    """P controllers at once, from parameter vectors theta (P, n) in GainNet's order:
    features (P, B, F) -> outputs (P, B, O), and the levels' starts (P, 1, 1)."""

    def __init__(self, theta: torch.Tensor):
        p = theta.shape[0]
        shapes = parameter_shapes()
        parts = torch.split(theta, [math.prod(s) for s in shapes], dim=1)
        self.w1, self.b1, self.w2, self.b2, start = (part.reshape(p, *s)
                                                     for part, s in zip(parts, shapes))
        self.start = start.reshape(p, 1, 1)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(features @ self.w1.mT + self.b1.unsqueeze(1))
        return hidden @ self.w2.mT + self.b2.unsqueeze(1)


def es_update(theta: torch.Tensor, moments: tuple, k: int, scores: torch.Tensor,
              noise: torch.Tensor, sigma: float, lr: float) -> tuple[torch.Tensor, tuple]:
    """One antithetic ES step on theta (n,): (new theta, new Adam moments (m, v)).

    ``scores`` (2 P,) are those of theta + sigma noise then theta - sigma noise (lower is
    better), ``noise`` (P, n); ``k`` counts the steps, this one included. The gradient is
    estimated from the scores' centred ranks (fitness shaping) and followed by Adam
    (decays :data:`BETAS`, step ``lr``).
    """
    pairs = noise.shape[0]
    ranks = scores.argsort().argsort().double()
    ranks = ranks / (ranks.numel() - 1) - 0.5
    grad = ((ranks[:pairs] - ranks[pairs:])[:, None] * noise).mean(0) / sigma
    m, v = moments
    m = BETAS[0] * m + (1 - BETAS[0]) * grad
    v = BETAS[1] * v + (1 - BETAS[1]) * grad * grad
    theta = theta - lr * (m / (1 - BETAS[0] ** k)) / ((v / (1 - BETAS[1] ** k)).sqrt() + 1e-8)
    return theta, (m, v)


def best_values(task: tasks.TaskBatch, design, net, lr, seed: int, steps: int,
                population: int, q: int, settings: UnrollSettings) -> torch.Tensor:
    """The best true f over a run of ``steps`` iterations, (P, B): every member of the
    population on the same draws (directions and noise from ``seed``)."""
    b, d = task.size
    settings = UnrollSettings(q=q, base_step=settings.base_step,
                              mu_relative=settings.mu_relative, design=design)
    _, mu = step_sizes(task.x0, settings, task.box)
    shape = (population, b, d)
    x = task.x0.expand(shape).clone()
    state = RunState(x, design.init(shape), query_init(shape))
    gen = torch.Generator().manual_seed(seed)
    best = task.fun(x)
    for _ in range(steps):
        eps = torch.randn(q, 1, b, d, generator=gen, dtype=torch.float64)
        z = None if task.noise is None else torch.randn(q + 1, 1, b, generator=gen,
                                                        dtype=torch.float64)
        state, *_ = unroll_step(task.fun, state, eps, net, None, lr, mu, settings, task.box,
                                task.noise, z)
        best = torch.minimum(best, task.fun(state.x))
    return best


class ControllerStage:
    """The ES training of a gained design's controller around frozen nets.

    Parameters
    ----------
    config : zominimize.train.config.TrainConfig
        Its ``controller`` table sets the stage; ``seed``, ``q``, ``base_step``,
        ``mu_relative`` and ``families`` are the run's.
    update_net : zominimize.learned.gain.GainedUpdate
        The UpdateRNN (frozen) and the controller that this stage trains in place.
    """

    def __init__(self, config, update_net):
        self.config, self.spec, self.update_net = config, config.controller, update_net
        self.design: Design = config.design
        self.settings = UnrollSettings(q=config.q, base_step=config.base_step,
                                       mu_relative=config.mu_relative)
        self.theta = torch.nn.utils.parameters_to_vector(update_net.gain.parameters()).detach()
        self.moments = (torch.zeros_like(self.theta), torch.zeros_like(self.theta))
        self.theta_sum = torch.zeros_like(self.theta)  # over the last average_last iterations
        self.gen = torch.Generator().manual_seed(config.seed)
        self.iteration, self.history = 0, []

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {"theta": self.theta, "moments": self.moments, "gen": self.gen.get_state(),
                "iteration": self.iteration, "history": self.history,
                "theta_sum": self.theta_sum}

    def load_state_dict(self, saved: dict) -> None:
        self.theta, self.moments = saved["theta"], tuple(saved["moments"])
        self.theta_sum = saved.get("theta_sum", torch.zeros_like(self.theta))
        self.gen.set_state(saved["gen"])
        self.iteration, self.history = saved["iteration"], saved["history"]
        self._store()

    def result(self) -> torch.Tensor:
        """The stage's controller: the mean of theta over the last ``average_last``
        iterations once they have run, else the current theta."""
        if self.spec.average_last and self.iteration == self.spec.iterations:
            return self.theta_sum / self.spec.average_last
        return self.theta

    def _store(self) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(self.result(), self.update_net.gain.parameters())

    # ---------------------------------------------------------------- tasks

    def _augmentation(self) -> tasks.Augmentation:
        spec = self.spec
        return tasks.Augmentation(x_scale_range=spec.x_scale_range,
                                  coordinate_scale_range=spec.coordinate_scale_range,
                                  box_fraction=spec.box_fraction,
                                  minority_fraction=spec.minority_fraction)

    def draw_batch(self, gen: torch.Generator) -> tuple[tasks.TaskBatch, torch.Tensor]:
        """A task batch and its lr factors (B, 1)."""
        spec, b = self.spec, self.spec.batch
        if spec.attack_share and float(torch.rand((), generator=gen,
                                                  dtype=torch.float64)) < spec.attack_share:
            side = spec.attack_sides[int(torch.randint(len(spec.attack_sides), (),
                                                       generator=gen))]
            task = attacks.sample(gen, b, side)
        else:
            families = list(self.config.families)
            family = families[int(torch.randint(len(families), (), generator=gen))]
            d = spec.dims[int(torch.randint(len(spec.dims), (), generator=gen))]
            task = tasks.sample(gen, family, b, d, augmentation=self._augmentation())
        uniform = 2 * torch.rand(b, 1, generator=gen, dtype=torch.float64) - 1
        return task, torch.exp(math.log(10) * spec.lr_decades * uniform)

    @functools.cached_property
    def validation_set(self) -> list[tuple[tasks.TaskBatch, torch.Tensor, int]]:
        """One batch per family and dimension of ``dims``, and one digits attack per side
        (with ``attack_share``), each of three tasks at lr factors 0.1, 1 and 10; drawn
        once, from the config's validation seed."""
        spec, seed = self.spec, self.config.validation_seed
        gen = torch.Generator().manual_seed(seed)
        factor = torch.tensor(VALIDATION_FACTORS, dtype=torch.float64).reshape(-1, 1)
        b = len(VALIDATION_FACTORS)
        out = [(tasks.sample(gen, family, b, d, augmentation=self._augmentation()), factor,
                seed + i)
               for i, (family, d) in enumerate((f, d) for f in self.config.families
                                               for d in spec.dims)]
        if spec.attack_share:
            out += [(attacks.sample(gen, b, side), factor, seed + len(out) + i)
                    for i, side in enumerate(spec.attack_sides)]
        return out

    # ---------------------------------------------------------------- scores

    @torch.no_grad()
    def log_ratios(self, theta: torch.Tensor, task: tasks.TaskBatch, factor: torch.Tensor,
                   seed: int) -> torch.Tensor:
        """log(best f / zo-adamm's best f at the default lr), (P, B), for the controllers
        theta (P, n) at lr times ``factor``."""
        steps, q = self.spec.steps, self.config.q
        lr, _ = step_sizes(task.x0, self.settings, task.box)
        reference = best_values(task, ZO_ADAMM, None, lr, seed, steps, 1, q, self.settings)[0]
        net = ControllerNets(self.update_net.rnn, PopulationGain(theta))
        best = best_values(task, self.design, net, lr * factor, seed, steps, theta.shape[0], q,
                           self.settings)
        return torch.log(best.clamp_min(1e-300)) - torch.log(reference.clamp_min(1e-300))

    def validate(self, theta: torch.Tensor | None = None) -> dict[str, float]:
        """The held-out log ratios' means per lr factor (keys "0.1", "1.0", "10.0") of
        ``theta`` (default: the current one)."""
        theta = self.theta if theta is None else theta
        rows = [self.log_ratios(theta.reshape(1, -1), task, factor, seed)[0].tolist()
                for task, factor, seed in self.validation_set]
        means = [sum(row[i] for row in rows) / len(rows) for i in range(len(VALIDATION_FACTORS))]
        return dict(zip(map(str, VALIDATION_FACTORS), means))

    # ---------------------------------------------------------------- training

    def _draws(self):
        spec = self.spec
        batches = [self.draw_batch(self.gen) for _ in range(spec.batches)]
        seeds = [int(torch.randint(2 ** 31, (), generator=self.gen)) for _ in batches]
        noise = torch.randn(spec.pairs, self.theta.numel(), generator=self.gen,
                            dtype=torch.float64)
        return batches, seeds, noise

    def step(self) -> dict:
        """One ES iteration: score the population on fresh tasks and move theta."""
        spec = self.spec
        batches, seeds, noise = self._draws()
        population = torch.cat([self.theta + spec.sigma * noise,
                                self.theta - spec.sigma * noise, self.theta[None]])
        scores = sum(self.log_ratios(population, task, factor, seed).mean(-1)
                     for (task, factor), seed in zip(batches, seeds)) / len(batches)
        k = self.iteration + 1
        self.theta, self.moments = es_update(self.theta, self.moments, k, scores[:-1], noise,
                                             spec.sigma, spec.lr)
        self.iteration = k
        if k > spec.iterations - spec.average_last:
            self.theta_sum = self.theta_sum + self.theta
        self._store()
        return {"iteration": k, "tasks": [f"{t.family}-d{t.size[1]}" for t, _ in batches],
                "centre": float(scores[-1]), "mean": float(scores[:-1].mean()),
                "start": float(self.theta[-1])}

    def run(self, checkpoint: Callable[[], None], report: Callable[[str], None],
            started: float) -> None:
        """Train to ``iterations``, validating (and calling ``checkpoint``) every
        ``validate_every`` iterations and at the end."""
        spec = self.spec
        while self.iteration < spec.iterations:
            row = self.step()
            self.history.append(row)
            if row["iteration"] % spec.validate_every and row["iteration"] != spec.iterations:
                continue
            row["validation"] = self.validate()
            row["seconds"] = time.perf_counter() - started
            checkpoint()
            report(f"controller iteration {row['iteration']}/{spec.iterations}: validation "
                   f"log ratio to zo-adamm by lr factor {row['validation']} "
                   f"({row['seconds']:.0f} s)")
        averaged = f"mean of the last {spec.average_last}"
        if spec.average_last and not any(row["iteration"] == averaged for row in self.history):
            row = {"iteration": averaged, "validation": self.validate(self.result()),
                   "seconds": time.perf_counter() - started}
            self.history.append(row)
            checkpoint()
            report(f"controller, {averaged} iterations' theta: validation log ratio to "
                   f"zo-adamm by lr factor {row['validation']} ({row['seconds']:.0f} s)")
