"""/console/experiments: each A/B test's arms with their enrolments, deliveries, the metric
reached, and each variant's difference from the control with its confidence interval (the
same `experiment_results` as the API: live from the running test, else its recorded outcome).
Registered on the console's router, behind the same admin gate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import Response
from jinja2 import DictLoader, Environment, select_autoescape

from starter.http.console import _BASE, AdminClient, _page_with, router
from starter.http.console_svg import intervals
from tidings.errors import NotFound

_LIST = """{% extends "base" %}{% block title %}: experiments{% endblock %}{% block body %}
<h2>Experiments</h2><table id="experiments"><tr><th>experiment</th><th>status</th>
<th>ending</th><th>winner</th><th>started (UTC)</th></tr>
{% for e in experiments %}<tr data-experiment="{{ e.id }}">
<td><a href="/console/experiments/{{ e.id }}">{{ e.id }}</a></td><td>{{ e.status }}</td>
<td>{{ e.ending or "-" }}</td><td>{{ e.winner or "-" }}</td>
<td>{{ e.created_at.strftime("%Y-%m-%d %H:%M") }}</td></tr>{% endfor %}</table>
{% if not experiments %}<p class="muted">No experiments yet.</p>{% endif %}{% endblock %}"""

_DETAIL = """{% extends "base" %}{% block title %}: {{ r.experiment_id }}{% endblock %}
{% block body %}<h2>Experiment {{ r.experiment_id }}</h2>
<p>status <b id="status">{{ r.status }}</b>{% if r.ending %}, ended: {{ r.ending }}{% endif %}
{% if r.winner %}, winner <b id="winner">{{ r.winner }}</b>{% endif %}
{% if r.reason %} ({{ r.reason }}){% endif %}. Metric {{ r.metric }}, alpha {{ r.alpha }},
{{ r.checks }} check(s). <a href="/console/experiments">All experiments</a></p>
<table id="variants"><tr><th>arm</th><th>enrolled</th><th>delivered</th><th>reached</th>
<th>rate</th><th>difference from control</th><th>interval</th><th>lift</th>
<th>P(best)</th></tr>{% for a in arms %}<tr data-arm="{{ a.name }}">
<td>{{ a.name }}{% if a.control %} (control){% endif %}</td>
<td data-figure="enrolled">{{ a.enrolled }}</td><td data-figure="delivered">{{ a.delivered }}</td>
<td data-figure="reached">{{ a.reached }}</td><td>{{ pct(a.rate) }}</td>
<td>{{ pct(a.difference) }}</td><td data-figure="interval">{{ a.interval }}</td>
<td>{{ a.lift }}</td><td>{{ pct(a.best) }}</td></tr>{% endfor %}</table>
<h2>Difference from control, with its interval</h2>{{ chart }}
<p class="muted">The intervals are confidence sequences: they hold at every check together,
so the test may stop as soon as one excludes zero.</p>{% endblock %}"""

_pages = Environment(
    loader=DictLoader({"base": _BASE, "list": _LIST, "detail": _DETAIL}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


@router.get("/experiments")
async def experiments(tidings: AdminClient) -> Response:
    return _page_with(_pages, "list", experiments=await tidings.list_experiments(limit=200))


@router.get("/experiments/{experiment_id}")
async def experiment(
    tidings: AdminClient, experiment_id: Annotated[str, Path(max_length=200)]
) -> Response:
    try:
        record = await tidings.store.get_experiment(experiment_id)
        if record is None:
            raise NotFound("experiment", experiment_id)
        r = await tidings.experiment_results(experiment_id)
    except NotFound:
        return _page_with(_pages, "list", 404, experiments=[])
    comparisons = {c.variant: c for c in r.comparisons}
    variants: list[dict[str, Any]] = record.config.get("variants", [])
    names = [v["name"] for v in variants] + [n for n in r.enrolled if n not in _names(variants)]
    arms = []
    for name in names:
        counts = r.counts.get(name)
        c = comparisons.get(name)
        arms.append(
            {
                "name": name,
                "control": any(v["name"] == name and v.get("control") for v in variants),
                "enrolled": r.enrolled.get(name, 0),
                "delivered": counts.delivered if counts else 0,
                "reached": counts.reached if counts else 0,
                "rate": counts.rate if counts and counts.delivered else None,
                "difference": c.difference if c else None,
                "interval": _interval(c.difference_low, c.difference_high) if c else "-",
                "lift": _interval(c.lift_low, c.lift_high) if c else "-",
                "best": r.probability_best.get(name),
            }
        )
    chart = intervals(
        [(c.variant, c.difference, c.difference_low, c.difference_high) for c in r.comparisons]
    )
    return _page_with(_pages, "detail", r=r, arms=arms, chart=chart)


def _names(variants: list[dict[str, Any]]) -> set[str]:
    return {v["name"] for v in variants}
