"""Do queries guided by the run's recent estimates beat isotropic ones? (issue 18, direction 3)

Guided ES (Maheswaranathan et al., ICML 2019) draws each direction from the covariance

    Sigma = alpha I + (1 - alpha) (d / k) U U^T,      trace Sigma = d (as N(0, I)'s),

U an orthonormal basis of k guiding directions. Here the guides are the run's own last k
gradient estimates (self-guided, as in Liu et al. 2020), so no extra information enters:
the question is whether spending part of the queries along where the gradient was lowers
the estimator's error enough to pay. The forward-difference estimate from such directions
has mean Sigma grad f, a descent direction that leans towards the subspace.

This script runs one ZO loop with the package's own rules (zo-adamm, and the l2l-zo
UpdateRNN), estimator and defaults (q, mu, lr), changing only the law of the directions,
on the benchmark's nclsq and LeNet5 attack problems at 4,200 evaluations. Run from the
repository root::

    python research/guided_queries.py --alphas 1,0.5,0.25 --history 5
"""

from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from research.lr_sensitivity import BUDGET, default_settings  # noqa: E402
from zominimize import estimators  # noqa: E402
from zominimize._registry import get_method  # noqa: E402

from benchmarks.problems import build  # noqa: E402


def guided_directions(rng: np.random.Generator, q: int, d: int, alpha: float,
                      basis: np.ndarray | None) -> np.ndarray:
    """q directions (rows) with covariance alpha I + (1 - alpha) (d / k) U U^T, U the
    (d, k) orthonormal ``basis``; N(0, I) when there is no basis or alpha is 1."""
    u = rng.standard_normal((q, d))
    if basis is None or alpha >= 1:
        return u
    k = basis.shape[1]
    u *= np.sqrt(alpha)
    u += np.sqrt((1 - alpha) * d / k) * rng.standard_normal((q, k)) @ basis.T
    return u


def orthonormal(history: list[np.ndarray]) -> np.ndarray | None:
    """An orthonormal basis of the span of ``history`` (the nonzero estimates), or None."""
    kept = [g for g in history if np.any(g)]
    if not kept:
        return None
    basis, r = np.linalg.qr(np.stack(kept, axis=1))
    return basis[:, np.abs(np.diag(r)) > 1e-12 * np.abs(r).max()]


def split_estimate(rng: np.random.Generator, fun, x: np.ndarray, fx: float, q: int, mu: float,
                   basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An unbiased estimate from k = basis.shape[1] queries along the basis (the gradient's
    part in that subspace, exact to O(mu)) and q - k Gaussian queries projected onto its
    complement (the rest, with E[v v^T] = I - U U^T): Meier et al. (2019)'s use of past
    descent directions. Returns (g, points, values), the centre excluded."""
    d, k = x.size, basis.shape[1]
    along = np.sqrt(d) * basis.T                            # (k, d), lengths sqrt(d)
    across = rng.standard_normal((q - k, d))
    across -= (across @ basis) @ basis.T
    directions = np.vstack([along, across])
    points = x + mu * directions
    values = fun(points)
    coef = (values - fx) / mu
    g = (coef[:k] / d) @ along + (coef[k:] @ across) / max(q - k, 1)
    return g, points, values


def run(method: str, spec: dict, seed: int, alpha: float, history: int,
        budget: int = BUDGET, mode: str = "guided", decay: float = 0.95) -> float:
    """The best f of one run of ``method``'s rule (its defaults) with the directions of
    ``mode``: "guided" (Guided ES's law, the last ``history`` estimates as guides),
    "split" (``history`` queries along the basis of the running mean of the estimates and
    the last estimates, the rest in its complement, in each iteration with probability
    1 - alpha, from a coin of its own stream; alpha 1 is isotropic throughout), "consistency" (scales
    s^2 = alpha + rho, rho the running (``decay``) consistency of g / s^2 per coordinate),
    "consistency-iso" (the same scales in every other iteration, rho from the estimates of
    the iterations between, which use s = 1, so that sampling a coordinate less does not
    make it look less consistent), "shape" (l2l-zo only: scales exp(alpha shape_i) from
    its controller's per-coordinate shape, alpha 0 isotropic),
    or the upper bounds "oracle" (scale alpha on the attack's clipped pixels) and
    "oracle-gradient" (scales |G|^alpha from the true gradient)."""
    problem = build(spec)
    x = problem.x0.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = default_settings(method, x)
    method_spec = get_method(method)
    parts = method_spec.load(settings) if method_spec.load else None
    rule = method_spec.make_rule(settings, parts)
    state = rule.init(x.size)
    q, mu = settings["q"], settings["mu"]
    rng = np.random.default_rng(seed)
    recent: list[np.ndarray] = []
    mean = np.zeros(x.size)
    best, used = np.inf, 0
    coin = np.random.default_rng([seed, 1])
    while mode == "split" and used + q + 1 <= budget:
        fx = float(problem.fun(x))
        basis = (orthonormal([mean] + recent[-(history - 1):] if history > 1 else [mean])
                 if coin.random() >= alpha else None)
        if basis is None:
            points = x + mu * rng.standard_normal((q, x.size))
            values = problem.batch_fun(points)
            g, _ = estimators.estimate_gradient(x, np.vstack([x, points]),
                                                np.concatenate([[fx], values]), mu, "forward")
        else:
            g, points, values = split_estimate(rng, problem.batch_fun, x, fx, q, mu, basis)
        used += q + 1
        best = min(best, fx, float(np.min(values)))
        mean = 0.9 * mean + 0.1 * g
        recent = (recent + [g])[-history:]
        step, state = rule.update(g, fx, state)
        x = x + step
    scales = np.ones(x.size)
    g_mean, g_square = np.zeros(x.size), np.zeros(x.size)
    iteration = 0
    while mode in ("consistency", "consistency-iso") and used + q + 1 <= budget:
        isotropic = mode == "consistency-iso" and iteration % 2 == 0
        iteration += 1
        directions = rng.standard_normal((q, x.size)) * (1.0 if isotropic else scales)
        points = np.vstack([x, x + mu * directions])
        values = problem.batch_fun(points)
        used += q + 1
        best = min(best, float(np.min(values)))
        g, _ = estimators.estimate_gradient(x, points, values, mu, "forward")
        if mode == "consistency" or isotropic:
            unbiased = g if isotropic else g / scales ** 2
            g_mean = decay * g_mean + (1 - decay) * unbiased
            g_square = decay * g_square + (1 - decay) * unbiased ** 2
            rho = g_mean ** 2 / np.maximum(g_square, 1e-300)
            scales = np.sqrt(alpha + rho)
            scales *= np.sqrt(x.size) / np.linalg.norm(scales)
        step, state = rule.update(g, float(values[0]), state)
        x = x + step
    while mode in ("guided", "oracle", "oracle-gradient", "shape") and used + q + 1 <= budget:
        directions = guided_directions(rng, q, x.size, alpha if mode == "guided" else 1,
                                       orthonormal(recent))
        if mode == "shape" and alpha and hasattr(state, "shape"):
            scales = np.exp(alpha * state.shape.cpu().numpy())
            directions *= scales * np.sqrt(x.size) / np.linalg.norm(scales)
        if mode == "oracle":  # research only: the attack's live pixels, from the image
            image = problem.fun.x if hasattr(problem.fun, "x") else None
            live = ((image + x > mu) & (image + x < 1 - mu)) if image is not None else 1
            scales = np.where(live, 1.0, alpha)
            directions *= scales * np.sqrt(x.size) / np.linalg.norm(scales)
        if mode == "oracle-gradient":  # research only: scales |G|^alpha from the true G
            h = 1e-4 * np.eye(x.size)
            gradient = (problem.batch_fun(x + h) - problem.batch_fun(x - h)) / 2e-4
            scales = np.abs(gradient) ** alpha + 1e-12
            directions *= scales * np.sqrt(x.size) / np.linalg.norm(scales)
        points = np.vstack([x, x + mu * directions])
        values = problem.batch_fun(points)
        used += q + 1
        best = min(best, float(np.min(values)))
        g, _ = estimators.estimate_gradient(x, points, values, mu, "forward")
        recent = (recent + [g])[-history:] if history else []
        step, state = rule.update(g, float(values[0]), state)
        x = x + step
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="zo-adamm")
    parser.add_argument("--alphas", default="1,0.5,0.25")
    parser.add_argument("--history", type=int, default=5, help="k, the guiding estimates")
    parser.add_argument("--nclsq", type=int, default=3, help="nclsq instances per d")
    parser.add_argument("--dims", default="100,1000", help="nclsq dimensions")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--attack-seeds", type=int, default=1, help="seeds per attack image")
    parser.add_argument("--decay", type=float, default=0.95, help="consistency's decay")
    parser.add_argument("--mode", choices=("guided", "split", "oracle", "oracle-gradient",
                                           "consistency", "consistency-iso", "shape"),
                        default="guided")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    suites = {f"nclsq d={d}": [({"family": "nclsq", "d": int(d), "instance": i}, s)
                               for i in range(args.nclsq) for s in range(args.seeds)]
              for d in args.dims.split(",") if d}
    suites["attack"] = [({"family": "attack", "image": i, "source": "foolbox"}, s)
                        for i in range(args.images) for s in range(args.attack_seeds)]
    alphas = [float(a) for a in args.alphas.split(",")]
    print(f"{args.mode}, k = {args.history}; median best f (runs), and in brackets the pairs "
          f"(same problem and seed, the same draws) lower than at alpha {alphas[0]:g}")
    print("| suite | method | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |")
    print("|---|---|" + "---|" * len(alphas))
    with ProcessPoolExecutor(args.workers) as pool:
        for suite, runs in suites.items():
            if not runs:
                continue
            for method in args.methods.split(","):
                finals = [np.array(list(pool.map(_run, [
                    (method, spec, seed, a, args.history, args.mode, args.decay)
                    for spec, seed in runs]))) for a in alphas]
                cells = [f"{np.median(f):.3g} ({int((f < finals[0]).sum())} of "
                         f"{int((f != finals[0]).sum())})" for f in finals]
                print(f"| {suite} ({len(runs)}) | {method} | " + " | ".join(cells) + " |",
                      flush=True)


def _run(args):
    """One run at the benchmark's budget (5 x BUDGET for nclsq above d = 100)."""
    method, spec, seed, alpha, history, mode, decay = args
    large = spec["family"] == "nclsq" and spec["d"] > 100
    return run(method, spec, seed, alpha, history, budget=5 * BUDGET if large else BUDGET,
               mode=mode, decay=decay)


if __name__ == "__main__":
    main()
