"""One hostile value must not wreck the iterate, and the stopping tests must agree.

A huge finite value, an outlier or a rule that overflows leaves every query and
iterate finite and inside the bounds; a guarded method's fallback gets its turn
before the ftol test may end the run; every ZO method converges on a smooth
problem with the defaults a user gets; a state loads completely or not at all.
"""

import sys

import numpy as np
import pytest

import zominimize
from conftest import METHODS, Recorder
from zominimize import OptimizerStateError, Status, ZOOptimizer
from zominimize.rules import Rule, SGDState

CLASSIC = ["zo-sgd", "zo-signsgd", "zo-adamm"]


def quadratic(x):
    return float(np.sum((x - 1.0) ** 2))


class Glitch(Recorder):
    """``quadratic``, but ``bad`` at the ``at``-th call (1-based)."""

    def __init__(self, at: int, bad: float):
        super().__init__(quadratic)
        self.at, self.bad = at, bad

    def __call__(self, x, *args):
        value = super().__call__(x, *args)
        return self.bad if self.calls == self.at else value


def glitch_run(method, at, bad, **options):
    fun = Glitch(at, bad)
    res = zominimize.minimize(fun, np.zeros(4), method=method,
                              options={"q": 5, "seed": 0, "maxiter": 300, **options})
    return fun, res


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [sys.float_info.max, 1e300, 1e10])
@pytest.mark.parametrize("at", [7, 8])  # the iterate, then a query, of iteration 1
def test_one_huge_value_leaves_the_run_unharmed(method, bad, at):
    fun, res = glitch_run(method, at, bad)
    clean = zominimize.minimize(quadratic, np.zeros(4), method=method,
                                options={"q": 5, "seed": 0, "maxiter": 300})
    assert all(np.isfinite(p).all() for p in fun.points)
    assert np.isfinite(res.x_last).all()
    assert res.nfev == fun.calls
    assert res.fun == quadratic(res.x)
    assert res.fun < max(1e3 * clean.fun, 1e-6)
    assert res.nfev_outliers == 1


def test_an_outlier_never_makes_a_stalled_run_a_success():
    """With the screening off, the 1e10 outlier stalls zo-adamm (its max-corrected second
    moment never decays): the screening is what keeps the run going."""
    _, unscreened = glitch_run("zo-adamm", 8, 1e10, outlier_factor=np.inf)
    _, screened = glitch_run("zo-adamm", 8, 1e10)
    assert unscreened.fun > 1.0
    assert screened.fun < 1e-6 and screened.success


def test_a_best_value_that_is_an_outlier_is_never_success():
    """A single absurdly low value becomes res.fun (the lowest value fun returned), but the
    run does not report success on it."""
    fun, res = glitch_run("zo-adamm", 8, -1e300, maxiter=400)
    assert res.fun == -1e300 and res.nfev_outliers == 1
    assert res.success is False and res.status == Status.MAXITER


def test_outlier_screening_leaves_clean_runs_bit_identical(method):
    runs = [zominimize.minimize(quadratic, np.zeros(6), method=method,
                                options={"seed": 1, "maxiter": 200, "outlier_factor": f})
            for f in (1e3, np.inf)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0].x_last, runs[1].x_last)
    assert runs[0].nfev_outliers == 0


def test_only_a_minority_far_from_the_others_is_an_outlier():
    outliers = zominimize.estimators.outliers
    assert outliers(np.array([0.0, 1e-3, -2e-3, 1e-3, 1e9]), 1e3).tolist() == [0, 0, 0, 0, 1]
    assert not outliers(np.array([0.0, 1e-3, 1e9, 2e9, -1e9]), 1e3).any()  # no majority
    assert not outliers(np.array([1.0, 1.0, 1.0, 5.0]), 1e3).any()  # a plateau: spread 0
    assert not outliers(np.array([1.0, 1e300]), 1e3).any()  # two values: no median to trust
    assert not outliers(np.array([0.0, 1e-3, -2e-3, 1e9]), np.inf).any()


def test_values_along_known_directions_are_judged_by_their_reach():
    """A split iteration's two subspace values (reach > 0) may lie far outside the random
    directions' spread, as far as their reach allows; a hostile value does not, wherever
    it lies, and a random direction's value is still judged by the spread."""
    outliers = zominimize.estimators.outliers
    reach = np.array([0.0, 0.5, 0.5, 0, 0, 0])
    clean = np.array([1.0, 1.3, 0.8, 1 + 1e-6, 1 - 2e-6, 1 + 1e-6])
    assert outliers(clean, 1e3).tolist() == [0, 1, 1, 0, 0, 0]  # without the reach
    assert not outliers(clean, 1e3, reach).any()
    for i in range(6):
        hostile = clean.copy()
        hostile[i] = 1e6
        assert outliers(hostile, 1e3, reach).tolist() == [j == i for j in range(6)]
    plateau = np.array([1.0, 1.3, 1e6, 1.0, 1.0, 1.0])  # spread 0: the reach still judges
    assert outliers(plateau, 1e3, reach).tolist() == [0, 0, 1, 0, 0, 0]
    assert not outliers(plateau, np.inf, reach).any()


def test_outlier_factor_is_checked():
    with pytest.raises(ValueError, match="outlier_factor must be a positive number or inf, got 0"):
        zominimize.minimize(quadratic, np.zeros(2), method="zo-adamm",
                            options={"outlier_factor": 0})


# ---------------------------------------------------------------- rules that overflow

def overflowing_rule() -> Rule:
    """A rule whose steps are NaN from its fourth update on."""

    def update(g, f, state):
        count = state.lr + 1
        return (np.full_like(g, np.nan) if count > 3 else -0.01 * g), SGDState(count)

    return Rule(lambda d: SGDState(0.0), update, SGDState)


def drive(opt, fun, iterations):
    points_seen = []
    for _ in range(iterations):
        if opt.status is not None:
            break
        points = opt.ask()
        points_seen.append(points)
        opt.tell(points, [fun(p) for p in points])
    return points_seen


def test_a_non_finite_step_of_the_learned_rule_hands_over_whatever_the_guard():
    opt = ZOOptimizer("l2l-zo", np.zeros(4), seed=0, maxiter=50, guard=False)
    opt._rule = overflowing_rule()
    opt._rule_state = opt._rule.init(4)
    points = drive(opt, quadratic, 50)
    assert all(np.isfinite(p).all() for p in points)
    assert opt.fallback == "guard: non-finite step at iteration 4" and opt.fallback_at == 4
    assert opt.result().fun < quadratic(np.zeros(4))


def test_a_non_finite_step_of_a_classic_rule_restarts_it_from_the_best_point():
    opt = ZOOptimizer("zo-sgd", np.zeros(4), seed=0, maxiter=20, lr=0.01)
    opt._rule = overflowing_rule()
    opt._rule_state = opt._rule.init(4)
    points = drive(opt, quadratic, 20)
    assert all(np.isfinite(p).all() for p in points)
    assert np.isfinite(opt.x).all()
    assert opt.settings["lr"] == 0.01


def test_non_finite_query_directions_hand_over_to_the_standard_sampler():
    opt = ZOOptimizer("l2l-zo", np.zeros(4), seed=0, maxiter=20, query_ratio=1.0)
    sampler = opt._sampler
    opt._sampler = sampler._replace(draw=lambda state, rng, law, rows: None)
    points = drive(opt, quadratic, 20)
    assert all(np.isfinite(p).all() for p in points)
    assert opt.fallback.startswith("guard: non-finite query directions")


# ---------------------------------------------------------------- stopping rules

def test_with_defaults_the_fallback_runs_a_full_ftol_window_after_the_guard():
    """ftol's patience and the guard's are both 100: the guard hands over first, and the
    ftol test may end the run only once the fallback has had its own window."""
    handed_over = 0
    for seed in range(3):
        res = zominimize.minimize(lambda x: float(np.abs(x - 1).sum()), np.zeros(10),
                                  method="l2l-zo", options={"seed": seed})
        if res.fallback_at:
            handed_over += 1
            assert res.nit >= res.fallback_at + 100
        assert res.status in (Status.FTOL, Status.MAXITER)
    assert handed_over


def test_a_guarded_run_that_meets_ftol_hands_over_instead_of_stopping():
    res = zominimize.minimize(quadratic, np.zeros(5), method="l2l-zo",
                              options={"seed": 0, "ftol": 1e-2, "patience": 5})
    assert res.fallback.startswith("guard: stalled (the ftol test is met")
    assert res.status == Status.FTOL and res.nit >= res.fallback_at + 5


@pytest.mark.parametrize("method", METHODS)
def test_every_method_converges_on_scipys_custom_method_check(method):
    """scipy's check of a custom method: a quadratic at d = 5 from 1.5, 20,000
    evaluations, with the defaults a user gets."""
    res = zominimize.minimize(lambda x: float(x @ x), np.full(5, 1.5), method=method,
                              options={"maxfev": 20000, "seed": 0})
    assert res.success
    np.testing.assert_allclose(res.x, 0.0, atol=1e-3)


def test_sign_sgd_halves_its_step_on_a_stall_only():
    from zominimize.rules import sign_sgd
    rule = sign_sgd(0.1, halve_after=3)
    state = rule.init(2)
    g = np.array([1.0, -1.0])
    for f in (5.0, 4.0, 3.0):
        step, state = rule.update(g, f, state)
    assert state.lr == 0.1
    for f in (3.0, 3.5, 4.0):
        step, state = rule.update(g, f, state)
    assert state.lr == 0.05 and step.tolist() == [-0.05, 0.05]
    fixed = sign_sgd(0.1, halve_after=0)
    state = fixed.init(2)
    for _ in range(20):
        step, state = fixed.update(g, 1.0, state)
    assert state.lr == 0.1


# ---------------------------------------------------------------- states

def guarded_optimizer():
    opt = ZOOptimizer("l2l-zo", np.zeros(4), seed=0, maxiter=300, guard_patience=5, ftol=0)
    return opt


def test_loading_a_state_from_before_the_guard_fired_restores_the_learned_rule():
    early = guarded_optimizer()
    drive(early, quadratic, 3)
    before = early.state_dict()
    late = guarded_optimizer()
    drive(late, lambda x: 1.0, 30)  # a flat objective: the guard fires on the stall
    assert late.fallback_at is not None
    late.load_state_dict(before)
    assert late.fallback_at is None and late.nit == 3
    reference = guarded_optimizer()
    reference.load_state_dict(before)
    np.testing.assert_array_equal(late.ask(), reference.ask())
    assert type(late._rule_state) is type(reference._rule_state)


def test_loading_a_state_from_after_the_guard_fired_restores_the_fallback():
    late = guarded_optimizer()
    drive(late, lambda x: 1.0, 30)
    after = late.state_dict()
    fresh = guarded_optimizer()
    fresh.load_state_dict(after)
    assert fresh.fallback_at == late.fallback_at and fresh.method == "l2l-zo"
    np.testing.assert_array_equal(fresh.ask(), late.ask())


def broken(state, **changes):
    state = dict(state)
    for key, value in changes.items():
        if value is KeyError:
            del state[key]
        else:
            state[key] = value
    return state


@pytest.mark.parametrize("field, value, message", [
    ("rng", KeyError, "state has no field 'rng'"),
    ("x", np.zeros(5), r"state field 'x': expected shape \(4,\), got \(5,\)"),
    ("x", [np.nan] * 4, "state field 'x': contains NaN"),
    ("x", np.full(4, 2.0), "state field 'x': lies outside the bounds"),
    ("nit", -1, "state field 'nit': expected an integer"),
    ("nfev", 2.5, "state field 'nfev': expected an integer"),
    ("rng", {"bit_generator": "os.system", "state": {}}, "state field 'rng'"),
    ("rng", {"bit_generator": "PCG64", "state": {"nonsense": 1}}, "state field 'rng'"),
    ("rule_state", {"count": 1}, "state field 'rule_state'"),
    ("step_scale", 0.0, "state field 'step_scale'"),
    ("status", 42, "state field 'status'"),
    ("best_trace", "abc", "state field 'best_trace'"),
    ("fallback_at", 10 ** 6, "state field 'fallback_at'"),
    ("x_best", None, "state field 'f_best'"),
])
def test_a_bad_field_names_itself_and_leaves_the_optimizer_untouched(field, value, message):
    opt = ZOOptimizer("zo-adamm", np.zeros(4), bounds=[(-1, 1)] * 4, seed=0, maxiter=50)
    drive(opt, quadratic, 5)
    good = opt.state_dict()
    before = opt.state_dict()
    with pytest.raises(OptimizerStateError, match=message):
        opt.load_state_dict(broken(good, **{field: value}))
    after = opt.state_dict()
    assert after.keys() == before.keys()
    for key in before:
        np.testing.assert_equal(after[key], before[key])


def test_a_rule_state_of_another_length_is_refused():
    opt = ZOOptimizer("zo-adamm", np.zeros(3), seed=0)
    other = ZOOptimizer("zo-adamm", np.zeros(4), seed=0)
    state = opt.state_dict()
    state["rule_state"] = other.state_dict()["rule_state"]
    with pytest.raises(OptimizerStateError, match=r"'rule_state': \['m'\] must be a real array"):
        opt.load_state_dict(state)


# ---------------------------------------------------------------- bounds

@pytest.mark.parametrize("pair", [(np.inf, np.inf), (-np.inf, -np.inf), (np.inf, None),
                                  (None, -np.inf)])
def test_bounds_without_a_finite_point_are_refused(pair):
    with pytest.raises(ValueError, match="at index 0 leaves no finite point"):
        zominimize.minimize(quadratic, np.zeros(2), method="zo-adamm", bounds=[pair] * 2)


@pytest.mark.parametrize("method", ["zo-signsgd", "l2l-zo"])
def test_huge_bounds_give_a_finite_scale_and_the_run_moves(method):
    """The box's RMS width overflowed before, so x_scale was inf. (ZO-AdaMM's eps and
    ZO-SGD's automatic lr, first step / RMS(g_0), are beyond float64 at this scale.)"""
    opt = ZOOptimizer(method, np.zeros(3), bounds=[(-1e160, 1e160)] * 3)
    assert opt.settings["x_scale"] == pytest.approx(0.5e160)
    res = zominimize.minimize(lambda x: float(np.sum((x / 1e159 - 1) ** 2)), np.zeros(3),
                              method=method, bounds=[(-1e160, 1e160)] * 3,
                              options={"seed": 0, "maxiter": 300})
    assert res.fun < 1e-6 and np.isfinite(res.x_last).all()


def test_a_huge_start_point_gives_a_finite_scale():
    opt = ZOOptimizer("zo-adamm", np.full(3, 1e200))
    assert opt.settings["x_scale"] == pytest.approx(1e200)


def test_tell_refuses_a_value_too_large_for_a_float_and_accepts_any_real():
    from fractions import Fraction
    opt = ZOOptimizer("zo-adamm", np.zeros(2), q=2, seed=0)
    points = opt.ask()
    with pytest.raises(zominimize.ObjectiveValueError, match="values must be 3 real numbers"):
        opt.tell(points, [10 ** 400, 1.0, 2.0])
    opt.tell(points, [Fraction(1, 2), Fraction(1, 3), 1])
    assert opt.nit == 1 and opt.f_best == pytest.approx(1 / 3)
