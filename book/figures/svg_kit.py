"""Hand-written plumbing (not exported from a notebook): a tiny SVG kit for the book's conceptual figures.

Plain SVG strings, one palette and one font, so every figure looks like the others and the output is the same
byte for byte on every machine (no timestamps, no random ids).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#1f2937"
# The figures are drawn about 1000 px wide and shown at the book's column width (about 700 px): text is drawn
# this much larger than its nominal size so that it still reads at about 10 px there.
TEXT_SCALE = 1.18
MUTED = "#6b7280"

# (fill, stroke) per kind of thing, used the same way in every figure
PALETTE: dict[str, tuple[str, str]] = {
    "plain": ("#f9fafb", "#9ca3af"),
    "data": ("#dcfce7", "#16a34a"),       # text, tokens, ids
    "attn": ("#dbeafe", "#2563eb"),       # attention and its parts
    "ffn": ("#ffedd5", "#ea580c"),        # feed-forward networks, experts
    "norm": ("#fef9c3", "#ca8a04"),       # normalisation
    "head": ("#ede9fe", "#7c3aed"),       # output head, losses
    "mask": ("#fee2e2", "#dc2626"),       # [MASK], refusals, errors
    "serve": ("#e0f2fe", "#0284c7"),      # server machinery
    "dim": ("#f3f4f6", "#d1d5db"),        # what a figure does not highlight
    "accent": ("#2563eb", "#1e40af"),     # the one thing a figure highlights
}


def _num(v: float) -> str:
    """Coordinates with at most two decimals and no trailing zeros, so the files stay small and stable."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


class Svg:
    """An SVG document built element by element; `str(svg)` is the file."""

    def __init__(self, width: float, height: float, title: str, text_scale: float = TEXT_SCALE):
        self.width, self.height, self.title = width, height, title
        self.text_scale = text_scale  # 1.0 for a figure drawn at about the column's width
        self.parts: list[str] = []

    def add(self, element: str) -> None:
        self.parts.append(element)

    def rect(self, x: float, y: float, w: float, h: float, kind: str = "plain", rx: float = 6,
             dashed: bool = False, stroke_width: float = 1.5, fill: str | None = None) -> None:
        face, edge = PALETTE[kind]
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.add(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="{_num(rx)}" '
                 f'fill="{fill or face}" stroke="{edge}" stroke-width="{_num(stroke_width)}"{dash}/>')

    def text(self, x: float, y: float, s: str, size: float = 13, anchor: str = "middle", color: str = INK,
             weight: str = "normal", mono: bool = False, italic: bool = False) -> None:
        style = ' font-style="italic"' if italic else ""
        family = MONO if mono else FONT
        self.add(f'<text x="{_num(x)}" y="{_num(y)}" font-family="{family}" font-size="{_num(size * self.text_scale)}" '
                 f'text-anchor="{anchor}" fill="{color}" font-weight="{weight}"{style}>{escape(s)}</text>')

    def box(self, x: float, y: float, w: float, h: float, label: str, kind: str = "plain", sub: str = "",
            size: float = 13, dashed: bool = False, weight: str = "normal", color: str = INK,
            mono_sub: bool = True) -> None:
        """A rounded box with a centred label and an optional second line (a shape or a name) below it."""
        self.rect(x, y, w, h, kind, dashed=dashed)
        if sub:
            self.text(x + w / 2, y + h / 2 - 3, label, size, weight=weight, color=color)
            self.text(x + w / 2, y + h / 2 + 13, sub, size - 2, color=MUTED if color == INK else color,
                      mono=mono_sub)
        else:
            self.text(x + w / 2, y + h / 2 + size * 0.35, label, size, weight=weight, color=color)

    def line(self, x1: float, y1: float, x2: float, y2: float, color: str = INK, width: float = 1.5,
             arrow: bool = True, dashed: bool = False) -> None:
        head = ' marker-end="url(#arrow)"' if arrow else ""
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.add(f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" stroke="{color}" '
                 f'stroke-width="{_num(width)}"{dash}{head}/>')

    def path(self, d: str, color: str = INK, width: float = 1.5, arrow: bool = True, fill: str = "none",
             dashed: bool = False) -> None:
        head = ' marker-end="url(#arrow)"' if arrow else ""
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.add(f'<path d="{d}" fill="{fill}" stroke="{color}" stroke-width="{_num(width)}"{dash}{head}/>')

    def circle(self, cx: float, cy: float, r: float, kind: str = "plain") -> None:
        face, edge = PALETTE[kind]
        self.add(f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(r)}" fill="{face}" stroke="{edge}" '
                 f'stroke-width="1.5"/>')

    def cell(self, x: float, y: float, size: float, fill: str, stroke: str = "#ffffff") -> None:
        """One square of a grid (attention matrices, token rows)."""
        self.add(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(size)}" height="{_num(size)}" fill="{fill}" '
                 f'stroke="{stroke}" stroke-width="1"/>')

    def __str__(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(self.width)}" height="{_num(self.height)}" '
                f'viewBox="0 0 {_num(self.width)} {_num(self.height)}" role="img">\n'
                f"<title>{escape(self.title)}</title>\n"
                '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker></defs>\n'
                f'<rect width="100%" height="100%" fill="#ffffff"/>\n')
        return head + "\n".join(self.parts) + "\n</svg>\n"
