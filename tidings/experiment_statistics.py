"""The statistics of the sequential rule: an asymptotic confidence sequence for the difference
of two rates, and the sample size it needs. Pure: no Temporal, no I/O.

The sequence (Waudby-Smith, Wu, Ramdas, Kallus, Karampatziakis, "Time-uniform central limit
theory and asymptotic confidence sequences", 2023; the one GrowthBook ships). For the difference
of two rates d = p_v - p_c with N = n_c + n_v units and allocation shares w = n / N, the per-unit
variance is

    sigma^2 = p_c (1 - p_c) / w_c + p_v (1 - p_v) / w_v      (so Var(d_hat) = sigma^2 / N)

and the interval, valid simultaneously at every N however often it is looked at, is

    d_hat +/- sigma * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * ln( sqrt(N rho^2 + 1) / alpha ) )

    rho = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N* )

N* (`tuning_sample`, default 10,000 units per comparison) is the total sample at which the
sequence is narrowest; any N* keeps the guarantee, a good one only makes it tighter. sigma is
outside the root (as in the paper and in GrowthBook's gbstats): with sigma^2 inside it and rho
tuned from N* alone, the sequence would be narrowest at N*/sigma^2 (about 3 N* for rates near
10%), not at N*. Rates in sigma use (x + 0.5) / (n + 1) so that an arm with no successes yet does
not get a zero-width interval. The relative lift d / p_c gets the same sequence with its
delta-method variance; decisions (`tidings.experiment_decisions`) use the difference.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from tidings.experiment_config import DEFAULT_ALPHA, DEFAULT_TUNING_SAMPLE


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
    difference. Looking continuously only adds chances to detect it earlier. A lift that is
    not positive, or rates outside (0, 1), have no such n: ValueError (the search below would
    never end)."""
    a = alpha / (variants - 1)
    p1, p2 = base_rate, base_rate * (1 + relative_lift)
    if not (0 < p1 < p2 < 1):
        raise ValueError(
            f"base_rate {base_rate} with relative_lift {relative_lift}: both rates must lie in "
            "(0, 1) and the lift must be positive"
        )
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
