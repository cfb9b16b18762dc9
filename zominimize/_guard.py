"""The guard: a primary (rule, sampler) that hands over to a classic fallback.

A learned method runs its networks as the primary components and zo-adamm as the
fallback. The guard decides, from the run's progress, when the primary has failed
(it diverged or stalled) and which components are active; ``ZOOptimizer`` applies
its verdicts to the iterate. A method without a fallback has a guard that never
hands over, so every method runs through the same code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .rules import Rule
from .samplers import Sampler


class Components(NamedTuple):
    """What steps (the rule) and what chooses the queries (the sampler)."""

    rule: Rule
    sampler: Sampler


class GuardState(NamedTuple):
    """Whether the fallback runs: why (None while the primary runs) and since when."""

    fallback: str | None
    fallback_at: int | None


class Progress(NamedTuple):
    """What the guard reads after an iteration."""

    f_start: float          # f at the first iterate
    f_iterate: float        # f at the current iterate
    f_best: float           # the lowest value so far
    since_improvement: int  # iterations since f_best last fell
    ftol_met: bool          # the ftol test is met


class Guard(NamedTuple):
    """A primary and an optional fallback, and when to switch between them.

    Attributes
    ----------
    primary : Components
        What runs first.
    fallback : Components or None
        What runs from the best point once the primary has failed; None: never switch.
    watch : bool
        Whether divergence and stalls hand over (the ``guard`` option). A primary that
        produces non-finite numbers is replaced whatever this says (see
        ``can_hand_over``), as it cannot serve.
    patience : int
        Iterations without improvement that count as a stall (``guard_patience``).
    """

    primary: Components
    fallback: Components | None = None
    watch: bool = False
    patience: int = 0

    def init(self, reason: str | None = None) -> GuardState:
        """The state at the start: the primary runs, or (``reason`` given: the requested
        method could not start and this guard's primary is its fallback) the fallback
        runs from iteration 0."""
        return GuardState(reason, None if reason is None else 0)

    def handed_over(self, state: GuardState) -> bool:
        """Whether the fallback has taken over from the primary."""
        return self.fallback is not None and state.fallback_at is not None

    def active(self, state: GuardState) -> Components:
        """The components that run in ``state``."""
        return self.fallback if self.handed_over(state) else self.primary

    def can_hand_over(self, state: GuardState) -> bool:
        """Whether there is a fallback that has not yet taken over."""
        return self.fallback is not None and state.fallback_at is None

    def holds_ftol(self, state: GuardState) -> bool:
        """Whether the ftol test may not end the run yet: a watched primary that meets it
        has stalled, and hands over instead; the fallback then gets a full window."""
        return self.watch and self.can_hand_over(state)

    def hand_over(self, state: GuardState, nit: int, reason: str) -> GuardState:
        """The state once the fallback runs from iteration ``nit``, for ``reason``."""
        return GuardState(f"guard: {reason} at iteration {nit}", nit)

    def reason_to_hand_over(self, state: GuardState, progress: Progress) -> str | None:
        """Why a watched primary should hand over now, or None.

        Diverged: the value at the iterate exceeds the starting value f0 by more than
        max(2 (f0 - f_best), |f0| / 2). Stalled: no improvement for ``patience``
        iterations, or the ftol test met.
        """
        if not (self.watch and self.can_hand_over(state)):
            return None
        f0, f, best = progress.f_start, progress.f_iterate, progress.f_best
        if math.isfinite(f0) and f - f0 > max(2 * (f0 - best), 0.5 * abs(f0)):
            return f"diverged (f = {f:.6g} at the iterate, {f0:.6g} at the start)"
        if progress.since_improvement >= self.patience:
            return f"stalled (no improvement in {progress.since_improvement} iterations)"
        if progress.ftol_met:
            return "stalled (the ftol test is met)"
        return None

    def backs_off(self, state: GuardState, progress: Progress) -> bool:
        """Whether a watched run, once handed over, should go back to its best point with
        half the step: each stall after the switch says the fallback's steps are too large
        to improve on the best point (the count of iterations without improvement runs on
        across the switch)."""
        return (self.watch and self.handed_over(state)
                and progress.since_improvement >= self.patience)
