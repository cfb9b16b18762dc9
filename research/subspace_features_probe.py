"""What the shipped subspace QueryRNN reads and does, per quarter of a run (issue 18, goal 3).

Runs the shipped l2l-zo with defaults on two LeNet5 attack images and nclsq d = 100 and
1,000 (instance 0, the goal suites' budgets) and prints, per quarter of the run, the mean
of the QueryRNN's first two inputs (r, the share of |g|^2 in the iteration's subspace, and
the cosine between g and the running mean) and the fraction of split iterations. Run from
the repository root::

    PYTHONPATH=. python research/subspace_features_probe.py
"""

import warnings

import numpy as np

import zominimize
from benchmarks.problems import build
from zominimize.learned import queries

PROBLEMS = [({"family": "attack", "image": 0, "source": "foolbox"}, 4200),
            ({"family": "attack", "image": 3, "source": "foolbox"}, 4200),
            ({"family": "nclsq", "d": 100, "instance": 0}, 4200),
            ({"family": "nclsq", "d": 1000, "instance": 0}, 21000)]


def features_of_a_run(spec: dict, budget: int) -> tuple[float, np.ndarray]:
    """The final value of one l2l-zo run and the QueryRNN's inputs at each iteration,
    (iterations, 3)."""
    seen = []
    read = queries.subspace_features

    def spy(g, state):
        features = read(g, state)
        seen.append(features.squeeze(-1).numpy().copy())
        return features

    queries.subspace_features = spy  # subspace_step looks it up at each call
    try:
        problem = build(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = zominimize.minimize(problem.fun, problem.x0, method="l2l-zo",
                                      options={"seed": 0, "maxfev": budget, "maxiter": budget})
    finally:
        queries.subspace_features = read
    return res.fun, np.array(seen)


def main() -> None:
    for spec, budget in PROBLEMS:
        final, features = features_of_a_run(spec, budget)
        quarters = np.array_split(features, 4)
        share = " / ".join(f"{(q[:, 0].mean() + 1) / 2:.3f}" for q in quarters)
        cos = " / ".join(f"{q[:, 1].mean():.2f}" for q in quarters)
        split = " / ".join(f"{(q[:, 2] > 0).mean():.2f}" for q in quarters)
        print(f"{spec}: final {final:.3g}; r {share}; cos {cos}; split {split}", flush=True)


if __name__ == "__main__":
    main()
