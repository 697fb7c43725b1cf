"""Template helpers shared by the pages: the one date format and the SVG icons."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def when(value: datetime | None, empty: str = "—") -> str:
    """A moment in the one date format, ``YYYY-MM-DD HH:MM``: written in UTC here, shown in the reader's
    time zone by ``dates.js`` (the ``datetime`` attribute carries the exact instant)."""
    if value is None:
        return format_html('<span class="muted">{}</span>', empty)
    utc = value.astimezone(UTC) if timezone.is_aware(value) else value
    return format_html('<time datetime="{}" title="{} UTC">{} UTC</time>', utc.isoformat(),
                       utc.strftime("%Y-%m-%d %H:%M"), utc.strftime("%Y-%m-%d %H:%M"))
