"""Measures of a benchmark run, computed from its run records alone.

:func:`load_suites` turns the ``results`` dict of ``python -m benchmarks`` into one
:class:`SuiteRuns` per suite, its normalised records (:func:`normalise_record`)
grouped by solver and variant (:class:`Group`); the other functions compute what
the tables and plots show: percentiles with inf for runs that found nothing,
evaluations to reach a target, best-value curves, COCO's ERT and runtimes, and which
groups to show. No solver or problem is imported, and records that have been
through JSON (string dict keys, None for missing values) are accepted as well as
the in-memory ones. The few number formats that the tables and the plots share are
here too, so that :mod:`benchmarks.plots` needs nothing from :mod:`benchmarks.report`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

#: Most rows in the README's headline table (its caption names those left out).
MAX_LINES = 14


# --------------------------------------------------------------------------- records

@dataclass
class Group:
    """The runs of one solver in one variant ("default" or "tuned") on one suite.

    Attributes
    ----------
    solver, variant : str
        The solver's name and the variant of its options.
    runs : list of dict
        Normalised records (see :func:`normalise_record`).
    zo : bool
        Whether the solver is a zominimize method (it reports ``method_ran``).
    lr : float or None
        The lr of a tuned variant.
    method_ran : str or None
        The method that actually ran, when the solver reported one.
    """

    solver: str
    variant: str
    runs: list[dict] = field(default_factory=list)
    zo: bool = False
    lr: float | None = None
    method_ran: str | None = None

    @property
    def label(self) -> str:
        """Row label, e.g. ``zo-adamm (tuned lr 0.041)`` or ``l2l-zo → zo-adamm (fallback)``."""
        name = self.solver
        if self.method_ran and self.method_ran != self.solver:
            name += f" → {self.method_ran} (fallback)"
        return name + self._variant_suffix(with_lr=True)

    @property
    def short_label(self) -> str:
        """Column label: the solver and, for a tuned variant, ``(tuned)``."""
        return self.solver + self._variant_suffix(with_lr=False)

    def _variant_suffix(self, with_lr: bool) -> str:
        if self.variant == "default":
            return ""
        if self.variant == "tuned" and with_lr and self.lr is not None:
            return f" (tuned lr {self.lr:.2g})"
        return f" ({self.variant})"

    @property
    def failed(self) -> int:
        """Number of runs that stopped on an error."""
        return sum(r["error"] is not None for r in self.runs)


@dataclass
class SuiteRuns:
    """One suite of a results dict, its runs grouped by solver and variant.

    Attributes
    ----------
    key, title, family : str
        The suite's key (``nclsq-d100``), display title (``nclsq d=100``) and family.
    budget, dim : int
        Largest evaluation budget and dimension among the runs.
    targets : list of float
        The target levels of the first run.
    same_targets : bool
        Whether every run has the same target levels (so they can head columns).
    groups : list of Group
        In the order the solvers first appear in the records.
    tuned_lr : dict
        The suite's ``tuned_lr`` entry: ``{method: {"lr", "score", "grid"}}``.
    """

    key: str
    title: str
    family: str
    budget: int
    dim: int
    targets: list[float]
    same_targets: bool
    groups: list[Group]
    tuned_lr: dict

    @property
    def is_bbob(self) -> bool:
        return self.family == "bbob" or self.key.startswith("bbob")

    @property
    def runs(self) -> list[dict]:
        return [r for g in self.groups for r in g.runs]


def number(value, missing: float = math.nan) -> float:
    """``value`` as a float; ``missing`` for None, a non-number or NaN."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return missing
    return missing if math.isnan(x) else x


def normalise_record(record: dict) -> dict:
    """A copy of one run record with every field present and in a fixed form.

    Parameters
    ----------
    record : dict
        A record as made by :func:`benchmarks.runner.execute`, possibly through JSON.

    Returns
    -------
    dict
        The record's fields plus: ``final`` a float (inf when the run found nothing
        finite), ``reached`` floats (inf for an unreached target; computed from the
        trace if absent), ``trace_nfev`` and ``trace_best`` arrays, ``facts`` and
        ``assess`` dicts, ``error`` a str or None, ``seconds`` a float, ``nfev`` an
        int and, for BBOB, ``fid`` and ``instance``.
    """
    trace = record.get("trace") or {}
    nfev = np.asarray(trace.get("nfev") or [], dtype=float)
    best = np.asarray(trace.get("best") or [], dtype=float)
    n = min(len(nfev), len(best))
    nfev, best = nfev[:n], best[:n]
    targets = [number(t) for t in record.get("targets") or []]
    reached = record.get("reached")
    if reached is None:
        reached = [next((e for e, b in zip(nfev, best) if b <= t), None) for t in targets]
    problem = record.get("problem") or {}
    fid = problem.get("fid")
    if fid is None:
        match = re.search(r"-f(\d+)", str(record.get("name", "")))
        fid = int(match.group(1)) if match else None
    error = record.get("error")
    return {
        **record,
        "solver": str(record.get("solver", "?")),
        "variant": record.get("variant") or "default",
        "name": str(record.get("name") or problem or "?"),
        "targets": targets,
        "reached": [number(r, math.inf) for r in reached],
        "final": number(record.get("final"), math.inf),
        "f_opt": None if record.get("f_opt") is None else number(record["f_opt"]),
        "trace_nfev": nfev,
        "trace_best": best,
        "nfev": int(number(record.get("nfev"), nfev[-1] if n else 0)),
        "seconds": number(record.get("seconds")),
        "error": None if error is None else str(error),
        "facts": record.get("facts") or {},
        "assess": record.get("assess") or {},
        "options": record.get("options") or {},
        "fid": None if fid is None else int(fid),
        "instance": problem.get("instance"),
    }


def group_runs(records: list[dict], tuned_lr: dict) -> list[Group]:
    """Gather normalised records into one :class:`Group` per (solver, variant).

    A solver counts as a zominimize method when one of its runs reported
    ``method_ran`` or when it has a tuned lr; the method shown is the one most
    runs reported.
    """
    groups: dict[tuple[str, str], Group] = {}
    for r in records:
        key = (r["solver"], r["variant"])
        if key not in groups:
            groups[key] = Group(r["solver"], r["variant"])
        groups[key].runs.append(r)
    zo_solvers = set(tuned_lr) | {r["solver"] for r in records if "method_ran" in r["facts"]}
    for g in groups.values():
        g.zo = g.solver in zo_solvers
        ran = [r["facts"]["method_ran"] for r in g.runs if r["facts"].get("method_ran")]
        g.method_ran = max(set(ran), key=ran.count) if ran else None
        lrs = [r["options"]["lr"] for r in g.runs if "lr" in r["options"]]
        if lrs:
            g.lr = number(lrs[0])
        elif g.variant == "tuned" and g.solver in tuned_lr:
            g.lr = number(tuned_lr[g.solver].get("lr"))
    return list(groups.values())


def load_suites(results: dict) -> list[SuiteRuns]:
    """Every suite of ``results`` with at least one record, its runs normalised and grouped."""
    suites = []
    for key, data in (results.get("suites") or {}).items():
        records = [normalise_record(r) for r in (data or {}).get("records") or []]
        if not records:
            continue
        tuned_lr = (data or {}).get("tuned_lr") or {}
        first = records[0]
        targets = first["targets"]
        same = all(len(r["targets"]) == len(targets)
                   and np.allclose(r["targets"], targets, rtol=1e-9, atol=0) for r in records)
        suites.append(SuiteRuns(
            key=str(key), title=str(first.get("suite") or key),
            family=str(first.get("family") or key.split("-")[0]),
            budget=int(max(number(r.get("budget"), r["nfev"]) for r in records)),
            dim=int(max(number(r.get("dim"), 0) for r in records)),
            targets=targets, same_targets=same,
            groups=group_runs(records, tuned_lr), tuned_lr=tuned_lr))
    return suites


# --------------------------------------------------------------------------- numbers

def quantiles(values, qs) -> np.ndarray:
    """Percentiles ``qs`` (0-100) of ``values``, where inf counts as larger than any number.

    Linear interpolation as ``np.percentile``, except that a percentile falling exactly
    on a value is that value, and one between a number and inf is inf (numpy gives
    NaN for ``0 * inf``). A 1-D ``values`` drops its NaN entries (none left gives NaN);
    a 2-D one (no NaN) gives the percentiles of each column, shape ``qs + (columns,)``.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim <= 1:
        v = v.ravel()
        v = v[~np.isnan(v)]
    q = np.atleast_1d(np.asarray(qs, dtype=float))
    if v.shape[0] == 0:
        return np.full(np.shape(qs) + v.shape[1:], np.nan)
    v = np.sort(v, axis=0)
    pos = q / 100 * (v.shape[0] - 1)
    lo, hi = np.floor(pos).astype(int), np.ceil(pos).astype(int)
    frac = (pos - lo).reshape((-1,) + (1,) * (v.ndim - 1))
    with np.errstate(invalid="ignore"):
        out = np.where(frac == 0, v[lo], v[lo] + frac * (v[hi] - v[lo]))
    out[np.isnan(out)] = np.inf
    return out.reshape(np.shape(qs) + v.shape[1:])


# --------------------------------------------------------------------------- statistics

def reached_stats(runs: list[dict], index: int) -> tuple[float, int, int]:
    """Median evaluations to reach target ``index`` (inf if unreached, counted as inf),
    the number of runs that reached it, and the number of runs."""
    values = [r["reached"][index] if index < len(r["reached"]) else math.inf for r in runs]
    median = float(quantiles(values, 50)) if values else math.nan
    return median, int(np.isfinite(values).sum()), len(values)


def final_stats(runs: list[dict]) -> np.ndarray:
    """Median, 25th and 75th percentiles of the final best values (inf for nothing finite)."""
    return quantiles([r["final"] for r in runs], [50, 25, 75])


def best_at(run: dict, grid: np.ndarray) -> np.ndarray:
    """The run's best value after each number of evaluations in ``grid``, its trace
    read as a step function; inf before its first finite value (or throughout, for an
    empty trace), as a run that has found nothing yet."""
    index = np.searchsorted(run["trace_nfev"], grid, side="right") - 1
    best = np.append(run["trace_best"], np.inf)
    return best[index]


def curve_band(runs: list[dict], grid: np.ndarray) -> np.ndarray:
    """Median, 25th and 75th percentile across runs of the best value on ``grid``,
    shape (3, len(grid)); NaN where the percentile is a run that has found nothing."""
    values = np.array([best_at(r, grid) for r in runs]).reshape(len(runs), len(grid))
    band = quantiles(values, [50, 25, 75])
    band[np.isinf(band)] = np.nan
    return band


def bbob_precisions(suite: SuiteRuns) -> list[float]:
    """The target precisions (f - f_opt) of a BBOB suite, rounded to powers of ten."""
    f_opt = next((r["f_opt"] for r in suite.runs if r["f_opt"] is not None), 0.0)
    out = []
    for t in suite.targets:
        p = t - f_opt
        out.append(10.0 ** round(math.log10(p)) if p > 0 else p)
    return out


def ert_by_function(runs: list[dict], index: int) -> dict[int, float]:
    """COCO's expected running time per function for target ``index``.

    ERT = evaluations over all the function's runs (``nfev`` of the runs that did not
    reach the target, ``reached`` of those that did) / number of runs that reached
    it; inf when none did.
    """
    spent: dict[int, float] = {}
    hits: dict[int, int] = {}
    for r in runs:
        f = r["fid"] if r["fid"] is not None else -1
        t = r["reached"][index] if index < len(r["reached"]) else math.inf
        spent[f] = spent.get(f, 0.0) + (t if np.isfinite(t) else r["nfev"])
        hits[f] = hits.get(f, 0) + int(np.isfinite(t))
    return {f: spent[f] / hits[f] if hits[f] else math.inf for f in sorted(spent)}


def runtimes(runs: list[dict]) -> np.ndarray:
    """Evaluations to reach each (run, target) pair, inf where not reached (flat)."""
    return np.array([t for r in runs for t in r["reached"]], dtype=float)


def fraction_solved(runs: list[dict]) -> float:
    times = runtimes(runs)
    return float(np.isfinite(times).mean()) if times.size else 0.0


def select_groups(groups: list[Group], score, limit: int = MAX_LINES) -> list[Group]:
    """At most ``limit`` groups: every zominimize group first, then the peers with the
    lowest ``score(group)``; the original order is kept."""
    zo = [g for g in groups if g.zo][:limit]
    peers = sorted((g for g in groups if not g.zo), key=score)[:max(0, limit - len(zo))]
    keep = {id(g) for g in zo + peers}
    return [g for g in groups if id(g) in keep]


def median_final(group: Group) -> float:
    return float(final_stats(group.runs)[0])


def legend_labels(groups: list[Group]) -> dict[int, str]:
    """Legend text per group (by ``id``): its label, and ``= <label>`` when its runs
    are identical to those of an earlier group (their lines would hide each other)."""
    seen: dict[tuple, str] = {}
    out = {}
    for g in groups:
        key = tuple(sorted((str(r["name"]), str(r.get("seed")), r["final"], len(r["trace_best"]))
                           for r in g.runs))
        out[id(g)] = g.label if key not in seen else f"{g.label} (= {seen[key]})"
        seen.setdefault(key, g.label)
    return out


# --------------------------------------------------------------------------- shared formats

def fmt_loss(x: float) -> str:
    """A loss to 3 significant digits; ``—`` for NaN, ``fail`` for inf (nothing finite)."""
    if np.isnan(x):
        return "—"
    if np.isinf(x):
        return "fail"
    return f"{x:.3g}"


def fmt_power(p: float) -> str:
    """A target precision as a power of ten: ``1e2``, ``1e-8``."""
    return f"1e{round(math.log10(p))}" if p > 0 else f"{p:g}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
