"""The test share of a broadcast's experiment: a stable hash of broadcast and user id, about
the share asked for, and independent of user-id order and of the variant assignment."""

from __future__ import annotations

from tidings.broadcast_models import in_sample, sample_bucket
from tidings.experiments import bucket


def test_the_sample_is_stable_and_about_the_share() -> None:
    users = [f"u{i:05d}" for i in range(20_000)]
    sample = [u for u in users if in_sample("spring", u, 0.1)]
    assert sample == [u for u in users if in_sample("spring", u, 0.1)]
    assert 1_850 <= len(sample) <= 2_150  # 10% ± 3.5 standard deviations
    # Not the first pages: the sampled users spread over the whole id order.
    first, last = users.index(sample[0]), users.index(sample[-1])
    assert first < 100 and last > 19_900
    halves = sum(1 for u in sample if u < "u10000"), sum(1 for u in sample if u >= "u10000")
    assert abs(halves[0] - halves[1]) < 200
    # Another broadcast samples other users.
    other = {u for u in users if in_sample("autumn", u, 0.1)}
    assert len(other & set(sample)) < 300  # about 1% of 20,000 by chance


def test_the_sample_is_independent_of_the_variant_hash() -> None:
    users = [f"u{i:05d}" for i in range(20_000)]
    sampled = [u for u in users if sample_bucket("spring", u) < 0.5]
    warm = sum(1 for u in sampled if bucket("spring", u, "variant") < 0.5)
    assert abs(warm / len(sampled) - 0.5) < 0.03
