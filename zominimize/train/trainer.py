"""Two-stage meta-training with truncated backpropagation, validation and checkpoints.

Stage 1 trains the UpdateRNN with N(0, I) queries; stage 2 freezes it and trains
the QueryRNN. An episode samples B tasks of one family and dimension, runs T
optimizer steps, and takes one outer Adam step every ``truncation`` steps on the
meta-loss, with gradients clipped elementwise to [-1, 1] (the paper's settings). With
``cells_per_episode`` = K > 1, K such batches, each drawn on its own, run side by side
and each outer step takes the mean of their meta-losses, so that one family's gradient
does not swing the nets alone.
The meta-loss averages over the T steps either

* ``"log"`` (the paper's, scale-free): log(f(x_t) / f(x_0)), or
* ``"vs-adam"``: log(1 + f(x_t) / f(y_t)), where y_t is ZO-Adam's iterate on the same
  task with the same query draws, run alongside. Falling behind ZO-Adam costs as
  much in log f as it does under "log", while getting ahead earns less and less, so
  training spends its effort where the learned steps are worse than ZO-Adam's
  (a score of log 2 = 0.693 is ZO-Adam itself). ``behind_penalty`` = k weighs the
  steps behind ZO-Adam k + 1 times: l + k max(0, l - log 2).
* ``"vs-best"``: the same with y_t the better, on each task and at each step, of ZO-Adam
  and ZO-signSGD (lr the same default, same draws): each task is scored against the
  classic method that serves it best (sign steps win by far on the separable nclsq at
  d = 100, where ZO-Adam's steps shrink with the vanishing gradient, and lose on the
  quadratics), so no family is weighed against a reference it can beat easily.
  ``max_lead`` = K keeps that reference at or above e^-K times ZO-Adam's f, so that
  a family where sign steps lead by orders of magnitude (nclsq at d = 30: e^15 after
  400 steps) stops pulling once the net leads ZO-Adam by e^K.

With ``task_sampling = "adaptive"`` an episode's family and dimension lean towards the
cells whose recent training episodes were furthest behind ZO-Adam (a group-DRO-like
reweighting, see ``cell_probabilities``), so that gains on most tasks are not bought
with losses on a few; a quarter of the probability stays with the uniform choice.

Validation keeps, per stage, the checkpoint with the lowest mean held-out meta-loss, or
(``selection = "safe"``) the one whose worst held-out batch is least behind ZO-Adam
(then the lowest mean): gains on most tasks must not buy losses on a few. ``safe_margin``
tolerates a worst batch up to that much above log 2 (those compete by the mean). Safety is
always measured against ZO-Adam (the package's fallback), also under "vs-best".

Held-out tasks, drawn from their own seed, score the nets before a stage trains and
every ``validate_every`` episodes; the best score of each stage is kept (the nets as the
stage found them may be it). A checkpoint after each validation
makes a run resumable exactly (random generator included).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..learned import nets as learned_nets
from ..learned import weights
from . import tasks
from .config import REFERENCE_LOSSES, TrainConfig
from .unroll import (UnrollSettings, detach, forward_difference, initial_state, step_sizes,
                     unroll_step, value)

STAGES = ("stage1", "stage2")


def unroll_settings(config: TrainConfig, stage: str) -> UnrollSettings:
    """The unroll of a stage: stage 1 trains the steps, stage 2 the queries."""
    return UnrollSettings(q=config.q, base_step=config.base_step,
                          mu_relative=config.mu_relative, features=config.features,
                          step_form=config.step_form,
                          use_query=stage == "stage2", train_query=stage == "stage2",
                          meta_gradient=config.meta_gradient)


def sign_step(fun, x: torch.Tensor, eps: torch.Tensor, lr, mu) -> torch.Tensor:
    """One ZO-signSGD step on the batch with the standard draws eps (q, B, d): the
    package's "zo-signsgd" with its default lr, x - lr sign(g)."""
    g = forward_difference(fun(x), fun(x + mu * eps), eps, mu)
    return x - lr * torch.sign(g)


class _TaskUnroll:
    """The learned optimizer's run on one task batch inside an episode (and, for the
    "vs-adam" and "vs-best" meta-losses, the classic references' runs alongside on the
    same draws)."""

    def __init__(self, task: tasks.TaskBatch, update_net, query_net, config: TrainConfig,
                 settings: UnrollSettings):
        self.task, self.update_net, self.query_net = task, update_net, query_net
        self.config, self.settings = config, settings
        self.lr, self.mu = step_sizes(task.x0, settings)
        self.state = initial_state(task.x0, update_net, query_net)
        self.reference = self.sign_x = None
        if config.meta_loss in REFERENCE_LOSSES:
            self.adam = AdamInFeatures(settings.step_form)
            self.reference = initial_state(task.x0, self.adam, query_net)
            self.plain = replace(settings, use_query=False, train_query=False)
        if config.meta_loss == "vs-best":
            self.sign_x = task.x0.clone()
        with torch.no_grad():
            self.f_start = task.fun(task.x0)
        self.floor = 1e-12 * self.f_start
        self.behind_adam = 0.0  # the "vs-adam" meta-loss so far (safety, any reference loss)

    def _behind(self, f_t: torch.Tensor, f_reference: torch.Tensor) -> torch.Tensor:
        """log(1 + f_t / f_ref), steps behind the reference weighing 1 + behind_penalty."""
        behind = torch.log1p(f_t / f_reference)
        if self.config.behind_penalty:
            behind = behind + self.config.behind_penalty * (behind - math.log(2)).clamp_min(0)
        return behind

    def step(self, eps: torch.Tensor, penalty: float) -> tuple[torch.Tensor, float]:
        """One optimizer step with the draws eps: (this step's meta-loss term, a scalar
        tensor, and the mean log(f_t / f_0))."""
        fun, config, floor = self.task.fun, self.config, self.floor
        self.state, _, _, out = unroll_step(fun, self.state, eps, self.update_net,
                                            self.query_net, self.lr, self.mu, self.settings)
        f_t = value(fun, self.state.x, self.mu, self.settings) + floor
        ratio = torch.log(f_t / (self.f_start + floor))
        if self.reference is None:
            loss = ratio.mean() / config.steps
        else:
            with torch.no_grad():
                self.reference = unroll_step(fun, self.reference, eps, self.adam,
                                             self.query_net, self.lr, self.mu, self.plain)[0]
                f_reference = f_adam = fun(self.reference.x) + floor
                if self.sign_x is not None:
                    self.sign_x = sign_step(fun, self.sign_x, eps, self.lr, self.mu)
                    f_reference = torch.minimum(f_adam, fun(self.sign_x) + floor)
                    if config.max_lead is not None:
                        f_reference = torch.maximum(f_reference,
                                                    f_adam * math.exp(-config.max_lead))
            loss = self._behind(f_t, f_reference).mean() / config.steps
            behind_adam = loss.detach() if f_reference is f_adam else \
                self._behind(f_t.detach(), f_adam).mean() / config.steps
            self.behind_adam += float(behind_adam)
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
    "vs-adam" meta-loss or NaN without a reference), each averaged over the batch's tasks.
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
            loss, lasts[i] = unroll.step(eps, penalty)
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
    return [tasks.sample(gen, family, config.batch_for(d), d, config.f_scale, config.max_samples)
            for family in config.families for d in dims]


@torch.no_grad()
def validate(update_net, query_net, config: TrainConfig, stage: str,
             held_out: list[tasks.TaskBatch]) -> dict:
    """Mean meta-loss, worst batch's meta-loss and mean final log-ratio over the held-out
    tasks (fixed draws); with a reference loss also the worst batch's "vs-adam" meta-loss
    (what "safe" selection reads; the same as the worst meta-loss under "vs-adam")."""
    settings = unroll_settings(config, stage)
    gen = torch.Generator().manual_seed(config.validation_seed + 1)
    scores = [run_episode([task], update_net, query_net, config, settings, gen)[0]
              for task in held_out]

    def worst(column: int) -> tuple[float, str]:
        i = max(range(len(scores)), key=lambda i: scores[i][column])
        return scores[i][column], f"{held_out[i].family} d={held_out[i].size[1]}"

    score = dict(zip(("worst_meta_loss", "worst_batch"), worst(0)),
                 meta_loss=sum(s[0] for s in scores) / len(scores),
                 final_log_ratio=sum(s[1] for s in scores) / len(scores))
    if config.meta_loss in REFERENCE_LOSSES:
        score.update(zip(("worst_behind_adam", "worst_behind_adam_batch"), worst(2)))
    return score


def selection_key(score: dict, selection: str, margin: float = 0.0) -> tuple:
    """What validation minimises (see the module's docstring): the mean meta-loss, or for
    "safe" how far the worst batch is behind ZO-Adam's log 2 beyond ``margin``, then the
    mean."""
    if selection == "safe":
        behind = score["worst_behind_adam"] - math.log(2) - margin
        return max(behind, 0.0), score["meta_loss"]
    return (score["meta_loss"],)


class AdamInFeatures(torch.nn.Module):
    """ZO-Adam written as an UpdateRNN: step = -lr * m^ / rms, read off the normalised
    features (beta1 0.9, beta2 0.999; ZO-AdaMM's step, the package's "zo-adamm", with the
    max-corrected "rms-max-coherence"). A reference the learned net can represent exactly
    (in the blend forms, in the limit): in the "direct" step form it outputs -m^ / rms, in the
    "adam" forms no correction."""

    hidden = 1

    def __init__(self, step_form: str):
        super().__init__()
        self.step_form = step_form

    def initial_state(self, shape, device=None):
        zeros = torch.zeros(*shape[:-1], 1, shape[-1], device=device)
        return zeros, zeros.clone()

    def forward(self, inputs, state):
        if self.step_form == "adam":
            return torch.zeros_like(inputs[..., :2, :]), state  # (a, b) = 0: Adam's step
        if self.step_form == "adam-scale":
            return torch.zeros_like(inputs[..., 0, :]), state  # a = 0: Adam's step
        if self.step_form in learned_nets.BLEND_FORMS:  # a = 0, w = sigmoid(-inf) = 0: Adam's
            a = torch.zeros_like(inputs[..., 0, :])
            return torch.stack([a, torch.full_like(a, -math.inf)], dim=-2), state
        return -inputs[..., 1, :], state  # inputs (..., 2, d): [g / rms, m^ / rms]


#: Share of the "adaptive" sampling probability that stays with the uniform choice.
UNIFORM_SHARE = 0.25
#: Decay of each cell's running mean of its episodes' meta-losses ("adaptive" sampling).
CELL_DECAY = 0.8
#: Episode meta-losses are capped here in that mean (a diverged episode scores +inf).
CELL_LOSS_CAP = 3.0


def cell_probabilities(config: TrainConfig, history: list[dict], stage: str) -> dict:
    """Probability of each (family, d) cell for the next episode of ``stage``.

    "uniform": the family weights times 1 / len(dims). "adaptive": that base
    probability times exp(sharpness * L), L the cell's running mean (decay CELL_DECAY)
    of its episodes' meta-losses in this stage (log 2, ZO-Adam's score, before any),
    renormalised and mixed with the base (UNIFORM_SHARE of it). A pure function of the
    history, so a resumed run samples as the uninterrupted one.
    """
    total = sum(config.families.values())
    base = {(f, d): w / total / len(config.dims)
            for f, w in config.families.items() for d in config.dims}
    if config.task_sampling == "uniform":
        return base
    running = dict.fromkeys(base, math.log(2))
    for entry in history:
        cell = (entry["family"], entry.get("dim"))
        if entry["stage"] == stage and cell in running:
            loss = min(entry["loss"], CELL_LOSS_CAP)
            running[cell] = CELL_DECAY * running[cell] + (1 - CELL_DECAY) * loss
    top = max(running.values())
    leaning = {c: base[c] * math.exp(config.adaptive_sharpness * (running[c] - top))
               for c in base}
    norm = sum(leaning.values())
    return {c: UNIFORM_SHARE * base[c] + (1 - UNIFORM_SHARE) * leaning[c] / norm for c in base}


def _sample_task(config: TrainConfig, gen: torch.Generator, history: list[dict],
                 stage: str) -> tasks.TaskBatch:
    if config.task_sampling == "uniform":  # family by weight, then d (as before "adaptive")
        names = list(config.families)
        weights_t = torch.tensor([config.families[n] for n in names], dtype=torch.float64)
        family = names[int(torch.multinomial(weights_t, 1, generator=gen))]
        d = config.dims[int(torch.randint(len(config.dims), (1,), generator=gen))]
    else:
        cells = cell_probabilities(config, history, stage)
        order = list(cells)
        chosen = torch.multinomial(torch.tensor([cells[c] for c in order], dtype=torch.float64),
                                   1, generator=gen)
        family, d = order[int(chosen)]
    return tasks.sample(gen, family, config.batch_for(d), d, config.f_scale, config.max_samples)


class Trainer:
    """Runs (or resumes) the two stages and writes the weights in the loader's format."""

    def __init__(self, config: TrainConfig, out: Path, checkpoint: Path | None = None):
        self.config = config
        self.out = Path(out)
        self.checkpoint = checkpoint or self.out / "checkpoints" / f"{config.name}.pt"
        torch.manual_seed(config.seed)
        self.update_net, self.query_net = learned_nets.make_nets(config.features,
                                                                 config.step_form)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.held_out = validation_set(config)
        self.progress = {"stage": STAGES[0], "episode": 0, "best": {}, "history": [],
                         "seconds": 0.0}
        self.optimizer = self._optimizer(STAGES[0])

    def _trained(self, stage: str):
        return self.update_net if stage == "stage1" else self.query_net

    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        for net in (self.update_net, self.query_net):
            net.requires_grad_(net is self._trained(stage))
        return torch.optim.Adam(self._trained(stage).parameters(),
                                lr=getattr(self.config, stage).lr)

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> None:
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": self.config.as_dict(), "progress": self.progress,
                    "update": self.update_net.state_dict(), "query": self.query_net.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "gen": self.gen.get_state()},
                   self.checkpoint)

    def resume(self) -> bool:
        """Load the checkpoint if there is one for this config; True if loaded."""
        if not self.checkpoint.is_file():
            return False
        saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        if saved["config"] != self.config.as_dict():
            raise ValueError(f"{self.checkpoint} was written with another config")
        self.progress = saved["progress"]
        self.update_net.load_state_dict(saved["update"])
        self.query_net.load_state_dict(saved["query"])
        self.optimizer = self._optimizer(self.progress["stage"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.gen.set_state(saved["gen"])
        return True

    # ---------------------------------------------------------------- training

    def run(self, report: Callable[[str], None] = print,
            bar: Callable | None = None) -> dict:
        """Train both stages (from where a resumed run stopped); return the progress record."""
        started = time.perf_counter() - self.progress["seconds"]
        first = STAGES.index(self.progress["stage"])
        for stage in STAGES[first:]:
            if stage != self.progress["stage"]:
                self.progress.update(stage=stage, episode=0)
                self.optimizer = self._optimizer(stage)
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
            batches = [_sample_task(self.config, self.gen, self.progress["history"], stage)
                       for _ in range(self.config.cells_per_episode)]
            scores = run_episode(batches, self.update_net, self.query_net, self.config,
                                 settings, self.gen, spec.penalty, self.optimizer)
            self.progress["history"].extend(
                {"stage": stage, "episode": episode, "family": task.family,
                 "dim": task.size[1], "loss": loss} for task, (loss, *_) in zip(batches, scores))
            self.progress["episode"] = episode + 1
            if (episode + 1) % self.config.validate_every == 0 or episode + 1 == spec.episodes:
                self._validate(stage, episode + 1, started, report)

    def _validate(self, stage: str, episode: int, started: float, report) -> None:
        """Score the nets on the held-out tasks, keep them if they are the stage's best
        (by ``config.selection``), and write a checkpoint."""
        score = validate(self.update_net, self.query_net, self.config, stage, self.held_out)
        best = self.progress["best"].get(stage)
        key = functools.partial(selection_key, selection=self.config.selection,
                                margin=self.config.safe_margin)
        if best is None or key(score) < key(best["score"]):
            self.progress["best"][stage] = {
                "episode": episode, "score": score,
                "weights": copy.deepcopy(self._trained(stage).state_dict())}
        self.progress["seconds"] = time.perf_counter() - started
        self.save_checkpoint()
        report(f"{stage} episode {episode}/{getattr(self.config, stage).episodes}: validation "
               f"meta-loss {score['meta_loss']:.4f} (worst batch {score['worst_meta_loss']:.4f}, "
               f"{score['worst_batch']}),"
               + (f" worst vs ZO-Adam {score['worst_behind_adam']:.4f} "
                  f"({score['worst_behind_adam_batch']}),"
                  if self.config.meta_loss == "vs-best" else "")
               + f" final log(f/f0) {score['final_log_ratio']:.3f} "
               f"({self.progress['seconds']:.0f} s)")

    def baseline(self) -> dict:
        """Validation scores of references: the untrained nets, and ZO-Adam in the same
        features (None for the 'raw' feature set, which has no RMS)."""
        fresh_update, fresh_query = learned_nets.make_nets(self.config.features,
                                                            self.config.step_form)
        scores = {"untrained": validate(fresh_update, fresh_query, self.config, "stage1",
                                        self.held_out)}
        if self.config.features in learned_nets.NORMALISED_FEATURES:
            scores["zo-adam"] = validate(AdamInFeatures(self.config.step_form), fresh_query,
                                         self.config, "stage1", self.held_out)
        return scores

    def write_weights(self, command: str, references: dict | None = None) -> Path:
        """Save the trained nets and their manifest entry (what ``weights.load`` reads)."""
        best = {stage: {"episode": b["episode"], **b["score"]}
                for stage, b in self.progress["best"].items()}
        training = {"config": self.config.as_dict(), "command": command,
                    "validation_references": references or {},
                    "families": list(self.config.families), "seconds": self.progress["seconds"],
                    "validation": best,
                    "episodes": {s: getattr(self.config, s).episodes for s in STAGES},
                    "torch": torch.__version__}
        return weights.save(self.out, self.config.name, (self.update_net, self.query_net),
                            self.config.features, self.config.step_form, training)
