"""Hand-written plumbing (not exported from a notebook): draws the book's conceptual figures as SVG.

One function per figure, each returning the SVG text; `python book/figures/make_figures.py` (`make figures`)
writes them to `book/figures/svg/`, and `--check` says whether the committed files equal what this code draws.
Names, shapes and conventions follow the chapters: a window is a half-width (|i − j| ≤ w), tensors are
(B, H, T, D), the MoE layer sorts, gathers and index_adds.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from svg_kit import INK, MUTED, PALETTE, Svg  # noqa: E402

OUT = Path(__file__).resolve().parent / "svg"

# The whole model, in the order the book builds it: (chapter, name, what it adds)
STAGES = [
    (1, "Corpus", "clean text"),
    (2, "Tokenizer", "BPE ids"),
    (3, "Attention", "Q, K, V, RoPE"),
    (4, "Sliding window", "O(n·w)"),
    (5, "MoE", "router, experts"),
    (6, "Encoder", "blocks + head"),
    (7, "Pretraining", "masked LM"),
    (8, "Inference", "fill, embed, gen"),
    (9, "Serving", "HTTP API"),
    (10, "Scaling out", "DDP, FSDP"),
]
PARTS = [("Part I: data and tokens", 1, 2), ("Part II: building blocks", 3, 5),
         ("Part III: the model and its training", 6, 7), ("Part IV: using, serving, scaling it", 8, 10)]


def roadmap(chapter: int) -> str:
    """The ten stages of the book as one chain in two rows (parts I-II, parts III-IV), one chapter highlighted."""
    w, gap, x0, h = 124, 18, 10, 60
    rows = {1: 34, 2: 166}  # y of each row of boxes
    svg = Svg(x0 * 2 + 5 * w + 4 * gap + 20, 286, f"Roadmap of the book: chapter {chapter} highlighted",
              text_scale=1.0)

    def place(ch: int) -> tuple[float, float]:
        col = ch - 1 if ch <= 5 else ch - 6
        return x0 + col * (w + gap), rows[1 if ch <= 5 else 2]

    svg.text(x0, 22, "from raw text ...", 12, anchor="start", color=MUTED, italic=True)
    for ch, name, sub in STAGES:
        x, y = place(ch)
        here = ch == chapter
        svg.rect(x, y, w, h, "accent" if here else "dim", stroke_width=2.5 if here else 1.5)
        svg.text(x + w / 2, y + 17, f"{ch}", 12, color="#ffffff" if here else MUTED, weight="bold")
        svg.text(x + w / 2, y + 35, name, 14, color="#ffffff" if here else INK, weight="bold" if here else "normal")
        svg.text(x + w / 2, y + 52, sub, 12, color="#dbeafe" if here else MUTED)
        if ch not in (1, 6):
            svg.line(x - gap + 1, y + h / 2, x - 1, y + h / 2, color=MUTED, width=1.2)
    # chapter 5 -> chapter 6: the parts go into the encoder
    x5, y5 = place(5)
    x6, y6 = place(6)
    xr, yr = x5 + w + 14, y6 - 20  # round the right edge, then under the part labels
    svg.path(f"M{x5 + w},{y5 + h / 2} L{xr},{y5 + h / 2} L{xr},{yr} L{x6 + w / 2},{yr} L{x6 + w / 2},{y6 - 2}",
             color=MUTED, width=1.2)
    for label, first, last in PARTS:
        (xa, ya), (xb, _) = place(first), place(last)
        xa, xb, yb = xa + 4, xb + w - 4, ya + h + 12
        active = first <= chapter <= last
        color = PALETTE["accent"][1] if active else MUTED
        svg.path(f"M{xa},{yb - 5} L{xa},{yb} L{xb},{yb} L{xb},{yb - 5}", color=color, arrow=False)
        svg.text((xa + xb) / 2, yb + 17, label, 12.5, color=color, weight="bold" if active else "normal")
    x10, y10 = place(10)
    svg.text(x10 + w, y10 + h + 52, "... to a served model, on one GPU or many", 12, anchor="end", color=MUTED,
             italic=True)
    return str(svg)


def attention_heads() -> str:
    """Multi-head attention as the chapter-3 module computes it: one qkv projection, H heads, one output."""
    svg = Svg(1000, 330, "Multi-head attention: Q, K, V and heads")
    svg.box(10, 140, 90, 54, "x", "data", "(B, T, C)")
    svg.box(130, 132, 130, 70, "qkv", "attn", "Linear(C, 3C)")
    svg.line(100, 167, 128, 167)
    rows = {"Q": 62, "K": 142, "V": 222}
    for name, y in rows.items():
        svg.box(300, y, 110, 50, name, "attn", "(B, H, T, D)", weight="bold")
        svg.path(f"M260,167 C280,167 280,{y + 25} 298,{y + 25}")
    # H heads: shadows behind the one we draw, each head works on its own D = C / H dimensions
    for k in (3, 2, 1):
        svg.rect(440 + 8 * k, 40 - 8 * k, 260, 250, "dim")
    svg.rect(440, 40, 260, 250, "plain")
    svg.text(570, 60, "one head (of H), D = C / H dims", 12, color=MUTED, italic=True)
    svg.box(470, 72, 200, 50, "scores = Q Kᵀ / √D", "attn", "(B, H, T, T)")
    svg.box(470, 152, 200, 50, "softmax over keys", "attn", "padded keys → 0")
    svg.box(470, 226, 200, 50, "weights · V", "attn", "(B, H, T, D)")
    svg.line(410, 87, 468, 92)
    svg.line(410, 167, 468, 104)
    svg.path("M410,247 L468,251")
    svg.line(570, 122, 570, 150)
    svg.line(570, 202, 570, 224)
    svg.box(740, 140, 110, 54, "concat heads", "attn", "(B, T, C)")
    svg.path("M700,251 C720,251 720,167 738,167")
    svg.box(870, 140, 110, 54, "out", "attn", "Linear(C, C)")
    svg.line(850, 167, 868, 167)
    svg.text(925, 222, "→ y (B, T, C)", 12)
    svg.text(10, 318, "Every token's query scores every key; the weights mix the values. The H heads run side by side "
             "on slices of the same vectors.", 12, anchor="start", color=MUTED)
    return str(svg)


def rope_rotation() -> str:
    """RoPE: pair i of a query at position m turns by m·θ_i; the score sees only the difference of angles."""
    svg = Svg(900, 330, "RoPE: rotating pairs of dimensions by position")
    cx, cy, r = 170, 165, 115
    svg.line(cx - r - 15, cy, cx + r + 15, cy, color=MUTED, width=1, arrow=False)
    svg.line(cx, cy + r + 15, cx, cy - r - 15, color=MUTED, width=1, arrow=False)
    svg.add(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{PALETTE["dim"][1]}" stroke-width="1"/>')
    svg.text(cx + r + 10, cy + 18, "x₂ᵢ", 12, color=MUTED)
    svg.text(cx + 22, cy + r + 8, "x₂ᵢ₊₁ ↑", 12, color=MUTED)

    def ray(angle_deg: float, color: str, label: str, length: float = r) -> None:
        a = math.radians(angle_deg)
        x, y = cx + length * math.cos(a), cy - length * math.sin(a)
        svg.line(cx, cy, x, y, color=color, width=2.5)
        svg.text(x + 30 * math.cos(a), y - 22 * math.sin(a) + 4, label, 13, color=color, weight="bold")

    q_deg, k_deg = 25, 95
    ray(q_deg, PALETTE["attn"][1], "q at m")
    ray(k_deg, PALETTE["ffn"][1], "k at n", 95)
    a0, a1 = math.radians(q_deg), math.radians(k_deg)
    rr = 45
    svg.path(f"M{cx + rr * math.cos(a0):.2f},{cy - rr * math.sin(a0):.2f} "
             f"A{rr},{rr} 0 0,0 {cx + rr * math.cos(a1):.2f},{cy - rr * math.sin(a1):.2f}", color=INK, width=1.2)
    svg.text(cx + 62, cy - 62, "(n − m)·θᵢ", 12)
    svg.text(cx, 312, "pair i of q and k, as points in a plane", 12, color=MUTED, italic=True)
    # right: the same pairs at positions 0..7, for a fast, a middle and a slow frequency (D = 8)
    svg.text(600, 26, "one hand per position m = 0 … 7: pair i turns by m·θᵢ, θᵢ = 10000^(−2i/D)", 12)
    for row, i in enumerate((0, 1, 2)):
        theta = 10000 ** (-2 * i / 8)
        y = 80 + row * 85
        svg.text(345, y + 5, f"i = {i}", 12, anchor="start", weight="bold")
        svg.text(345, y + 21, f"θ = {theta:g}", 11, anchor="start", color=MUTED)
        for m in range(8):
            x = 445 + m * 58
            svg.circle(x, y, 22, "dim")
            a = math.radians(90) - m * theta  # start upright, turn clockwise with m
            svg.line(x, y, x + 19 * math.cos(a), y - 19 * math.sin(a), color=PALETTE["attn"][1], width=2,
                     arrow=False)
            if row == 2:
                svg.text(x, y + 40, f"m={m}", 11, color=MUTED)
    svg.text(600, 312, "fast pairs tell near positions apart, slow pairs far ones", 12, color=MUTED, italic=True)
    return str(svg)


def _band_grid(svg: Svg, x0: float, y0: float, T: int, window: int, cell: float, globals_: tuple[int, ...] = ()):
    """A (T, T) grid of query rows and key columns: the band |i − j| <= window, global rows and columns."""
    band, glob = PALETTE["attn"][1], PALETTE["ffn"][1]
    for i in range(T):
        for j in range(T):
            if i in globals_ or j in globals_:
                fill = glob
            elif abs(i - j) <= window:
                fill = band
            else:
                fill = PALETTE["dim"][0]
            svg.cell(x0 + j * cell, y0 + i * cell, cell, fill)
    svg.text(x0 + T * cell / 2, y0 - 8, "key j →", 12, color=MUTED)
    svg.add(f'<text x="{x0 - 10}" y="{y0 + T * cell / 2}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
            f'font-size="12" text-anchor="middle" fill="{MUTED}" '
            f'transform="rotate(-90 {x0 - 10} {y0 + T * cell / 2})">query i →</text>')


def sliding_window_tiles() -> str:
    """The band |i − j| <= w on a (T, T) grid, cut into (b × 3b) tiles with b = w, and one tile's own mask."""
    T, w, b, cell = 12, 3, 3, 20
    svg = Svg(900, 350, "Sliding-window band and its b × 3b tiles")
    x0, y0 = 100, 50
    _band_grid(svg, x0, y0, T, w, cell)
    colors = ["#7c3aed", "#ea580c", "#16a34a", "#db2777"]
    for i in range(T):  # the b zero-padded key columns on each side, seen only by the first and last tiles
        for j in [*range(-b, 0), *range(T, T + b)]:
            if (i < b and j < 0) or (i >= T - b and j >= T):
                svg.cell(x0 + j * cell, y0 + i * cell, cell, "#ffffff", stroke=PALETTE["dim"][1])
    for blk in range(T // b):
        xa = x0 + (blk - 1) * b * cell
        svg.add(f'<rect x="{xa + 2}" y="{y0 + blk * b * cell + 2}" width="{3 * b * cell - 4}" '
                f'height="{b * cell - 4}" fill="none" stroke="{colors[blk]}" stroke-width="2.5" rx="2"/>')
    svg.text(x0 - b * cell / 2, y0 - 8, "pad", 11, color=MUTED, italic=True)
    svg.text(x0 + (T + b / 2) * cell, y0 + T * cell + 16, "pad", 11, color=MUTED, italic=True)
    svg.text(x0 + T * cell / 2, y0 + T * cell + 46, f"T = {T}, w = {w}, b = w = {b}: {T // b} tiles of {b} × {3 * b}",
             12)
    # right: one tile, the same mask for every block: query r of the block, key c of its 3b window
    cell2, x1, y1 = 34, 470, 110
    for r in range(b):
        for c in range(3 * b):
            ok = abs(r + b - c) <= w
            svg.cell(x1 + c * cell2, y1 + r * cell2, cell2, PALETTE["attn"][1] if ok else PALETTE["dim"][0])
    svg.add(f'<rect x="{x1}" y="{y1}" width="{3 * b * cell2}" height="{b * cell2}" fill="none" stroke="{colors[2]}" '
            f'stroke-width="2.5" rx="2"/>')
    for k, label in enumerate(("block i − 1", "block i", "block i + 1")):
        xa = x1 + k * b * cell2
        svg.text(xa + b * cell2 / 2, y1 - 12, label, 12, color=MUTED)
        if k:
            svg.line(xa, y1 - 4, xa, y1 + b * cell2 + 4, color=INK, width=1, arrow=False)
    svg.text(x1 + 1.5 * b * cell2, y1 + b * cell2 + 26, "query block i: its keys all lie in blocks i − 1, i, i + 1",
             12)
    svg.text(x1 + 1.5 * b * cell2, y1 + b * cell2 + 46, "allowed(r, c) = |r + b − c| ≤ w, the same in every tile", 12,
             mono=False)
    svg.text(x1 + 1.5 * b * cell2, y1 + b * cell2 + 76, "n / b tiles × 3b² scores = 3·n·w scores, not n²", 12,
             weight="bold")
    svg.text(x1 + 1.5 * b * cell2, 40, "one tile, enlarged: (b × 3b)", 13, weight="bold")
    return str(svg)


def global_tokens() -> str:
    """Global tokens on top of the band: their rows and columns are full."""
    T, w, cell = 12, 2, 20
    svg = Svg(640, 370, "Global tokens on a sliding window")
    x0, y0 = 60, 50
    _band_grid(svg, x0, y0, T, w, cell, globals_=(0, 7))
    svg.text(x0 + T * cell / 2, y0 + T * cell + 36, f"T = {T}, w = {w}, global tokens at 0 ([CLS]) and 7", 12)
    lx = 350
    items = [(PALETTE["attn"][1], "local: |i − j| ≤ w"),
             (PALETTE["ffn"][1], "global: row and column full"),
             (PALETTE["dim"][0], "not computed")]
    for k, (fill, label) in enumerate(items):
        svg.cell(lx, 70 + k * 30, 18, fill, stroke=PALETTE["dim"][1])
        svg.text(lx + 28, 84 + k * 30, label, 12, anchor="start")
    notes = ["A global token sees every token,", "and every token sees it:", "two layers connect any pair.",
             "", "Blocked kernel: each tile gets the", "G global keys appended, and the G",
             "global rows are full attention:", "O(n·(w + G)) in all."]
    for k, line in enumerate(notes):
        svg.text(lx, 190 + k * 17, line, 12, anchor="start", color=MUTED if k >= 4 else INK)
    return str(svg)


EXPERT_TOKENS = {1: (1, 2, 4), 2: (2, 3, 5, 6), 3: (1, 5), 4: (3, 4, 6)}  # top-2 of 6 tokens over 4 experts
TOKEN_COLORS = ["#60a5fa", "#f59e0b", "#34d399", "#f472b6", "#a78bfa", "#f87171"]


def _chip(svg: Svg, x: float, y: float, t: int, size: float = 22) -> None:
    svg.add(f'<rect x="{x}" y="{y}" width="{size}" height="{size}" rx="4" fill="{TOKEN_COLORS[t - 1]}" '
            f'stroke="#ffffff"/>')
    svg.text(x + size / 2, y + size / 2 + 4, f"t{t}", 10, color="#ffffff", weight="bold")


def moe_dispatch() -> str:
    """Router → top-k gates → dispatch (sort, gather) → experts → combine (index_add_), plus shared experts."""
    svg = Svg(980, 400, "Mixture of Experts: router, top-k, dispatch, combine, shared experts")
    for t in range(1, 7):
        _chip(svg, 20, 50 + (t - 1) * 38, t, 28)
    svg.text(34, 40, "x (N, C)", 12)
    svg.box(95, 70, 140, 58, "router", "ffn", "softmax(x W_r)")
    svg.box(95, 170, 140, 58, "top-k gates", "ffn", "k = 2: g (N, k)")
    svg.line(50, 99, 93, 99)
    svg.line(165, 128, 165, 168)
    svg.rect(270, 50, 130, 232, "plain")
    for k, line in enumerate(("dispatch", "", "sort the N·k", "(token, expert)", "pairs by expert:", "argsort,",
                              "bincount,", "index_select")):
        svg.text(335, 80 + k * 20, line, 13 if k == 0 else 12, weight="bold" if k == 0 else "normal",
                 color=INK if k < 2 else MUTED)
    svg.line(235, 199, 268, 199)
    for e, toks in EXPERT_TOKENS.items():
        y = 40 + (e - 1) * 62
        svg.rect(440, y, 180, 52, "ffn")
        svg.text(450, y + 18, f"expert {e} (SwiGLU)", 12, anchor="start")
        for k, t in enumerate(toks):
            _chip(svg, 450 + k * 26, y + 25, t)
        svg.line(400, 166, 438, y + 26, color=MUTED, width=1)
        svg.line(620, y + 26, 658, 166, color=MUTED, width=1)
    svg.rect(660, 50, 130, 232, "plain")
    for k, line in enumerate(("combine", "", "multiply by", "the gate g,", "index_add_", "into each", "token's row")):
        svg.text(725, 80 + k * 20, line, 13 if k == 0 else 12, weight="bold" if k == 0 else "normal",
                 color=INK if k < 2 else MUTED)
    svg.circle(840, 166, 15, "plain")
    svg.text(840, 172, "+", 18, weight="bold")
    svg.line(790, 166, 823, 166)
    svg.line(855, 166, 888, 166)
    for t in range(1, 7):
        _chip(svg, 900, 50 + (t - 1) * 38, t, 28)
    svg.text(914, 40, "y (N, C)", 12)
    # shared experts: every token, no router
    svg.box(440, 305, 180, 52, "shared expert(s)", "ffn", "every token, no router", mono_sub=False)
    svg.path("M34,278 L34,331 L438,331")
    svg.path("M620,331 L840,331 L840,183")
    svg.text(20, 385, "Each token goes to its k = 2 best experts (t2 to experts 1 and 2); each expert runs only on its "
             "own tokens; a token receives k additions.", 12, anchor="start", color=MUTED)
    return str(svg)


def prenorm_block() -> str:
    """The pre-norm block of chapter 6: the norm inside each residual branch, the stream never normalised."""
    svg = Svg(560, 520, "The pre-norm block")
    sx = 110
    svg.box(sx - 55, 12, 110, 40, "x", "data", "(B, T, C)")
    svg.rect(20, 66, 500, 384, "plain", dashed=True)
    svg.text(40, 88, "block ℓ", 12, anchor="start", color=MUTED, weight="bold")
    svg.text(40, 104, "(× n_layers)", 11, anchor="start", color=MUTED)
    for k, (y_tap, y_plus, label, sub, kind) in enumerate((
            (120, 250, "attention", "global or sliding window", "attn"),
            (282, 412, "feed-forward", "dense SwiGLU or MoE", "ffn"))):
        svg.line(sx, 52 if k == 0 else y_tap - 32, sx, y_plus - 16)
        svg.path(f"M{sx},{y_tap} L330,{y_tap} L330,{y_tap + 8}")
        svg.box(240, y_tap + 10, 180, 32, "RMSNorm", "norm")
        svg.box(240, y_tap + 52, 180, 46, label, kind, sub, mono_sub=False)
        svg.box(240, y_tap + 108, 180, 26, "dropout", "plain", size=12)
        svg.line(330, y_tap + 42, 330, y_tap + 50)
        svg.line(330, y_tap + 98, 330, y_tap + 106)
        svg.path(f"M330,{y_tap + 134} L330,{y_plus} L{sx + 17},{y_plus}")
        svg.circle(sx, y_plus, 15, "plain")
        svg.text(sx, y_plus + 6, "+", 18, weight="bold")
        svg.text(sx - 12, (y_tap + y_plus) / 2, "residual", 11, anchor="end", color=MUTED, italic=True)
    svg.line(sx, 427, sx, 468)
    svg.box(sx - 55, 470, 110, 40, "x", "data", "(B, T, C)")
    svg.text(200, 480, "after the last block: a final RMSNorm", 12, anchor="start", color=MUTED)
    svg.text(200, 498, "(the stream itself is never normalised)", 12, anchor="start", color=MUTED)
    return str(svg)


def encoder_sparse_head() -> str:
    """The whole encoder: embedding, blocks, final norm, and the MLM head run on the labelled positions only."""
    svg = Svg(1000, 300, "The DeepSeek-Mini encoder and its sparse MLM head")
    y = 110
    svg.box(10, y, 90, 56, "ids", "data", "(B, T)")
    svg.box(125, y, 110, 56, "embed", "data", "V × C")
    svg.line(100, y + 28, 123, y + 28)
    for k in (2, 1, 0):
        svg.rect(262 + 6 * k, y - 32 - 6 * k, 200, 120, "dim" if k else "plain")
    svg.text(367, y - 12, "n_layers pre-norm blocks", 12, weight="bold")
    svg.text(367, y + 10, "attention: global every", 11, color=MUTED)
    svg.text(367, y + 25, "global_every layers,", 11, color=MUTED)
    svg.text(367, y + 40, "sliding window elsewhere", 11, color=MUTED)
    svg.text(367, y + 60, "FFN: MoE on moe_layers,", 11, color=MUTED)
    svg.text(367, y + 75, "dense SwiGLU elsewhere", 11, color=MUTED)
    svg.line(235, y + 28, 260, y + 28)
    svg.box(490, y, 100, 56, "RMSNorm", "norm", "(B, T, C)")
    svg.line(460, y + 28, 488, y + 28)
    svg.box(615, y, 130, 56, "gather", "head", "labels ≠ −100")
    svg.line(590, y + 28, 613, y + 28)
    svg.box(770, y, 125, 56, "head", "head", "(N, C)→(N, V)")
    svg.line(745, y + 28, 768, y + 28)
    svg.box(915, y, 80, 56, "cross-", "head", "entropy")
    svg.line(895, y + 28, 913, y + 28)
    svg.path(f"M180,{y + 56} L180,{y + 120} L832,{y + 120} L832,{y + 58}", color=PALETTE["head"][1], dashed=True)
    svg.text(508, y + 138, "tied: the head's weight is the embedding matrix (one tensor)", 12,
             color=PALETTE["head"][1])
    svg.text(680, y - 20, "only the N labelled", 11, color=MUTED)
    svg.text(680, y - 6, "positions, not B·T", 11, color=MUTED)
    svg.text(10, 24, "Positions enter only through RoPE inside attention: no position table.", 12, anchor="start",
             color=MUTED)
    svg.text(10, 42, "Without labels the head scores every position: logits (B, T, V).", 12, anchor="start",
             color=MUTED)
    return str(svg)


def masking_80_10_10() -> str:
    """BERT's recipe: select 15 % of the tokens; of those, 80 % [MASK], 10 % random, 10 % unchanged."""
    words = ["the", "river", "runs", "past", "the", "old", "city", "to", "the", "sea"]
    seen = {1: "[MASK]", 5: "[MASK]", 6: "blue", 9: "sea"}
    kinds = {1: "mask", 5: "mask", 6: "ffn", 9: "data"}
    svg = Svg(1000, 310, "Masking: selection, then 80/10/10 corruption")
    w, gap, x0 = 62, 4, 150
    rows = [("text", 40), ("selected", 100), ("model sees", 160), ("labels", 220)]
    for label, y in rows:
        svg.text(x0 - 12, y + 22, label, 13, anchor="end", weight="bold")
    for i, word in enumerate(words):
        x = x0 + i * (w + gap)
        svg.box(x, 40, w, 34, word, "plain", size=12)
        chosen = i in seen
        svg.box(x, 100, w, 34, "✓" if chosen else "", "accent" if chosen else "dim", color="#ffffff")
        svg.box(x, 160, w, 34, seen.get(i, word), kinds.get(i, "plain"), size=11 if chosen else 12)
        svg.box(x, 220, w, 34, word if chosen else "−100", "head" if chosen else "dim", size=12,
                color=INK if chosen else MUTED)
    bx = 822
    svg.text(bx + 50, 40, "of the selected", 12, weight="bold")
    for k, (share, label, kind, h) in enumerate(((80, "[MASK]", "mask", 160), (10, "random", "ffn", 20),
                                                (10, "unchanged", "data", 20))):
        y = 50 + (0 if k == 0 else 160 + (k - 1) * 20)
        svg.rect(bx, y, 40, h, kind, rx=0)
        svg.text(bx + 48, y + h / 2 + 4, f"{share} % {label}", 12, anchor="start")
    svg.text(x0, 282, "Selection: 15 % of the non-special tokens (ModernBERT: 30 %); this example selects 4 of 10 "
             "to show all three cases.", 11, anchor="start", color=MUTED)
    svg.text(x0, 298, "The loss counts only positions whose label is not −100 (PyTorch's ignore_index).", 11,
             anchor="start", color=MUTED)
    return str(svg)


def unmasking_loop() -> str:
    """Generation by iterative unmasking: predict every masked slot, keep the most confident, re-mask the rest."""
    prompt = ["The", "river"]
    answer = ["runs", "past", "the", "old", "city", "."]
    order = [[2, 5], [0, 4], [1, 3]]  # slots committed at steps 1, 2, 3: transfer_schedule(6, 3) = [2, 2, 2]
    svg = Svg(1000, 330, "Generation by iterative unmasking")
    w, x0 = 56, 90
    committed: set[int] = set()
    for step in range(4):
        y = 40 + step * 66
        svg.text(x0 - 12, y + 22, f"step {step}", 12, anchor="end", weight="bold")
        for i, word in enumerate(prompt):
            svg.box(x0 + i * (w + 4), y, w, 34, word, "data", size=12)
        new = set(order[step - 1]) if step else set()
        committed |= new
        for s, word in enumerate(answer):
            x = x0 + (len(prompt) + s) * (w + 4)
            if s in new:
                svg.box(x, y, w, 34, word, "accent", size=12, color="#ffffff", weight="bold")
            elif s in committed:
                svg.box(x, y, w, 34, word, "plain", size=12)
            else:
                svg.box(x, y, w, 34, "[M]", "mask", size=12)
    svg.text(x0, 318, "prompt + L = 6 [MASK]s, 3 steps: transfer_schedule(6, 3) = [2, 2, 2] slots committed per step",
             11, anchor="start", color=MUTED)
    # the loop
    lx = 640
    steps = [("model", "logits for every slot"), ("pick a token per", "masked slot + confidence"),
             ("commit the most", "confident (blue)"), ("re-mask the rest", "and repeat")]
    for k, (a, b) in enumerate(steps):
        y = 30 + k * 70
        svg.box(lx, y, 190, 50, a, "attn" if k == 0 else "plain", b, size=12, mono_sub=False)
        if k:
            svg.line(lx + 95, y - 20, lx + 95, y - 2)
    svg.path(f"M{lx + 190},{30 + 3 * 70 + 25} L{lx + 230},{30 + 3 * 70 + 25} L{lx + 230},55 L{lx + 192},55")
    svg.text(lx + 240, 150, "steps", 12, anchor="start", color=MUTED, italic=True)
    svg.text(lx + 240, 166, "times", 12, anchor="start", color=MUTED, italic=True)
    return str(svg)


def server_path() -> str:
    """One request through chapter 9's server: transport, contract, lane, batcher, model, response."""
    svg = Svg(1000, 300, "The server's request path")
    names = [("client", "JSON over HTTP", "plain"), ("transport", "timeouts, fd cap", "serve"),
             ("contract", "size, type, schema", "serve"), ("lane", "bounded queue", "serve"),
             ("batcher", "token budget", "serve"), ("model", "one pass per step", "attn")]
    w, gap, x0, y0 = 142, 26, 10, 70
    for i, (name, sub, kind) in enumerate(names):
        x = x0 + i * (w + gap)
        svg.box(x, y0, w, 60, name, kind, sub, mono_sub=False, weight="bold")
        if i:
            svg.line(x - gap + 1, y0 + 30, x - 1, y0 + 30)
    refusals = ((1, ("closed", "silent or slow client")), (2, ("413 415 422", "a readable reason")),
                (3, ("429", "full: Retry-After")), (5, ("504 / cancel", "deadline, hang-up")))
    for i, (code, why) in refusals:
        x = x0 + i * (w + gap)
        svg.line(x + w / 2, y0 + 60, x + w / 2, y0 + 98, color=PALETTE["mask"][1])
        svg.box(x, y0 + 100, w, 46, code, "mask", why, mono_sub=False, weight="bold")
    xh, xm = x0 + w / 2, x0 + 5 * (w + gap) + w / 2
    svg.text(xh + 260, y0 - 34, "/health: answered on the event loop, never waits for the model", 12, color=MUTED)
    xc = x0 + w / 2
    svg.path(f"M{xm - 40},{y0 + 60} L{xm - 40},{y0 + 196} L{xc},{y0 + 196} L{xc},{y0 + 62}",
             color=PALETTE["data"][1])
    svg.text((xc + xm) / 2 + 60, y0 + 214, "200: the JSON response", 12, color=PALETTE["data"][1], weight="bold")
    return str(svg)


FIGURES: dict[str, Callable[[], str]] = {
    **{f"roadmap_{ch:02d}": (lambda ch=ch: roadmap(ch)) for ch, _, _ in STAGES},
    "attention_heads": attention_heads,
    "rope_rotation": rope_rotation,
    "sliding_window_tiles": sliding_window_tiles,
    "global_tokens": global_tokens,
    "moe_dispatch": moe_dispatch,
    "prenorm_block": prenorm_block,
    "encoder_sparse_head": encoder_sparse_head,
    "masking_80_10_10": masking_80_10_10,
    "unmasking_loop": unmasking_loop,
    "server_path": server_path,
}


def render_all() -> dict[str, str]:
    """Every figure's file name and SVG text."""
    return {f"{name}.svg": draw() for name, draw in FIGURES.items()}


def stale(out: Path = OUT) -> list[str]:
    """Figures whose committed file differs from what the code draws, or is missing, or has no code."""
    drawn = render_all()
    bad = [name for name, text in drawn.items()
           if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
    extra = sorted(p.name for p in out.glob("*.svg") if p.name not in drawn) if out.is_dir() else []
    return sorted(bad) + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed SVGs are out of date")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            print("out of date (run `make figures`):", ", ".join(bad))
            return 1
        print(f"{len(FIGURES)} figures up to date")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    drawn = render_all()
    for old in OUT.glob("*.svg"):
        if old.name not in drawn:
            old.unlink()
    for name, text in drawn.items():
        tmp = OUT / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(OUT / name)
    print(f"wrote {len(drawn)} figures to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
