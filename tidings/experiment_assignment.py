"""Assignment: which arm of a test a user gets. Pure: no Temporal, no I/O.

`assign()` hashes experiment id and user id with SHA-256 (never `hash()`, which is salted per
process): the same user gets the same arm in every process and after every restart. Two
independent hashes are used: one places the user in or out of the holdout, the other picks the
variant from the split (or, in bandit mode, the current weights).
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from tidings.experiment_config import HOLDOUT, ExperimentConfig


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
