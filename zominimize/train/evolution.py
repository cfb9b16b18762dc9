"""ES stages: a small net trained by evolution strategies over whole runs, the others frozen.

Stages 1 and 2 train the nets by backpropagation through 20-step windows, which favours
short-horizon greed; what pays only over a whole run (correcting a step that is ten
times off, choosing where to query) is trained by antithetic evolution strategies
(Salimans et al. 2017) instead. An :class:`EvolutionStage` holds what such a stage
shares; a subclass says what theta is and how a population of thetas is scored
(``zominimize.train.controller``, ``zominimize.train.query_stage``):

* Each iteration draws ``batches`` task batches of ``batch`` tasks (the controller
  table's): with probability ``attack_share`` digits attacks
  (:mod:`zominimize.train.attacks`), else a family of the config (uniformly) at a
  dimension of ``dims``, augmented; every task gets its own lr, 10^U(-lr_decades,
  lr_decades) times the default, so that what is learned holds at any lr.
* A member's score is a mean log ratio of best values over runs of ``steps`` iterations
  on the same draws (lower is better); with several run lengths, each batch's is drawn
  from them, so that a controller is also scored where a step that pays early costs
  later (the short-horizon bias of Wu et al. 2018). The population, ``pairs``
  antithetic pairs theta +- sigma eps and theta itself, runs at once along a leading
  axis.
* theta follows Adam (step ``lr``) along the antithetic estimate of the gradient of the
  centred ranks (fitness shaping).

Every ``validate_every`` iterations theta is scored on held-out tasks at lr factors 0.1,
1 and 10 (reported and recorded; with several run lengths, the held-out batches take them
in turn). A held-out score of a few dozen runs did not pick the controller that did best
on the benchmark's problems (research/experiment-log.md), so a stage does not select by
it: its result is the last theta, or with ``average_last`` the mean of theta over the
last iterations (Polyak averaging), which damps the noise of the last few ES steps.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Callable

import torch

from . import attacks, tasks
from .unroll import RunState, UnrollSettings, step_sizes, unroll_step

#: The lr factors of the held-out tasks.
VALIDATION_FACTORS = (0.1, 1.0, 10.0)
#: Adam's decays for theta.
BETAS = (0.9, 0.999)


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
                population: int, q: int, settings: UnrollSettings,
                query_net=None) -> torch.Tensor:
    """The best true f over a run of ``steps`` iterations, (P, B): every member of the
    population on the same draws (directions and noise from ``seed``). With
    ``query_net``, the queries are the QueryRNN's (of ``settings.query``); else the
    draws themselves."""
    b, d = task.size
    settings = UnrollSettings(q=q, base_step=settings.base_step,
                              mu_relative=settings.mu_relative, design=design,
                              query=settings.query, use_query=query_net is not None)
    _, mu = step_sizes(task.x0, settings, task.box)
    shape = (population, b, d)
    x = task.x0.expand(shape).clone()
    state = RunState(x, design.init(shape), settings.query.init(shape))
    gen = torch.Generator().manual_seed(seed)
    best = task.fun(x)
    for _ in range(steps):
        eps = torch.randn(q, 1, b, d, generator=gen, dtype=torch.float64)
        z = None if task.noise is None else torch.randn(q + 1, 1, b, generator=gen,
                                                        dtype=torch.float64)
        state, *_ = unroll_step(task.fun, state, eps, net, query_net, lr, mu, settings,
                                task.box, task.noise, z)
        best = torch.minimum(best, task.fun(state.x))
    return best


class EvolutionStage:
    """The ES training of one net's parameter vector theta around frozen nets.

    A subclass sets ``name`` and ``reference`` (what the validation's log ratios compare
    with, for the reports) and defines :meth:`log_ratios` (the population's scores) and
    :meth:`_store` (theta into its net); :meth:`row` may add to each iteration's record.

    Parameters
    ----------
    config : zominimize.train.config.TrainConfig
        Its table ``name`` sets the ES; its ``controller`` table the tasks; ``seed``,
        ``q``, ``base_step``, ``mu_relative`` and ``families`` are the run's.
    theta : torch.Tensor
        The starting parameter vector.
    seed : int
        The seed of the stage's draws (tasks, their seeds and the ES noise).
    """

    name = "evolution"
    reference = "the reference"

    def __init__(self, config, theta: torch.Tensor, seed: int):
        self.config, self.spec = config, getattr(config, self.name)
        self.tasks_spec = config.controller
        self.design = config.design
        self.settings = UnrollSettings(q=config.q, base_step=config.base_step,
                                       mu_relative=config.mu_relative,
                                       query=config.design.query)
        self.theta = theta.detach()
        self.moments = (torch.zeros_like(self.theta), torch.zeros_like(self.theta))
        self.theta_sum = torch.zeros_like(self.theta)  # over the last average_last iterations
        self.gen = torch.Generator().manual_seed(seed)
        self.iteration, self.history = 0, []

    # ---------------------------------------------------------------- what a stage defines

    def log_ratios(self, theta: torch.Tensor, task: tasks.TaskBatch, factor: torch.Tensor,
                   seed: int, steps: int) -> torch.Tensor:
        """The scores (P, B) of the thetas (P, n) at lr times ``factor`` over runs of
        ``steps`` iterations: log ratios of best values, lower is better."""
        raise NotImplementedError

    def _store(self) -> None:
        """Write :meth:`result` into the net that the stage trains."""
        raise NotImplementedError

    def row(self) -> dict:
        """What an iteration's record holds beyond the scores."""
        return {}

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
        """The stage's theta: the mean of theta over the last ``average_last`` iterations
        once they have run, else the current theta."""
        if self.spec.average_last and self.iteration == self.spec.iterations:
            return self.theta_sum / self.spec.average_last
        return self.theta

    # ---------------------------------------------------------------- tasks

    def _augmentation(self) -> tasks.Augmentation:
        spec = self.tasks_spec
        return tasks.Augmentation(x_scale_range=spec.x_scale_range,
                                  coordinate_scale_range=spec.coordinate_scale_range,
                                  box_fraction=spec.box_fraction,
                                  minority_fraction=spec.minority_fraction)

    def draw_batch(self, gen: torch.Generator) -> tuple[tasks.TaskBatch, torch.Tensor]:
        """A task batch and its lr factors (B, 1)."""
        spec, b = self.tasks_spec, self.tasks_spec.batch
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
    def validation_set(self) -> list[tuple[tasks.TaskBatch, torch.Tensor, int, int]]:
        """One batch per family and dimension of ``dims``, and one digits attack per side
        (with ``attack_share``), each of three tasks at lr factors 0.1, 1 and 10, with its
        seed and run length; drawn once, from the config's validation seed."""
        spec, seed = self.tasks_spec, self.config.validation_seed
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
        horizons = self.spec.horizons
        return [(*entry, horizons[i % len(horizons)]) for i, entry in enumerate(out)]

    # ---------------------------------------------------------------- training

    def validate(self, theta: torch.Tensor | None = None) -> dict[str, float]:
        """The held-out log ratios' means per lr factor (keys "0.1", "1.0", "10.0") of
        ``theta`` (default: the current one)."""
        theta = self.theta if theta is None else theta
        rows = [self.log_ratios(theta.reshape(1, -1), task, factor, seed, steps)[0].tolist()
                for task, factor, seed, steps in self.validation_set]
        means = [sum(row[i] for row in rows) / len(rows) for i in range(len(VALIDATION_FACTORS))]
        return dict(zip(map(str, VALIDATION_FACTORS), means))

    def _draws(self):
        spec = self.spec
        batches = [self.draw_batch(self.gen) for _ in range(spec.batches)]
        seeds = [int(torch.randint(2 ** 31, (), generator=self.gen)) for _ in batches]
        noise = torch.randn(spec.pairs, self.theta.numel(), generator=self.gen,
                            dtype=torch.float64)
        horizons = spec.horizons  # one length: nothing drawn, the stream of a fixed length
        lengths = [horizons[int(torch.randint(len(horizons), (), generator=self.gen))]
                   if len(horizons) > 1 else horizons[0] for _ in batches]
        return batches, seeds, noise, lengths

    def step(self) -> dict:
        """One ES iteration: score the population on fresh tasks and move theta."""
        spec = self.spec
        batches, seeds, noise, lengths = self._draws()
        population = torch.cat([self.theta + spec.sigma * noise,
                                self.theta - spec.sigma * noise, self.theta[None]])
        scores = sum(self.log_ratios(population, task, factor, seed, steps).mean(-1)
                     for (task, factor), seed, steps in zip(batches, seeds, lengths)
                     ) / len(batches)
        k = self.iteration + 1
        self.theta, self.moments = es_update(self.theta, self.moments, k, scores[:-1], noise,
                                             spec.sigma, spec.lr)
        self.iteration = k
        if k > spec.iterations - spec.average_last:
            self.theta_sum = self.theta_sum + self.theta
        self._store()
        return {"iteration": k, "tasks": [f"{t.family}-d{t.size[1]}" for t, _ in batches],
                "centre": float(scores[-1]), "mean": float(scores[:-1].mean()), **self.row()}

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
            report(f"{self.name} iteration {row['iteration']}/{spec.iterations}: validation "
                   f"log ratio to {self.reference} by lr factor {row['validation']} "
                   f"({row['seconds']:.0f} s)")
        averaged = f"mean of the last {spec.average_last}"
        if spec.average_last and not any(row["iteration"] == averaged for row in self.history):
            row = {"iteration": averaged, "validation": self.validate(self.result()),
                   "seconds": time.perf_counter() - started}
            self.history.append(row)
            checkpoint()
            report(f"{self.name}, {averaged} iterations' theta: validation log ratio to "
                   f"{self.reference} by lr factor {row['validation']} "
                   f"({row['seconds']:.0f} s)")
