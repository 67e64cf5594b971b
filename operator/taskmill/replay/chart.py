"""Completions over time, real and simulated, on one axis: SVG, or HTML around it.

Drawn by hand rather than with a plotting library: two step lines and their
axes are a few dozen lines of SVG, a browser shows the file with nothing
installed, and Taskmill does not depend on matplotlib (tens of megabytes for
one picture). PNG would need such a library, so it is not offered.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50
#: At most this many points per line: a 100,000-Task chart stays small.
MAX_POINTS = 2000
REAL_COLOUR, SIMULATED_COLOUR = "#1f77b4", "#d62728"


def _curve(ends: Sequence[float], start: float) -> list[tuple[float, int]]:
    """(seconds since ``start``, Tasks completed by then), thinned to MAX_POINTS."""
    n = len(ends)
    if n == 0:
        return []
    step = max(1, n // MAX_POINTS)
    indices = list(range(0, n, step))
    if indices[-1] != n - 1:
        indices.append(n - 1)
    return [(ends[i] - start, i + 1) for i in indices]


def _nice(value: float) -> float:
    """A round tick step near value / 5."""
    if value <= 0:
        return 1.0
    raw = value / 5
    power = 1.0
    while power * 10 <= raw:
        power *= 10
    while power > raw:
        power /= 10
    for factor in (1, 2, 5, 10):
        if power * factor >= raw:
            return power * factor
    return power * 10


def svg(
    real_ends: Sequence[float], simulated_ends: Sequence[float], start: float, title: str
) -> str:
    """The chart; ``*_ends`` are sorted absolute end times, ``start`` the first arrival."""
    real, simulated = _curve(real_ends, start), _curve(simulated_ends, start)
    span = max([p[0] for p in real[-1:] + simulated[-1:]] + [1e-9])
    total = max([p[1] for p in real[-1:] + simulated[-1:]] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(seconds: float) -> float:
        return LEFT + plot_w * seconds / span

    def y(count: float) -> float:
        return TOP + plot_h * (1 - count / total)

    def path(points: list[tuple[float, int]]) -> str:
        if not points:
            return ""
        parts = [f"M{x(0):.1f},{y(0):.1f}"]
        previous = 0
        for seconds, count in points:
            parts.append(f"L{x(seconds):.1f},{y(previous):.1f}L{x(seconds):.1f},{y(count):.1f}")
            previous = count
        return "".join(parts)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<text x="{LEFT}" y="{TOP - 18}" font-size="14">{html.escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    tick = _nice(span)
    t = 0.0
    while t <= span * 1.0001:
        out.append(
            f'<line x1="{x(t):.1f}" y1="{TOP + plot_h}" x2="{x(t):.1f}" y2="{TOP + plot_h + 5}" '
            f'stroke="#999"/><text x="{x(t):.1f}" y="{TOP + plot_h + 18}" '
            f'text-anchor="middle">{t:g}</text>'
        )
        t += tick
    count_tick = max(1.0, _nice(total))
    c = 0.0
    while c <= total * 1.0001:
        out.append(
            f'<line x1="{LEFT - 5}" y1="{y(c):.1f}" x2="{LEFT}" y2="{y(c):.1f}" stroke="#999"/>'
            f'<text x="{LEFT - 8}" y="{y(c) + 4:.1f}" text-anchor="end">{c:g}</text>'
        )
        c += count_tick
    out += [
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">'
        "seconds since the first arrival</text>",
        f'<text transform="translate(16,{TOP + plot_h / 2}) rotate(-90)" '
        'text-anchor="middle">Tasks completed</text>',
        f'<path d="{path(real)}" fill="none" stroke="{REAL_COLOUR}" stroke-width="2"/>',
        f'<path d="{path(simulated)}" fill="none" stroke="{SIMULATED_COLOUR}" '
        'stroke-width="2" stroke-dasharray="6,3"/>',
        f'<text x="{LEFT + 10}" y="{TOP + 16}" fill="{REAL_COLOUR}">'
        f"— real ({len(real_ends)})</text>",
        f'<text x="{LEFT + 10}" y="{TOP + 32}" fill="{SIMULATED_COLOUR}">'
        f"- - simulated ({len(simulated_ends)})</text>",
        "</svg>",
    ]
    return "\n".join(out)


def page(
    real_ends: Sequence[float], simulated_ends: Sequence[float], start: float, title: str
) -> str:
    """A self-contained HTML page around :func:`svg`."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"{svg(real_ends, simulated_ends, start, title)}\n</body></html>\n"
    )
