"""Small SVG line charts drawn here (no third-party charting code, nothing loaded from the web)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

CHART_WIDTH = 360
CHART_HEIGHT = 170
CHART_MAX_DRAWN_POINTS = 1_000
"""Points one chart draws at most (longer series are thinned evenly for drawing)."""

_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 56, 12, 26, 30


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    px, py = [], []
    for x, y in zip(xs, ys, strict=False):
        if x is None or y is None:
            continue
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y):
            px.append(float(x))
            py.append(float(y))
    return px, py


def line_chart(title: str, xs: Sequence[float], ys: Sequence[float], x_label: str = "", y_label: str = "") -> str:
    """An SVG line chart of y over x, with the title, the axis ranges and the point count."""
    count = len(ys)
    px, py = _finite(xs, ys)
    w, h = CHART_WIDTH, CHART_HEIGHT
    inner_w, inner_h = w - _PAD_LEFT - _PAD_RIGHT, h - _PAD_TOP - _PAD_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'data-count="{count}" role="img" aria-label="{html.escape(title)}" '
        'style="font-family:sans-serif;font-size:11px;background:#fff">',
        f'<text x="{_PAD_LEFT}" y="15" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{_PAD_LEFT}" y="{_PAD_TOP}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
    ]
    if px:
        if len(px) > CHART_MAX_DRAWN_POINTS:
            stride = len(px) / CHART_MAX_DRAWN_POINTS
            idx = sorted({int(i * stride) for i in range(CHART_MAX_DRAWN_POINTS)} | {len(px) - 1})
            px, py = [px[i] for i in idx], [py[i] for i in idx]
        x0, x1, y0, y1 = min(px), max(px), min(py), max(py)
        sx = inner_w / (x1 - x0) if x1 > x0 else 0.0
        sy = inner_h / (y1 - y0) if y1 > y0 else 0.0

        def cx(x: float) -> float:
            return _PAD_LEFT + ((x - x0) * sx if sx else inner_w / 2)

        def cy(y: float) -> float:
            return _PAD_TOP + inner_h - ((y - y0) * sy if sy else inner_h / 2)

        pts = " ".join(f"{cx(x):.1f},{cy(y):.1f}" for x, y in zip(px, py, strict=True))
        if len(px) == 1:
            parts.append(f'<circle cx="{cx(px[0]):.1f}" cy="{cy(py[0]):.1f}" r="3" fill="#1f77b4"/>')
        else:
            parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
        parts += [
            f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 4}" text-anchor="end">{_fmt(y1)}</text>',
            f'<text x="{_PAD_LEFT - 4}" y="{_PAD_TOP + inner_h}" text-anchor="end">{_fmt(y0)}</text>',
            f'<text x="{_PAD_LEFT}" y="{h - 14}">{_fmt(x0)}</text>',
            f'<text x="{w - _PAD_RIGHT}" y="{h - 14}" text-anchor="end">{_fmt(x1)}</text>',
        ]
    else:
        parts.append(f'<text x="{_PAD_LEFT + 8}" y="{_PAD_TOP + 20}" fill="#888">no numeric values</text>')
    label = f"{html.escape(x_label)} → {html.escape(y_label)}" if x_label or y_label else ""
    parts.append(f'<text x="{w / 2}" y="{h - 2}" text-anchor="middle" fill="#555">{label} ({count} points)</text>')
    parts.append("</svg>")
    return "".join(parts)
