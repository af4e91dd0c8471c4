"""Links into the Temporal Web UI (UI 2.x routes)."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def workflow_url(ui_url: str, namespace: str, workflow_id: str) -> str:
    """The UI takes the workflow id as one path segment, percent-encoded like JavaScript's
    encodeURIComponent (so `notification/abc` becomes `notification%2Fabc`); without a run id
    it redirects to the latest run."""
    return (
        f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


def search_url(ui_url: str, namespace: str, query: str) -> str:
    """The workflow list filtered by a visibility query, e.g. `TidingsUser="user_001"`."""
    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows?" + urlencode(
        {"query": query}, quote_via=quote
    )
