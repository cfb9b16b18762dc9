"""The report of a benchmark run: markdown tables and PNG plots.

:func:`write_report` turns the ``results`` dict built by ``python -m benchmarks``
(run records: see :mod:`benchmarks.runner`; speed records: see
:func:`benchmarks.speed.run`) into ``report.md`` and PNG plots in one folder, and
:func:`headline` gives a short table for the README.

Sections of the report:

* header and "How to read";
* the learned optimizer's goals (see :mod:`benchmarks.goals`): met or missed;
* speed: ms per iteration against the floor, peak memory, workers, goals;
* each non-BBOB suite (nclsq, attack): queries to reach each target, final best
  value, wall time (attack: success rate and distortion), errors, and a plot of
  the best value against evaluations;
* each BBOB suite: COCO-style fractions of targets reached, aggregated ERT, the
  final precision per function, and the runtime ECDF;
* the lr tuning grids.

Everything is computed from the records alone (no solver or problem is imported),
and records JSON has been through (string dict keys, None for missing values)
are accepted as well as the in-memory ones.

The measures behind the tables and plots are in :mod:`benchmarks.measures`, the
plots in :mod:`benchmarks.plots`; this module formats the markdown.
``python -m benchmarks.report FOLDER [--out OUT]`` writes them again from the
``records.json`` that a run left in FOLDER (:func:`main`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from benchmarks import goals
from benchmarks.measures import (Group, SuiteRuns, fraction_solved, median_final, number,
                                 plural, bbob_precisions, ert_by_function, final_stats,
                                 fmt_loss, fmt_power, load_suites, quantiles, reached_stats,
                                 select_groups)
from benchmarks.plots import draw_plot, plot_ecdf, plot_suite, solver_styles

#: Target precisions (f - f_opt) at which BBOB's aggregated ERT is reported.
ERT_PRECISIONS = (1e1, 1e-1, 1e-3)


# --------------------------------------------------------------------------- formats

def fmt_evals(n: float) -> str:
    """Evaluations with thousands separators (``1,260``); ``—`` for inf or NaN."""
    if not np.isfinite(n):
        return "—"
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def fmt_precision(x: float) -> str:
    """f - f_opt in COCO's style (``1.2e-03``); ``0`` when reached exactly."""
    if np.isnan(x):
        return "—"
    if np.isinf(x):
        return "fail"
    return "0" if x <= 0 else f"{x:.1e}"


def fmt_seconds(s: float) -> str:
    """Wall time: ``42 s``, or with minutes ``312 s (5.2 min)``."""
    if not np.isfinite(s):
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s:.0f} s ({s / 60:.1f} min)"


def fmt_multiplier(m: float) -> str:
    """A grid multiplier: ``×3``, ``×1``, ``×1/9``."""
    return f"×{m:.3g}" if m >= 1 - 1e-9 else f"×1/{1 / m:.3g}"


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column (``l`` or ``r``), default
    left for the first column and right for the others."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule] + rows
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |"
                     for line in lines)


# --------------------------------------------------------------------------- sections

def header_section(results: dict, suites: list[SuiteRuns]) -> str:
    """Title, what ran where and when, and the "How to read" notes."""
    facts = [("mode", results.get("mode")), ("command", results.get("command")),
             ("machine", results.get("machine")), ("cpus", results.get("cpus")),
             ("python", results.get("python")), ("date", results.get("started"))]
    lines = [f"- {name}: `{value}`" if name == "command" else f"- {name}: {value}"
             for name, value in facts if value is not None]
    if results.get("seconds") is not None:
        lines.append(f"- total time: {fmt_seconds(number(results['seconds']))}")
    title = "# zominimize benchmark report" + (f" ({results['mode']})"
                                               if results.get("mode") else "")
    blocks = [title] + (["\n".join(lines)] if lines else [])
    return "\n\n".join(blocks + ["## How to read", how_to_read(suites)])


def how_to_read(suites: list[SuiteRuns]) -> str:
    """Bullets that explain budgets, best values, tuning, peers and failures."""
    budgets = ", ".join(f"{s.title} {fmt_evals(s.budget)}" for s in suites)
    items = [
        "Budgets count function evaluations, the same for every solver: a zominimize "
        "iteration with q = 20 directions costs 21 evaluations"
        + (f" (budgets: {budgets})." if budgets else "."),
        "The \"best value\" of a run after n evaluations is the lowest value evaluated so far. "
        "Tables give medians over runs, with the 25th–75th percentiles in brackets. "
        "\"Queries to reach\" a target counts a run that never reached it as infinite (— when "
        "the median run did not reach it); the fraction of runs that did follows in brackets.",
    ]
    tuning = [s for s in suites if s.tuned_lr]
    if tuning:
        multipliers = sorted({round(m, 6) for s in tuning for v in s.tuned_lr.values()
                              for m in grid_multipliers(v.get("grid") or {}).values()})
        chosen = "; ".join(f"{s.title}: " + ", ".join(_chosen_text(m, v)
                                                    for m, v in s.tuned_lr.items())
                           for s in tuning)
        items.append(
            "\"Tuned\" rows run with the lr chosen on separate tuning instances, never the ones "
            "in the tables: a grid multiplies each method's default lr by "
            + ", ".join(fmt_multiplier(m) for m in multipliers)
            + f" and keeps the best mean log10 final gap. Chosen lr: {chosen}.")
    deterministic = sorted({g.solver for s in suites for g in s.groups
                            if not g.zo and _seeds(g) == 1 and _suite_seeds(s) > 1})
    items += [
        "Deterministic peers" + (f" ({', '.join(deterministic)})" if deterministic else "")
        + " run once per problem, the others once per problem and seed. Peers that stop on "
        "their own convergence test are charged only what they spent (no restarts).",
        "A solver that failed is shown as failing: its runs count as failed in \"runs\", its "
        "errors are listed under the table, and a run that found no finite value has final "
        "value \"fail\".",
    ]
    return "\n".join(f"- {item}" for item in items)


def _chosen_text(method: str, tuned: dict) -> str:
    """``zo-adamm 0.041 (×1)``: a method's chosen lr and its grid multiplier."""
    m = _chosen_multiplier(tuned)
    return f"{method} {number(tuned.get('lr')):.2g}" + (f" ({fmt_multiplier(m)})" if m else "")


def _seeds(group: Group) -> int:
    return len({r.get("seed") for r in group.runs})


def _suite_seeds(suite: SuiteRuns) -> int:
    return len({r.get("seed") for r in suite.runs})


def grid_multipliers(grid: dict) -> dict[float, float]:
    """Each lr of a tuning grid and its multiplier of the default lr.

    The grid is symmetric on a log scale around the default lr, so the default is the
    geometric mean of the grid's lrs. Keys may be strings (after JSON).
    """
    lrs = sorted(number(lr) for lr in grid)
    lrs = [lr for lr in lrs if lr > 0]
    if not lrs:
        return {}
    centre = math.exp(sum(math.log(lr) for lr in lrs) / len(lrs))
    return {lr: lr / centre for lr in lrs}


def _chosen_multiplier(tuned: dict) -> float | None:
    multipliers = grid_multipliers(tuned.get("grid") or {})
    lr = number(tuned.get("lr"))
    return next((m for g, m in multipliers.items() if math.isclose(g, lr, rel_tol=1e-9)), None)


def _by_int(mapping: dict | None) -> dict:
    """A dict with int keys where the keys are numbers (JSON makes them strings)."""
    out = {}
    for k, v in (mapping or {}).items():
        try:
            out[int(k)] = v
        except (TypeError, ValueError):
            out[k] = v
    return out


def goals_section(suites: list[SuiteRuns], speed: dict | None = None) -> str:
    """The learned optimizer's goals that this run can check, each met or missed."""
    rows = goals.evaluate(suites, speed)
    if not rows:
        return ""
    table = markdown_table(
        ["goal", "suite", "figure", "", "how"],
        [[str(r["goal"]), r["suite"], r["figure"], "met" if r["met"] else "**MISSED**",
          r["detail"]] for r in rows], "lllll")
    return "\n".join(["## Learned optimizer goals", "",
                      "l2l-zo with default options on problems it never saw, medians over the "
                      "runs: (1) level: at or below the best tuned classic ZO method on nclsq "
                      "and the attack (figure: l2l-zo's median and its ratio to that method's) "
                      "and below sep-CMA-ES on the attack; on BBOB the median over the "
                      "functions of l2l-zo / the best tuned classic at most 1; (2) it adapts: "
                      f"with lr 10x too small or too large, within {goals.ADAPT_RATIO}x of its "
                      "default result (figure: the worse ratio); (3) without the query RNN "
                      "(l2l-zo-update) measurably worse (figure: its median over l2l-zo's); "
                      "(4) median never above zo-adamm's 75th percentile, and on BBOB no worse "
                      f"than zo-adamm's on at least {goals.BBOB_WINS} of 24 functions; (5) "
                      f"overhead per iteration and peak memory at most {goals.COST_RATIO}x "
                      "zo-adamm's at d = 10^6.", "", table])


def speed_section(speed: dict) -> str:
    """The speed suite: overhead table, peak memory, workers and the goals."""
    q = speed.get("q", "?")
    floor = _by_int(speed.get("floor_s"))
    overhead = {m: _by_int(v) for m, v in (speed.get("overhead_s") or {}).items()}
    dims = [int(d) for d in speed.get("dims") or sorted(floor)]
    methods = list(overhead)
    lines = ["## Speed", "",
             f"Optimizer overhead, q = {q}, fun = x[0]: ms per iteration, and in brackets the "
             "ratio to the floor, the time numpy takes to draw the q x d Gaussian directions.",
             ""]
    rows = []
    for d in dims:
        base = number(floor.get(d))
        cells = []
        for m in methods:
            t = number(overhead[m].get(d))
            cells.append("—" if np.isnan(t) else
                         f"{t * 1e3:.3g} ({t / base:.2f}x)" if base > 0 else f"{t * 1e3:.3g}")
        rows.append([f"{d:,}", "—" if np.isnan(base) else f"{base * 1e3:.3g}"] + cells)
    lines.append(markdown_table(["d", "floor (ms)"] + methods, rows))
    memory = memory_table(speed)
    if memory:
        lines += ["", "Peak resident memory of a fresh process running the optimization, "
                      "against the bound (q + 10) d 8 bytes + 300 MB.", "", memory]
    gpu = [f"{method} at d = {d:,}: {number(peak) / 1e6:.0f} MB"
           for method, peaks in (speed.get("gpu_peak_bytes") or {}).items()
           for d, peak in sorted(_by_int(peaks).items())]
    if gpu:
        lines += ["", "Peak GPU memory allocated by torch: " + "; ".join(gpu) + "."]
    workers = speed.get("workers")
    if workers:
        lines += ["", "workers=2 on a 20 ms objective: serial "
                      f"{number(workers.get('serial_s')):.2f} s, workers=2 "
                      f"{number(workers.get('workers2_s')):.2f} s "
                      f"({fmt_evals(number(workers.get('nfev')))} evaluations): "
                      f"{number(workers.get('speedup')):.2f}x speed-up."]
    goals = speed.get("goals") or []
    if goals:
        rows = [[str(g.get("goal", "?")), f"{number(g.get('value')):.3g}", str(g.get("limit", "")),
                 "met" if g.get("met") else "**MISSED**"] for g in goals]
        lines += ["", markdown_table(["goal", "value", "limit", ""], rows, "lrrl")]
    return "\n".join(lines)


def memory_table(speed: dict) -> str:
    """Peak memory per method and dimension where measured, against the bound ('' if none)."""
    bound = _by_int(speed.get("memory_bound_bytes"))
    rows = []
    for method, peaks in (speed.get("peak_bytes") or {}).items():
        for d, peak in sorted(_by_int(peaks).items()):
            b = number(bound.get(d))
            verdict = "" if np.isnan(b) else ("within" if number(peak) < b else "**OVER**")
            rows.append([method, f"{d:,}", f"{number(peak) / 1e6:.0f}",
                         "—" if np.isnan(b) else f"{b / 1e6:.0f}", verdict])
    if not rows:
        return ""
    return markdown_table(["method", "d", "peak (MB)", "bound (MB)", ""], rows, "lrrrl")


def suite_table(suite: SuiteRuns, groups: list[Group] | None = None,
                targets: list[int] | None = None, seconds: bool = True) -> str:
    """The table of a non-BBOB suite: one row per group, sorted by median final value.

    Columns: runs; per target (all, or the indices ``targets``), median queries to
    reach it (and the fraction of runs that did); final best value, median
    [25th–75th]; median wall seconds (if ``seconds``); for the attack, success rate
    and mean L1 distortion of the successful runs.
    """
    groups = suite.groups if groups is None else groups
    targets = list(range(len(suite.targets))) if targets is None else targets
    attack = suite.family == "attack"
    header = ["solver", "runs"]
    header += [f"queries to reach {fmt_loss(suite.targets[i])}" if suite.same_targets
               else f"queries to target {i + 1}" for i in targets]
    header.append("final best value")
    if seconds:
        header.append("seconds")
    if attack:
        header += ["success", "L1 distortion"]
    rows = []
    for g in sorted(groups, key=lambda g: (median_final(g), g.label)):
        n = len(g.runs)
        cells = [g.label, f"{n} ({g.failed} failed)" if g.failed else str(n)]
        for i in targets:
            median, hits, n = reached_stats(g.runs, i)
            cells.append(f"{fmt_evals(median)} ({hits}/{n})")
        med, lo, hi = final_stats(g.runs)
        cells.append(fmt_loss(med) if n == 1 or not np.isfinite(med) else
                     f"{fmt_loss(med)} [{fmt_loss(lo)}–{fmt_loss(hi)}]")
        if seconds:
            cells.append(fmt_loss(float(np.nanmedian([r["seconds"] for r in g.runs]))
                         if any(np.isfinite(r["seconds"]) for r in g.runs) else math.nan))
        if attack:
            cells += attack_cells(g.runs)
        rows.append(cells)
    return markdown_table(header, rows)


def attack_cells(runs: list[dict]) -> list[str]:
    """Success rate (``k/n``) and mean L1 distortion of the successful runs."""
    wins = [r for r in runs if r["assess"].get("success")]
    l1 = [number(r["assess"].get("distortion_l1")) for r in wins]
    l1 = [x for x in l1 if np.isfinite(x)]
    return [f"{len(wins)}/{len(runs)}", f"{np.mean(l1):.3g}" if l1 else "—"]


def error_list(groups: list[Group]) -> str:
    """Bullets of the errors of ``groups``: solver, problem, message and count ('' if none)."""
    counts: dict[tuple[str, str, str], int] = {}
    for g in groups:
        for r in g.runs:
            if r["error"] is not None:
                message = r["error"].strip().splitlines()[0] if r["error"].strip() else "error"
                if len(message) > 200:
                    message = message[:197] + "..."
                key = (g.label, r["name"], message.replace("`", "'"))
                counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    lines = ["Errors:", ""]
    lines += [f"- **{label}** on {name}: `{message}`" + (f" ({count} runs)" if count > 1 else "")
              for (label, name, message), count in counts.items()]
    return "\n".join(lines)


def bbob_summary_table(suite: SuiteRuns, groups: list[Group] | None = None,
                       per_target: bool = True) -> str:
    """Per group: fraction of (function, instance, seed) runs reaching each target
    precision (if ``per_target``), over all targets, and the median over functions of
    ERT / dim at :data:`ERT_PRECISIONS` (with the number of functions where ERT is
    finite). Rows sorted by the fraction of all targets reached."""
    groups = suite.groups if groups is None else groups
    precisions = bbob_precisions(suite)
    shown = range(len(precisions)) if per_target else []
    ert_index = [(p, next((i for i, q in enumerate(precisions)
                           if q > 0 and math.isclose(q, p, rel_tol=1e-6)), None))
                 for p in ERT_PRECISIONS]
    ert_index = [(p, i) for p, i in ert_index if i is not None]
    header = ["solver", "runs"] + [fmt_power(precisions[i]) for i in shown] + ["all targets"]
    header += [f"ERT/d at {fmt_power(p)}" for p, _ in ert_index]
    rows = []
    for g in sorted(groups, key=lambda g: (-fraction_solved(g.runs), g.label)):
        n = len(g.runs)
        cells = [g.label, f"{n} ({g.failed} failed)" if g.failed else str(n)]
        for i in shown:
            _, hits, _ = reached_stats(g.runs, i)
            cells.append(f"{hits / n:.0%}")
        cells.append(f"{fraction_solved(g.runs):.0%}")
        for _, i in ert_index:
            ert = ert_by_function(g.runs, i)
            per_dim = [e / max(suite.dim, 1) for e in ert.values()]
            median = float(quantiles(per_dim, 50))
            finite = int(np.isfinite(per_dim).sum())
            cells.append(("—" if np.isinf(median) else f"{median:.3g}")
                         + f" ({finite}/{len(per_dim)})")
        rows.append(cells)
    return markdown_table(header, rows)


def bbob_function_table(suite: SuiteRuns) -> str:
    """Rows f1..f24, a column per group: median final f - f_opt, the best per row in bold."""
    fids = sorted({r["fid"] for r in suite.runs if r["fid"] is not None})
    groups = suite.groups
    rows = []
    for f in fids:
        medians = []
        for g in groups:
            gaps = [r["final"] - (r["f_opt"] or 0.0) for r in g.runs if r["fid"] == f]
            medians.append(float(quantiles(gaps, 50)) if gaps else math.nan)
        finite = [m for m in medians if np.isfinite(m)]
        best = min(finite) if finite else None
        cells = []
        for m in medians:
            text = fmt_precision(m)
            if best is not None and np.isfinite(m) and m <= best + 1e-12 * abs(best):
                text = f"**{text}**"
            cells.append(text)
        rows.append([f"f{f}"] + cells)
    return markdown_table(["function"] + [g.short_label for g in groups], rows)


def tuning_section(suites: list[SuiteRuns]) -> str:
    """For each suite and method, the grid of lr → score (mean log10 final gap) and the
    chosen lr ('' if no suite was tuned)."""
    parts = []
    for s in suites:
        if not s.tuned_lr:
            continue
        columns = sorted({round(m, 6) for v in s.tuned_lr.values()
                          for m in grid_multipliers(v.get("grid") or {}).values()})
        rows = []
        for method, v in s.tuned_lr.items():
            grid = {number(lr): number(score) for lr, score in (v.get("grid") or {}).items()}
            chosen = number(v.get("lr"))
            by_m = {round(m, 6): lr for lr, m in grid_multipliers(grid).items()}
            cells = [method, f"{chosen:.3g}"]
            for m in columns:
                lr = by_m.get(m)
                if lr is None:
                    cells.append("")
                    continue
                text = f"{lr:.3g}: {grid[lr]:.2f}"
                cells.append(f"**{text}**" if math.isclose(lr, chosen, rel_tol=1e-9) else text)
            rows.append(cells)
        parts += [f"### {s.title}",
                  markdown_table(["method", "chosen lr"] + [fmt_multiplier(m) for m in columns],
                                 rows)]
    if not parts:
        return ""
    return "\n\n".join(["## Tuning",
                        "Each cell: lr (the default lr times the column's multiplier): score, "
                        "the mean over tuning runs of log10 of the final gap (lower is better); "
                        "the chosen lr in bold."] + parts)


# --------------------------------------------------------------------------- report

def suite_section(suite: SuiteRuns, out: Path, styles: dict, notes: list[str]) -> str:
    """Table, errors and plot of one non-BBOB suite."""
    n_problems = len({r["name"] for r in suite.runs})
    lines = [f"## {suite.title}", "",
             f"{plural(n_problems, 'problem')}, d = {suite.dim:,}, budget "
             f"{fmt_evals(suite.budget)} evaluations; rows sorted by median final best value.",
             "",
             suite_table(suite)]
    errors = error_list(suite.groups)
    if errors:
        lines += ["", errors]
    image = draw_plot(plot_suite, suite, out, suite.key, styles, notes)
    if image:
        lines += ["", image]
    return "\n".join(lines)


def bbob_section(suite: SuiteRuns, out: Path, styles: dict, notes: list[str]) -> str:
    """COCO-style measures of one BBOB suite: summary, per-function table, ECDF, errors."""
    n_funcs = len({r["fid"] for r in suite.runs})
    instances = sorted({str(r["instance"]) for r in suite.runs})
    lines = [f"## {suite.title}", "",
             f"COCO/BBOB, {plural(n_funcs, 'function')}, "
             f"{plural(len(instances), 'instance')} ({', '.join(instances)}), budget "
             f"{fmt_evals(suite.budget)} evaluations ({suite.budget / max(suite.dim, 1):,.0f} "
             "x d). Measured on f - f_opt. Columns 1e2 … 1e-8: fraction of (function, "
             "instance, seed) runs that reached f_opt + that precision within the budget. "
             "ERT/d: median over functions of the expected running time (evaluations of all "
             "runs / successful runs, infinite if none) divided by d, with the number of "
             "functions where it is finite.", "",
             bbob_summary_table(suite), "",
             "Median final f - f_opt per function (best in bold):", "",
             bbob_function_table(suite)]
    errors = error_list(suite.groups)
    if errors:
        lines += ["", errors]
    image = draw_plot(plot_ecdf, suite, out, f"{suite.key}-ecdf", styles, notes)
    if image:
        lines += ["", image]
    return "\n".join(lines)


def write_report(results: dict, out: Path) -> str:
    """Write ``out/report.md`` and the PNG plots of a benchmark run.

    Parameters
    ----------
    results : dict
        As built by ``python -m benchmarks``: ``mode``, ``command``, ``machine``,
        ``cpus``, ``started``, ``seconds``, optionally ``speed`` (see
        :func:`benchmarks.speed.run`) and ``suites`` ``{key: {"tuned_lr", "records"}}``.
    out : Path
        Folder for ``report.md`` and the plots (``<suite key>.png``,
        ``<bbob key>-ecdf.png``); created if missing.

    Returns
    -------
    str
        The markdown written to ``out/report.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    suites = load_suites(results)
    styles = solver_styles(suites)
    notes: list[str] = []
    sections = [header_section(results, suites)]
    learned_goals = goals_section(suites, results.get("speed"))
    if learned_goals:
        sections.append(learned_goals)
    if results.get("speed"):
        sections.append(speed_section(results["speed"]))
    sections += [suite_section(s, out, styles, notes) for s in suites if not s.is_bbob]
    sections += [bbob_section(s, out, styles, notes) for s in suites if s.is_bbob]
    tuning = tuning_section(suites)
    if tuning:
        sections.append(tuning)
    if notes:
        sections.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
    report = "\n\n".join(sections).rstrip() + "\n"
    (out / "report.md").write_text(report, encoding="utf-8")
    return report


def headline(results: dict) -> str:
    """A short markdown table for the README: one row per solver of the most telling suite.

    The suite is ``attack`` if present, else ``nclsq-d100``, else the first other
    non-BBOB suite, else the first BBOB suite (its summary table). At most
    :data:`~benchmarks.measures.MAX_LINES` rows: every zominimize row, then the best
    peers; the caption names the rows left out. A one-line caption in italics precedes the
    table; '' when there is no suite.
    """
    suites = load_suites(results)
    if not suites:
        return ""
    by_key = {s.key: s for s in suites}
    suite = (by_key.get("attack") or by_key.get("nclsq-d100")
             or next((s for s in suites if not s.is_bbob), suites[0]))
    if suite.is_bbob:
        groups = select_groups(suite.groups, lambda g: -fraction_solved(g.runs))
        table = bbob_summary_table(suite, groups, per_target=False)
    else:
        groups = select_groups(suite.groups, median_final)
        table = suite_table(suite, groups, [headline_target(suite, groups)], seconds=False)
    when = f"{results['mode']} run" if results.get("mode") else "run"
    if results.get("started"):
        when += f" of {results['started']}"
    how = ("fraction of targets reached and median ERT / d over functions" if suite.is_bbob
           else "medians over runs")
    shown = {id(g) for g in groups}
    dropped = [g.label for g in suite.groups if id(g) not in shown]
    left_out = (f"; not shown (beyond {len(groups)} rows): {', '.join(dropped)}" if dropped
                else "")
    caption = (f"*{suite.title}, {when}: budget {fmt_evals(suite.budget)} evaluations, "
               f"{plural(len({r['name'] for r in suite.runs}), 'problem')}; {how}{left_out}*")
    return f"{caption}\n\n{table}\n"


def headline_target(suite: SuiteRuns, groups: list[Group]) -> int:
    """The index of the hardest target that most of ``groups`` reach in the median run
    (the first target if none)."""
    best = 0
    for i in range(len(suite.targets)):
        reached = sum(np.isfinite(reached_stats(g.runs, i)[0]) for g in groups)
        if reached * 2 > len(groups):
            best = i
    return best


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report FOLDER [--out OUT]``: ``report.md`` and the plots again,
    from the ``FOLDER/records.json`` of a run, written to OUT (default: FOLDER)."""
    import argparse
    import json
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description="Write "
                                     "report.md and the plots again from a run's records.json.")
    parser.add_argument("folder", type=Path, help="a run's folder, holding records.json")
    parser.add_argument("--out", type=Path, help="folder for report.md and the plots")
    args = parser.parse_args(argv)
    results = json.loads((args.folder / "records.json").read_text())
    out = args.out or args.folder
    write_report(results, out)
    print(f"report.md and plots written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
