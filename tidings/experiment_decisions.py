"""The decision rules: when a test has a winner, is futile, or goes on. Pure: no Temporal, no I/O.

Sequential rule (the default), on the confidence sequence of `tidings.experiment_statistics`.
    Several variants: each is compared with the control at alpha / (k - 1) (Bonferroni), so the
    chance that any comparison errs at any time stays under alpha. A variant wins when its
    interval lies above 0; among several winners the highest observed rate is chosen (the rule
    proves "better than control", not "best of the variants"). The test ends for futility when
    every variant's relative-lift interval lies below `minimum_lift` (default 0: every variant
    is shown worse than control); the intervals hold at all times together, so this ending has
    the same error guarantee. Nothing is decided before every arm has `minimum_sample`.

Bandit rule: Thompson sampling over Beta(1 + successes, 1 + failures) posteriors. Each arm's
    traffic share is its posterior probability of being best (Monte Carlo, RNG passed in),
    mixed with a floor so every arm keeps `floor_share` of traffic. The bandit names a leader
    when its probability of being best reaches `bandit_confidence` (0.95) with every arm at its
    minimum sample; this is a Bayesian rule without the frequentist guarantee above, and the
    adaptive allocation is why the bandit does not use the confidence sequence.
"""

from __future__ import annotations

import random
from enum import StrEnum

from pydantic import BaseModel, Field

from tidings.experiment_config import ExperimentConfig
from tidings.experiment_statistics import ArmCounts, Comparison, compare

BANDIT_CONFIDENCE = 0.95
THOMPSON_DRAWS = 2_000


class Ending(StrEnum):
    WINNER = "winner"
    FUTILITY = "futility"  # no variant beats control by the minimum lift
    MAX_DURATION = "max_duration"  # no winner within the maximum duration
    STOPPED = "stopped"  # stopped by hand


class Decision(BaseModel):
    ending: Ending | None = None  # None: keep going
    winner: str | None = None
    reason: str = ""
    comparisons: list[Comparison] = Field(default_factory=list)
    probability_best: dict[str, float] = Field(default_factory=dict)  # bandit


# --- the sequential rule -------------------------------------------------------------------------


def comparison_alpha(config: ExperimentConfig) -> float:
    """Bonferroni: k - 1 comparisons with the control share the family's alpha."""
    return config.alpha / (len(config.variants) - 1)


def decide_sequential(config: ExperimentConfig, counts: dict[str, ArmCounts]) -> Decision:
    control = config.control
    a = comparison_alpha(config)
    base = counts.get(control.name, ArmCounts())
    comparisons = [
        compare(base, counts.get(v.name, ArmCounts()), alpha=a,
                tuning_sample=config.tuning_sample, name=v.name)
        for v in config.variants if not v.control
    ]  # fmt: skip
    ready = all(counts.get(v.name, ArmCounts()).delivered >= config.minimum_sample
                for v in config.variants)  # fmt: skip
    decision = Decision(comparisons=comparisons)
    if not ready:
        decision.reason = f"waiting for {config.minimum_sample} delivered per variant"
        return decision
    winners = [c for c in comparisons if c.difference_low is not None and c.difference_low > 0]
    if winners:
        best = max(winners, key=lambda c: c.rate)
        decision.ending, decision.winner = Ending.WINNER, best.variant
        decision.reason = (
            f"{best.variant} beats {control.name}: {best.rate:.2%} vs {best.control_rate:.2%},"
            f" difference {best.difference:+.2%}"
            f" [{best.difference_low:+.2%}, {best.difference_high:+.2%}]"
            f" at alpha {a:g} per comparison"
        )
        return decision
    below = [
        c for c in comparisons
        if (c.lift_high is not None and c.lift_high < config.minimum_lift)
        or (c.lift_high is None and c.difference_high is not None and c.difference_high < 0)
    ]  # fmt: skip
    if len(below) == len(comparisons):
        decision.ending, decision.winner = Ending.FUTILITY, control.name
        decision.reason = (
            f"no variant beats {control.name} by {config.minimum_lift:.0%}: every lift"
            f" interval lies below it (highest upper bound"
            f" {max((c.lift_high or 0.0) for c in comparisons):+.2%})"
        )
        return decision
    decision.reason = "no interval excludes zero yet"
    return decision


# --- the bandit ----------------------------------------------------------------------------------


def probability_best(
    counts: list[ArmCounts], rng: random.Random, draws: int = THOMPSON_DRAWS
) -> list[float]:
    wins = [0] * len(counts)
    params = [(1 + c.reached, 1 + c.delivered - c.reached) for c in counts]
    for _ in range(draws):
        samples = [rng.betavariate(a, b) for a, b in params]
        wins[samples.index(max(samples))] += 1
    return [w / draws for w in wins]


def bandit_weights(p_best: list[float], floor_share: float) -> list[float]:
    """Each arm gets `floor_share`, the rest is shared in proportion to P(best)."""
    k = len(p_best)
    free = 1 - floor_share * k
    return [floor_share + free * p for p in p_best]


def decide_bandit(
    config: ExperimentConfig, counts: dict[str, ArmCounts], rng: random.Random
) -> tuple[Decision, list[float]]:
    names = [v.name for v in config.variants]
    arms = [counts.get(n, ArmCounts()) for n in names]
    p_best = probability_best(arms, rng)
    weights = bandit_weights(p_best, config.floor_share)
    decision = Decision(probability_best=dict(zip(names, p_best, strict=True)))
    leader = max(range(len(names)), key=lambda i: p_best[i])
    ready = all(a.delivered >= config.minimum_sample for a in arms)
    if ready and p_best[leader] >= BANDIT_CONFIDENCE:
        decision.ending, decision.winner = Ending.WINNER, names[leader]
        decision.reason = (
            f"{names[leader]} is best with probability {p_best[leader]:.1%}"
            f" ({arms[leader].rate:.2%} of {arms[leader].delivered})"
        )
    else:
        decision.reason = f"leader {names[leader]} with probability {p_best[leader]:.1%}"
    return decision, weights
