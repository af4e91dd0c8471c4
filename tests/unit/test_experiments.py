"""tidings.experiments: configuration, stable assignment, and the decision rules proven by
seeded simulation (A/A false positives under continuous monitoring, power, the bandit)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from tidings.experiments import (
    HOLDOUT,
    ArmCounts,
    Ending,
    ExperimentConfig,
    assign,
    comparison_alpha,
    config_error,
    decide_bandit,
    decide_sequential,
    halfwidth,
    parse_config,
    pick,
    sample_size_per_variant,
)


def config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "id": "exp1",
        "template_id": "welcome",
        "variants": [{"name": "a", "control": True}, {"name": "b"}],
    }
    data.update(overrides)
    return parse_config(data)


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in n Bernoulli(p) trials by geometric gaps: O(n p) work, no numpy."""
    log_q = math.log(1 - p)
    k, position = 0, 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return k
        k += 1


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"variants": [{"name": "a"}, {"name": "b"}]}, "exactly one must have control"),
        ({"split": [50, 40]}, "sum to 100"),
        ({"split": [100]}, "1 shares for 2 variants"),
        ({"metric": "bought"}, "metric"),
        ({"variants": [{"name": "a", "control": True}, {"name": "holdout"}]}, "reserved"),
        ({"template_id": None}, "variants[0].template_id"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"holdout_percent": 60}, "holdout_percent"),
        ({"max_duration": "1m", "check_every": "5m"}, "max_duration"),
    ],
)
def test_bad_config_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        config(**overrides)
    assert field in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"split": [60, 30]}, "split"),
        (
            {"variants": [{"name": "a", "control": True}, {"name": "b", "tone": 1}]},
            "variants.1.tone",
        ),
        ({"holdout_percent": 90}, "holdout_percent"),
        ({"template_id": None}, "variants[0].template_id"),
    ],
)
def test_config_error_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        config(**overrides)
    assert config_error(raised.value)[0] == field


def test_unknown_fields_are_ignored_off_the_edge() -> None:
    good = config().model_dump(mode="json")
    good["added_by_a_newer_client"] = 1
    assert ExperimentConfig.model_validate(good).id == "exp1"


def test_durations_read_as_people_write_them() -> None:
    c = config(attribution_window="2h", max_duration="7d", check_every="90s")
    assert c.attribution_window.total_seconds() == 7200
    assert c.max_duration.days == 7
    assert c.check_every.total_seconds() == 90


# --- assignment ----------------------------------------------------------------------------------


def test_assignment_is_stable_across_processes() -> None:
    c = config(holdout_percent=10)
    here = [assign(c, f"user-{i}") for i in range(50)]
    code = (
        "from tidings.experiments import parse_config, assign\n"
        "c = parse_config({'id': 'exp1', 'template_id': 'welcome', 'holdout_percent': 10,"
        " 'variants': [{'name': 'a', 'control': True}, {'name': 'b'}]})\n"
        "print(','.join(assign(c, f'user-{i}') for i in range(50)))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there.split(",") == here


def test_split_and_holdout_shares() -> None:
    c = config(
        variants=[{"name": "a", "control": True}, {"name": "b"}, {"name": "c"}],
        split=[50, 30, 20],
        holdout_percent=10,
    )
    seen = Counter(assign(c, f"u{i}") for i in range(20_000))
    assert abs(seen[HOLDOUT] / 20_000 - 0.10) < 0.01
    rest = 20_000 - seen[HOLDOUT]
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(seen[name] / rest - share) < 0.015


def test_pick_follows_weights() -> None:
    assert pick(0.0, ["a", "b"], [1, 1]) == "a"
    assert pick(0.49, ["a", "b"], [1, 1]) == "a"
    assert pick(0.51, ["a", "b"], [1, 1]) == "b"
    assert pick(0.999, ["a", "b"], [0.9, 0.1]) == "b"


# --- the sequential rule -------------------------------------------------------------------------


def test_halfwidth_shrinks_and_is_widest_with_tiny_tuning() -> None:
    assert halfwidth(1000, 0.36, 0.05, 10_000) > halfwidth(10_000, 0.36, 0.05, 10_000)
    assert halfwidth(0, 0.36, 0.05, 10_000) == math.inf


def test_nothing_is_decided_before_the_minimum_sample() -> None:
    c = config(minimum_sample=500)
    d = decide_sequential(
        c, {"a": ArmCounts(delivered=400, reached=0), "b": ArmCounts(delivered=400, reached=400)}
    )
    assert d.ending is None and "500" in d.reason


def test_bonferroni_for_several_variants() -> None:
    c = config(variants=[{"name": "a", "control": True}, {"name": "b"}, {"name": "c"}])
    assert comparison_alpha(c) == pytest.approx(0.025)


def _monitor(
    rng: random.Random, c: ExperimentConfig, rates: dict[str, float], batch: int, looks: int
) -> Ending | None:
    counts = {name: ArmCounts() for name in rates}
    for _ in range(looks):
        for name, p in rates.items():
            arm = counts[name]
            arm.delivered += batch
            arm.reached += binomial(rng, batch, p)
        decision = decide_sequential(c, counts)
        if decision.ending is not None:
            return decision.ending
    return None


def test_aa_false_positives_under_continuous_monitoring() -> None:
    """1,000 A/A tests, each looked at after every batch of 200 per arm up to 20,000 per arm
    (100 looks): any ending (a 'winner' or 'control is better') is an error."""
    rng = random.Random(20261129)
    c = config()
    errors = sum(
        _monitor(rng, c, {"a": 0.10, "b": 0.10}, batch=200, looks=100) is not None
        for _ in range(1000)
    )
    assert errors <= 50, f"{errors} of 1000 A/A tests ended"


def test_aa_with_three_arms_controls_the_family() -> None:
    rng = random.Random(7)
    c = config(variants=[{"name": "a", "control": True}, {"name": "b"}, {"name": "c"}])
    errors = sum(
        _monitor(rng, c, {"a": 0.10, "b": 0.10, "c": 0.10}, batch=250, looks=40) is not None
        for _ in range(300)
    )
    assert errors <= 15, f"{errors} of 300 three-arm A/A tests ended"


def test_power_at_the_documented_sample_size() -> None:
    """A true 20% relative lift on a 10% base rate, looked at every 200 per arm, is found by
    the sample size `sample_size_per_variant` states, in at least 80% of 1,000 tests."""
    n = sample_size_per_variant(0.10, 0.20)
    assert 5_000 < n < 10_000  # about 7,400 per variant with the defaults
    rng = random.Random(42)
    c = config()
    looks = math.ceil(n / 200)
    detected = sum(
        _monitor(rng, c, {"a": 0.10, "b": 0.12}, batch=200, looks=looks) is Ending.WINNER
        for _ in range(1000)
    )
    assert detected >= 800, f"detected in {detected} of 1000"


@pytest.mark.parametrize(("base", "lift"), [(0.10, 0.0), (0.10, -0.2), (0.0, 0.2), (0.9, 0.2)])
def test_sample_size_refuses_a_lift_no_sample_can_detect(base: float, lift: float) -> None:
    with pytest.raises(ValueError, match="relative_lift"):
        sample_size_per_variant(base, lift)


def test_futility_when_the_variant_is_worse() -> None:
    c = config(minimum_lift=0.05)
    d = decide_sequential(
        c,
        {
            "a": ArmCounts(delivered=20_000, reached=2_000),
            "b": ArmCounts(delivered=20_000, reached=1_900),
        },
    )
    assert d.ending is Ending.FUTILITY and d.winner == "a"


# --- the bandit ----------------------------------------------------------------------------------


def test_bandit_sends_most_traffic_to_the_best_arm() -> None:
    rng = random.Random(3)
    c = config(
        rule="bandit",
        variants=[{"name": "a", "control": True}, {"name": "b"}, {"name": "c"}],
        minimum_sample=10_000_000,  # keep going: measure the traffic, not the ending
    )
    rates = {"a": 0.05, "b": 0.07, "c": 0.10}
    counts = {name: ArmCounts() for name in rates}
    weights = c.shares
    sent: Counter[str] = Counter()
    for _ in range(40):  # 40 timer ticks of 500 enrolments
        for name, w in zip(rates, weights, strict=True):
            n = round(500 * w)
            sent[name] += n
            counts[name].delivered += n
            counts[name].reached += binomial(rng, n, rates[name])
        _, weights = decide_bandit(c, counts, rng)
    assert sent["c"] > sent["a"] + sent["b"]
    assert min(weights) >= c.floor_share - 1e-9
