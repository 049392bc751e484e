"""``AttentionMap``: one head's attention weights as a heatmap, query tokens down and key
tokens across, labelled with the tokens; the keyboard walks through layers, heads and
query rows. The weights come from ``mnemos.inspect.attention_view``."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from mnemos.inspect import AttentionView
from mnemos_tui.widgets.shades import palette

LABEL_WIDTH = 10  # characters of each query label
KEY_LABEL_ROWS = 3  # key labels are written downwards, this many characters each
SHADES = 16  # distinct cell colours
GAMMA = 0.5  # shade = weight ** GAMMA: a head spread over 25 tokens (4% each) still shows, at 20%


class AttentionMap(Widget, can_focus=True):
    """Heatmap of ``view.weights[layer, head]``; ``a`` shows the mean over heads."""

    DEFAULT_CSS = """
    AttentionMap { height: auto; width: auto; padding: 0 1; }
    AttentionMap > .attention-map--hot { color: $accent; }
    AttentionMap > .attention-map--cold { color: $panel; }
    AttentionMap > .attention-map--query { text-style: bold reverse; }
    """
    COMPONENT_CLASSES = {"attention-map--hot", "attention-map--cold", "attention-map--query"}
    BINDINGS = [
        Binding("left", "head(-1)", "Head −"),
        Binding("right", "head(1)", "Head +"),
        Binding("up", "layer(-1)", "Layer −"),
        Binding("down", "layer(1)", "Layer +"),
        Binding("comma", "query(-1)", "Query ↑"),
        Binding("full_stop", "query(1)", "Query ↓"),
        Binding("m", "toggle_mean", "Mean of heads"),
    ]

    layer: reactive[int] = reactive(0)
    head: reactive[int] = reactive(0)
    query: reactive[int] = reactive(-1)  # -1: the last token
    mean_heads: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: AttentionView | None = None

    def show(self, view: AttentionView | None) -> None:
        """Draw ``view`` (None: nothing to draw, e.g. an empty prompt)."""
        self.view = view
        if view is None:
            self.refresh(layout=True)
            return
        self.layer = min(self.layer, view.n_layer - 1)
        self.head = min(self.head, view.n_head - 1)
        self.query = -1
        self.refresh(layout=True)

    # -- navigation -------------------------------------------------------------------

    def action_head(self, delta: int) -> None:
        if self.view is not None:
            self.mean_heads = False
            self.head = (self.head + delta) % self.view.n_head
            self._moved()

    def action_layer(self, delta: int) -> None:
        if self.view is not None:
            self.layer = (self.layer + delta) % self.view.n_layer
            self._moved()

    def action_query(self, delta: int) -> None:
        if self.view is not None:
            T = len(self.view.ids)
            self.query = max(0, min(T - 1, self.query % T + delta))
            self._moved()

    def action_toggle_mean(self) -> None:
        self.mean_heads = not self.mean_heads
        self._moved()

    def _moved(self) -> None:
        self.refresh()  # same size: no new layout needed

    # -- drawing ----------------------------------------------------------------------

    @property
    def weights(self) -> np.ndarray:
        """The (T, T) map shown now."""
        w = self.view.weights[self.layer]
        return w.mean(0) if self.mean_heads else w[self.head]

    def _palette(self) -> list[Style]:
        return palette(self, "attention-map--hot", "attention-map--cold", SHADES)

    def render(self):
        if self.view is None:
            return Text("(no attention maps: type a prompt)", style="dim")
        view, w = self.view, self.weights
        T = w.shape[0]
        q = self.query % T
        which = "mean of all heads" if self.mean_heads else f"head {self.head + 1}/{view.n_head}"
        dist = view.head_summary()[self.layer]
        look = dist.mean() if self.mean_heads else dist[self.head]
        title = Text()
        title.append(f"layer {self.layer + 1}/{view.n_layer} · {which}", style="bold")
        title.append(f" · looks back {look:.1f} tokens on average · queries down, keys across"
                     " · shade ∝ √weight")
        if view.truncated:
            title.append(f"\n(first {view.truncated} tokens dropped: the context holds {T})", style="dim")

        palette = self._palette()
        # Key labels, written downwards above their column.
        header = []
        for r in range(KEY_LABEL_ROWS):
            row = Text(" " * (LABEL_WIDTH + 2))
            for lab in view.labels:
                row.append(lab[r] if r < len(lab) else " ", style="dim")
            header.append(row)
        shade = np.minimum((w ** GAMMA * (SHADES - 1) + 0.5).astype(int), SHADES - 1)
        rows = []
        query_style = self.get_component_rich_style("attention-map--query")
        for i, lab in enumerate(view.labels):
            line = Text()
            line.append(f"{lab[:LABEL_WIDTH]:>{LABEL_WIDTH}} ", style=query_style if i == q else "")
            line.append("▶" if i == q else " ")
            # one segment per run of equal shades (far fewer than T cells to draw)
            row = shade[i, :i + 1]
            cuts = np.flatnonzero(np.diff(row)) + 1
            for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [i + 1]))):
                line.append(" " * int(b - a), style=palette[row[a]])
            line.append("·" * (T - i - 1), style="dim")  # the future: masked
            rows.append(line)
        top = np.argsort(-w[q], kind="stable")[:5]
        reads = Text()
        reads.append(f"[{view.labels[q]}] (position {q}) reads: ", style="bold")
        reads.append(" · ".join(f"[{view.labels[k]}]@{k} {w[q, k]:.0%}" for k in top if w[q, k] > 0))
        return Group(title, *header, *rows, reads)
