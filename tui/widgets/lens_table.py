"""``LensTable``: the logit lens as a table, one row per prompt token and one column per
layer: the next token the model would predict if it stopped there, shaded by its
probability, bold where it is already the final answer. Enter on a row explains that
position's prediction (direct logit attribution). Numbers from ``mnemos.lens``."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from mnemos.lens import LensView
from mnemos_tui.widgets.shades import palette, shade

LABEL = 6  # characters of a predicted token's label in a cell
SHADES = 12


class LensTable(DataTable):
    """↑/↓ move along the prompt; enter opens the attribution of that position."""

    DEFAULT_CSS = """
    LensTable { height: 1fr; }
    LensTable > .lens-table--hot { color: $accent; }
    LensTable > .lens-table--cold { color: $panel; }
    """
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"lens-table--hot", "lens-table--cold"}
    BINDINGS = [Binding("enter", "select_cursor", "Explain this prediction")]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.view: LensView | None = None

    def show(self, view: LensView | None) -> None:
        """Fill the table with ``view`` (None: empty), keeping the cursor's row where it can."""
        row = self.cursor_row
        self.view = view
        self.clear(columns=True)
        if view is None:
            return
        layers = ["embed"] + [f"block {i + 1}" for i in range(view.n_layer)]
        self.add_column("token", key="token")
        for name in layers:
            self.add_column(name, key=name)
        self.add_column("first", key="first")
        styles = palette(self, "lens-table--hot", "lens-table--cold", SHADES)
        for t, label in enumerate(view.labels):
            cells = []
            for layer in range(view.n_layer + 1):
                p = float(view.top_probs[layer, t, 0])
                style = shade(styles, p ** 0.5)
                if view.top_ids[layer, t, 0] == view.answer[t]:
                    style += Style(bold=True)
                cells.append(Text(f"{view.top_labels[layer][t][0][:LABEL]:<{LABEL}}{p:>4.0%}", style=style))
            self.add_row(Text(label[-8:], style="bold"), *cells, layers[view.first_layer[t]])
        self.move_cursor(row=min(row, len(view.labels) - 1) if row >= 0 else len(view.labels) - 1)
