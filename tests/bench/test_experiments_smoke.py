"""bench/experiments.py at its smallest: it enrols, clicks, reads every run's history and
prints well-formed figures. Nothing here is about speed."""

from __future__ import annotations

import pytest

from bench.experiments import parse_args, render, run

pytestmark = pytest.mark.integration


def test_parse_args_refuses_nonsense() -> None:
    assert parse_args([]).users == 10_000
    with pytest.raises(SystemExit):
        parse_args(["--users", "1"])


async def test_small_run_prints_figures() -> None:
    args = parse_args(
        ["--users", "40", "--engage", "20", "--event-budget", "200", "--minimum-sample", "10",
         "--check-every", "1s", "--decision-timeout", "5"]
    )  # fmt: skip
    figures = await run(args)
    assert figures.users == 40 and figures.enrolments_per_second > 0
    assert len(figures.runs) >= 2 and all(n > 0 for n in figures.runs)  # continued as new
    assert 0 < figures.engaged <= 8  # 10% of up to 20 in a, 30% of up to 20 in b
    table = render(figures, args)
    assert "enrolments per second" in table and "history length per run" in table
