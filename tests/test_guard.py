"""The guard on its own: when a primary hands over to its fallback, and what runs then."""

import pytest

from zominimize import rules, samplers
from zominimize._guard import Components, Guard, GuardState, Progress

PRIMARY = Components(rules.sgd(0.1, first_step=0.1), samplers.standard())
FALLBACK = Components(rules.adamm(0.1, 0.9, 0.999, 1e-8), samplers.standard())
WATCHED = Guard(PRIMARY, FALLBACK, watch=True, patience=5)
RUNNING = WATCHED.init()


def progress(f_iterate=1.0, f_best=1.0, since_improvement=0, ftol_met=False, f_start=2.0):
    return Progress(f_start, f_iterate, f_best, since_improvement, ftol_met)


def test_the_primary_runs_until_the_guard_hands_over():
    assert RUNNING == GuardState(None, None)
    assert WATCHED.active(RUNNING) is PRIMARY
    handed = WATCHED.hand_over(RUNNING, 7, "stalled")
    assert handed == GuardState("guard: stalled at iteration 7", 7)
    assert WATCHED.active(handed) is FALLBACK
    assert not WATCHED.can_hand_over(handed)
    assert WATCHED.reason_to_hand_over(handed, progress(since_improvement=99)) is None


@pytest.mark.parametrize("seen, reason", [
    (progress(f_iterate=4.1), "diverged"),        # 4.1 - 2 > max(2 (2 - 1), 1)
    (progress(since_improvement=5), "stalled (no improvement in 5"),
    (progress(ftol_met=True), "stalled (the ftol test is met"),
])
def test_divergence_and_stalls_hand_over(seen, reason):
    assert WATCHED.reason_to_hand_over(RUNNING, seen).startswith(reason)


def test_progress_within_bounds_keeps_the_primary():
    assert WATCHED.reason_to_hand_over(RUNNING, progress(f_iterate=3.9,
                                                         since_improvement=4)) is None


def test_an_unwatched_guard_never_hands_over_on_its_own_but_can_be_made_to():
    unwatched = WATCHED._replace(watch=False)
    assert unwatched.reason_to_hand_over(RUNNING, progress(f_iterate=1e9)) is None
    assert not unwatched.holds_ftol(RUNNING)
    assert unwatched.can_hand_over(RUNNING)  # a non-finite step still hands over


def test_ftol_is_held_only_while_a_watched_primary_runs():
    assert WATCHED.holds_ftol(RUNNING)
    assert not WATCHED.holds_ftol(WATCHED.hand_over(RUNNING, 3, "x"))


def test_after_the_switch_each_stall_backs_off():
    handed = WATCHED.hand_over(RUNNING, 3, "x")
    assert WATCHED.backs_off(handed, progress(since_improvement=5))
    assert not WATCHED.backs_off(handed, progress(since_improvement=4))
    assert not WATCHED.backs_off(RUNNING, progress(since_improvement=5))


def test_a_method_that_could_not_start_runs_its_fallback_from_iteration_0():
    alone = Guard(FALLBACK)
    state = alone.init("torch is not installed")
    assert state == GuardState("torch is not installed", 0)
    assert alone.active(state) is FALLBACK
    assert not alone.can_hand_over(state) and not alone.holds_ftol(state)
