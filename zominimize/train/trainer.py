"""Meta-training in stages, with validation and checkpoints.

Stage 1 trains the UpdateRNN with N(0, I) queries; stage 2 freezes it and trains the
QueryRNN; both by truncated backpropagation. A design under a step-size controller (a
gained design, :mod:`zominimize.learned.gain`) trains its inner design's nets in stages 1
and 2, then its controller in a third stage, by evolution strategies over whole runs
(:mod:`zominimize.train.controller`); a design with the subspace QueryRNN trains that in a
fourth stage, by the same ES (:mod:`zominimize.train.query_stage`; stage 2 is for the
scales QueryRNN). An episode draws ``cells_per_episode`` task batches
(each of one family and dimension, drawn on its own), runs T optimizer steps on each side
by side, and takes one outer Adam step every ``truncation`` steps on the mean of their
meta-losses, gradients clipped elementwise to [-1, 1] (the paper's settings). The
meta-loss averages over the T steps either

* ``"log"`` (the paper's, scale-free): log(f(x_t) / f(x_0)), or
* ``"vs-best"``: log(1 + f(x_t) / f(y_t)), y_t the better, on each task and at each
  step, of zo-adamm's and zo-signsgd's iterates on the same task with the same draws
  (their default lr). Falling behind that reference costs as much in log f as under
  "log", while getting ahead earns less and less, so training spends its effort where
  the learned steps are worse than the classic method that serves the task best (a
  score of log 2 is level with it). ``behind_penalty`` = k weighs the steps behind it
  k + 1 times: l + k max(0, l - log 2).

The task batches may be augmented (rescaled, boxed, weighted towards a minority of
coordinates, noisy: the config's augmentation keys, see zominimize.train.tasks); on a
noisy task the episode draws the noise of each step, (q + 1) values per task, from its
generator right after the directions, and the meta-loss reads the true f.

Held-out tasks, drawn from their own seed, score the nets before a stage trains and
every ``validate_every`` episodes; each stage keeps the checkpoint of lowest mean
held-out meta-loss (the nets as the stage found them may be it). A checkpoint after each
validation makes a run resumable exactly (random generator included). Variants that were
tried and retired are described in research/experiment-log.md.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..learned import weights
from ..learned.designs import make_nets
from . import tasks
from .config import TrainConfig, with_defaults
from .controller import ControllerStage
from .query_stage import QueryStage
from .unroll import (ZO_ADAMM, UnrollSettings, detach, estimate, initial_state, project,
                     step_sizes, unroll_step)

STAGES = ("stage1", "stage2", "controller", "query_stage")
#: The stages trained by evolution strategies over whole runs.
ES_STAGES = STAGES[2:]
#: The stages trained by truncated backpropagation (episodes).
BPTT_STAGES = STAGES[:2]


def unroll_settings(config: TrainConfig, stage: str) -> UnrollSettings:
    """The unroll of a backpropagation stage: stage 1 trains the steps, stage 2 the
    queries, of the config's design (of its inner design for a gained one)."""
    return UnrollSettings(q=config.q, base_step=config.base_step,
                          mu_relative=config.mu_relative,
                          design=config.design.inner or config.design,
                          query=config.design.query,
                          use_query=stage == "stage2", train_query=stage == "stage2")


def bptt_net(update_net, config: TrainConfig):
    """The UpdateRNN that stages 1 and 2 unroll: the net itself, or a gained design's
    inner LSTM."""
    return update_net.rnn if config.design.inner is not None else update_net


def sign_step(fun, x: torch.Tensor, eps: torch.Tensor, lr, mu, box=None, noise=None,
              z=None) -> torch.Tensor:
    """One ZO-signSGD step on the batch with the standard draws eps (q, B, d): the
    package's "zo-signsgd" with its default lr, x - lr sign(g); ``box``, ``noise`` and
    ``z`` as for :func:`zominimize.train.unroll.unroll_step`."""
    g, _ = estimate(fun, x, eps, mu, box, noise, z)
    return project(x - lr * torch.sign(g), box)


class _TaskUnroll:
    """The learned optimizer's run on one task batch inside an episode (and, for the
    "vs-best" meta-loss, zo-adamm's and zo-signsgd's runs alongside on the same draws)."""

    def __init__(self, task: tasks.TaskBatch, update_net, query_net, config: TrainConfig,
                 settings: UnrollSettings):
        self.task, self.update_net, self.query_net = task, update_net, query_net
        self.config, self.settings = config, settings
        self.lr, self.mu = step_sizes(task.x0, settings, task.box)
        self.state = initial_state(task.x0, settings)
        self.reference = self.sign_x = None
        if config.meta_loss == "vs-best":
            self.plain = replace(settings, design=ZO_ADAMM, use_query=False, train_query=False)
            self.reference = initial_state(task.x0, self.plain)
            self.sign_x = task.x0.clone()
        with torch.no_grad():
            self.f_start = task.fun(task.x0)
        self.floor = 1e-12 * self.f_start
        self.behind_adam = 0.0  # the meta-loss against zo-adamm alone so far (vs-best)

    def _behind(self, f_t: torch.Tensor, f_reference: torch.Tensor) -> torch.Tensor:
        """log(1 + f_t / f_ref), steps behind the reference weighing 1 + behind_penalty."""
        behind = torch.log1p(f_t / f_reference)
        if self.config.behind_penalty:
            behind = behind + self.config.behind_penalty * (behind - math.log(2)).clamp_min(0)
        return behind

    def step(self, eps: torch.Tensor, penalty: float,
             z: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """One optimizer step with the draws eps (and, on a noisy task, the noise draws z,
        (q + 1, B)): (this step's meta-loss term, a scalar tensor, and the mean
        log(f_t / f_0)). The meta-loss reads the true f."""
        fun, config, floor = self.task.fun, self.config, self.floor
        seen = dict(box=self.task.box, noise=self.task.noise, z=z)
        self.state, _, _, out = unroll_step(fun, self.state, eps, self.update_net,
                                            self.query_net, self.lr, self.mu, self.settings,
                                            **seen)
        f_t = fun(self.state.x) + floor
        ratio = torch.log(f_t / (self.f_start + floor))
        if self.reference is None:
            loss = ratio.mean() / config.steps
        else:
            with torch.no_grad():
                self.reference = unroll_step(fun, self.reference, eps, None, self.query_net,
                                             self.lr, self.mu, self.plain, **seen)[0]
                f_adamm = fun(self.reference.x) + floor
                self.sign_x = sign_step(fun, self.sign_x, eps, self.lr, self.mu, **seen)
                f_reference = torch.minimum(f_adamm, fun(self.sign_x) + floor)
            loss = self._behind(f_t, f_reference).mean() / config.steps
            self.behind_adam += float(self._behind(f_t.detach(), f_adamm).mean() / config.steps)
        if out is not None and penalty:
            loss = loss + penalty * out.pow(2).mean() / config.steps
        return loss, float(ratio.detach().mean())

    def cut(self) -> None:
        """Detach the states at a truncation boundary."""
        self.state = detach(self.state)
        self.reference = None if self.reference is None else detach(self.reference)


def run_episode(batches: list[tasks.TaskBatch], update_net, query_net, config: TrainConfig,
                settings: UnrollSettings, gen: torch.Generator, penalty: float = 0.0,
                optimizer: torch.optim.Optimizer | None = None) -> list[tuple[float, float]]:
    """Unroll the learned optimizer on each task batch side by side; train when
    ``optimizer`` is given, each outer step on the mean of the batches' meta-losses.

    Returns, per batch, (meta-loss averaged over the steps, final log(f_T / f_0), the
    meta-loss against zo-adamm alone or NaN without a reference), each averaged over the
    batch's tasks.
    A diverging episode (non-finite values) stops early without an update and scores +inf
    for every batch.
    """
    unrolls = [_TaskUnroll(task, update_net, query_net, config, settings) for task in batches]
    parameters = [p for group in optimizer.param_groups for p in group["params"]] \
        if optimizer is not None else []
    window = 0.0
    totals, lasts = [0.0] * len(unrolls), [math.nan] * len(unrolls)
    for t in range(config.steps):
        losses = []
        for i, unroll in enumerate(unrolls):
            eps = torch.randn(config.q, *unroll.task.x0.shape, generator=gen,
                              dtype=torch.float64)
            z = None if unroll.task.noise is None else \
                torch.randn(config.q + 1, unroll.task.size[0], generator=gen,
                            dtype=torch.float64)
            loss, lasts[i] = unroll.step(eps, penalty, z)
            if not torch.isfinite(loss):
                return [(math.inf, math.inf, math.inf)] * len(unrolls)
            totals[i] += float(loss.detach())
            losses.append(loss)
        window = window + sum(losses) / len(losses)
        if (t + 1) % config.truncation == 0:
            if optimizer is not None and window.requires_grad:
                optimizer.zero_grad()
                window.backward()
                torch.nn.utils.clip_grad_value_(parameters, 1.0)
                optimizer.step()
            window = 0.0
            for unroll in unrolls:
                unroll.cut()
    behind = [u.behind_adam if u.reference is not None else math.nan for u in unrolls]
    return list(zip(totals, lasts, behind))


def validation_set(config: TrainConfig) -> list[tasks.TaskBatch]:
    """Held-out tasks: ``validation_tasks`` batches per family, from their own seed."""
    gen = torch.Generator().manual_seed(config.validation_seed)
    dims = [config.dims[i % len(config.dims)] for i in range(config.validation_tasks)]
    return [tasks.sample(gen, family, config.batch_for(d), d, config.f_scale, config.max_samples,
                         config.augmentation)
            for family in config.families for d in dims]


@torch.no_grad()
def validate(update_net, query_net, config: TrainConfig, stage: str,
             held_out: list[tasks.TaskBatch], stepper=None) -> dict:
    """Scores on the held-out tasks (fixed draws): the mean meta-loss, the worst batch's
    meta-loss and the mean final log(f_T / f_0); under "vs-best" also the worst batch's
    meta-loss against zo-adamm alone ("worst_behind_adam"). ``stepper`` runs in the
    design's place (``unroll.ZO_ADAMM`` scores the reference itself)."""
    settings = unroll_settings(config, stage)
    if stepper is not None:
        settings = replace(settings, design=stepper)
    gen = torch.Generator().manual_seed(config.validation_seed + 1)
    scores = [run_episode([task], update_net, query_net, config, settings, gen)[0]
              for task in held_out]

    def worst(column: int) -> tuple[float, str]:
        i = max(range(len(scores)), key=lambda i: scores[i][column])
        return scores[i][column], f"{held_out[i].family} d={held_out[i].size[1]}"

    score = dict(zip(("worst_meta_loss", "worst_batch"), worst(0)),
                 meta_loss=sum(s[0] for s in scores) / len(scores),
                 final_log_ratio=sum(s[1] for s in scores) / len(scores))
    if config.meta_loss == "vs-best":
        score.update(zip(("worst_behind_adam", "worst_behind_adam_batch"), worst(2)))
    return score


def _sample_task(config: TrainConfig, gen: torch.Generator) -> tasks.TaskBatch:
    """A task batch: its family by the family weights, then its dimension uniformly."""
    names = list(config.families)
    weights_t = torch.tensor([config.families[n] for n in names], dtype=torch.float64)
    family = names[int(torch.multinomial(weights_t, 1, generator=gen))]
    d = config.dims[int(torch.randint(len(config.dims), (1,), generator=gen))]
    return tasks.sample(gen, family, config.batch_for(d), d, config.f_scale, config.max_samples,
                        config.augmentation)


class Trainer:
    """Runs (or resumes) the stages and writes the weights in the loader's format."""

    def __init__(self, config: TrainConfig, out: Path, checkpoint: Path | None = None):
        self.config = config
        self.out = Path(out)
        self.checkpoint = checkpoint or self.out / "checkpoints" / f"{config.name}.pt"
        torch.manual_seed(config.seed)
        self.update_net, self.query_net = make_nets(config.design)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.held_out = validation_set(config)
        self.progress = {"stage": STAGES[0], "episode": 0, "best": {}, "history": [],
                         "seconds": 0.0}
        self.controller = ControllerStage(config, self.update_net) \
            if config.design.inner is not None else None
        self.query_stage = QueryStage(config, self.update_net, self.query_net) \
            if config.query_stage.iterations else None
        self.optimizer = self._optimizer(STAGES[0])

    @property
    def bptt_update(self):
        """The UpdateRNN that stages 1 and 2 unroll (see :func:`bptt_net`)."""
        return bptt_net(self.update_net, self.config)

    def _trained(self, stage: str):
        return self.bptt_update if stage == "stage1" else self.query_net

    def _optimizer(self, stage: str) -> torch.optim.Optimizer | None:
        """Adam over the nets a backpropagation stage trains (the others frozen)."""
        for net in (self.update_net, self.query_net):
            net.requires_grad_(False)
        if stage not in BPTT_STAGES:
            return None
        self._trained(stage).requires_grad_(True)
        return torch.optim.Adam(self._trained(stage).parameters(),
                                lr=getattr(self.config, stage).lr)

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> None:
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": self.config.as_dict(), "progress": self.progress,
                    "update": self.update_net.state_dict(), "query": self.query_net.state_dict(),
                    "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                    "controller": self.controller.state_dict() if self.controller else None,
                    "query_stage": self.query_stage.state_dict() if self.query_stage else None,
                    "gen": self.gen.get_state()},
                   self.checkpoint)

    def resume(self) -> bool:
        """Load the checkpoint if there is one for this config; True if loaded."""
        if not self.checkpoint.is_file():
            return False
        saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        if with_defaults(saved["config"]) != self.config.as_dict():
            raise ValueError(f"{self.checkpoint} was written with another config")
        self.progress = saved["progress"]
        self.update_net.load_state_dict(saved["update"])
        self.query_net.load_state_dict(saved["query"])
        self.optimizer = self._optimizer(self.progress["stage"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
        for stage in (self.controller, self.query_stage):
            if stage is not None and saved.get(stage.name) is not None:
                stage.load_state_dict(saved[stage.name])
        self.gen.set_state(saved["gen"])
        return True

    # ---------------------------------------------------------------- training

    def run(self, report: Callable[[str], None] = print,
            bar: Callable | None = None) -> dict:
        """Train the stages (from where a resumed run stopped); return the progress record."""
        started = time.perf_counter() - self.progress["seconds"]
        first = STAGES.index(self.progress["stage"])
        for stage in STAGES[first:]:
            if stage != self.progress["stage"]:
                self.progress.update(stage=stage, episode=0)
                self.optimizer = self._optimizer(stage)
            if stage in ES_STAGES:
                self._run_evolution(getattr(self, stage), started, report)
                continue
            self._run_stage(stage, started, report, bar)
            best = self.progress["best"].get(stage)
            if best is not None:
                self._trained(stage).load_state_dict(best["weights"])
        self.progress["seconds"] = time.perf_counter() - started
        return self.progress

    def _run_stage(self, stage: str, started: float, report, bar) -> None:
        spec = getattr(self.config, stage)
        settings = unroll_settings(self.config, stage)
        if stage not in self.progress["best"]:  # the nets as the stage finds them compete too
            self._validate(stage, 0, started, report)
        episodes = range(self.progress["episode"], spec.episodes)
        for episode in (bar(episodes, desc=stage) if bar else episodes):
            batches = [_sample_task(self.config, self.gen)
                       for _ in range(self.config.cells_per_episode)]
            scores = run_episode(batches, self.bptt_update, self.query_net, self.config,
                                 settings, self.gen, spec.penalty, self.optimizer)
            self.progress["history"].extend(
                {"stage": stage, "episode": episode, "family": task.family,
                 "dim": task.size[1], "loss": loss} for task, (loss, *_) in zip(batches, scores))
            self.progress["episode"] = episode + 1
            if (episode + 1) % self.config.validate_every == 0 or episode + 1 == spec.episodes:
                self._validate(stage, episode + 1, started, report)

    def _run_evolution(self, stage, started: float, report) -> None:
        """An ES stage (the controller's of a gained design, the subspace QueryRNN's),
        when the design has it and the config asks for it."""
        if stage is None or not stage.spec.iterations:
            return

        def checkpoint():
            self.progress["seconds"] = time.perf_counter() - started
            self.save_checkpoint()

        stage.run(checkpoint, report, started)

    def _validate(self, stage: str, episode: int, started: float, report) -> None:
        """Score the nets on the held-out tasks, keep them if they are the stage's best
        (the lowest mean meta-loss), and write a checkpoint."""
        score = validate(self.bptt_update, self.query_net, self.config, stage, self.held_out)
        best = self.progress["best"].get(stage)
        if best is None or score["meta_loss"] < best["score"]["meta_loss"]:
            self.progress["best"][stage] = {
                "episode": episode, "score": score,
                "weights": copy.deepcopy(self._trained(stage).state_dict())}
        self.progress["seconds"] = time.perf_counter() - started
        self.save_checkpoint()
        report(f"{stage} episode {episode}/{getattr(self.config, stage).episodes}: validation "
               f"meta-loss {score['meta_loss']:.4f} (worst batch {score['worst_meta_loss']:.4f}, "
               f"{score['worst_batch']}),"
               + (f" worst vs zo-adamm {score['worst_behind_adam']:.4f} "
                  f"({score['worst_behind_adam_batch']}),"
                  if self.config.meta_loss == "vs-best" else "")
               + f" final log(f/f0) {score['final_log_ratio']:.3f} "
               f"({self.progress['seconds']:.0f} s)")

    def baseline(self) -> dict:
        """Validation scores of references: the untrained nets ("untrained") and the
        package's zo-adamm ("zo-adam")."""
        fresh_update, fresh_query = make_nets(self.config.design)
        return {"untrained": validate(bptt_net(fresh_update, self.config), fresh_query,
                                      self.config, "stage1", self.held_out),
                "zo-adam": validate(None, fresh_query, self.config, "stage1", self.held_out,
                                    stepper=ZO_ADAMM)}

    def write_weights(self, command: str, references: dict | None = None) -> Path:
        """Save the trained nets and their manifest entry (what ``weights.load`` reads)."""
        best = {stage: {"episode": b["episode"], **b["score"]}
                for stage, b in self.progress["best"].items()}
        training = {"config": self.config.as_dict(), "command": command,
                    "validation_references": references or {},
                    "families": list(self.config.families), "seconds": self.progress["seconds"],
                    "validation": best,
                    "episodes": {s: getattr(self.config, s).episodes for s in BPTT_STAGES},
                    "torch": torch.__version__}
        for stage in (self.controller, self.query_stage):
            if stage is not None and stage.history:
                training[stage.name] = {
                    "iterations": stage.iteration,
                    "validation": {str(row["iteration"]): row["validation"]
                                   for row in stage.history if "validation" in row}}
        return weights.save(self.out, self.config.name, (self.update_net, self.query_net),
                            self.config.design, training)
