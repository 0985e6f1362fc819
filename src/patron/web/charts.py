"""Charts drawn by pygal on the server as inline SVG: no script, nothing fetched by the browser.

pygal always appends a small inline <script> (its tooltip configuration); the page's Content
Security Policy forbids inline scripts, so it is removed and the charts stay static, with the
values printed where they fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "WenQuanYi Zen Hei", sans-serif'

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1d2430",
    foreground_strong="#1d2430",
    foreground_subtle="#8a94a3",
    opacity=".85",
    opacity_hover=".95",
    colors=("#1f5fbf", "#1b7a43", "#b3261e", "#a15c00", "#6f42c1", "#0f8a8a", "#7d8793"),
    font_family=_FONT,
    label_font_family=_FONT,
    major_label_font_family=_FONT,
    value_font_family=_FONT,
    value_label_font_family=_FONT,
    tooltip_font_family=_FONT,
    title_font_family=_FONT,
    legend_font_family=_FONT,
    label_font_size=16,
    major_label_font_size=16,
    legend_font_size=18,
    value_font_size=16,
    value_label_font_size=16,
    title_font_size=22,
)


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 640,
        "height": 400,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 3,
        "show_minor_x_labels": False,
        "x_label_rotation": 0,
        "truncate_label": -1,
        "margin": 8,
        **extra,
    }


def _svg(chart: Any, title: str) -> Markup:
    chart.title = title
    # pygal builds the SVG with an XML serializer, which escapes every title, label and value.
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    label = Markup('<svg role="img" aria-label="{}" ').format(title)
    return Markup(svg.replace("<svg ", label, 1))  # noqa: S704 - escaped as said above


def _sparse(labels: Sequence[str], every: int) -> list[str]:
    return [label if i % every == 0 else "" for i, label in enumerate(labels)]


def series(
    title: str, labels: Sequence[str], lines: Sequence[tuple[str, Sequence[int]]], *, bars: bool = False
) -> Markup:
    """Values over time: one line (or bar group) per series."""
    every = max(1, len(labels) // 6)
    kind = pygal.Bar if bars else pygal.Line
    chart = kind(**_config(show_dots=len(labels) <= 31, fill=False, x_labels_major_every=every))
    chart.x_labels = labels
    chart.x_labels_major = _sparse(labels, every)
    for name, values in lines:
        chart.add(name, list(values))
    return _svg(chart, title)


def shares(title: str, parts: Sequence[tuple[str, int]]) -> Markup:
    """Parts of a whole (tiers): a horizontal bar per part, with its value printed."""
    chart = pygal.HorizontalBar(**_config(print_values=True, show_legend=False, height=max(220, 60 * len(parts) + 90)))
    chart.x_labels = [name for name, _ in parts]
    chart.add(title, [value for _, value in parts])
    return _svg(chart, title)
