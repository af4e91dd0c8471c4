"""A/B tests: configuration, stable assignment and the decision rules. Pure: no Temporal, no I/O.

Each part has its own module; this one gathers their public names, the import path the rest of
Tidings (and the workflows, through the sandbox's passthrough of `tidings`) uses:

    experiment_config      the configuration, validated at the edge, tolerant across Temporal
    experiment_assignment  which arm a user gets: SHA-256 buckets, the same in every process
    experiment_statistics  the asymptotic confidence sequence, comparing two arms, sample sizes
    experiment_decisions   the sequential rule (the default) and the Thompson-sampling bandit
"""

from __future__ import annotations

from tidings.experiment_assignment import Claim, assign, bucket, in_holdout, pick
from tidings.experiment_config import (
    DEFAULT_ALPHA,
    DEFAULT_FLOOR_SHARE,
    DEFAULT_TUNING_SAMPLE,
    HOLDOUT,
    ExperimentConfig,
    Metric,
    OnWinner,
    Rule,
    Variant,
    config_error,
    parse_config,
    parse_duration,
)
from tidings.experiment_decisions import (
    BANDIT_CONFIDENCE,
    THOMPSON_DRAWS,
    Decision,
    Ending,
    bandit_weights,
    comparison_alpha,
    decide_bandit,
    decide_sequential,
    probability_best,
)
from tidings.experiment_statistics import (
    ArmCounts,
    Comparison,
    compare,
    halfwidth,
    rho,
    sample_size_per_variant,
)

__all__ = [
    "BANDIT_CONFIDENCE",
    "DEFAULT_ALPHA",
    "DEFAULT_FLOOR_SHARE",
    "DEFAULT_TUNING_SAMPLE",
    "HOLDOUT",
    "THOMPSON_DRAWS",
    "ArmCounts",
    "Claim",
    "Comparison",
    "Decision",
    "Ending",
    "ExperimentConfig",
    "Metric",
    "OnWinner",
    "Rule",
    "Variant",
    "assign",
    "bandit_weights",
    "bucket",
    "compare",
    "comparison_alpha",
    "config_error",
    "decide_bandit",
    "decide_sequential",
    "halfwidth",
    "in_holdout",
    "parse_config",
    "parse_duration",
    "pick",
    "probability_best",
    "rho",
    "sample_size_per_variant",
]
