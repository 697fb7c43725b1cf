"""Small server-drawn SVG bar charts for the team page (no chart library, no script needed)."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BAR_HEIGHT = 22
LABEL_WIDTH = 110
VALUE_WIDTH = 70
WIDTH = 420


def bar_chart(title: str, rows: Sequence[tuple[str, float | None]], fmt: str = "{:.2f}", *,
              reference: tuple[str, float] | None = None) -> SafeString:
    """Horizontal bars, one per row (``None`` values are drawn as "–"); ``reference`` draws a dashed
    line with a label (e.g. the SAM 2 paper's Phase 3 figure)."""
    values = [v for _, v in rows if v is not None] + ([reference[1]] if reference else [])
    top = max(values) if values and max(values) > 0 else 1.0
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = BAR_HEIGHT * max(1, len(rows)) + 30 + (14 if reference else 0)  # room for the reference label
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="0" y="14" class="chart-title">{escape(title)}</text>']
    for number, (label, value) in enumerate(rows):
        y = 24 + number * BAR_HEIGHT
        parts.append(f'<text x="0" y="{y + 14}" class="chart-label">{escape(label[:16])}</text>')
        if value is None:
            parts.append(f'<text x="{LABEL_WIDTH}" y="{y + 14}" class="chart-value">–</text>')
            continue
        bar = max(1.0, span * value / top)
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{BAR_HEIGHT - 6}" '
                     f'class="chart-bar"><title>{escape(label)}: {escape(fmt.format(value))}</title></rect>')
        parts.append(f'<text x="{LABEL_WIDTH + bar + 4:.1f}" y="{y + 14}" class="chart-value">'
                     f'{escape(fmt.format(value))}</text>')
    if reference:
        x = LABEL_WIDTH + span * reference[1] / top
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="20" y2="{height}" class="chart-reference"/>'
                     f'<text x="{x + 3:.1f}" y="{height - 2}" class="chart-reference-label">'
                     f'{escape(reference[0])}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
