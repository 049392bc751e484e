"""What each head does: ``HeadGrid``, a layer x head table of one score at a time
(previous-token, duplicate-token, induction or attention entropy), shaded, with the
top head of each kind named above it (``head_summary``); enter on a head opens its
attention map on the repeated random sequence it was scored on (``HeadMapDialog``).
Numbers from ``mnemos.heads``."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable

from mnemos.heads import KINDS, HeadScores
from mnemos.inspect import AttentionView, token_label
from mnemos_tui.widgets.attention_map import AttentionMap
from mnemos_tui.widgets.shades import palette, shade

SCORES = (*KINDS, "entropy")
NAMES = {"previous_token": "previous token", "duplicate_token": "duplicate token", "induction": "induction",
         "entropy": "attention entropy (bits)"}
SHADES = 12


def head_summary(scores: HeadScores, kind: str) -> Text:
    """Which score is shown, what its numbers mean, and the top head of every kind."""
    text = Text()
    text.append(NAMES[kind], style="bold")
    if kind == "entropy":
        text.append(" · 0 = reads one token; darker = more focused")
    else:
        text.append(f" · share of attention on the pattern; a perfect head scores {scores.ceiling[kind]:.2f}")
    B, T = scores.tokens.shape
    source = "the training text's" if scores.from_training else "all"
    text.append(f"\non {B} sequences of {T // 2} random tokens (of {source} {scores.pool_size} ids), each "
                "repeated · top: ", style="dim")
    tops = []
    for k in SCORES:
        layer, head, value = scores.top(k)
        tops.append(f"{'focused' if k == 'entropy' else NAMES[k]} L{layer + 1} H{head + 1} ({value:.2f})")
    text.append(" · ".join(tops), style="dim")
    return text


class HeadGrid(DataTable):
    """Arrows move between heads; ``o`` shows the other kinds of score in turn; enter opens the
    head's attention map."""

    DEFAULT_CSS = """
    HeadGrid { height: auto; max-height: 1fr; }
    HeadGrid > .head-grid--hot { color: $accent; }
    HeadGrid > .head-grid--cold { color: $panel; }
    """
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"head-grid--hot", "head-grid--cold"}
    BINDINGS = [Binding("o", "next_kind", "Other score"),
                Binding("enter", "select_cursor", "Attention map")]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="cell", zebra_stripes=False)
        self.scores: HeadScores | None = None
        self.kind = "induction"

    def show(self, scores: HeadScores | None) -> None:
        self.scores = scores
        self._fill()

    def action_next_kind(self) -> None:
        self.kind = SCORES[(SCORES.index(self.kind) + 1) % len(SCORES)]
        self._fill()

    @property
    def grid(self) -> np.ndarray:
        return self.scores.entropy if self.kind == "entropy" else self.scores.scores[self.kind]

    def _fill(self) -> None:
        where = self.cursor_coordinate
        self.clear(columns=True)
        if self.scores is None:
            return
        s = self.scores
        self.add_column("layer", key="layer")
        for h in range(s.n_head):
            self.add_column(f"head {h + 1}", key=f"h{h}")
        grid = self.grid
        # darker = more of the kind: the score over its ceiling, or for entropy how far
        # below the most spread-out head the head reads
        scale = (1.0 - grid / max(grid.max(), 1e-9)) if self.kind == "entropy" else grid / s.ceiling[self.kind]
        styles = palette(self, "head-grid--hot", "head-grid--cold", SHADES)
        for layer in range(s.n_layer):
            self.add_row(Text(f"{layer + 1}", style="bold"),
                         *(Text(f"{grid[layer, h]:>6.2f}", style=shade(styles, float(scale[layer, h])))
                           for h in range(s.n_head)))
        self.move_cursor(row=min(where.row, s.n_layer - 1), column=min(max(where.column, 1), s.n_head))
        self.post_message(self.KindChanged(self))

    @property
    def head(self) -> tuple[int, int] | None:
        """(layer, head) under the cursor, counted from 0 (None on the layer column)."""
        row, col = self.cursor_coordinate
        return (row, col - 1) if self.scores is not None and col >= 1 else None

    class KindChanged(Message):
        """The grid now shows another kind of score (the summary above follows)."""

        def __init__(self, grid: "HeadGrid") -> None:
            super().__init__()
            self.grid = grid


class HeadMapDialog(ModalScreen[None]):
    """One head's attention map on the random sequence it was scored on."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, scores: HeadScores, tokenizer, layer: int, head: int) -> None:
        super().__init__()
        ids = [int(i) for i in scores.tokens[0]]
        self.view = AttentionView(ids, [token_label(tokenizer.token_bytes(i)) for i in ids],
                                  scores.patterns[:, 0], 0)
        self.at = (layer, head)

    def compose(self) -> ComposeResult:
        with ScrollableContainer() as box:
            box.border_title = "A head on repeated random tokens (←/→ head, ↑/↓ layer, Esc closes)"
            yield AttentionMap(id="head-map")

    def on_mount(self) -> None:
        amap = self.query_one(AttentionMap)
        amap.show(self.view)
        amap.layer, amap.head = self.at
        amap.focus()
