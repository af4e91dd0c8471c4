"""Charts for the console, drawn on the server as inline SVG (no script, no front-end build).
Every label goes through `escape`; numbers are formatted here."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

COLOURS = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626")


def funnel(steps: Sequence[tuple[str, int]], width: int = 520) -> Markup:
    """Horizontal bars, one per step, as wide as the step's share of the first."""
    top = max((n for _, n in steps), default=0) or 1
    row, label_w = 26, 90
    parts = [
        f'<svg class="funnel" role="img" width="{width}" height="{row * len(steps) + 4}"'
        f' viewBox="0 0 {width} {row * len(steps) + 4}">'
    ]
    for i, (name, n) in enumerate(steps):
        y = i * row + 2
        w = round((width - label_w - 120) * n / top)
        share = "" if i == 0 or steps[0][1] == 0 else f" ({n / steps[0][1]:.1%})"
        parts.append(
            f'<text x="0" y="{y + 17}" font-size="13">{escape(name)}</text>'
            f'<rect data-step="{escape(name)}" data-value="{n}" x="{label_w}" y="{y}"'
            f' width="{w}" height="20" fill="{COLOURS[i % len(COLOURS)]}" />'
            f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="12">{n:,}{share}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(
    labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], width: int = 640
) -> Markup:
    """One polyline per named series over the labels (days), with a legend and the maximum."""
    height, left, bottom = 180, 40, 24
    top = max((v for _, values in series for v in values), default=0) or 1
    n = max(len(labels) - 1, 1)
    plot_w, plot_h = width - left - 10, height - bottom - 10
    parts = [
        f'<svg class="series" role="img" width="{width}" height="{height + 20}"'
        f' viewBox="0 0 {width} {height + 20}">',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}"'
        ' stroke="#999" />',
        f'<text x="0" y="16" font-size="11">{top:,}</text>',
        f'<text x="0" y="{10 + plot_h}" font-size="11">0</text>',
    ]
    for i, (name, values) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(
            f"{left + plot_w * j / n:.1f},{10 + plot_h - plot_h * v / top:.1f}"
            for j, v in enumerate(values)
        )
        parts.append(
            f'<polyline data-series="{escape(name)}" data-points="{len(values)}"'
            f' points="{points}" fill="none" stroke="{colour}" stroke-width="2" />'
        )
        parts.append(
            f'<text x="{left + 110 * i}" y="{height + 14}" font-size="12"'
            f' fill="{colour}">{escape(name)}</text>'
        )
    if labels:
        parts.append(f'<text x="{left}" y="{height}" font-size="11">{escape(labels[0])}</text>')
        parts.append(
            f'<text x="{width - 80}" y="{height}" font-size="11">{escape(labels[-1])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def intervals(
    rows: Sequence[tuple[str, float, float | None, float | None]], width: int = 520
) -> Markup:
    """One row per variant: its point estimate (a dot) and interval (a bar) on a shared axis
    centred on zero (a vertical line), so an interval clear of the line is a decided arm."""
    row, label_w = 26, 90
    ends = [abs(v) for _, point, low, high in rows for v in (point, low, high) if v is not None]
    span = max(ends, default=0) or 0.01
    plot = width - label_w - 10

    def x(v: float) -> float:
        return round(label_w + plot * (v + span) / (2 * span), 1)

    height = row * len(rows) + 4
    parts = [
        f'<svg class="intervals" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}">'
        f'<line x1="{x(0)}" y1="0" x2="{x(0)}" y2="{height}" stroke="#999" />'
    ]
    for i, (name, point, low, high) in enumerate(rows):
        y = i * row + 13
        parts.append(f'<text x="0" y="{y + 4}" font-size="13">{escape(name)}</text>')
        if low is not None and high is not None:
            parts.append(
                f'<line data-variant="{escape(name)}" data-low="{low:.4f}" data-high="{high:.4f}"'
                f' x1="{x(low)}" y1="{y}" x2="{x(high)}" y2="{y}" stroke="{COLOURS[0]}"'
                ' stroke-width="4" />'
            )
        parts.append(f'<circle cx="{x(point)}" cy="{y}" r="4" fill="{COLOURS[4]}" />')
    parts.append("</svg>")
    return Markup("".join(parts))
