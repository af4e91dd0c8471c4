"""bench/analytics.py at its smallest: it loads (COPY on PostgreSQL, executemany on SQLite),
runs every query (and the optimal send time) and prints one `query NAME BACKEND MS` line each.
Nothing here is about speed."""

from __future__ import annotations

import pytest

from bench.analytics import SEGMENTS, parse_args, run
from tests.store.conftest import _postgres_answers


def test_parse_args_refuses_nonsense() -> None:
    assert parse_args([]).scale == 1.0
    for bad in (["--scale", "2"], ["--runs", "0"], ["--backends", "mysql"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_small_run_times_every_query(capsys: pytest.CaptureFixture[str]) -> None:
    backends = "sqlite,postgresql" if _postgres_answers() else "sqlite"
    figures = await run(parse_args(["--scale", "0.0005", "--runs", "1", "--backends", backends]))
    printed = capsys.readouterr().out
    for backend, times in figures.items():
        # 13 analytics calls, a count and a page per segment, the rate counted at noon.
        assert len(times) == 13 + 2 * len(SEGMENTS) + 1 and "optimal_send_time" in times
        assert "segment_count_rate_over_half_noon" in times
        assert all(ms > 0 for ms in times.values())
        assert all(f"query {name} {backend} " in printed for name in times)
