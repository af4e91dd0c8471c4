"""bench/send_time.py at its smallest: it loads a history, times the queries and prints
well-formed `query NAME BACKEND MS` lines. Nothing here is about speed."""

from __future__ import annotations

import re

import pytest

from bench.send_time import parse_args, run


def test_parse_args_refuses_nonsense() -> None:
    assert parse_args([]).days == 365
    with pytest.raises(SystemExit):
        parse_args(["--runs", "0"])


async def test_small_run_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run(parse_args(["--users", "5", "--days", "3", "--runs", "1"]))
    assert set(figures["sqlite"]) == {"user_histogram", "population_histogram", "optimal_send_time"}
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("query ")]
    assert len(lines) == 3
    assert all(re.fullmatch(r"query \w+ sqlite \d+\.\d\d", line) for line in lines)
