"""/console: server-rendered pages over the analytics (Jinja2, charts as inline SVG, no script).

Behind an API key with the admin scope: open `/console?key=<key>` once (or post it to the login
form); the key is kept in an HttpOnly, SameSite=Strict cookie limited to /console, and the key
is checked against the store on every page, so revoking it closes the console at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment, select_autoescape
from pydantic import ValidationError

from starter.client import Tidings
from starter.http.console_svg import funnel, lines
from starter.http.deps import get_tidings
from starter.webui import workflow_url
from tidings.analytics import Bucket, MetricsFilter, Period, RankBy
from tidings.api_keys import Scope
from tidings.errors import InvalidRequest
from tidings.store.analytics import default_period
from workflows.queues import workflow_id

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "tidings_console"

_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Tidings console{% block title %}{% endblock %}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;
margin:8px 0 20px}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}h2{margin-top:28px}.muted{color:#666}</style>
</head><body><h1><a href="/console">Tidings console</a></h1>
<nav><a href="/console">Overview</a> · <a href="/console/experiments">Experiments</a></nav>
{% block body %}{% endblock %}
</body></html>"""

_LOGIN = """{% extends "base" %}{% block body %}
<p>{{ message }}</p>
<form method="post" action="/console/login"><label>Admin API key
<input type="password" name="key" autocomplete="off" size="50"></label>
<button type="submit">Open</button></form>{% endblock %}"""

_OVERVIEW = """{% extends "base" %}{% block body %}
<p class="muted">Notifications created from {{ period.start }} to {{ period.end }}
(<a href="?days=7">7 days</a>, <a href="?days=30">30 days</a>, <a href="?days=90">90 days</a>).
Rates are unique per notification (README, "Analytics and segments").</p>
<h2>Funnel</h2>{{ funnel_svg }}
<table id="totals"><tr><th>notifications</th><th>sent</th><th>delivered</th><th>failed</th>
<th>opened</th><th>clicked</th><th>converted</th><th>open rate</th></tr><tr>
<td data-figure="notifications">{{ c.notifications }}</td><td data-figure="sent">{{ c.sent }}</td>
<td data-figure="delivered">{{ c.delivered }}</td><td data-figure="failed">{{ c.failed }}</td>
<td data-figure="opened">{{ c.opened }}</td><td data-figure="clicked">{{ c.clicked }}</td>
<td data-figure="converted">{{ c.converted }}</td><td>{{ pct(c.open_rate) }}</td></tr></table>
<h2>Daily</h2>{{ series_svg }}
<h2>Templates</h2><table id="templates"><tr><th>template</th><th>sent</th><th>delivered</th>
<th>opened</th><th>clicked</th><th>converted</th><th>funnel</th></tr>
{% for t in templates %}<tr data-template="{{ t.template_id }}"><td>{{ t.template_id }}</td>
<td>{{ t.counts.sent }}</td><td>{{ t.counts.delivered }}</td><td>{{ t.counts.opened }}</td>
<td>{{ t.counts.clicked }}</td><td>{{ t.counts.converted }}</td><td>{{ t.svg }}</td></tr>
{% endfor %}</table>
<h2>Channels</h2><table id="channels"><tr><th>channel</th><th>attempted</th><th>sent</th>
<th>failed</th><th>delivery rate</th><th>open rate</th><th>median to open</th></tr>
{% for ch in channels %}<tr data-channel="{{ ch.channel.value }}"><td>{{ ch.channel.value }}</td>
<td>{{ ch.attempted }}</td><td>{{ ch.sent }}</td><td>{{ ch.failed }}</td>
<td>{{ pct(ch.delivery_rate) }}</td><td>{{ pct(ch.open_rate) }}</td>
<td>{{ seconds(ch.median_seconds_to_open) }}</td></tr>{% endfor %}</table>
<h2>Providers (per channel)</h2><table id="providers"><tr><th>channel</th><th>deliveries</th>
<th>failed</th><th>failure rate</th><th>retries</th><th>failover from</th><th>failover to</th></tr>
{% for p in providers %}<tr><td>{{ p.channel.value }}</td><td>{{ p.deliveries }}</td>
<td>{{ p.failed }}</td><td>{{ pct(p.failure_rate) }}</td><td>{{ p.retries }}</td>
<td>{{ p.failovers_from }}</td><td>{{ p.failovers_to }}</td></tr>{% endfor %}</table>
<h2>Latest notifications</h2><table id="latest"><tr><th>notification</th><th>user</th>
<th>template</th><th>status</th></tr>{% for n in latest %}<tr>
<td><a href="/console/notifications/{{ n.notification_id }}">{{ n.notification_id }}</a></td>
<td>{{ n.user_id }}</td><td>{{ n.template_id }} v{{ n.template_version }}</td>
<td>{{ n.status.value }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_TIMELINE = """{% extends "base" %}{% block title %}: {{ n.notification_id }}{% endblock %}
{% block body %}<h2>Notification {{ n.notification_id }}</h2>
<p>user {{ n.user_id }}, template {{ n.template_id }} v{{ n.template_version }},
priority {{ n.priority.value }}, status <b id="status">{{ n.status.value }}</b>
{% if n.reason %}({{ n.reason }}){% endif %}.
<a id="webui" href="{{ ui }}">Its run in the Temporal Web UI</a></p>
<table id="timeline"><tr><th>when (UTC)</th><th>what</th><th>detail</th></tr>
{% for row in rows %}<tr data-kind="{{ row.kind }}"><td>{{ row.at }}</td><td>{{ row.what }}</td>
<td>{{ row.detail }}</td></tr>{% endfor %}</table>{% endblock %}"""

_pages = Environment(
    loader=DictLoader(
        {"base": _BASE, "login": _LOGIN, "overview": _OVERVIEW, "timeline": _TIMELINE}
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def _page_with(pages: Environment, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = pages.get_template(name).render(pct=_pct, seconds=_seconds, **values)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return _page_with(_pages, name, status, **values)


def _login(message: str, status: int = 401) -> HTMLResponse:
    return _page("login", status, message=message)


async def _admin(request: Request, tidings: Tidings, key: str | None) -> bool:
    key = key or request.cookies.get(COOKIE)
    if not key:
        return False
    found = await tidings.authenticate(key)
    return found is not None and found.allows(Scope.ADMIN)


def _with_cookie(response: Response, request: Request, key: str) -> Response:
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
        max_age=12 * 3600,
    )
    return response


def _clean_url(request: Request) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    query = "&".join(f"{k}={v}" for k, v in params)
    return request.url.path + (f"?{query}" if query else "")


class _Refused(Exception):
    """What the console answers a caller it does not let in: the login page or, for a key in
    the URL, the redirect that moves it into the cookie."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _admin_client(request: Request, key: str | None = None) -> Tidings:
    """The client when the caller holds an admin key (cookie or `?key=`); else `_Refused`."""
    tidings = get_tidings(request)
    if not await _admin(request, tidings, key):
        message = "That key does not open the console." if key else "Give an admin API key."
        raise _Refused(_login(message, 403 if key else 401))
    if key:  # move the key from the URL (and history, and logs) into the cookie
        raise _Refused(_with_cookie(RedirectResponse(_clean_url(request), 303), request, key))
    return tidings


# Every console page but the login form takes its client through this gate.
AdminClient = Annotated[Tidings, Depends(_admin_client)]


def install(app: FastAPI) -> None:
    """The console's pages, with its refusals answered as pages rather than JSON errors."""
    app.include_router(router)

    @app.exception_handler(_Refused)
    async def refused(_: Request, e: _Refused) -> Response:
        return e.response


@router.post("/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    tidings = get_tidings(request)
    if not key or not await _admin(request, tidings, key):
        return _login("That key does not open the console.", 403)
    return _with_cookie(RedirectResponse("/console", 303), request, key)


@router.get("")
async def overview(
    tidings: AdminClient,
    days: Annotated[int, Query(ge=1, le=400)] = 30,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Response:
    if start is not None and end is not None:
        try:
            period = Period(
                start=start if start.tzinfo else start.replace(tzinfo=UTC),
                end=end if end.tzinfo else end.replace(tzinfo=UTC),
            )
        except ValidationError as e:
            problem = InvalidRequest.from_validation(e)
            return _page("login", 422, message=f"{problem.field}: {problem.reason}")
    else:
        period = default_period(datetime.now(UTC), days)
    everyone = MetricsFilter()
    metrics = await tidings.analytics_metrics(period, everyone, bucket=Bucket.DAY)
    c = metrics.counts
    steps = [
        ("sent", c.sent),
        ("delivered", c.delivered),
        ("opened", c.opened),
        ("clicked", c.clicked),
        ("converted", c.converted),
    ]
    ranked = await tidings.best_templates(
        period, everyone, by=RankBy.OPEN_RATE, minimum_sample=1, limit=20
    )
    templates = [
        {
            "template_id": t.template_id,
            "counts": t.counts,
            "svg": funnel(
                [
                    ("sent", t.counts.sent),
                    ("delivered", t.counts.delivered),
                    ("opened", t.counts.opened),
                    ("clicked", t.counts.clicked),
                    ("converted", t.counts.converted),
                ],
                width=360,
            ),
        }
        for t in sorted(ranked, key=lambda t: t.template_id)
    ]
    days_ = [p.at.strftime("%Y-%m-%d") for p in metrics.series]
    series_svg = lines(
        days_,
        [
            ("sent", [p.counts.sent for p in metrics.series]),
            ("opened", [p.counts.opened for p in metrics.series]),
            ("clicked", [p.counts.clicked for p in metrics.series]),
        ],
    )
    return _page(
        "overview",
        period=period,
        c=c,
        funnel_svg=funnel(steps),
        series_svg=series_svg,
        templates=templates,
        channels=await tidings.channel_performance(period, everyone),
        providers=await tidings.provider_performance(period, everyone),
        latest=await tidings.store.list_notifications(limit=20),
    )


@router.get("/notifications/{notification_id}")
async def timeline(
    tidings: AdminClient, notification_id: Annotated[str, Path(max_length=200)]
) -> Response:
    n = await tidings.store.get_notification(notification_id)
    if n is None:
        return _page("login", 404, message=f"No notification {notification_id}.")
    rows: list[dict[str, Any]] = []
    if n.send_at is not None:
        rows.append({"at": n.send_at, "kind": "scheduled", "what": "send time", "detail": ""})
    for d in n.channels:
        detail = f"{d.attempts} attempt(s)" + (f"; {d.reason}" if d.reason else "")
        rows.append(
            {
                "at": d.at,
                "kind": "delivery",
                "what": f"{d.channel.value}: {d.status.value}",
                "detail": detail,
            }
        )
    for e in n.engagement:
        where = f" via {e.channel.value}" if e.channel else ""
        rows.append({"at": e.at, "kind": "event", "what": f"{e.type.value}{where}", "detail": ""})
    never = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    rows.sort(key=lambda r: r["at"] or never)
    for r in rows:
        r["at"] = "-" if r["at"] is None else r["at"].strftime("%Y-%m-%d %H:%M:%S")
    settings = tidings.settings
    ui = workflow_url(
        settings.temporal_ui_url, settings.temporal_namespace, workflow_id(notification_id)
    )
    return _page("timeline", n=n, rows=rows, ui=ui)
