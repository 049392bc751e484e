"""Cell shades for the heat maps (attention, logit lens, head scores): ``n`` background
styles blended from a widget's cold component class to its hot one, so they follow
the app's theme."""

from __future__ import annotations

from rich.style import Style
from textual.color import Color


def palette(widget, hot_class: str, cold_class: str, n: int) -> list[Style]:
    """``n`` background styles from ``cold_class``'s colour (0) to ``hot_class``'s (n - 1)."""
    hot = widget.get_component_rich_style(hot_class).color
    cold = widget.get_component_rich_style(cold_class).color
    hot_c = Color.from_rich_color(hot) if hot else Color.parse("white")
    cold_c = Color.from_rich_color(cold) if cold else Color.parse("black")
    return [Style(bgcolor=cold_c.blend(hot_c, i / (n - 1)).rich_color) for i in range(n)]


def shade(palette_: list[Style], value: float) -> Style:
    """The style for ``value`` in [0, 1]."""
    n = len(palette_)
    return palette_[min(n - 1, max(0, int(value * (n - 1) + 0.5)))]
