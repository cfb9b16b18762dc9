"""The PNG plots of a benchmark report, drawn with matplotlib's Agg canvas.

:func:`plot_suite` draws the best value against evaluations of a non-BBOB suite and
:func:`plot_ecdf` the runtime ECDF of a BBOB suite, each solver in the colour
:func:`solver_colours` gives it for the whole report; :func:`draw_plot` saves one as
``<name>.png`` and gives its markdown image link, or a note when it cannot be drawn.
matplotlib is imported only when a figure is made, so the tables work without it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from benchmarks.measures import (Group, SuiteRuns, fraction_solved, median_final, plural,
                                 bbob_precisions, curve_band, fmt_loss, fmt_power,
                                 legend_labels, runtimes, select_groups)

#: Points of the common evaluation grid on which traces are compared in plots.
PLOT_POINTS = 200
#: One colour per solver, the same in every plot of a report.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f", "#000000", "#aec7e8", "#98df8a", "#ff9896")
#: Characters allowed in a plot's file name.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


# --------------------------------------------------------------------------- figures

def solver_colours(suites: list[SuiteRuns]) -> dict[str, str]:
    """One colour per solver name, in order of first appearance across the suites."""
    names = []
    for s in suites:
        for g in s.groups:
            if g.solver not in names:
                names.append(g.solver)
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}


def plot_colours(groups: list[Group], colours: dict[str, str]) -> dict[str, str]:
    """The report-wide ``colours`` of the solvers in ``groups`` if they are distinct, else
    (more solvers than colours) fresh ones for this plot alone."""
    names = list(dict.fromkeys(g.solver for g in groups))
    if len({colours.get(n) for n in names}) == len(names) and all(n in colours for n in names):
        return colours
    return {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(names)}


def _linestyle(group: Group) -> str:
    if not group.zo:
        return "-."
    return "--" if group.variant != "default" else "-"


def _new_figure(width: float = 10.5, height: float = 5.5):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, ax, path: Path, legend_title: str) -> None:
    """Grid, legend outside the axes on the right, and save as PNG."""
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False,
              handlelength=3.0, title=legend_title, title_fontsize=8.5, alignment="left")
    fig.savefig(path, bbox_inches="tight")


# --------------------------------------------------------------------------- plots

def plot_suite(suite: SuiteRuns, path: Path, colours: dict[str, str]) -> None:
    """Best value against evaluations: median line and 25–75% band per group, targets as
    faint horizontal lines, log y-scale when the values are positive and span > 2 decades."""
    grid = np.linspace(1, max(suite.budget, 2), PLOT_POINTS)
    groups = select_groups(suite.groups, median_final)
    colours = plot_colours(groups, colours)
    fig = _new_figure()
    ax = fig.add_subplot()
    shown = []
    labels = legend_labels(groups)
    for g in groups:
        med, lo, hi = curve_band(g.runs, grid)
        colour = colours.get(g.solver, "grey")
        ax.plot(grid, med, color=colour, linestyle=_linestyle(g), linewidth=1.6,
                label=f"{labels[id(g)]} [{fmt_loss(median_final(g))}]")
        if len(g.runs) > 1:
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.10, linewidth=0)
        shown.append(np.concatenate([med, lo, hi]))
    values = np.concatenate(shown) if shown else np.array([])
    values = values[np.isfinite(values)]
    targets = [t for t in suite.targets if np.isfinite(t)] if suite.same_targets else []
    for t in targets:
        ax.axhline(t, color="grey", linewidth=0.8, alpha=0.35, linestyle=":")
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    if not values.size:
        ax.text(0.5, 0.5, "no run found a finite value", transform=ax.transAxes,
                ha="center", va="center", color="grey")
    elif np.percentile(values, 99.5) > values.min():  # cut off rare early spikes
        top, bottom = np.percentile(values, 99.5), values.min()
        ax.set_ylim(top=top + 0.05 * (top - bottom) if ax.get_yscale() == "linear"
                    else top * 1.3)
    ax.set_xlim(0, suite.budget)
    ax.set_xlabel("function evaluations")
    ax.set_ylabel("best value so far")
    n_runs = max((len(g.runs) for g in suite.groups), default=0)
    ax.set_title(f"{suite.title}: median and 25–75% of up to {plural(n_runs, 'run')}"
                 + (f" (targets: {', '.join(fmt_loss(t) for t in targets)})" if targets else ""),
                 fontsize=10.5)
    _finish(fig, ax, path, "solver [median final best value]")


def plot_ecdf(suite: SuiteRuns, path: Path, colours: dict[str, str]) -> None:
    """COCO's runtime ECDF: the fraction of (function, instance, seed, target) pairs
    solved against log10(evaluations / dim), one line per group."""
    dim = max(suite.dim, 1)
    groups = select_groups(suite.groups, lambda g: -fraction_solved(g.runs))
    colours = plot_colours(groups, colours)
    fig = _new_figure()
    ax = fig.add_subplot()
    x_end = math.log10(max(suite.budget, 1) / dim)
    x_start = min(math.log10(1 / dim), x_end - 1)
    groups = sorted(groups, key=lambda g: -fraction_solved(g.runs))
    labels = legend_labels(groups)
    for g in groups:
        times = runtimes(g.runs)
        solved = np.sort(times[np.isfinite(times)])
        total = max(times.size, 1)
        xs = np.concatenate([[x_start], np.log10(np.maximum(solved, 1) / dim), [x_end]])
        ys = np.concatenate([[0.0], np.arange(1, solved.size + 1) / total,
                             [solved.size / total]])
        ax.step(xs, ys, where="post", color=colours.get(g.solver, "grey"),
                linestyle=_linestyle(g), linewidth=1.6,
                label=f"{labels[id(g)]} [{solved.size / total:.0%}]")
    ax.axvline(x_end, color="grey", linewidth=0.8, alpha=0.5, linestyle=":")
    ax.set_xlim(x_start, x_end + 0.05 * (x_end - x_start))
    ax.set_ylim(0, 1)
    ax.set_xlabel("log10(function evaluations / dimension)")
    ax.set_ylabel("fraction of (function, instance, seed, target) pairs")
    precisions = bbob_precisions(suite)
    n_funcs = len({r["fid"] for r in suite.runs})
    ax.set_title(f"{suite.title}: runtime ECDF, {n_funcs} functions, targets "
                 f"{fmt_power(max(precisions))}..{fmt_power(min(precisions))}"
                 if precisions and min(precisions) > 0 else f"{suite.title}: runtime ECDF",
                 fontsize=10.5)
    _finish(fig, ax, path, "solver [fraction solved at the budget]")


def draw_plot(plotter, suite: SuiteRuns, out: Path, name: str, colours: dict[str, str],
          notes: list[str]) -> str:
    """Run one plot function; the markdown image link, or '' (with a note) if it failed:
    a plot that cannot be drawn must not cost the tables of a long run."""
    path = out / (_UNSAFE.sub("-", name) + ".png")
    try:
        plotter(suite, path, colours)
    except ImportError:
        notes.append(f"{path.name}: not drawn (matplotlib is not installed)")
        return ""
    except Exception as exc:  # noqa: BLE001 - reported in the markdown instead
        notes.append(f"{path.name}: not drawn ({type(exc).__name__}: {exc})")
        return ""
    return f"![{suite.title}]({path.name})"
