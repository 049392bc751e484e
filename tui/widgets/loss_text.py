"""Text coloured by loss: ``LossText`` draws a text with each token's background
coloured by the probability the model gave it (green: expected, red: a surprise), and
lists the worst-predicted tokens with what the model expected instead.
``LossTextDialog`` opens it over the Evaluate screen for the test file, or for any text
typed into it. Numbers from ``mnemos.token_loss``."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Label

from mnemos.token_loss import TokenLossView

# probability the model gave the token -> its colour class, best first
BANDS = ((0.5, "good", "p ≥ 50%"), (0.1, "fair", "≥ 10%"), (0.01, "poor", "≥ 1%"), (0.0, "bad", "< 1%"))
WORST = 10


class LossText(Widget):
    """The scored text, token by token, coloured by the probability of each token."""

    DEFAULT_CSS = """
    LossText { height: auto; padding: 0 1; }
    LossText > .loss-text--good { background: $success 35%; }
    LossText > .loss-text--fair { background: $warning 25%; }
    LossText > .loss-text--poor { background: $warning 60%; }
    LossText > .loss-text--bad { background: $error 70%; }
    LossText > .loss-text--unscored { color: $text-muted; }
    """
    COMPONENT_CLASSES = {f"loss-text--{name}" for _, name, _ in BANDS} | {"loss-text--unscored"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: TokenLossView | None = None

    def show(self, view: TokenLossView | None) -> None:
        self.view = view
        self.refresh(layout=True)

    def _style(self, prob: float):
        if np.isnan(prob):
            return self.get_component_rich_style("loss-text--unscored")
        name = next(name for floor, name, _ in BANDS if prob >= floor)
        return self.get_component_rich_style(f"loss-text--{name}")

    def legend(self) -> Text:
        v = self.view
        text = Text()
        text.append(f"{len(v.loss):,} tokens, mean loss {v.mean_loss:.3f} nats", style="bold")
        if v.unscored_chars:
            text.append(f" ({v.unscored_chars:,} more characters not scored)", style="dim")
        text.append(" · the model gave each token: ")
        for _, name, label in BANDS:
            text.append(f" {label} ", style=self.get_component_rich_style(f"loss-text--{name}"))
        return text

    def body(self) -> Text:
        """The text itself; a character split between two tokens takes the later one's colour."""
        v = self.view
        text, end = Text(), 0
        for tok, prob in zip(v.tokens.tokens, v.prob):
            piece = v.tokens.text[max(end, tok.char_start):tok.char_end]
            end = max(end, tok.char_end)
            text.append(piece, style=self._style(float(prob)))
        return text

    def worst(self) -> Table:
        table = Table(box=None, header_style="bold", padding=(0, 1), title_justify="left",
                      title=f"the {WORST} worst-predicted tokens", title_style="bold")
        for name, justify in (("at", "right"), ("token", "left"), ("loss", "right"), ("p", "right"),
                              ("expected instead", "left")):
            table.add_column(name, justify=justify, no_wrap=True)
        for s in self.view.worst(WORST):
            table.add_row(str(s.index), s.label[:14], f"{s.loss:.2f}", f"{s.prob:.2%}",
                          f"{s.expected_label[:14]} ({s.expected_prob:.0%})")
        return table

    def render(self):
        if self.view is None:
            return Text("scoring …", style="dim")
        return Group(self.legend(), Text(""), self.body(), Text(""), self.worst())


class LossTextDialog(ModalScreen[None]):
    """The test file (its first tokens) or a typed text, coloured by loss, over any screen."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, model, tokenizer, source: str, text: str) -> None:
        super().__init__()
        self.model, self.tokenizer, self.source, self.text = model, tokenizer, source, text

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Text coloured by loss (Esc closes)"
            yield Input(placeholder="type any text and press enter to score it instead", id="loss-text-input",
                        compact=True)
            yield Label(f"the start of {self.source}", id="loss-text-status")
            with VerticalScroll():
                yield LossText(id="loss-text")

    def on_mount(self) -> None:
        self.score(self.text)
        self.query_one(VerticalScroll).focus()

    @on(Input.Submitted, "#loss-text-input")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.query_one("#loss-text-status", Label).update("the text typed above")
            self.score(event.value)

    @work(thread=True, exclusive=True, group="loss-text")
    def score(self, text: str) -> None:
        from mnemos.errors import MnemosError
        from mnemos.token_loss import token_losses

        try:
            view = token_losses(self.model, self.tokenizer, text)
        except MnemosError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.query_one(LossText).show, view)
