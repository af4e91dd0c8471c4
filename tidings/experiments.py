"""A/B tests: configuration, stable assignment and the decision rules. Pure: no Temporal, no I/O.

Assignment
    `assign()` hashes experiment id and user id with SHA-256 (never `hash()`, which is salted per
    process): the same user gets the same arm in every process and after every restart. Two
    independent hashes are used: one places the user in or out of the holdout, the other picks
    the variant from the split (or, in bandit mode, the current weights).

Sequential rule (the default): an asymptotic confidence sequence
    (Waudby-Smith, Wu, Ramdas, Kallus, Karampatziakis, "Time-uniform central limit theory and
    asymptotic confidence sequences", 2023; the one GrowthBook ships). For the difference of two
    rates d = p_v - p_c with N = n_c + n_v units and allocation shares w = n / N, the per-unit
    variance is

        sigma^2 = p_c (1 - p_c) / w_c + p_v (1 - p_v) / w_v      (so Var(d_hat) = sigma^2 / N)

    and the interval, valid simultaneously at every N however often it is looked at, is

        d_hat +/- sigma * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * ln( sqrt(N rho^2 + 1) / alpha ) )

        rho = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N* )

    N* (`tuning_sample`, default 10,000 units per comparison) is the total sample at which the
    sequence is narrowest; any N* keeps the guarantee, a good one only makes it tighter. sigma
    is outside the root (as in the paper and in GrowthBook's gbstats): with sigma^2 inside it
    and rho tuned from N* alone, the sequence would be narrowest at N*/sigma^2 (about 3 N* for
    rates near 10%), not at N*. Rates in sigma use (x + 0.5) / (n + 1) so that an arm with no
    successes yet does not get a zero-width interval. The relative lift d / p_c gets the same
    sequence with its delta-method variance; decisions use the difference.

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

import hashlib
import math
import random
import re
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tidings.models import Channel, Identifier, Priority, check_data_size

HOLDOUT = "holdout"
DEFAULT_ALPHA = 0.05
DEFAULT_TUNING_SAMPLE = 10_000
DEFAULT_FLOOR_SHARE = 0.05
BANDIT_CONFIDENCE = 0.95
THOMPSON_DRAWS = 2_000


class Metric(StrEnum):
    OPENED = "opened"  # an open or a click (a click implies the message was seen)
    CLICKED = "clicked"
    CONVERTED = "converted"

    @property
    def engagement_types(self) -> tuple[str, ...]:
        return ("opened", "clicked") if self is Metric.OPENED else (self.value,)


class Rule(StrEnum):
    SEQUENTIAL = "sequential"
    BANDIT = "bandit"


class OnWinner(StrEnum):
    STOP = "stop"
    PROMOTE = "promote"


class Ending(StrEnum):
    WINNER = "winner"
    FUTILITY = "futility"  # no variant beats control by the minimum lift
    MAX_DURATION = "max_duration"  # no winner within the maximum duration
    STOPPED = "stopped"  # stopped by hand


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> Any:
    """'90s', '15m', '12h', '7d', '2w' as well as pydantic's seconds and ISO 8601."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


class _Config(BaseModel):
    """Ignores unknown fields when it crosses Temporal (a newer client may add one); the edges
    validate with `context={"edge": True}`, which refuses them, naming the field."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_at_the_edge(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("edge"):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"{unknown[0]}: unknown field")
        return data


class Variant(_Config):
    """One arm: what its users are sent. Template, data and channels each fall back to the
    experiment's own when left out."""

    name: Identifier
    template_id: Identifier | None = None
    data: dict[str, Any] | None = None
    channels: list[Channel] | None = None
    control: bool = False
    # Resolved by the front door when the experiment is created; the workflow uses these.
    template_version: int | None = None
    priority: Priority | None = None
    fallback: list[Channel] | None = None

    @field_validator("data")
    @classmethod
    def _bounded(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else check_data_size(v)

    @field_validator("name")
    @classmethod
    def _not_holdout(cls, v: str) -> str:
        if v == HOLDOUT:
            raise ValueError(f"{HOLDOUT!r} is reserved for the users who get nothing")
        return v


class ExperimentConfig(_Config):
    # No '-': notification ids are exp-<experiment>-<user>, which must not be ambiguous.
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]{0,63}$")
    name: str = Field(default="", max_length=200)
    template_id: Identifier | None = None  # the default for variants that name none
    data: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(min_length=2, max_length=10)
    split: list[int] | None = None  # whole percentages, one per variant; equal when left out
    holdout_percent: int = Field(default=0, ge=0, le=50)
    metric: Metric = Metric.CONVERTED
    attribution_window: timedelta = timedelta(hours=72)
    minimum_sample: int = Field(default=100, ge=10)  # per variant, before anything is decided
    minimum_lift: float = Field(default=0.0, ge=0.0, le=10.0)  # relative, for futility
    max_duration: timedelta = timedelta(days=30)
    check_every: timedelta = timedelta(minutes=15)  # how often the parent reads the counts
    rule: Rule = Rule.SEQUENTIAL
    on_winner: OnWinner = OnWinner.STOP
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0.0, lt=0.5)
    tuning_sample: int = Field(default=DEFAULT_TUNING_SAMPLE, ge=100)
    floor_share: float = Field(default=DEFAULT_FLOOR_SHARE, ge=0.0, le=0.2)  # per arm, bandit

    _durations = field_validator(
        "attribution_window", "max_duration", "check_every", mode="before"
    )(parse_duration)

    @field_validator("attribution_window", "max_duration", "check_every")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("must be at least 1 second")
        return v

    @field_validator("data")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: names must be unique")
        controls = [v.name for v in self.variants if v.control]
        if len(controls) != 1:
            raise ValueError(
                f"variants: exactly one must have control: true (found {len(controls)})"
            )
        for i, v in enumerate(self.variants):
            if v.template_id is None and self.template_id is None:
                raise ValueError(
                    f"variants[{i}].template_id: give one here or template_id for the experiment"
                )
        if self.split is not None:
            if len(self.split) != len(self.variants):
                raise ValueError(
                    f"split: {len(self.split)} shares for {len(self.variants)} variants"
                )
            if any(s < 1 for s in self.split):
                raise ValueError("split: every share must be a whole percentage of at least 1")
            if sum(self.split) != 100:
                raise ValueError(f"split: shares must sum to 100, not {sum(self.split)}")
        if self.max_duration <= self.check_every:
            raise ValueError("max_duration: must be longer than check_every")
        if self.rule is Rule.BANDIT and self.floor_share * len(self.variants) > 1:
            raise ValueError("floor_share: the floors of all arms exceed 100%")
        return self

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.control)

    @property
    def shares(self) -> list[float]:
        """The configured split as fractions (equal shares when none is given)."""
        if self.split is None:
            return [1.0 / len(self.variants)] * len(self.variants)
        return [s / 100 for s in self.split]

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def parse_config(data: Any) -> ExperimentConfig:
    """Validate at the edge: unknown fields are refused (pydantic ValidationError)."""
    return ExperimentConfig.model_validate(data, context={"edge": True})


_FIELD = re.compile(r"^[A-Za-z_][\w.\[\]]*$")


def config_error(error: ValidationError) -> tuple[str, str]:
    """(field, reason) of a config's first problem. Checks across fields say which field in
    their message ("split: ..."), since pydantic locates them at the model itself."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    head, sep, rest = message.partition(": ")
    if sep and _FIELD.match(head):
        return (f"{loc}.{head}" if loc else head), rest
    return loc or "config", message


# --- assignment ----------------------------------------------------------------------------------


def bucket(experiment_id: str, user_id: str, salt: str) -> float:
    """A number in [0, 1), the same for these arguments in every process and every run."""
    digest = hashlib.sha256(f"{experiment_id}\x1f{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Claim(BaseModel):
    """A user's place in a test as the database holds it. `first` is False when the user had
    been enrolled already and this is that first enrolment, returned again."""

    experiment_id: str
    user_id: str
    variant: str
    notification_id: str | None = None
    first: bool = True
    claim_id: str | None = None  # the claim that enrolled the user


def in_holdout(config: ExperimentConfig, user_id: str) -> bool:
    return bucket(config.id, user_id, "holdout") < config.holdout_percent / 100


def pick(u: float, names: list[str], weights: list[float]) -> str:
    total = sum(weights)
    edge = 0.0
    for name, weight in zip(names, weights, strict=True):
        edge += weight / total
        if u < edge:
            return name
    return names[-1]


def assign(config: ExperimentConfig, user_id: str, weights: list[float] | None = None) -> str:
    """`holdout` or a variant's name. `weights` (bandit) replaces the configured split."""
    if in_holdout(config, user_id):
        return HOLDOUT
    names = [v.name for v in config.variants]
    return pick(bucket(config.id, user_id, "variant"), names, weights or config.shares)


# --- the sequential rule -------------------------------------------------------------------------


class ArmCounts(BaseModel):
    delivered: int = 0
    reached: int = 0  # reached the metric within the attribution window

    @property
    def rate(self) -> float:
        return self.reached / self.delivered if self.delivered else 0.0


def rho(alpha: float, tuning_sample: int) -> float:
    c = -2 * math.log(alpha)
    return math.sqrt((c + math.log(c + 1)) / tuning_sample)


def halfwidth(n: int, sigma2: float, alpha: float, tuning_sample: int) -> float:
    """Half-width of the asymptotic confidence sequence at total sample `n` for a mean whose
    per-unit variance is `sigma2` (module docstring)."""
    if n <= 0:
        return math.inf
    r2 = rho(alpha, tuning_sample) ** 2
    nr2 = n * r2
    return math.sqrt(sigma2) * math.sqrt(
        2 * (nr2 + 1) / (n * n * r2) * math.log(math.sqrt(nr2 + 1) / alpha)
    )


def _smoothed(arm: ArmCounts) -> float:
    return (arm.reached + 0.5) / (arm.delivered + 1)


class Comparison(BaseModel):
    variant: str
    rate: float
    control_rate: float
    difference: float
    difference_low: float | None  # None while an arm has nothing delivered
    difference_high: float | None
    lift: float | None  # relative, None while the control rate is 0
    lift_low: float | None
    lift_high: float | None
    alpha: float  # per comparison, after the correction for several variants


def compare(
    control: ArmCounts, variant: ArmCounts, *, alpha: float, tuning_sample: int, name: str = ""
) -> Comparison:
    n = control.delivered + variant.delivered
    pc, pv = control.rate, variant.rate
    diff = pv - pc
    if control.delivered == 0 or variant.delivered == 0:
        return Comparison(
            variant=name, rate=pv, control_rate=pc, difference=diff, difference_low=None,
            difference_high=None, lift=None, lift_low=None, lift_high=None, alpha=alpha,
        )  # fmt: skip
    wc, wv = control.delivered / n, variant.delivered / n
    sc, sv = _smoothed(control), _smoothed(variant)
    sigma2 = sc * (1 - sc) / wc + sv * (1 - sv) / wv
    hw = halfwidth(n, sigma2, alpha, tuning_sample)
    lift = lift_low = lift_high = None
    if pc > 0:
        lift = pv / pc - 1
        # Delta method for pv / pc: per-unit variance of the ratio.
        rel2 = sv * (1 - sv) / (wv * sc**2) + sv**2 * sc * (1 - sc) / (wc * sc**4)
        rel_hw = halfwidth(n, rel2, alpha, tuning_sample)
        lift_low, lift_high = lift - rel_hw, lift + rel_hw
    return Comparison(
        variant=name, rate=pv, control_rate=pc, difference=diff, difference_low=diff - hw,
        difference_high=diff + hw, lift=lift, lift_low=lift_low, lift_high=lift_high, alpha=alpha,
    )  # fmt: skip


class Decision(BaseModel):
    ending: Ending | None = None  # None: keep going
    winner: str | None = None
    reason: str = ""
    comparisons: list[Comparison] = Field(default_factory=list)
    probability_best: dict[str, float] = Field(default_factory=dict)  # bandit


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


# --- planning ------------------------------------------------------------------------------------


def sample_size_per_variant(
    base_rate: float,
    relative_lift: float,
    *,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    tuning_sample: int = DEFAULT_TUNING_SAMPLE,
    variants: int = 2,
) -> int:
    """The per-variant sample (equal split) at which the sequential rule detects a true
    `relative_lift` over `base_rate` with probability at least `power`: the smallest n where
    the confidence sequence's half-width plus z_power standard errors fits inside the true
    difference. Looking continuously only adds chances to detect it earlier."""
    a = alpha / (variants - 1)
    p1, p2 = base_rate, base_rate * (1 + relative_lift)
    delta = p2 - p1
    sigma2 = (p1 * (1 - p1) + p2 * (1 - p2)) / 0.5
    z = _normal_quantile(power)
    n = 10
    while halfwidth(2 * n, sigma2, a, tuning_sample) + z * math.sqrt(sigma2 / (2 * n)) > delta:
        n = math.ceil(n * 1.01) + 1
    return n


def _normal_quantile(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
