"""The PNG plots of a benchmark report, drawn with matplotlib's Agg canvas.

:func:`plot_suite` draws the best value against evaluations of a non-BBOB suite and
:func:`plot_ecdf` the runtime ECDF of a BBOB suite; :func:`draw_plot` saves one as
``<name>.png`` and gives its markdown image link, or a note when it cannot be drawn.
Each plot has a line for every row of its suite's table; a row that has nothing to draw
(no run found a finite value) is named under the title instead. A solver has the same
colour and marker in every plot of a report (:func:`solver_styles`: tab10's ten colours,
then again with markers), its variant the line style (solid: default, dashed: tuned,
dash-dot: a peer's default; dotted and dash-dot-dot: lr at 1/10 and 10 times the
default), so no two lines look alike.
matplotlib is imported only when a figure is made, so the tables work without it.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np

from benchmarks.measures import (Group, SuiteRuns, fraction_solved, median_final, plural,
                                 bbob_precisions, curve_band, fmt_loss, fmt_power,
                                 legend_labels, runtimes)

#: Points of the common evaluation grid on which traces are compared in plots.
PLOT_POINTS = 200
#: matplotlib's tab10, ten colours a reader can tell apart.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: The marker of the first ten solvers (none), the next ten, and so on.
MARKERS = ("", "o", "s", "^", "D", "v", "x", "*")
#: Characters allowed in a plot's file name.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


# --------------------------------------------------------------------------- figures

def solver_styles(suites: list[SuiteRuns]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per solver name, distinct, in order of first appearance across
    the suites: tab10's colours without a marker, then with each marker in turn."""
    names = list(dict.fromkeys(g.solver for s in suites for g in s.groups))
    return {name: (COLOURS[i % len(COLOURS)], MARKERS[i // len(COLOURS) % len(MARKERS)])
            for i, name in enumerate(names)}


def _line(group: Group, styles: dict[str, tuple[str, str]], k: int) -> dict:
    """Keyword arguments of ``group``'s line: its solver's colour and marker, its variant's
    line style; markers spaced along the line, staggered by the line's index ``k``."""
    colour, marker = styles[group.solver]
    linestyle = {"default": "-" if group.zo else "-.", "tuned": "--", "lr/10": ":",
                 "lr x10": (0, (4, 1, 1, 1, 1, 1))}.get(group.variant, (0, (1, 3)))
    return dict(color=colour, linestyle=linestyle, marker=marker or None, markersize=5,
                markevery=(0.013 * (k % 8), 0.11), linewidth=1.6)


def _new_figure(width: float = 10.5, height: float = 5.5):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, ax, path: Path, title: str, legend_title: str, not_shown: list[str]):
    """Title (with a line naming the rows not shown, and why), grid, legend outside the
    axes on the right; save as PNG and return the figure."""
    if not_shown:
        title += "\n" + textwrap.fill("not shown: " + "; ".join(not_shown), 110,
                                      break_on_hyphens=False)
    ax.set_title(title, fontsize=10.5)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False,
              handlelength=3.0, title=legend_title, title_fontsize=8.5, alignment="left")
    fig.savefig(path, bbox_inches="tight")
    return fig


def _styles_for(suite: SuiteRuns, styles: dict[str, tuple[str, str]]) -> dict:
    """The report's ``styles`` if they cover the suite's solvers, else the suite's own."""
    return styles if all(g.solver in styles for g in suite.groups) else solver_styles([suite])


# --------------------------------------------------------------------------- plots

def plot_suite(suite: SuiteRuns, path: Path, styles: dict[str, tuple[str, str]]):
    """Best value against evaluations: median line and 25–75% band per group (every row of
    the suite's table), targets as faint horizontal lines, log y-scale when the values are
    positive and span > 2 decades. Saved to ``path``; returns the figure."""
    grid = np.linspace(1, max(suite.budget, 2), PLOT_POINTS)
    styles = _styles_for(suite, styles)
    groups = sorted(suite.groups, key=lambda g: (median_final(g), g.label))  # as the table
    fig = _new_figure()
    ax = fig.add_subplot()
    shown, not_shown = [], []
    labels = legend_labels(groups)
    for k, g in enumerate(groups):
        med, lo, hi = curve_band(g.runs, grid)
        if not np.isfinite(med).any():
            not_shown.append(f"{g.label} (no run found a finite value)")
            continue
        line = _line(g, styles, k)
        ax.plot(grid, med, label=f"{labels[id(g)]} [{fmt_loss(median_final(g))}]", **line)
        if len(g.runs) > 1:
            ax.fill_between(grid, lo, hi, color=line["color"], alpha=0.10, linewidth=0)
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
    title = (f"{suite.title}: median and 25–75% of up to {plural(n_runs, 'run')}"
             + (f" (targets: {', '.join(fmt_loss(t) for t in targets)})" if targets else ""))
    return _finish(fig, ax, path, title, "solver [median final best value]", not_shown)


def plot_ecdf(suite: SuiteRuns, path: Path, styles: dict[str, tuple[str, str]]):
    """COCO's runtime ECDF: the fraction of (function, instance, seed, target) pairs
    solved against log10(evaluations / dim), one line per group (every row of the suite's
    summary table). Saved to ``path``; returns the figure."""
    dim = max(suite.dim, 1)
    styles = _styles_for(suite, styles)
    fig = _new_figure()
    ax = fig.add_subplot()
    x_end = math.log10(max(suite.budget, 1) / dim)
    x_start = min(math.log10(1 / dim), x_end - 1)
    groups = sorted(suite.groups, key=lambda g: (-fraction_solved(g.runs), g.label))
    labels = legend_labels(groups)
    for k, g in enumerate(groups):
        times = runtimes(g.runs)
        solved = np.sort(times[np.isfinite(times)])
        total = max(times.size, 1)
        xs = np.concatenate([[x_start], np.log10(np.maximum(solved, 1) / dim), [x_end]])
        ys = np.concatenate([[0.0], np.arange(1, solved.size + 1) / total,
                             [solved.size / total]])
        ax.step(xs, ys, where="post", label=f"{labels[id(g)]} [{solved.size / total:.0%}]",
                **_line(g, styles, k))
    ax.axvline(x_end, color="grey", linewidth=0.8, alpha=0.5, linestyle=":")
    ax.set_xlim(x_start, x_end + 0.05 * (x_end - x_start))
    ax.set_ylim(0, 1)
    ax.set_xlabel("log10(function evaluations / dimension)")
    ax.set_ylabel("fraction of (function, instance, seed, target) pairs")
    precisions = bbob_precisions(suite)
    n_funcs = len({r["fid"] for r in suite.runs})
    title = (f"{suite.title}: runtime ECDF, {n_funcs} functions, targets "
             f"{fmt_power(max(precisions))}..{fmt_power(min(precisions))}"
             if precisions and min(precisions) > 0 else f"{suite.title}: runtime ECDF")
    return _finish(fig, ax, path, title, "solver [fraction solved at the budget]", [])


def draw_plot(plotter, suite: SuiteRuns, out: Path, name: str,
              styles: dict[str, tuple[str, str]], notes: list[str]) -> str:
    """Run one plot function; the markdown image link, or '' (with a note) if it failed:
    a plot that cannot be drawn must not cost the tables of a long run."""
    path = out / (_UNSAFE.sub("-", name) + ".png")
    try:
        plotter(suite, path, styles)
    except ImportError:
        notes.append(f"{path.name}: not drawn (matplotlib is not installed)")
        return ""
    except Exception as exc:  # noqa: BLE001 - reported in the markdown instead
        notes.append(f"{path.name}: not drawn ({type(exc).__name__}: {exc})")
        return ""
    return f"![{suite.title}]({path.name})"
