"""``AttributionChart``: direct logit attribution as a diverging bar chart. For one
position of the prompt and one candidate next token, how much the embeddings and each
block's attention and MLP pushed that token's logit up (right) or down (left). The
screen hands over the prompt's activation cache once; moving between positions and
candidates is then instant (``mnemos.attribution.attribute``)."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from mnemos.attribution import Attribution, attribute

NAME_WIDTH = 20
HALF = 22  # bar characters each side of zero


def diverging_bar(value: float, top: float, half: int = HALF) -> Text:
    """``value`` as a bar left (negative) or right (positive) of a centre line."""
    n = min(half, round(abs(value) / top * half)) if top > 0 else 0
    bar = Text()
    bar.append(" " * (half - n if value < 0 else half))
    if value < 0:
        bar.append("█" * n, style="red")
    bar.append("│", style="dim")
    if value >= 0:
        bar.append("█" * n, style="green")
    return bar


class AttributionChart(Widget, can_focus=True):
    """←/→ move along the prompt, ↑/↓ walk the candidates from the most likely down."""

    DEFAULT_CSS = """
    AttributionChart { height: auto; padding: 0 1; }
    """
    BINDINGS = [
        Binding("left", "position(-1)", "Position −"),
        Binding("right", "position(1)", "Position +"),
        Binding("up", "rank(-1)", "Likelier"),
        Binding("down", "rank(1)", "Less likely"),
    ]

    position: reactive[int] = reactive(-1)  # -1: the last token (what comes next)
    rank: reactive[int] = reactive(0)  # 0: the model's top guess

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.model = self.tokenizer = self.cache = None
        self.attribution: Attribution | None = None

    def show(self, model, tokenizer, cache) -> None:
        """A new prompt's cache (None: nothing to show); the position stays if it can."""
        self.model, self.tokenizer, self.cache = model, tokenizer, cache
        if cache is not None:
            T = cache.idx.shape[1]
            self.set_reactive(AttributionChart.position, min(self.position, T - 1))
        self._compute()

    def explain(self, position: int) -> None:
        """Show the top guess at ``position``."""
        self.set_reactive(AttributionChart.rank, 0)
        self.position = position

    def action_position(self, delta: int) -> None:
        if self.cache is not None:
            T = self.cache.idx.shape[1]
            self.position = max(0, min(T - 1, self.position % T + delta))

    def action_rank(self, delta: int) -> None:
        if self.cache is not None:
            self.rank = max(0, min(self.model.config.vocab_size - 1, self.rank + delta))

    def watch_position(self) -> None:
        self._compute()

    def watch_rank(self) -> None:
        self._compute()

    def _compute(self) -> None:
        if self.cache is None:
            self.attribution = None
        else:
            logits = self.cache.logits[0, self.position]
            token = int(np.argsort(-logits, kind="stable")[self.rank])
            self.attribution = attribute(self.model, self.tokenizer, self.cache, self.position, token)
        self.refresh(layout=True)

    def render(self):
        a = self.attribution
        if a is None:
            return Text("(type a prompt to see where a prediction comes from)", style="dim")
        head = Text()
        head.append(f"[{a.token_label}]", style="bold")
        head.append(f" after [{a.labels[a.position]}] (position {a.position} of {len(a.ids)}): "
                    f"logit {a.logit:.2f}, p {a.prob:.1%}, ")
        head.append("the model's top guess" if a.rank == 0 else f"its guess number {a.rank + 1}", style="italic")
        head.append("\nwhat each part added to this logit, directly (←/→ position, ↑/↓ candidate)", style="dim")
        top = max((abs(v) for _, v in a.parts), default=1.0)
        rows = []
        for name, value in a.parts:
            line = Text(f"{name:<{NAME_WIDTH}}")
            line.append(f"{value:>+8.2f} ")
            line.append_text(diverging_bar(value, top))
            rows.append(line)
        foot = Text(f"{'final norm bias':<{NAME_WIDTH}}{a.bias:>+8.2f}\n{'= logit':<{NAME_WIDTH}}"
                    f"{a.total + a.bias:>+8.2f}", style="dim")
        return Group(head, *rows, foot)
