"""The registered ZO methods and their public scipy-style callables.

Each callable follows scipy's convention for a custom method, so both of these
run the same code and give the same result for the same seed::

    zominimize.minimize(fun, x0, method="zo-adamm", options={"seed": 0})
    scipy.optimize.minimize(fun, x0, method=zominimize.zo_adamm, options={"seed": 0})
"""

from __future__ import annotations

import os
from typing import Callable

from ._driver import solve
from ._options import (DRIVER_OPTIONS, SOLVER_OPTIONS, Option, flag, nonnegative_int, one_of,
                       positive_float, positive_int, unit_interval_closed, unit_interval_open)
from . import learned
from ._registry import MethodSpec, MethodUnavailable, get_method, register
from .errors import WeightsError
from .rules import adamm, sgd, sign_sgd

def _lr(settings: dict) -> float:
    """The lr option, or the method's default step when it is not given."""
    return settings["lr"] if settings["lr"] is not None else settings["step"]


STEP_DOC = ("Default lr: base_step * x_scale * sqrt(q / (q + d)) per coordinate, "
            "base_step = {base_step}.")

ZO_SGD = register(MethodSpec(
    name="zo-sgd",
    summary="ZO-SGD: plain gradient step on the ZO estimate.",
    doc="x <- P(x - lr * g), g the ZO gradient estimate (Nesterov & Spokoiny, 2017; "
        "Ghadimi & Lan, 2013). Default lr: chosen at the first estimate g_0 so that "
        "the first step has RMS length base_step * x_scale * sqrt(q / (q + d)) per "
        "coordinate (lr = that / RMS(g_0)), base_step = {base_step}; fixed afterwards.",
    make_rule=lambda s, parts: sgd(s["lr"], first_step=s["step"]),
    base_step=0.5,
))

ZO_SIGNSGD = register(MethodSpec(
    name="zo-signsgd",
    summary="ZO-signSGD: a step along the sign of the ZO estimate, halved on a stall.",
    doc="x <- P(x - lr * sign(g)) (Liu, Chen, Chen & Hero, ICLR 2019), lr halved each "
        "time the value at the iterate has reached no new low for halve_after iterations "
        "(a fixed-length sign step would oscillate around the optimum). " + STEP_DOC,
    make_rule=lambda s, parts: sign_sgd(_lr(s), s["halve_after"]),
    base_step=0.1,
    options={o.name: o for o in [
        Option("halve_after", 10, nonnegative_int,
               "Iterations without a new lowest value at the iterate after which lr "
               "halves (0: never, the fixed-step ZO-signSGD)."),
    ]},
))

ADAMM_OPTIONS = {o.name: o for o in [
    Option("beta1", 0.9, unit_interval_open, "Decay of the first moment."),
    Option("beta2", 0.999, unit_interval_open, "Decay of the second moment."),
    Option("eps", 1e-8, positive_float, "Added to the root of the second moment."),
]}

ZO_ADAMM = register(MethodSpec(
    name="zo-adamm",
    summary="ZO-AdaMM: Adam moments with the max-corrected second moment.",
    doc="m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  v^ <- max(v^, v);  "
        "x <- P(x - lr * [m / (1 - b1^t)] / (sqrt(v^ / (1 - b2^t)) + eps)) "
        "(Chen, Liu, Xu, Li, Lin, Hong & Cox, NeurIPS 2019; bias corrections as in "
        "torch's Adam with amsgrad=True). " + STEP_DOC,
    make_rule=lambda s, parts: adamm(_lr(s), s["beta1"], s["beta2"], s["eps"]),
    base_step=0.1,
    options=ADAMM_OPTIONS,
))


def _path_or_none(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{name} must be a path to a weights folder or manifest, got {value!r}")
    return os.fspath(value)


LEARNED_OPTIONS = {o.name: o for o in [
    Option("weights", None, _path_or_none,
           "Weights to load: a folder (or its manifest.json) written by "
           "`python -m zominimize.train`. None: the weights shipped in zominimize/pretrained."),
    Option("device", "auto", one_of("auto", "cpu", "cuda"),
           "Where the networks run: 'auto' is CUDA when torch sees a GPU and d >= 10,000 "
           "(below that a GPU's latency per step outweighs the work), else the CPU. "
           "x and the estimate stay float64 on the CPU; the networks run in float32."),
    Option("query_ratio", None, unit_interval_closed,
           "Probability that an iteration queries along the QueryRNN's directions rather "
           "than the plain draws. None: the QueryRNN's own, 1 for the subspace QueryRNN "
           "(it chooses its share itself) and 0.5 for the paper's per-coordinate scales "
           "(the paper's hedge against a bad sampler)."),
    Option("guard", True, flag,
           "Switch to the fallback method from the best point when the run diverges "
           "(the value at the iterate exceeds the start f0 by more than "
           "max(2 (f0 - f_best), abs(f0) / 2)) or stalls (no improvement in guard_patience "
           "iterations, or the ftol test met: the ftol test ends a guarded run only once "
           "the fallback has run a full window); result.fallback and result.fallback_at say "
           "why and when. Once it has switched, each further stall sends the run back to its "
           "best point with half the step. A non-finite step or query scale hands over "
           "whatever this option says, as the learned path cannot serve."),
    Option("guard_patience", 100, positive_int,
           "Iterations without improvement that count as a stall (the count runs on "
           "across the switch)."),
    Option("fallback", None, flag,
           "When the learned method cannot start (torch missing, weights missing, corrupt "
           "or of another architecture): True warns (FallbackWarning) and runs the fallback, "
           "False raises. None: True with the shipped weights, False with weights= given."),
]}


def _learned_loader(weight_set: str):
    """``load(settings)`` of the learned methods: the weights and networks, loaded once;
    a failure falls back or raises as the ``fallback`` option says."""

    def load(settings: dict):
        try:
            return learned.load_parts(weight_set, settings["weights"], settings["device"],
                                      settings["d"])
        except (ImportError, WeightsError) as exc:
            if learned.fallback_allowed(settings):
                raise MethodUnavailable(str(exc)) from None
            raise

    return load


def _learned(name: str, summary: str, doc: str, weight_set: str, update: bool,
             query: bool, ablation_of: str | None = None) -> MethodSpec:
    def update_rule(s, parts):
        return learned.make_update_rule(parts, _lr(s))

    def query_sampler(s, parts):
        return learned.make_query_sampler(parts, _lr(s), s["query_ratio"])

    return register(MethodSpec(
        name=name, summary=summary, doc=doc + " " + STEP_DOC,
        make_rule=update_rule if update else ZO_ADAMM.make_rule,
        make_sampler=query_sampler if query else None,
        base_step=0.1, options=LEARNED_OPTIONS, fallback="zo-adamm",
        load=_learned_loader(weight_set), guarded=True, ablation_of=ablation_of,
        weight_set=weight_set))


L2L_DOC = ("Small LSTMs (Ruan, Xiong, Reddi, Kumar & Hsieh, 'Learning to Learn by "
           "Zeroth-Order Oracle', ICLR 2020) trained by zominimize on synthetic task "
           "families (python -m zominimize.train). UpdateRNN: x <- P(x + lr * UpdateRNN("
           "g / rms(g), m / rms(g))), the estimate and its momentum normalised by their "
           "running RMS so the same weights serve any scale of f and x, the step scaled "
           "by a learned controller: exp(level + shape_i), a per-run level and a "
           "per-coordinate shape adapted during the run from how each fresh estimate "
           "agrees with the last step, so that an lr far from the right one is corrected. "
           "QueryRNN: in a share of the iterations that it sets from the run's recent "
           "estimates, 2 of the q directions run along the running mean of the estimates and "
           "the last estimate (the gradient's part there measured exactly) and the others in "
           "their orthogonal complement, so the estimate stays unbiased; consulted with "
           "probability query_ratio. When it cannot run it warns "
           "(FallbackWarning) and runs zo-adamm with the same options; a guard hands over "
           "to zo-adamm from the best point if the run diverges or stalls, and halves "
           "zo-adamm's step from the best point at each stall after that.")

L2L_ZO = _learned("l2l-zo", "Learned ZO optimizer: UpdateRNN steps, QueryRNN queries.",
                  L2L_DOC, "l2l-zo", update=True, query=True)
L2L_ZO_UPDATE = _learned(
    "l2l-zo-update", "Ablation of l2l-zo: UpdateRNN steps, standard Gaussian queries.",
    "The UpdateRNN of l2l-zo alone; queries are N(0, I).", "l2l-zo", update=True, query=False,
    ablation_of="l2l-zo")
L2L_ZO_QUERY = _learned(
    "l2l-zo-query", "Ablation of l2l-zo: QueryRNN queries, ZO-AdaMM steps.",
    "The QueryRNN of l2l-zo alone; steps are zo-adamm's (beta1=0.9, beta2=0.999).",
    "l2l-zo", update=False, query=True, ablation_of="l2l-zo")
L2L_ZO_PAPER = _learned(
    "l2l-zo-paper", "Ablation of l2l-zo's features: the paper's raw inputs and absolute steps.",
    "Both nets, trained like l2l-zo but reading the raw estimate and returning an absolute "
    "step, as in the paper (weight set 'l2l-zo-paper').", "l2l-zo-paper", update=True,
    query=True, ablation_of="l2l-zo")


def _public_callable(spec: MethodSpec) -> Callable:
    def method(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
               constraints=(), callback=None, **options):
        return solve(spec.name, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                     bounds=bounds, constraints=constraints, callback=callback,
                     options=options)

    method.__name__ = method.__qualname__ = spec.name.replace("-", "_")
    method.__doc__ = _callable_doc(spec, method.__name__)
    return method


def _option_groups(spec: MethodSpec) -> list[tuple[str, dict]]:
    """The option tables of a method, titled: its own, its fallback's, the shared ones."""
    groups = [("Method options", spec.options)]
    if spec.fallback:
        groups.append((f"Options of the fallback {spec.fallback}",
                       get_method(spec.fallback).options))
    groups += [("ZO options (shared by every ZO method)", SOLVER_OPTIONS),
               ("Run options (minimize only, not ZOOptimizer)", DRIVER_OPTIONS)]
    return [(title, table) for title, table in groups if table]


def method_doc(name: str) -> str:
    """The documentation of one method, as ``show_options`` prints it: its update and all
    of its options, grouped."""
    spec = get_method(name)
    lines = [f"{spec.name}: {spec.summary}", "", spec.doc.format(base_step=spec.base_step), ""]
    for title, table in _option_groups(spec):
        lines += [title, "-" * len(title)]
        for opt in table.values():
            lines += [f"{opt.name} : default {opt.default!r}", f"    {opt.doc}"]
        lines.append("")
    return "\n".join(lines)


def _callable_doc(spec: MethodSpec, name: str) -> str:
    """The numpydoc docstring of a method's public callable (the same facts as
    ``method_doc``, with the options under Other Parameters)."""
    groups = _option_groups(spec)
    options = [line for _, table in groups for opt in table.values()
               for line in (f"{opt.name} : default {opt.default!r}", f"    {opt.doc}")]
    grouping = "\n".join(f"{title}: {', '.join(table)}." for title, table in groups)
    return f"""{spec.summary}

{spec.doc.format(base_step=spec.base_step)}

Parameters
----------
fun : callable
    ``fun(x, *args) -> float``: the objective, of which only values are used.
x0 : array_like of shape (d,)
    The starting point; never modified.
args : tuple, optional
    Extra arguments of ``fun``.
jac, hess, hessp, constraints : optional
    Ignored, with a RuntimeWarning (``jac=True``: ``fun`` returns (f, gradient) and
    the gradient is dropped).
bounds : scipy.optimize.Bounds or sequence of (min, max), optional
    Box constraints, honoured by every query and iterate.
callback : callable, optional
    As for :func:`zominimize.minimize`.
**options
    The options below; ``zominimize.show_options("{spec.name}")`` prints them.

Returns
-------
scipy.optimize.OptimizeResult
    As for :func:`zominimize.minimize`.

Other Parameters
----------------
""" + "\n".join(options) + f"""

Notes
-----
{grouping}

Examples
--------
>>> import numpy as np, scipy.optimize, zominimize
>>> res = scipy.optimize.minimize(lambda x: float(x @ x), np.ones(10),
...                               method=zominimize.{name},
...                               options={{"seed": 0, "maxiter": 200}})
>>> bool(res.fun < 10.0)
True
"""


zo_sgd = _public_callable(ZO_SGD)
zo_signsgd = _public_callable(ZO_SIGNSGD)
zo_adamm = _public_callable(ZO_ADAMM)
l2l_zo = _public_callable(L2L_ZO)
l2l_zo_update = _public_callable(L2L_ZO_UPDATE)
l2l_zo_query = _public_callable(L2L_ZO_QUERY)
l2l_zo_paper = _public_callable(L2L_ZO_PAPER)
