"""Log-log charts as inline SVG: no plotting library, no script, nothing fetched. Each point
carries a <title> so a browser shows the job's name on hover."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
MARGIN = {"left": 70, "right": 150, "top": 34, "bottom": 46}


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str
    kind: str = "line"            # line | points | band
    names: list[str] = field(default_factory=list)
    dash: str | None = None
    lower: list[tuple[float, float]] = field(default_factory=list)  # band only


class LogChart:
    def __init__(self, title: str, xlabel: str, ylabel: str, width: int = 720, height: int = 400) -> None:
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.width, self.height = width, height
        self.series: list[Series] = []
        self.markers: list[tuple[float, str]] = []

    def _color(self) -> str:
        return PALETTE[len([s for s in self.series if s.kind != "band"]) % len(PALETTE)]

    def line(self, label: str, points: list[tuple[float, float]], dash: str | None = None) -> None:
        self.series.append(Series(label, _positive(points), self._color(), "line", dash=dash))

    def scatter(self, label: str, points: list[tuple[float, float]], names: list[str]) -> None:
        keep = [(p, n) for p, n in zip(points, names, strict=True) if p[0] > 0 and p[1] > 0]
        self.series.append(Series(label, [p for p, _ in keep], self._color(), "points", names=[n for _, n in keep]))

    def band(self, label: str, lower: list[tuple[float, float]], upper: list[tuple[float, float]]) -> None:
        self.series.append(Series(label, _positive(upper), "#bbbbbb", "band", lower=_positive(lower)))

    def marker(self, x: float, label: str) -> None:
        self.markers.append((x, label))

    def render(self) -> str:
        every = [p for s in self.series for p in s.points + s.lower]
        if not every:
            return f'<p class="empty">{html.escape(self.title)}: nothing to draw</p>'
        xs = [math.log10(x) for x, _ in every] + [math.log10(x) for x, _ in self.markers if x > 0]
        ys = [math.log10(y) for _, y in every]
        x0, x1 = _padded(min(xs), max(xs))
        y0, y1 = _padded(min(ys), max(ys))
        left, top = MARGIN["left"], MARGIN["top"]
        plot_w = self.width - left - MARGIN["right"]
        plot_h = self.height - top - MARGIN["bottom"]

        def px(x: float) -> float:
            return left + (math.log10(x) - x0) / (x1 - x0) * plot_w

        def py(y: float) -> float:
            return top + plot_h - (math.log10(y) - y0) / (y1 - y0) * plot_h

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{html.escape(self.title)}">',
               f'<text x="{left}" y="20" class="title">{html.escape(self.title)}</text>',
               f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>']
        for exponent in range(math.ceil(x0), math.floor(x1) + 1):
            x = left + (exponent - x0) / (x1 - x0) * plot_w
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" class="grid"/>'
                       f'<text x="{x:.1f}" y="{top + plot_h + 16}" class="tick" text-anchor="middle">1e{exponent}</text>')
        for exponent in range(math.ceil(y0), math.floor(y1) + 1):
            y = top + plot_h - (exponent - y0) / (y1 - y0) * plot_h
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>'
                       f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">1e{exponent}</text>')
        out.append(f'<text x="{left + plot_w / 2}" y="{self.height - 8}" class="label" text-anchor="middle">'
                   f'{html.escape(self.xlabel)}</text>')
        out.append(f'<text x="14" y="{top + plot_h / 2}" class="label" text-anchor="middle" '
                   f'transform="rotate(-90 14 {top + plot_h / 2})">{html.escape(self.ylabel)}</text>')
        for s in self.series:
            if s.kind == "band":
                ring = s.points + list(reversed(s.lower))
                out.append(f'<polygon points="{" ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ring)}" '
                           f'fill="{s.color}" fill-opacity="0.35" stroke="none"/>')
            elif s.kind == "line" and len(s.points) > 1:
                dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
                out.append(f'<polyline points="{" ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)}" '
                           f'fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
            elif s.kind == "points":
                for (x, y), name in zip(s.points, s.names, strict=True):
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{s.color}" fill-opacity="0.8">'
                               f'<title>{html.escape(name)}</title></circle>')
        for x, label in self.markers:
            out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + plot_h}" class="marker"/>'
                       f'<text x="{px(x) + 4:.1f}" y="{top + 14}" class="tick">{html.escape(label)}</text>')
        for i, s in enumerate(self.series):
            y = top + 12 + i * 18
            swatch = (f'<circle cx="{self.width - MARGIN["right"] + 18}" cy="{y - 4}" r="4" fill="{s.color}"/>'
                      if s.kind == "points" else
                      f'<rect x="{self.width - MARGIN["right"] + 10}" y="{y - 8}" width="16" height="6" fill="{s.color}"/>')
            out.append(swatch + f'<text x="{self.width - MARGIN["right"] + 32}" y="{y}" class="tick">'
                                f'{html.escape(s.label)}</text>')
        out.append("</svg>")
        return "\n".join(out)


def _positive(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]


def _padded(low: float, high: float) -> tuple[float, float]:
    if high - low < 1e-9:
        return low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    return low - pad, high + pad
