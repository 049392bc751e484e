"""``TrainStats``: the live numbers of a run (state, step, loss, tokens/s, lr, ...)."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static


def clock(seconds: float | None) -> str:
    """``h:mm:ss`` or ``m:ss``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "-"
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainStats(Static):
    """Two columns of label/value pairs, redrawn from a dict of values."""

    FIELDS = (("state", "state"), ("step", "step"), ("loss", "loss"), ("val loss", "val_loss"),
              ("best val", "best_val_loss"), ("tokens/s", "tokens_per_s"), ("lr", "lr"),
              ("grad norm", "grad_norm"), ("elapsed", "elapsed"), ("ETA", "eta"))

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: dict[str, str] = {"state": "idle"}

    def on_mount(self) -> None:
        self.redraw()

    def set(self, **values: str) -> None:
        self.values.update(values)
        self.redraw()

    def reset(self) -> None:
        self.values = {"state": self.values.get("state", "idle")}
        self.redraw()

    def redraw(self) -> None:
        table = Table.grid(padding=(0, 1), expand=True)
        for _ in range(2):
            table.add_column(style="bold", no_wrap=True)
            table.add_column(no_wrap=True)
        pairs = [(label, self.values.get(key, "-")) for label, key in self.FIELDS]
        for left, right in zip(pairs[0::2], pairs[1::2]):
            table.add_row(left[0], left[1], right[0], right[1])
        self.update(table)
