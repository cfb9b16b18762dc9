"""The learned optimizer's goals (benchmarks/goals.py) on hand-made run records.

Each case is small enough to work out on paper: the level the best tuned classic
method sets, when l2l-zo reaches it, how many BBOB functions it wins.
"""

from __future__ import annotations

from benchmarks import goals
from benchmarks.measures import load_suites


def record(suite_key, family, solver, trace, *, variant="default", seed=0, budget=100, dim=4,
           fid=None, f_opt=None, assess=None, lr=None):
    """A run record from a trace of (evaluations, best value)."""
    problem = {"family": family, "fid": fid} if fid else {"family": family}
    return {"problem": problem, "solver": solver, "seed": seed, "budget": budget, "dim": dim,
            "options": {"lr": lr} if lr else {}, "variant": variant, "suite_key": suite_key,
            "suite": suite_key, "family": family, "name": f"{suite_key}-{fid}-{seed}",
            "f_opt": f_opt, "targets": [], "final": min(b for _, b in trace),
            "trace": {"nfev": [n for n, _ in trace], "best": [b for _, b in trace]},
            "assess": assess or {}, "facts": {"method_ran": solver}}


def evaluate(*suites):
    results = {"suites": {key: {"tuned_lr": {}, "records": records} for key, records in suites}}
    return goals.evaluate(load_suites(results))


def row(rows, goal, suite):
    return next(r for r in rows if r["goal"] == goal and r["suite"] == suite)


def nclsq_records(learned_runs=10):
    """zo-signsgd (tuned) ends at 0.1 in every run; l2l-zo reaches 0.1 after 40
    evaluations in 6 runs and after 60 in 4: median 40, within half the budget."""
    records = [record("nclsq-d4", "nclsq", "zo-signsgd", [(1, 1.0), (100, 0.1)],
                      variant="tuned", seed=s, lr=0.01) for s in range(3)]
    records += [record("nclsq-d4", "nclsq", "zo-adamm", [(1, 1.0), (100, 0.3)],
                       variant="tuned", seed=s, lr=0.02) for s in range(3)]
    records += [record("nclsq-d4", "nclsq", "l2l-zo", [(1, 1.0), (40 if s < 6 else 60, 0.1)],
                       seed=s) for s in range(learned_runs)]
    return records


def test_nclsq_goal_uses_the_best_tuned_classic_and_half_the_budget():
    met = row(evaluate(("nclsq-d4", nclsq_records())), 1, "nclsq-d4")
    assert met["met"] and met["figure"] == "40 of 100 evaluations"
    assert "zo-signsgd (tuned)" in met["detail"] and "0.1" in met["detail"]
    too_few = row(evaluate(("nclsq-d4", nclsq_records(learned_runs=9))), 1, "nclsq-d4")
    assert not too_few["met"] and "fewer than 10" in too_few["detail"]


def attack_records(success=True):
    """zo-sgd (tuned) ends at 2.0 and 1.0 (mean 1.5). l2l-zo's mean curve: 9 at 1,
    5.5 at 20, 1.25 at 40 (<= 1.5: reached, 100 / 40 = 2.5x), 1.1 at the end."""
    win = {"success": True}
    return [
        record("attack", "attack", "zo-sgd", [(1, 9.0), (100, 2.0)], variant="tuned", seed=0,
               assess=win, lr=0.01),
        record("attack", "attack", "zo-sgd", [(1, 9.0), (100, 1.0)], variant="tuned", seed=1,
               assess=win, lr=0.01),
        record("attack", "attack", "l2l-zo", [(1, 9.0), (20, 2.0), (40, 1.0)], seed=0,
               assess=win),
        record("attack", "attack", "l2l-zo", [(1, 9.0), (40, 1.5), (80, 1.2)], seed=1,
               assess={"success": success}),
    ]


def test_attack_goal_reads_the_mean_loss_curve():
    met = row(evaluate(("attack", attack_records())), 2, "attack")
    assert met["met"] and met["figure"] == "2.50x fewer queries"
    assert "mean final 1.1 vs 1.5" in met["detail"]
    fewer_successes = row(evaluate(("attack", attack_records(success=False))), 2, "attack")
    assert not fewer_successes["met"] and "success 50% vs 100%" in fewer_successes["detail"]


def bbob_records(dim, budget, learned_gap, reference_gap=lambda fid: 1.0):
    """zo-adamm's final gap is ``reference_gap(fid)`` (1 on every function by default);
    l2l-zo's is ``learned_gap(fid)``."""
    records = []
    for fid in range(1, 25):
        records.append(record(f"bbob-d{dim}", "bbob", "zo-adamm",
                              [(1, 10.0), (budget, reference_gap(fid))],
                              fid=fid, f_opt=0.0, budget=budget, dim=dim))
        records.append(record(f"bbob-d{dim}", "bbob", "l2l-zo",
                              [(1, 10.0), (budget, learned_gap(fid))], fid=fid, f_opt=0.0,
                              budget=budget, dim=dim))
    return records


def test_bbob_goal_counts_functions_at_the_stated_budget():
    worse_on_four = lambda fid: 2.0 if fid in (3, 7, 15, 24) else 0.5  # noqa: E731
    rows = evaluate(("bbob-d2", bbob_records(2, 2000, worse_on_four)))
    met = row(rows, 3, "bbob-d2")
    assert met["met"] and met["figure"] == "20/24 functions" and "f3,7,15,24" in met["detail"]
    assert row(rows, 4, "bbob-d2")["figure"] == "20/24 functions safe"
    short = row(evaluate(("bbob-d2", bbob_records(2, 400, lambda fid: 0.5))), 3, "bbob-d2")
    assert short["figure"] == "24/24 functions" and not short["met"]
    assert "stated at 1000 d" in short["detail"]


def test_safety_goal_compares_with_the_75th_percentile_of_zo_adamm():
    adamm = [record("q", "quadratic", "zo-adamm", [(1, 9.0), (100, v)], seed=s)
             for s, v in enumerate([1.0, 2.0, 3.0, 4.0, 5.0])]  # 75th percentile: 4
    at_limit = [record("q", "quadratic", "l2l-zo", [(1, 9.0), (100, 4.0)])]
    above = [record("q", "quadratic", "l2l-zo", [(1, 9.0), (100, 4.5)])]
    assert row(evaluate(("q", adamm + at_limit)), 4, "q")["met"]
    assert not row(evaluate(("q", adamm + above)), 4, "q")["met"]


def test_safety_goal_on_bbob_compares_gaps_across_instances():
    """Instances of one BBOB function have their optimum at other values. The gaps above
    the optimum (a measured case, f24 in d = 40, rounded): l2l-zo's median 387 is below
    zo-adamm's 75th percentile 394, so it is safe; pooled raw values (median 484.7 against
    481.3) would have called it unsafe."""
    optimum = {1: 102.6, 2: 93.3, 3: 13.6}
    gaps = {"l2l-zo": [(1, 397.2), (1, 411.4), (2, 423.6), (2, 376.4), (3, 370.9), (3, 373.1)],
            "zo-adamm": [(1, 395.5), (1, 368.4), (2, 383.4), (2, 389.7), (3, 297.9),
                         (3, 407.2)]}
    records = [record("bbob-d40", "bbob", solver, [(1, 1e4), (100, optimum[i] + gap)], fid=24,
                      f_opt=optimum[i], seed=seed, dim=40)
               for solver, runs in gaps.items() for seed, (i, gap) in enumerate(runs)]
    assert row(evaluate(("bbob-d40", records)), 4, "bbob-d40")["met"]


def test_bbob_distances_below_cocos_final_target_tie():
    """Both methods end below 1e-8 on f1 (as on the sphere at d = 10, where the finite
    differences set the floor): solved, a tie for goals 3 and 4. Above it the gaps count."""
    def gaps(learned_f1, reference_f1):
        return bbob_records(2, 2000, lambda fid: learned_f1 if fid == 1 else 0.5,
                            lambda fid: reference_f1 if fid == 1 else 1.0)

    rows = evaluate(("bbob-d2", gaps(4e-9, 2e-9)))
    assert row(rows, 3, "bbob-d2")["figure"] == "24/24 functions"
    assert row(rows, 4, "bbob-d2")["figure"] == "24/24 functions safe"
    rows = evaluate(("bbob-d2", gaps(3e-8, 2e-8)))
    assert row(rows, 3, "bbob-d2")["figure"] == "23/24 functions"
    assert "above it on f1" in row(rows, 4, "bbob-d2")["detail"]


def test_goals_without_their_solvers_are_left_out():
    only_peers = [record("nclsq-d4", "nclsq", "cma-es", [(1, 1.0), (100, 0.1)])]
    assert evaluate(("nclsq-d4", only_peers)) == []
