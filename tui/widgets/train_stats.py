"""``TrainStats``: the live numbers of a run (state, step, loss, tokens/s, lr, ...).

It renders itself (``render``) and redraws with a plain ``refresh()``: a fixed-size widget
whose content changes several times a second must not ask the screen for a new layout each
time (``Static.update`` does, and the reflow cost training throughput: docs/measurements.md)."""

from __future__ import annotations

from rich.table import Table
from textual.widget import Widget


class TrainStats(Widget):
    """Two columns of label/value pairs, redrawn from a dict of values."""

    FIELDS = (("state", "state"), ("step", "step"), ("loss", "loss"), ("val loss", "val_loss"),
              ("best val", "best_val_loss"), ("tokens/s", "tokens_per_s"), ("lr", "lr"),
              ("grad norm", "grad_norm"), ("elapsed", "elapsed"), ("ETA", "eta"))

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: dict[str, str] = {"state": "idle"}

    def set(self, **values: str) -> None:
        self.values.update(values)
        self.refresh()

    def reset(self) -> None:
        self.values = {"state": self.values.get("state", "idle")}
        self.refresh()

    def render(self) -> Table:
        # fixed label widths and equal shares for the values: the columns never move as
        # the numbers change width several times a second
        # (equal shares, but the right values get the 13 columns of "12,345/~14,000" first and
        # the left ones 9, "preparing", where the pane is narrow: 80 columns)
        labels = [max(len(label) for label, _ in self.FIELDS[side::2]) for side in (0, 1)]
        room = max(0, self.size.width - sum(labels) - 6)  # 6: the padding between the columns
        left = max(min(9, room), min(room // 2, room - 13))
        table = Table.grid(padding=(0, 1))
        for label_width, value_width in zip(labels, (left, room - left)):
            table.add_column(style="bold", no_wrap=True, width=label_width)
            table.add_column(no_wrap=True, width=value_width)
        pairs = [(label, self.values.get(key, "-")) for label, key in self.FIELDS]
        for left, right in zip(pairs[0::2], pairs[1::2]):
            table.add_row(left[0], left[1], right[0], right[1])
        return table
