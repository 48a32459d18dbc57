"""The models page's charts, drawn on the server as SVG: no chart library, no CDN, nothing to
vendor. The page fetches each with the API key and puts it in place; every shape is coloured
with SVG attributes (the page's Content-Security-Policy allows no inline styles), every text is
escaped, and each chart carries a ``<title>`` and an ``aria-label`` for screen readers.

* :func:`metric_over_versions`: the promotion metric of every version, promoted ones marked;
* :func:`confusion_matrix`: a version's held-out confusion matrix (rows: truth);
* :func:`side_by_side`: two versions' scores, bar beside bar;
* :func:`distributions`: a feature's share per bin, training reference against recent rows;
* :func:`realized_over_time`: realized accuracy per day against the held-out score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH = 640
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
FIRST = "#2f6fde"  # a series, the reference, version A
SECOND = "#e8871e"  # the other series, recent rows, version B
PROMOTED = "#1b873f"
FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True)
class Point:
    version: int
    value: float
    promoted: bool  # ever promoted (the pointer's history, or live now)
    live: bool = False


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" {FONT} '
        f'font-size="12" class="chart"><title>{escape(label)}</title>'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, fill: str = INK, **attributes: str | float) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}"{extra}>{escape(text)}</text>'


FLAT = 1e-9


def _scale(low: float, high: float) -> tuple[float, float]:
    """(low, high) of a value axis with a little room; a flat series gets a band around it."""
    if high - low < FLAT:
        low, high = low - 0.05, high + 0.05
    pad = (high - low) * 0.1
    return max(0.0, low - pad) if low >= 0 else low - pad, high + pad


def empty(label: str, why: str) -> str:
    return _svg(WIDTH, 60, label, [_text(12, 34, why, fill=MUTED)])


def metric_over_versions(model: str, metric: str, points: Sequence[Point]) -> str:
    label = f"{model}: held-out {metric} of each version"
    if not points:
        return empty(label, "no versions yet")
    height, left, right, top, bottom = 270, 56, 20, 40, 40
    low, high = _scale(min(p.value for p in points), max(p.value for p in points))
    span = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + (WIDTH - left - right) * (i / span if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    body = [_text(left, 18, label, font_weight="600")]
    for tick in range(5):
        v = low + (high - low) * tick / 4
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{GRID}"/>'
        )
        body.append(_text(left - 6, y(v) + 4, f"{v:.3f}", text_anchor="end", fill=MUTED))
    line = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    body.append(f'<polyline points="{line}" fill="none" stroke="{FIRST}" stroke-width="2"/>')
    for i, p in enumerate(points):
        colour = PROMOTED if p.promoted else FIRST
        radius = 6 if p.promoted else 4
        state = "live" if p.live else ("promoted" if p.promoted else "not promoted")
        body.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="{radius}" fill="{colour}" '
            f'class="point {"promoted" if p.promoted else "candidate"}">'
            f"<title>v{p.version}: {p.value:.4f} ({state})</title></circle>"
        )
        body.append(_text(x(i), height - bottom + 16, f"v{p.version}", text_anchor="middle"))
        if p.live:
            body.append(_text(x(i), y(p.value) - 10, "live", text_anchor="middle", fill=PROMOTED))
    legend_y = height - 8
    body.append(f'<circle cx="{left}" cy="{legend_y - 4}" r="6" fill="{PROMOTED}"/>')
    body.append(_text(left + 10, legend_y, "promoted"))
    body.append(f'<circle cx="{left + 90}" cy="{legend_y - 4}" r="4" fill="{FIRST}"/>')
    body.append(_text(left + 100, legend_y, "never promoted"))
    return _svg(WIDTH, height, label, body)


def confusion_matrix(
    model: str, version: int, labels: Sequence[str], matrix: Sequence[Sequence[int]]
) -> str:
    label = f"{model} v{version}: confusion matrix on the held-out rows"
    if not labels:
        return empty(label, "this version has no confusion matrix (a regression, or no run record)")
    n = len(labels)
    cell = max(18, min(44, (WIDTH - 120) // n))
    left, top = 90, 60
    width, height = max(360, left + cell * n + 20), top + cell * n + 40
    most = max((max(row) for row in matrix), default=0) or 1
    body = [
        _text(10, 18, label, font_weight="600"),
        _text(left + cell * n / 2, 38, "predicted", text_anchor="middle", fill=MUTED),
        _text(12, top + cell * n / 2, "truth", fill=MUTED),
    ]
    for j, name in enumerate(labels):
        body.append(_text(left + cell * (j + 0.5), top - 4, name[:6], text_anchor="middle"))
    for i, row in enumerate(matrix):
        body.append(_text(left - 6, top + cell * (i + 0.62), labels[i][:8], text_anchor="end"))
        for j, count in enumerate(row):
            share = count / most
            colour = PROMOTED if i == j else "#c0392b"
            body.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="{colour}" fill-opacity="{0.08 + 0.92 * share:.3f}" '
                f'class="cell"><title>truth {escape(labels[i])}, predicted '
                f"{escape(labels[j])}: {count}</title></rect>"
            )
            if count:
                body.append(
                    _text(
                        left + cell * (j + 0.5),
                        top + cell * (i + 0.62),
                        str(count),
                        text_anchor="middle",
                        fill="#ffffff" if share > 0.55 else INK,  # noqa: PLR2004
                    )
                )
    return _svg(width, height, label, body)


def _bars(
    title: str,
    names: tuple[str, str],
    rows: Sequence[tuple[str, float | None, float | None]],
    *,
    percent: bool = False,
) -> str:
    if not rows:
        return empty(title, "nothing to compare")
    left, bar, gap, top = 150, 10, 8, 40
    height = top + len(rows) * (2 * bar + gap) + 30
    most = max([abs(v) for _, a, b in rows for v in (a, b) if v is not None] or [1.0]) or 1.0
    scale = (WIDTH - left - 70) / most
    body = [_text(10, 18, title, font_weight="600")]
    for k, (name, colour) in enumerate(zip(names, (FIRST, SECOND), strict=True)):
        body.append(
            f'<rect x="{left + k * 140}" y="{top - 16}" width="10" height="10" fill="{colour}"/>'
        )
        body.append(_text(left + k * 140 + 14, top - 7, name))
    for r, (name, a, b) in enumerate(rows):
        y = top + r * (2 * bar + gap)
        body.append(_text(left - 6, y + bar + 4, name[:22], text_anchor="end"))
        for k, (value, colour) in enumerate(((a, FIRST), (b, SECOND))):
            if value is None:
                continue
            shown = f"{value:.1%}" if percent else f"{value:.4f}"
            body.append(
                f'<rect x="{left}" y="{y + k * bar}" width="{max(abs(value) * scale, 1):.1f}" '
                f'height="{bar - 1}" fill="{colour}" class="bar"><title>{escape(name)}, '
                f"{escape(names[k])}: {shown}</title></rect>"
            )
            body.append(
                _text(
                    left + abs(value) * scale + 4,
                    y + k * bar + bar - 2,
                    shown,
                    fill=MUTED,
                    font_size=10,
                )
            )
    return _svg(WIDTH, height, title, body)


def side_by_side(
    model: str, a: int, b: int, rows: Sequence[tuple[str, float | None, float | None]]
) -> str:
    """Two versions' held-out scores (their metrics, then F1 per class where recorded)."""
    return _bars(f"{model}: v{a} beside v{b}", (f"v{a}", f"v{b}"), rows)


def distributions(model: str, version: int, feature: str, found: Mapping[str, Any]) -> str:
    """One feature's share of rows per bin (a monitor report's entry: ``bins``, ``reference``,
    ``recent``, ``psi``): the training reference against the recent rows."""
    title = f"{model} v{version}: {feature} (PSI {found['psi']:.3f})"
    rows = list(zip(found["bins"], found["reference"], found["recent"], strict=True))
    return _bars(title, ("training reference", "recent rows"), rows, percent=True)


def realized_over_time(
    model: str, version: int, days: Sequence[tuple[str, float, int]], held_out: float | None
) -> str:
    """Realized accuracy per day (day, realized, reviewed) with the held-out score as a line."""
    label = f"{model} v{version}: realized accuracy on reviewed predictions, per day"
    if not days:
        return empty(label, "no corrections of this version yet")
    height, left, right, top, bottom = 220, 56, 20, 28, 44
    low, high = 0.0, 1.0
    span = max(len(days) - 1, 1)

    def x(i: int) -> float:
        return left + (WIDTH - left - right) * (i / span if len(days) > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    body = [_text(left, 18, label, font_weight="600")]
    for v in (0.0, 0.5, 1.0):
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{GRID}"/>'
        )
        body.append(_text(left - 6, y(v) + 4, f"{v:.0%}", text_anchor="end", fill=MUTED))
    if held_out is not None:
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(held_out):.1f}" y2="{y(held_out):.1f}" '
            f'stroke="{PROMOTED}" stroke-dasharray="6 4" class="held-out"/>'
        )
        body.append(
            _text(
                WIDTH - right,
                y(held_out) - 6,
                f"held-out {held_out:.1%}",
                text_anchor="end",
                fill=PROMOTED,
            )
        )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v, _) in enumerate(days))
    body.append(f'<polyline points="{line}" fill="none" stroke="{SECOND}" stroke-width="2"/>')
    for i, (day, value, reviewed) in enumerate(days):
        body.append(
            f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="4" fill="{SECOND}" class="point">'
            f"<title>{escape(day)}: {value:.1%} of {reviewed} reviewed</title></circle>"
        )
        body.append(_text(x(i), height - bottom + 16, day[5:], text_anchor="middle", fill=MUTED))
    body.append(
        _text(
            left,
            height - 8,
            "reviewed items are the least confident ones: this reads low",
            fill=MUTED,
        )
    )
    return _svg(WIDTH, height, label, body)
