"""The registered ZO methods and their public scipy-style callables.

Each callable follows scipy's convention for a custom method, so both of these
run the same code and give the same result for the same seed::

    zominimize.minimize(fun, x0, method="zo-adamm", options={"seed": 0})
    scipy.optimize.minimize(fun, x0, method=zominimize.zo_adamm, options={"seed": 0})
"""

from __future__ import annotations

from typing import Callable

from ._driver import solve
from ._options import DRIVER_OPTIONS, SOLVER_OPTIONS, Option, positive_float, unit_interval_open
from ._registry import MethodSpec, get_method, register
from .learned import unavailable_reason
from .rules import adamm, sgd, sign_sgd

STEP_DOC = ("Default lr: base_step * x_scale * sqrt(q / (q + d)) per coordinate, "
            "base_step = {base_step}.")

ZO_SGD = register(MethodSpec(
    name="zo-sgd",
    summary="ZO-SGD: plain gradient step on the ZO estimate.",
    doc="x <- P(x - lr * g), g the ZO gradient estimate (Nesterov & Spokoiny, 2017; "
        "Ghadimi & Lan, 2013). Default lr: chosen at the first estimate g_0 so that "
        "the first step has RMS length base_step * x_scale * sqrt(q / (q + d)) per "
        "coordinate (lr = that / RMS(g_0)), base_step = {base_step}; fixed afterwards.",
    make_rule=lambda s: sgd(s["lr"], first_step=s["step"]),
    base_step=0.5,
))

ZO_SIGNSGD = register(MethodSpec(
    name="zo-signsgd",
    summary="ZO-signSGD: a fixed-length step along the sign of the ZO estimate.",
    doc="x <- P(x - lr * sign(g)) (Liu, Chen, Chen & Hero, ICLR 2019). "
        + STEP_DOC,
    make_rule=lambda s: sign_sgd(s["lr"] if s["lr"] is not None else s["step"]),
    base_step=0.1,
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
    make_rule=lambda s: adamm(s["lr"] if s["lr"] is not None else s["step"],
                              s["beta1"], s["beta2"], s["eps"]),
    base_step=0.1,
    options=ADAMM_OPTIONS,
))

L2L_ZO = register(MethodSpec(
    name="l2l-zo",
    summary="Learned ZO optimizer (UpdateRNN + QueryRNN, Ruan et al., ICLR 2020).",
    doc="A coordinate-wise LSTM proposes each step from the ZO estimate and another "
        "learns the query distribution (Ruan, Xiong, Reddi, Kumar & Hsieh, 'Learning "
        "to Learn by Zeroth-Order Oracle', ICLR 2020). When it cannot run (torch "
        "missing, no pretrained weights) it warns once (FallbackWarning) and runs "
        "zo-adamm with the same options; result.method and result.fallback say so.",
    make_rule=None,
    fallback="zo-adamm",
    unavailable=unavailable_reason,
))


def _public_callable(spec: MethodSpec) -> Callable:
    def method(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
               constraints=(), callback=None, **options):
        return solve(spec.name, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                     bounds=bounds, constraints=constraints, callback=callback,
                     options=options)

    method.__name__ = method.__qualname__ = spec.name.replace("-", "_")
    method.__doc__ = method_doc(spec.name) + f"""
Examples
--------
>>> import numpy as np, scipy.optimize, zominimize
>>> res = scipy.optimize.minimize(lambda x: float(x @ x), np.ones(10),
...                               method=zominimize.{method.__name__},
...                               options={{"seed": 0, "maxiter": 200}})
>>> bool(res.fun < 10.0)
True
"""
    return method


def method_doc(name: str) -> str:
    """The documentation of one method: its update and all of its options."""
    spec = get_method(name)
    lines = [f"{spec.name}: {spec.summary}", "", spec.doc.format(base_step=spec.base_step), ""]
    sections = [("Method options", spec.options),
                ("ZO options (shared by every ZO method)", SOLVER_OPTIONS),
                ("Run options", DRIVER_OPTIONS)]
    if spec.fallback:
        sections.insert(1, (f"Options of the fallback {spec.fallback}",
                            get_method(spec.fallback).options))
    for title, table in sections:
        if not table:
            continue
        lines += [title, "-" * len(title)]
        for opt in table.values():
            lines += [f"{opt.name} : default {opt.default!r}", f"    {opt.doc}"]
        lines.append("")
    return "\n".join(lines)


zo_sgd = _public_callable(ZO_SGD)
zo_signsgd = _public_callable(ZO_SIGNSGD)
zo_adamm = _public_callable(ZO_ADAMM)
l2l_zo = _public_callable(L2L_ZO)
