"""The QueryRNN trained by ES over whole runs, the shipped update (UpdateRNN and controller) frozen.

Issue 18, directions 3 and 4. The dense signal of research/query_dense.py (the estimate's
expected alignment each step) did not carry over to whole runs; the controller, trained by
antithetic ES over whole runs, did. This script trains the QueryRNN the controller's way:

* theta is the QueryRNN's weights (its LSTM cell and head, the architecture unchanged),
  starting from the shipped, untrained QueryRNN;
* each iteration draws the controller stage's task batches (zominimize.train.controller,
  from pretrained/l2l-zo.toml, keys of its ``[controller]`` table changed by ``--set
  key=value``: augmented families and digits attacks, lr factors drawn);
  each member of the population theta +- sigma eps runs l2l-zo on them as minimize runs it,
  the QueryRNN's scales in a share ``query_ratio`` of the iterations (a coin per iteration,
  the same for every member), on the same draws;
* a member's score is the mean over the tasks of log(best f / the best f of l2l-zo without
  the QueryRNN on those draws), so the centre's score is the QueryRNN's own effect (< 0:
  it helps); theta follows Adam along the centred-rank estimate (as the controller stage).

Every ``--validate-every`` iterations the centre is scored on held-out tasks at the default
lr. Run from the repository root::

    python research/query_es.py --out research/runs/query-es --iterations 150 --threads 2
    python research/query_es.py --out research/runs/query-es --resume ...

Each run writes ``checkpoint.pt`` (exact resume), ``train.log`` and a weight set (the
shipped update with the trained QueryRNN, theta averaged over the last ``--average-last``
iterations) that ``python -m benchmarks --goals --weights FOLDER`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zominimize.learned import weights  # noqa: E402
from zominimize.learned.queries import query_init, query_step  # noqa: E402
from zominimize.learned.nets import CoordinateLSTM  # noqa: E402
from zominimize.train.config import load_config  # noqa: E402
from zominimize.train.controller import ControllerNets, PopulationGain  # noqa: E402
from zominimize.train.evolution import es_update  # noqa: E402
from zominimize.train.query_stage import PopulationLSTM  # noqa: E402
from zominimize.train.trainer import Trainer  # noqa: E402
from zominimize.train.unroll import UnrollSettings, estimate, project, step_sizes  # noqa: E402


def theta_of(net: CoordinateLSTM) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().double()


@torch.no_grad()
def best_values(task, design, nets, query, lr, seed: int, steps: int, population: int,
                settings: UnrollSettings, query_ratio: float) -> torch.Tensor:
    """The best true f over a run, (P, B): l2l-zo (``nets``) with the QueryRNNs ``query``
    (a PopulationLSTM, or None for N(0, I) queries throughout), every member on the same
    draws and coins."""
    b, d = task.size
    _, mu = step_sizes(task.x0, settings, task.box)
    shape = (population, b, d)
    x = task.x0.expand(shape).clone()
    update, sampler = design.init(shape), query_init(shape)
    gen = torch.Generator().manual_seed(seed)
    best = task.fun(x)
    for _ in range(steps):
        eps = torch.randn(settings.q, 1, b, d, generator=gen, dtype=torch.float64)
        z = None if task.noise is None else torch.randn(settings.q + 1, 1, b, generator=gen,
                                                        dtype=torch.float64)
        coin = float(torch.rand((), generator=gen, dtype=torch.float64)) < query_ratio
        u = eps * sampler.scales if (query is not None and coin) else eps.expand(-1, *shape)
        g, f_x = estimate(task.fun, x, u, mu, task.box, task.noise, z)
        step, update = design.step(nets, g, f_x, update, lr)
        if query is not None:
            sampler = query_step(query, g, step, sampler, lr)[0]
        x = project(x + step, task.box)
        best = torch.minimum(best, task.fun(x))
    return best


class QueryES:
    """The ES state and the scores; tasks and their draws are the controller stage's."""

    def __init__(self, args):
        self.args = args
        config = load_config("pretrained/l2l-zo.toml")
        changes = tomllib.loads("\n".join(args.set))
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        config = replace(config, controller=replace(config.controller, **changes))
        self.trainer = Trainer(config, Path(args.out))
        entry, tensors = weights.load()
        update, query = weights.build_nets(entry, tensors, torch.device("cpu"))
        self.update, self.template = update, query
        self.stage = self.trainer.controller
        self.design = config.design
        self.nets = ControllerNets(update.rnn, PopulationGain(
            torch.nn.utils.parameters_to_vector(update.gain.parameters()).detach()[None]))
        self.settings = UnrollSettings(q=config.q, base_step=config.base_step,
                                       mu_relative=config.mu_relative)
        self.theta = theta_of(query)
        self.moments = (torch.zeros_like(self.theta), torch.zeros_like(self.theta))
        self.theta_sum = torch.zeros_like(self.theta)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.iteration, self.history = 0, []

    def log_ratios(self, theta: torch.Tensor, task, factor, seed: int) -> torch.Tensor:
        """log(best f / best f without the QueryRNN), (P, B), at lr times ``factor``."""
        lr, _ = step_sizes(task.x0, self.settings, task.box)
        lr = lr * factor
        args = (self.args.steps, None, self.settings, self.args.query_ratio)
        plain = best_values(task, self.design, self.nets, None, lr, seed, args[0], 1,
                            *args[2:])[0]
        ours = best_values(task, self.design, self.nets, PopulationLSTM(theta, self.template),
                           lr, seed, args[0], theta.shape[0], *args[2:])
        return torch.log(ours.clamp_min(1e-300)) - torch.log(plain.clamp_min(1e-300))

    def validate(self, theta: torch.Tensor) -> dict:
        """The centre's mean log ratio on the controller stage's held-out tasks at the
        default lr, by kind (families, attacks)."""
        rows = {"families": [], "attacks": []}
        for task, _, seed, _ in self.stage.validation_set:
            ratio = self.log_ratios(theta[None], task, torch.ones(task.size[0], 1,
                                                                 dtype=torch.float64), seed)
            kind = "attacks" if "attack" in task.family else "families"
            rows[kind] += ratio[0].tolist()
        return {k: sum(v) / len(v) for k, v in rows.items() if v}

    def step(self) -> dict:
        a = self.args
        batches = [self.stage.draw_batch(self.gen) for _ in range(a.batches)]
        seeds = [int(torch.randint(2 ** 31, (), generator=self.gen)) for _ in batches]
        noise = torch.randn(a.pairs, self.theta.numel(), generator=self.gen, dtype=torch.float64)
        population = torch.cat([self.theta + a.sigma * noise, self.theta - a.sigma * noise,
                                self.theta[None]])
        scores = sum(self.log_ratios(population, task, factor, seed).mean(-1)
                     for (task, factor), seed in zip(batches, seeds)) / len(batches)
        k = self.iteration + 1
        self.theta, self.moments = es_update(self.theta, self.moments, k, scores[:-1], noise,
                                             a.sigma, a.lr)
        self.iteration = k
        if k > a.iterations - a.average_last:
            self.theta_sum = self.theta_sum + self.theta
        return {"iteration": k, "tasks": [t.family + f"-d{t.size[1]}" for t, _ in batches],
                "centre": round(float(scores[-1]), 4),
                "population": round(float(scores[:-1].mean()), 4)}

    def result(self) -> torch.Tensor:
        if self.args.average_last and self.iteration == self.args.iterations:
            return self.theta_sum / self.args.average_last
        return self.theta

    def state_dict(self) -> dict:
        return {"theta": self.theta, "moments": self.moments, "theta_sum": self.theta_sum,
                "gen": self.gen.get_state(), "iteration": self.iteration,
                "history": self.history}

    def load_state_dict(self, saved: dict) -> None:
        self.theta, self.moments = saved["theta"], tuple(saved["moments"])
        self.theta_sum, self.iteration = saved["theta_sum"], saved["iteration"]
        self.gen.set_state(saved["gen"])
        self.history = saved["history"]

    def save_weights(self, folder: Path) -> None:
        query = CoordinateLSTM(2)
        torch.nn.utils.vector_to_parameters(self.result().float(), query.parameters())
        weights.save(folder, "l2l-zo", (self.update, query), self.design,
                     {"query": "python research/query_es.py " + " ".join(sys.argv[1:]),
                      "iteration": self.iteration})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--query-ratio", type=float, default=0.5)
    parser.add_argument("--average-last", type=int, default=50)
    parser.add_argument("--validate-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a key of the config's [controller] table (TOML value)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    es = QueryES(args)
    checkpoint = out / "checkpoint.pt"
    if args.resume and checkpoint.is_file():
        es.load_state_dict(torch.load(checkpoint, weights_only=False))
    started = time.perf_counter()
    with open(out / "train.log", "a") as log:
        if es.iteration == 0:
            row = {"iteration": 0, "validation": es.validate(es.theta)}
            print(json.dumps(row), file=log, flush=True)
        while es.iteration < args.iterations:
            row = es.step()
            if es.iteration % args.validate_every == 0 or es.iteration == args.iterations:
                row["validation"] = es.validate(es.theta)
            row["seconds"] = round(time.perf_counter() - started)
            es.history.append(row)
            print(json.dumps(row), file=log, flush=True)
            torch.save(es.state_dict(), checkpoint)
        if args.average_last:
            row = {"iteration": f"mean of the last {args.average_last}",
                   "validation": es.validate(es.result())}
            print(json.dumps(row), file=log, flush=True)
    es.save_weights(out)


if __name__ == "__main__":
    main()
