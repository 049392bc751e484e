"""``NextTokenPanel``: the candidates for the next token as bars, with the entropy, and
keys that move temperature, top-k and top-p. The model's logits are computed once per
prompt (by the screen, in a worker); reshaping them is instant, so the bars follow every
key press at once. The numbers come from ``mnemos.inspect.next_token_distribution``."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from mnemos.inspect import NextTokenView, next_token_distribution
from mnemos.textfmt import bar

TOP_K_STEPS = (1, 2, 3, 5, 10, 20, 50, 100, 200, None)  # None (off) keeps every token
BAR_WIDTH = 32


def _step(values: tuple, current, delta: int):
    """The neighbour of ``current`` in ``values`` (clamped at both ends)."""
    i = values.index(current) if current in values else len(values) - 1
    return values[max(0, min(len(values) - 1, i + delta))]


def bars(view: NextTokenView, width: int = BAR_WIDTH, bar_style: Style | str = "",
         chosen_style: Style | str = "bold", compact: bool = False) -> Table:
    """The candidates as a table of bars: the reshaped probability as a solid bar, the
    model's own (temperature 1, unfiltered) probability as a dim tick on it. ``compact``
    (a narrow pane: Generate's odds at 80 columns) leaves out the id and model p columns."""
    table = Table(box=None, show_header=True, header_style="bold", padding=(0, 1), expand=False)
    table.add_column("", width=1)
    table.add_column("token", justify="right", no_wrap=True, max_width=16)
    if not compact:
        table.add_column("id", justify="right")
    table.add_column("p", justify="right", min_width=6)
    table.add_column("", no_wrap=True, width=width)
    if not compact:
        table.add_column("model p", justify="right", style="dim")
    for c in view.candidates:
        drawn = Text(bar(c.prob, width), style=chosen_style if c.chosen else bar_style)
        if c.prob == 0:
            drawn = Text("cut by top-k / top-p" if width >= 20 else "cut", style="dim italic")
        cells = ["▶" if c.chosen else "", Text(c.label, style="bold" if c.chosen else ""), str(c.id),
                 f"{c.prob:.1%}", drawn, f"{c.raw_prob:.1%}"]
        table.add_row(*([cells[0], cells[1], cells[3], cells[4]] if compact else cells))
    return table


def summary(view: NextTokenView) -> Text:
    text = Text()
    text.append(f"temperature {view.temperature:.2f}", style="bold")
    text.append(" · ")
    text.append(f"top-k {view.top_k or 'off'}", style="bold")
    text.append(" · ")
    text.append(f"top-p {view.top_p if view.top_p is not None else 'off'}", style="bold")
    text.append(f"\nentropy {view.entropy:.2f} bits ≈ {view.effective_choices:.1f} equally likely "
                f"choices (model: {view.raw_entropy:.2f} bits) · {view.kept} tokens can be drawn")
    return text


class NextTokenPanel(Widget, can_focus=True):
    """Bars of the next-token distribution; keys reshape it."""

    DEFAULT_CSS = """
    NextTokenPanel { height: auto; padding: 0 1; }
    NextTokenPanel > .next-token--bar { color: $primary; }
    NextTokenPanel > .next-token--chosen { color: $accent; text-style: bold; }
    """
    COMPONENT_CLASSES = {"next-token--bar", "next-token--chosen"}
    BINDINGS = [
        Binding("minus", "temperature(-1)", "Temp −"),
        Binding("plus,equals_sign", "temperature(1)", "Temp +"),
        Binding("k", "top_k(-1)", "Top-k −"),
        Binding("K", "top_k(1)", "Top-k +"),
        Binding("p", "top_p(-1)", "Top-p −"),
        Binding("P", "top_p(1)", "Top-p +"),
        Binding("0", "reset", "Reset sampling", show=False),
    ]

    temperature: reactive[float] = reactive(1.0)
    top_k: reactive[int | None] = reactive(None)
    top_p: reactive[float | None] = reactive(None)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.logits: np.ndarray | None = None
        self.tokenizer = None
        self.chosen: int | None = None
        self.view: NextTokenView | None = None
        self.k = 10
        self.note = ""  # a line above the bars, e.g. which token the last step took

    def show_logits(self, logits: np.ndarray, tokenizer, chosen: int | None = None) -> None:
        """New logits (a new prompt or a new generated step)."""
        self.logits, self.tokenizer, self.chosen = logits, tokenizer, chosen
        self._reshape()

    def probability(self, token_id: int) -> float:
        """``token_id``'s probability under the current settings."""
        from mnemos.generate import sampling_distribution

        return float(sampling_distribution(self.logits, self.temperature, self.top_k, self.top_p)[token_id])

    def label(self, token_id: int) -> str:
        from mnemos.inspect import token_label

        specials = {i: s for s, i in self.tokenizer.special_tokens.items()}
        return specials.get(token_id) or token_label(self.tokenizer.token_bytes(token_id))

    def _reshape(self) -> None:
        if self.logits is None:
            return
        self.view = next_token_distribution(self.logits, self.tokenizer, self.temperature, self.top_k,
                                            self.top_p, self.k, self.chosen)
        self.refresh(layout=True)

    def watch_temperature(self) -> None:
        self._reshape()

    def watch_top_k(self) -> None:
        self._reshape()

    def watch_top_p(self) -> None:
        self._reshape()

    def action_temperature(self, delta: int) -> None:
        self.temperature = round(min(3.0, max(0.1, self.temperature + 0.1 * delta)), 2)

    def action_top_k(self, delta: int) -> None:
        self.top_k = _step(TOP_K_STEPS, self.top_k, delta)

    def action_top_p(self, delta: int) -> None:
        current = 1.0 if self.top_p is None else self.top_p
        new = round(min(1.0, max(0.05, current + 0.05 * delta)), 2)
        self.top_p = None if new >= 1.0 else new

    def action_reset(self) -> None:
        self.temperature, self.top_k, self.top_p = 1.0, None, None

    def render(self):
        if self.view is None:
            return Text("(no prediction yet)", style="dim")
        note = Text(self.note, style="italic") if self.note else Text("")
        compact = self.size.width < 56  # a narrow pane: no id and model p columns
        labels = max((len(c.label) for c in self.view.candidates), default=1)
        fixed = min(16, labels) + (37 if not compact else 20)  # the other columns and their padding
        width = max(6, min(BAR_WIDTH, self.size.width - fixed))  # the bars give way in a narrow pane
        return Group(summary(self.view), note,
                     bars(self.view, width, self.get_component_rich_style("next-token--bar"),
                          self.get_component_rich_style("next-token--chosen"), compact))


class StepInspector(Widget, can_focus=True):
    """The next-token panel for a generated reply: each step's distribution with the
    token that was drawn marked; ``[`` / ``]`` walk through the steps, and the sampling
    keys reshape the step shown (the settings start as the reply's own)."""

    DEFAULT_CSS = """
    StepInspector { height: auto; }
    StepInspector > #step-title { padding: 0 1; text-style: bold; }
    """
    BINDINGS = [
        Binding("left_square_bracket", "step(-1)", "Previous step"),
        Binding("right_square_bracket", "step(1)", "Next step"),
        *NextTokenPanel.BINDINGS,
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.steps: list = []
        self.index = -1
        self.follow = True  # show each new step as it arrives until the user steps back
        self.tokenizer = None

    def compose(self):
        from textual.widgets import Static

        yield Static("No reply yet: type a prompt, and each token's odds appear here.", id="step-title")
        panel = NextTokenPanel(id="step-panel")
        panel.can_focus = False  # the keys come through this widget
        yield panel

    @property
    def panel(self) -> NextTokenPanel:
        return self.query_one(NextTokenPanel)

    def start(self, tokenizer, temperature: float, top_k: int | None, top_p: float | None) -> None:
        """A new reply: forget the old steps, take the reply's sampling settings."""
        self.tokenizer, self.steps, self.index, self.follow = tokenizer, [], -1, True
        panel = self.panel
        panel.temperature, panel.top_k = temperature, top_k or None
        panel.top_p = top_p if top_p is not None and top_p < 1.0 else None

    def add_steps(self, steps: list) -> None:
        self.steps.extend(steps)
        if self.follow and self.steps:
            self._show(len(self.steps) - 1)

    def _show(self, index: int) -> None:
        from mnemos.inspect import token_label

        self.index = index
        step = self.steps[index]
        self.panel.show_logits(step.logits, self.tokenizer, step.token_id)
        title = self.query_one("#step-title")
        title.update(Text(f"step {index + 1}/{len(self.steps)}: drew "
                          f"[{token_label(self.tokenizer.token_bytes(step.token_id))}] with p {step.prob:.1%}"))

    def action_step(self, delta: int) -> None:
        if self.steps:
            new = max(0, min(len(self.steps) - 1, self.index + delta))
            self.follow = new == len(self.steps) - 1
            self._show(new)

    # the sampling keys act on the panel inside
    def action_temperature(self, delta: int) -> None:
        self.panel.action_temperature(delta)

    def action_top_k(self, delta: int) -> None:
        self.panel.action_top_k(delta)

    def action_top_p(self, delta: int) -> None:
        self.panel.action_top_p(delta)

    def action_reset(self) -> None:
        self.panel.action_reset()
