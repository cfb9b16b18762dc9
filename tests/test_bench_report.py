"""The benchmark report (benchmarks/report.py) on small synthetic results.

The records are made here by hand (no solver runs), so the tables can be checked
against values worked out on paper: median queries to reach a target, success
rates, COCO's ERT and the per-function finals.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")

from benchmarks.measures import Group, load_suites, select_groups  # noqa: E402
from benchmarks.plots import COLOURS, plot_ecdf, plot_suite, solver_styles  # noqa: E402
from benchmarks.report import headline, main, write_report  # noqa: E402

PRECISIONS = [1e2, 1e1, 1e0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-8]


def record(suite_key, suite, family, name, solver, trace, targets, *, seed=0, budget=100,
           dim=4, variant="default", options=None, f_opt=None, error=None, nfev=None,
           method_ran=None, assess=None, problem=None, seconds=0.5):
    """One run record as benchmarks.runner.execute makes it, from a trace of (nfev, best)."""
    nfevs = [n for n, _ in trace]
    bests = [b for _, b in trace]
    reached = [next((n for n, b in trace if b <= t), None) for t in targets]
    return {
        "problem": problem or {"family": family, "name": name}, "solver": solver, "seed": seed,
        "budget": budget, "options": options or {}, "variant": variant, "suite_key": suite_key,
        "suite": suite, "family": family, "name": name, "dim": dim, "f0": 1.0, "f_opt": f_opt,
        "targets": targets, "nfev": budget if nfev is None else nfev,
        "final": min(bests) if bests else None, "trace": {"nfev": nfevs, "best": bests},
        "reached": reached, "seconds": seconds, "error": error,
        "facts": {"method_ran": method_ran, "fallback": None} if method_ran else {},
        "assess": assess if assess is not None else {},
    }


def nclsq_suite():
    """zo-adamm (3 seeds, default and tuned), l2l-zo falling back, cma-es, a failed powell."""
    targets = [0.5, 0.1]
    run = lambda solver, trace, **kw: record("nclsq-d4", "nclsq d=4", "nclsq",  # noqa: E731
                                             "nclsq-d4-i0", solver, trace, targets, **kw)
    zo = dict(method_ran="zo-adamm")
    records = [
        # reached 0.5 at 10, 20, 30 -> median 20 (3/3); 0.1 at 40, 80, never -> median 80 (2/3)
        run("zo-adamm", [(1, 1.0), (10, 0.4), (40, 0.05)], seed=0, **zo),
        run("zo-adamm", [(1, 1.0), (20, 0.3), (80, 0.08)], seed=1, **zo),
        run("zo-adamm", [(1, 1.0), (30, 0.2)], seed=2, **zo),
        run("zo-adamm", [(1, 1.0), (5, 0.1)], seed=0, variant="tuned", options={"lr": 0.05}, **zo),
        run("zo-adamm", [(1, 1.0), (7, 0.09)], seed=1, variant="tuned", options={"lr": 0.05}, **zo),
        run("l2l-zo", [(1, 1.0), (50, 0.3)], seed=0, **zo),
        # cma-es: 0.5 reached at 5 and 15 -> median 10 (2/2); 0.1 never -> "—" (0/2)
        run("cma-es", [(1, 1.0), (5, 0.45)], seed=0),
        run("cma-es", [(1, 1.0), (15, 0.2)], seed=1),
        # a peer that crashed before evaluating anything: empty trace, final None
        run("powell", [], nfev=0, error="ValueError: boom"),
    ]
    tuned_lr = {"zo-adamm": {"lr": 0.05, "score": -2.0,
                             "grid": {"0.005555555555555556": -1.0, "0.016666666666666666": -1.5,
                                      "0.05": -2.0, "0.15": -1.8, "0.45": -0.5}}}
    return {"tuned_lr": tuned_lr, "records": records}


def attack_suite():
    """zo-sgd succeeds twice (L1 3 and 5); nelder-mead has no assess; one empty trace."""
    targets = [5.0, 2.0]
    run = lambda solver, name, trace, **kw: record("attack", "attack", "attack", name,  # noqa: E731
                                                   solver, trace, targets, budget=210,
                                                   dim=784, **kw)
    return {"tuned_lr": {}, "records": [
        run("zo-sgd", "attack-foolbox-00", [(1, 9.0), (21, 4.0), (105, 1.5)],
            method_ran="zo-sgd", assess={"success": True, "distortion_l1": 3.0}),
        run("zo-sgd", "attack-foolbox-01", [(1, 9.0), (63, 4.5), (147, 1.9)],
            method_ran="zo-sgd", assess={"success": True, "distortion_l1": 5.0}),
        run("nelder-mead", "attack-foolbox-00", [(1, 9.0), (100, 6.0)]),
        run("nelder-mead", "attack-foolbox-01", [], nfev=0),
    ]}


def bbob_suite():
    """Two functions in d = 2, zo-sgd with two seeds, nelder-mead once (crashing on f2)."""
    def run(solver, fid, f_opt, gaps, **kw):
        trace = [(n, f_opt + g) for n, g in gaps]
        return record("bbob-d2", "bbob d=2", "bbob", f"bbob-f{fid:02d}-i01-d2", solver, trace,
                      [f_opt + p for p in PRECISIONS], budget=200, dim=2, f_opt=f_opt,
                      problem={"family": "bbob", "fid": fid, "dim": 2, "instance": 1}, **kw)
    return {"tuned_lr": {}, "records": [
        run("zo-sgd", 1, 10.0, [(1, 50.0), (20, 5.0), (100, 0.05)], seed=0, method_ran="zo-sgd"),
        run("zo-sgd", 1, 10.0, [(1, 200.0), (50, 20.0)], seed=1, method_ran="zo-sgd"),
        run("zo-sgd", 2, -5.0, [(1, 30.0), (40, 3.0)], seed=0, method_ran="zo-sgd"),
        run("zo-sgd", 2, -5.0, [(1, 30.0), (60, 8.0)], seed=1, method_ran="zo-sgd"),
        run("nelder-mead", 1, 10.0, [(1, 0.9), (150, 1e-4)], nfev=180),
        run("nelder-mead", 2, -5.0, [], nfev=0, error="RuntimeError: crash\nmore lines"),
    ]}


def results(with_speed=True):
    out = {"mode": "quick", "command": "python -m benchmarks --quick", "python": "3.11",
           "machine": "x86_64", "cpus": 2, "started": "2025-01-01 00:00:00", "seconds": 75.0,
           "suites": {"nclsq-d4": nclsq_suite(), "attack": attack_suite(),
                      "bbob-d2": bbob_suite(),
                      "nclsq-d8": {"tuned_lr": {}, "records": [record(
                          "nclsq-d8", "nclsq d=8", "nclsq", "nclsq-d8-i0", "zo-sgd",
                          [(1, 1.0), (9, 0.3)], [0.5], dim=8, method_ran="zo-sgd")]}}}
    if with_speed:
        # as after JSON: dimensions are string keys
        out["speed"] = json.loads(json.dumps({
            "q": 20, "dims": [100, 1000], "floor_s": {100: 1e-4, 1000: 1e-3},
            "overhead_s": {"zo-adamm": {100: 2e-4, 1000: 1.5e-3}},
            "peak_bytes": {"zo-adamm": {1000: 350e6}},
            "memory_bound_bytes": {100: 300.024e6, 1000: 300.24e6},
            "workers": {"serial_s": 2.0, "workers2_s": 1.0, "nfev": 168, "speedup": 2.0},
            "goals": [{"goal": "overhead", "value": 1.5, "limit": "<= 1.5", "met": True},
                      {"goal": "memory", "value": 350, "limit": "< 300", "met": False}]}))
    return out


def section(report: str, title: str) -> str:
    """The text of the ``## title`` section."""
    start = report.index(f"\n## {title}\n")
    end = report.find("\n## ", start + 1)
    return report[start:end if end >= 0 else None]


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in ``text``, as lists of {header: cell} rows."""
    found, lines = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            lines.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif lines:
            header, rows = lines[0], lines[2:]
            found.append([dict(zip(header, row)) for row in rows])
            lines = []
    return found


def by_label(table: list[dict[str, str]], column: str) -> dict[str, dict[str, str]]:
    return {row[column]: row for row in table}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    data = results()
    return out, write_report(data, out), data


def test_writes_markdown_and_plots(written):
    out, report, _ = written
    assert (out / "report.md").read_text(encoding="utf-8") == report
    for name in ("nclsq-d4.png", "nclsq-d8.png", "attack.png", "bbob-d2-ecdf.png"):
        path = out / name
        assert path.stat().st_size > 1000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("mode: quick", "`python -m benchmarks --quick`", "cpus: 2", "x86_64",
                 "2025-01-01", "## How to read", "×1/9", "×9", "## Tuning"):
        assert text in report


def test_queries_to_target_and_final_values(written):
    _, report, _ = written
    rows = by_label(tables(section(report, "nclsq d=4"))[0], "solver")
    adamm = rows["zo-adamm"]
    assert adamm["runs"] == "3"
    assert adamm["queries to reach 0.5"] == "20 (3/3)"
    assert adamm["queries to reach 0.1"] == "80 (2/3)"
    assert adamm["final best value"].startswith("0.08 [")
    cma = rows["cma-es"]
    assert cma["queries to reach 0.5"] == "10 (2/2)"
    assert cma["queries to reach 0.1"] == "— (0/2)"
    tuned = rows["zo-adamm (tuned lr 0.05)"]
    assert tuned["queries to reach 0.1"] == "6 (2/2)"
    assert "l2l-zo → zo-adamm (fallback)" in rows
    failed = rows["powell"]
    assert failed["runs"] == "1 (1 failed)"
    assert failed["final best value"] == "fail"
    # sorted by median final value (0.08, 0.095, 0.3, 0.325), the failed run last
    assert list(rows) == ["zo-adamm", "zo-adamm (tuned lr 0.05)", "l2l-zo → zo-adamm (fallback)",
                          "cma-es", "powell"]


def test_errors_are_listed(written):
    _, report, _ = written
    assert "- **powell** on nclsq-d4-i0: `ValueError: boom`" in section(report, "nclsq d=4")
    assert "- **nelder-mead** on bbob-f02-i01-d2: `RuntimeError: crash`" in section(
        report, "bbob d=2")


def test_attack_columns(written):
    _, report, _ = written
    rows = by_label(tables(section(report, "attack"))[0], "solver")
    assert rows["zo-sgd"]["success"] == "2/2"
    assert rows["zo-sgd"]["L1 distortion"] == "4"
    assert rows["zo-sgd"]["queries to reach 2"] == "126 (2/2)"
    assert rows["nelder-mead"]["success"] == "0/2"
    assert rows["nelder-mead"]["L1 distortion"] == "—"


def test_one_run_suite(written):
    _, report, _ = written
    row = tables(section(report, "nclsq d=8"))[0][0]
    assert row["runs"] == "1" and row["queries to reach 0.5"] == "9 (1/1)"
    assert row["final best value"] == "0.3"


def test_bbob_fractions_and_ert(written):
    _, report, _ = written
    summary, per_function = tables(section(report, "bbob d=2"))[:2]
    rows = by_label(summary, "solver")
    zo = rows["zo-sgd"]
    assert zo["1e2"] == "100%" and zo["1e1"] == "75%" and zo["1e-1"] == "25%"
    # ERT at 1e1: f1 (20 + 200) / 1 = 220, f2 (40 + 60) / 2 = 50; / d = 110, 25; median 67.5
    assert zo["ERT/d at 1e1"] == "67.5 (2/2)"
    # ERT at 1e-1: f1 (100 + 200) / 1, f2 none -> median over (150, inf) is inf
    assert zo["ERT/d at 1e-1"] == "— (1/2)"
    assert zo["ERT/d at 1e-3"] == "— (0/2)"
    nm = rows["nelder-mead"]
    assert nm["runs"] == "2 (1 failed)" and nm["1e-3"] == "50%" and nm["1e-5"] == "0%"
    funcs = by_label(per_function, "function")
    assert funcs["f1"]["zo-sgd"] == "1.0e+01" and funcs["f1"]["nelder-mead"] == "**1.0e-04**"
    assert funcs["f2"]["zo-sgd"] == "**5.5e+00**" and funcs["f2"]["nelder-mead"] == "fail"


def test_speed_section(written):
    _, report, _ = written
    speed = section(report, "Speed")
    overhead, memory, goals = tables(speed)
    assert by_label(overhead, "d")["1,000"]["zo-adamm"] == "1.5 (1.50x)"
    assert memory[0]["peak (MB)"] == "350"
    assert "2.00x speed-up" in speed
    assert [g[""] for g in goals] == ["met", "**MISSED**"]


def test_tuning_section(written):
    _, report, _ = written
    row = tables(section(report, "Tuning"))[0][0]
    assert row["method"] == "zo-adamm" and row["chosen lr"] == "0.05"
    assert row["×1"] == "**0.05: -2.00**" and row["×1/9"] == "0.00556: -1.00"


def test_without_speed_or_optional_fields(tmp_path):
    data = results(with_speed=False)
    del data["seconds"], data["command"]
    data["suites"] = {"attack": data["suites"]["attack"]}
    for r in data["suites"]["attack"]["records"]:
        del r["assess"]
    report = write_report(data, tmp_path)
    assert "## Speed" not in report and "## attack" in report
    assert (tmp_path / "attack.png").stat().st_size > 0


def test_headline_prefers_attack():
    text = headline(results(with_speed=False))
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert text.startswith("*attack") and lines[0].startswith("| solver |")
    assert 3 <= len(lines) <= 17
    assert any(line.startswith("| zo-sgd |") for line in lines)
    data = results(with_speed=False)
    del data["suites"]["attack"]
    assert headline(data).startswith("*nclsq d=4")
    assert headline({"suites": {}}) == ""


def test_headline_keeps_zominimize_and_the_best_peers():
    zo = [Group(f"zo-{i}", "default", zo=True) for i in range(3)]
    peers = [Group(f"peer-{i}", "default") for i in range(20)]
    kept = select_groups(zo + peers, score=lambda g: -int(g.solver.split("-")[1]), limit=14)
    assert [g.solver for g in kept[:3]] == ["zo-0", "zo-1", "zo-2"]
    assert [g.solver for g in kept[3:]] == [f"peer-{i}" for i in range(9, 20)]


def many_solvers():
    """More solvers than tab10 has colours: 5 zominimize methods, each also tuned, 11 peers,
    and one peer that found nothing."""
    targets = [0.5, 0.1]
    run = lambda solver, trace, **kw: record("many", "many", "nclsq", "p0",  # noqa: E731
                                             solver, trace, targets, **kw)
    records = []
    for i in range(5):
        for variant in ("default", "tuned"):
            records.append(run(f"zo-{i}", [(1, 1.0), (10 + i, 0.4), (50, 0.05 + 0.01 * i)],
                               variant=variant, method_ran=f"zo-{i}"))
    records += [run(f"peer-{i}", [(1, 1.0), (20 + i, 0.3 - 0.01 * i)]) for i in range(11)]
    records.append(run("broken", [], nfev=0, error="ValueError: boom"))
    return {"suites": {"many": {"tuned_lr": {}, "records": records}}}


def drawn(fig) -> tuple[str, list[str], dict[str, tuple]]:
    """A plot's title, legend texts and {line label: (colour, line style, marker)}."""
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    looks = {line.get_label(): (line.get_color(), line.get_linestyle(), line.get_marker())
             for line in lines}
    assert len(looks) == len(lines)
    return ax.get_title(), [t.get_text() for t in ax.get_legend().get_texts()], looks


@pytest.mark.parametrize("data", [results(with_speed=False), many_solvers()],
                         ids=["report", "many-solvers"])
def test_plots_show_every_row_or_say_which_they_leave_out(data, tmp_path):
    suites = load_suites(data)
    styles = solver_styles(suites)
    by_solver = {}
    for suite in suites:
        plotter = plot_ecdf if suite.is_bbob else plot_suite
        title, legend, looks = drawn(plotter(suite, tmp_path / f"{suite.key}.png", styles))
        assert legend == list(looks)
        note = " ".join(title.partition("\nnot shown: ")[2].split())
        for g in suite.groups:
            entries = [t for t in legend if t.startswith((f"{g.label} [", f"{g.label} (= "))]
            assert len(entries) + (g.label in note) == 1, (g.label, legend, note)
            for t in entries:  # a solver looks the same in every plot
                assert by_solver.setdefault(g.solver, looks[t][::2]) == looks[t][::2]
        assert len(set(looks.values())) == len(looks), "two lines look alike"
    if "many" in data["suites"]:
        assert "broken (no run found a finite value)" in note
        assert len(looks) == 5 * 2 + 11 and len({c for c, _, _ in looks.values()}) == len(COLOURS)


def test_report_is_written_again_from_saved_records(tmp_path):
    (tmp_path / "records.json").write_text(json.dumps(results()))
    assert main([str(tmp_path), "--out", str(tmp_path / "again")]) == 0
    report = (tmp_path / "again" / "report.md").read_text(encoding="utf-8")
    assert "## attack" in report and "![attack](attack.png)" in report
    assert (tmp_path / "again" / "bbob-d2-ecdf.png").stat().st_size > 1000


def test_headline_names_the_rows_it_leaves_out():
    text = headline(many_solvers())
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    caption = text.splitlines()[0]
    assert len(rows) - 2 == 14 and "not shown (beyond 14 rows): " in caption
    left_out = caption.split("not shown (beyond 14 rows): ")[1].rstrip("*").split(", ")
    assert len(left_out) == 22 - 14 and not set(left_out) & set(rows)  # 22 groups
