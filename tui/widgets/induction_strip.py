"""``InductionStrip``: the induction bump, live, under the Train screen's loss curve.

Two sparklines, one character per evaluation: the in-context-learning score (mean loss
on late tokens of a window minus that on early ones: it falls when the model starts
using its context) and the best induction head's score (it jumps when induction heads
form). Olsson et al. (2022) saw both change together, early in training: the phase
change. The numbers are the trainer's (``EvalEvent.icl_score`` / ``induction_score``,
from ``mnemos.heads.induction_probe``)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from mnemos_tui.widgets.replay import spark_strip

LABEL = 11


class InductionStrip(Widget):
    DEFAULT_CSS = """
    InductionStrip { height: 2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.clear()

    def clear(self) -> None:
        self.icl: list[float | None] = []
        self.induction: list[float | None] = []
        self.head: list[int] | None = None
        self.refresh()

    def add(self, event) -> None:
        """One evaluation (an ``EvalEvent``)."""
        self.icl.append(event.icl_score)
        self.induction.append(event.induction_score)
        self.head = event.induction_head or self.head
        self.refresh()

    def render(self):
        if not any(x is not None for x in self.icl):
            return Text("in-context learning and induction heads: measured at each evaluation", style="dim")
        width = max(4, self.size.width - LABEL - 30)  # the most recent evaluations that fit
        icl = Text("in-context".ljust(LABEL)).append_text(spark_strip(self.icl[-width:]))
        icl.append(f" {self.icl[-1]:+.2f} late − early loss" if self.icl[-1] is not None else "", style="dim")
        ind = Text("induction".ljust(LABEL)).append_text(spark_strip(self.induction[-width:]))
        if self.induction[-1] is not None:
            where = f" (L{self.head[0]} H{self.head[1]})" if self.head else ""
            ind.append(f" {self.induction[-1]:.2f} best head{where}", style="dim")
        return Group(icl, ind)
