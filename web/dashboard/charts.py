"""Charts drawn on the server as inline SVG, from the data (no chart library, no scripts)."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 320, 240, 36


def curve_svg(points: list[list[float]], title: str, x_label: str, y_label: str,
              diagonal: bool = False) -> Markup:
    """A unit-square curve (ROC or precision-recall) from [x, y] points."""
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def xy(x: float, y: float) -> str:
        return f"{PAD + x * inner_w:.1f},{HEIGHT - PAD - y * inner_h:.1f}"

    path = " ".join(xy(x, y) for x, y in points)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(title)}</title>',
             f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" class="frame"/>']
    if diagonal:
        parts.append(f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{PAD}" '
                     'class="guide"/>')
    if points:
        parts.append(f'<polyline points="{path}" class="line"/>')
    parts += [f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" class="axis">{escape(x_label)}</text>',
              f'<text x="12" y="{HEIGHT / 2}" class="axis" transform="rotate(-90 12 '
              f'{HEIGHT / 2})">{escape(y_label)}</text>',
              f'<text x="{WIDTH / 2}" y="20" class="title">{escape(title)}</text>',
              "</svg>"]
    return Markup("".join(parts))


def volume_svg(days: list[dict]) -> Markup:
    """Stacked bars per day: spam, unsure, ham, and not yet judged."""
    width, height, pad = 640, 200, 30
    if not days:
        return Markup('<p class="muted">No mail in this period.</p>')
    peak = max(d["emails"] for d in days) or 1
    bar = (width - 2 * pad) / len(days)
    parts = [f'<svg class="chart wide" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="Mail per day" xmlns="http://www.w3.org/2000/svg">',
             "<title>Mail per day</title>"]
    for i, day in enumerate(days):
        x = pad + i * bar
        y = height - pad
        judged = day["spam"] + day["unsure"] + day["ham"]
        for kind, count in (("spam", day["spam"]), ("unsure", day["unsure"]),
                            ("ham", day["ham"]), ("pending", day["emails"] - judged)):
            h = (height - 2 * pad) * count / peak
            y -= h
            if count:
                parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                             f'height="{h:.1f}" class="bar {kind}"><title>{escape(day["day"])}: '
                             f'{count} {kind}</title></rect>')
    parts += [f'<text x="{pad}" y="{height - 8}" class="axis">{escape(days[0]["day"])}</text>',
              f'<text x="{width - pad}" y="{height - 8}" class="axis end">'
              f'{escape(days[-1]["day"])}</text>',
              f'<text x="{pad}" y="18" class="axis">peak {peak} emails/day</text>', "</svg>"]
    return Markup("".join(parts))
