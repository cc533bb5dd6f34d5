"""Hand-written plumbing (not exported from a notebook): widgets that still respond in the static book.

A rendered Jupyter Book has no kernel, so a slider cannot recompute a figure. Instead we precompute one
picture per setting and link each control to an `ipywidgets.Stack` of those pictures on the client side
(`jslink`): in Jupyter and in the book alike, moving the control shows the matching picture.

    fig_for = lambda w, n: plot_receptive_field(window=w, layers=n)
    frames = [[png_bytes(fig_for(w, n)) for n in layers] for w in windows]
    frame_explorer(frames, [labelled_slider("window", windows), labelled_slider("layers", layers)])
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt


def png_bytes(fig: Any, dpi: int = 80, close: bool = True) -> bytes:
    """Render a matplotlib figure to PNG bytes (and close it so it is not shown twice)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buf.getvalue()


def labelled_slider(description: str, values: Sequence[Any]) -> W.SelectionSlider:
    """A slider over `values` whose `index` drives a Stack (works without a kernel)."""
    return W.SelectionSlider(
        options=[(str(v), i) for i, v in enumerate(values)],
        value=0,
        description=description,
        continuous_update=True,
        style={"description_width": "initial"},
        layout=W.Layout(width="420px"),
    )


def labelled_toggle(description: str, values: Sequence[Any]) -> W.ToggleButtons:
    """Toggle buttons over `values` whose `index` drives a Stack."""
    return W.ToggleButtons(options=[str(v) for v in values], description=description,
                           style={"description_width": "initial", "button_width": "auto"})


def _frame(item: Any) -> W.Widget:
    if isinstance(item, W.Widget):
        return item
    if isinstance(item, bytes):
        return W.Image(value=item, format="png")
    if isinstance(item, str):
        return W.HTML(value=item)
    raise TypeError(f"a frame must be PNG bytes, an HTML string or a widget, got {type(item).__name__}")


def _stack(frames: Any, controls: Sequence[W.Widget], depth: int) -> W.Widget:
    if depth == len(controls):
        return _frame(frames)
    children = [_stack(f, controls, depth + 1) for f in frames]
    stack = W.Stack(children, selected_index=0)
    control = controls[depth]
    attr = "index" if hasattr(control, "index") else "value"
    if len(children) != len(getattr(control, "options", children)):
        raise ValueError(f"control {depth} has {len(control.options)} options but {len(children)} frames")
    W.jslink((control, attr), (stack, "selected_index"))
    return stack


def frame_explorer(frames: Any, controls: Sequence[W.Widget]) -> W.VBox:
    """Controls above nested Stacks of precomputed frames: `frames[i][j]...` shows for control values i, j, ...

    Frames are PNG bytes, HTML strings or widgets; the nesting depth must equal `len(controls)`.
    """
    return W.VBox([*controls, _stack(frames, list(controls), 0)])
